/* plan.c — assigns every tensor an arena and an offset before anything is allocated:
 * persistent arenas are packed in node order; the activation arena replays each program with a
 * best-fit allocator over tensor lifetimes (workspace lives only during its op), then places the same
 * blocks again knowing every lifetime (place.c) and keeps the smaller. The bytes it reports are exactly
 * what the runtime allocates and touches. */
#include "plan/plan.h"
#include "plan/fuse.h"
#include "plan/concat.h"
#include "plan/place.h"
#include "ops/ops.h"
#include "ops/autodiff.h"
#include <stdlib.h>
#include <string.h>

static size_t align_up(size_t x) { return (x + MF_ALIGN - 1) & ~(size_t)(MF_ALIGN - 1); }

const char *mf_arena_name(mf_arena_kind a) {
  static const char *nm[MF_ARENA_COUNT] = {"parameters", "param copy (low precision)", "gradients",
                                           "optimizer state", "activations + workspace", "data staging", "state"};
  return (unsigned)a < MF_ARENA_COUNT ? nm[a] : "?";
}

mf_arena_kind mf_node_arena(const mf_node *n) {
  switch (n->role) {
  case MF_ROLE_INPUT: return MF_ARENA_DATA;
  case MF_ROLE_PARAM: return MF_ARENA_PARAM;
  case MF_ROLE_BUFFER:
  case MF_ROLE_STATE_LP: return MF_ARENA_STATE;
  case MF_ROLE_PARAM_LP: return MF_ARENA_PARAM_LP;
  case MF_ROLE_GRAD: return MF_ARENA_GRAD;
  default: return MF_ARENA_ACT;
  }
}

int mf_optim_state_per_param(mf_optim_kind k) { return k == MF_SGD ? 1 : 2; }

mf_plan_opts mf_plan_opts_default(void) {
  mf_plan_opts o;
  memset(&o, 0, sizeof o);
  o.optim = MF_ADAMW;
  o.training = 1;
  o.recompute = MF_RECOMPUTE_NONE;
  o.invertible = 1;
  return o;
}

/* ---- best-fit allocator over one arena (offsets in MF_ALIGN units of bytes) ---- */
typedef struct fblock { size_t off, size; } fblock;
typedef struct falloc { fblock *b; int n, cap; size_t top; } falloc;

static int fa_insert(falloc *a, int at, fblock blk) {
  if (a->n == a->cap) {
    int cap = a->cap ? a->cap * 2 : 64;
    fblock *nb = realloc(a->b, (size_t)cap * sizeof *nb);
    if (!nb) return -1;
    a->b = nb;
    a->cap = cap;
  }
  memmove(a->b + at + 1, a->b + at, (size_t)(a->n - at) * sizeof *a->b);
  a->b[at] = blk;
  a->n++;
  return 0;
}
static void fa_remove(falloc *a, int at) {
  memmove(a->b + at, a->b + at + 1, (size_t)(a->n - at - 1) * sizeof *a->b);
  a->n--;
}
static int fa_alloc(falloc *a, size_t bytes, size_t *off) {
  size_t need = align_up(bytes ? bytes : 1);
  int best = -1;
  for (int i = 0; i < a->n; i++)
    if (a->b[i].size >= need && (best < 0 || a->b[i].size < a->b[best].size)) best = i;
  if (best >= 0) {
    *off = a->b[best].off;
    a->b[best].off += need;
    a->b[best].size -= need;
    if (!a->b[best].size) fa_remove(a, best);
    return 0;
  }
  if (a->n && a->b[a->n - 1].off + a->b[a->n - 1].size == a->top) { /* grow the last free block */
    *off = a->b[a->n - 1].off;
    fa_remove(a, a->n - 1);
  } else *off = a->top;
  a->top = *off + need;
  return 0;
}
static int fa_free(falloc *a, size_t off, size_t bytes) {
  size_t size = align_up(bytes ? bytes : 1);
  if (off + size == a->top) {
    a->top = off;
    if (a->n && a->b[a->n - 1].off + a->b[a->n - 1].size == a->top) {
      a->top = a->b[a->n - 1].off;
      fa_remove(a, a->n - 1);
    }
    return 0;
  }
  int at = 0;
  while (at < a->n && a->b[at].off < off) at++;
  bool merge_prev = at > 0 && a->b[at - 1].off + a->b[at - 1].size == off;
  bool merge_next = at < a->n && off + size == a->b[at].off;
  if (merge_prev && merge_next) {
    a->b[at - 1].size += size + a->b[at].size;
    fa_remove(a, at);
  } else if (merge_prev) a->b[at - 1].size += size;
  else if (merge_next) { a->b[at].off = off; a->b[at].size += size; }
  else return fa_insert(a, at, (fblock){off, size});
  return 0;
}

/* The concat group whose buffer stores node id in this program (plan/concat.c), or -1: own storage. A group is
 * used only in a program that runs its root concat (active[root]). */
static int group_of(const mf_plan *p, const uint8_t *active, int id) {
  const mf_graph *g = p->g;
  if (!g->cat_root || id >= g->cat_n || g->cat_root[id] < 0) return -1;
  return active[g->cat_root[id]] ? g->cat_root[id] : -1;
}

/* Replays program pr: gives each ACT node an offset and each step's workspace one. A concat group's buffer (its
 * root's bytes) is allocated when its first member is computed and freed after the last step that computes or reads
 * any member; each member lies at its offset in it. */
