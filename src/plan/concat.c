/* concat.c — the in-place concatenation pass the planner runs on its copy of the graph after the fusion pass and
 * the detach aliasing (and on what each recompute rewrite builds): each concat group (concat.h) gets one buffer, its
 * root's; its members' offsets point into it (program_place in plan.c), so a conv writes its output straight into its
 * channel slice and a concat copies only the sources that are not already in place (the kernel compares pointers). */
#include "plan/concat.h"
#include "plan/plan.h"
#include "ops/ops.h"
#include <stdlib.h>

/* prod(ne[0..ax)): 1 when the slices along ax are contiguous blocks */
static int64_t concat_outer(const mf_node *n) {
  int64_t o = 1;
  for (int i = 0; i < n->ip[0]; i++) o *= n->ne[i];
  return o;
}

static bool concat_rootable(const mf_node *n) {
  return n->op == MF_OP_CONCAT && n->role == MF_ROLE_ACT && n->nsrc >= 2 && concat_outer(n) == 1;
}

/* d's sources are the first d->nsrc sources of r, along the same axis */
static bool concat_prefix(const mf_node *d, const mf_node *r) {
  if (d->op != MF_OP_CONCAT || d->role != MF_ROLE_ACT || d->ip[0] != r->ip[0] || d->dtype != r->dtype || d->nsrc > r->nsrc)
    return false;
  for (int j = 0; j < d->nsrc; j++)
    if (d->src[j] != r->src[j]) return false;
  return true;
}

int mf_concat_alias(mf_graph *g, int first, const uint8_t *pinned) {
  int N = g->n, stored = 0;
  if (N > g->cat_n) { /* grow the tables: the nodes since the last call have their own storage until grouped */
    int *root = realloc(g->cat_root, (size_t)N * sizeof *root);
    if (root) g->cat_root = root;
    size_t *off = realloc(g->cat_off, (size_t)N * sizeof *off);
    if (off) g->cat_off = off;
    if (!root || !off) return -1;
    for (int id = g->cat_n; id < N; id++) { root[id] = -1; off[id] = 0; }
    g->cat_n = N;
  }
  int *root = g->cat_root;
  size_t *off = g->cat_off;
  uint8_t *read = calloc((size_t)(N ? N : 1), 1); /* something reads it (an unread concat: merged away by the rewrite) */
  if (!read) return -1;
  for (int id = 0; id < N; id++)
    for (int j = 0; j < g->nodes[id].nsrc; j++) read[g->nodes[id].src[j]] = 1;
  /* the largest concat of a chain comes last: roots from the end */
  for (int r = N - 1; r >= first; r--) {
    const mf_node *R = &g->nodes[r];
    if (root[r] >= 0 || !read[r] || !concat_rootable(R)) continue;
    int members = 0;
    for (int d = first; d < r; d++) /* the chain's shorter concats: the same bytes at offset 0 */
      if (root[d] < 0 && concat_prefix(&g->nodes[d], R)) { root[d] = r; off[d] = 0; members++; }
    int ax = R->ip[0];
    int64_t inner = 1;
    for (int i = ax + 1; i < R->ndim; i++) inner *= R->ne[i];
    size_t esz = mf_dtype_size(R->dtype), at = 0;
    for (int j = 0; j < R->nsrc; j++) {
      int s = R->src[j];
      const mf_node *S = &g->nodes[s];
      bool once = true;
      for (int q = 0; q < R->nsrc; q++) once &= q == j || R->src[q] != s;
      if (once && s >= first && root[s] < 0 && !(pinned && pinned[s]) && S->role == MF_ROLE_ACT && mf_node_arena(S) == MF_ARENA_ACT &&
          S->op != MF_OP_CONCAT && !mf_node_is_detach(S) && S->dtype == R->dtype && at % MF_ALIGN == 0) {
        root[s] = r;
        off[s] = at;
        members++;
      }
      at += (size_t)(S->ne[ax] * inner) * esz;
    }
    if (members) {
      root[r] = r;
      stored += members;
    }
  }
  free(read);
  g->cat_stored += stored;
  return stored;
}
