/* vqgan.c — the VQGAN training graph (taming-transformers' VQModel + VQLPIPSWithDiscriminator without the
 * perceptual term): presets, settings check, encoder/decoder/discriminator builders with taming's names,
 * the generator and discriminator losses of one micro-batch and the adaptive GAN weight (ops/adaptive.c). */
#include "models/vqgan.h"
#include "ops/ops.h"
#include "graph/graph.h"
#include "models/steg_loss.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct preset {
  const char *name;
  int ch, mult[4], z, codes, micro, accum, size;
} preset;
/* the seed's tiers: hidden = ch * mult; effective batch micro x accum */
static const preset presets[] = {
  {"low", 16, {1, 2, 4, 8}, 16, 128, 1, 8, 256},
  {"mid", 32, {1, 2, 4, 8}, 16, 256, 2, 4, 256},
  {"high", 32, {1, 2, 4, 8}, 24, 512, 4, 2, 256},
  {"original", 64, {1, 2, 4, 8}, 32, 512, 8, 1, 256},
  {"tiny", 8, {1, 2, 0, 0}, 4, 16, 2, 1, 16},
};
const char *vqgan_preset_names(void) { return "low, mid, high, original, tiny"; }

int vqgan_cfg_preset(const char *name, vqgan_cfg *c, char *err, size_t n) {
  const preset *p = NULL;
  for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
    if (!strcmp(presets[i].name, name)) p = &presets[i];
  if (!p) { snprintf(err, n, "unknown vqgan preset '%s' (presets: %s)", name, vqgan_preset_names()); return -1; }
  memset(c, 0, sizeof *c);
  snprintf(c->preset, sizeof c->preset, "%s", name);
  c->size = p->size;
  c->channels = 3;
  c->frames = 1;
  c->ch = p->ch;
  c->levels = 0;
  for (int i = 0; i < 4 && p->mult[i]; i++) c->mult[c->levels++] = p->mult[i];
  c->res_blocks = !strcmp(name, "tiny") ? 1 : 2;
  c->attn = 1;
  c->z_channels = p->z;
  c->q = vq_cfg_default(p->codes, p->z);
  c->micro_batch = p->micro;
  c->accum = p->accum;
  c->batch = p->micro * p->accum;
  c->disc_layers = !strcmp(name, "tiny") ? 2 : 3;
  c->disc_ch = !strcmp(name, "tiny") ? 8 : 64;
  c->disc_weight = 0.8;
  c->disc_start = 0;
  c->codebook_weight = 1;
  c->perceptual_weight = 1;
  c->segments = 1;
  return 0;
}

int vqgan_cfg_check(vqgan_cfg *c, char *err, size_t n) {
  if (c->levels < 1 || c->levels > VQGAN_MAX_LEVELS) { snprintf(err, n, "--mult needs 1 to %d levels", VQGAN_MAX_LEVELS); return -1; }
  if (c->ch < 1) { snprintf(err, n, "--ch must be at least 1"); return -1; }
  for (int i = 0; i < c->levels; i++)
    if (c->mult[i] < 1) { snprintf(err, n, "--mult: level %d has multiplier %d; each must be at least 1", i, c->mult[i]); return -1; }
  int down = 1 << (c->levels - 1);
  if (c->size < 1 || c->size % down) {
    snprintf(err, n, "--size %d does not divide into the latent grid: %d levels halve it %d times, so it must be a multiple of %d",
             c->size, c->levels, c->levels - 1, down);
    return -1;
  }
  if (c->channels < 1) { snprintf(err, n, "--channels must be at least 1"); return -1; }
  if (c->frames < 1) { snprintf(err, n, "--clips must be at least 1 (1: images)"); return -1; }
  if (c->res_blocks < 1) { snprintf(err, n, "--res-blocks must be at least 1"); return -1; }
  if (c->z_channels < 1) { snprintf(err, n, "--latent must be at least 1"); return -1; }
  if (vq_cfg_check(&c->q, err, n) < 0) return -1;
  if (c->disc_layers < 1 || c->disc_ch < 1) { snprintf(err, n, "--disc-layers and --disc-ch must be at least 1"); return -1; }
  /* the discriminator's 4x4 convolutions: disc_layers stride-2 halvings, then two stride-1 ones (-1 each) */
  int s = c->size;
  for (int i = 0; i < c->disc_layers; i++) s = (s + 2 - 4) / 2 + 1;
  if (s - 2 < 1) { snprintf(err, n, "--size %d is too small for a %d-layer discriminator", c->size, c->disc_layers); return -1; }
  if (c->batch < 1) { snprintf(err, n, "--batch must be at least 1"); return -1; }
  if (c->micro_batch <= 0) c->micro_batch = c->batch;
  if (c->batch % c->micro_batch) {
    snprintf(err, n, "--micro-batch %d does not divide --batch %d", c->micro_batch, c->batch);
    return -1;
  }
  c->accum = c->batch / c->micro_batch;
  if (c->disc_start < 0) { snprintf(err, n, "--disc-start must be 0 or more"); return -1; }
  return 0;
}