static int program_place(mf_plan *p, mf_program *pr, const int *keep_until_end, int n_keep, size_t floor) {
  mf_graph *g = p->g;
  int N = g->n, S = pr->n_steps;
  int *last = malloc((size_t)N * sizeof *last);
  int *glast = malloc((size_t)N * sizeof *glast);   /* per group root: its buffer's last step */
  size_t *goff = malloc((size_t)N * sizeof *goff);  /* per group root: its buffer's offset, MF_NO_OFFSET before */
  uint8_t *active = calloc((size_t)N, 1), *gdone = calloc((size_t)N, 1);
  pr->act_off = malloc((size_t)N * sizeof *pr->act_off);
  pr->ws_off = calloc((size_t)(S ? S : 1), sizeof *pr->ws_off);
  pr->ws_size = calloc((size_t)(S ? S : 1), sizeof *pr->ws_size);
  pr->live = calloc((size_t)(S ? S : 1), sizeof *pr->live);
  falloc fa = {0};
  size_t live = 0;
  /* every block placed, with its lifetime, for the second placement below */
  mf_block *blk = malloc((size_t)(N + S + 1) * sizeof *blk);
  int *blk_of = malloc((size_t)(N ? N : 1) * sizeof *blk_of), nblk = 0;
  int *blk_id = malloc((size_t)(N + S + 1) * sizeof *blk_id); /* node id; N + root: a concat group's buffer;
                                                                 -1 - step: a workspace */
  if (!last || !glast || !goff || !active || !gdone || !pr->act_off || !pr->ws_off || !pr->ws_size || !pr->live || !blk ||
      !blk_of || !blk_id)
    goto oom;
  for (int i = 0; i < N; i++) { last[i] = glast[i] = -1; pr->act_off[i] = goff[i] = MF_NO_OFFSET; }
  for (int s = 0; s < S; s++) {
    const mf_node *n = &g->nodes[pr->steps[s]];
    for (int j = 0; j < n->nsrc; j++) last[n->src[j]] = s;
    if (g->cat_root && pr->steps[s] < g->cat_n && g->cat_root[pr->steps[s]] == pr->steps[s]) active[pr->steps[s]] = 1;
  }
  for (int i = 0; i < n_keep; i++)
    if (keep_until_end[i] >= 0 && keep_until_end[i] < N) last[keep_until_end[i]] = S;
  for (int s = 0; s < S; s++) { /* a group's buffer lives from its first member's step to the last use of any */
    int id = pr->steps[s], r = group_of(p, active, id);
    if (r < 0) continue;
    int l = last[id] > s ? last[id] : s;
    if (l > glast[r]) glast[r] = l;
  }
  size_t extent = 0;
  pr->peak_step = 0;
  for (int s = 0; s < S; s++) {
    int id = pr->steps[s];
    const mf_node *n = &g->nodes[id];
    int r = group_of(p, active, id);
    size_t before = extent;
    if (mf_node_arena(n) == MF_ARENA_ACT && r >= 0) {
      if (goff[r] == MF_NO_OFFSET) {
        size_t b = mf_node_bytes(&g->nodes[r]);
        if (fa_alloc(&fa, b, &goff[r]) < 0) goto oom;
        blk_id[nblk] = N + r;
        blk[nblk++] = (mf_block){s, glast[r], align_up(b ? b : 1), b};
        if (goff[r] + b > extent) extent = goff[r] + b;
        live += align_up(b ? b : 1);
      }
      pr->act_off[id] = goff[r] + (id == r ? 0 : g->cat_off[id]);
    } else if (mf_node_arena(n) == MF_ARENA_ACT) {
      size_t b = mf_node_bytes(n), off;
      if (fa_alloc(&fa, b, &off) < 0) goto oom;
      pr->act_off[id] = off;
      blk_of[id] = nblk;
      blk_id[nblk] = id;
      blk[nblk++] = (mf_block){s, S, align_up(b ? b : 1), b}; /* last: set where it is freed (kept: to the end) */
      if (off + b > extent) extent = off + b;
      live += align_up(b ? b : 1);
    }
    size_t ws = p->be->workspace(g, n);
    if (ws) {
      size_t off;
      if (fa_alloc(&fa, ws, &off) < 0) goto oom;
      pr->ws_off[s] = off;
      pr->ws_size[s] = ws;
      blk_id[nblk] = -1 - s;
      blk[nblk++] = (mf_block){s, s, align_up(ws), ws};
      if (off + ws > extent) extent = off + ws;
      pr->live[s] = live + align_up(ws);
      if (fa_free(&fa, off, ws) < 0) goto oom;
    }
    if (!ws) pr->live[s] = live;
    if (extent > before) pr->peak_step = s;
    /* free what dies here: inputs read for the last time, and outputs nobody reads */
    for (int j = 0; j < n->nsrc; j++) {
      int sid = n->src[j];
      bool dup = false;
      for (int q = 0; q < j; q++) dup |= n->src[q] == sid;
      if (!dup && last[sid] == s && pr->act_off[sid] != MF_NO_OFFSET && group_of(p, active, sid) < 0) {
        size_t b = mf_node_bytes(&g->nodes[sid]);
        blk[blk_of[sid]].last = s;
        if (fa_free(&fa, pr->act_off[sid], b) < 0) goto oom;
        live -= align_up(b ? b : 1);
      }
    }
    if (last[id] < 0 && pr->act_off[id] != MF_NO_OFFSET && r < 0) {
      blk[blk_of[id]].last = s;
      if (fa_free(&fa, pr->act_off[id], mf_node_bytes(n)) < 0) goto oom;
      live -= align_up(mf_node_bytes(n) ? mf_node_bytes(n) : 1);
    }
    /* and the group buffers whose last use this step is */
    for (int j = -1; j < n->nsrc; j++) {
      int q = group_of(p, active, j < 0 ? id : n->src[j]);
      if (q < 0 || glast[q] != s || gdone[q] || goff[q] == MF_NO_OFFSET) continue;
      size_t b = mf_node_bytes(&g->nodes[q]);
      if (fa_free(&fa, goff[q], b) < 0) goto oom;
      live -= align_up(b ? b : 1);
      gdone[q] = 1;
    }
  }
  pr->act_peak = extent;
  /* The second placement, with every lifetime known (place.c): kept when its extent is smaller, but not below
   * `floor` when the replay reached it (the evaluation program's extent, for phase 0: the training step then still
   * sets the arena, and a training run touches all of it, as measured == planned says). The peak is then the step
   * with the most bytes live. */
  size_t max_live = 0;
  for (int st = 0; st < S; st++)
    if (pr->live[st] > max_live) max_live = pr->live[st];
  size_t *boff = malloc((size_t)(nblk ? nblk : 1) * sizeof *boff);
  if (!boff) goto oom;
  /* not when the replay is within 0.5% of the bytes live at its fullest step (no placement can go below that) */
  size_t ext2 = extent - extent / 200 <= max_live ? extent : mf_place_blocks(nblk, blk, S, extent, boff);
  if (ext2 == (size_t)-1) { free(boff); goto oom; }
  if (ext2 < extent && (ext2 >= floor || extent < floor)) {
    for (int i = 0; i < nblk; i++) {
      if (blk_id[i] >= N) goff[blk_id[i] - N] = boff[i];
      else if (blk_id[i] >= 0) pr->act_off[blk_id[i]] = boff[i];
      else pr->ws_off[-1 - blk_id[i]] = boff[i];
    }
    for (int st = 0; st < S; st++) { /* a concat group's members: at their offsets in the moved buffer */
      int id = pr->steps[st], r = group_of(p, active, id);
      if (r >= 0 && mf_node_arena(&g->nodes[id]) == MF_ARENA_ACT) pr->act_off[id] = goff[r] + (id == r ? 0 : g->cat_off[id]);
    }
    pr->act_peak = ext2;
    for (int st = 0; st < S; st++)
      if (pr->live[st] > pr->live[pr->peak_step]) pr->peak_step = st;
  }
  free(boff);
  free(blk); free(blk_of); free(blk_id);
  free(fa.b);
  free(last);
  free(glast);
  free(goff);
  free(active);
  free(gdone);
  return 0;
oom:
  free(blk); free(blk_of); free(blk_id);
  free(fa.b);
  free(last);
  free(glast);
  free(goff);
  free(active);
  free(gdone);
  return -1;
}

/* The tensors the training step keeps alive to its end: the caller's (mf_plan_opts.keep) and what rings
 * take after each micro-step (mf_ring_push), which the session copies once backward is done.
 * Returns a malloc'd list in *out (count in *n), or -1. */
