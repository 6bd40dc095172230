/* resnet.c — ResNet-18/34/50 backbones (torchvision layout and parameter names, width multiplier,
 * small-image stem, split batch norm), query encoders with parameters or key encoders as EMA states. */
#include "models/resnet.h"
#include "graph/graph.h"
#include "graph/oplist.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

resnet_cfg resnet_cfg_default(int depth) {
  resnet_cfg c = {.depth = depth, .width = 1, .small_stem = 0, .channels = 3, .bn_splits = 1, .training = 1,
                  .bn_momentum = 0.1, .bn_eps = 1e-5};
  return c;
}

static int base_width(const resnet_cfg *c) {
  int w = (int)lround(64 * c->width);
  return w < 1 ? 1 : w;
}

int resnet_feature_dim(const resnet_cfg *c) { return base_width(c) * 8 * (c->depth == 50 ? 4 : 1); }

int resnet_cfg_check(const resnet_cfg *c, char *err, size_t n) {
  if (c->depth != 18 && c->depth != 34 && c->depth != 50) {
    snprintf(err, n, "--arch: resnet%d is not one of resnet18, resnet34, resnet50", c->depth);
    return -1;
  }
  if (!(c->width > 0 && c->width <= 16)) { snprintf(err, n, "--width: %g is not in (0, 16]", c->width); return -1; }
  if (c->channels < 1 || c->channels > 64) { snprintf(err, n, "--channels: %d is not in 1..64", c->channels); return -1; }
  if (c->bn_splits < 1) { snprintf(err, n, "--bn-splits: %d must be at least 1", c->bn_splits); return -1; }
  return 0;
}

mf_tensor resnet_find(const mf_graph *g, const char *name) {
  for (int id = 0; id < g->n; id++) {
    const mf_node *nd = &g->nodes[id];
    if ((nd->op == MF_OP_PARAM || nd->op == MF_OP_BUFFER) && !strcmp(nd->name, name)) return id;
  }
  return -1;
}

/* the low-precision copy ops read of a master parameter or EMA average (itself in f32 graphs) */
static mf_tensor reader_of(const mf_graph *g, mf_tensor master) {
  if (master < 0 || g->act_dtype == MF_F32 || g->act_dtype == MF_F64) return master;
  for (int id = master + 1; id < g->n; id++)
    if (g->nodes[id].op == MF_OP_PARAM_LP && g->nodes[id].master == master) return id;
  return master;
}

typedef struct bld {
  mf_graph *g;
  const resnet_cfg *c;
  const resnet_src *s;
  resnet_net *out;
} bld;

/* A weight named `name` (torchvision's, without prefix): a new parameter, the query's parameter again
 * (reuse), or the EMA of the query's. */
static mf_tensor weight(bld *b, const char *name, int ndim, const int64_t *shape, mf_init init, double scale) {
  char full[160], src[160];
  snprintf(full, sizeof full, "%s%s", b->s->prefix, name);
  if (strlen(full) >= MF_NAME_LEN - 5) return mf_graph_fail(b->g, "resnet: name '%s' is too long", full);
  if (b->s->ema) {
    snprintf(src, sizeof src, "%s%s", b->s->ema_prefix, name);
    mf_tensor p = resnet_find(b->g, src);
    if (p < 0 || b->g->nodes[p].op != MF_OP_PARAM)
      return mf_graph_fail(b->g, "resnet: key encoder weight '%s' has no query parameter '%s'", full, src);
    mf_tensor have = resnet_find(b->g, full);
    if (have >= 0) return reader_of(b->g, have);  /* second pass of the same key encoder */
    return mf_ema(b->g, full, p, b->s->momentum);
  }
  mf_tensor have = resnet_find(b->g, full);
  if (have >= 0) return reader_of(b->g, have);    /* second pass of the same query encoder (MoCo v3) */
  return mf_param(b->g, full, ndim, shape, init, scale);
}

static mf_tensor buffer(bld *b, const char *name, int64_t n, mf_init init) {
  char full[160];
  snprintf(full, sizeof full, "%s%s", b->s->prefix, name);
  mf_tensor have = resnet_find(b->g, full);
  if (have >= 0) return have;
  return mf_buffer(b->g, full, 1, &n, init, 0);
}

