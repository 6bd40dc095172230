/* vq.c — VQGAN's quantisers on the graph (VQ codebook with straight-through and commitment loss, FSQ)
 * and their host side: codebook usage and perplexity, the EMA codebook update with dead-code restarts.
 * The EMA follows taming-transformers' EMAVectorQuantizer (cluster_size, embed_avg, Laplace smoothing). */
#include "models/vq.h"
#include "base/rng.h"
#include "dist/dist.h"
#include "train/session.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

vq_cfg vq_cfg_default(int64_t codes, int dim) {
  vq_cfg c;
  memset(&c, 0, sizeof c);
  c.kind = VQ_KIND_VQ;
  c.codes = codes;
  c.dim = dim;
  c.beta = 0.25;
  c.decay = 0.99;
  c.eps = 1e-5;
  c.dead_threshold = 1e-3;
  return c;
}

int vq_cfg_check(vq_cfg *c, char *err, size_t n) {
  if (c->kind == VQ_KIND_FSQ) {
    if (c->dim < 1 || c->dim > VQ_MAX_LEVELS) {
      snprintf(err, n, "FSQ needs 1 to %d levels (--fsq-levels), got %d", VQ_MAX_LEVELS, c->dim);
      return -1;
    }
    int64_t k = 1;
    for (int i = 0; i < c->dim; i++) {
      if (c->levels[i] < 2) {
        snprintf(err, n, "FSQ level %d is %d; every level must be at least 2 (--fsq-levels)", i, c->levels[i]);
        return -1;
      }
      k *= c->levels[i];
    }
    if (k > INT32_MAX) {
      snprintf(err, n, "FSQ levels give %lld codes, more than i32 indices reach (--fsq-levels)", (long long)k);
      return -1;
    }
    c->codes = k;
    return 0;
  }
  if (c->codes < 1 || c->codes > INT32_MAX) {
    snprintf(err, n, "the codebook needs 1 to %d entries (--codes), got %lld", INT32_MAX, (long long)c->codes);
    return -1;
  }
  if (c->dim < 1) { snprintf(err, n, "the code dimension (--latent) must be at least 1, got %d", c->dim); return -1; }
  if (!(c->beta >= 0) || !isfinite(c->beta)) { snprintf(err, n, "--beta %g must be 0 or more", c->beta); return -1; }
  if (c->ema && !(c->decay >= 0 && c->decay < 1)) { snprintf(err, n, "--ema-decay %g must be in [0, 1)", c->decay); return -1; }
  if (c->ema && !(c->eps > 0)) { snprintf(err, n, "the EMA smoothing eps %g must be above 0", c->eps); return -1; }
  return 0;
}

/* [B,D,h,w] -> [B*h*w, D] and back */
static mf_tensor to_rows(mf_graph *g, mf_tensor z, int64_t N, int64_t D) {
  int perm[4] = {0, 2, 3, 1};
  int64_t s[2] = {N, D};
  return mf_reshape(g, mf_permute(g, z, perm), 2, s); /* [B,h,w,D] -> [N,D] */
}
static mf_tensor from_rows(mf_graph *g, mf_tensor r, int64_t B, int64_t D, int64_t h, int64_t w) {
  int64_t s[4] = {B, h, w, D};
  int perm[4] = {0, 3, 1, 2};
  return mf_permute(g, mf_reshape(g, r, 4, s), perm); /* [B,h,w,D] -> [B,D,h,w] */
}

/* FSQ per dimension c of z [N,D]: bound(z) = tanh(z + shift) half_l - offset, half_l = (L-1)(1+1e-3)/2,
 * offset 0.5 for even L (0 odd), shift = atanh(offset / half_l); rounded straight through, / (L div 2). */
static mf_tensor fsq_rows(mf_graph *g, const vq_cfg *c, mf_tensor z) {
  mf_tensor parts[VQ_MAX_LEVELS];
  for (int d = 0; d < c->dim; d++) {
    double L = c->levels[d], half_l = (L - 1) * (1 + 1e-3) / 2, off = c->levels[d] % 2 == 0 ? 0.5 : 0.0;
    double shift = atanh(off / half_l), hw = (double)(c->levels[d] / 2);
    mf_tensor x = mf_slice(g, z, 1, d, d + 1);                                                   /* [N,1] */
    mf_tensor b = mf_add_scalar(g, mf_mul_scalar(g, mf_tanh(g, mf_add_scalar(g, x, shift)), half_l), -off);
    parts[d] = mf_mul_scalar(g, mf_straight_through(g, mf_round(g, b), b), 1 / hw);             /* [N,1] in [-1,1] */
  }
  return c->dim == 1 ? parts[0] : mf_concat(g, c->dim, parts, 1);                                /* [N,D] */
}

