/* loss.c — STUB, to be replaced by the real loss ops (shape rules, builders, gradients). */
#include "ops/ops.h"

mf_tensor mf_mse_loss(mf_graph *g, mf_tensor pred, mf_tensor target) {
  (void)pred;
  (void)target;
  return mf_graph_fail(g, "mf_mse_loss: not implemented yet");
}
mf_tensor mf_mse_loss_sum(mf_graph *g, mf_tensor pred, mf_tensor target) {
  (void)pred;
  (void)target;
  return mf_graph_fail(g, "mf_mse_loss_sum: not implemented yet");
}
mf_tensor mf_l1_loss(mf_graph *g, mf_tensor pred, mf_tensor target) {
  (void)pred;
  (void)target;
  return mf_graph_fail(g, "mf_l1_loss: not implemented yet");
}
mf_tensor mf_softmax_ce(mf_graph *g, mf_tensor logits, mf_tensor labels) {
  (void)logits;
  (void)labels;
  return mf_graph_fail(g, "mf_softmax_ce: not implemented yet");
}
int mf_loss_bwd(mf_graph *g, int pred, int target, int dl, int kind, int sum) {
  (void)pred;
  (void)target;
  (void)dl;
  (void)kind;
  (void)sum;
  return mf_graph_fail(g, "mf_loss_bwd: not implemented yet");
}
int mf_softmax_ce_bwd(mf_graph *g, int logits, int labels, int dl) {
  (void)logits;
  (void)labels;
  (void)dl;
  return mf_graph_fail(g, "mf_softmax_ce_bwd: not implemented yet");
}
const mf_op_def mf_op_def_loss = {"loss", NULL, NULL};
const mf_op_def mf_op_def_loss_bwd = {"loss_bwd", NULL, NULL};
const mf_op_def mf_op_def_softmax_ce = {"softmax_ce", NULL, NULL};
const mf_op_def mf_op_def_softmax_ce_bwd = {"softmax_ce_bwd", NULL, NULL};