static int train_keep_list(const mf_plan *p, int **out, int *n) {
  const mf_graph *g = p->g;
  int cnt = p->opts.n_keep;
  for (int id = 0; id < g->n; id++)
    cnt += g->nodes[id].role == MF_ROLE_BUFFER && g->nodes[id].state_kind == MF_STATE_RING_POS && g->nodes[id].ip[0] >= 0;
  int *k = malloc((size_t)(cnt ? cnt : 1) * sizeof *k);
  if (!k) return -1;
  int i = 0;
  for (; i < p->opts.n_keep; i++) k[i] = p->opts.keep[i];
  for (int id = 0; id < g->n; id++)
    if (g->nodes[id].role == MF_ROLE_BUFFER && g->nodes[id].state_kind == MF_STATE_RING_POS && g->nodes[id].ip[0] >= 0)
      k[i++] = mf_node_alias_root(g, g->nodes[id].ip[0]);
  *out = k;
  *n = cnt;
  return 0;
}

/* A detach has no storage of its own: every reader (and kept tensor, and loss) is pointed at the tensor it
 * detaches, so that tensor simply lives until the detach's last reader and no copy runs. Autodiff has
 * already treated it as a constant. */
static void detach_alias(mf_plan *p) {
  mf_graph *g = p->g;
  for (int id = 0; id < g->n; id++) {
    mf_node *n = &g->nodes[id];
    for (int j = 0; j < n->nsrc; j++) n->src[j] = mf_node_alias_root(g, n->src[j]);
  }
  for (int k = 0; k < g->nseg; k++) {
    mf_segment *sg = &g->segs[k];
    for (int i = 0; i < sg->n_in; i++) sg->ins[i] = mf_node_alias_root(g, sg->ins[i]);
    for (int i = 0; i < sg->n_out; i++) sg->outs[i] = mf_node_alias_root(g, sg->outs[i]);
  }
  for (int i = 0; i < p->opts.n_keep; i++) p->keep_ids[i] = mf_node_alias_root(g, p->keep_ids[i]);
  for (int k = 0; k < p->n_phases; k++) p->phase[k].loss = mf_node_alias_root(g, p->phase[k].loss);
  p->loss = p->phase[0].loss;
}

static void peak_describe(const mf_graph *g, const mf_program *pk, char *buf, size_t n) {
  buf[0] = 0;
  if (!pk->n_steps) return;
  const mf_node *nd = &g->nodes[pk->steps[pk->peak_step]];
  snprintf(buf, n, "%s '%s' (%s, step %d of %d)", mf_op_name(nd->op), nd->name,
           nd->phase == MF_PHASE_FWD ? "forward" : nd->phase == MF_PHASE_BWD ? "backward" : "backward, recompute",
           pk->peak_step + 1, pk->n_steps);
}

/* Bytes of a phase's forward activations that need no gradient in it, and how many of them backward still
 * reads (a weight gradient's input); the others die at their last forward use. */
static int nograd_count(const mf_graph *g, mf_plan_phase *ph) {
  const mf_program *pr = ph->prog;
  ph->nograd_bytes = ph->nograd_kept = 0;
  if (!ph->rg) return 0;
  int *last = malloc((size_t)(g->n ? g->n : 1) * sizeof *last); /* the step that reads a node last */
  if (!last) return -1;
  for (int i = 0; i < g->n; i++) last[i] = -1;
  for (int s = 0; s < pr->n_steps; s++) {
    const mf_node *n = &g->nodes[pr->steps[s]];
    for (int j = 0; j < n->nsrc; j++) last[n->src[j]] = s;
  }
  for (int s = 0; s < pr->n_steps; s++) {
    int id = pr->steps[s];
    const mf_node *n = &g->nodes[id];
    if (id >= g->n_fwd || mf_node_arena(n) != MF_ARENA_ACT || ph->rg[id]) continue;
    ph->nograd_bytes += mf_node_bytes(n);
    if (last[id] >= 0 && g->nodes[pr->steps[last[id]]].phase != MF_PHASE_FWD) ph->nograd_kept += mf_node_bytes(n);
  }
  free(last);
  return 0;
}

/* ZeRO-1: the gradient arena padded to a multiple of ranks x MF_ALIGN and cut into equal slices, one per rank; each
 * rank's optimizer state covers the parameter elements whose gradients lie in its slice. The OPT arena is the
 * largest rank's (every rank plans the same bytes); the offsets are this rank's. */
static int shard_layout(mf_plan *p, char *err, size_t errlen) {
  const mf_graph *g = p->g;
  int R = p->opts.ranks, me = p->opts.rank, sp = mf_optim_state_per_param(p->opts.optim);
  if (me < 0 || me >= R) { snprintf(err, errlen, "plan: rank %d is not in 0 .. %d", me, R - 1); return -1; }
  if (p->n_phases > 1) { snprintf(err, errlen, "plan: --shard-optimizer (ZeRO-1) does not work with a step of several phases yet"); return -1; }
  for (int id = 0; id < g->n; id++)
    if (g->nodes[id].op == MF_OP_PARAM && g->nodes[id].link >= 0 && g->nodes[id].grad >= 0) {
      snprintf(err, errlen, "plan: --shard-optimizer (ZeRO-1) does not work with a model that grows (parameter '%s' is tied to a "
               "mask) yet", g->nodes[id].name);
      return -1;
    }
  size_t unit = (size_t)R * MF_ALIGN, S = (p->arena[MF_ARENA_GRAD] + unit - 1) / unit * unit;
  p->arena[MF_ARENA_GRAD] = S;
  p->shard_bytes = S / (size_t)R;
  free(p->shard_lo);
  free(p->shard_n);
  p->shard_lo = calloc((size_t)(g->n ? g->n : 1), sizeof *p->shard_lo);
  p->shard_n = calloc((size_t)(g->n ? g->n : 1), sizeof *p->shard_n);
  if (!p->shard_lo || !p->shard_n) { snprintf(err, errlen, "plan: out of host memory"); return -1; }
  size_t most = 0;
  for (int r = 0; r < R; r++) {
    size_t lo = (size_t)r * p->shard_bytes, hi = lo + p->shard_bytes, cur = 0;
    for (int id = 0; id < g->n; id++) {
      const mf_node *n = &g->nodes[id];
      if (n->op != MF_OP_PARAM || n->grad < 0) continue;
      size_t go = p->pers_off[n->grad], ge = go + mf_node_bytes(n), a = go > lo ? go : lo, b = ge < hi ? ge : hi;
      int64_t e0 = a < b ? (int64_t)((a - go) / sizeof(float)) : 0, k = a < b ? (int64_t)((b - a) / sizeof(float)) : 0;
      if (r == me) {
        p->shard_lo[id] = e0;
        p->shard_n[id] = k;
        p->opt_off[id] = k ? cur : MF_NO_OFFSET;
      }
      if (k) cur += align_up((size_t)sp * (size_t)k * sizeof(float));
    }
    if (cur > most) most = cur;
  }
  p->arena[MF_ARENA_OPT] = most;
  return 0;
}