int vq_build(mf_graph *g, const vq_cfg *cfg, mf_tensor z, const char *name, vq_layer *q, char *err, size_t n) {
  memset(q, 0, sizeof *q);
  q->cfg = *cfg;
  if (vq_cfg_check(&q->cfg, err, n) < 0) return -1;
  const vq_cfg *c = &q->cfg;
  q->codebook = q->ema_count = q->ema_sum = q->idx = q->codes_out = q->loss = -1;
  if (mf_tensor_ndim(g, z) != 4 || mf_tensor_dim(g, z, 1) != c->dim) {
    snprintf(err, n, "%s: the encoder's output must be [B,%d,h,w] (the code dimension), got %d axes, %lld channels", name, c->dim,
             mf_tensor_ndim(g, z), (long long)(mf_tensor_ndim(g, z) > 1 ? mf_tensor_dim(g, z, 1) : 0));
    return -1;
  }
  int64_t B = mf_tensor_dim(g, z, 0), D = c->dim, h = mf_tensor_dim(g, z, 2), w = mf_tensor_dim(g, z, 3);
  q->N = B * h * w;
  char nm[160];
  q->z_flat = to_rows(g, z, q->N, D); /* [N,D] */
  mf_tensor out_rows;
  if (c->kind == VQ_KIND_FSQ) {
    out_rows = q->codes_out = fsq_rows(g, c, q->z_flat);
  } else {
    int64_t se[2] = {c->codes, D};
    if (c->ema) {
      snprintf(nm, sizeof nm, "%s.embedding.weight", name);
      q->codebook = mf_state(g, nm, mf_tensor_dtype(g, z), 2, se, MF_INIT_UNIFORM, 1.0 / (double)c->codes);
      snprintf(nm, sizeof nm, "%s.cluster_size", name);
      q->ema_count = mf_state(g, nm, MF_F32, 1, se, MF_INIT_ZERO, 0);
      snprintf(nm, sizeof nm, "%s.embed_avg", name);
      q->ema_sum = mf_state(g, nm, MF_F32, 2, se, MF_INIT_ZERO, 0);
    } else {
      snprintf(nm, sizeof nm, "%s.embedding.weight", name);
      q->codebook = mf_param(g, nm, 2, se, MF_INIT_UNIFORM, 1.0 / (double)c->codes);
    }
    q->idx = mf_vq_nearest(g, mf_detach(g, q->z_flat), q->codebook); /* i32 [N] */
    mf_tensor zq = mf_gather(g, q->codebook, q->idx);                 /* [N,D] */
    /* the commitment term moves the encoder toward its code (beta); the codebook term the code toward
     * the encoder's vector (weight 1; none with EMA, which moves the codes itself) */
    mf_tensor commit = mf_mul_scalar(g, mf_mse_loss(g, q->z_flat, mf_detach(g, zq)), c->beta);
    q->loss = c->ema ? commit : mf_add(g, mf_mse_loss(g, zq, mf_detach(g, q->z_flat)), commit);
    out_rows = mf_straight_through(g, zq, q->z_flat);
  }
  q->out = from_rows(g, out_rows, B, D, h, w);
  if (mf_graph_error(g)) { snprintf(err, n, "%s: %s", name, mf_graph_error(g)); return -1; }
  return 0;
}

int vq_keep(const vq_layer *q, mf_tensor *keep) {
  int k = 0;
  if (q->cfg.kind == VQ_KIND_FSQ) { keep[k++] = q->codes_out; return k; }
  keep[k++] = q->idx;
  if (q->cfg.ema) keep[k++] = q->z_flat;
  return k;
}

/* ---- host side ---- */

