/* raster.h — the Image-GS tile rasteriser's shared definitions: node parameter slots, the per-Gaussian
 * set-up (clamped inverse scales, conic, 3-sigma tile box) and the pair bound, usable from C and CUDA. */
#ifndef MF_RASTER_H
#define MF_RASTER_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define MF_HD __host__ __device__
#else
#define MF_HD
#endif

#define MF_RASTER_TILE 16        /* tiles are 16x16 pixels */
#define MF_RASTER_MAX_K 32       /* top_k: 1..32 */
#define MF_RASTER_MAX_C 64       /* feature channels: 1..64 */
#define MF_RASTER_EPS 1e-4       /* colour = sum w f / (sum w + eps) */
#define MF_RASTER_CHUNKS 16      /* CPU backward: tiles in this many fixed chunks, each with its own sums */
#define MF_RASTER_DEF_RMAX 64.0  /* default max_radius (pixels) */
#define MF_RASTER_DEF_RMIN 1e-3  /* default min_radius (pixels) */

/* ip slots of gauss_topk, gauss_raster, gauss_raster_bwd and gauss_stats */
enum {
  MF_RIP_W = 0,   /* image width */
  MF_RIP_H,       /* image height */
  MF_RIP_K,       /* top_k */
  MF_RIP_CAP,     /* pair capacity (<= INT32_MAX) */
  MF_RIP_MASK,    /* src index of the mask, -1: none */
  MF_RIP_TOPK,    /* src index of the kept top-K map, -1: selection done by the kernel itself */
  MF_RIP_KEEP,    /* the forward keeps the top-K map (mf_raster_opts.keep_topk) */
  MF_RIP_ORIGIN,  /* src index of the window origin (i32 [2]: x0, y0 in pixels of the full image), -1: no window */
};
/* fp slots: 0 max radius, 1 min radius (pixels), 2 and 3 the full image's width and height (the size pos is
 * normalised to; the output is a window of it when MF_RIP_ORIGIN >= 0, else the same as MF_RIP_W/H) */

/* stats entries (mf_gauss_raster_stats) */
enum { MF_RSTAT_ACTIVE = 0, MF_RSTAT_CLAMP_LARGE, MF_RSTAT_CLAMP_SMALL, MF_RSTAT_SKIPPED, MF_RSTAT_PAIRS, MF_RSTAT_COUNT };

/* One Gaussian made ready to draw. Pixel (i, j) (row, column) sits at (x, y) = (j, i); the centre is
 * (pos_x * W, pos_y * H). With inverse scales a, b (1/pixels) and angle t, Sigma^-1 = R diag(a^2, b^2) R^T,
 * R = [[cos t, -sin t], [sin t, cos t]], whose entries are the conic (A, B, C):
 * sigma = 0.5 (A dx^2 + C dy^2) + B dx dy, w = exp(-sigma). */
typedef struct mf_gs_setup {
  double cx, cy, A, B, C;   /* centre (pixels) and conic */
  double a, b, c, s;        /* inverse scales after clamping; cos t, sin t */
  double ga, gb;            /* d a_clamped / d a (1 inside the clamp range, 0 where clamped); same for b */
  int tx0, tx1, ty0, ty1;   /* tiles touched, inclusive; tx0 > tx1 when none */
  int clamp_large, clamp_small; /* an inverse scale was raised to 3/max_radius / lowered to 3/min_radius */
} mf_gs_setup;

/* Sets up Gaussian (px, py, ia, ib, t) for a W x H image; radius clamp [rmin, rmax] pixels. Returns 0 when
 * it is skipped (a position, inverse scale or angle that is not finite: nothing drawn, no gradient), else 1.
 * The box is the 3-sigma square around the centre: radius r = 3 / min(|a|, |b|) <= rmax. */
