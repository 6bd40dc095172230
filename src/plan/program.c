/* program.c — turns a differentiated graph into an execution order: forward, then backward,
 * with recompute segments rewritten so that backward reads recomputed (or, for invertible
 * blocks, inverted) tensors instead of stored ones; then drops every node nothing needs. */
#include "plan/plan.h"
#include "plan/fuse.h"
#include "plan/concat.h"
#include "ops/ops.h"
#include <stdlib.h>
#include <string.h>

typedef struct idlist { int *v; int n, cap; } idlist;
static int idlist_push(idlist *l, int x) {
  if (l->n == l->cap) {
    int cap = l->cap ? l->cap * 2 : 16;
    int *v = realloc(l->v, (size_t)cap * sizeof *v);
    if (!v) return -1;
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = x;
  return 0;
}

static bool is_leaf(const mf_node *n) {
  return n->op == MF_OP_INPUT || n->op == MF_OP_PARAM || n->op == MF_OP_PARAM_LP || n->op == MF_OP_BUFFER;
}

static bool same_node(const mf_node *a, const mf_node *b) {
  if (a->op != b->op || a->dtype != b->dtype || a->nsrc != b->nsrc || !mf_shape_eq(a, b)) return false;
  if (memcmp(a->src, b->src, sizeof(int) * (size_t)a->nsrc) || memcmp(a->ip, b->ip, sizeof a->ip)) return false;
  return memcmp(a->fp, b->fp, sizeof a->fp) == 0;
}

/* Recompute nodes by content: the rewrite looks a node up here before building it, so that what
 * one segment's rewrite rebuilt (its inverse or its clones) is reused by the rewrite of an earlier
 * segment instead of being computed again, e.g. the subnets both sides of a junction apply to the
 * same rebuilt tensor. Only ops with inputs are entered (every such op is a pure function of its
 * inputs; leaves are storage, not values to share). at[] is, per recompute node (id - base), the
 * backward position it is inserted before: a node is only reused from a position at or before the
 * one asking, so it has always been computed by then. Reuse can keep a node alive longer; the
 * lifetimes (and so the plan) are computed afterwards from the final program, so it stays exact. */
typedef struct cse_table {
  int *slot; size_t cap, used; /* open addressing over node ids, -1 empty */
  idlist at;
  int base;
} cse_table;

static uint64_t node_hash(const mf_node *n) {
  uint64_t h = 1469598103934665603ULL;
#define MIX(x) (h = (h ^ (uint64_t)(x)) * 1099511628211ULL)
  MIX(n->op);
  MIX(n->dtype);
  MIX(n->nsrc);
  for (int j = 0; j < n->nsrc; j++) MIX(n->src[j]);
  for (int j = 0; j < 8; j++) MIX((uint32_t)n->ip[j]);
  for (int j = 0; j < n->ndim; j++) MIX(n->ne[j]);
#undef MIX
  return h ^ (h >> 29);
}

static bool cse_ok(const mf_node *n) { return n->role == MF_ROLE_ACT && n->nsrc > 0 && !is_leaf(n); }

static int cse_find(const cse_table *t, const mf_graph *g, const mf_node *n, int pos) {
  if (!t->cap || !cse_ok(n)) return -1;
  for (size_t i = node_hash(n) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
    int id = t->slot[i];
    if (id < 0) return -1;
    if (same_node(&g->nodes[id], n) && t->at.v[id - t->base] <= pos) return id;
  }
}

static int cse_add(cse_table *t, const mf_graph *g, int id) {
  if (!cse_ok(&g->nodes[id])) return 0;
  if (2 * (t->used + 1) > t->cap) {
    size_t cap = t->cap ? 2 * t->cap : 1024;
    int *slot = malloc(cap * sizeof *slot);
    if (!slot) return -1;
    for (size_t i = 0; i < cap; i++) slot[i] = -1;
    for (size_t i = 0; i < t->cap; i++) {
      if (t->slot[i] < 0) continue;
      size_t k = node_hash(&g->nodes[t->slot[i]]) & (cap - 1);
      while (slot[k] >= 0) k = (k + 1) & (cap - 1);
      slot[k] = t->slot[i];
    }
    free(t->slot);
    t->slot = slot;
    t->cap = cap;
  }
  size_t k = node_hash(&g->nodes[id]) & (t->cap - 1);
  while (t->slot[k] >= 0) k = (k + 1) & (t->cap - 1);
  t->slot[k] = id;
  t->used++;
  return 0;
}

/* Marks in need[] (g->n entries, zeroed) every node the targets read, directly or not. */
static int mark_needed(const mf_graph *g, const int *targets, int nt, uint8_t *need) {
  int *stack = malloc((size_t)(g->n ? g->n : 1) * sizeof *stack);
  if (!stack) return -1;
  int sp = 0;
  for (int i = 0; i < nt; i++)
    if (targets[i] >= 0 && targets[i] < g->n && !need[targets[i]]) { need[targets[i]] = 1; stack[sp++] = targets[i]; }
  while (sp) {
    const mf_node *n = &g->nodes[stack[--sp]];
    for (int j = 0; j < n->nsrc; j++)
      if (!need[n->src[j]]) { need[n->src[j]] = 1; stack[sp++] = n->src[j]; }
  }
  free(stack);
  return 0;
}

/* Emits the non-leaf nodes of `order` that the targets need into pr. */
static int program_emit(const mf_graph *g, const idlist *order, const int *targets, int nt, mf_program *pr) {
  uint8_t *need = calloc((size_t)(g->n ? g->n : 1), 1);
  if (!need || mark_needed(g, targets, nt, need) < 0) { free(need); return -1; }
  pr->steps = malloc((size_t)(order->n ? order->n : 1) * sizeof *pr->steps);
  if (!pr->steps) { free(need); return -1; }
  pr->n_steps = 0;
  pr->flops = 0;
  for (int i = 0; i < order->n; i++) {
    int id = order->v[i];
    if (!need[id] || is_leaf(&g->nodes[id])) continue;
    pr->steps[pr->n_steps++] = id;
    pr->flops += mf_node_flops(g, &g->nodes[id]);
  }
  free(need);
  return 0;
}

int mf_program_build_fwd(mf_graph *g, int loss, const mf_plan_opts *o, mf_program *pr, char *err, size_t errlen) {
  int nf = g->n_fwd ? g->n_fwd : g->n;
  idlist order = {0};
  for (int id = 0; id < nf; id++)
    if (idlist_push(&order, id) < 0) { free(order.v); snprintf(err, errlen, "plan: out of host memory"); return -1; }
  int nt = 1 + o->n_keep;
  int *targets = malloc((size_t)nt * sizeof *targets);
  if (!targets) { free(order.v); snprintf(err, errlen, "plan: out of host memory"); return -1; }
  targets[0] = loss;
  for (int i = 0; i < o->n_keep; i++) targets[1 + i] = o->keep[i] < nf ? o->keep[i] : -1;
  int rc = program_emit(g, &order, targets, nt, pr);
  free(targets);
  free(order.v);
  if (rc < 0) snprintf(err, errlen, "plan: out of host memory");
  return rc;
}

/* map lookups with growth: map[i] = replacement of node i (identity by default) */
typedef struct idmap { int *m; int n; } idmap;
static int idmap_get(const idmap *m, int id) { return id < m->n ? m->m[id] : id; }
static int idmap_grow(idmap *m, int n) {
  if (n <= m->n) return 0;
  int *v = realloc(m->m, (size_t)n * sizeof *v);
  if (!v) return -1;
  for (int i = m->n; i < n; i++) v[i] = i;
  m->m = v;
  m->n = n;
  return 0;
}

static bool seg_wanted(const mf_plan_opts *o, int k) {
  if (o->recompute == MF_RECOMPUTE_ALL) return true;
  if (o->recompute == MF_RECOMPUTE_SELECTED) return o->segment_mask && o->segment_mask[k];
  return false;
}

/* Marks in needed[] (indexed from seg->first) the inner nodes of seg, outputs excepted, that node n reads. */
static void mark_inner_srcs(const mf_node *n, const mf_segment *seg, const idmap *M, uint8_t *needed) {
  for (int j = 0; j < n->nsrc; j++) {
    int s = idmap_get(M, n->src[j]);
    if (s < seg->first || s > seg->last) continue;
    bool out = false;
    for (int q = 0; q < seg->n_out; q++) out |= seg->outs[q] == s;
    if (!out) needed[s - seg->first] = 1;
  }
}

/* Records backward position pos for the recompute nodes built since the last call. */
static int cse_note(cse_table *t, const mf_graph *g, int pos) {
  while (t->base + t->at.n < g->n)
    if (idlist_push(&t->at, pos) < 0) return -1;
  return 0;
}

/* Merges the nodes the inverse just built, [first, g->n), with equal recompute nodes built before
 * (by this inverse or an earlier rewrite): each one's inputs are first redirected to the kept
 * nodes, then it is looked up. A merged node stays in the graph unread, so the final pass drops
 * it. canon[i] is the node that stands for first + i; xin[] is redirected too. */
static int cse_inverse(mf_graph *g, int first, int pos, cse_table *t, int n_in, int *xin) {
  /* the forward's conv -> ReLU pairs are fused (plan/fuse.c): the inverse's too, so that they equal its clones */
  if (g->fuse_conv_act && mf_fuse_conv_act_new(g, first, xin, n_in) < 0) return -1;
  int n = g->n - first;
  int *canon = malloc((size_t)(n ? n : 1) * sizeof *canon);
  if (!canon || cse_note(t, g, pos) < 0) { free(canon); return -1; }
  for (int i = 0; i < n; i++) {
    mf_node *q = &g->nodes[first + i];
    for (int j = 0; j < q->nsrc; j++)
      if (q->src[j] >= first) q->src[j] = canon[q->src[j] - first];
    int f = cse_find(t, g, q, pos);
    canon[i] = f >= 0 ? f : first + i;
    if (f < 0 && cse_add(t, g, first + i) < 0) { free(canon); return -1; }
  }
  for (int i = 0; i < n_in; i++)
    if (xin[i] >= first) xin[i] = canon[xin[i] - first];
  free(canon);
  return 0;
}

/* Rewrites segment k: builds its inverse (if inverting) and recompute clones, inserted before
 * backward node `pos`, and redirects backward nodes from `pos` on to them. Both reuse equal nodes
 * earlier rewrites built (t), not only this one's. */
static int segment_rewrite(mf_graph *g, int k, int pos, int nb_end, bool invert, idmap *M, idlist *ins, cse_table *t,
                           char *err, size_t errlen) {
  mf_segment seg = g->segs[k]; /* copy: g->segs is stable, but keep it simple */
  int first_new = g->n;
  g->build_phase = MF_PHASE_RECOMPUTE;
  g->open_seg = -1;
  if (invert) {
    int outs[MF_MAX_SRC], xin[MF_MAX_SRC];
    for (int i = 0; i < seg.n_out; i++) outs[i] = idmap_get(M, seg.outs[i]);
    for (int i = 0; i < seg.n_in; i++) xin[i] = -1;
    seg.inverse(g, seg.ctx, seg.n_out, outs, seg.n_in, xin);
    if (g->err[0]) { snprintf(err, errlen, "plan: inverse of segment '%s' failed: %s", seg.name, g->err); return -1; }
    for (int i = 0; i < seg.n_in; i++)
      if (xin[i] < 0) { snprintf(err, errlen, "plan: inverse of segment '%s' did not rebuild input %d", seg.name, i); return -1; }
    if (idmap_grow(M, g->n) < 0 || cse_inverse(g, first_new, pos, t, seg.n_in, xin) < 0) goto oom;
    for (int i = 0; i < seg.n_in; i++) {
      const mf_node *a = &g->nodes[xin[i]], *b = &g->nodes[seg.ins[i]];
      if (!mf_shape_eq(a, b)) { snprintf(err, errlen, "plan: inverse of segment '%s' rebuilt input %d with another shape", seg.name, i); return -1; }
      M->m[seg.ins[i]] = xin[i];
    }
  }
  /* which inner nodes (not outputs) does backward from pos on still need? */
  int lo = seg.first, hi = seg.last, span = hi - lo + 1;
  uint8_t *needed = calloc((size_t)span, 1);
  if (!needed) goto oom;
  for (int id = pos; id < nb_end; id++) mark_inner_srcs(&g->nodes[id], &seg, M, needed);
  for (int id = hi; id >= lo; id--) /* and what those need, inside the segment */
    if (needed[id - lo]) mark_inner_srcs(&g->nodes[id], &seg, M, needed);
  for (int id = lo; id <= hi; id++) {
    if (!needed[id - lo] || is_leaf(&g->nodes[id])) continue;
    mf_node c = g->nodes[id];
    for (int j = 0; j < c.nsrc; j++) c.src[j] = idmap_get(M, c.src[j]);
    c.phase = MF_PHASE_RECOMPUTE;
    c.seg = -1;
    if (c.op == MF_OP_NORM) c.ip[3] = 1; /* a recompute must not update running statistics */
    int found = cse_find(t, g, &c, pos);
    if (found < 0) {
      int nid = mf_graph_add(g, c.op, c.dtype, c.ndim, c.ne, c.nsrc, c.src);
      if (nid < 0) { free(needed); snprintf(err, errlen, "plan: recompute of '%s': %s", seg.name, g->err); return -1; }
      c.requires_grad = g->nodes[nid].requires_grad;
      g->nodes[nid] = c;
      found = nid;
      if (cse_note(t, g, pos) < 0 || cse_add(t, g, nid) < 0) { free(needed); goto oom; }
    }
    if (idmap_grow(M, g->n) < 0) { free(needed); goto oom; }
    M->m[id] = found;
  }
  free(needed);
  g->build_phase = MF_PHASE_FWD;
  for (int q = first_new; q < g->n; q++)
    if (idlist_push(ins, q) < 0) goto oom;
  /* redirect backward from pos on */
  for (int id = pos; id < nb_end; id++) {
    mf_node *n = &g->nodes[id];
    for (int j = 0; j < n->nsrc; j++) n->src[j] = idmap_get(M, n->src[j]);
  }
  /* the rebuilt dense blocks' concat chains in one buffer each, like the forward's (plan/concat.c) */
  if (g->cat_root && mf_concat_alias(g, first_new, NULL) < 0) goto oom;
  return 0;
oom:
  snprintf(err, errlen, "plan: out of host memory");
  return -1;
}

/* True when an output of segment k is something the step needs only to invert the segment (the
 * targets do not read it, need0[] marks what they read before the rewrite). Inverting would make
 * the forward compute that output just to undo it in backward, so such a segment is recomputed
 * from its inputs instead: the forward skips that output, backward runs no inverse and the clones
 * it needs are the same; the price is keeping its inputs rather than its outputs. In the
 * steganography model these are the last hide block (y2 is dropped; its rho and eta are what the
 * reveal pass computes anyway) and the last reveal block (x1 is dropped). */
static bool has_unneeded_output(const mf_graph *g, int k, const uint8_t *need0) {
  const mf_segment *s = &g->segs[k];
  for (int i = 0; i < s->n_out; i++)
    if (!need0[s->outs[i]]) return true;
  return false;
}

int mf_program_build_train(mf_graph *g, int loss, int bwd_first, int bwd_end, int keep_all, const mf_plan_opts *o,
                           mf_program *pr, int *n_recomputed, char *err, size_t errlen) {
  int nf = g->n_fwd, nb0 = bwd_first, nb_end = bwd_end;
  idmap M = {0};
  idlist *ins = calloc((size_t)(nb_end - nb0 + 1), sizeof *ins); /* nodes inserted before backward node nb0+i */
  idlist order = {0}, targets = {0};
  uint8_t *need0 = calloc((size_t)(g->n ? g->n : 1), 1);
  cse_table t = {.base = g->n};
  int rc = -1;
  *n_recomputed = 0;
  if (!ins || !need0 || idmap_grow(&M, g->n) < 0 || idlist_push(&targets, loss) < 0) goto oom;
  for (int id = nb0; id < nb_end; id++)
    if (g->nodes[id].op == MF_OP_ACC_GRAD && idlist_push(&targets, id) < 0) goto oom;
  if (mark_needed(g, targets.v, targets.n, need0) < 0) goto oom;
  int nt0 = targets.n;
  for (int i = 0; i < o->n_keep; i++) /* kept tensors are read from the forward pass, as computed there */
    if (o->keep[i] >= 0 && o->keep[i] < g->n && (keep_all || need0[o->keep[i]]) && idlist_push(&targets, o->keep[i]) < 0) goto oom;
  if (mark_needed(g, targets.v + nt0, targets.n - nt0, need0) < 0) goto oom;
  for (int k = g->nseg - 1; k >= 0; k--) {
    if (!seg_wanted(o, k)) continue;
    int pos = -1;
    for (int id = nb0; id < nb_end && pos < 0; id++)
      if (g->nodes[id].seg == k && g->nodes[id].phase == MF_PHASE_BWD) pos = id;
    if (pos < 0) continue; /* nothing in this segment needs a gradient */
    bool invert = o->invertible && g->segs[k].inverse && !has_unneeded_output(g, k, need0);
    if (segment_rewrite(g, k, pos, nb_end, invert, &M, &ins[pos - nb0], &t, err, errlen) < 0) goto done;
    (*n_recomputed)++;
  }
  for (int id = 0; id < nf; id++)
    if (idlist_push(&order, id) < 0) goto oom;
  for (int id = nb0; id < nb_end; id++) {
    for (int q = 0; q < ins[id - nb0].n; q++)
      if (idlist_push(&order, ins[id - nb0].v[q]) < 0) goto oom;
    if (idlist_push(&order, id) < 0) goto oom;
  }
  if (program_emit(g, &order, targets.v, targets.n, pr) < 0) goto oom;
  rc = 0;
  goto done;
oom:
  snprintf(err, errlen, "plan: out of host memory");
  rc = -1;
done:
  if (ins) for (int i = 0; i < nb_end - nb0 + 1; i++) free(ins[i].v);
  free(ins);
  free(order.v);
  free(targets.v);
  free(need0);
  free(M.m);
  free(t.slot);
  free(t.at.v);
  return rc;
}

void mf_program_free(mf_program *pr) {
  free(pr->steps);
  free(pr->act_off);
  free(pr->ws_off);
  free(pr->ws_size);
  free(pr->live);
  memset(pr, 0, sizeof *pr);
}
