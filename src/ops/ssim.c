/* ssim.c — the fused SSIM map (uniform k x k windows, valid positions) and its backward: shape rules, builder,
 * gradient rule and FLOP counts. Kernels: backend/cpu/ssim.c, backend/cuda/ssim.cu; the formula is in ops/ssim.h.
 * SSIM: src x, y [B,C,H,W] -> [B,C,H-k+1,W-k+1], ip0 = k. SSIM_BWD: src x, y, dmap -> dx like x; it keeps
 * nothing from forward (the window sums are recomputed from x and y), and the map is symmetric in x and y, so
 * the gradient of y is the same node with x and y swapped. */
#include "ops/ssim.h"
#include "graph/dtype.h"

mf_tensor mf_ssim_map(mf_graph *g, mf_tensor x, mf_tensor y, int k) {
  int src[2] = {x, y};
  if (!mf_graph_check_srcs(g, "ssim_map", 2, src)) return -1;
  const mf_node *nx = &g->nodes[x], *ny = &g->nodes[y];
  char sx[64], sy[64];
  mf_shape_str(nx, sx, sizeof sx);
  mf_shape_str(ny, sy, sizeof sy);
  if (nx->ndim != 4 || !mf_shape_eq(nx, ny) || !mf_dtype_is_float(nx->dtype) || !mf_dtype_is_float(ny->dtype))
    return mf_graph_fail(g, "ssim_map: x %s (%s) and y %s (%s) must be float tensors of one 4-D shape [B,C,H,W]", sx,
                         mf_dtype_name(nx->dtype), sy, mf_dtype_name(ny->dtype));
  if (k < 1 || k > MF_SSIM_MAXK || k > nx->ne[2] || k > nx->ne[3])
    return mf_graph_fail(g, "ssim_map: window k = %d for x %s (need 1 <= k <= %d and k <= H, W)", k, sx, MF_SSIM_MAXK);
  int64_t ne[4] = {nx->ne[0], nx->ne[1], nx->ne[2] - k + 1, nx->ne[3] - k + 1}; /* [B,C,H-k+1,W-k+1] */
  int id = mf_graph_add(g, MF_OP_SSIM, nx->dtype, 4, ne, 2, src);
  if (id >= 0) {
    g->nodes[id].ip[0] = k;
    snprintf(g->nodes[id].name, MF_NAME_LEN, "ssim_map");
  }
  return id;
}

/* d/dx of sum(dmap * map): SSIM_BWD(x, y, dmap) like x; d/dy: SSIM_BWD(y, x, dmap) like y */
static int ssim_bwd(mf_graph *g, int a, int b, int dy, int k) {
  int src[3] = {a, b, dy};
  int id = mf_node_like(g, MF_OP_SSIM_BWD, a, 3, src);
  if (id >= 0) {
    g->nodes[id].ip[0] = k;
    snprintf(g->nodes[id].name, MF_NAME_LEN, "ssim_map_bwd");
  }
  return id;
}

static int grad_ssim(mf_graph *g, int id, int dy, int *dx) {
  int x = g->nodes[id].src[0], y = g->nodes[id].src[1], k = g->nodes[id].ip[0];
  dx[0] = mf_wants_grad(g, x) ? ssim_bwd(g, x, y, dy, k) : -1;
  dx[1] = mf_wants_grad(g, y) ? ssim_bwd(g, y, x, dy, k) : -1;
  return g->err[0] ? -1 : 0;
}

/* forward: 5 window sums (about 2 adds per sum per output with sliding columns, k adds across) and ~25 flops of
 * the formula; backward: the forward again over the halo, 15 flops of coefficients and 3 window sums back */
static double flops_ssim(const mf_graph *g, const mf_node *n) {
  (void)g;
  return (double)mf_node_numel(n) * (5.0 * (2 + n->ip[0]) + 25);
}
static double flops_ssim_bwd(const mf_graph *g, const mf_node *n) {
  (void)g;
  return (double)mf_node_numel(n) * (5.0 * (2 + n->ip[0]) + 25 + 15 + 3.0 * (2 + n->ip[0]) + 5);
}

const mf_op_def mf_op_def_ssim = {"ssim", grad_ssim, flops_ssim};
const mf_op_def mf_op_def_ssim_bwd = {"ssim_bwd", NULL, flops_ssim_bwd};