/* The in-place concatenation pass (plan/concat.c) on the whole graph. Pinned: what lives far past a dense block
 * (kept tensors, the boundaries of segments the step recomputes or inverts: kept from forward to backward), which
 * would keep a whole chain's buffer alive with it; those keep their own storage. */
static int concat_pass(mf_plan *p, const int *keep, int n_keep) {
  mf_graph *g = p->g;
  uint8_t *pinned = calloc((size_t)(g->n ? g->n : 1), 1);
  if (!pinned) return -1;
  for (int i = 0; i < n_keep; i++)
    if (keep[i] >= 0 && keep[i] < g->n) pinned[keep[i]] = 1;
  for (int k = 0; k < g->nseg && p->has_train; k++) {
    const mf_segment *sg = &g->segs[k];
    bool recomputed = p->opts.recompute == MF_RECOMPUTE_ALL ||
                      (p->opts.recompute == MF_RECOMPUTE_SELECTED && p->opts.segment_mask && p->opts.segment_mask[k]);
    for (int i = 0; recomputed && i < sg->n_in; i++) pinned[sg->ins[i]] = 1;
    for (int i = 0; recomputed && i < sg->n_out; i++) pinned[sg->outs[i]] = 1;
  }
  int rc = mf_concat_alias(g, 0, pinned);
  free(pinned);
  return rc < 0 ? -1 : 0;
}

int mf_plan_build(mf_plan *p, char *err, size_t errlen) {
  mf_graph *g = p->g;
  int *tkeep = NULL, n_tkeep = 0;
  /* an all-gather's output holds the rows of every rank: it must be built for the job's ranks */
  int ranks = p->opts.ranks > 1 ? p->opts.ranks : 1;
  for (int id = 0; id < g->n; id++)
    if (g->nodes[id].op == MF_OP_ALLGATHER && g->nodes[id].ip[0] != ranks) {
      snprintf(err, errlen, "plan: all-gather '%s' was built for %d rank(s) but the plan is for %d (mf_plan_opts.ranks): build the "
                            "graph for the job's ranks", g->nodes[id].name, g->nodes[id].ip[0], ranks);
      return -1;
    }
  /* conv -> ReLU and norm -> ReLU pairs into one kernel where the backend takes it (the ReLU becomes a detach, aliased next);
   * MEMFIT_FUSE=0 turns it off (to compare) */
  const char *fz = getenv("MEMFIT_FUSE");
  if (p->be->fuses_conv_act && !(fz && !strcmp(fz, "0"))) {
    g->fuse_norm_act = p->be->fuses_norm_act;
    if (train_keep_list(p, &tkeep, &n_tkeep) < 0 || mf_fuse_conv_act(g, tkeep, n_tkeep) < 0) {
      free(tkeep);
      snprintf(err, errlen, "plan: out of host memory");
      return -1;
    }
    free(tkeep);
    tkeep = NULL;
    g->fuse_conv_act = 1;
  }
  detach_alias(p);
  if (train_keep_list(p, &tkeep, &n_tkeep) < 0) { snprintf(err, errlen, "plan: out of host memory"); return -1; }
  /* concat chains stored in their root's buffer where the backend takes it; MEMFIT_CONCAT_ALIAS=0 turns it off */
  const char *ca = getenv("MEMFIT_CONCAT_ALIAS");
  if (p->be->aliases_concat && !(ca && !strcmp(ca, "0")) && concat_pass(p, tkeep, n_tkeep) < 0) {
    free(tkeep);
    snprintf(err, errlen, "plan: out of host memory");
    return -1;
  }
  mf_plan_opts to = p->opts; /* the training step's view: ring pushes kept too */
  to.keep = tkeep;
  to.n_keep = n_tkeep;
  for (int k = 0; k < p->n_phases && p->has_train; k++) { /* the parameters each phase trains */
    mf_plan_phase *ph = &p->phase[k];
    if (!(ph->trains = calloc((size_t)(g->n ? g->n : 1), 1))) { free(tkeep); snprintf(err, errlen, "plan: out of host memory"); return -1; }
    for (int id = ph->bwd_first; id < ph->bwd_end; id++)
      if (g->nodes[id].op == MF_OP_ACC_GRAD) ph->trains[g->nodes[id].master] = 1;
  }
  p->n_recomputed = 0;
  for (int k = 0; k < p->n_phases && p->has_train; k++) { /* phase 0 keeps every kept tensor, later phases the ones they compute */
    mf_plan_phase *ph = &p->phase[k];
    ph->prog = k ? &ph->own : &p->train;
    int nrec = 0;
    if (mf_program_build_train(g, ph->loss, ph->bwd_first, ph->bwd_end, k == 0, &to, ph->prog, &nrec, err, errlen) < 0) {
      free(tkeep);
      return -1;
    }
    if (nrec > p->n_recomputed) p->n_recomputed = nrec;
  }
  if (mf_program_build_fwd(g, p->loss, &p->opts, &p->fwd, err, errlen) < 0) { free(tkeep); return -1; }
  /* every node's implementation (a CPU conv: oneDNN or memfit's GEMM algorithms), chosen here once: the
   * workspaces below and the kernels at run time follow it */
  for (int id = 0; id < g->n && p->be->choose; id++) p->be->choose(g, &g->nodes[id], p->opts.threads);
  int N = g->n;
  p->pers_off = malloc((size_t)N * sizeof *p->pers_off);
  p->opt_off = malloc((size_t)N * sizeof *p->opt_off);
  if (!p->pers_off || !p->opt_off) { free(tkeep); snprintf(err, errlen, "plan: out of host memory"); return -1; }
  size_t cursor[MF_ARENA_COUNT] = {0};
  memset(p->arena, 0, sizeof p->arena);
  int sp = mf_optim_state_per_param(p->opts.optim);
  for (int id = 0; id < N; id++) {
    const mf_node *n = &g->nodes[id];
    p->pers_off[id] = p->opt_off[id] = MF_NO_OFFSET;
    mf_arena_kind a = mf_node_arena(n);
    if (a == MF_ARENA_ACT) continue;
    if (n->role == MF_ROLE_GRAD && !p->has_train) continue;
    if (n->role == MF_ROLE_GRAD && g->nodes[n->master].grad != id) { /* another contribution: same storage */
      p->pers_off[id] = p->pers_off[g->nodes[n->master].grad];
      continue;
    }
    size_t b = mf_node_bytes(n);
    p->pers_off[id] = cursor[a];
    p->arena[a] = cursor[a] + b;
    cursor[a] += align_up(b);
    if (n->role == MF_ROLE_PARAM && n->grad >= 0 && p->has_train) { /* only parameters some phase trains */
      size_t ob = (size_t)sp * (size_t)mf_node_numel(n) * sizeof(float);
      p->opt_off[id] = cursor[MF_ARENA_OPT];
      p->arena[MF_ARENA_OPT] = cursor[MF_ARENA_OPT] + ob;
      cursor[MF_ARENA_OPT] += align_up(ob);
    }
  }
  if (p->opts.ranks > 1 && p->opts.shard_optimizer && p->has_train && shard_layout(p, err, errlen) < 0) { free(tkeep); return -1; }
  /* inputs: input_slots copies, back to back, so the next batch can land while a step reads one */
  p->input_slot_bytes = cursor[MF_ARENA_DATA];
  if (p->arena[MF_ARENA_DATA]) p->arena[MF_ARENA_DATA] += (size_t)(p->input_slots - 1) * p->input_slot_bytes;
  /* inputs not stored as f32 are converted on the host before an asynchronous copy: a host mirror of
   * the DATA arena (same offsets), page-locked; only when some input needs it */
  p->input_convert_bytes = 0;
  for (int id = 0; id < N && p->be->stage_copy && p->input_slots == 2; id++)
    if (g->nodes[id].role == MF_ROLE_INPUT && g->nodes[id].dtype != MF_F32) p->input_convert_bytes = p->arena[MF_ARENA_DATA];
  int nk = 1 + n_tkeep;
  int *keep = malloc((size_t)nk * sizeof *keep);
  if (!keep) { free(tkeep); snprintf(err, errlen, "plan: out of host memory"); return -1; }
  for (int i = 0; i < n_tkeep; i++) keep[1 + i] = tkeep[i];
  int rc = 0;
  /* the forward (evaluation) program first: its extent is phase 0's floor (program_place) */
  int *fkeep = malloc((size_t)(1 + p->opts.n_keep) * sizeof *fkeep);
  if (!fkeep) rc = -1;
  else {
    fkeep[0] = p->loss;
    for (int i = 0; i < p->opts.n_keep; i++) fkeep[1 + i] = p->opts.keep[i];
    rc |= program_place(p, &p->fwd, fkeep, 1 + p->opts.n_keep, 0); /* evaluation pushes nothing: the caller's keeps only */
    free(fkeep);
  }
  for (int k = 0; k < p->n_phases && p->has_train && !rc; k++) { /* each phase: its own offsets in the one ACT arena */
    keep[0] = p->phase[k].loss;
    rc |= program_place(p, p->phase[k].prog, keep, nk, k == 0 ? p->fwd.act_peak : 0);
  }
  free(keep);
  free(tkeep);
  if (rc) { snprintf(err, errlen, "plan: out of host memory"); return -1; }
  /* the ACT arena: the largest of the programs (phase 0 wins a tie with the forward program, as it always
   * did; a later phase only when strictly larger) */
  size_t act = p->fwd.act_peak;
  const mf_program *pk = &p->fwd;
  p->peak_phase = -1;
  for (int k = 0; k < p->n_phases && p->has_train; k++) {
    mf_plan_phase *ph = &p->phase[k];
    peak_describe(g, ph->prog, ph->peak_desc, sizeof ph->peak_desc);
    if (nograd_count(g, ph) < 0) { snprintf(err, errlen, "plan: out of host memory"); return -1; }
    if (ph->prog->act_peak > act || (k == 0 && ph->prog->act_peak >= act)) {
      act = ph->prog->act_peak;
      pk = ph->prog;
      p->peak_phase = k;
    }
  }
  p->arena[MF_ARENA_ACT] = act;
  peak_describe(g, pk, p->peak_desc, sizeof p->peak_desc);
  if (p->n_phases > 1 && p->peak_phase >= 0 && p->peak_desc[0]) {
    size_t l = strlen(p->peak_desc);
    snprintf(p->peak_desc + l, sizeof p->peak_desc - l, " in phase '%s'", p->phase[p->peak_phase].name);
  }
  if (mf_plan_buckets(p) < 0) { snprintf(err, errlen, "plan: out of host memory"); return -1; }
  return 0;
}

