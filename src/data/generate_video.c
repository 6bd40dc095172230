/* generate_video.c — the procedural video set: deterministic clips of T frames from (seed, index), a
 * procedural picture (generate.c) panned as a camera would, with textured shapes moving, turning and bouncing over it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

#define GV_MAX_OBJ 6

typedef struct gv_obj {
  int kind;                  /* 0 disc, 1 rectangle, 2 ring, 3 striped square */
  double x, y, vx, vy;       /* centre and velocity (pixels, pixels per frame) */
  double ra, rb, ang, spin;  /* half sizes, angle and its change per frame */
  double period, drift;      /* stripes: period and phase change per frame (a texture moving inside) */
  float col[3], col2[3];
} gv_obj;

typedef struct gv_clip {
  raw_image base;            /* the panned picture, (w + pad) x (h + pad) */
  double ox, oy, pvx, pvy;   /* window origin and pan velocity */
  int nobj;
  gv_obj obj[GV_MAX_OBJ];
} gv_clip;

static int gv_clip_init(gv_clip *c, uint64_t seed, uint64_t index, int T, int w, int h) {
  memset(c, 0, sizeof *c);
  rng_t r;
  rng_init(&r, hash_words(seed, index, 0x766964656f636c70ull));
  double S = w < h ? w : h, sc = S / 64.0;
  c->pvx = rng_range(&r, -1.0, 1.0) * sc;
  c->pvy = rng_range(&r, -1.0, 1.0) * sc;
  int pad = (int)ceil(fmax(fabs(c->pvx), fabs(c->pvy)) * (T - 1)) + 2;
  if (gen_render(seed ^ 0x5eedf00dull, index, w + pad, h + pad, &c->base) != 0) return -1;
  c->ox = c->pvx < 0 ? pad - 1 : 0; /* the window stays inside the picture for T frames */
  c->oy = c->pvy < 0 ? pad - 1 : 0;
  c->nobj = 2 + (int)rng_below(&r, GV_MAX_OBJ - 1);
  for (int i = 0; i < c->nobj; i++) {
    gv_obj *o = &c->obj[i];
    o->kind = (int)rng_below(&r, 4);
    o->ra = rng_range(&r, 0.06, 0.2) * S;
    o->rb = o->kind == 1 ? o->ra * rng_range(&r, 0.4, 1.0) : o->ra;
    o->x = rng_range(&r, 0, w);
    o->y = rng_range(&r, 0, h);
    o->vx = rng_range(&r, -2.5, 2.5) * sc;
    o->vy = rng_range(&r, -2.5, 2.5) * sc;
    o->ang = rng_range(&r, 0, 6.283185307);
    o->spin = rng_range(&r, -0.15, 0.15);
    o->period = rng_range(&r, 3, 10) * sc;
    o->drift = rng_range(&r, -1.5, 1.5) * sc;
    for (int k = 0; k < 3; k++) o->col[k] = (float)rng_uniform(&r), o->col2[k] = (float)rng_uniform(&r);
  }
  return 0;
}

/* position along one axis after t frames at velocity v from p, bouncing between 0 and len */
static double bounce(double p, double v, int t, double len) {
  double q = fmod(p + v * t, 2 * len);
  if (q < 0) q += 2 * len;
  return q > len ? 2 * len - q : q;
}

