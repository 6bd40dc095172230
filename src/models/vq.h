/* vq.h — VQGAN's quantisers: a vector-quantised codebook (nearest code by mf_vq_nearest, straight-through,
 * commitment loss; the codebook trained by gradient or by EMA with dead-code restarts) and FSQ (finite
 * scalar quantisation), plus the codebook usage and perplexity a run reports. */
#ifndef MF_MODELS_VQ_H
#define MF_MODELS_VQ_H

#include "memfit.h"

enum { VQ_KIND_VQ = 0, VQ_KIND_FSQ };
#define VQ_MAX_LEVELS 8

typedef struct vq_cfg {
  int kind;                   /* VQ_KIND_VQ or VQ_KIND_FSQ */
  int64_t codes;              /* VQ: codebook entries K (FSQ: the product of the levels, set by vq_cfg_check) */
  int dim;                    /* code dimension D (FSQ: the number of levels) */
  int levels[VQ_MAX_LEVELS];  /* FSQ: levels per dimension, each >= 2 (e.g. 8,5,5,5) */
  double beta;                /* commitment weight: loss = ||sg(z) - e||^2 + beta ||z - sg(e)||^2 (means); 0.25 */
  int ema;                    /* 1: the codebook is a state updated by EMA (no gradient, no codebook term) */
  double decay;               /* EMA decay (0.99) */
  double eps;                 /* Laplace smoothing of the EMA counts (1e-5) */
  double dead_threshold;      /* EMA: a code whose EMA count falls below this restarts at a batch vector (0: never) */
} vq_cfg;

/* VQ with K codes of dimension D, beta 0.25, gradient codebook. */
vq_cfg vq_cfg_default(int64_t codes, int dim);
/* Checks the settings (codes >= 1, dim >= 1, FSQ levels >= 2 and dim = their count, beta >= 0, decay in
 * [0,1)); sets codes for FSQ. 0, or -1 with err naming the setting. */
int vq_cfg_check(vq_cfg *c, char *err, size_t n);

typedef struct vq_layer {
  vq_cfg cfg;
  int64_t N;                  /* vectors per micro-batch: B*h*w */
  mf_tensor codebook;         /* VQ: param "<name>.embedding.weight" [K,D] (gradient) or state [K,D] (EMA) */
  mf_tensor ema_count;        /* EMA: state f32 [K] "<name>.cluster_size" */
  mf_tensor ema_sum;          /* EMA: state f32 [K,D] "<name>.embed_avg" */
  mf_tensor z_flat;           /* [N,D] the encoder's vectors (keep: EMA sums and restarts read them) */
  mf_tensor idx;              /* VQ: i32 [N] chosen codes (keep: usage); FSQ: -1 */
  mf_tensor codes_out;        /* FSQ: [N,D] quantised values in [-1,1] (keep: usage); VQ: -1 */
  mf_tensor loss;             /* f32 scalar: codebook + beta commitment (VQ), -1 for FSQ (no loss) */
  mf_tensor out;              /* [B,D,h,w] quantised, straight-through to z */
} vq_layer;

/* Builds the quantiser on z [B,D,h,w] (NCHW; D = cfg.dim) under the name prefix `name` ("quantize").
 * 0, or -1 with err (a setting, a shape). */
int vq_build(mf_graph *g, const vq_cfg *c, mf_tensor z, const char *name, vq_layer *q, char *err, size_t n);
/* The tensors a session must keep to the end of the step (mf_plan_opts.keep) for vq_observe: up to 3. */
int vq_keep(const vq_layer *q, mf_tensor *keep);

/* EMA codebook: embed_avg starts as a copy of the codebook's initial value (taming's EMAVectorQuantizer), the
 * counts at 0. Call once on a new session (not after loading a checkpoint). 0 or -1. */
int vq_session_ready(const vq_layer *q, mf_session *ss);

/* Host side: codebook usage over a window, the EMA update with its sums over an optimizer step's micro-steps. */
typedef struct vq_stats {
  int64_t K, D;
  int64_t *hist;              /* [K] code counts since vq_stats_reset */
  double *sum_count, *sum_vec;/* [K], [K,D]: counts and sums of the current optimizer step (EMA) */
  float *zbuf;                /* [N,D] read from the session */
  float *ibuf;                /* [N] indices (VQ) or [N,D] codes (FSQ) */
  float *cb, *cnt, *avg;      /* [K,D], [K], [K,D]: the EMA state on the host */
  int64_t N;
  int64_t samples;            /* the loader's samples in a micro-batch (N / samples rows each; a clip's frames are one
                                 sample): under data parallelism a dead code restarts at a row of the global micro-batch */
  uint64_t seed, restarts;    /* restarts: dead codes restarted so far */
} vq_stats;
int vq_stats_init(vq_stats *s, const vq_layer *q, uint64_t seed);
void vq_stats_free(vq_stats *s);
void vq_stats_reset(vq_stats *s);
/* After a training micro-step (or an evaluation forward): reads the kept tensors and adds the codes to
 * the histogram (and, for an EMA codebook with train = 1, the counts and sums to the step's). 0 or -1. */
int vq_observe(vq_stats *s, const vq_layer *q, mf_session *ss, int train);
/* After the optimizer update of the step: the EMA codebook update (count = d count + (1-d) n,
 * avg = d avg + (1-d) sum, codebook = avg / Laplace-smoothed count), then dead codes (count below the
 * threshold) restarted at vectors of the batch; writes the states. No-op without EMA. 0 or -1. */
int vq_ema_apply(vq_stats *s, const vq_layer *q, mf_session *ss);
/* Fraction of the K codes used at least once, and the perplexity exp(-sum p log p) of the histogram. */
void vq_stats_usage(const vq_stats *s, double *usage, double *perplexity);

#endif