/* Data parallel: the gradient arena cut into all-reduce buckets of at most bucket_bytes (a parameter larger
 * than that is a bucket of its own), in arena order, which is the order backward first writes the
 * gradients. A bucket is final after the last accumulation into any of its gradients; the session starts
 * its all-reduce there, while the rest of backward runs. The buckets are views of the gradient arena, which
 * is contiguous: no bytes beyond it. */
int mf_plan_buckets(mf_plan *p) {
  free(p->buckets);
  p->buckets = NULL;
  p->n_buckets = 0;
  if (p->opts.ranks <= 1 || !p->has_train || !p->arena[MF_ARENA_GRAD] || p->shard_bytes) return 0;
  const mf_graph *g = p->g;
  size_t cap = p->opts.bucket_bytes ? p->opts.bucket_bytes : (size_t)25 << 20;
  int *last = malloc((size_t)(g->n ? g->n : 1) * sizeof *last); /* per gradient storage node: its last step */
  int *order = malloc((size_t)(g->n ? g->n : 1) * sizeof *order);
  p->buckets = malloc((size_t)(g->n ? g->n : 1) * sizeof *p->buckets);
  if (!last || !order || !p->buckets) { free(last); free(order); return -1; }
  for (int id = 0; id < g->n; id++) last[id] = -1;
  const mf_program *pr = &p->train;
  for (int i = 0; i < pr->n_steps && p->n_phases == 1; i++) {
    const mf_node *n = &g->nodes[pr->steps[i]];
    if (n->op == MF_OP_ACC_GRAD) last[g->nodes[n->master].grad] = i;
  }
  int n_ord = 0; /* gradient storages in arena order (node order: offsets grow with it) */
  for (int id = 0; id < g->n; id++) {
    const mf_node *n = &g->nodes[id];
    if (n->role == MF_ROLE_GRAD && g->nodes[n->master].grad == id && p->pers_off[id] != MF_NO_OFFSET) order[n_ord++] = id;
  }
  for (int i = 0; i < n_ord;) {
    struct mf_grad_bucket *b = &p->buckets[p->n_buckets++];
    b->off = p->pers_off[order[i]];
    b->ready_step = last[order[i]];
    size_t end = b->off + mf_node_bytes(&g->nodes[order[i]]);
    for (i++; i < n_ord; i++) {
      size_t e = p->pers_off[order[i]] + mf_node_bytes(&g->nodes[order[i]]);
      if (e - b->off > cap) break;
      end = e;
      int l = last[order[i]];
      if (b->ready_step >= 0) b->ready_step = l < 0 ? -1 : l > b->ready_step ? l : b->ready_step;
    }
    b->bytes = end - b->off;
  }
  /* a bucket with a gradient the program never writes (-1) waits for the end of backward */
  for (int k = 0; k < p->n_buckets && p->n_phases > 1; k++) p->buckets[k].ready_step = -1;
  free(last);
  free(order);
  return 0;
}