mf_tensor resnet_split_bn(mf_graph *g, mf_tensor x, mf_tensor gamma, mf_tensor beta, mf_tensor rmean, mf_tensor rvar,
                          int splits, int training, double momentum, double eps) {
  if (mf_graph_error(g)) return -1;
  int nd = mf_tensor_ndim(g, x);
  int64_t B = mf_tensor_dim(g, x, 0), C = mf_tensor_dim(g, x, 1);
  if (splits <= 1 || !training) {
    if (splits > 1) return mf_graph_fail(g, "resnet_split_bn: eval mode takes the averaged running statistics [C] (split 1)");
    return mf_batchnorm(g, x, gamma, beta, rmean, rvar, training, momentum, eps);
  }
  if (B % splits)
    return mf_graph_fail(g, "--bn-splits: %d splits do not divide the micro-batch of %lld", splits, (long long)B);
  int64_t shp[MF_MAX_DIMS], orig[MF_MAX_DIMS];
  for (int i = 0; i < nd; i++) orig[i] = shp[i] = mf_tensor_dim(g, x, i);
  shp[0] = B / splits; /* [B,C,...] -> [B/S, S*C, ...]: sample a*S+s is split s (channels s*C .. s*C+C-1) */
  shp[1] = (int64_t)splits * C;
  mf_tensor xs = mf_reshape(g, x, nd, shp);
  mf_tensor rep[64];
  if (splits > 64) return mf_graph_fail(g, "--bn-splits: %d is more than 64", splits);
  for (int i = 0; i < splits; i++) rep[i] = gamma;
  mf_tensor gs = mf_concat(g, splits, rep, 0); /* [S*C] */
  for (int i = 0; i < splits; i++) rep[i] = beta;
  mf_tensor bs = mf_concat(g, splits, rep, 0); /* [S*C] */
  mf_tensor y = mf_batchnorm(g, xs, gs, bs, rmean, rvar, 1, momentum, eps);
  return mf_reshape(g, y, nd, orig); /* [B,C,...] */
}

/* conv (no bias) named name + ".weight": [oc, ic, k, k] */
static mf_tensor conv(bld *b, mf_tensor x, const char *name, int64_t oc, int k, int stride, int pad) {
  int64_t ic = mf_tensor_dim(b->g, x, 1), ws[4] = {oc, ic, k, k};
  char nm[160];
  snprintf(nm, sizeof nm, "%s.weight", name);
  mf_tensor w = weight(b, nm, 4, ws, MF_INIT_KAIMING, 0);
  mf_tensor y = mf_conv2d(b->g, x, w, -1, stride, pad, 1);
  if (y >= 0) {
    snprintf(nm, sizeof nm, "%s%s", b->s->prefix, name);
    mf_tensor_set_name(b->g, y, nm);
  }
  return y;
}

/* batch norm named name (.weight, .bias, .running_mean, .running_var) over x's channels */
static mf_tensor bn(bld *b, mf_tensor x, const char *name) {
  int64_t C = mf_tensor_dim(b->g, x, 1);
  int S = b->c->training ? b->c->bn_splits : 1;
  char nm[160];
  snprintf(nm, sizeof nm, "%s.weight", name);
  mf_tensor ga = weight(b, nm, 1, &C, MF_INIT_ONE, 0);
  snprintf(nm, sizeof nm, "%s.bias", name);
  mf_tensor be = weight(b, nm, 1, &C, MF_INIT_ZERO, 0);
  snprintf(nm, sizeof nm, "%s.running_mean", name);
  mf_tensor rm = buffer(b, nm, S * C, MF_INIT_ZERO);
  snprintf(nm, sizeof nm, "%s.running_var", name);
  mf_tensor rv = buffer(b, nm, S * C, MF_INIT_ONE);
  resnet_net *o = b->out;
  if (o->n_bn < RESNET_MAX_BN) {
    o->bn_mean[o->n_bn] = rm;
    o->bn_var[o->n_bn] = rv;
    o->bn_ch[o->n_bn++] = (int)C;
  }
  mf_tensor y = resnet_split_bn(b->g, x, ga, be, rm, rv, S, b->c->training, b->c->bn_momentum, b->c->bn_eps);
  if (y >= 0) { /* plans name the peak's op by this: "encoder_q.layer1.0.bn1" */
    snprintf(nm, sizeof nm, "%s%s", b->s->prefix, name);
    mf_tensor_set_name(b->g, y, nm);
  }
  return y;
}

