/* attention.c — fused scaled dot-product attention and the VQ nearest-code search: shape rules,
 * builders, gradient rules and FLOP counts. Kernels: backend/cpu/attention.c, backend/cuda/attention.cu.
 *
 * ATTENTION: src q [B..,Nq,D], k [B..,Nk,D], v [B..,Nk,D][, probs [B..,Nq,Nk]]; fp0 = scale:
 *   y = softmax(scale q k^T) v  [B..,Nq,D]. Without `probs` the scores exist only one tile of query
 *   rows at a time (kernel workspace, mf_attn_tile_rows); with it (ATTN_PROBS, "kept" mode) they are
 *   an activation the planner keeps for backward.
 * ATTN_PROBS: src q, k -> P = softmax(scale q k^T) [B..,Nq,Nk] (no gradient of its own: ATTENTION_BWD
 *   takes the path through it).
 * ATTENTION_BWD: src q, k, v, dy[, probs] -> [B..,Nq+2Nk,D], rows [0,Nq) dq, [Nq,Nq+Nk) dk,
 *   [Nq+Nk,Nq+2Nk) dv; with P = softmax(S), dP = dy v^T, dS = P*(dP - rowsum(P*dP)):
 *   dq = scale dS k, dk = scale dS^T q, dv = P^T dy. Recomputes P tile by tile unless given.
 * VQ_NEAREST: src z [N,D], codebook [K,D] -> i32 [N]: argmin_k ||z_n - e_k||^2, computed as
 *   ||e_k||^2 - 2 z_n.e_k over tiles of rows (mf_vq_tile_rows), so [N,K] distances are never whole. */
#include "ops/attention.h"
#include "ops/ops.h"
#include "graph/dtype.h"
#include <math.h>
#include <string.h>

static bool attn_leading_eq(const mf_node *a, const mf_node *b) {
  if (a->ndim != b->ndim) return false;
  for (int i = 0; i < a->ndim - 2; i++)
    if (a->ne[i] != b->ne[i]) return false;
  return true;
}

mf_tensor mf_attention(mf_graph *g, mf_tensor q, mf_tensor k, mf_tensor v, double scale, int keep_scores) {
  int src[4] = {q, k, v, -1};
  if (!mf_graph_check_srcs(g, "attention", 3, src)) return -1;
  const mf_node *nq = &g->nodes[q], *nk = &g->nodes[k], *nv = &g->nodes[v];
  char sq[80], sk[80], sv[80];
  mf_shape_str(nq, sq, sizeof sq);
  mf_shape_str(nk, sk, sizeof sk);
  mf_shape_str(nv, sv, sizeof sv);
  if (nq->ndim < 2 || !mf_dtype_is_float(nq->dtype) || nk->dtype != nq->dtype || nv->dtype != nq->dtype)
    return mf_graph_fail(g, "attention: q %s, k %s, v %s must be float tensors [..., N, D] of one dtype (%s, %s, %s)", sq, sk, sv,
                         mf_dtype_name(nq->dtype), mf_dtype_name(nk->dtype), mf_dtype_name(nv->dtype));
  if (!attn_leading_eq(nq, nk) || !mf_shape_eq(nk, nv) || nk->ne[nk->ndim - 1] != nq->ne[nq->ndim - 1])
    return mf_graph_fail(g, "attention: k %s and v %s must be [..., Nk, D] with q %s's leading axes and D", sk, sv, sq);
  if (mf_node_numel(nq) == 0 || mf_node_numel(nk) == 0) return mf_graph_fail(g, "attention: q %s or k %s is empty", sq, sk);
  int64_t D = nq->ne[nq->ndim - 1];
  if (scale == 0) scale = 1 / sqrt((double)D);
  if (!(scale > 0) || !isfinite(scale)) return mf_graph_fail(g, "attention: scale %g must be above 0 (0: 1/sqrt(D)), q %s", scale, sq);
  int ns = 3;
  if (keep_scores) {
    int64_t ne[MF_MAX_DIMS];
    memcpy(ne, nq->ne, sizeof ne);
    ne[nq->ndim - 1] = nk->ne[nk->ndim - 2]; /* [B.., Nq, Nk] */
    int p = mf_graph_add(g, MF_OP_ATTN_PROBS, nq->dtype, nq->ndim, ne, 2, src);
    if (p < 0) return -1;
    g->nodes[p].fp[0] = scale;
    g->nodes[p].requires_grad = false; /* its gradient path is ATTENTION_BWD's */
    snprintf(g->nodes[p].name, MF_NAME_LEN, "attention.probs");
    src[ns++] = p;
  }
  int id = mf_node_like(g, MF_OP_ATTENTION, q, ns, src); /* [B.., Nq, D] */
  if (id < 0) return -1;
  g->nodes[id].fp[0] = scale;
  g->nodes[id].requires_grad = nq->requires_grad || nk->requires_grad || nv->requires_grad;
  snprintf(g->nodes[id].name, MF_NAME_LEN, "attention");
  return id;
}

