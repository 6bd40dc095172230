/* steg.c — the HiNet-style invertible steganography network (docs/design.md 3.1): presets, the dense-block
 * subnets, affine coupling blocks as invertible segments, the training graph and inference graphs. */
#include "models/steg.h"
#include "graph/graph.h"
#include <stdio.h>
#include <string.h>

static const char *const subnet_names[MF_STEG_SUBNETS] = {"phi", "rho", "eta"};

mf_steg_config mf_steg_config_default(void) {
  mf_steg_config c;
  memset(&c, 0, sizeof c);
  c.name = "small";
  c.blocks = 4;
  c.growth = 16;
  c.height = 64;
  c.width = 64;
  c.batch = 4;
  c.accum_steps = 1;
  c.clamp = 2.0;
  c.slope = 0.01;
  c.w_guide = 1.0;
  c.w_rec = 5.0;
  c.w_low = 1.0;
  c.z_std = 0.0;
  c.segments = MF_STEG_SEG_BLOCKS;
  c.reveal_segments = 1;
  c.stego_bits = 8;
  return c;
}

typedef struct steg_preset {
  const char *name;
  int blocks, growth, size, batch, accum;
} steg_preset;

/* seed-16gb / seed-4gb are the seed project's 16 GB and 4 GB configurations (batch 8 x 4 and
 * batch 1 x 32 accumulation); bench is the engine benchmark model (issue 2, item 7). */
static const steg_preset presets[] = {
    {"hinet", 16, 32, 224, 16, 1},
    {"seed-16gb", 10, 160, 224, 8, 4},
    {"seed-4gb", 6, 80, 224, 1, 32},
    {"small", 4, 16, 64, 4, 1},
    {"bench", 6, 80, 64, 1, 1},
};
#define N_PRESETS ((int)(sizeof presets / sizeof presets[0]))

const char *mf_steg_preset_names(void) { return "hinet, seed-16gb, seed-4gb, small, bench"; }

int mf_steg_config_preset(const char *name, mf_steg_config *c, char *err, size_t errlen) {
  for (int i = 0; name && i < N_PRESETS; i++) {
    if (strcmp(name, presets[i].name) != 0) continue;
    *c = mf_steg_config_default();
    c->name = presets[i].name;
    c->blocks = presets[i].blocks;
    c->growth = presets[i].growth;
    c->height = c->width = presets[i].size;
    c->batch = presets[i].batch;
    c->accum_steps = presets[i].accum;
    return 0;
  }
  if (err && errlen)
    snprintf(err, errlen, "unknown steganography preset '%s': choose one of %s (or set blocks and growth yourself)",
             name ? name : "(null)", mf_steg_preset_names());
  return -1;
}

int mf_steg_config_check(const mf_steg_config *c, char *err, size_t errlen) {
  const char *msg = NULL;
  char buf[160];
  if (c->blocks < 1 || c->blocks > MF_STEG_MAX_BLOCKS) {
    snprintf(buf, sizeof buf, "blocks is %d: set it to 1..%d", c->blocks, MF_STEG_MAX_BLOCKS);
    msg = buf;
  } else if (c->growth < 1) {
    snprintf(buf, sizeof buf, "growth is %d: set it to 1 or more (HiNet uses 32)", c->growth);
    msg = buf;
  } else if (c->height < 2 || c->width < 2 || c->height % 2 || c->width % 2) {
    snprintf(buf, sizeof buf, "image size is %dx%d: the Haar wavelet needs an even height and width of 2 or more",
             c->height, c->width);
    msg = buf;
  } else if (c->stego_bits != 0 && c->stego_bits != 8) {
    snprintf(buf, sizeof buf, "stego bits is %d: set 8 (train through the 8-bit PNG) or 0 (float stego)", c->stego_bits);
    msg = buf;
  } else if (c->batch < 1) {
    snprintf(buf, sizeof buf, "batch is %d: set it to 1 or more", c->batch);
    msg = buf;
  } else if (!(c->clamp > 0)) {
    snprintf(buf, sizeof buf, "clamp is %g: set it above 0 (HiNet uses 2)", c->clamp);
    msg = buf;
  } else if (!(c->w_guide >= 0 && c->w_rec >= 0 && c->w_low >= 0)) {
    snprintf(buf, sizeof buf, "loss weights %g/%g/%g (guide/rec/low): set each to 0 or more (HiNet: 1/5/1)",
             c->w_guide, c->w_rec, c->w_low);
    msg = buf;
  } else if (c->segments < MF_STEG_SEG_NONE || c->segments > MF_STEG_SEG_SUBNETS) {
    snprintf(buf, sizeof buf, "segments is %d: use 0 (none), 1 (coupling blocks) or 2 (subnets)", c->segments);
    msg = buf;
  } else if (!(c->z_std >= 0)) {
    snprintf(buf, sizeof buf, "z_std is %g: set it to 0 (zeros) or a positive std", c->z_std);
    msg = buf;
  }
  if (!msg) return 0;
  if (err && errlen) snprintf(err, errlen, "steganography model: %s", msg);
  return -1;
}

