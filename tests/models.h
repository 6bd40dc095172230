/* models.h — the small models the engine tests run end to end: an MLP, a CNN with batch norm
 * and pooling, and an invertible coupling network built from segments with an inverse. */
#ifndef MF_TEST_MODELS_H
#define MF_TEST_MODELS_H

#include "memfit.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { TM_MLP = 0, TM_CNN, TM_COUPLING, TM_COUNT };
static const char *const tm_names[TM_COUNT] = {"mlp", "cnn", "coupling"};

typedef struct tm_subnet { mf_tensor w1, b1, w2, b2; } tm_subnet;
typedef struct tm_model {
  mf_tensor x, y, loss;
  int nblocks;
  tm_subnet phi[4], rho[4], eta[4];
  mf_tensor params[64];
  int nparams;
} tm_model;

static inline mf_tensor tm_param(mf_graph *g, tm_model *m, const char *name, int nd, const int64_t *sh, mf_init init) {
  mf_tensor p = mf_param(g, name, nd, sh, init, init == MF_INIT_NORMAL ? 0.1 : 0);
  if (m->nparams < 64) m->params[m->nparams++] = p;
  return p;
}

/* conv3x3(c->h) + lrelu + conv3x3(h->c) */
static inline mf_tensor tm_subnet_apply(mf_graph *g, const tm_subnet *s, mf_tensor x) {
  mf_tensor h = mf_leaky_relu(g, mf_conv2d(g, x, s->w1, s->b1, 1, 1, 1), 0.01);
  return mf_conv2d(g, h, s->w2, s->b2, 1, 1, 1);
}
static inline void tm_subnet_init(mf_graph *g, tm_model *m, tm_subnet *s, const char *pfx, int c, int h) {
  char nm[64];
  snprintf(nm, sizeof nm, "%s.w1", pfx); s->w1 = tm_param(g, m, nm, 4, (int64_t[]){h, c, 3, 3}, MF_INIT_KAIMING);
  snprintf(nm, sizeof nm, "%s.b1", pfx); s->b1 = tm_param(g, m, nm, 1, (int64_t[]){h}, MF_INIT_ZERO);
  snprintf(nm, sizeof nm, "%s.w2", pfx); s->w2 = tm_param(g, m, nm, 4, (int64_t[]){c, h, 3, 3}, MF_INIT_NORMAL);
  snprintf(nm, sizeof nm, "%s.b2", pfx); s->b2 = tm_param(g, m, nm, 1, (int64_t[]){c}, MF_INIT_ZERO);
}

typedef struct tm_block_ctx { tm_model *m; int k; } tm_block_ctx;
static tm_block_ctx tm_ctx[4];

/* y1 = x1 + phi(x2); s = 2(2 sigmoid(rho(y1)) - 1); y2 = x2 exp(s) + eta(y1) */
static inline mf_tensor tm_scale(mf_graph *g, const tm_model *m, int k, mf_tensor y1) {
  mf_tensor r = mf_sigmoid(g, tm_subnet_apply(g, &m->rho[k], y1));
  return mf_mul_scalar(g, mf_add_scalar(g, mf_mul_scalar(g, r, 2.0), -1.0), 2.0);
}
static void tm_inverse(mf_graph *g, void *ctx, int n_out, const mf_tensor *outs, int n_in, mf_tensor *ins) {
  (void)n_out; (void)n_in;
  tm_block_ctx *c = ctx;
  const tm_model *m = c->m;
  int k = c->k;
  mf_tensor y1 = outs[0], y2 = outs[1];
  mf_tensor s = tm_scale(g, m, k, y1);
  mf_tensor x2 = mf_mul(g, mf_sub(g, y2, tm_subnet_apply(g, &m->eta[k], y1)), mf_exp(g, mf_mul_scalar(g, s, -1.0)));
  ins[0] = mf_sub(g, y1, tm_subnet_apply(g, &m->phi[k], x2));
  ins[1] = x2;
}

