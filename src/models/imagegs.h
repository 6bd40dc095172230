/* imagegs.h — Image-GS (docs/imagegs.md, docs/design.md 3): an image as N 2D Gaussians, trained by the tile
 * rasteriser op over image tiles with the halo SSIM needs; its settings, tiling geometry and training graph. */
#ifndef MF_IMAGEGS_H
#define MF_IMAGEGS_H

#include "memfit.h"

#define IGS_SSIM_K 7            /* SSIM window (uniform k x k, as the steganography trainer's): halo k-1 pixels */
#define IGS_N_TILES 7           /* tile sides the planner may choose: whole image, 4096 .. 64 px */
#define IGS_N_VARIANTS (2 * IGS_N_TILES)

typedef struct igs_cfg {
  int width, height;           /* the image (pixels) */
  int gaussians;               /* the final count N (planned from step 0) */
  int initial;                 /* active at step 0 (0: N / 2, as Image-GS starts with half) */
  int channels;                /* colour features per Gaussian, 1 .. 12 */
  int top_k;                   /* Gaussians blended per pixel (10) */
  double max_radius;           /* pixels: the largest 3-sigma radius the op draws (bounds the pair lists) */
  double ssim_weight;          /* loss = L1 + ssim_weight * (1 - SSIM) (0.1) */
  int tile_side;               /* > 0: tiles of at most this side (a multiple of 16) whatever the variant (--tile) */
  int quant_bits;              /* > 0: the rasteriser draws the parameters quantised to this many bits (straight-through
                                  gradients), in the fixed ranges of igs_quant_range (--quant-bits) */
} igs_cfg;

igs_cfg igs_cfg_default(void);
/* Checks the settings together: 0, or -1 with err naming the setting (0 Gaussians, more Gaussians than pixels,
 * an image smaller than the SSIM window, ...). */
int igs_cfg_check(const igs_cfg *c, char *err, size_t n);

/* The tiling of a variant: tile side (0: the whole image), the core tile tw x th, the window (core + halo at the
 * right and bottom when the image is cut along that axis) ww x wh, tiles nx x ny, and the backward mode. */
typedef struct igs_tiling {
  int side, keep_topk;
  int tw, th, ww, wh, nx, ny;
} igs_tiling;
/* variant v: tile side IGS_TILE_SIDES[v / 2], keep_topk = v % 2 */
igs_tiling igs_tiling_of(const igs_cfg *c, int variant);
extern const int IGS_TILE_SIDES[IGS_N_TILES];
extern const char *const igs_variant_names[IGS_N_VARIANTS];

/* The training graph of one tile (a micro-step); parameters of all N Gaussians from the start. */
typedef struct igs_net {
  igs_cfg cfg;
  igs_tiling tl;
  mf_tensor pos, inv_scale, rot, feat;  /* parameters [N,2] (group 0), [N,2] (1), [N,1] (2), [N,C] (3) */
  mf_tensor mask;                       /* mf_active_mask [N] "gaussians" */
  mf_tensor origin;                     /* input i32 [2]: the window's top-left pixel (x0, y0) */
  mf_tensor target;                     /* input [1,C,wh,ww]: the image under the window (0 outside the image) */
  mf_tensor wpix;                       /* input [1,1,wh,ww]: 1 on the core pixels inside the image, else 0 */
  mf_tensor wmap;                       /* input [1,1,wh-k+1,ww-k+1]: 1 on the core's SSIM positions inside the image */
  mf_tensor render;                     /* [C,wh,ww] the window as drawn */
  mf_tensor l1, dssim;                  /* the tile's terms (already scaled: their sums over tiles are the image's) */
  mf_tensor stats;                      /* i32 [5] mf_gauss_raster_stats of the whole image */
  mf_tensor loss;                       /* tiles x (l1 + ssim_weight dssim): the session's mean over tiles is the image's */
} igs_net;

/* The range [lo, hi] parameter k (0 pos, 1 inv_scale, 2 rot, 3 feat) is quantised in: values are clamped to it and
 * rounded to 2^bits levels (round half to even), q = lo + round((clamp(p) - lo) L / (hi - lo)) (hi - lo) / L. */
void igs_quant_range(int k, double *lo, double *hi);
float igs_quantize(float v, int k, int bits);

/* Builds the graph of variant `variant` on the empty graph g. 0, or -1 with err. */
int igs_build(mf_graph *g, const igs_cfg *c, int variant, igs_net *out, char *err, size_t n);
/* Fills the inputs of tile t (0 .. nx*ny-1) of an image (interleaved [H][W][C] floats, the cfg's size) into
 * origin (2 i32 as floats), target, wpix and wmap buffers of the window's shapes. */
void igs_tile_inputs(const igs_net *net, const float *image, int t, float origin[2], float *target, float *wpix, float *wmap);

/* Settings by name (the workload's and `memfit train imagegs`'s): size, gaussians, initial, channels, top-k,
 * max-radius; 0, or -1 with err naming the setting. igs_parse_size: "WxH". */
#include <stdio.h>
int igs_cfg_set(igs_cfg *c, const char *key, const char *val, char *err, size_t n);
int igs_parse_size(const char *val, int *w, int *h, char *err, size_t n);
void igs_cfg_help(FILE *f);

#endif
