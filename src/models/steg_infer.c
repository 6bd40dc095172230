/* steg_infer.c — hide / reveal inference of the steganography network from a model file, on the
 * whole image or on tiles with a halo of the graph's receptive radius (see steg_infer.h). */
#include "models/steg_infer.h"
#include "graph/graph.h"
#include "ops/receptive.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int mf_steg_model_config(const mf_st_file *f, const char *path, mf_steg_config *cfg, char *err, size_t errlen) {
  *cfg = mf_steg_config_default();
  char name[96];
  int blocks = 0;
  for (; blocks < MF_STEG_MAX_BLOCKS; blocks++) {
    snprintf(name, sizeof name, "param.blk%d.phi.conv1.w", blocks);
    if (!mf_st_find(f, name)) break;
  }
  const mf_st_tensor *t = mf_st_find(f, "param.blk0.phi.conv1.w");
  if (!blocks || !t || t->ndim != 4 || t->shape[1] != MF_STEG_WAVE_CH || t->shape[2] != 3 || t->shape[3] != 3) {
    snprintf(err, errlen, "%s: not a steganography model (no tensor param.blk0.phi.conv1.w of shape [g,12,3,3]); "
                          "give a file written by 'memfit train steg' (model.safetensors or checkpoint.safetensors)", path);
    return -1;
  }
  snprintf(name, sizeof name, "param.blk%d.phi.conv1.w", MF_STEG_MAX_BLOCKS);
  if (mf_st_find(f, name)) {
    int n = MF_STEG_MAX_BLOCKS;
    for (; n < 1 << 20; n++) {
      snprintf(name, sizeof name, "param.blk%d.phi.conv1.w", n);
      if (!mf_st_find(f, name)) break;
    }
    snprintf(err, errlen, "%s: the model has %d coupling blocks; memfit supports at most %d", path, n, MF_STEG_MAX_BLOCKS);
    return -1;
  }
  if (t->shape[0] < 1 || t->shape[0] > 1 << 20) {
    snprintf(err, errlen, "%s: tensor param.blk0.phi.conv1.w has growth %lld; a steganography model has 1 to %d", path,
             (long long)t->shape[0], 1 << 20);
    return -1;
  }
  cfg->blocks = blocks;
  cfg->growth = (int)t->shape[0];
  const char *p = mf_st_meta(f, "steg.preset");
  cfg->name = "custom";
  mf_steg_config pc;
  if (p && mf_steg_config_preset(p, &pc, NULL, 0) == 0 && pc.blocks == blocks && pc.growth == cfg->growth) cfg->name = pc.name;
  return 0;
}

int mf_steg_load_params(mf_session *s, mf_graph *g, const mf_steg_model *m, const mf_st_file *f, const char *path, char *err,
                        size_t errlen) {
  char name[96], pn[64];
  for (int i = 0; i < m->cfg.blocks; i++)
    for (int sn = 0; sn < MF_STEG_SUBNETS; sn++)
      for (int k = 0; k < MF_STEG_CONVS; k++)
        for (int bias = 0; bias < 2; bias++) {
          mf_tensor t = bias ? m->blk[i].net[sn].b[k] : m->blk[i].net[sn].w[k];
          int64_t shape[4];
          int nd = mf_tensor_ndim(g, t);
          for (int a = 0; a < nd; a++) shape[a] = mf_tensor_dim(g, t, a);
          snprintf(name, sizeof name, "param.%s", mf_steg_param_name(pn, sizeof pn, i, sn, k, bias));
          char e[512];
          const float *src = mf_st_get(f, name, MF_F32, nd, shape, e, sizeof e);
          if (!src) { snprintf(err, errlen, "%s: %s", path, e); return -1; }
          int64_t bad = mf_st_nonfinite(mf_st_find(f, name));
          if (bad >= 0) {
            snprintf(err, errlen, "%s: tensor '%s' holds a non-finite value (NaN or infinity) at element %lld: the model "
                                  "is damaged or its training diverged; use another model file", path, name, (long long)bad);
            return -1;
          }
          if (mf_session_write_param(s, t, src, (size_t)mf_tensor_numel(g, t)) != 0) {
            snprintf(err, errlen, "%s: could not write %s", path, name);
            return -1;
          }
        }
  return 0;
}