/* The plan works on its own copy of the graph: the recompute rewrite edits nodes. */
static mf_graph *graph_copy(const mf_graph *g) {
  mf_graph *c = malloc(sizeof *c);
  if (!c) return NULL;
  *c = *g;
  c->nodes = malloc((size_t)(g->cap ? g->cap : 1) * sizeof *c->nodes);
  c->segs = malloc((size_t)(g->segcap ? g->segcap : 1) * sizeof *c->segs);
  if (!c->nodes || !c->segs) { free(c->nodes); free(c->segs); free(c); return NULL; }
  memcpy(c->nodes, g->nodes, (size_t)g->n * sizeof *c->nodes);
  if (g->nseg) memcpy(c->segs, g->segs, (size_t)g->nseg * sizeof *c->segs);
  return c;
}

/* Whether some parameter is in the group. */
static bool group_has_params(const mf_graph *g, int group) {
  for (int id = 0; id < g->n; id++)
    if (g->nodes[id].op == MF_OP_PARAM && g->nodes[id].group == group) return true;
  return false;
}

/* Checks the phases (strict: mf_plan_init_phases; mf_plan_init keeps its old leniency: a loss that
 * depends on no parameter plans a step that trains nothing). */
static int phases_check(const mf_graph *g, int n, const mf_phase_opts *ph, char *err, size_t errlen) {
  if (n < 1 || n > MF_MAX_PHASES || !ph) {
    snprintf(err, errlen, "plan: %d phases: expected 1 to %d (and their options)", n, MF_MAX_PHASES);
    return -1;
  }
  for (int k = 0; k < n; k++) {
    char nm[MF_NAME_LEN];
    snprintf(nm, sizeof nm, "%s", ph[k].name ? ph[k].name : "");
    if (!nm[0]) snprintf(nm, sizeof nm, "phase %d", k);
    if (ph[k].loss < 0 || ph[k].loss >= g->n) {
      snprintf(err, errlen, "plan: phase '%s': the loss (tensor %d) is not a tensor of this graph", nm, ph[k].loss);
      return -1;
    }
    const mf_node *l = &g->nodes[ph[k].loss];
    if (mf_node_numel(l) != 1) {
      char sh[64];
      mf_shape_str(l, sh, sizeof sh);
      snprintf(err, errlen, "plan: phase '%s': the loss '%s' must be a scalar (one element), got shape %s", nm, l->name, sh);
      return -1;
    }
    for (int b = 0; b < 32; b++) {
      if (!(ph[k].groups >> b & 1u)) continue;
      if (b >= MF_MAX_PARAM_GROUPS) {
        snprintf(err, errlen, "plan: phase '%s': groups mask 0x%x names group %d; groups are 0 .. %d", nm, ph[k].groups, b,
                 MF_MAX_PARAM_GROUPS - 1);
        return -1;
      }
      if (!group_has_params(g, b)) {
        snprintf(err, errlen, "plan: phase '%s': groups mask 0x%x names group %d, which has no parameters "
                              "(mf_param_group_set puts parameters in a group)", nm, ph[k].groups, b);
        return -1;
      }
    }
  }
  return 0;
}

static mf_plan *plan_init(mf_graph *g, int n_phases, const mf_phase_opts *ph, int strict, const mf_plan_opts *o, char *err,
                          size_t errlen) {
  if (mf_graph_error(g)) { snprintf(err, errlen, "plan: the graph has an error: %s", g->err); return NULL; }
  if (strict && phases_check(g, n_phases, ph, err, errlen) < 0) return NULL;
  if (!strict && (ph[0].loss < 0 || ph[0].loss >= g->n)) { snprintf(err, errlen, "plan: the loss is not a tensor of this graph"); return NULL; }
  if (strict && n_phases > 1 && g->n_fwd) {
    snprintf(err, errlen, "plan: the graph was already differentiated (mf_autodiff); phases need a graph without backward");
    return NULL;
  }
  mf_plan *p = calloc(1, sizeof *p);
  if (!p) { snprintf(err, errlen, "plan: out of host memory"); return NULL; }
  p->opts = o ? *o : mf_plan_opts_default();
  p->be = mf_backend_get(p->opts.backend, err, errlen);
  if (!p->be) { free(p); return NULL; }
  p->input_slots = p->opts.input_slots ? p->opts.input_slots : p->be->stage_copy ? 2 : 1;
  if (p->input_slots < 1 || p->input_slots > 2) {
    snprintf(err, errlen, "plan: input_slots must be 1 or 2 (got %d)", p->opts.input_slots);
    free(p);
    return NULL;
  }
  if (p->opts.n_keep < 0) p->opts.n_keep = 0;
  p->keep_ids = malloc((size_t)(p->opts.n_keep ? p->opts.n_keep : 1) * sizeof *p->keep_ids);
  if (!p->keep_ids) { free(p); snprintf(err, errlen, "plan: out of host memory"); return NULL; }
  for (int i = 0; i < p->opts.n_keep; i++) p->keep_ids[i] = p->opts.keep[i];
  p->opts.keep = p->keep_ids;
  p->n_phases = n_phases;
  for (int k = 0; k < n_phases; k++) {
    mf_plan_phase *q = &p->phase[k];
    snprintf(q->name, sizeof q->name, "%s", ph[k].name ? ph[k].name : "");
    if (!q->name[0]) snprintf(q->name, sizeof q->name, "phase %d", k);
    q->loss = ph[k].loss;
    q->groups = ph[k].groups;
    q->seed = -1;
  }
  p->loss = ph[0].loss;
  p->has_train = p->opts.training;
  p->g = graph_copy(g);
  if (!p->g) { free(p->keep_ids); free(p); snprintf(err, errlen, "plan: out of host memory"); return NULL; }
  if (p->has_train && !p->g->n_fwd) {
    for (int k = 0; k < n_phases; k++) {
      mf_plan_phase *q = &p->phase[k];
      q->rg = malloc((size_t)(p->g->n ? p->g->n : 1));
      if (!q->rg) { snprintf(err, errlen, "plan: out of host memory"); mf_plan_free(p); return NULL; }
      q->bwd_first = p->g->n;
      q->seed = mf_autodiff_phase(p->g, q->loss, q->groups, q->rg);
      q->bwd_end = p->g->n;
      if (q->seed < 0) {
        if (n_phases > 1) snprintf(err, errlen, "plan: phase '%s': %s", q->name, p->g->err);
        else snprintf(err, errlen, "%s", p->g->err);
        mf_plan_free(p);
        return NULL;
      }
      int acc = 0;
      for (int id = q->bwd_first; id < q->bwd_end; id++) acc += p->g->nodes[id].op == MF_OP_ACC_GRAD;
      if (strict && !acc) {
        char gs[96] = "every group";
        if (q->groups) {
          size_t o_ = (size_t)snprintf(gs, sizeof gs, "group");
          for (int b = 0; b < MF_MAX_PARAM_GROUPS && o_ < sizeof gs; b++)
            if (q->groups >> b & 1u) o_ += (size_t)snprintf(gs + o_, sizeof gs - o_, " %d", b);
        }
        snprintf(err, errlen, "plan: phase '%s' trains no parameter: its loss '%s' depends on no parameter of %s "
                              "(other than through a detach)", q->name, p->g->nodes[q->loss].name, gs);
        mf_plan_free(p);
        return NULL;
      }
    }
  } else if (p->has_train) { /* differentiated by the caller (one phase): its backward follows the forward */
    p->phase[0].bwd_first = p->g->n_fwd;
    p->phase[0].bwd_end = p->g->n;
  }
  p->seed = p->phase[0].seed;
  if (mf_plan_build(p, err, errlen) < 0) { mf_plan_free(p); return NULL; }
  return p;
}