int vq_stats_init(vq_stats *s, const vq_layer *q, uint64_t seed) {
  memset(s, 0, sizeof *s);
  s->K = q->cfg.codes;
  s->D = q->cfg.dim;
  s->N = q->N;
  s->seed = seed;
  s->hist = calloc((size_t)s->K, sizeof *s->hist);
  s->ibuf = malloc((size_t)(s->N * s->D) * sizeof *s->ibuf);
  if (!s->hist || !s->ibuf) { vq_stats_free(s); return -1; }
  if (q->cfg.kind == VQ_KIND_VQ && q->cfg.ema) {
    s->sum_count = calloc((size_t)s->K, sizeof *s->sum_count);
    s->sum_vec = calloc((size_t)(s->K * s->D), sizeof *s->sum_vec);
    s->zbuf = malloc((size_t)(s->N * s->D) * sizeof *s->zbuf);
    s->cb = malloc((size_t)(s->K * s->D) * sizeof *s->cb);
    s->cnt = malloc((size_t)s->K * sizeof *s->cnt);
    s->avg = malloc((size_t)(s->K * s->D) * sizeof *s->avg);
    if (!s->sum_count || !s->sum_vec || !s->zbuf || !s->cb || !s->cnt || !s->avg) { vq_stats_free(s); return -1; }
  }
  return 0;
}

int vq_session_ready(const vq_layer *q, mf_session *ss) {
  if (q->cfg.kind != VQ_KIND_VQ || !q->cfg.ema) return 0;
  size_t n = (size_t)(q->cfg.codes * q->cfg.dim);
  float *b = malloc(n * sizeof *b);
  int rc = b && mf_session_read(ss, q->codebook, b, n) == 0 && mf_session_write_state(ss, q->ema_sum, b, n) == 0 ? 0 : -1;
  free(b);
  return rc;
}

void vq_stats_free(vq_stats *s) {
  free(s->hist);
  free(s->sum_count);
  free(s->sum_vec);
  free(s->zbuf);
  free(s->ibuf);
  free(s->cb);
  free(s->cnt);
  free(s->avg);
  memset(s, 0, sizeof *s);
}

void vq_stats_reset(vq_stats *s) { memset(s->hist, 0, (size_t)s->K * sizeof *s->hist); }

/* FSQ: the code index of quantised values x [D] in [-1,1]: sum_d (x_d hw_d + hw_d) basis_d */
static int64_t fsq_index(const vq_cfg *c, const float *x) {
  int64_t idx = 0, basis = 1;
  for (int d = 0; d < c->dim; d++) {
    int hw = c->levels[d] / 2;
    int64_t digit = (int64_t)lround((double)x[d] * hw) + hw;
    if (digit < 0) digit = 0;
    if (digit >= c->levels[d]) digit = c->levels[d] - 1;
    idx += digit * basis;
    basis *= c->levels[d];
  }
  return idx;
}

int vq_observe(vq_stats *s, const vq_layer *q, mf_session *ss, int train) {
  const vq_cfg *c = &q->cfg;
  if (c->kind == VQ_KIND_FSQ) {
    if (mf_session_read(ss, q->codes_out, s->ibuf, (size_t)(s->N * s->D)) < 0) return -1;
    for (int64_t r = 0; r < s->N; r++) s->hist[fsq_index(c, s->ibuf + r * s->D)]++;
    return 0;
  }
  if (mf_session_read(ss, q->idx, s->ibuf, (size_t)s->N) < 0) return -1;
  for (int64_t r = 0; r < s->N; r++) {
    int64_t k = (int64_t)s->ibuf[r];
    if (k >= 0 && k < s->K) s->hist[k]++;
  }
  if (!c->ema || !train) return 0;
  if (mf_session_read(ss, q->z_flat, s->zbuf, (size_t)(s->N * s->D)) < 0) return -1;
  for (int64_t r = 0; r < s->N; r++) {
    int64_t k = (int64_t)s->ibuf[r];
    if (k < 0 || k >= s->K) continue;
    s->sum_count[k] += 1;
    for (int64_t d = 0; d < s->D; d++) s->sum_vec[k * s->D + d] += s->zbuf[r * s->D + d];
  }
  return 0;
}