/* frame t (8-bit RGB, w x h) into raw */
static int gv_frame(const gv_clip *c, int t, int w, int h, raw_image *raw) {
  if (raw_image_reserve(raw, w, h, 3, 8) != 0) return -1;
  const raw_image *b = &c->base;
  double fx = c->ox + c->pvx * t, fy = c->oy + c->pvy * t;
  int ix = (int)floor(fx), iy = (int)floor(fy);
  double ax = fx - ix, ay = fy - iy;
  for (int y = 0; y < h; y++) {
    uint8_t *row = raw->data + (size_t)y * raw->stride;
    const uint8_t *r0 = b->data + (size_t)(y + iy) * b->stride, *r1 = r0 + b->stride;
    for (int x = 0; x < w; x++) {
      float px[3];
      for (int k = 0; k < 3; k++) { /* bilinear: the pan moves by fractions of a pixel */
        size_t i0 = (size_t)(x + ix) * 3 + k, i1 = i0 + 3;
        px[k] = (float)(((1 - ax) * r0[i0] + ax * r0[i1]) * (1 - ay) + ((1 - ax) * r1[i0] + ax * r1[i1]) * ay) / 255.0f;
      }
      for (int i = 0; i < c->nobj; i++) {
        const gv_obj *o = &c->obj[i];
        double cx = bounce(o->x, o->vx, t, w), cy = bounce(o->y, o->vy, t, h), an = o->ang + o->spin * t;
        double dx = x + 0.5 - cx, dy = y + 0.5 - cy, co = cos(an), si = sin(an);
        double u = dx * co + dy * si, v = -dx * si + dy * co, d;
        if (fabs(dx) > o->ra * 1.5 + 2 || fabs(dy) > o->ra * 1.5 + 2) continue;
        if (o->kind == 1 || o->kind == 3) d = fmax(fabs(u) - o->ra, fabs(v) - o->rb);
        else d = sqrt(dx * dx + dy * dy) - o->ra;
        if (o->kind == 2) d = fabs(d + 0.25 * o->ra) - 0.25 * o->ra;
        double a = 0.5 - d; /* one-pixel soft edge */
        if (a <= 0) continue;
        if (a > 1) a = 1;
        double s = o->kind == 3 ? 0.5 + 0.5 * sin(6.283185307 * (u + o->drift * t) / o->period) : 0.0;
        for (int k = 0; k < 3; k++) px[k] += (float)(a * (o->col[k] + (o->col2[k] - o->col[k]) * s - px[k]));
      }
      for (int k = 0; k < 3; k++) {
        float v = px[k] < 0 ? 0 : px[k] > 1 ? 1 : px[k];
        row[x * 3 + k] = (uint8_t)(v * 255.0f + 0.5f);
      }
    }
  }
  raw->x0 = raw->y0 = 0; raw->full_w = raw->orig_w = w; raw->full_h = raw->orig_h = h; raw->scale = 1.0;
  return 0;
}

static int gv_get(mf_dataset *d, size_t idx, const mf_transform_opts *o, int views, rng_t *r, float *const *planes,
                  worker_ctx *w, char *err, size_t errlen) {
  int T = d->frames, C = o->channels;
  gv_clip c;
  if (gv_clip_init(&c, d->gen_seed, idx, T, d->gen_w, d->gen_h) != 0) {
    raw_image_free(&c.base);
    snprintf(err, errlen, "generated clip %zu: out of memory", idx);
    return -1 - SKIP_CORRUPT;
  }
  tf_params p[2];
  decode_region reg;
  int rc = 0;
  if (tf_draw_views(o, views, r, d->gen_w, d->gen_h, p, &reg, err, errlen) != 0) rc = -1 - SKIP_TOO_SMALL;
  for (int t = 0; t < T && !rc; t++) {
    if (gv_frame(&c, t, d->gen_w, d->gen_h, &w->raw) != 0) { rc = -1 - SKIP_CORRUPT; break; }
    for (int v = 0; v < views && !rc; v++) /* the same crop and flip on every frame of the clip */
      if (tf_apply(o, &p[v], &w->raw, planes + ((size_t)v * T + t) * C, &w->tf) != 0) rc = -1 - SKIP_CORRUPT;
  }
  if (rc == -1 - SKIP_CORRUPT) snprintf(err, errlen, "generated clip %zu: out of memory", idx);
  raw_image_free(&c.base);
  return rc;
}

static void gv_free(mf_dataset *d) { (void)d; }
static const dataset_vt gen_video_vt = {gv_get, gv_free};

mf_dataset *mf_dataset_generated_video(size_t n, int w, int h, int frames, uint64_t seed, char *err, size_t errlen) {
  if (n == 0) { snprintf(err, errlen, "generated video: n must be > 0"); return NULL; }
  if (w < 8 || h < 8 || w > 4096 || h > 4096) { snprintf(err, errlen, "generated video: bad frame size %dx%d", w, h); return NULL; }
  if (frames < 1 || frames > 4096) { snprintf(err, errlen, "generated video: %d frames per clip (1 to 4096)", frames); return NULL; }
  mf_dataset *d = calloc(1, sizeof *d);
  if (!d) { snprintf(err, errlen, "out of memory"); return NULL; }
  d->vt = &gen_video_vt; d->kind = 1; d->n = n; d->frames = frames; d->clip_len = frames;
  d->gen_seed = seed; d->gen_w = w; d->gen_h = h;
  return d;
}
