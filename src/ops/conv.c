/* conv.c — STUB, to be replaced by the real conv ops (shape rules, builders, gradients). */
#include "ops/ops.h"

mf_tensor mf_matmul(mf_graph *g, mf_tensor a, mf_tensor b, int trans_a, int trans_b) {
  (void)a;
  (void)b;
  (void)trans_a;
  (void)trans_b;
  return mf_graph_fail(g, "mf_matmul: not implemented yet");
}
mf_tensor mf_linear(mf_graph *g, mf_tensor x, mf_tensor w, mf_tensor b) {
  (void)x;
  (void)w;
  (void)b;
  return mf_graph_fail(g, "mf_linear: not implemented yet");
}
mf_tensor mf_conv2d(mf_graph *g, mf_tensor x, mf_tensor w, mf_tensor b, int stride, int pad, int groups) {
  (void)x;
  (void)w;
  (void)b;
  (void)stride;
  (void)pad;
  (void)groups;
  return mf_graph_fail(g, "mf_conv2d: not implemented yet");
}
int mf_conv2d_bwd_data(mf_graph *g, int dy, int w, int x_like, int stride, int pad, int groups) {
  (void)dy;
  (void)w;
  (void)x_like;
  (void)stride;
  (void)pad;
  (void)groups;
  return mf_graph_fail(g, "mf_conv2d_bwd_data: not implemented yet");
}
int mf_conv2d_bwd_weight(mf_graph *g, int x, int dy, int w_like, int stride, int pad, int groups) {
  (void)x;
  (void)dy;
  (void)w_like;
  (void)stride;
  (void)pad;
  (void)groups;
  return mf_graph_fail(g, "mf_conv2d_bwd_weight: not implemented yet");
}
const mf_op_def mf_op_def_matmul = {"matmul", NULL, NULL};
const mf_op_def mf_op_def_conv2d = {"conv2d", NULL, NULL};
const mf_op_def mf_op_def_conv2d_bwd_data = {"conv2d_bwd_data", NULL, NULL};
const mf_op_def mf_op_def_conv2d_bwd_weight = {"conv2d_bwd_weight", NULL, NULL};
