/* adaptive.c — VQGAN's adaptive GAN weight without a second graph: two identity "taps" on the decoder's
 * output whose gradient rules scale the GAN gradient by
 * lambda = factor * weight * clamp(|grad_W L_rec| / (|grad_W L_gan| + 1e-4), 0, max) (taming-transformers'
 * calculate_adaptive_weight, L_rec its nll: every reconstruction term). Gradients are linear in the upstream
 * seed: the reconstruction terms read x through the REC tap, whose gradient rule sees their whole gradient
 * there and forms the last conv's weight-gradient norm; the discriminator reads x through the GAN tap, whose
 * rule forms the GAN part's norm, lambda from the two (both divided by the run-time seed), and passes on lambda
 * times the GAN gradient; the rest of backward then runs once with rec + lambda * gan.
 * ADAPTIVE_TAP: src x, h (the last conv's input), w (its weight)[, factor [1][, a state [1] that receives
 * lambda]]; ip0 stride, ip1 pad, ip2 = the norm (REC) or lambda (GAN) node its gradient rule built (-1 before),
 * ip3 = 1 for the REC tap, 0 for the GAN tap; fp0 weight, fp1 max. Kernel: copy. Autodiff visits nodes from
 * the last built back, so the REC tap is built after the GAN tap (its rule runs first; the GAN rule checks).
 * STATE_WRITE: src value, state (same element count) -> value; the kernel also stores the value into the
 * state (how a backward quantity such as lambda becomes readable after the step). No gradient. */
#include "ops/ops.h"
#include "graph/dtype.h"
#include <math.h>

enum { TAP_GAN = 0, TAP_REC = 1 };

static int tap_build(mf_graph *g, int kind, int ns, const int *src, int stride, int pad, double weight, double max) {
  int id = mf_node_like(g, MF_OP_ADAPTIVE_TAP, src[0], ns, src);
  if (id < 0) return -1;
  mf_node *n = &g->nodes[id];
  n->ip[0] = stride;
  n->ip[1] = pad;
  n->ip[2] = -1;
  n->ip[3] = kind;
  n->fp[0] = weight;
  n->fp[1] = max;
  n->requires_grad = g->nodes[src[0]].requires_grad;
  snprintf(n->name, MF_NAME_LEN, kind == TAP_REC ? "adaptive_tap.rec" : "adaptive_tap");
  return id;
}

int mf_adaptive_tap(mf_graph *g, int x, int h, int w, int factor, int lam_state, int stride, int pad, double weight, double max) {
  int src[5] = {x, h, w, factor, lam_state};
  int ns = lam_state >= 0 ? 5 : 4;
  if (!mf_graph_check_srcs(g, "adaptive_tap", ns, src)) return -1;
  if (mf_node_numel(&g->nodes[factor]) != 1 ||
      (lam_state >= 0 && (mf_node_numel(&g->nodes[lam_state]) != 1 || g->nodes[lam_state].role != MF_ROLE_BUFFER)))
    return mf_graph_fail(g, "adaptive_tap: the factor and the lambda state must be scalars (the latter a state)");
  return tap_build(g, TAP_GAN, ns, src, stride, pad, weight, max);
}

int mf_adaptive_rec_tap(mf_graph *g, int x, int h, int w, int stride, int pad) {
  int src[3] = {x, h, w};
  if (!mf_graph_check_srcs(g, "adaptive_rec_tap", 3, src)) return -1;
  return tap_build(g, TAP_REC, 3, src, stride, pad, 0, 0);
}

/* |conv2d_bwd_weight(h, dy)| as a [1] tensor: the last conv's weight-gradient norm of what arrives at a tap (x seed) */
static int tap_norm(mf_graph *g, const mf_node *n, int dy) {
  int gw = mf_conv2d_bwd_weight(g, n->src[1], dy, n->src[2], n->ip[0], n->ip[1], 1); /* like w */
  int ss = mf_sum(g, mf_mul(g, gw, gw), 0, 0);                                          /* [1] */
  return mf_exp(g, mf_mul_scalar(g, mf_log(g, mf_clamp(g, ss, 1e-30, INFINITY)), 0.5));
}

static int grad_adaptive_tap(mf_graph *g, int id, int dy, int *dx) {
  int seed = -1; /* this phase's seed: the last SEED node autodiff made */
  for (int i = g->n - 1; i >= 0 && seed < 0; i--)
    if (g->nodes[i].op == MF_OP_SEED) seed = i;
  if (seed < 0) return mf_graph_fail(g, "adaptive_tap: no gradient seed");
  const mf_node n = g->nodes[id];
  if (n.ip[3] == TAP_REC) { /* the reconstruction terms' whole gradient at x: its norm, for the GAN tap's lambda */
    int nrm = tap_norm(g, &n, dy);
    if (nrm < 0) return -1;
    g->nodes[id].ip[2] = nrm;
    dx[0] = dy;
    return g->err[0] ? -1 : 0;
  }
  int rec = -1; /* the REC tap on the same x and conv, differentiated in this backward (after the seed) */
  for (int i = 0; i < g->n_fwd && rec < 0; i++) {
    const mf_node *r = &g->nodes[i];
    if (r->op == MF_OP_ADAPTIVE_TAP && r->ip[3] == TAP_REC && r->src[0] == n.src[0] && r->src[2] == n.src[2] && r->ip[2] > seed)
      rec = r->ip[2];
  }
  if (rec < 0)
    return mf_graph_fail(g, "adaptive_tap: no reconstruction tap (mf_adaptive_rec_tap on '%s', built after this tap) got a gradient "
                         "in this backward", g->nodes[n.src[0]].name);
  int nrm = tap_norm(g, &n, dy);                                                            /* |grad_W| x seed */
  int gan = mf_div(g, nrm, seed);
  int lam = mf_div(g, mf_div(g, rec, seed), mf_add_scalar(g, gan, 1e-4));
  lam = mf_mul(g, mf_mul_scalar(g, mf_clamp(g, lam, 0, n.fp[1]), n.fp[0]), n.src[3]);       /* [1] */
  if (lam < 0) return -1;
  snprintf(g->nodes[lam].name, MF_NAME_LEN, "adaptive_lambda");
  if (n.nsrc > 4) { /* lambda also into its state, readable after the step */
    int ws[2] = {lam, n.src[4]};
    lam = mf_graph_add(g, MF_OP_STATE_WRITE, g->nodes[lam].dtype, 1, g->nodes[lam].ne, 2, ws);
    if (lam < 0) return -1;
    snprintf(g->nodes[lam].name, MF_NAME_LEN, "adaptive_lambda.store");
  }
  int64_t one[MF_MAX_DIMS];
  const mf_node *d = &g->nodes[dy];
  for (int i = 0; i < d->ndim; i++) one[i] = 1;
  dx[0] = mf_mul(g, dy, mf_reshape(g, lam, d->ndim, one));
  g->nodes[id].ip[2] = lam;
  return g->err[0] ? -1 : 0; /* h, w and the factor get none from here (lambda is a constant) */
}

const mf_op_def mf_op_def_adaptive_tap = {"adaptive_tap", grad_adaptive_tap, NULL};
const mf_op_def mf_op_def_state_write = {"state_write", NULL, NULL};