MF_HD static inline int mf_gs_setup_one(double px, double py, double ia, double ib, double t, int W, int H, double rmax, double rmin,
                                        mf_gs_setup *o) {
  o->tx0 = 0; o->tx1 = -1; o->ty0 = 0; o->ty1 = -1;
  o->clamp_large = o->clamp_small = 0;
  if (!isfinite(px) || !isfinite(py) || isnan(ia) || isnan(ib) || !isfinite(t)) return 0;
  double amin = 3.0 / rmax, amax = 3.0 / rmin;
  double aa = fabs(ia), ab = fabs(ib);
  o->a = ia; o->ga = 1; o->b = ib; o->gb = 1;
  if (aa < amin) { o->a = amin; o->ga = 0; o->clamp_large = 1; aa = amin; }
  else if (aa > amax) { o->a = amax; o->ga = 0; o->clamp_small = 1; aa = amax; }
  if (ab < amin) { o->b = amin; o->gb = 0; o->clamp_large = 1; ab = amin; }
  else if (ab > amax) { o->b = amax; o->gb = 0; o->clamp_small = 1; ab = amax; }
  o->c = cos(t); o->s = sin(t);
  double a2 = o->a * o->a, b2 = o->b * o->b;
  o->A = a2 * o->c * o->c + b2 * o->s * o->s;
  o->B = (a2 - b2) * o->c * o->s;
  o->C = a2 * o->s * o->s + b2 * o->c * o->c;
  o->cx = px * W; o->cy = py * H;
  double r = 3.0 / (aa < ab ? aa : ab);
  if (r > rmax) r = rmax;
  int TX = (W + MF_RASTER_TILE - 1) / MF_RASTER_TILE, TY = (H + MF_RASTER_TILE - 1) / MF_RASTER_TILE;
  double x0 = floor((o->cx - r) / MF_RASTER_TILE), x1 = floor((o->cx + r) / MF_RASTER_TILE);
  double y0 = floor((o->cy - r) / MF_RASTER_TILE), y1 = floor((o->cy + r) / MF_RASTER_TILE);
  if (x1 < 0 || y1 < 0 || x0 >= TX || y0 >= TY) return 1; /* off the image: drawn nowhere */
  o->tx0 = x0 < 0 ? 0 : (int)x0; o->tx1 = x1 >= TX ? TX - 1 : (int)x1;
  o->ty0 = y0 < 0 ? 0 : (int)y0; o->ty1 = y1 >= TY ? TY - 1 : (int)y1;
  return 1;
}

/* Tiles a set-up Gaussian touches. */
MF_HD static inline int64_t mf_gs_tiles(const mf_gs_setup *o) {
  if (o->tx0 > o->tx1 || o->ty0 > o->ty1) return 0;
  return (int64_t)(o->tx1 - o->tx0 + 1) * (o->ty1 - o->ty0 + 1);
}

/* The most tiles one Gaussian can touch with radius <= rmax: per axis floor(2 rmax / 16) + 2 (the box spans
 * at most 2r/16 tile widths, plus one for where it starts, plus one for rounding of the centre), at most the
 * image's tiles. */
static inline int64_t mf_gs_tiles_bound(int W, int H, double rmax) {
  int64_t per = (int64_t)floor(2.0 * rmax / MF_RASTER_TILE) + 2;
  int64_t TX = (W + MF_RASTER_TILE - 1) / MF_RASTER_TILE, TY = (H + MF_RASTER_TILE - 1) / MF_RASTER_TILE;
  return (per < TX ? per : TX) * (per < TY ? per : TY);
}

/* Moves a set-up Gaussian's tile box (tiles of the full image) into a window whose first tile is (wtx, wty) and
 * which has TXw x TYw tiles: the box is cut to the window and counted from its first tile. A window origin is a
 * multiple of 16 pixels, so the window's tiles are tiles of the full image and every pixel sees the same
 * Gaussians as in the whole image. */
MF_HD static inline void mf_gs_window_box(mf_gs_setup *o, int wtx, int wty, int TXw, int TYw) {
  if (o->tx0 > o->tx1 || o->ty0 > o->ty1) return;
  int x0 = o->tx0 > wtx ? o->tx0 : wtx, x1 = o->tx1 < wtx + TXw - 1 ? o->tx1 : wtx + TXw - 1;
  int y0 = o->ty0 > wty ? o->ty0 : wty, y1 = o->ty1 < wty + TYw - 1 ? o->ty1 : wty + TYw - 1;
  if (x0 > x1 || y0 > y1) { o->tx0 = 0; o->tx1 = -1; o->ty0 = 0; o->ty1 = -1; return; }
  o->tx0 = x0 - wtx; o->tx1 = x1 - wtx; o->ty0 = y0 - wty; o->ty1 = y1 - wty;
}

/* Selection order: a before b when a's weight is larger, that is its sigma smaller, or equal with the smaller
 * Gaussian id. Comparing sigma (not exp(-sigma), which rounds distinct sigmas to equal weights, 0 far out)
 * is the order of the exact weights, and leaves exp to the K selected. */
MF_HD static inline int mf_gs_before(double sa, int ga, double sb, int gb) { return sa < sb || (sa == sb && ga < gb); }

#endif
