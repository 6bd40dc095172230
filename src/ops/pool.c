/* pool.c — average/max pooling, global average pooling and nearest upsampling (+ their backward
 * ops): shape rules, builders and gradient rules. Kernels: backend/cpu/pool.c.
 * POOL params: ip0 MF_POOL_AVG/MAX, ip1 k, ip2 stride, ip3 pad, ip4 = 1 for global average
 * pooling ([N,C,H,W] -> [N,C]; the window is the whole plane, k/stride/pad unused).
 * Average pooling divides by k*k including padded positions (PyTorch's count_include_pad=True). */
#include "ops/ops.h"
#include "graph/dtype.h"
#include <string.h>

static int pool2d(mf_graph *g, int kind, mf_tensor x, int k, int stride, int pad) {
  const char *nm = kind == MF_POOL_AVG ? "avgpool2d" : "maxpool2d";
  if (!mf_graph_check_srcs(g, nm, 1, &x)) return -1;
  const mf_node *nx = &g->nodes[x];
  char sx[80];
  mf_shape_str(nx, sx, sizeof sx);
  if (nx->ndim != 4) return mf_graph_fail(g, "%s: input %s must be 4-D [N,C,H,W]", nm, sx);
  if (!mf_dtype_is_float(nx->dtype)) return mf_graph_fail(g, "%s: input %s must be floating point", nm, sx);
  if (k < 1 || stride < 1 || pad < 0 || pad > k / 2)
    return mf_graph_fail(g, "%s: kernel %d, stride %d, padding %d (need k >= 1, stride >= 1, 0 <= padding <= k/2)", nm, k, stride,
                         pad);
  if (nx->ne[2] + 2 * pad < k || nx->ne[3] + 2 * pad < k)
    return mf_graph_fail(g, "%s: kernel %d is larger than input %s padded by %d", nm, k, sx, pad);
  int64_t ne[4] = {nx->ne[0], nx->ne[1], (nx->ne[2] + 2 * pad - k) / stride + 1, (nx->ne[3] + 2 * pad - k) / stride + 1};
  int id = mf_graph_add(g, MF_OP_POOL, nx->dtype, 4, ne, 1, &x);
  if (id >= 0) {
    mf_node *n = &g->nodes[id];
    n->ip[0] = kind;
    n->ip[1] = k;
    n->ip[2] = stride;
    n->ip[3] = pad;
    snprintf(n->name, MF_NAME_LEN, "%s", nm);
  }
  return id;
}
mf_tensor mf_avgpool2d(mf_graph *g, mf_tensor x, int k, int stride, int pad) { return pool2d(g, MF_POOL_AVG, x, k, stride, pad); }
mf_tensor mf_maxpool2d(mf_graph *g, mf_tensor x, int k, int stride, int pad) { return pool2d(g, MF_POOL_MAX, x, k, stride, pad); }

/* [N,C,H,W] -> [N,C]: mean over each plane */
mf_tensor mf_global_avgpool(mf_graph *g, mf_tensor x) {
  if (!mf_graph_check_srcs(g, "global_avgpool", 1, &x)) return -1;
  const mf_node *nx = &g->nodes[x];
  if (nx->ndim != 4 || !mf_dtype_is_float(nx->dtype)) {
    char sx[80];
    mf_shape_str(nx, sx, sizeof sx);
    return mf_graph_fail(g, "global_avgpool: input %s (%s) must be a 4-D [N,C,H,W] float tensor", sx, mf_dtype_name(nx->dtype));
  }
  int64_t ne[2] = {nx->ne[0], nx->ne[1]};
  int id = mf_graph_add(g, MF_OP_POOL, nx->dtype, 2, ne, 1, &x);
  if (id >= 0) {
    mf_node *n = &g->nodes[id];
    n->ip[0] = MF_POOL_AVG;
    n->ip[4] = 1;
    snprintf(n->name, MF_NAME_LEN, "global_avgpool");
  }
  return id;
}

/* dx shaped like x. Max pooling re-finds the argmax in x (src x, dy); average pooling needs only
 * dy (src dy), so x need not stay alive for it. */
