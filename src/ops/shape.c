/* shape.c — STUB, to be replaced by the real shape ops (shape rules, builders, gradients). */
#include "ops/ops.h"

mf_tensor mf_concat(mf_graph *g, int n, const mf_tensor *xs, int axis) {
  (void)n;
  (void)xs;
  (void)axis;
  return mf_graph_fail(g, "mf_concat: not implemented yet");
}
mf_tensor mf_slice(mf_graph *g, mf_tensor a, int axis, int64_t start, int64_t end) {
  (void)a;
  (void)axis;
  (void)start;
  (void)end;
  return mf_graph_fail(g, "mf_slice: not implemented yet");
}
mf_tensor mf_reshape(mf_graph *g, mf_tensor a, int ndim, const int64_t *shape) {
  (void)a;
  (void)ndim;
  (void)shape;
  return mf_graph_fail(g, "mf_reshape: not implemented yet");
}
mf_tensor mf_permute(mf_graph *g, mf_tensor a, const int *perm) {
  (void)a;
  (void)perm;
  return mf_graph_fail(g, "mf_permute: not implemented yet");
}
mf_tensor mf_transpose(mf_graph *g, mf_tensor a, int axis0, int axis1) {
  (void)a;
  (void)axis0;
  (void)axis1;
  return mf_graph_fail(g, "mf_transpose: not implemented yet");
}
mf_tensor mf_sum(mf_graph *g, mf_tensor a, unsigned axes_mask, int keepdim) {
  (void)a;
  (void)axes_mask;
  (void)keepdim;
  return mf_graph_fail(g, "mf_sum: not implemented yet");
}
mf_tensor mf_mean(mf_graph *g, mf_tensor a, unsigned axes_mask, int keepdim) {
  (void)a;
  (void)axes_mask;
  (void)keepdim;
  return mf_graph_fail(g, "mf_mean: not implemented yet");
}
int mf_slice_bwd(mf_graph *g, int dy, int full_like, int axis, int64_t start) {
  (void)dy;
  (void)full_like;
  (void)axis;
  (void)start;
  return mf_graph_fail(g, "mf_slice_bwd: not implemented yet");
}
int mf_reduce(mf_graph *g, int x, unsigned mask, int keepdim, double scale) {
  (void)x;
  (void)mask;
  (void)keepdim;
  (void)scale;
  return mf_graph_fail(g, "mf_reduce: not implemented yet");
}
int mf_expand(mf_graph *g, int x, int like, double scale) {
  (void)x;
  (void)like;
  (void)scale;
  return mf_graph_fail(g, "mf_expand: not implemented yet");
}
const mf_op_def mf_op_def_concat = {"concat", NULL, NULL};
const mf_op_def mf_op_def_slice = {"slice", NULL, NULL};
const mf_op_def mf_op_def_slice_bwd = {"slice_bwd", NULL, NULL};
const mf_op_def mf_op_def_reshape = {"reshape", NULL, NULL};
const mf_op_def mf_op_def_permute = {"permute", NULL, NULL};
const mf_op_def mf_op_def_reduce = {"reduce", NULL, NULL};
const mf_op_def mf_op_def_expand = {"expand", NULL, NULL};
