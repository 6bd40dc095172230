/* resnet.h — ResNet-18/34 (BasicBlock) and -50 (Bottleneck) backbones on memfit's graph API, with
 * torchvision's parameter names under a prefix, a width multiplier, the small-image stem and split
 * batch norm (statistics over bn_splits interleaved slices of the batch, as MoCo's SplitBatchNorm). */
#ifndef MF_RESNET_H
#define MF_RESNET_H

#include "memfit.h"

#define RESNET_MAX_BN 64       /* batch norms of a ResNet-50 (53) with room */

typedef struct resnet_cfg {
  int depth;                   /* 18, 34 or 50 */
  double width;                /* width multiplier: stage channels round(64*width) * 1, 2, 4, 8 (>= 1 each) */
  int small_stem;              /* 1: conv1 3x3 stride 1, no max-pool (28-64 px); 0: 7x7 stride 2 + max-pool 3/2 */
  int channels;                /* input channels (3, or 1 for gray images) */
  int bn_splits;               /* >= 1, must divide the micro-batch: statistics over bn_splits slices */
  int training;                /* 1: batch statistics (running stats updated); 0: running statistics */
  double bn_momentum, bn_eps;  /* PyTorch's 0.1 and 1e-5 */
  int segments;                /* 1: each residual block of a query backbone is a checkpoint segment (the planner
                                  may recompute it in backward); key encoders (ema) never have segments */
} resnet_cfg;

resnet_cfg resnet_cfg_default(int depth);
/* 0, or -1 with err naming the setting (depth, width, channels, bn-splits). */
int resnet_cfg_check(const resnet_cfg *c, char *err, size_t n);
/* Channels of the pooled features: 512*width (18/34) or 2048*width (50), width-rounded as built. */
int resnet_feature_dim(const resnet_cfg *c);

/* One built backbone: its parameter tensors are in the graph under "<prefix>conv1.weight", ... */
typedef struct resnet_net {
  mf_tensor feat;              /* pooled features [B, feature_dim] */
  int n_bn;                    /* batch norms built, in order, with their running-stat buffers */
  mf_tensor bn_mean[RESNET_MAX_BN], bn_var[RESNET_MAX_BN]; /* [bn_splits*C] (split-major) */
  int bn_ch[RESNET_MAX_BN];    /* C of each */
} resnet_net;

/* Where a backbone takes its weights from. ema_of == NULL: new parameters named prefix + torchvision name
 * (kaiming-normal convs, BN gamma 1 / beta 0, as torchvision). ema_of != NULL: a key encoder: every weight
 * is mf_ema(prefix + name, the query's parameter of the same torchvision name, momentum), BN running stats
 * are its own buffers. */
typedef struct resnet_src {
  const char *prefix;          /* "encoder_q." */
  const char *ema_prefix;      /* with ema: the query's prefix to look parameters up ("encoder_q.") */
  double momentum;             /* with ema */
  int ema;                     /* 1: build as the EMA of the parameters named ema_prefix + name */
} resnet_src;

/* Builds the backbone on x [B, channels, H, W] (B divisible by bn_splits). Returns 0, or -1 with the reason
 * in mf_graph_error(g) (and in err). */
int resnet_build(mf_graph *g, const resnet_cfg *c, const resnet_src *src, mf_tensor x, resnet_net *out, char *err,
                 size_t n);

/* Batch norm with split statistics on x [B,C,H,W] or [B,C]: splits S >= 1 (B % S == 0; the slices are
 * the samples n with n % S == s, as MoCo's SplitBatchNorm views [B,C,H,W] as [B/S, S*C, H, W]); gamma/beta
 * [C] (or -1: affine off, gamma 1 beta 0), rmean/rvar buffers [S*C]. Returns the normalised [B,C,...]. */
mf_tensor resnet_split_bn(mf_graph *g, mf_tensor x, mf_tensor gamma, mf_tensor beta, mf_tensor rmean, mf_tensor rvar,
                          int splits, int training, double momentum, double eps);

/* Finds a tensor of graph g by name (parameter, buffer or state); -1 when none. */
mf_tensor resnet_find(const mf_graph *g, const char *name);

#endif