/* conv k (0-based) of a dense block: in 12 + k*g channels (k <= 3), conv5 in 12 + 4g; out g or 12 */
static int64_t conv_in(int growth, int k) { return MF_STEG_WAVE_CH + (int64_t)k * growth; }
static int64_t conv_out(int growth, int k) { return k < MF_STEG_CONVS - 1 ? growth : MF_STEG_WAVE_CH; }

int64_t mf_steg_subnet_param_count(int growth) {
  int64_t n = 0;
  for (int k = 0; k < MF_STEG_CONVS; k++) n += conv_out(growth, k) * (conv_in(growth, k) * 9 + 1);
  return n;
}

int64_t mf_steg_param_count(const mf_steg_config *c) {
  return (int64_t)c->blocks * MF_STEG_SUBNETS * mf_steg_subnet_param_count(c->growth);
}

const char *mf_steg_param_name(char *buf, size_t n, int block, int subnet, int conv, int bias) {
  snprintf(buf, n, "blk%d.%s.conv%d.%s", block, subnet_names[subnet], conv + 1, bias ? "b" : "w");
  return buf;
}

/* Creates every parameter up front, in one fixed order (block, subnet, conv, w then b), so that the
 * training and inference graphs name and order them identically. The last conv of each subnet
 * starts at zero: every coupling block, and so the whole network, starts as the identity. */
static void params_create(mf_graph *g, mf_steg_model *m) {
  const mf_steg_config *c = &m->cfg;
  char name[64];
  for (int i = 0; i < c->blocks; i++) {
    mf_steg_block *b = &m->blk[i];
    b->clamp = c->clamp;
    b->slope = c->slope;
    b->index = i;
    for (int s = 0; s < MF_STEG_SUBNETS; s++)
      for (int k = 0; k < MF_STEG_CONVS; k++) {
        int last = k == MF_STEG_CONVS - 1;
        int64_t ws[4] = {conv_out(c->growth, k), conv_in(c->growth, k), 3, 3};
        int64_t bs[1] = {conv_out(c->growth, k)};
        b->net[s].w[k] = mf_param(g, mf_steg_param_name(name, sizeof name, i, s, k, 0), 4, ws,
                                  last ? MF_INIT_ZERO : MF_INIT_KAIMING, 0);
        b->net[s].b[k] = mf_param(g, mf_steg_param_name(name, sizeof name, i, s, k, 1), 1, bs, MF_INIT_ZERO, 0);
      }
  }
}

/* Dense block: c_k = lrelu(conv_k(cat(x, c_1..c_{k-1}))) for k = 1..4, out = conv5(cat(x, c_1..c_4)). */
static mf_tensor subnet_apply(mf_graph *g, const mf_steg_subnet *n, double slope, mf_tensor x) {
  mf_tensor feats[MF_STEG_CONVS];
  feats[0] = x;                                            /* [B,12,h,w] */
  for (int k = 0; k < MF_STEG_CONVS - 1; k++) {
    mf_tensor in = k == 0 ? x : mf_concat(g, k + 1, feats, 1); /* [B,12+k*g,h,w] */
    mf_tensor c = mf_conv2d(g, in, n->w[k], n->b[k], 1, 1, 1); /* [B,g,h,w] */
    feats[k + 1] = mf_leaky_relu(g, c, slope);
  }
  mf_tensor in = mf_concat(g, MF_STEG_CONVS, feats, 1);   /* [B,12+4g,h,w] */
  return mf_conv2d(g, in, n->w[MF_STEG_CONVS - 1], n->b[MF_STEG_CONVS - 1], 1, 1, 1); /* [B,12,h,w] */
}