/* torchvision BasicBlock (expansion 1) or Bottleneck (expansion 4, stride on the 3x3 conv) */
static mf_tensor block(bld *b, mf_tensor x, const char *pre, int64_t planes, int stride) {
  mf_graph *g = b->g;
  char n1[96], n2[96];
  int bottleneck = b->c->depth == 50;
  int64_t inp = mf_tensor_dim(g, x, 1), outc = bottleneck ? planes * 4 : planes;
  mf_tensor y;
  snprintf(n1, sizeof n1, "%s.conv1", pre);
  snprintf(n2, sizeof n2, "%s.bn1", pre);
  if (!bottleneck) {
    y = mf_relu(g, bn(b, conv(b, x, n1, planes, 3, stride, 1), n2));                 /* [B,planes,H/s,W/s] */
    snprintf(n1, sizeof n1, "%s.conv2", pre);
    snprintf(n2, sizeof n2, "%s.bn2", pre);
    y = bn(b, conv(b, y, n1, planes, 3, 1, 1), n2);
  } else {
    y = mf_relu(g, bn(b, conv(b, x, n1, planes, 1, 1, 0), n2));                      /* [B,planes,H,W] */
    snprintf(n1, sizeof n1, "%s.conv2", pre);
    snprintf(n2, sizeof n2, "%s.bn2", pre);
    y = mf_relu(g, bn(b, conv(b, y, n1, planes, 3, stride, 1), n2));                 /* [B,planes,H/s,W/s] */
    snprintf(n1, sizeof n1, "%s.conv3", pre);
    snprintf(n2, sizeof n2, "%s.bn3", pre);
    y = bn(b, conv(b, y, n1, outc, 1, 1, 0), n2);                                   /* [B,4planes,H/s,W/s] */
  }
  mf_tensor id = x;
  if (stride != 1 || inp != outc) {
    snprintf(n1, sizeof n1, "%s.downsample.0", pre);
    snprintf(n2, sizeof n2, "%s.downsample.1", pre);
    id = bn(b, conv(b, x, n1, outc, 1, stride, 0), n2);                              /* [B,outc,H/s,W/s] */
  }
  return mf_relu(g, mf_add(g, y, id));
}

int resnet_build(mf_graph *g, const resnet_cfg *c, const resnet_src *src, mf_tensor x, resnet_net *out, char *err,
                 size_t n) {
  memset(out, 0, sizeof *out);
  out->feat = -1;
  if (resnet_cfg_check(c, err, n) < 0) return -1;
  if (mf_graph_error(g)) { snprintf(err, n, "%s", mf_graph_error(g)); return -1; }
  int64_t B = mf_tensor_dim(g, x, 0);
  if (c->training && c->bn_splits > 1 && B % c->bn_splits) {
    snprintf(err, n, "--bn-splits: %d splits do not divide the micro-batch of %lld", c->bn_splits, (long long)B);
    mf_graph_fail(g, "%s", err);
    return -1;
  }
  bld b = {g, c, src, out};
  int w = base_width(c);
  static const int blocks[3][4] = {{2, 2, 2, 2}, {3, 4, 6, 3}, {3, 4, 6, 3}};
  const int *nb = blocks[c->depth == 18 ? 0 : c->depth == 34 ? 1 : 2];
  mf_tensor h;
  if (c->small_stem) h = mf_relu(g, bn(&b, conv(&b, x, "conv1", w, 3, 1, 1), "bn1"));  /* [B,w,H,W] */
  else {
    h = mf_relu(g, bn(&b, conv(&b, x, "conv1", w, 7, 2, 3), "bn1"));                    /* [B,w,H/2,W/2] */
    h = mf_maxpool2d(g, h, 3, 2, 1);                                                    /* [B,w,H/4,W/4] */
  }
  for (int L = 0; L < 4; L++)
    for (int i = 0; i < nb[L]; i++) {
      char pre[32];
      snprintf(pre, sizeof pre, "layer%d.%d", L + 1, i);
      int seg = c->segments && !src->ema;
      if (seg) {
        char sn[64];
        snprintf(sn, sizeof sn, "%s%s#%d", src->prefix, pre, mf_graph_segment_count(g));
        mf_segment_begin(g, sn);
      }
      mf_tensor in = h;
      h = block(&b, h, pre, (int64_t)w << L, i == 0 && L > 0 ? 2 : 1);                 /* [B,w*2^L(*4),..] */
      if (seg) mf_segment_end(g, 1, &in, 1, &h, NULL, NULL);
    }
  out->feat = mf_global_avgpool(g, h);                                                   /* [B,F] */
  if (mf_graph_error(g)) { snprintf(err, n, "%s", mf_graph_error(g)); return -1; }
  return 0;
}
