/* steg.h — the HiNet-style steganography network of docs/design.md 3.1 built on memfit's graph API:
 * named presets, the training graph (hide + reveal + losses) and the hide / reveal inference graphs. */
#ifndef MF_STEG_H
#define MF_STEG_H

#include "memfit.h"

#define MF_STEG_MAX_BLOCKS 64
#define MF_STEG_CONVS 5      /* convolutions per dense-block subnet */
#define MF_STEG_SUBNETS 3    /* phi, rho, eta */
#define MF_STEG_WAVE_CH 12   /* channels of one branch after the Haar DWT of an RGB image */

typedef struct mf_steg_config {
  const char *name;          /* preset name ("custom" when set by hand) */
  int blocks;                /* affine coupling blocks */
  int growth;                /* dense-block growth g (hidden channels of each 3x3 conv) */
  int height, width, batch;  /* training crop (even) and micro-batch */
  int accum_steps;           /* suggested gradient accumulation for the preset's effective batch */
  double clamp;              /* s = clamp*(2*sigmoid(rho(y1)) - 1); 2 in HiNet */
  double slope;              /* LeakyReLU slope inside the subnets; 0.01 */
  double w_guide, w_rec, w_low; /* loss weights; HiNet: 1, 5, 1 (sums, not means) */
  double z_std;              /* reveal branch's z: 0 = zeros, > 0 = Gaussian of this std (the caller
                                fills the "z" input either way; see mf_steg_model.z) */
  int segments;              /* MF_STEG_SEG_*: the recompute units the planner may drop (training graph) */
  int reveal_segments;       /* blocks mode: 1: the reveal pass's blocks are invertible segments too
                                (their inverse is the forward coupling), so neither pass stores
                                activations under memory-free backprop; 0: only the hide blocks */
  int stego_bits;            /* training graph: 8 (default): the stego is clipped to [0,1] and rounded to 8 bits
                                (what a saved PNG holds) before the reveal pass, with a straight-through
                                gradient (the hiding losses stay on the float stego); 0: the float stego
                                throughout (as HiNet trains) */
} mf_steg_config;

/* Recompute units of the training graph. BLOCKS (default): each coupling block is one invertible
 * segment, so memory-free backprop stores nothing per block, but backward recomputes a whole block
 * (3 dense subnets) at once. SUBNETS: each dense subnet is a checkpoint segment; the 12-channel
 * coupling tensors stay stored (they grow with the number of blocks), the recompute peak is one
 * subnet. NONE: no segments. */
enum { MF_STEG_SEG_NONE = 0, MF_STEG_SEG_BLOCKS, MF_STEG_SEG_SUBNETS };

/* Defaults (the "small" preset). */
mf_steg_config mf_steg_config_default(void);
/* Fills *c with a named preset: hinet, seed-16gb, seed-4gb, small, bench. Returns 0, or -1 with a
 * message in err listing the valid names. */
int mf_steg_config_preset(const char *name, mf_steg_config *c, char *err, size_t errlen);
/* "hinet, seed-16gb, seed-4gb, small, bench" */
const char *mf_steg_preset_names(void);
/* Checks every setting; returns 0, or -1 with a message naming the setting and what to do. */
int mf_steg_config_check(const mf_steg_config *c, char *err, size_t errlen);
/* Trainable parameters, analytically: blocks * 3 subnets * dense block(growth). */
int64_t mf_steg_param_count(const mf_steg_config *c);
/* Parameters of one dense-block subnet with growth g (12 channels in and out). */
int64_t mf_steg_subnet_param_count(int growth);

/* One dense-block subnet: conv k (1-based in names, w[k-1] here) reads cat(x, c_1..c_{k-1}). */
typedef struct mf_steg_subnet {
  mf_tensor w[MF_STEG_CONVS];  /* conv k: [g, 12+(k-1)g, 3, 3] for k<=4; conv5: [12, 12+4g, 3, 3] */
  mf_tensor b[MF_STEG_CONVS];  /* [g] for k<=4; [12] for conv5 */
} mf_steg_subnet;

/* One affine coupling block; also the ctx its invertible segments hand to the inverse builders. */
typedef struct mf_steg_block {
  mf_steg_subnet net[MF_STEG_SUBNETS]; /* [0] phi, [1] rho, [2] eta */
  double clamp, slope;
  int index;
} mf_steg_block;

enum { MF_STEG_PHI = 0, MF_STEG_RHO, MF_STEG_ETA };

/* The tensors of a built graph; -1 where the graph kind has none. The inverse builders of the
 * segments point into blk[], so the struct must stay where it is (not be copied or freed) while
 * the graph is in use. */
typedef struct mf_steg_model {
  mf_steg_config cfg;
  mf_steg_block blk[MF_STEG_MAX_BLOCKS];
  mf_tensor cover, secret;   /* inputs [B,3,H,W] (training, hide) */
  mf_tensor z;               /* input [B,12,H/2,W/2]: the reveal pass's lost-part stand-in; fill with
                                zeros (z_std 0) or N(0, z_std^2) before each step (training, reveal) */
  mf_tensor stego_in;        /* input [1,3,H,W] of the reveal graph */
  mf_tensor x1, x2;          /* DWT(cover), DWT(secret): [B,12,H/2,W/2] */
  mf_tensor y1, y2;          /* hide outputs [B,12,H/2,W/2]; y2 is the lost part (dropped) */
  mf_tensor stego;           /* IDWT(y1): [B,3,H,W]; in the training graph with stego_bits 8, the 8-bit stego
                                round(clip(IDWT(y1)) * 255) / 255 (straight-through gradient to IDWT(y1)) */
  mf_tensor rx1, rx2;        /* reveal outputs [B,12,H/2,W/2]: recovered cover / secret branch */
  mf_tensor revealed;        /* IDWT(rx2): [B,3,H,W] */
  mf_tensor loss_guide, loss_low, loss_rec; /* f32 scalars (sums) */
  mf_tensor loss;            /* w_guide*guide + w_rec*rec + w_low*low */
  int seg_first, seg_count;  /* segment ids [seg_first, seg_first+seg_count) built here */
} mf_steg_model;

/* Training graph: inputs cover, secret [B,3,H,W] and z; hide pass (N coupling blocks, each an
 * invertible segment), stego = IDWT(y1), reveal pass (the inverse network on (y1, z), blocks in
 * reverse order, same parameters), the three losses and their weighted total. Returns 0, or -1
 * with the reason in mf_graph_error(g). */
int mf_steg_build(mf_graph *g, const mf_steg_config *c, mf_steg_model *m);
/* Inference, batch 1, any even height x width (parameters named as in training):
 * hide: cover, secret -> stego (and y2); reveal: stego_in, z -> revealed. */
int mf_steg_build_hide(mf_graph *g, const mf_steg_config *c, int height, int width, mf_steg_model *m);
int mf_steg_build_reveal(mf_graph *g, const mf_steg_config *c, int height, int width, mf_steg_model *m);

/* Parameter name, e.g. "blk3.phi.conv2.w": block 0-based, subnet MF_STEG_PHI..ETA, conv 0-based
 * (printed 1-based), bias 1 for ".b". Returns buf. */
const char *mf_steg_param_name(char *buf, size_t n, int block, int subnet, int conv, int bias);

#endif