/* The hide or reveal graph of rw x rh; *out is its image output. The model struct must stay in
 * place while the graph is used. */
static int build(mf_graph *g, const mf_steg_config *c, int hide, int rw, int rh, mf_steg_model *m, mf_tensor *out) {
  int rc = hide ? mf_steg_build_hide(g, c, rh, rw, m) : mf_steg_build_reveal(g, c, rh, rw, m);
  *out = hide ? m->stego : m->revealed;
  return rc;
}

static mf_train_opts infer_opts(const mf_tensor *out, int threads) {
  mf_train_opts o = mf_train_opts_default();
  o.plan.training = 0;
  o.threads = threads;
  o.plan.threads = threads;
  o.plan.keep = out;
  o.plan.n_keep = 1;
  return o;
}

int mf_steg_plan_bytes(const mf_steg_config *c, int hide, int rw, int rh, int threads, mf_dtype dt, size_t *bytes, char *err,
                       size_t errlen) {
  mf_graph *g = mf_graph_init(dt);
  mf_steg_model *m = calloc(1, sizeof *m);
  int rc = -1;
  mf_tensor out;
  if (!g || !m) snprintf(err, errlen, "out of host memory");
  else if (build(g, c, hide, rw, rh, m, &out) < 0) snprintf(err, errlen, "%s", mf_graph_error(g));
  else {
    mf_train_opts o = infer_opts(&out, threads);
    mf_plan *p = mf_plan_init(g, out, &o.plan, err, errlen);
    if (p) {
      *bytes = mf_plan_total_bytes(p);
      mf_plan_free(p);
      rc = 0;
    }
  }
  free(m);
  if (g) mf_graph_free(g);
  return rc;
}

/* receptive radius and pixel grid of the hide / reveal output (the largest of the two axes) */
static int receptive(const mf_steg_config *c, int hide, int *radius, int *align, char *err, size_t errlen) {
  mf_graph *g = mf_graph_init(MF_F32);
  mf_steg_model *m = calloc(1, sizeof *m);
  int rc = -1;
  mf_tensor out;
  int64_t r[2], a[2];
  if (!g || !m) snprintf(err, errlen, "out of host memory");
  else if (build(g, c, hide, 16, 16, m, &out) < 0) snprintf(err, errlen, "%s", mf_graph_error(g));
  else if (mf_graph_receptive_field(g, out, r, a, err, errlen) == 0) {
    *radius = (int)(r[0] > r[1] ? r[0] : r[1]);
    *align = (int)(a[0] > a[1] ? a[0] : a[1]);
    rc = a[0] == a[1] ? 0 : -1;
    if (rc) snprintf(err, errlen, "the model's pixel grid differs along H (%lld) and W (%lld)", (long long)a[0], (long long)a[1]);
  }
  free(m);
  if (g) mf_graph_free(g);
  return rc;
}

static int round_up(int v, int a) { return (v + a - 1) / a * a; }
static int imin(int a, int b) { return a < b ? a : b; }

/* Fills the tiles and graph size for interiors tw x th (>= pw x ph: one whole-image tile) and plans it. */
static int layout(const mf_steg_config *c, mf_steg_tiling *t, int tw, int th, int threads, char *err, size_t errlen) {
  if (tw >= t->pw && th >= t->ph) { tw = t->pw; th = t->ph; }
  t->tile_w = imin(tw, t->pw);
  t->tile_h = imin(th, t->ph);
  t->nx = (t->pw + t->tile_w - 1) / t->tile_w;
  t->ny = (t->ph + t->tile_h - 1) / t->tile_h;
  int whole = t->nx == 1 && t->ny == 1;
  int halo = whole ? 0 : t->halo;
  t->rw = imin(t->pw, t->tile_w + 2 * halo);
  t->rh = imin(t->ph, t->tile_h + 2 * halo);
  size_t plane3 = (size_t)3 * t->rw * t->rh * sizeof(float);
  t->buffer_bytes = whole && t->pw == t->w && t->ph == t->h ? 0 : plane3;
  if (t->dtype != MF_F32) t->buffer_bytes += (t->hide ? 2 : 1) * plane3; /* f32 inputs staged before conversion */
  return mf_steg_plan_bytes(c, t->hide, t->rw, t->rh, threads, t->dtype, &t->plan_bytes, err, errlen);
}