void vqgan_cfg_describe(const vqgan_cfg *c, char *buf, size_t n) {
  char hid[96] = "";
  size_t o = 0;
  for (int i = 0; i < c->levels; i++) o += (size_t)snprintf(hid + o, sizeof hid - o, "%s%d", i ? "," : "", c->ch * c->mult[i]);
  char q[96];
  if (c->q.kind == VQ_KIND_FSQ) {
    size_t k = (size_t)snprintf(q, sizeof q, "FSQ [");
    for (int i = 0; i < c->q.dim; i++) k += (size_t)snprintf(q + k, sizeof q - k, "%s%d", i ? "," : "", c->q.levels[i]);
    snprintf(q + k, sizeof q - k, "]");
  } else
    snprintf(q, sizeof q, "%lld codes x %d%s", (long long)c->q.codes, c->q.dim, c->q.ema ? " (EMA)" : "");
  char clip[48] = "";
  if (c->frames > 1) snprintf(clip, sizeof clip, "clips of %d frames (temporal convs) ", c->frames);
  snprintf(buf, n, "VQGAN: hidden [%s], %d res blocks, latent %d, %s, %s%dx%d, batch %d x %d, PatchGAN %d layers %d filters", hid,
           c->res_blocks, c->z_channels, q, clip, c->size, c->size, c->micro_batch, c->accum, c->disc_layers, c->disc_ch);
}

/* ---- builders ---- */

typedef struct bld {
  mf_graph *g;
  const vqgan_cfg *c;
  int group;
} bld;

static mf_tensor par(bld *b, const char *base, const char *leaf, int nd, const int64_t *s, mf_init init, double sc) {
  char nm[256];
  snprintf(nm, sizeof nm, "%s.%s", base, leaf);
  mf_tensor t = mf_param(b->g, nm, nd, s, init, sc);
  if (t >= 0 && b->group) mf_param_group_set(b->g, t, b->group);
  return t;
}

static mf_tensor conv(bld *b, mf_tensor x, const char *name, int cin, int cout, int k, int stride, int pad, int bias) {
  int64_t sw[4] = {cout, cin, k, k}, sb[1] = {cout};
  mf_tensor w = par(b, name, "weight", 4, sw, MF_INIT_KAIMING, 0);
  mf_tensor bb = bias ? par(b, name, "bias", 1, sb, MF_INIT_ZERO, 0) : -1;
  return mf_conv2d(b->g, x, w, bb, stride, pad, 1); /* [B,cout,(H+2p-k)/s+1,..] */
}

/* taming's Normalize: GroupNorm(32, C, eps 1e-6); channels not a multiple of 32 take gcd(32, C) groups */
static mf_tensor norm(bld *b, mf_tensor x, const char *name, int C) {
  int gr = 32;
  while (C % gr) gr /= 2;
  int64_t s[1] = {C};
  return mf_groupnorm(b->g, x, par(b, name, "weight", 1, s, MF_INIT_ONE, 0), par(b, name, "bias", 1, s, MF_INIT_ZERO, 0), gr, 1e-6);
}