/* Subnet `which` of block b on x; with a name prefix (SUBNETS mode, building the training graph) it
 * is one checkpoint segment "<prefix>.<subnet>". The inverse builders pass no prefix. */
static mf_tensor subnet_run(mf_graph *g, const mf_steg_block *b, int which, mf_tensor x, const char *seg_prefix) {
  if (!seg_prefix) return subnet_apply(g, &b->net[which], b->slope, x);
  char name[48];
  snprintf(name, sizeof name, "%s.%s", seg_prefix, subnet_names[which]);
  mf_segment_begin(g, name);
  mf_tensor y = subnet_apply(g, &b->net[which], b->slope, x);
  mf_segment_end(g, 1, &x, 1, &y, NULL, NULL);
  return y;
}

/* s = clamp*(2*sigmoid(rho(y1)) - 1), written as 2*clamp*sigmoid - clamp: [B,12,h,w] */
static mf_tensor coupling_scale(mf_graph *g, const mf_steg_block *b, mf_tensor y1, const char *seg) {
  mf_tensor r = mf_sigmoid(g, subnet_run(g, b, MF_STEG_RHO, y1, seg));
  return mf_add_scalar(g, mf_mul_scalar(g, r, 2.0 * b->clamp), -b->clamp);
}

/* y1 = x1 + phi(x2); y2 = x2*exp(s) + eta(y1). All [B,12,h,w]. */
static void coupling_forward(mf_graph *g, const mf_steg_block *b, mf_tensor x1, mf_tensor x2, mf_tensor *y1,
                             mf_tensor *y2, const char *seg) {
  mf_tensor a = mf_add(g, x1, subnet_run(g, b, MF_STEG_PHI, x2, seg));
  mf_tensor s = coupling_scale(g, b, a, seg);
  mf_tensor e = subnet_run(g, b, MF_STEG_ETA, a, seg);
  *y1 = a;
  *y2 = mf_add(g, mf_mul(g, x2, mf_exp(g, s)), e);
}

/* x2 = (y2 - eta(y1))*exp(-s); x1 = y1 - phi(x2). All [B,12,h,w]. */
static void coupling_inverse(mf_graph *g, const mf_steg_block *b, mf_tensor y1, mf_tensor y2, mf_tensor *x1,
                             mf_tensor *x2, const char *seg) {
  mf_tensor s = coupling_scale(g, b, y1, seg);
  mf_tensor e = subnet_run(g, b, MF_STEG_ETA, y1, seg);
  mf_tensor a = mf_mul(g, mf_sub(g, y2, e), mf_exp(g, mf_mul_scalar(g, s, -1.0)));
  *x2 = a;
  *x1 = mf_sub(g, y1, subnet_run(g, b, MF_STEG_PHI, a, seg));
}

/* Inverse builders the planner calls for memory-free backprop. A hide block's segment maps
 * {x1,x2} -> {y1,y2}, so its inverse is coupling_inverse; a reveal block's segment maps
 * {y1,y2} -> {x1,x2}, so its inverse is the forward coupling. */
static void hide_block_inverse(mf_graph *g, void *ctx, int n_out, const mf_tensor *outs, int n_in, mf_tensor *ins) {
  if (n_out != 2 || n_in != 2) {
    mf_graph_fail(g, "steg coupling inverse: expected 2 outputs and 2 inputs, got %d and %d", n_out, n_in);
    return;
  }
  coupling_inverse(g, ctx, outs[0], outs[1], &ins[0], &ins[1], NULL);
}
static void reveal_block_inverse(mf_graph *g, void *ctx, int n_out, const mf_tensor *outs, int n_in, mf_tensor *ins) {
  if (n_out != 2 || n_in != 2) {
    mf_graph_fail(g, "steg reveal-block inverse: expected 2 outputs and 2 inputs, got %d and %d", n_out, n_in);
    return;
  }
  coupling_forward(g, ctx, outs[0], outs[1], &ins[0], &ins[1], NULL);
}

/* One pass over all blocks: hide (coupling forward, blocks in order, on (x1, x2)) or reveal (the
 * inverse network, blocks in reverse order, on (y1, z)). segments: MF_STEG_SEG_BLOCKS makes each
 * block one invertible segment, MF_STEG_SEG_SUBNETS each subnet a checkpoint segment. */
typedef void (*coupling_fn)(mf_graph *, const mf_steg_block *, mf_tensor, mf_tensor, mf_tensor *, mf_tensor *, const char *);