int mf_steg_tiling_choose(const mf_steg_config *c, int hide, int w, int h, size_t budget, int tile, int halo, int threads,
                          mf_dtype dt, mf_steg_tiling *t, size_t *need, char *err, size_t errlen) {
  memset(t, 0, sizeof *t);
  if (need) *need = 0;
  if (w < 2 || h < 2) { snprintf(err, errlen, "image %dx%d: at least 2x2 pixels", w, h); return -1; }
  if (dt != MF_F32 && dt != MF_F64) { snprintf(err, errlen, "steganography graphs run in f32 or f64, not %s", mf_dtype_name(dt)); return -1; }
  t->hide = hide;
  t->dtype = dt;
  t->w = w;
  t->h = h;
  t->pw = w + w % 2;
  t->ph = h + h % 2;
  if (receptive(c, hide, &t->radius, &t->align, err, errlen) < 0) return -1;
  int A = t->align;
  if (t->pw % A || t->ph % A) {
    snprintf(err, errlen, "image %dx%d: the model needs sizes that are multiples of %d", t->pw, t->ph, A);
    return -1;
  }
  if (halo >= 0 && halo % A) {
    snprintf(err, errlen, "halo %d: must be a multiple of %d (the model's pixel grid); its receptive radius is %d", halo, A,
             t->radius);
    return -1;
  }
  t->halo = halo >= 0 ? halo : round_up(t->radius, A);
  int side = t->pw > t->ph ? t->pw : t->ph;
  if (tile > 0) {
    if (layout(c, t, round_up(tile, A), round_up(tile, A), threads, err, errlen) < 0) return -1;
    if (!budget || t->plan_bytes + t->buffer_bytes <= budget) return 0;
    char hn[32], hb[32];
    mf_format_bytes(t->plan_bytes + t->buffer_bytes, hn, sizeof hn);
    mf_format_bytes(budget, hb, sizeof hb);
    snprintf(err, errlen, "tiles of %d need %s (a %dx%d graph), more than the %s budget", round_up(tile, A), hn, t->rw, t->rh, hb);
    return -1;
  }
  /* the whole image, when it fits */
  if (layout(c, t, side, side, threads, err, errlen) < 0) return -1;
  if (!budget || t->plan_bytes + t->buffer_bytes <= budget) return 0;
  /* the smallest tile (as wide as the halo, so a tile's graph computes at most 9 times the pixels it
   * keeps), then the largest that fits: sides lo (fits) .. hi (does not), in units of A */
  int lo = t->halo > A ? t->halo / A : 1, hi = side / A;
  if (lo >= hi) lo = hi - 1 > 1 ? hi - 1 : 1;
  if (layout(c, t, lo * A, lo * A, threads, err, errlen) < 0) return -1;
  if (t->plan_bytes + t->buffer_bytes > budget) {
    if (need) *need = t->plan_bytes + t->buffer_bytes;
    char hn[32], hb[32];
    mf_format_bytes(t->plan_bytes + t->buffer_bytes, hn, sizeof hn);
    mf_format_bytes(budget, hb, sizeof hb);
    snprintf(err, errlen, "even the smallest tile (%dx%d with a %d-pixel halo: a %dx%d graph) needs %s, more than the %s "
                          "budget", t->tile_w, t->tile_h, t->halo, t->rw, t->rh, hn, hb);
    return -1;
  }
  while (hi - lo > 1) {
    int mid = lo + (hi - lo) / 2;
    if (layout(c, t, mid * A, mid * A, threads, err, errlen) < 0) return -1;
    if (t->plan_bytes + t->buffer_bytes <= budget) lo = mid;
    else hi = mid;
  }
  /* as many tiles as side lo*A needs, evened out (never larger, so the plan never grows; checked) */
  int T = lo * A, nx = (t->pw + T - 1) / T, ny = (t->ph + T - 1) / T;
  if (layout(c, t, round_up((t->pw + nx - 1) / nx, A), round_up((t->ph + ny - 1) / ny, A), threads, err, errlen) < 0) return -1;
  if (t->plan_bytes + t->buffer_bytes > budget && layout(c, t, T, T, threads, err, errlen) < 0) return -1;
  return 0;
}