mf_tensor vqgan_temporal_conv(mf_graph *g, mf_tensor h, mf_tensor w, mf_tensor bias, int T) {
  if (T < 1 || mf_tensor_ndim(g, h) != 4 || mf_tensor_dim(g, h, 0) % T) {
    return mf_graph_fail(g, "vqgan temporal conv: input must be [B*T, C, H, W] with T = %d dividing its first dimension", T);
  }
  int64_t BT = mf_tensor_dim(g, h, 0), C = mf_tensor_dim(g, h, 1), H = mf_tensor_dim(g, h, 2), W = mf_tensor_dim(g, h, 3), B = BT / T;
  int64_t s3[3] = {B, T, C * H * W}, s4[4] = {BT, C, H, W};
  mf_tensor v = mf_reshape(g, h, 3, s3);                                        /* [B, T, CHW] */
  mf_tensor st[3] = {-1, h, -1};
  if (T == 1) { /* no neighbours: both shifted copies are zeros */
    st[0] = st[2] = mf_mul_scalar(g, h, 0.0);
  } else {
    mf_tensor z = mf_mul_scalar(g, mf_slice(g, v, 1, 0, 1), 0.0);               /* [B, 1, CHW] zeros */
    mf_tensor pv[2] = {z, mf_slice(g, v, 1, 0, T - 1)}, nx[2] = {mf_slice(g, v, 1, 1, T), z};
    st[0] = mf_reshape(g, mf_concat(g, 2, pv, 1), 4, s4);                       /* h_{t-1}: [B*T, C, H, W] */
    st[2] = mf_reshape(g, mf_concat(g, 2, nx, 1), 4, s4);                       /* h_{t+1} */
  }
  mf_tensor cat = mf_concat(g, 3, st, 1);                                       /* [B*T, 3C, H, W] */
  return mf_conv2d(g, cat, w, bias, 1, 0, 1);                                   /* [B*T, Cout, H, W] */
}

/* the temporal conv of a ResNet block in a clip model: zero weights, so the block starts as the per-frame image model */
static mf_tensor temporal(bld *b, mf_tensor h, const char *base, int C) {
  char nm[176];
  snprintf(nm, sizeof nm, "%s.temporal", base);
  int64_t sw[4] = {C, 3 * C, 1, 1}, sb[1] = {C};
  mf_tensor w = par(b, nm, "weight", 4, sw, MF_INIT_ZERO, 0);
  mf_tensor bb = par(b, nm, "bias", 1, sb, MF_INIT_ZERO, 0);
  return vqgan_temporal_conv(b->g, h, w, bb, b->c->frames);
}

static mf_tensor resblock(bld *b, mf_tensor x, const char *base, int cin, int cout) {
  char nm[160];
  mf_tensor in = x;
  if (b->c->segments) mf_segment_begin(b->g, base);
  snprintf(nm, sizeof nm, "%s.norm1", base);
  mf_tensor h = mf_silu(b->g, norm(b, x, nm, cin));
  snprintf(nm, sizeof nm, "%s.conv1", base);
  h = conv(b, h, nm, cin, cout, 3, 1, 1, 1);
  snprintf(nm, sizeof nm, "%s.norm2", base);
  h = mf_silu(b->g, norm(b, h, nm, cout));
  snprintf(nm, sizeof nm, "%s.conv2", base);
  h = conv(b, h, nm, cout, cout, 3, 1, 1, 1);
  if (b->c->frames > 1) h = mf_add(b->g, h, temporal(b, h, base, cout)); /* (2+1)D: per-frame 3x3, then over time */
  if (cin != cout) {
    snprintf(nm, sizeof nm, "%s.nin_shortcut", base);
    x = conv(b, x, nm, cin, cout, 1, 1, 0, 1);
  }
  mf_tensor y = mf_add(b->g, x, h); /* [B,cout,H,W] */
  if (b->c->segments) mf_segment_end(b->g, 1, &in, 1, &y, NULL, NULL);
  return y;
}

