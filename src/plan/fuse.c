/* fuse.c — the fusion pass the planner runs on its copy of the graph, after autodiff and before the
 * programs are built: a conv2d (or, when g->fuse_norm_act, a batch / group norm) whose only reader is a ReLU
 * or leaky ReLU (slope >= 0, which differentiates from its output) takes the activation into its own kernel
 * (mf_conv_act_set, mf_norm_act_set), and the activation node becomes an alias of it (a detach: no storage,
 * no kernel). The pre-activation tensor then never exists. */
#include "plan/fuse.h"
#include "plan/plan.h"
#include <stdlib.h>

/* Fuses the pairs whose ReLU is in [first, g->n); repoint: also point the readers in that range (and outs[])
 * at the conv (the planner's detach aliasing has already run for nodes an inverse builds). */
static int fuse_range(mf_graph *g, int first, int *outs, int n_outs, bool repoint) {
  int N = g->n;
  int *readers = calloc((size_t)(N ? N : 1), sizeof *readers);
  unsigned char *pinned = calloc((size_t)(N ? N : 1), 1); /* kept, or a segment's boundary: its values are seen */
  if (!readers || !pinned) { free(readers); free(pinned); return -1; }
  for (int id = 0; id < N; id++) {
    const mf_node *n = &g->nodes[id];
    for (int j = 0; j < n->nsrc; j++) {
      bool dup = false;
      for (int q = 0; q < j; q++) dup |= n->src[q] == n->src[j];
      if (!dup) readers[n->src[j]]++;
    }
  }
  for (int i = 0; i < n_outs; i++)
    if (outs[i] >= 0 && outs[i] < N) pinned[outs[i]] = 1;
  for (int k = 0; k < g->nseg; k++) {
    for (int i = 0; i < g->segs[k].n_in; i++) pinned[g->segs[k].ins[i]] = 1;
    for (int i = 0; i < g->segs[k].n_out; i++) pinned[g->segs[k].outs[i]] = 1;
  }
  int fused = 0;
  for (int id = first; id < N; id++) {
    mf_node *r = &g->nodes[id];
    if (r->op != MF_OP_UNARY || r->nsrc != 1 || !(r->ip[0] == MF_UN_RELU || (r->ip[0] == MF_UN_LEAKY && r->fp[0] >= 0))) continue;
    mf_node *c = &g->nodes[r->src[0]];
    bool conv = c->op == MF_OP_CONV2D && mf_conv_act(c) < 0, norm = g->fuse_norm_act && c->op == MF_OP_NORM && mf_norm_act(c) < 0;
    if (!(conv || norm) || readers[r->src[0]] != 1 || pinned[r->src[0]] || c->dtype != r->dtype || c->seg != r->seg ||
        c->phase != r->phase || r->src[0] < first)
      continue;
    double slope = r->ip[0] == MF_UN_LEAKY ? r->fp[0] : 0;
    if (conv) {
      mf_conv_act_set(c, r->ip[0]);
      c->fp[0] = slope;
    } else {
      mf_norm_act_set(c, r->ip[0]);
      c->fp[2] = slope;
    }
    int src = r->src[0];
    /* the activation becomes a detach of the conv: the planner points its readers at the conv */
    r->op = MF_OP_RESHAPE;
    for (int k = 0; k < 8; k++) r->ip[k] = 0;
    r->ip[MF_IP_DETACH] = 1;
    r->fp[0] = r->fp[1] = 0;
    r->nsrc = 1;
    r->src[0] = src;
    fused++;
  }
  if (repoint && fused) {
    for (int id = first; id < N; id++) {
      mf_node *n = &g->nodes[id];
      for (int j = 0; j < n->nsrc; j++)
        if (n->src[j] >= first && mf_node_is_detach(&g->nodes[n->src[j]])) n->src[j] = mf_node_alias_root(g, n->src[j]);
    }
    for (int i = 0; i < n_outs; i++)
      if (outs[i] >= first && mf_node_is_detach(&g->nodes[outs[i]])) outs[i] = mf_node_alias_root(g, outs[i]);
  }
  free(readers);
  free(pinned);
  return fused;
}

int mf_fuse_conv_act(mf_graph *g, int *keep, int n_keep) { return fuse_range(g, 0, keep, n_keep, false); }

int mf_fuse_conv_act_new(mf_graph *g, int first, int *outs, int n_outs) { return fuse_range(g, first, outs, n_outs, true); }
