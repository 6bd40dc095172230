/* autodiff.c — reverse-mode differentiation over the node list (the reference evaluator that runs
 * the result is backend/reference.c). Backward nodes are tagged with the segment of the forward node they differentiate, which is
 * what the recompute rewrite (plan/program.c) uses to know where each block's backward starts. */
#include "ops/autodiff.h"
#include "ops/ops.h"
#include <stdlib.h>
#include <string.h>

/* A phase's own "requires grad": a parameter needs one when its group is in the mask (0: every group),
 * its low-precision copy when its master does, a detach never, any other node when one of its inputs
 * does. With mask 0 this is exactly what the builders recorded (graph.c), so one-phase graphs are
 * differentiated as before. */
static void phase_requires_grad(const mf_graph *g, int nf, unsigned groups, uint8_t *rg) {
  for (int id = 0; id < nf; id++) {
    const mf_node *n = &g->nodes[id];
    if (n->op == MF_OP_PARAM) rg[id] = !groups || (n->group < 32 && (groups >> n->group & 1u));
    else if (n->op == MF_OP_PARAM_LP) rg[id] = rg[n->master];
    else if (n->role == MF_ROLE_INPUT || n->role == MF_ROLE_BUFFER || mf_node_is_detach(n) || !n->requires_grad) rg[id] = 0;
    else {
      rg[id] = 0;
      for (int j = 0; j < n->nsrc; j++) rg[id] |= rg[n->src[j]];
    }
  }
}

int mf_autodiff(mf_graph *g, int loss) { return mf_autodiff_phase(g, loss, 0, NULL); }

int mf_autodiff_phase(mf_graph *g, int loss, unsigned groups, uint8_t *rg_out) {
  if (g->err[0]) return -1;
  if (loss < 0 || loss >= g->n) return mf_graph_fail(g, "autodiff: loss is not a tensor of this graph");
  if (mf_node_numel(&g->nodes[loss]) != 1) {
    char s[64];
    mf_shape_str(&g->nodes[loss], s, sizeof s);
    return mf_graph_fail(g, "autodiff: the loss must be a scalar, got shape %s", s);
  }
  if (g->open_seg >= 0) return mf_graph_fail(g, "autodiff: segment '%s' was never ended", g->segs[g->open_seg].name);
  if (!g->n_fwd) g->n_fwd = g->n; /* the first phase fixes the forward graph; later ones append after it */
  int nf = g->n_fwd;
  if (loss >= nf) return mf_graph_fail(g, "autodiff: the loss '%s' was built after the graph was differentiated", g->nodes[loss].name);
  int *grad = malloc((size_t)nf * sizeof *grad);
  uint8_t *saved = malloc((size_t)nf), *rg = malloc((size_t)nf);
  if (!grad || !saved || !rg) { free(grad); free(saved); free(rg); return mf_graph_fail(g, "autodiff: out of host memory"); }
  for (int i = 0; i < nf; i++) grad[i] = -1;
  /* this phase's flags replace the builders' while its backward is built (the gradient rules read them
   * through mf_wants_grad), and the builders' come back afterwards */
  phase_requires_grad(g, nf, groups, rg);
  for (int i = 0; i < nf; i++) {
    saved[i] = g->nodes[i].requires_grad;
    g->nodes[i].requires_grad = rg[i];
  }

  g->build_phase = MF_PHASE_BWD;
  mf_node ln = g->nodes[loss]; /* a copy: adding nodes may move the array */
  int seed = mf_graph_add(g, MF_OP_SEED, ln.dtype, ln.ndim, ln.ne, 0, NULL);
  grad[loss] = seed;
  for (int id = loss; id >= 0 && !g->err[0]; id--) {
    if (grad[id] < 0) continue;
    mf_node *n = &g->nodes[id];
    if (n->role == MF_ROLE_INPUT || n->role == MF_ROLE_BUFFER || !n->requires_grad) continue;
    const mf_op_def *d = mf_op_get(n->op);
    if (!d || !d->grad) {
      mf_graph_fail(g, "autodiff: op '%s' (node '%s') has no gradient", mf_op_name(n->op), n->name);
      break;
    }
    int dx[MF_MAX_SRC];
    for (int i = 0; i < MF_MAX_SRC; i++) dx[i] = -1;
    g->open_seg = n->seg;
    int first_new = g->n;
    int rc = d->grad(g, id, grad[id], dx);
    g->open_seg = -1;
    if (rc < 0) { mf_graph_fail(g, "autodiff: gradient of '%s' failed", g->nodes[id].name); break; }
    /* backward nodes carry the name of the forward node they differentiate (its layer: an ONNX node's name),
     * so a peak in backward reads "conv2d_bwd_weight 'layer1.0.conv1'" */
    for (int k = first_new; k < g->n; k++) memcpy(g->nodes[k].name, g->nodes[id].name, MF_NAME_LEN);
    mf_node cur = g->nodes[id]; /* a copy: the mf_add below may move the node array */
    for (int i = 0; i < cur.nsrc; i++) {
      int s = cur.src[i];
      if (dx[i] < 0 || !g->nodes[s].requires_grad) continue;
      const mf_node *sn = &g->nodes[s];
      if (sn->role == MF_ROLE_PARAM || sn->role == MF_ROLE_PARAM_LP) {
        /* a parameter's gradient goes into its persistent f32 gradient right away, so no weight
         * gradient stays alive as a temporary until backward reaches the parameters */
        int p = sn->role == MF_ROLE_PARAM ? s : sn->master;
        mf_node pn = g->nodes[p];
        g->open_seg = cur.seg;
        int acc = mf_graph_add(g, MF_OP_ACC_GRAD, pn.dtype, pn.ndim, pn.ne, 1, &dx[i]);
        g->open_seg = -1;
        if (acc < 0) break;
        g->nodes[acc].role = MF_ROLE_GRAD;
        g->nodes[acc].master = p;
        snprintf(g->nodes[acc].name, MF_NAME_LEN, "grad.%.58s", pn.name);
        if (g->nodes[p].grad < 0) g->nodes[p].grad = acc; /* the first holds the storage */
        continue;
      }
      if (grad[s] < 0) grad[s] = dx[i];
      else {
        g->open_seg = cur.seg;
        grad[s] = mf_add(g, grad[s], dx[i]);
        g->open_seg = -1;
      }
    }
  }
  g->build_phase = MF_PHASE_FWD;
  g->open_seg = -1;
  for (int i = 0; i < nf; i++) g->nodes[i].requires_grad = saved[i];
  if (rg_out) /* needs a gradient: depends on a trained parameter and the loss's gradient reaches it */
    for (int i = 0; i < nf; i++) rg_out[i] = rg[i] && grad[i] >= 0;
  free(grad);
  free(saved);
  free(rg);
  return g->err[0] ? -1 : seed;
}
