/* norm.c — STUB, to be replaced by the real norm ops (shape rules, builders, gradients). */
#include "ops/ops.h"

mf_tensor mf_batchnorm(mf_graph *g, mf_tensor x, mf_tensor gamma, mf_tensor beta, mf_tensor rmean, mf_tensor rvar, int training, double momentum, double eps) {
  (void)x;
  (void)gamma;
  (void)beta;
  (void)rmean;
  (void)rvar;
  (void)training;
  (void)momentum;
  (void)eps;
  return mf_graph_fail(g, "mf_batchnorm: not implemented yet");
}
mf_tensor mf_groupnorm(mf_graph *g, mf_tensor x, mf_tensor gamma, mf_tensor beta, int groups, double eps) {
  (void)x;
  (void)gamma;
  (void)beta;
  (void)groups;
  (void)eps;
  return mf_graph_fail(g, "mf_groupnorm: not implemented yet");
}
const mf_op_def mf_op_def_norm = {"norm", NULL, NULL};
const mf_op_def mf_op_def_norm_bwd_dx = {"norm_bwd_dx", NULL, NULL};
const mf_op_def mf_op_def_norm_bwd_param = {"norm_bwd_param", NULL, NULL};