int mf_pool_bwd(mf_graph *g, int x, int dy, const mf_node *pool) {
  int src[2] = {x, dy};
  if (!mf_graph_check_srcs(g, "pool_bwd", 2, src)) return -1;
  int32_t ip[5];
  memcpy(ip, pool->ip, sizeof ip);
  bool is_max = ip[0] == MF_POOL_MAX;
  int id = is_max ? mf_node_like(g, MF_OP_POOL_BWD, x, 2, src) : mf_node_like(g, MF_OP_POOL_BWD, x, 1, &dy);
  if (id >= 0) {
    mf_node *n = &g->nodes[id];
    memcpy(n->ip, ip, sizeof ip);
    snprintf(n->name, MF_NAME_LEN, "%s_bwd", ip[4] ? "global_avgpool" : is_max ? "maxpool2d" : "avgpool2d");
  }
  return id;
}

static int grad_pool(mf_graph *g, int id, int dy, int *dx) {
  mf_node copy = g->nodes[id];
  dx[0] = mf_pool_bwd(g, copy.src[0], dy, &copy);
  return dx[0] < 0 ? -1 : 0;
}

/* [N,C,H,W] -> [N,C,H*f,W*f], each input element repeated in an f x f block */
mf_tensor mf_upsample_nearest(mf_graph *g, mf_tensor x, int factor) {
  if (!mf_graph_check_srcs(g, "upsample_nearest", 1, &x)) return -1;
  const mf_node *nx = &g->nodes[x];
  char sx[80];
  mf_shape_str(nx, sx, sizeof sx);
  if (nx->ndim != 4) return mf_graph_fail(g, "upsample_nearest: input %s must be 4-D [N,C,H,W]", sx);
  if (factor < 1) return mf_graph_fail(g, "upsample_nearest: factor %d for input %s (need >= 1)", factor, sx);
  int64_t ne[4] = {nx->ne[0], nx->ne[1], nx->ne[2] * factor, nx->ne[3] * factor};
  int id = mf_graph_add(g, MF_OP_UPSAMPLE, nx->dtype, 4, ne, 1, &x);
  if (id >= 0) {
    g->nodes[id].ip[0] = factor;
    snprintf(g->nodes[id].name, MF_NAME_LEN, "upsample_nearest");
  }
  return id;
}

/* dy [N,C,H*f,W*f] -> dx like x_like [N,C,H,W]: sum over each f x f block */
int mf_upsample_bwd(mf_graph *g, int dy, int x_like, int factor) {
  int src[2] = {dy, x_like};
  if (!mf_graph_check_srcs(g, "upsample_bwd", 2, src)) return -1;
  const mf_node *nd = &g->nodes[dy], *nx = &g->nodes[x_like];
  if (nd->ndim != 4 || nx->ndim != 4 || nd->ne[0] != nx->ne[0] || nd->ne[1] != nx->ne[1] || nd->ne[2] != nx->ne[2] * factor ||
      nd->ne[3] != nx->ne[3] * factor) {
    char sd[80], sx[80];
    mf_shape_str(nd, sd, sizeof sd);
    mf_shape_str(nx, sx, sizeof sx);
    return mf_graph_fail(g, "upsample_bwd: dy %s is not input %s upsampled by %d", sd, sx, factor);
  }
  int id = mf_node_like(g, MF_OP_UPSAMPLE_BWD, x_like, 1, &dy);
  if (id >= 0) g->nodes[id].ip[0] = factor;
  return id;
}

static int grad_upsample(mf_graph *g, int id, int dy, int *dx) {
  const mf_node *n = &g->nodes[id];
  dx[0] = mf_upsample_bwd(g, dy, n->src[0], n->ip[0]);
  return dx[0] < 0 ? -1 : 0;
}

/* one add/compare per window element */
static double flops_pool(const mf_graph *g, const mf_node *n) {
  (void)g;
  double win = n->ip[4] ? (double)g->nodes[n->src[0]].ne[2] * (double)g->nodes[n->src[0]].ne[3] : (double)n->ip[1] * n->ip[1];
  return (double)mf_node_numel(n) * win;
}
static double flops_pool_bwd(const mf_graph *g, const mf_node *n) {
  (void)g;
  double win = n->ip[4] ? 1.0 : (double)n->ip[1] * n->ip[1];
  return (double)mf_node_numel(n) * win;
}

const mf_op_def mf_op_def_pool = {"pool", grad_pool, flops_pool};
const mf_op_def mf_op_def_pool_bwd = {"pool_bwd", NULL, flops_pool_bwd};
const mf_op_def mf_op_def_upsample = {"upsample", grad_upsample, NULL};
const mf_op_def mf_op_def_upsample_bwd = {"upsample_bwd", NULL, NULL};