int vq_ema_apply(vq_stats *s, const vq_layer *q, mf_session *ss) {
  const vq_cfg *c = &q->cfg;
  if (c->kind != VQ_KIND_VQ || !c->ema) return 0;
  int64_t K = s->K, D = s->D;
  if (mf_session_read(ss, q->ema_count, s->cnt, (size_t)K) < 0 || mf_session_read(ss, q->ema_sum, s->avg, (size_t)(K * D)) < 0)
    return -1;
  /* data parallel: the step's counts and sums over every rank's samples, so each rank updates the codebook as one
   * process with the global batch would (in double, then to f32 as alone) */
  mf_comm *cm = ss->comm && ss->comm->size > 1 ? ss->comm : NULL;
  if (cm && (cm->allreduce(cm, s->sum_count, (size_t)K, MF_COMM_F64, MF_COMM_SUM, "the EMA codebook's counts") < 0 ||
             cm->allreduce(cm, s->sum_vec, (size_t)(K * D), MF_COMM_F64, MF_COMM_SUM, "the EMA codebook's sums") < 0))
    return -1;
  double dcy = c->decay, total = 0;
  for (int64_t k = 0; k < K; k++) {
    s->cnt[k] = (float)(dcy * s->cnt[k] + (1 - dcy) * s->sum_count[k]);
    for (int64_t d = 0; d < D; d++) s->avg[k * D + d] = (float)(dcy * s->avg[k * D + d] + (1 - dcy) * s->sum_vec[k * D + d]);
    total += s->cnt[k];
  }
  for (int64_t k = 0; k < K; k++) {
    double sm = ((double)s->cnt[k] + c->eps) / (total + (double)K * c->eps) * total; /* Laplace-smoothed count */
    for (int64_t d = 0; d < D; d++) s->cb[k * D + d] = (float)(s->avg[k * D + d] / sm);
  }
  /* dead codes restart at vectors of the step's last micro-batch (a deterministic draw per step). Over R ranks the
   * draw is a row g of the global micro-batch (R x N rows): sample g / rps of it is rank (g / rps) % R's sample
   * (g / rps) / R (the loader deals samples round-robin), and its owner contributes the row to a sum of zeros */
  if (c->dead_threshold > 0) {
    int ranks = cm ? cm->size : 1, rank = cm ? cm->rank : 0;
    int64_t rps = s->samples > 0 && s->N % s->samples == 0 ? s->N / s->samples : s->N, ndead = 0;
    for (int64_t k = 0; k < K; k++) ndead += s->cnt[k] < c->dead_threshold;
    float *pick = ndead ? calloc((size_t)(ndead * D), sizeof *pick) : NULL; /* [ndead, D] the restart vectors */
    if (ndead && !pick) return -1;
    rng_t r;
    rng_init(&r, s->seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(mf_session_step(ss) + 1)));
    for (int64_t k = 0, j = 0; k < K; k++) {
      if (s->cnt[k] >= c->dead_threshold) continue;
      int64_t g = (int64_t)rng_below(&r, (uint64_t)(s->N * ranks)), smp = g / rps;
      if (smp % ranks == rank) memcpy(pick + j * D, s->zbuf + ((smp / ranks) * rps + g % rps) * D, (size_t)D * sizeof *pick);
      j++;
    }
    if (cm && ndead && cm->allreduce(cm, pick, (size_t)(ndead * D), MF_COMM_F32, MF_COMM_SUM, "the EMA codebook's restarts") < 0) {
      free(pick);
      return -1;
    }
    for (int64_t k = 0, j = 0; k < K; k++) {
      if (s->cnt[k] >= c->dead_threshold) continue;
      for (int64_t d = 0; d < D; d++) s->cb[k * D + d] = s->avg[k * D + d] = pick[j * D + d];
      s->cnt[k] = 1;
      s->restarts++;
      j++;
    }
    free(pick);
  }
  memset(s->sum_count, 0, (size_t)K * sizeof *s->sum_count);
  memset(s->sum_vec, 0, (size_t)(K * D) * sizeof *s->sum_vec);
  if (mf_session_write_state(ss, q->ema_count, s->cnt, (size_t)K) < 0 || mf_session_write_state(ss, q->ema_sum, s->avg, (size_t)(K * D)) < 0 ||
      mf_session_write_state(ss, q->codebook, s->cb, (size_t)(K * D)) < 0)
    return -1;
  return 0;
}

void vq_stats_usage(const vq_stats *s, double *usage, double *perplexity) {
  int64_t used = 0, tot = 0;
  for (int64_t k = 0; k < s->K; k++) used += s->hist[k] > 0, tot += s->hist[k];
  double h = 0;
  for (int64_t k = 0; k < s->K && tot; k++)
    if (s->hist[k]) {
      double p = (double)s->hist[k] / (double)tot;
      h -= p * log(p);
    }
  *usage = s->K ? (double)used / (double)s->K : 0;
  *perplexity = exp(h);
}