/* taming's AttnBlock: q, k, v 1x1 convs of GroupNorm(x); softmax(q^T k / sqrt(C)) over positions; proj_out */
static mf_tensor attnblock(bld *b, mf_tensor x, const char *base, int C) {
  char nm[160];
  mf_graph *g = b->g;
  mf_tensor in = x;
  if (b->c->segments) mf_segment_begin(g, base);
  int64_t B = mf_tensor_dim(g, x, 0), H = mf_tensor_dim(g, x, 2), W = mf_tensor_dim(g, x, 3);
  snprintf(nm, sizeof nm, "%s.norm", base);
  mf_tensor h = norm(b, x, nm, C);
  mf_tensor qkv[3];
  const char *qn[3] = {"q", "k", "v"};
  int perm[3] = {0, 2, 1};
  int64_t s3[3] = {B, C, H * W};
  for (int i = 0; i < 3; i++) {
    snprintf(nm, sizeof nm, "%s.%s", base, qn[i]);
    qkv[i] = mf_permute(g, mf_reshape(g, conv(b, h, nm, C, C, 1, 1, 0, 1), 3, s3), perm); /* [B, HW, C] */
  }
  mf_tensor a = mf_attention(g, qkv[0], qkv[1], qkv[2], 0, b->c->keep_scores);         /* [B, HW, C] */
  int64_t s4[4] = {B, C, H, W};
  a = mf_reshape(g, mf_permute(g, a, perm), 4, s4);                                      /* [B, C, H, W] */
  snprintf(nm, sizeof nm, "%s.proj_out", base);
  mf_tensor y = mf_add(g, x, conv(b, a, nm, C, C, 1, 1, 0, 1));
  if (b->c->segments) mf_segment_end(g, 1, &in, 1, &y, NULL, NULL);
  return y;
}

/* taming's Downsample (with conv): pad right and bottom by one zero, then 3x3 stride 2 without padding */
static mf_tensor downsample(bld *b, mf_tensor x, const char *base, int C) {
  mf_graph *g = b->g;
  int64_t H = mf_tensor_dim(g, x, 2), W = mf_tensor_dim(g, x, 3);
  mf_tensor zr = mf_mul_scalar(g, mf_slice(g, x, 2, H - 1, H), 0.0);  /* [B,C,1,W] zeros */
  mf_tensor p[2] = {x, zr};
  mf_tensor xp = mf_concat(g, 2, p, 2);                                /* [B,C,H+1,W] */
  mf_tensor zc = mf_mul_scalar(g, mf_slice(g, xp, 3, W - 1, W), 0.0); /* [B,C,H+1,1] */
  mf_tensor q[2] = {xp, zc};
  xp = mf_concat(g, 2, q, 3);                                          /* [B,C,H+1,W+1] */
  char nm[160];
  snprintf(nm, sizeof nm, "%s.conv", base);
  return conv(b, xp, nm, C, C, 3, 2, 0, 1);                            /* [B,C,H/2,W/2] */
}

static mf_tensor encoder(bld *b, mf_tensor x) {
  const vqgan_cfg *c = b->c;
  char nm[128];
  mf_tensor h = conv(b, x, "encoder.conv_in", c->channels, c->ch, 3, 1, 1, 1);
  int cin = c->ch;
  for (int i = 0; i < c->levels; i++) {
    int cout = c->ch * c->mult[i];
    for (int j = 0; j < c->res_blocks; j++) {
      snprintf(nm, sizeof nm, "encoder.down.%d.block.%d", i, j);
      h = resblock(b, h, nm, cin, cout);
      cin = cout;
      if (c->attn && i == c->levels - 1) {
        snprintf(nm, sizeof nm, "encoder.down.%d.attn.%d", i, j);
        h = attnblock(b, h, nm, cin);
      }
    }
    if (i != c->levels - 1) {
      snprintf(nm, sizeof nm, "encoder.down.%d.downsample", i);
      h = downsample(b, h, nm, cin);
    }
  }
  h = resblock(b, h, "encoder.mid.block_1", cin, cin);
  if (c->attn) h = attnblock(b, h, "encoder.mid.attn_1", cin);
  h = resblock(b, h, "encoder.mid.block_2", cin, cin);
  h = mf_silu(b->g, norm(b, h, "encoder.norm_out", cin));
  return conv(b, h, "encoder.conv_out", cin, c->z_channels, 3, 1, 1, 1); /* [B, z, S/2^(L-1), ..] */
}

