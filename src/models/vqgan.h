/* vqgan.h — the VQGAN image tokenizer in taming-transformers' layout and parameter names: encoder and
 * decoder with channel multipliers, ResNet blocks (GroupNorm + swish), attention at the lowest resolution,
 * a VQ or FSQ quantiser (models/vq.h), a PatchGAN discriminator with hinge loss and the adaptive GAN
 * weight; two phases per step (generator, discriminator), with the presets of the seed project. */
#ifndef MF_MODELS_VQGAN_H
#define MF_MODELS_VQGAN_H

#include "memfit.h"
#include "models/vq.h"

#define VQGAN_MAX_LEVELS 6

typedef struct vqgan_cfg {
  char preset[32];
  int size, channels;          /* images [channels, size, size], values in [-1, 1] */
  int frames;                  /* 1: images; T > 1: clips of T frames (per-frame 2D layers + temporal convs) */
  int size_given;              /* --size was set (--clips then keeps it; else clips default to 128 x 128) */
  int ch;                      /* base channels: level i has ch * mult[i] */
  int mult[VQGAN_MAX_LEVELS];
  int levels;                  /* resolutions (downsamplings = levels - 1) */
  int res_blocks;              /* ResNet blocks per level (the decoder has one more) */
  int attn;                    /* 1: attention blocks at the lowest resolution (and in the middle) */
  int z_channels;              /* encoder output channels (taming's z_channels; the latent) */
  vq_cfg q;                    /* quantiser: q.dim is embed_dim */
  int batch, micro_batch, accum; /* effective batch = micro_batch x accum */
  int disc_layers, disc_ch;    /* PatchGAN: 3 layers, 64 filters */
  double disc_weight;          /* taming's discriminator_weight (multiplies lambda); 0.8 */
  int disc_start;              /* optimizer steps before the GAN terms switch on */
  double codebook_weight;      /* 1 */
  int rec_l2;                  /* 0: L1 reconstruction (taming), 1: L2 */
  char perceptual[512];        /* "" or an ONNX feature network (frozen): perceptual_weight x feature MSE of xrec and x */
  double perceptual_weight;    /* 1 (taming's perceptual_weight) */
  double ssim_weight;          /* > 0: adds ssim_weight x mean(1 - SSIM map) of xrec and x on [0, 1] (steg's SSIM) */
  int keep_scores;             /* attention: 1 keeps the scores for backward, 0 recomputes them */
  int segments;                /* 1: each ResNet/attention block is a checkpoint segment (recomputable) */
} vqgan_cfg;

/* "low" (hidden [16,32,64,128], latent 16, 128 codes, batch 1 x 8), "mid" ([32,64,128,256], 16, 256, 2 x 4),
 * "high" ([32,64,128,256], 24, 512, 4 x 2), "original" ([64,128,256,512], 32, 512, 8 x 1), all at 256 px, and
 * "tiny" (tests); -1 with err listing the names. */
int vqgan_cfg_preset(const char *name, vqgan_cfg *c, char *err, size_t n);
const char *vqgan_preset_names(void);
/* Checks the settings together (a latent grid that does not divide, a codebook of 0, FSQ levels below 2...)
 * and sets accum = batch / micro_batch; 0, or -1 with err naming the setting. */
int vqgan_cfg_check(vqgan_cfg *c, char *err, size_t n);
void vqgan_cfg_describe(const vqgan_cfg *c, char *buf, size_t n);

