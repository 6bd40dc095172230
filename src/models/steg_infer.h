/* steg_infer.h — hide / reveal with a trained steganography model on an image of any size inside a
 * memory budget: one graph of the whole image, or one graph of a tile run over the image with a halo
 * of the network's receptive radius, so that the tiled output equals the whole-image output. */
#ifndef MF_STEG_INFER_H
#define MF_STEG_INFER_H

#include "memfit.h"
#include "models/steg.h"
#include "train/safetensors.h"

/* Reads blocks and growth from a model or checkpoint file's tensor shapes (param.blkN.phi.conv1.w:
 * [growth, 12, 3, 3]) and the preset name from its metadata. Returns 0, or -1 with err naming path. */
int mf_steg_model_config(const mf_st_file *f, const char *path, mf_steg_config *cfg, char *err, size_t errlen);
/* Copies every parameter of a built model from the file into the session (checks dtype and shape). */
int mf_steg_load_params(mf_session *s, mf_graph *g, const mf_steg_model *m, const mf_st_file *f, const char *path, char *err,
                        size_t errlen);

/* How an image is cut. Tile interiors start on multiples of tile_w / tile_h; each tile's graph is
 * rw x rh pixels of the (padded) image, the interior plus up to `halo` pixels on each side, shifted
 * inward at the image border so that the real border is padded as in the whole-image graph. */
typedef struct mf_steg_tiling {
  int hide;                /* 1 hide graph, 0 reveal graph */
  mf_dtype dtype;          /* the graph's dtype: MF_F32 (what hide / reveal run) or MF_F64 (the reference: tests run
                            * tiles in f64 so that no BLAS kernel's f32 rounding can hide or fake a tiling error) */
  int w, h;                /* the image (2 x 2 or more) */
  int pw, ph;              /* w, h rounded up to even: an odd image is padded by repeating its last column / row */
  int radius, align;       /* receptive radius of the graph's output and its pixel grid (mf_graph_receptive_field) */
  int halo;                /* context pixels on each side of a tile interior (0 for one whole-image tile) */
  int tile_w, tile_h;      /* tile interior; pw x ph when the whole image is one graph */
  int nx, ny;              /* tiles across and down */
  int rw, rh;              /* size of the graph each tile runs */
  size_t plan_bytes;       /* memfit's plan of that graph (all arenas) */
  size_t buffer_bytes;     /* the runner's host buffers: one tile's output (0 for an even whole image), and for a
                            * non-f32 graph one tile's f32 inputs before they are converted into the session */
} mf_steg_tiling;

/* The plan total of the hide (hide = 1) or reveal graph of rw x rh pixels in dtype dt (plans; allocates no arena). */
int mf_steg_plan_bytes(const mf_steg_config *c, int hide, int rw, int rh, int threads, mf_dtype dt, size_t *bytes, char *err,
                       size_t errlen);

/* Chooses how to run a w x h image with a graph of dtype dt (MF_F32 or MF_F64). halo < 0: the receptive radius rounded up to the pixel grid;
 * else this halo (a multiple of the grid; smaller than the radius only to show that tiles then
 * differ). tile > 0 forces tiles of that side (rounded up to the grid; refused when over a nonzero
 * budget). Otherwise the whole image
 * when plan + buffer fits `budget` bytes (0: no limit), else the largest tile whose plan + buffer
 * fits (binary search over the side: the plan grows with the tile's area), with the tiles then
 * evened out over the image. A chosen tile is at least as wide as the halo (so no tile graph
 * computes more than 9 times the pixels it keeps). Returns 0; -1 with err when even the smallest
 * tile does not fit (*need, if not NULL, gets what that tile needs) or on bad settings (*need = 0). */
int mf_steg_tiling_choose(const mf_steg_config *c, int hide, int w, int h, size_t budget, int tile, int halo, int threads,
                          mf_dtype dt, mf_steg_tiling *t, size_t *need, char *err, size_t errlen);

/* "whole image 4000x3000 in one graph" / "12 tiles (4x3) of 1000x1000 + 70-pixel halo (receptive radius
 * 70): 1140x1140 graphs, 1.30x the pixels of one pass" */
void mf_steg_tiling_describe(const mf_steg_tiling *t, char *buf, size_t n);

typedef struct mf_steg_runner mf_steg_runner;
/* Builds and plans the tile graph, allocates its arenas once and loads the model's parameters. */
mf_steg_runner *mf_steg_runner_init(const mf_steg_config *c, const mf_steg_tiling *t, const mf_st_file *f, const char *path,
                                    int threads, char *err, size_t errlen);
/* hide: a = cover, b = secret; reveal: a = stego (b unused). Planar [3,h,w] floats of the tiling's
 * w x h in, out [3,h,w] (odd sizes are padded and cropped back inside). Returns 0, or -1 with err. */
int mf_steg_runner_run(mf_steg_runner *r, const float *a, const float *b, float *out, char *err, size_t errlen);
const mf_session *mf_steg_runner_session(const mf_steg_runner *r);
void mf_steg_runner_free(mf_steg_runner *r);

#endif