/* batch n, spatial hw; returns 0 or -1 (mf_graph_error tells) */
static inline int tm_build(mf_graph *g, int kind, int n, int hw, tm_model *m) {
  memset(m, 0, sizeof *m);
  if (kind == TM_MLP) {
    m->x = mf_input(g, "x", 2, (int64_t[]){n, 16});
    m->y = mf_input(g, "y", 2, (int64_t[]){n, 4});
    mf_tensor w1 = tm_param(g, m, "fc1.w", 2, (int64_t[]){32, 16}, MF_INIT_KAIMING);
    mf_tensor b1 = tm_param(g, m, "fc1.b", 1, (int64_t[]){32}, MF_INIT_ZERO);
    mf_tensor w2 = tm_param(g, m, "fc2.w", 2, (int64_t[]){4, 32}, MF_INIT_KAIMING);
    mf_tensor b2 = tm_param(g, m, "fc2.b", 1, (int64_t[]){4}, MF_INIT_ZERO);
    mf_tensor h = mf_tanh(g, mf_linear(g, m->x, w1, b1));
    m->loss = mf_mse_loss(g, mf_linear(g, h, w2, b2), m->y);
  } else if (kind == TM_CNN) {
    m->x = mf_input(g, "x", 4, (int64_t[]){n, 3, hw, hw});
    m->y = mf_input_typed(g, "labels", MF_I32, 1, (int64_t[]){n});
    mf_tensor w1 = tm_param(g, m, "conv1.w", 4, (int64_t[]){8, 3, 3, 3}, MF_INIT_KAIMING);
    mf_tensor ga = tm_param(g, m, "bn1.g", 1, (int64_t[]){8}, MF_INIT_ONE);
    mf_tensor be = tm_param(g, m, "bn1.b", 1, (int64_t[]){8}, MF_INIT_ZERO);
    mf_tensor rm = mf_buffer(g, "bn1.rmean", 1, (int64_t[]){8}, MF_INIT_ZERO, 0);
    mf_tensor rv = mf_buffer(g, "bn1.rvar", 1, (int64_t[]){8}, MF_INIT_ONE, 0);
    mf_tensor w2 = tm_param(g, m, "conv2.w", 4, (int64_t[]){16, 8, 3, 3}, MF_INIT_KAIMING);
    mf_tensor gg = tm_param(g, m, "gn2.g", 1, (int64_t[]){16}, MF_INIT_ONE);
    mf_tensor gb = tm_param(g, m, "gn2.b", 1, (int64_t[]){16}, MF_INIT_ZERO);
    mf_tensor fw = tm_param(g, m, "fc.w", 2, (int64_t[]){5, 16}, MF_INIT_KAIMING);
    mf_tensor fb = tm_param(g, m, "fc.b", 1, (int64_t[]){5}, MF_INIT_ZERO);
    mf_segment_begin(g, "stage1");
    mf_tensor h = mf_relu(g, mf_batchnorm(g, mf_conv2d(g, m->x, w1, -1, 1, 1, 1), ga, be, rm, rv, 1, 0.1, 1e-5));
    h = mf_maxpool2d(g, h, 2, 2, 0);
    mf_segment_end(g, 1, &m->x, 1, &h, NULL, NULL);
    mf_tensor h_in = h;
    mf_segment_begin(g, "stage2");
    h = mf_silu(g, mf_groupnorm(g, mf_conv2d(g, h, w2, -1, 1, 1, 1), gg, gb, 4, 1e-5));
    h = mf_upsample_nearest(g, mf_avgpool2d(g, h, 2, 2, 0), 2);
    mf_segment_end(g, 1, &h_in, 1, &h, NULL, NULL);
    mf_tensor f = mf_global_avgpool(g, h);
    m->loss = mf_softmax_ce(g, mf_linear(g, f, fw, fb), m->y);
  } else {
    int C = 4, nb = 3;
    m->nblocks = nb;
    m->x = mf_input(g, "x", 4, (int64_t[]){n, C, hw, hw});
    m->y = mf_input(g, "y", 4, (int64_t[]){n, C, hw, hw});
    for (int k = 0; k < nb; k++) {
      char p[32];
      snprintf(p, sizeof p, "blk%d.phi", k); tm_subnet_init(g, m, &m->phi[k], p, C / 2, 8);
      snprintf(p, sizeof p, "blk%d.rho", k); tm_subnet_init(g, m, &m->rho[k], p, C / 2, 8);
      snprintf(p, sizeof p, "blk%d.eta", k); tm_subnet_init(g, m, &m->eta[k], p, C / 2, 8);
    }
    mf_tensor x1 = mf_slice(g, m->x, 1, 0, C / 2), x2 = mf_slice(g, m->x, 1, C / 2, C);
    for (int k = 0; k < nb; k++) {
      char nm[16];
      snprintf(nm, sizeof nm, "coupling%d", k);
      tm_ctx[k] = (tm_block_ctx){m, k};
      mf_tensor ins[2] = {x1, x2};
      mf_segment_begin(g, nm);
      mf_tensor y1 = mf_add(g, x1, tm_subnet_apply(g, &m->phi[k], x2));
      mf_tensor s = tm_scale(g, m, k, y1);
      mf_tensor y2 = mf_add(g, mf_mul(g, x2, mf_exp(g, s)), tm_subnet_apply(g, &m->eta[k], y1));
      mf_tensor outs[2] = {y1, y2};
      mf_segment_end(g, 2, ins, 2, outs, tm_inverse, &tm_ctx[k]);
      x1 = y1;
      x2 = y2;
    }
    mf_tensor cat[2] = {x1, x2};
    m->loss = mf_mse_loss(g, mf_concat(g, 2, cat, 1), m->y);
  }
  return mf_graph_error(g) ? -1 : 0;
}

/* deterministic input data for a model */
static inline void tm_fill_inputs(mf_session *s, const mf_graph *g, const tm_model *m, uint64_t seed) {
  mf_tensor ins[2] = {m->x, m->y};
  for (int t = 0; t < 2; t++) {
    int64_t cnt = mf_tensor_numel(g, ins[t]);
    float *buf = malloc((size_t)cnt * sizeof *buf);
    uint64_t r = seed * 7919 + (uint64_t)t * 104729 + 1;
    for (int64_t i = 0; i < cnt; i++) {
      r = r * 6364136223846793005ULL + 1442695040888963407ULL;
      double u = (double)(r >> 11) / 9007199254740992.0;
      buf[i] = mf_tensor_dtype(g, ins[t]) == MF_I32 ? (float)(int)(u * 5) : (float)(2 * u - 1);
    }
    mf_session_write_input(s, ins[t], buf, (size_t)cnt);
    free(buf);
  }
}

#endif
