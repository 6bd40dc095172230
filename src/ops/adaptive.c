/* adaptive.c — VQGAN's adaptive GAN weight without a second graph: an identity "tap" on the decoder's
 * output before the discriminator whose gradient rule scales the GAN gradient by
 * lambda = factor * weight * clamp(|grad_W L_rec| / (|grad_W L_gan| + 1e-4), 0, max) (taming-transformers'
 * calculate_adaptive_weight). Gradients are linear in the upstream seed: |grad_W L_gan| is the last conv's
 * weight-gradient of the GAN part alone (dy at the tap, divided by the run-time seed), |grad_W L_rec| a
 * forward tensor the model computes; the rest of backward then runs once with rec + lambda * gan.
 * ADAPTIVE_TAP: src x, h (the last conv's input), w (its weight), rec_norm [1], factor [1][, a state [1] that
 * receives lambda]; ip0 stride, ip1 pad, ip2 = the lambda node built by the gradient rule (-1 before); fp0
 * weight, fp1 max. Kernel: copy.
 * STATE_WRITE: src value, state (same element count) -> value; the kernel also stores the value into the
 * state (how a backward quantity such as lambda becomes readable after the step). No gradient. */
#include "ops/ops.h"
#include "graph/dtype.h"
#include <math.h>

int mf_adaptive_tap(mf_graph *g, int x, int h, int w, int rec_norm, int factor, int lam_state, int stride, int pad, double weight,
                    double max) {
  int src[6] = {x, h, w, rec_norm, factor, lam_state};
  int ns = lam_state >= 0 ? 6 : 5;
  if (!mf_graph_check_srcs(g, "adaptive_tap", ns, src)) return -1;
  if (mf_node_numel(&g->nodes[rec_norm]) != 1 || mf_node_numel(&g->nodes[factor]) != 1 ||
      (lam_state >= 0 && (mf_node_numel(&g->nodes[lam_state]) != 1 || g->nodes[lam_state].role != MF_ROLE_BUFFER)))
    return mf_graph_fail(g, "adaptive_tap: the reconstruction norm, the factor and the lambda state must be scalars (the last a state)");
  int id = mf_node_like(g, MF_OP_ADAPTIVE_TAP, x, ns, src);
  if (id < 0) return -1;
  mf_node *n = &g->nodes[id];
  n->ip[0] = stride;
  n->ip[1] = pad;
  n->ip[2] = -1;
  n->fp[0] = weight;
  n->fp[1] = max;
  n->requires_grad = g->nodes[x].requires_grad;
  snprintf(n->name, MF_NAME_LEN, "adaptive_tap");
  return id;
}

static int grad_adaptive_tap(mf_graph *g, int id, int dy, int *dx) {
  int seed = -1; /* this phase's seed: the last SEED node autodiff made */
  for (int i = g->n - 1; i >= 0 && seed < 0; i--)
    if (g->nodes[i].op == MF_OP_SEED) seed = i;
  if (seed < 0) return mf_graph_fail(g, "adaptive_tap: no gradient seed");
  const mf_node n = g->nodes[id];
  int h = n.src[1], w = n.src[2], rec = n.src[3], factor = n.src[4];
  int gw = mf_conv2d_bwd_weight(g, h, dy, w, n.ip[0], n.ip[1], 1);                       /* like w */
  int ss = mf_sum(g, mf_mul(g, gw, gw), 0, 0);                                             /* [1] */
  int nrm = mf_exp(g, mf_mul_scalar(g, mf_log(g, mf_clamp(g, ss, 1e-30, INFINITY)), 0.5)); /* |grad_W| x seed */
  int gan = mf_div(g, nrm, seed);
  int lam = mf_div(g, rec, mf_add_scalar(g, gan, 1e-4));
  lam = mf_mul(g, mf_mul_scalar(g, mf_clamp(g, lam, 0, n.fp[1]), n.fp[0]), factor);         /* [1] */
  if (lam < 0) return -1;
  snprintf(g->nodes[lam].name, MF_NAME_LEN, "adaptive_lambda");
  if (n.nsrc > 5) { /* lambda also into its state, readable after the step */
    int ws[2] = {lam, n.src[5]};
    lam = mf_graph_add(g, MF_OP_STATE_WRITE, g->nodes[lam].dtype, 1, g->nodes[lam].ne, 2, ws);
    if (lam < 0) return -1;
    snprintf(g->nodes[lam].name, MF_NAME_LEN, "adaptive_lambda.store");
  }
  int64_t one[MF_MAX_DIMS];
  const mf_node *d = &g->nodes[dy];
  for (int i = 0; i < d->ndim; i++) one[i] = 1;
  dx[0] = mf_mul(g, dy, mf_reshape(g, lam, d->ndim, one));
  g->nodes[id].ip[2] = lam;
  return g->err[0] ? -1 : 0; /* h, w, the norm and the factor get none from here (lambda is a constant) */
}

const mf_op_def mf_op_def_adaptive_tap = {"adaptive_tap", grad_adaptive_tap, NULL};
const mf_op_def mf_op_def_state_write = {"state_write", NULL, NULL};