/* returns the decoder output; *h_last the conv_out's input and *w_last its weight */
static mf_tensor decoder(bld *b, mf_tensor z, mf_tensor *h_last, mf_tensor *w_last) {
  const vqgan_cfg *c = b->c;
  char nm[128];
  int cin = c->ch * c->mult[c->levels - 1];
  mf_tensor h = conv(b, z, "decoder.conv_in", c->z_channels, cin, 3, 1, 1, 1);
  h = resblock(b, h, "decoder.mid.block_1", cin, cin);
  if (c->attn) h = attnblock(b, h, "decoder.mid.attn_1", cin);
  h = resblock(b, h, "decoder.mid.block_2", cin, cin);
  for (int i = c->levels - 1; i >= 0; i--) {
    int cout = c->ch * c->mult[i];
    for (int j = 0; j <= c->res_blocks; j++) {
      snprintf(nm, sizeof nm, "decoder.up.%d.block.%d", i, j);
      h = resblock(b, h, nm, cin, cout);
      cin = cout;
      if (c->attn && i == c->levels - 1) {
        snprintf(nm, sizeof nm, "decoder.up.%d.attn.%d", i, j);
        h = attnblock(b, h, nm, cin);
      }
    }
    if (i != 0) {
      snprintf(nm, sizeof nm, "decoder.up.%d.upsample.conv", i);
      h = conv(b, mf_upsample_nearest(b->g, h, 2), nm, cin, cin, 3, 1, 1, 1); /* [B,C,2H,2W] */
    }
  }
  *h_last = mf_silu(b->g, norm(b, h, "decoder.norm_out", cin));
  int64_t sw[4] = {c->channels, cin, 3, 3}, sb[1] = {c->channels};
  *w_last = par(b, "decoder.conv_out", "weight", 4, sw, MF_INIT_KAIMING, 0);
  mf_tensor bias = par(b, "decoder.conv_out", "bias", 1, sb, MF_INIT_ZERO, 0);
  return mf_conv2d(b->g, *h_last, *w_last, bias, 1, 1, 1); /* [B, channels, S, S] */
}

/* taming's NLayerDiscriminator (batch norm, no actnorm): conv 4x4 s2 + lrelu 0.2; (n_layers - 1) x
 * [conv 4x4 s2, no bias, BN, lrelu]; conv 4x4 s1 no bias, BN, lrelu; conv 4x4 s1 -> 1 channel. Names
 * "loss.discriminator.main.K". The parameters and running statistics are made once and shared by every
 * application (D(xrec) in the generator phase, D(x) and D(sg(xrec)) in the discriminator phase). */
#define DISC_MAX 8
typedef struct disc {
  int n;                                 /* middle layers (conv + BN) */
  mf_tensor w0, b0, w[DISC_MAX], gam[DISC_MAX], bet[DISC_MAX], rm[DISC_MAX], rv[DISC_MAX], wl, bl;
  int stride[DISC_MAX];
} disc;

static void disc_init(bld *b, disc *d) {
  const vqgan_cfg *c = b->c;
  mf_graph *g = b->g;
  char nm[128], bn[160];
  int k = 0, nf = c->disc_ch, mult = 1;
  snprintf(nm, sizeof nm, "loss.discriminator.main.%d", k);
  int64_t sw[4] = {nf, c->channels, 4, 4}, sb[1] = {nf};
  d->w0 = par(b, nm, "weight", 4, sw, MF_INIT_NORMAL, 0.02);
  d->b0 = par(b, nm, "bias", 1, sb, MF_INIT_ZERO, 0);
  k += 2;
  d->n = c->disc_layers < DISC_MAX ? c->disc_layers : DISC_MAX;
  for (int l = 1; l <= d->n; l++) {
    int mprev = mult;
    mult = 1 << (l < 3 ? l : 3);
    int prev = c->disc_ch * mprev;
    nf = c->disc_ch * mult;
    d->stride[l - 1] = l < d->n ? 2 : 1;
    snprintf(nm, sizeof nm, "loss.discriminator.main.%d", k);
    int64_t w4[4] = {nf, prev, 4, 4}, s1[1] = {nf};
    d->w[l - 1] = par(b, nm, "weight", 4, w4, MF_INIT_NORMAL, 0.02);
    snprintf(nm, sizeof nm, "loss.discriminator.main.%d", k + 1);
    snprintf(bn, sizeof bn, "%s.running_mean", nm);
    d->rm[l - 1] = mf_buffer(g, bn, 1, s1, MF_INIT_ZERO, 0);
    snprintf(bn, sizeof bn, "%s.running_var", nm);
    d->rv[l - 1] = mf_buffer(g, bn, 1, s1, MF_INIT_ONE, 0);
    /* taming initialises the BN weight ~ N(1, 0.02); it starts at 1 here */
    d->gam[l - 1] = par(b, nm, "weight", 1, s1, MF_INIT_ONE, 0);
    d->bet[l - 1] = par(b, nm, "bias", 1, s1, MF_INIT_ZERO, 0);
    k += 3;
  }
  snprintf(nm, sizeof nm, "loss.discriminator.main.%d", k);
  int64_t wl[4] = {1, nf, 4, 4}, bl[1] = {1};
  d->wl = par(b, nm, "weight", 4, wl, MF_INIT_NORMAL, 0.02);
  d->bl = par(b, nm, "bias", 1, bl, MF_INIT_ZERO, 0);
}

