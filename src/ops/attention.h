/* attention.h — what the attention and VQ nearest-code ops' kernels share with their shape rules:
 * the row tiles (so the N x N scores and the N x K distances are never whole) and the geometry. */
#ifndef MF_OPS_ATTENTION_H
#define MF_OPS_ATTENTION_H

#include "graph/graph.h"
#include "graph/oplist.h"

/* Elements of one score tile [rows, Nk] (attention) or distance tile [rows, K] (VQ): 1 Mi, 4 MiB in f32. */
#define MF_ATTN_TILE_ELEMS ((int64_t)1 << 20)
#define MF_VQ_TILE_ELEMS ((int64_t)1 << 18)

/* Query rows per tile: all of them when Nq x Nk fits a tile, else as many as fit (at least 1). */
static inline int64_t mf_attn_tile_rows(int64_t nq, int64_t nk) {
  int64_t t = nk > 0 ? MF_ATTN_TILE_ELEMS / nk : nq;
  if (t < 1) t = 1;
  return t < nq ? t : nq;
}
static inline int64_t mf_vq_tile_rows(int64_t n, int64_t k) {
  int64_t t = k > 0 ? MF_VQ_TILE_ELEMS / k : n;
  if (t < 1) t = 1;
  return t < n ? t : n;
}

/* Shapes of an ATTENTION / ATTENTION_BWD / ATTN_PROBS node: q [B.., Nq, D], k and v [B.., Nk, D]. */
typedef struct mf_attn_geo {
  int64_t B, Nq, Nk, D, T; /* B: product of the leading axes; T: query rows per tile */
  double scale;
} mf_attn_geo;

static inline void mf_attn_geometry(const mf_graph *g, const mf_node *n, mf_attn_geo *a) {
  const mf_node *q = &g->nodes[n->src[0]], *k = &g->nodes[n->src[1]];
  a->Nq = q->ne[q->ndim - 2];
  a->D = q->ne[q->ndim - 1];
  a->Nk = k->ne[k->ndim - 2];
  a->B = a->Nq > 0 && a->D > 0 ? mf_node_numel(q) / (a->Nq * a->D) : 0;
  a->T = mf_attn_tile_rows(a->Nq, a->Nk);
  a->scale = n->fp[0];
}

/* The probabilities source of an ATTENTION (src 3) or ATTENTION_BWD (src 4) node, or -1 (recomputed). */
static inline int mf_attn_probs_src(const mf_node *n) {
  int i = n->op == MF_OP_ATTENTION ? 3 : 4;
  return n->nsrc > i ? n->src[i] : -1;
}

#endif
