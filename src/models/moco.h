/* moco.h — MoCo v2 (query encoder, momentum key encoder, queue of negatives, InfoNCE) and v3 (projector,
 * predictor, symmetric in-batch loss, momentum on a cosine ramp) on ResNet backbones: settings with
 * presets, the training-graph builder, and the eval-mode feature graph for kNN and the linear probe. */
#ifndef MF_MOCO_H
#define MF_MOCO_H

#include "memfit.h"
#include "models/resnet.h"

typedef struct moco_cfg {
  char preset[32];            /* the preset it started from (settings may have changed it since) */
  int version;                /* 2 or 3 */
  int depth;                  /* 18, 34, 50 */
  double width;               /* backbone width multiplier (1: torchvision's channels) */
  int small_stem;             /* 1: 3x3 stride-1 stem, no max-pool (28-64 px) */
  int size, channels;         /* input images [channels, size, size] */
  int batch;                  /* effective batch per optimizer step: micro_batch x accum */
  int micro_batch;            /* samples per micro-step (0: batch) */
  int accum;                  /* micro-steps per optimizer step (batch / micro_batch; set by moco_cfg_check) */
  int queue;                  /* v2: negatives K (ring [K, dim]); any value >= batch x ranks (every rank's keys) */
  int dim;                    /* embedding dim (128 v2, 256 v3) */
  int hidden;                 /* MLP hidden width (v2 head: 2048; v3 projector/predictor: 4096) */
  double temperature;         /* > 0 (0.2 v2, 1.0 v3) */
  double momentum;            /* key-encoder momentum in [0,1] (v2 0.999; v3: the ramp's start, 0.99) */
  int bn_splits;              /* split batch norm: statistics over this many slices of the micro-batch */
  double bn_momentum, bn_eps; /* 0.1, 1e-5 (PyTorch) */
  int segments;               /* 1: the query backbone's residual blocks are checkpoint segments (recomputable) */
  int ranks;                  /* data-parallel ranks of the job (0 or 1: one process): v3 gathers the keys of all, v2's
                                 shuffled batch norm gathers the key views and the keys (mf_allgather) */
  int shuffle_bn;             /* v2: shuffled batch norm of the key encoder (MoCo's _batch_shuffle_ddp, or on one
                                 process _batch_shuffle_single_gpu); -1: on when ranks > 1 (moco_shuffle_on) */
} moco_cfg;

/* 1 when the key encoder's batch norm is shuffled: v2 with shuffle_bn 1, or -1 and more than one rank */
int moco_shuffle_on(const moco_cfg *c);

/* The "small" preset (ResNet-18, 32 px small stem, queue 4096, batch 256, v2). */
moco_cfg moco_cfg_default(void);
/* Fills c with a named preset (small, seed-low-vram, seed-16gb, tiny); -1 with err listing the names. */
int moco_cfg_preset(const char *name, moco_cfg *c, char *err, size_t n);
const char *moco_preset_names(void);
/* Checks every setting together and sets accum = batch / micro_batch; 0, or -1 with err naming the setting
 * (--queue shorter than --batch, --temperature <= 0, --momentum outside [0,1], --bn-splits not dividing the
 * micro-batch, ...). */
int moco_cfg_check(moco_cfg *c, char *err, size_t n);
/* Momentum of the key encoder at optimizer step `step` of `total` (v2: c->momentum; v3: the cosine ramp
 * 1 - (1 - m0) * (cos(pi * step / total) + 1) / 2 from m0 = c->momentum to 1). */
double moco_momentum_at(const moco_cfg *c, int64_t step, int64_t total);