static mf_tensor disc_apply(mf_graph *g, const disc *d, mf_tensor x) {
  mf_tensor h = mf_leaky_relu(g, mf_conv2d(g, x, d->w0, d->b0, 2, 1, 1), 0.2);   /* [B,nf,S/2,S/2] */
  for (int l = 0; l < d->n; l++) {
    h = mf_conv2d(g, h, d->w[l], -1, d->stride[l], 1, 1);
    h = mf_leaky_relu(g, mf_batchnorm(g, h, d->gam[l], d->bet[l], d->rm[l], d->rv[l], 1, 0.1, 1e-5), 0.2);
  }
  return mf_conv2d(g, h, d->wl, d->bl, 1, 1, 1);                                 /* [B,1,h,w] patch logits */
}

/* The perceptual term from a user's ONNX feature network f, frozen (its initializers are buffers: no gradient,
 * no optimizer state; its activations are planned as any other): xrec and x, each mapped to [0, 1], go through f
 * as one batch [2N, C, S, S] (N images or frames); the loss is perceptual_weight x the sum over f's outputs of
 * mean (f(xrec) - f(x))^2. Any normalisation f needs belongs in the file. */
static int perceptual(mf_graph *g, const vqgan_cfg *c, vqgan_net *o, char *err, size_t n) {
  char e2[768];
  o->pnet = mf_onnx_open(c->perceptual, e2, sizeof e2);
  if (!o->pnet) { snprintf(err, n, "--perceptual: %s", e2); return -1; }
  if (mf_onnx_input_count(o->pnet) != 1) {
    snprintf(err, n, "--perceptual %s: the feature network must take one input (an image batch [N, %d, H, W]); it takes %d", c->perceptual,
             c->channels, mf_onnx_input_count(o->pnet));
    return -1;
  }
  int64_t N = mf_tensor_dim(g, o->x, 0);
  mf_tensor a = mf_add_scalar(g, mf_mul_scalar(g, o->rec, 0.5), 0.5), b = mf_add_scalar(g, mf_mul_scalar(g, o->x, 0.5), 0.5);
  mf_tensor ab[2] = {a, b};
  mf_tensor both = mf_concat(g, 2, ab, 0);                        /* [2N, C, S, S]: reconstructions, then inputs */
  mf_onnx_shape in = {.name = mf_onnx_input_name(o->pnet, 0), .ndim = 4, .dims = {2 * N, c->channels, c->size, c->size}};
  mf_onnx_build_opts bo = {.n_inputs = 1, .inputs = &in, .loss = MF_ONNX_LOSS_NONE, .frozen = 1, .name_prefix = "perceptual.",
                           .input_tensors = &both};
  if (mf_onnx_build(o->pnet, g, &bo, &o->pbuilt, e2, sizeof e2) < 0) { snprintf(err, n, "--perceptual: %s", e2); return -1; }
  mf_tensor sum = -1;
  for (int k = 0; k < o->pbuilt.n_outputs; k++) {
    mf_tensor y = o->pbuilt.outputs[k];
    if (y < 0) continue;
    if (mf_tensor_ndim(g, y) < 1 || mf_tensor_dim(g, y, 0) != 2 * N) {
      snprintf(err, n, "--perceptual %s: output %d has %lld rows for a batch of %lld images; a feature network keeps the batch axis",
               c->perceptual, k, mf_tensor_ndim(g, y) < 1 ? 0LL : (long long)mf_tensor_dim(g, y, 0), (long long)(2 * N));
      return -1;
    }
    mf_tensor d = mf_mse_loss(g, mf_slice(g, y, 0, 0, N), mf_slice(g, y, 0, N, 2 * N)); /* mean (f(xrec) - f(x))^2 */
    sum = sum < 0 ? d : mf_add(g, sum, d);
  }
  if (sum < 0) { snprintf(err, n, "--perceptual %s: the network has no output to compare", c->perceptual); return -1; }
  o->p_loss = mf_mul_scalar(g, sum, c->perceptual_weight);
  if (mf_graph_error(g)) { snprintf(err, n, "--perceptual %s: %s", c->perceptual, mf_graph_error(g)); return -1; }
  return 0;
}

