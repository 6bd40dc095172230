/* pool.c — STUB, to be replaced by the real pool ops (shape rules, builders, gradients). */
#include "ops/ops.h"

mf_tensor mf_avgpool2d(mf_graph *g, mf_tensor x, int k, int stride, int pad) {
  (void)x;
  (void)k;
  (void)stride;
  (void)pad;
  return mf_graph_fail(g, "mf_avgpool2d: not implemented yet");
}
mf_tensor mf_maxpool2d(mf_graph *g, mf_tensor x, int k, int stride, int pad) {
  (void)x;
  (void)k;
  (void)stride;
  (void)pad;
  return mf_graph_fail(g, "mf_maxpool2d: not implemented yet");
}
mf_tensor mf_global_avgpool(mf_graph *g, mf_tensor x) {
  (void)x;
  return mf_graph_fail(g, "mf_global_avgpool: not implemented yet");
}
mf_tensor mf_upsample_nearest(mf_graph *g, mf_tensor x, int factor) {
  (void)x;
  (void)factor;
  return mf_graph_fail(g, "mf_upsample_nearest: not implemented yet");
}
int mf_pool_bwd(mf_graph *g, int x, int dy, const mf_node *pool) {
  (void)x;
  (void)dy;
  (void)pool;
  return mf_graph_fail(g, "mf_pool_bwd: not implemented yet");
}
int mf_upsample_bwd(mf_graph *g, int dy, int x_like, int factor) {
  (void)dy;
  (void)x_like;
  (void)factor;
  return mf_graph_fail(g, "mf_upsample_bwd: not implemented yet");
}
const mf_op_def mf_op_def_pool = {"pool", NULL, NULL};
const mf_op_def mf_op_def_pool_bwd = {"pool_bwd", NULL, NULL};
const mf_op_def mf_op_def_upsample = {"upsample", NULL, NULL};
const mf_op_def mf_op_def_upsample_bwd = {"upsample_bwd", NULL, NULL};