typedef struct moco_net {
  moco_cfg cfg;               /* as built (micro_batch = the graph's B) */
  mf_tensor xq, xk;           /* inputs [B,C,H,W] f32: the two augmented views (v3: x1, x2) */
  mf_tensor labels;           /* input i32 [B]: v2 zeros, v3 r*B + 0..B-1 (rank r); moco_session_ready writes it */
  mf_tensor shuffle, unshuffle; /* shuffled BN (v2): inputs i32 [B], rows of the gathered key views [ranks*B,..] this rank's
                                 key encoder takes, and rows of the gathered keys that are its own samples'
                                 (moco_shuffle_draw); -1 without */
  mf_tensor loss;             /* f32 scalar: InfoNCE (v2) or 2T*(ctr(q1,k2) + ctr(q2,k1)) (v3) */
  mf_tensor logits;           /* v2 [B, 1+K] = [q.k, q.queue^T] / T; v3 [B,B] = q1 k2^T / T */
  mf_tensor q, k;             /* L2-normalised [B, dim] (v3: q1 and k2) */
  mf_tensor queue;            /* v2: ring [K, dim] (pushed with k once per optimizer step); v3: -1 */
  resnet_net bq, bk;          /* query / key backbones (v3: of view 1) */
  int n_ema;                  /* EMA states of the key encoder (all of them follow every update) */
} moco_net;

/* Builds one micro-batch (micro_batch samples) of the training step on the empty graph g: query encoder
 * "encoder_q.*" (backbone + head: v2 fc.0/fc.2, v3 projector "encoder_q.fc.*" + "predictor.*"), key encoder
 * "encoder_k.*" = mf_ema of every query parameter (its BN running stats its own buffers), the loss. The queue
 * takes the keys of c->accum micro-steps at once (mf_ring_push_steps): the session's accum_steps must equal
 * c->accum. Returns 0, or -1 with err (a bad setting, a graph error). */
int moco_build(mf_graph *g, const moco_cfg *c, int micro_batch, moco_net *out, char *err, size_t n);
/* Shuffled batch norm: the indices of micro-step `micro` (over the run, mf_session_next_micro) for rank `rank` of
 * `ranks`, each holding B samples of the global micro-batch of M = ranks*B (rank r the global samples r + ranks*j, as
 * the loader deals them). A permutation perm of 0..M-1 is drawn from (seed, micro) alone, the same on every rank and
 * for any ranks with the same M; rank r's key encoder takes the global samples perm[r + ranks*j] (so with ranks 1 and
 * split batch norm of S slices, slice s holds perm[s + S*j]: 1 rank with --bn-splits S is S ranks shuffled alike).
 * shuffle[j]: that sample's row in the gathered views (global sample g sits at row (g % ranks)*B + g / ranks);
 * unshuffle[j]: the gathered-keys row holding the key of this rank's own sample r + ranks*j. Floats (staged as
 * inputs). perm (may be NULL) receives the permutation [M]. 0, or -1 out of memory. */
int moco_shuffle_draw(uint64_t seed, int64_t micro, int ranks, int rank, int B, float *shuffle, float *unshuffle, int *perm);
/* Writes the constant inputs (labels) into a session of a moco_build graph; 0 or -1 with err. */
int moco_session_ready(mf_session *s, const moco_net *net, char *err, size_t n);

/* Eval-mode query backbone (batch norm with running statistics; same parameter names as training,
 * "encoder_q.conv1.weight", ...): x [batch, C, H, W] -> pooled features [batch, D] (D = backbone feature
 * dim; not normalised). For kNN and the linear probe. */
typedef struct moco_features {
  mf_tensor x, feat;
  resnet_net b;
} moco_features;
int moco_build_features(mf_graph *g, const moco_cfg *c, int batch, moco_features *out, char *err, size_t n);
/* Copies the query backbone's parameters and running statistics (averaged over the bn splits) from a
 * training session into a feature session (sessions of moco_build / moco_build_features graphs of the
 * same cfg). 0, or -1 with err naming the tensor. */
int moco_features_copy(mf_session *train, const moco_net *net, mf_session *feat, const moco_features *f, char *err,
                       size_t n);

#endif