int vqgan_build(mf_graph *g, const vqgan_cfg *cin, int micro_batch, vqgan_net *o, char *err, size_t n) {
  memset(o, 0, sizeof *o);
  o->cfg = *cin;
  vqgan_cfg *c = &o->cfg;
  if (vqgan_cfg_check(c, err, n) < 0) return -1;
  if (micro_batch < 1) { snprintf(err, n, "micro-batch %d must be at least 1", micro_batch); return -1; }
  bld b = {g, c, VQGAN_GROUP_GEN};
  int64_t sx[4] = {(int64_t)micro_batch * c->frames, c->channels, c->size, c->size}, s1[1] = {1}; /* clips: [B*T, C, S, S] */
  o->x = mf_input(g, "x", 4, sx);
  o->factor = mf_input(g, "disc_factor", 1, s1);
  mf_tensor h = encoder(&b, o->x);
  h = conv(&b, h, "quant_conv", c->z_channels, c->q.dim, 1, 1, 0, 1);       /* [B, embed, s, s] */
  if (vq_build(g, &c->q, h, "quantize", &o->vq, err, n) < 0) return -1;
  mf_tensor z = conv(&b, o->vq.out, "post_quant_conv", c->q.dim, c->z_channels, 1, 1, 0, 1);
  mf_tensor h_last;
  o->xrec = decoder(&b, z, &h_last, &o->last_w);                              /* [B, C, S, S] */
  /* the adaptive weight's two taps on xrec (ops/adaptive.c): the discriminator reads `tap`, every reconstruction
   * term (taming's nll: pixel, perceptual, SSIM) reads `rec`, built after it, so lambda's numerator is their
   * whole gradient at the last conv, formed in backward */
  o->lambda = mf_state(g, "adaptive_lambda", MF_F32, 1, s1, MF_INIT_ZERO, 0);
  o->tap = mf_adaptive_tap(g, o->xrec, h_last, o->last_w, o->factor, o->lambda, 1, 1, c->disc_weight, 1e4);
  o->rec = mf_adaptive_rec_tap(g, o->xrec, h_last, o->last_w, 1, 1);             /* [B, C, S, S], = xrec */
  o->nll = c->rec_l2 ? mf_mse_loss(g, o->rec, o->x) : mf_l1_loss(g, o->rec, o->x);
  o->q_loss = o->vq.loss >= 0 ? o->vq.loss : mf_mul_scalar(g, o->nll, 0.0);
  b.group = VQGAN_GROUP_DISC;
  disc d;
  disc_init(&b, &d);
  mf_tensor lf = disc_apply(g, &d, o->tap);
  o->g_loss = mf_mul_scalar(g, mf_mean(g, lf, 0, 0), -1.0);
  o->gen_loss = mf_add(g, mf_add(g, o->nll, o->g_loss), mf_mul_scalar(g, o->q_loss, c->codebook_weight));
  o->ssim_loss = -1;
  o->p_loss = -1;
  if (c->perceptual[0] && perceptual(g, c, o, err, n) < 0) { vqgan_net_free(o); return -1; }
  if (o->p_loss >= 0) o->gen_loss = mf_add(g, o->gen_loss, o->p_loss);
  if (c->ssim_weight > 0) { /* steg's SSIM (uniform k x k windows, range 1) on [0, 1], each frame an image */
    int k = mf_steg_ssim_window(c->size);
    double cnt = (double)mf_tensor_numel(g, o->x) / ((double)c->size * c->size) * (double)(c->size - k + 1) * (c->size - k + 1);
    mf_tensor a = mf_add_scalar(g, mf_mul_scalar(g, o->rec, 0.5), 0.5), b01 = mf_add_scalar(g, mf_mul_scalar(g, o->x, 0.5), 0.5);
    o->ssim_loss = mf_mul_scalar(g, mf_steg_ssim_loss(g, a, b01, k), c->ssim_weight / cnt);
    o->gen_loss = mf_add(g, o->gen_loss, o->ssim_loss);
  }
  /* the discriminator phase: D(x) and D(sg(xrec)), hinge, times the factor */
  if (mf_graph_error(g)) { snprintf(err, n, "vqgan: %s", mf_graph_error(g)); return -1; }
  o->logits_real = disc_apply(g, &d, o->x);
  o->logits_fake = disc_apply(g, &d, mf_detach(g, o->xrec));
  mf_tensor lr = mf_mean(g, mf_relu(g, mf_add_scalar(g, mf_mul_scalar(g, o->logits_real, -1.0), 1.0)), 0, 0);
  mf_tensor lfk = mf_mean(g, mf_relu(g, mf_add_scalar(g, o->logits_fake, 1.0)), 0, 0);
  o->d_loss = mf_mul(g, mf_mul_scalar(g, mf_add(g, lr, lfk), 0.5), o->factor);
  if (mf_graph_error(g)) { snprintf(err, n, "vqgan: %s", mf_graph_error(g)); return -1; }
  return 0;
}