void mf_steg_tiling_describe(const mf_steg_tiling *t, char *buf, size_t n) {
  if (t->nx == 1 && t->ny == 1)
    snprintf(buf, n, "whole image %dx%d in one graph", t->pw, t->ph);
  else
    snprintf(buf, n, "%d tiles (%dx%d) of %dx%d + %d-pixel halo (receptive radius %d): %dx%d graphs, %.2fx the pixels of one pass",
             t->nx * t->ny, t->nx, t->ny, t->tile_w, t->tile_h, t->halo, t->radius, t->rw, t->rh,
             (double)t->nx * t->ny * t->rw * t->rh / ((double)t->pw * t->ph));
}

struct mf_steg_runner {
  mf_steg_tiling t;
  mf_graph *g;
  mf_steg_model *m;
  mf_session *s;
  mf_tensor out;
  float *buf;   /* one tile's output; NULL when the output tensor is the image itself */
  float *stage; /* non-f32 graph: one tile's f32 inputs [2][3,rh,rw] before mf_session_write_input converts them */
};

void mf_steg_runner_free(mf_steg_runner *r) {
  if (!r) return;
  if (r->s) mf_session_free(r->s);
  if (r->g) mf_graph_free(r->g);
  free(r->m);
  free(r->buf);
  free(r->stage);
  free(r);
}

mf_steg_runner *mf_steg_runner_init(const mf_steg_config *c, const mf_steg_tiling *t, const mf_st_file *f, const char *path,
                                    int threads, char *err, size_t errlen) {
  mf_steg_runner *r = calloc(1, sizeof *r);
  if (!r) { snprintf(err, errlen, "out of host memory"); return NULL; }
  r->t = *t;
  r->g = mf_graph_init(t->dtype);
  r->m = calloc(1, sizeof *r->m);
  size_t plane3 = (size_t)3 * t->rw * t->rh * sizeof(float), stage = t->dtype != MF_F32 ? (t->hide ? 2 : 1) * plane3 : 0;
  if (t->buffer_bytes > stage) r->buf = malloc(t->buffer_bytes - stage);
  if (stage) r->stage = malloc(stage);
  if (!r->g || !r->m || (t->buffer_bytes > stage && !r->buf) || (stage && !r->stage)) { snprintf(err, errlen, "out of host memory"); goto fail; }
  if (build(r->g, c, t->hide, t->rw, t->rh, r->m, &r->out) < 0) { snprintf(err, errlen, "%s", mf_graph_error(r->g)); goto fail; }
  mf_train_opts o = infer_opts(&r->out, threads);
  r->s = mf_session_init(r->g, r->out, &o, err, errlen);
  if (!r->s) goto fail;
  if (mf_steg_load_params(r->s, r->g, r->m, f, path, err, errlen) < 0) goto fail;
  if (!t->hide) { /* z = zeros: the reveal pass's stand-in for the lost part */
    void *z = mf_session_input(r->s, r->m->z);
    if (!z) { snprintf(err, errlen, "reveal graph: no staging buffer for z"); goto fail; }
    memset(z, 0, (size_t)mf_tensor_numel(r->g, r->m->z) * mf_dtype_size(t->dtype)); /* all-zero bits: 0 in f32 and f64 */
  }
  return r;
fail:
  mf_steg_runner_free(r);
  return NULL;
}