mf_plan *mf_plan_init(mf_graph *g, mf_tensor loss, const mf_plan_opts *o, char *err, size_t errlen) {
  mf_phase_opts ph = {NULL, loss, 0};
  return plan_init(g, 1, &ph, 0, o, err, errlen);
}

mf_plan *mf_plan_init_phases(mf_graph *g, int n_phases, const mf_phase_opts *ph, const mf_plan_opts *o, char *err,
                             size_t errlen) {
  return plan_init(g, n_phases, ph, 1, o, err, errlen);
}

void mf_plan_free(mf_plan *p) {
  if (!p) return;
  mf_program_free(&p->train);
  mf_program_free(&p->fwd);
  for (int k = 0; k < p->n_phases; k++) {
    mf_program_free(&p->phase[k].own);
    free(p->phase[k].rg);
    free(p->phase[k].trains);
  }
  free(p->keep_ids);
  free(p->pers_off);
  free(p->opt_off);
  free(p->buckets);
  free(p->shard_lo);
  free(p->shard_n);
  mf_graph_free(p->g);
  free(p);
}

int mf_plan_phase_count(const mf_plan *p) { return p->n_phases; }
const char *mf_plan_phase_name(const mf_plan *p, int k) { return k >= 0 && k < p->n_phases ? p->phase[k].name : NULL; }
size_t mf_plan_phase_peak(const mf_plan *p, int k, const char **peak_op) {
  if (k < 0 || k >= p->n_phases || !p->has_train) {
    if (peak_op) *peak_op = NULL;
    return 0;
  }
  if (peak_op) *peak_op = p->phase[k].peak_desc;
  return p->phase[k].prog->act_peak;
}

size_t mf_plan_arena_bytes(const mf_plan *p, mf_arena_kind a) { return (unsigned)a < MF_ARENA_COUNT ? p->arena[a] : 0; }
size_t mf_plan_total_bytes(const mf_plan *p) {
  size_t t = 0;
  for (int a = 0; a < MF_ARENA_COUNT; a++)
    if (!(a == MF_ARENA_OPT && p->opts.offload_opt)) t += p->arena[a];
  return t;
}
const char *mf_plan_peak_op(const mf_plan *p, int *is_backward) {
  const mf_program *pk = p->peak_phase >= 0 ? p->phase[p->peak_phase].prog : &p->fwd;
  if (is_backward) *is_backward = pk->n_steps && p->g->nodes[pk->steps[pk->peak_step]].phase != MF_PHASE_FWD;
  return p->peak_desc;
}
double mf_plan_flops(const mf_plan *p) { /* one micro-step of every phase */
  if (!p->has_train) return p->fwd.flops;
  double f = 0;
  for (int k = 0; k < p->n_phases; k++) f += p->phase[k].prog->flops;
  return f;
}

/* What the STATE arena holds, by kind: EMA averages (with their low-precision copies), each ring (with its
 * stage of accumulated keys), batch-norm statistics and other buffers. */
static void state_print(const mf_plan *p, FILE *f) {
  const mf_graph *g = p->g;
  if (!p->arena[MF_ARENA_STATE]) return;
  size_t ema = 0, buf = 0, other = 0;
  int n_ema = 0, n_buf = 0;
  char h[32], shp[64];
  for (int id = 0; id < g->n; id++) {
    const mf_node *n = &g->nodes[id];
    if (mf_node_arena(n) != MF_ARENA_STATE) continue;
    size_t b = mf_node_bytes(n);
    if (n->role == MF_ROLE_STATE_LP || (n->role == MF_ROLE_BUFFER && n->state_kind == MF_STATE_EMA)) ema += b, n_ema += n->role != MF_ROLE_STATE_LP;
    else if (n->role == MF_ROLE_BUFFER && n->state_kind == MF_STATE_BUFFER) buf += b, n_buf++;
    else if (n->role == MF_ROLE_BUFFER && n->state_kind == MF_STATE_RING) {
      const mf_node *pos = &g->nodes[n->link];
      size_t stage = pos->ip[2] >= 0 ? mf_node_bytes(&g->nodes[pos->ip[2]]) : 0;
      mf_shape_str(n, shp, sizeof shp);
      mf_format_bytes(b + stage, h, sizeof h);
      fprintf(f, "    ring '%s' %s %s: %s", n->name, shp, mf_dtype_name(n->dtype), h);
      if (stage) fprintf(f, " (with a stage of %lld keys: written once per update of %d micro-steps)", (long long)g->nodes[pos->ip[2]].ne[0], pos->ip[1]);
      fprintf(f, "\n");
    } else if (!(n->role == MF_ROLE_BUFFER && (n->state_kind == MF_STATE_RING_STAGE || n->state_kind == MF_STATE_RING_POS)))
      other += b;
  }
  if (n_ema) {
    mf_format_bytes(ema, h, sizeof h);
    fprintf(f, "    EMA averages of %d parameters: %s (no gradient, no optimizer state)\n", n_ema, h);
  }
  if (n_buf) {
    mf_format_bytes(buf, h, sizeof h);
    fprintf(f, "    %d buffers (batch-norm statistics): %s\n", n_buf, h);
  }
  if (other) {
    mf_format_bytes(other, h, sizeof h);
    fprintf(f, "    other states: %s\n", h);
  }
}

/* Activations the model named with mf_tensor_set_name's "logits", "q", "k"... : their size (the step's
 * program holds them for a while; the activation arena above counts them). */
static void named_acts_print(const mf_plan *p, FILE *f) {
  const mf_graph *g = p->g;
  static const char *const names[] = {"logits"};
  for (int id = 0; id < g->n_fwd; id++) {
    const mf_node *n = &g->nodes[id];
    if (mf_node_arena(n) != MF_ARENA_ACT) continue;
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
      if (!strcmp(n->name, names[k])) {
        char h[32], shp[64];
        mf_shape_str(n, shp, sizeof shp);
        mf_format_bytes(mf_node_bytes(n), h, sizeof h);
        fprintf(f, "    activation '%s' %s %s: %s (in the activation arena)\n", n->name, shp, mf_dtype_name(n->dtype), h);
      }
  }
}

/* The concat groups (plan/concat.c) the step program (else the forward program) uses: chains, the tensors stored
 * inside their buffers and those tensors' bytes, which no longer have storage of their own. */