static void blocks_pass(mf_graph *g, mf_steg_model *m, int segments, int reveal, mf_tensor a, mf_tensor b, mf_tensor *out_a,
                        mf_tensor *out_b) {
  char name[32];
  coupling_fn step = reveal ? coupling_inverse : coupling_forward;
  mf_inverse_fn inverse = reveal ? reveal_block_inverse : hide_block_inverse;
  for (int k = 0; k < m->cfg.blocks; k++) {
    int i = reveal ? m->cfg.blocks - 1 - k : k;
    mf_steg_block *blk = &m->blk[i];
    mf_tensor ins[2] = {a, b}, outs[2];
    snprintf(name, sizeof name, "%s.blk%d", reveal ? "reveal" : "hide", i);
    if (segments == MF_STEG_SEG_BLOCKS) {
      int id = mf_segment_begin(g, name);
      if (m->seg_count++ == 0) m->seg_first = id;
    } else if (segments == MF_STEG_SEG_SUBNETS) {
      if (m->seg_count == 0) m->seg_first = mf_graph_segment_count(g);
      m->seg_count += MF_STEG_SUBNETS;
    }
    step(g, blk, a, b, &outs[0], &outs[1], segments == MF_STEG_SEG_SUBNETS ? name : NULL);
    if (segments == MF_STEG_SEG_BLOCKS) mf_segment_end(g, 2, ins, 2, outs, inverse, blk);
    a = outs[0];
    b = outs[1];
  }
  *out_a = a;
  *out_b = b;
}

static void hide_pass(mf_graph *g, mf_steg_model *m, int segments, mf_tensor x1, mf_tensor x2) {
  blocks_pass(g, m, segments, 0, x1, x2, &m->y1, &m->y2);
}
static void reveal_pass(mf_graph *g, mf_steg_model *m, int segments, mf_tensor y1, mf_tensor y2) {
  blocks_pass(g, m, segments, 1, y1, y2, &m->rx1, &m->rx2);
}

static int model_start(mf_graph *g, const mf_steg_config *c, mf_steg_model *m) {
  memset(m, 0xff, sizeof *m); /* every tensor id -1 */
  m->cfg = *c;
  m->seg_first = -1;
  m->seg_count = 0;
  char err[256];
  if (mf_steg_config_check(c, err, sizeof err) != 0) return mf_graph_fail(g, "%s", err);
  if (mf_graph_error(g)) return -1;
  params_create(g, m);
  return mf_graph_error(g) ? -1 : 0;
}