static int grad_attention(mf_graph *g, int id, int dy, int *dx) {
  const mf_node *n = &g->nodes[id];
  int q = n->src[0], k = n->src[1], v = n->src[2];
  bool wq = mf_wants_grad(g, q), wk = mf_wants_grad(g, k), wv = mf_wants_grad(g, v);
  if (!wq && !wk && !wv) return 0;
  int src[5] = {q, k, v, dy, n->nsrc > 3 ? n->src[3] : -1};
  const mf_node *nq = &g->nodes[q];
  int64_t Nq = nq->ne[nq->ndim - 2], Nk = g->nodes[k].ne[nq->ndim - 2];
  int64_t ne[MF_MAX_DIMS];
  memcpy(ne, nq->ne, sizeof ne);
  ne[nq->ndim - 2] = Nq + 2 * Nk; /* [B.., Nq+2Nk, D]: dq, dk, dv */
  int b = mf_graph_add(g, MF_OP_ATTENTION_BWD, g->nodes[dy].dtype, nq->ndim, ne, n->nsrc > 3 ? 5 : 4, src);
  if (b < 0) return -1;
  g->nodes[b].fp[0] = n->fp[0];
  snprintf(g->nodes[b].name, MF_NAME_LEN, "attention_bwd");
  int ax = nq->ndim - 2;
  if (wq) dx[0] = mf_slice(g, b, ax, 0, Nq);
  if (wk) dx[1] = mf_slice(g, b, ax, Nq, Nq + Nk);
  if (wv) dx[2] = mf_slice(g, b, ax, Nq + Nk, Nq + 2 * Nk);
  return g->err[0] ? -1 : 0; /* dx[3] (the kept probabilities) stays -1 */
}

static double attn_work(const mf_graph *g, const mf_node *n) {
  const mf_node *q = &g->nodes[n->src[0]], *k = &g->nodes[n->src[1]];
  return (double)mf_node_numel(q) * (double)k->ne[k->ndim - 2]; /* B Nq D Nk */
}
static double attn_scores(const mf_graph *g, const mf_node *n) {
  const mf_node *q = &g->nodes[n->src[0]], *k = &g->nodes[n->src[1]];
  return (double)mf_node_numel(q) / (double)q->ne[q->ndim - 1] * (double)k->ne[k->ndim - 2]; /* B Nq Nk */
}
static double flops_attn_probs(const mf_graph *g, const mf_node *n) { return 2 * attn_work(g, n) + 5 * attn_scores(g, n); }
static double flops_attention(const mf_graph *g, const mf_node *n) {
  return (n->nsrc > 3 ? 2 : 4) * attn_work(g, n) + (n->nsrc > 3 ? 0 : 5 * attn_scores(g, n));
}
static double flops_attention_bwd(const mf_graph *g, const mf_node *n) {
  return (n->nsrc > 4 ? 8 : 10) * attn_work(g, n) + (n->nsrc > 4 ? 4 : 9) * attn_scores(g, n);
}

const mf_op_def mf_op_def_attn_probs = {"attn_probs", NULL, flops_attn_probs};
const mf_op_def mf_op_def_attention = {"attention", grad_attention, flops_attention};
const mf_op_def mf_op_def_attention_bwd = {"attention_bwd", NULL, flops_attention_bwd};

/* ---- VQ nearest code ---- */

mf_tensor mf_vq_nearest(mf_graph *g, mf_tensor z, mf_tensor codebook) {
  int src[2] = {z, codebook};
  if (!mf_graph_check_srcs(g, "vq_nearest", 2, src)) return -1;
  const mf_node *nz = &g->nodes[z], *ne_ = &g->nodes[codebook];
  char sz[80], se[80];
  mf_shape_str(nz, sz, sizeof sz);
  mf_shape_str(ne_, se, sizeof se);
  if (nz->ndim != 2 || ne_->ndim != 2 || !mf_dtype_is_float(nz->dtype) || !mf_dtype_is_float(ne_->dtype) ||
      nz->ne[1] != ne_->ne[1])
    return mf_graph_fail(g, "vq_nearest: z %s (%s) and codebook %s (%s) must be float [N,D] and [K,D] with the same D", sz,
                         mf_dtype_name(nz->dtype), se, mf_dtype_name(ne_->dtype));
  if (ne_->ne[0] < 1) return mf_graph_fail(g, "vq_nearest: codebook %s has no entries", se);
  if (ne_->ne[0] > INT32_MAX) return mf_graph_fail(g, "vq_nearest: codebook %s has more rows than i32 indices reach", se);
  int64_t ne[1] = {nz->ne[0]};
  int id = mf_graph_add(g, MF_OP_VQ_NEAREST, MF_I32, 1, ne, 2, src);
  if (id >= 0) {
    g->nodes[id].requires_grad = false;
    snprintf(g->nodes[id].name, MF_NAME_LEN, "vq_nearest");
  }
  return id;
}

static double flops_vq(const mf_graph *g, const mf_node *n) {
  const mf_node *z = &g->nodes[n->src[0]], *e = &g->nodes[n->src[1]];
  return 2.0 * (double)mf_node_numel(z) * (double)e->ne[0] + 2.0 * (double)mf_node_numel(e);
}
const mf_op_def mf_op_def_vq_nearest = {"vq_nearest", NULL, flops_vq};