const mf_session *mf_steg_runner_session(const mf_steg_runner *r) { return r->s; }

/* Copies the rw x rh window at (x0, y0) of the image padded to pw x ph (last column / row repeated)
 * into dst, planar [3,rh,rw]. */
static void extract(const float *src, int w, int h, int x0, int y0, int rw, int rh, float *dst) {
  int inside = imin(rw, w - x0); /* columns that exist in the image */
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < rh; y++) {
      int sy = imin(y0 + y, h - 1);
      const float *s = src + ((size_t)c * h + sy) * w;
      float *d = dst + ((size_t)c * rh + y) * rw;
      memcpy(d, s + x0, (size_t)inside * sizeof *d);
      for (int x = inside; x < rw; x++) d[x] = s[w - 1];
    }
}

int mf_steg_runner_run(mf_steg_runner *r, const float *a, const float *b, float *out, char *err, size_t errlen) {
  const mf_steg_tiling *t = &r->t;
  size_t rn = (size_t)3 * t->rw * t->rh;
  mf_tensor ta = t->hide ? r->m->cover : r->m->stego_in, tb = t->hide ? r->m->secret : -1;
  /* f32 graph: tiles are cut straight into the session's input buffers; else into r->stage, then converted */
  float *ia = r->stage ? r->stage : mf_session_input(r->s, ta);
  float *ib = !t->hide ? NULL : r->stage ? r->stage + rn : mf_session_input(r->s, tb);
  if (!ia || (t->hide && !ib)) { snprintf(err, errlen, "steganography graph: no staging buffer for its inputs"); return -1; }
  for (int ty = 0; ty < t->ny; ty++)
    for (int tx = 0; tx < t->nx; tx++) {
      /* interior [ax0, ax1) x [ay0, ay1) of the padded image; graph window at (x0, y0), shifted inward at the border */
      int ax0 = tx * t->tile_w, ax1 = imin(ax0 + t->tile_w, t->pw), ay0 = ty * t->tile_h, ay1 = imin(ay0 + t->tile_h, t->ph);
      int x0 = ax0 - t->halo, y0 = ay0 - t->halo;
      if (x0 > t->pw - t->rw) x0 = t->pw - t->rw;
      if (y0 > t->ph - t->rh) y0 = t->ph - t->rh;
      if (x0 < 0) x0 = 0;
      if (y0 < 0) y0 = 0;
      extract(a, t->w, t->h, x0, y0, t->rw, t->rh, ia);
      if (t->hide) extract(b, t->w, t->h, x0, y0, t->rw, t->rh, ib);
      if (r->stage && (mf_session_write_input(r->s, ta, ia, rn) != 0 || (t->hide && mf_session_write_input(r->s, tb, ib, rn) != 0))) {
        snprintf(err, errlen, "could not write the inputs of tile %d", ty * t->nx + tx + 1);
        return -1;
      }
      mf_session_forward(r->s);
      float *o = r->buf ? r->buf : out;
      if (mf_session_read(r->s, r->out, o, rn) != 0) {
        snprintf(err, errlen, "could not read the %s of tile %d", t->hide ? "stego image" : "recovered secret", ty * t->nx + tx + 1);
        return -1;
      }
      if (!r->buf) continue; /* the output is the image */
      int cx1 = imin(ax1, t->w), cy1 = imin(ay1, t->h); /* crop the padding of an odd image */
      if (cx1 <= ax0) continue;
      for (int c = 0; c < 3; c++)
        for (int y = ay0; y < cy1; y++)
          memcpy(out + ((size_t)c * t->h + y) * t->w + ax0, o + ((size_t)c * t->rh + (y - y0)) * t->rw + (ax0 - x0),
                 (size_t)(cx1 - ax0) * sizeof *out);
    }
  return 0;
}