static void concat_print(const mf_plan *p, FILE *f) {
  const mf_graph *g = p->g;
  const mf_program *pr = p->has_train ? &p->train : &p->fwd;
  uint8_t *in = calloc((size_t)(g->n ? g->n : 1), 1);
  if (!in) return;
  for (int s = 0; s < pr->n_steps; s++) in[pr->steps[s]] = 1;
  size_t inside = 0;
  int roots = 0, members = 0;
  for (int id = 0; id < g->cat_n; id++) {
    int r = g->cat_root[id];
    if (r < 0 || !in[id] || !in[r]) continue;
    if (r == id) roots++;
    else inside += mf_node_bytes(&g->nodes[id]), members++;
  }
  free(in);
  if (!roots) return;
  char h[32];
  mf_format_bytes(inside, h, sizeof h);
  fprintf(f, "  concatenation in place: %d concat chains of the step each in one buffer, %d tensors inside them (%s in all, "
             "over the step) written there by their producers; the concats copy only the rest (MEMFIT_CONCAT_ALIAS=0: off)\n",
          roots, members, h);
}

void mf_plan_print(const mf_plan *p, FILE *f) {
  char h[32];
  fprintf(f, "memory plan (%s backend, activations %s%s)\n", p->be->name, mf_dtype_name(p->g->act_dtype),
          p->n_recomputed ? ", with recompute" : "");
  static const mf_arena_kind order[MF_ARENA_COUNT] = {MF_ARENA_PARAM, MF_ARENA_PARAM_LP, MF_ARENA_STATE, MF_ARENA_GRAD,
                                                      MF_ARENA_OPT, MF_ARENA_ACT, MF_ARENA_DATA};
  for (int i = 0; i < MF_ARENA_COUNT; i++) {
    mf_arena_kind a = order[i];
    if ((a == MF_ARENA_PARAM_LP || a == MF_ARENA_STATE) && !p->arena[a]) continue;
    mf_format_bytes(p->arena[a], h, sizeof h);
    fprintf(f, "  %-26s %14zu B  %12s%s\n", mf_arena_name(a), p->arena[a], h,
            a == MF_ARENA_OPT && p->opts.offload_opt                  ? "  (host, offloaded)"
            : a == MF_ARENA_DATA && p->input_slots > 1 && p->arena[a] ? "  (2 copies: the next batch arrives during the step)"
                                                                      : "");
    if (a == MF_ARENA_STATE) state_print(p, f);
    if (a == MF_ARENA_ACT) named_acts_print(p, f);
  }
  mf_format_bytes(mf_plan_total_bytes(p), h, sizeof h);
  fprintf(f, "  %-26s %14zu B  %12s\n", "total", mf_plan_total_bytes(p), h);
  if (p->be->fixed_overhead) { /* a device's context, library handles and workspaces: measured, not planned */
    size_t fo = p->be->fixed_overhead();
    mf_format_bytes(fo, h, sizeof h);
    fprintf(f, "  %-26s %14zu B  %12s  (%s)\n", "fixed runtime overhead", fo, h,
            fo ? "measured at start-up, outside the arenas" : "not measured: no device here");
  }
  if (p->input_convert_bytes) {
    mf_format_bytes(p->input_convert_bytes, h, sizeof h);
    fprintf(f, "  %-26s %14zu B  %12s  (host, page-locked: f32 batches converted to %s before the copy)\n", "input conversion",
            p->input_convert_bytes, h, mf_dtype_name(p->g->act_dtype));
  }
  if (p->peak_desc[0]) fprintf(f, "  activation peak at %s\n", p->peak_desc);
  for (int k = 0; k < p->n_phases && p->n_phases > 1 && p->has_train; k++) {
    const mf_plan_phase *ph = &p->phase[k];
    mf_format_bytes(ph->prog->act_peak, h, sizeof h);
    fprintf(f, "  phase %d '%s': activations %s, peak at %s%s\n", k, ph->name, h, ph->peak_desc,
            k == p->peak_phase ? "  <- sets the activation arena" : "");
  }
  size_t ng = 0, kept = 0;
  for (int k = 0; k < p->n_phases && p->has_train; k++) ng += p->phase[k].nograd_bytes, kept += p->phase[k].nograd_kept;
  if (ng) {
    char hk[32];
    mf_format_bytes(ng, h, sizeof h);
    mf_format_bytes(kept, hk, sizeof hk);
    fprintf(f, "  no gradient: %s of activations need none%s; freed at their last forward use", h, p->n_phases > 1 ? " (all phases)" : "");
    if (kept) fprintf(f, " except %s that weight gradients read", hk);
    fprintf(f, "\n");
  }
  if (p->g->cat_stored) concat_print(p, f);
  if (p->n_recomputed) fprintf(f, "  %d segment(s) recomputed or inverted in backward\n", p->n_recomputed);
  if (p->shard_bytes) {
    mf_format_bytes(p->shard_bytes, h, sizeof h);
    fprintf(f, "  data parallel: %d ranks, the bytes above per rank (this is rank %d's plan); ZeRO-1: the optimizer state of "
               "one slice of %s of the gradient arena per rank; gradients reduce-scattered after backward, parameters "
               "all-gathered after the update\n", p->opts.ranks, p->opts.rank, h);
  }
  if (p->n_buckets) {
    size_t big = 0;
    int during = 0;
    for (int k = 0; k < p->n_buckets; k++) {
      if (p->buckets[k].bytes > big) big = p->buckets[k].bytes;
      during += p->buckets[k].ready_step >= 0;
    }
    mf_format_bytes(big, h, sizeof h);
    fprintf(f, "  data parallel: %d ranks, the bytes above per rank; gradients all-reduced in %d bucket(s) of up to %s "
               "(views of the gradient arena: no extra bytes), ", p->opts.ranks, p->n_buckets, h);
    if (during == p->n_buckets) fprintf(f, "each started during backward once its gradients are final\n");
    else if (during) fprintf(f, "%d started during backward, %d after it\n", during, p->n_buckets - during);
    else fprintf(f, "after backward (%s)\n", p->n_phases > 1 ? "a step of several phases" : "no backward step writes them last");
  }
  /* the all-gather ops' outputs: activations like the others (in the arena above), the rows of every rank */
  size_t gathered_bytes = 0;
  int n_gathered = 0;
  for (int id = 0; id < p->g->n; id++)
    if (p->g->nodes[id].op == MF_OP_ALLGATHER) gathered_bytes += mf_node_bytes(&p->g->nodes[id]), n_gathered++;
  if (n_gathered) {
    mf_format_bytes(gathered_bytes, h, sizeof h);
    fprintf(f, "  all-gathered over %d rank(s) in the step (forward only; activations, in the arena above): %d tensor(s), %s:",
            p->opts.ranks > 1 ? p->opts.ranks : 1, n_gathered, h);
    for (int id = 0, k = 0; id < p->g->n; id++) {
      const mf_node *n = &p->g->nodes[id];
      if (n->op != MF_OP_ALLGATHER) continue;
      char sh[64], hb[32];
      mf_shape_str(n, sh, sizeof sh);
      mf_format_bytes(mf_node_bytes(n), hb, sizeof hb);
      fprintf(f, "%s '%s' %s %s", k++ ? "," : "", n->name, sh, hb);
    }
    fprintf(f, "\n");
  }
}
