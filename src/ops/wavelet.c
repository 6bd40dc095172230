/* wavelet.c — per-channel Haar DWT and its inverse (docs/design.md 3.1): shape rules, builders and
 * gradients. The transform is orthonormal, so each one's gradient is the other. Kernels:
 * backend/cpu/wavelet.c. */
#include "ops/ops.h"

/* DWT: x [N,C,H,W] (H, W even) -> [N,4C,H/2,W/2], channels [LL(C), HL(C), LH(C), HH(C)] */
mf_tensor mf_dwt_haar(mf_graph *g, mf_tensor x) {
  if (!mf_graph_check_srcs(g, "dwt_haar", 1, &x)) return -1;
  const mf_node *n = &g->nodes[x];
  if (n->ndim != 4 || n->ne[2] % 2 || n->ne[3] % 2) {
    char s[64];
    mf_shape_str(n, s, sizeof s);
    return mf_graph_fail(g, "dwt_haar: input %s must be [N,C,H,W] with H and W even", s);
  }
  int64_t ne[4] = {n->ne[0], 4 * n->ne[1], n->ne[2] / 2, n->ne[3] / 2};
  return mf_graph_add(g, MF_OP_DWT, n->dtype, 4, ne, 1, &x);
}

/* IDWT: y [N,4C,h,w] -> [N,C,2h,2w] */
mf_tensor mf_idwt_haar(mf_graph *g, mf_tensor x) {
  if (!mf_graph_check_srcs(g, "idwt_haar", 1, &x)) return -1;
  const mf_node *n = &g->nodes[x];
  if (n->ndim != 4 || n->ne[1] % 4) {
    char s[64];
    mf_shape_str(n, s, sizeof s);
    return mf_graph_fail(g, "idwt_haar: input %s must be [N,4C,h,w] (channels a multiple of 4)", s);
  }
  int64_t ne[4] = {n->ne[0], n->ne[1] / 4, n->ne[2] * 2, n->ne[3] * 2};
  return mf_graph_add(g, MF_OP_IDWT, n->dtype, 4, ne, 1, &x);
}

static int grad_dwt(mf_graph *g, int id, int dy, int *dx) {
  (void)id;
  dx[0] = mf_idwt_haar(g, dy);
  return dx[0] < 0 ? -1 : 0;
}
static int grad_idwt(mf_graph *g, int id, int dy, int *dx) {
  (void)id;
  dx[0] = mf_dwt_haar(g, dy);
  return dx[0] < 0 ? -1 : 0;
}

/* 3 adds + 1 multiply per output element */
static double flops_wavelet(const mf_graph *g, const mf_node *n) { (void)g; return 4.0 * (double)mf_node_numel(n); }

const mf_op_def mf_op_def_dwt = {"dwt", grad_dwt, flops_wavelet};
const mf_op_def mf_op_def_idwt = {"idwt", grad_idwt, flops_wavelet};