int vqgan_perceptual_check(const vqgan_cfg *c, char *err, size_t n) {
  if (!c->perceptual[0]) return 0;
  char e2[768];
  mf_onnx *m = mf_onnx_open(c->perceptual, e2, sizeof e2);
  if (!m) { snprintf(err, n, "--perceptual: %s", e2); return -1; }
  int k = mf_onnx_input_count(m);
  mf_onnx_close(m);
  if (k != 1) {
    snprintf(err, n, "--perceptual %s: the feature network must take one input (an image batch [N, %d, H, W]); it takes %d", c->perceptual,
             c->channels, k);
    return -1;
  }
  return 0;
}

void vqgan_net_free(vqgan_net *net) {
  if (net->pnet) {
    mf_onnx_built_free(&net->pbuilt);
    mf_onnx_close(net->pnet);
  }
  net->pnet = NULL;
}

int vqgan_load_perceptual(const vqgan_net *net, mf_session *s, char *err, size_t n) {
  return net->pnet ? mf_onnx_load_weights(net->pnet, &net->pbuilt, s, err, n) : 0;
}

void vqgan_phases(const vqgan_net *net, mf_phase_opts ph[2]) {
  ph[0].name = "generator";
  ph[0].loss = net->gen_loss;
  ph[0].groups = 1u << VQGAN_GROUP_GEN;
  ph[1].name = "discriminator";
  ph[1].loss = net->d_loss;
  ph[1].groups = 1u << VQGAN_GROUP_DISC;
}

int vqgan_keep(const vqgan_net *net, mf_tensor *keep) {
  int k = 0;
  keep[k++] = net->nll;
  keep[k++] = net->g_loss;
  keep[k++] = net->q_loss;
  keep[k++] = net->xrec;
  if (net->ssim_loss >= 0) keep[k++] = net->ssim_loss;
  if (net->p_loss >= 0) keep[k++] = net->p_loss;
  k += vq_keep(&net->vq, keep + k);
  return k;
}

double vqgan_gen_objective(mf_session *s, const vqgan_net *net, double loss, double *g_adv) {
  float g, lam;
  *g_adv = NAN;
  if (mf_session_read(s, net->g_loss, &g, 1) < 0 || mf_session_read(s, net->lambda, &lam, 1) < 0) return NAN;
  *g_adv = g;
  return loss + ((double)lam - 1) * g; /* the forward's 1 x g_loss replaced by lambda x g_loss */
}

int vqgan_set_factor(mf_session *s, const vqgan_net *net, int64_t step) {
  float f = step >= net->cfg.disc_start ? 1.0f : 0.0f;
  return mf_session_write_input(s, net->factor, &f, 1);
}