int mf_steg_build(mf_graph *g, const mf_steg_config *c, mf_steg_model *m) {
  if (model_start(g, c, m) != 0) return -1;
  int64_t B = c->batch, H = c->height, W = c->width;
  int64_t img[4] = {B, 3, H, W}, wav[4] = {B, MF_STEG_WAVE_CH, H / 2, W / 2};
  m->cover = mf_input(g, "cover", 4, img);   /* [B,3,H,W] */
  m->secret = mf_input(g, "secret", 4, img); /* [B,3,H,W] */
  m->z = mf_input(g, "z", 4, wav);           /* [B,12,H/2,W/2] */
  m->x1 = mf_dwt_haar(g, m->cover);          /* [B,12,H/2,W/2] */
  m->x2 = mf_dwt_haar(g, m->secret);         /* [B,12,H/2,W/2] */
  /* LL(cover), taken before the blocks so only these 3 channels outlive x1 */
  mf_tensor cover_ll = mf_slice(g, m->x1, 1, 0, 3); /* [B,3,H/2,W/2] */

  hide_pass(g, m, c->segments, m->x1, m->x2);
  m->stego = mf_idwt_haar(g, m->y1);         /* [B,3,H,W] */
  /* The reveal pass reads what a saved 8-bit PNG gives back: the stego clipped to [0,1] and rounded to
   * 1/255 steps. The rounding has no useful gradient, so the 8-bit stego passes the clipped stego's
   * gradient through (straight-through over the rounding only); the clip keeps its own gradient, 0 where
   * the stego is past 0 or 1, so the recovery loss never asks for a change there that the PNG would drop
   * (on a white area the secret must go into darker values). */
  /* The hiding losses stay on the float stego: through the clip, a stego pushed past 0 or 1 would look
   * like the cover to them and nothing would pull it back. */
  mf_tensor stego_float = m->stego, y1_saved = m->y1; /* y1_saved [B,12,H/2,W/2]: what the reveal pass reads */
  if (c->stego_bits == 8) {
    mf_tensor clipped = mf_clamp(g, m->stego, 0.0, 1.0);    /* [B,3,H,W] */
    mf_tensor q = mf_mul_scalar(g, mf_round(g, mf_mul_scalar(g, clipped, 255.0)), 1.0 / 255.0); /* 1/255 steps */
    m->stego = mf_straight_through(g, q, clipped);
    y1_saved = mf_dwt_haar(g, m->stego);
  }
  int rseg = c->segments == MF_STEG_SEG_BLOCKS && !c->reveal_segments ? MF_STEG_SEG_NONE : c->segments;
  reveal_pass(g, m, rseg, y1_saved, m->z);
  m->revealed = mf_idwt_haar(g, m->rx2);     /* [B,3,H,W] */

  m->loss_guide = mf_mse_loss_sum(g, stego_float, m->cover);
  /* LL(stego) is the first 3 channels of DWT(stego) = DWT(IDWT(y1)) = y1 (the Haar pair is an exact
   * inverse), so slice y1 instead of transforming the stego image again. */
  m->loss_low = mf_mse_loss_sum(g, mf_slice(g, m->y1, 1, 0, 3), cover_ll);
  m->loss_rec = mf_mse_loss_sum(g, m->revealed, m->secret);
  mf_tensor total = mf_mul_scalar(g, m->loss_guide, c->w_guide);
  total = mf_add(g, total, mf_mul_scalar(g, m->loss_rec, c->w_rec));
  m->loss = mf_add(g, total, mf_mul_scalar(g, m->loss_low, c->w_low));
  mf_tensor_set_name(g, m->loss_guide, "loss_guide");
  mf_tensor_set_name(g, m->loss_low, "loss_low");
  mf_tensor_set_name(g, m->loss_rec, "loss_rec");
  mf_tensor_set_name(g, m->loss, "loss");
  mf_tensor_set_name(g, m->stego, "stego");
  mf_tensor_set_name(g, m->revealed, "revealed");
  return mf_graph_error(g) ? -1 : 0;
}

static int infer_size_check(mf_graph *g, int height, int width) {
  if (height < 2 || width < 2 || height % 2 || width % 2)
    return mf_graph_fail(g, "steganography model: image size %dx%d: the Haar wavelet needs an even height and "
                            "width of 2 or more (pad or crop the image by one pixel)", height, width);
  return 0;
}

int mf_steg_build_hide(mf_graph *g, const mf_steg_config *c, int height, int width, mf_steg_model *m) {
  if (model_start(g, c, m) != 0 || infer_size_check(g, height, width) != 0) return -1;
  int64_t img[4] = {1, 3, height, width};
  m->cover = mf_input(g, "cover", 4, img);   /* [1,3,H,W] */
  m->secret = mf_input(g, "secret", 4, img); /* [1,3,H,W] */
  m->x1 = mf_dwt_haar(g, m->cover);          /* [1,12,H/2,W/2] */
  m->x2 = mf_dwt_haar(g, m->secret);         /* [1,12,H/2,W/2] */
  hide_pass(g, m, MF_STEG_SEG_NONE, m->x1, m->x2);
  m->stego = mf_idwt_haar(g, m->y1);         /* [1,3,H,W] */
  mf_tensor_set_name(g, m->stego, "stego");
  return mf_graph_error(g) ? -1 : 0;
}

int mf_steg_build_reveal(mf_graph *g, const mf_steg_config *c, int height, int width, mf_steg_model *m) {
  if (model_start(g, c, m) != 0 || infer_size_check(g, height, width) != 0) return -1;
  int64_t img[4] = {1, 3, height, width}, wav[4] = {1, MF_STEG_WAVE_CH, height / 2, width / 2};
  m->stego_in = mf_input(g, "stego", 4, img); /* [1,3,H,W] */
  m->z = mf_input(g, "z", 4, wav);           /* [1,12,H/2,W/2] */
  m->y1 = mf_dwt_haar(g, m->stego_in);       /* [1,12,H/2,W/2] */
  reveal_pass(g, m, MF_STEG_SEG_NONE, m->y1, m->z);
  m->revealed = mf_idwt_haar(g, m->rx2);     /* [1,3,H,W] */
  mf_tensor_set_name(g, m->revealed, "revealed");
  return mf_graph_error(g) ? -1 : 0;
}