typedef struct vqgan_net {
  vqgan_cfg cfg;
  mf_tensor x;                 /* input [B, C, S, S]; clips [B*T, C, S, S], frame t of clip b at row b*T + t */
  mf_tensor factor;            /* input [1]: the GAN terms' factor (0 before disc_start, 1 after); vqgan_set_factor */
  mf_tensor xrec;              /* decoder output [B, C, S, S] */
  mf_tensor nll, g_loss, q_loss, d_loss; /* scalars: reconstruction, -mean D(xrec), quantiser, factor x hinge */
  mf_tensor p_loss;            /* scalar perceptual_weight x sum over the network's outputs of mean (f(xrec) - f(x))^2, or -1 */
  mf_onnx *pnet;               /* the perceptual network's file (open while the net lives; vqgan_net_free closes it) */
  mf_onnx_built pbuilt;        /* its build: mf_onnx_load_weights(pnet, &pbuilt, session) writes its weights */
  mf_tensor ssim_loss;         /* scalar ssim_weight x mean(1 - SSIM) per frame, or -1 without --ssim */
  mf_tensor gen_loss;          /* phase 0: nll (+ p_loss + ssim_loss) + g_loss (its gradient scaled by lambda at the tap) + codebook_weight q */
  mf_tensor rec;               /* xrec through the reconstruction tap (ops/adaptive.c), what nll, p_loss and ssim_loss read:
                                  g->nodes[rec].ip[2] is |grad_W (nll + p_loss + ssim_loss)| x seed after autodiff */
  mf_tensor tap;               /* xrec through the GAN tap, what D reads: lambda's node is g->nodes[tap].ip[2] after autodiff */
  mf_tensor last_w;            /* decoder.conv_out.weight (as the conv reads it) */
  mf_tensor lambda;            /* state f32 [1] "adaptive_lambda": the generator phase's backward writes lambda (x factor) */
  mf_tensor logits_real, logits_fake; /* discriminator outputs of the discriminator phase */
  vq_layer vq;
} vqgan_net;

/* Video: a 3-tap convolution over time at every pixel, y_t = W0 h_{t-1} + W1 h_t + W2 h_{t+1} + b with zero frames
 * beyond the clip. h [B*T, C, H, W] (the T frames of a clip adjacent), w [Cout, 3C, 1, 1] (W0 | W1 | W2 on its
 * input channels), bias [Cout] or -1; returns [B*T, Cout, H, W]. Built from slice, concat and a 1x1 conv2d, so its
 * gradient and memory are those ops'. A shape that T does not divide sets the graph's error (-1). */
mf_tensor vqgan_temporal_conv(mf_graph *g, mf_tensor h, mf_tensor w, mf_tensor bias, int T);

/* Parameter groups: 0 the generator (encoder, quantiser, decoder), 1 the discriminator ("loss.discriminator.*"). */
enum { VQGAN_GROUP_GEN = 0, VQGAN_GROUP_DISC = 1 };
/* Builds one micro-batch of the training step on the empty graph g. Returns 0, or -1 with err. */
int vqgan_build(mf_graph *g, const vqgan_cfg *c, int micro_batch, vqgan_net *out, char *err, size_t n);
/* With --perceptual: opens the file and checks that it is an ONNX network of one input (the shapes are checked
 * when it is built). 0, or -1 with err naming the file. */
int vqgan_perceptual_check(const vqgan_cfg *c, char *err, size_t n);
/* Closes the perceptual network's file of a built net (nothing else to free: the graph holds the rest). */
void vqgan_net_free(vqgan_net *net);
/* Writes the perceptual network's weights (when there is one) into a session of the net's graph. 0 or -1 with err. */
int vqgan_load_perceptual(const vqgan_net *net, mf_session *s, char *err, size_t n);
/* The two phases (generator: group 0; discriminator: group 1) of a built net. */
void vqgan_phases(const vqgan_net *net, mf_phase_opts ph[2]);
/* Tensors to keep for the run's logs and the quantiser's host side (up to 9). */
int vqgan_keep(const vqgan_net *net, mf_tensor *keep);
/* Writes the GAN factor for optimizer step `step` (0 before disc_start, 1 from it). 0 or -1. */
int vqgan_set_factor(mf_session *s, const vqgan_net *net, int64_t step);
/* After a generator-phase step whose loss value (gen_loss's forward) was `loss`: the objective the generator
 * minimised, nll + lambda g_loss + codebook_weight q_loss (+ perceptual, SSIM), lambda as that step's backward wrote it
 * (the factor, 0 before disc_start, and the disc weight included). The forward holds the raw g_loss = -mean D(xrec),
 * which the GAN tap scales in backward only. *g_adv: that raw g_loss. NaN when a read fails. */
double vqgan_gen_objective(mf_session *s, const vqgan_net *net, double loss, double *g_adv);

#endif
