/* generate.c — the procedural image set: deterministic synthetic RGB pictures from (seed, index)
 * made of smooth colour fields, textures, shapes with hard and soft edges, and text-like strokes.
 * It is memfit's embedded default data (e.g. steganography cover/secret images). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

typedef struct canvas { int w, h; float *px; } canvas; /* px: [h][w][3] in [0,1] */

static void rand_colour(rng_t *r, float c[3]) {
  for (int i = 0; i < 3; i++) c[i] = (float)rng_uniform(r);
}

static inline void blend(canvas *cv, int x, int y, const float c[3], float a) {
  if (a <= 0) return;
  if (a > 1) a = 1;
  float *p = cv->px + ((size_t)y * cv->w + x) * 3;
  for (int i = 0; i < 3; i++) p[i] += a * (c[i] - p[i]);
}

/* background: gradient, four-corner field or a sum of low-frequency waves */
static void draw_background(canvas *cv, rng_t *r) {
  int kind = (int)rng_below(r, 3);
  float c0[3], c1[3], c2[3], c3[3];
  rand_colour(r, c0); rand_colour(r, c1); rand_colour(r, c2); rand_colour(r, c3);
  double ang = rng_range(r, 0, 6.283185307), ca = cos(ang), sa = sin(ang);
  double fx[3][3], fy[3][3], ph[3][3], am[3][3];
  for (int c = 0; c < 3; c++)
    for (int k = 0; k < 3; k++) {
      fx[c][k] = rng_range(r, -3, 3); fy[c][k] = rng_range(r, -3, 3);
      ph[c][k] = rng_range(r, 0, 6.283185307); am[c][k] = rng_range(r, 0.05, 0.25);
    }
  for (int y = 0; y < cv->h; y++)
    for (int x = 0; x < cv->w; x++) {
      double u = (x + 0.5) / cv->w, v = (y + 0.5) / cv->h;
      float *p = cv->px + ((size_t)y * cv->w + x) * 3;
      for (int c = 0; c < 3; c++) {
        double val;
        if (kind == 0) {
          double t = 0.5 + (u - 0.5) * ca + (v - 0.5) * sa;
          t = t < 0 ? 0 : t > 1 ? 1 : t;
          val = c0[c] + (c1[c] - c0[c]) * t;
        } else if (kind == 1) {
          val = (c0[c] * (1 - u) + c1[c] * u) * (1 - v) + (c2[c] * (1 - u) + c3[c] * u) * v;
        } else {
          val = c0[c];
          for (int k = 0; k < 3; k++) val += am[c][k] * sin(6.283185307 * (fx[c][k] * u + fy[c][k] * v) + ph[c][k]);
        }
        p[c] = (float)(val < 0 ? 0 : val > 1 ? 1 : val);
      }
    }
}

/* value noise: random lattice values, smoothly interpolated */
static double value_noise(const float *lat, int gw, double x, double y) {
  int ix = (int)x, iy = (int)y;
  double fx = x - ix, fy = y - iy;
  fx = fx * fx * (3 - 2 * fx); fy = fy * fy * (3 - 2 * fy);
  double a = lat[iy * gw + ix], b = lat[iy * gw + ix + 1], c = lat[(iy + 1) * gw + ix], d = lat[(iy + 1) * gw + ix + 1];
  return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy;
}

/* a textured rectangle: stripes, checkerboard, noise or dots, blended over what is there */
static void draw_texture(canvas *cv, rng_t *r) {
  int x0 = (int)rng_below(r, (uint64_t)cv->w), y0 = (int)rng_below(r, (uint64_t)cv->h);
  int x1 = x0 + 1 + (int)rng_below(r, (uint64_t)(cv->w - x0)), y1 = y0 + 1 + (int)rng_below(r, (uint64_t)(cv->h - y0));
  int kind = (int)rng_below(r, 4);
  float ca[3], cb[3];
  rand_colour(r, ca); rand_colour(r, cb);
  double period = rng_range(r, 3, 24), ang = rng_range(r, 0, 3.14159265), co = cos(ang), si = sin(ang);
  float alpha = (float)rng_range(r, 0.5, 1.0);
  enum { G = 17 };
  float lat[G * G];
  for (int i = 0; i < G * G; i++) lat[i] = (float)rng_uniform(r);
  double cell = rng_range(r, 4, 32);
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++) {
      double u = x * co + y * si, v = -x * si + y * co, t;
      switch (kind) {
      case 0: t = 0.5 + 0.5 * sin(6.283185307 * u / period); break;
      case 1: t = (((int)floor(u / period) + (int)floor(v / period)) & 1) ? 1.0 : 0.0; break;
      case 2: {
        double nx = fmod(x / cell, G - 1.001), ny = fmod(y / cell, G - 1.001);
        t = value_noise(lat, G, nx, ny);
        break;
      }
      default: {
        double du = u / period - floor(u / period) - 0.5, dv = v / period - floor(v / period) - 0.5;
        t = sqrt(du * du + dv * dv) < 0.3 ? 1.0 : 0.0;
      }
      }
      float col[3];
      for (int c = 0; c < 3; c++) col[c] = (float)(ca[c] + (cb[c] - ca[c]) * t);
      blend(cv, x, y, col, alpha);
    }
}

/* a filled shape from a signed distance (negative inside), with hard or soft edges */
static void draw_shape(canvas *cv, rng_t *r) {
  int kind = (int)rng_below(r, 4);
  double S = cv->w < cv->h ? cv->w : cv->h;
  double cx = rng_range(r, 0, cv->w), cy = rng_range(r, 0, cv->h);
  double ra = rng_range(r, 0.04, 0.3) * S, rb = ra * rng_range(r, 0.4, 1.0);
  double ang = rng_range(r, 0, 6.283185307), co = cos(ang), si = sin(ang);
  double soft = rng_uniform(r) < 0.7 ? 1.0 : rng_range(r, 2, 12);
  double ring = rng_uniform(r) < 0.2 ? rng_range(r, 2, 0.3 * rb + 3) : 0;
  float col[3], col2[3];
  rand_colour(r, col); rand_colour(r, col2);
  int grad = rng_uniform(r) < 0.3;
  double tx[3], ty[3], tsign; /* triangle corners */
  for (int i = 0; i < 3; i++) {
    double a = ang + i * 2.094395 + rng_range(r, -0.5, 0.5);
    tx[i] = cx + ra * cos(a); ty[i] = cy + ra * sin(a);
  }
  { /* orient so the centroid is inside (negative) */
    double gx = (tx[0] + tx[1] + tx[2]) / 3, gy = (ty[0] + ty[1] + ty[2]) / 3;
    double c0 = (gx - tx[0]) * (ty[1] - ty[0]) - (gy - ty[0]) * (tx[1] - tx[0]);
    tsign = c0 > 0 ? -1.0 : 1.0;
  }
  double ext = ra + soft + 2;
  int x0 = (int)floor(cx - ext), x1 = (int)ceil(cx + ext), y0 = (int)floor(cy - ext), y1 = (int)ceil(cy + ext);
  if (x0 < 0) x0 = 0;
  if (y0 < 0) y0 = 0;
  if (x1 > cv->w) x1 = cv->w;
  if (y1 > cv->h) y1 = cv->h;
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++) {
      double px = x + 0.5 - cx, py = y + 0.5 - cy;
      double u = px * co + py * si, v = -px * si + py * co, d;
      if (kind == 0) { /* ellipse (approximate distance) */
        double q = sqrt((u / ra) * (u / ra) + (v / rb) * (v / rb));
        d = (q - 1) * rb;
      } else if (kind == 1) { /* rotated rectangle */
        double dx = fabs(u) - ra, dy = fabs(v) - rb;
        double ox = dx > 0 ? dx : 0, oy = dy > 0 ? dy : 0;
        d = sqrt(ox * ox + oy * oy) + (dx > dy ? (dx < 0 ? dx : 0) : (dy < 0 ? dy : 0));
      } else if (kind == 2) { /* triangle: largest signed edge distance (negative inside) */
        d = -1e9;
        for (int i = 0; i < 3; i++) {
          int j = (i + 1) % 3;
          double ex = tx[j] - tx[i], ey = ty[j] - ty[i], len = sqrt(ex * ex + ey * ey) + 1e-9;
          double e = tsign * ((x + 0.5 - tx[i]) * ey - (y + 0.5 - ty[i]) * ex) / len;
          if (e > d) d = e;
        }
      } else { /* circle */
        d = sqrt(px * px + py * py) - ra;
      }
      if (ring > 0) d = fabs(d + ring) - ring;
      float a = (float)(0.5 - d / soft);
      if (a <= 0) continue;
      if (grad) {
        float t = (float)(0.5 + 0.5 * u / ra), c3[3];
        t = t < 0 ? 0 : t > 1 ? 1 : t;
        for (int c = 0; c < 3; c++) c3[c] = col[c] + (col2[c] - col[c]) * t;
        blend(cv, x, y, c3, a);
      } else {
        blend(cv, x, y, col, a);
      }
    }
}

static void draw_segment(canvas *cv, double ax, double ay, double bx, double by, double th, const float col[3]) {
  int x0 = (int)floor((ax < bx ? ax : bx) - th - 1), x1 = (int)ceil((ax > bx ? ax : bx) + th + 1);
  int y0 = (int)floor((ay < by ? ay : by) - th - 1), y1 = (int)ceil((ay > by ? ay : by) + th + 1);
  if (x0 < 0) x0 = 0;
  if (y0 < 0) y0 = 0;
  if (x1 > cv->w) x1 = cv->w;
  if (y1 > cv->h) y1 = cv->h;
  double ex = bx - ax, ey = by - ay, l2 = ex * ex + ey * ey + 1e-12;
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++) {
      double px = x + 0.5 - ax, py = y + 0.5 - ay, t = (px * ex + py * ey) / l2;
      t = t < 0 ? 0 : t > 1 ? 1 : t;
      double dx = px - t * ex, dy = py - t * ey, d = sqrt(dx * dx + dy * dy) - th / 2;
      blend(cv, x, y, col, (float)(0.5 - d));
    }
}

/* lines of glyph-like marks: each glyph joins 2-4 points of a 3x4 grid */
static void draw_text(canvas *cv, rng_t *r) {
  double gh = rng_range(r, 6, 0.12 * (cv->h > 40 ? cv->h : 40)), gw = gh * rng_range(r, 0.5, 0.8);
  double th = gh * rng_range(r, 0.08, 0.18) + 0.6;
  int lines = 1 + (int)rng_below(r, 3);
  float col[3];
  float dark = rng_uniform(r) < 0.5 ? 0.0f : 1.0f;
  for (int c = 0; c < 3; c++) col[c] = dark * 0.8f + (float)rng_uniform(r) * 0.2f;
  double y = rng_range(r, 0, cv->h - gh);
  double xs = rng_range(r, 0, cv->w * 0.5);
  for (int l = 0; l < lines; l++, y += gh * 1.5) {
    int nglyph = 3 + (int)rng_below(r, 12);
    double x = xs;
    for (int gi = 0; gi < nglyph && x < cv->w; gi++) {
      if (rng_uniform(r) < 0.15) { x += gw; continue; } /* word gap */
      int np = 2 + (int)rng_below(r, 3);
      double px = 0, py = 0;
      for (int k = 0; k < np; k++) {
        double qx = x + gw * (double)rng_below(r, 3) / 2.0, qy = y + gh * (double)rng_below(r, 4) / 3.0;
        if (k > 0) draw_segment(cv, px, py, qx, qy, th, col);
        px = qx; py = qy;
      }
      x += gw * 1.3;
    }
  }
}

/* Saturated areas, as photographs and graphics have them: an over-exposed picture (gain, clipped at 1,
 * as a bright sky), a flat pure white or black region with a soft or hard edge (a background, a
 * margin), or flat graphic panels at exactly 0 or 1 per channel. Values are clipped later, so a gain
 * above 1 leaves whole areas at 255. */
static void draw_saturation(canvas *cv, rng_t *r) {
  int kind = (int)rng_below(r, 3);
  if (kind == 0) { /* over-exposure: gain 1.3..2.5 */
    float gain = (float)rng_range(r, 1.3, 2.5);
    for (size_t i = 0; i < (size_t)cv->w * cv->h * 3; i++) cv->px[i] *= gain;
    return;
  }
  if (kind == 1) { /* a half-plane (a fifth to four fifths of the picture) of pure white or black */
    double ang = rng_range(r, 0, 6.283185307), nx = cos(ang), ny = sin(ang);
    double cut = rng_range(r, -0.3, 0.3) * (cv->w > cv->h ? cv->w : cv->h);
    double soft = rng_uniform(r) < 0.5 ? 1.0 : rng_range(r, 2, 12);
    float col[3];
    float v = rng_uniform(r) < 0.7 ? 1.0f : 0.0f; /* white is the case that breaks recovery most */
    for (int c = 0; c < 3; c++) col[c] = v;
    for (int y = 0; y < cv->h; y++)
      for (int x = 0; x < cv->w; x++) {
        double d = (x + 0.5 - cv->w * 0.5) * nx + (y + 0.5 - cv->h * 0.5) * ny - cut;
        blend(cv, x, y, col, (float)(0.5 + d / soft));
      }
    return;
  }
  int panels = 1 + (int)rng_below(r, 4); /* graphics: flat panels in pure colours (each channel 0 or 1) */
  for (int k = 0; k < panels; k++) {
    int x0 = (int)rng_below(r, (uint64_t)cv->w), y0 = (int)rng_below(r, (uint64_t)cv->h);
    int x1 = x0 + 1 + (int)rng_below(r, (uint64_t)(cv->w / 2 + 1)), y1 = y0 + 1 + (int)rng_below(r, (uint64_t)(cv->h / 2 + 1));
    if (x1 > cv->w) x1 = cv->w;
    if (y1 > cv->h) y1 = cv->h;
    float col[3];
    for (int c = 0; c < 3; c++) col[c] = rng_uniform(r) < 0.5 ? 0.0f : 1.0f;
    for (int y = y0; y < y1; y++)
      for (int x = x0; x < x1; x++) blend(cv, x, y, col, 1.0f);
  }
}

int gen_render(uint64_t seed, uint64_t index, int w, int h, raw_image *raw) {
  if (w <= 0 || h <= 0 || w > 16384 || h > 16384) return -1;
  if (raw_image_reserve(raw, w, h, 3, 8) != 0) return -1;
  canvas cv = {w, h, malloc((size_t)w * h * 3 * sizeof(float))};
  if (!cv.px) return -1;
  rng_t r;
  rng_init(&r, hash_words(seed, index, 0x67656e6572617465ull));
  draw_background(&cv, &r);
  int ntex = (int)rng_below(&r, 3);
  for (int i = 0; i < ntex; i++) draw_texture(&cv, &r);
  int nshape = 2 + (int)rng_below(&r, 9);
  for (int i = 0; i < nshape; i++) draw_shape(&cv, &r);
  if (rng_uniform(&r) < 0.6) draw_text(&cv, &r);
  float grain = rng_uniform(&r) < 0.5 ? (float)rng_range(&r, 0.0, 0.03) : 0.0f;
  if (grain > 0)
    for (size_t i = 0; i < (size_t)w * h * 3; i++) cv.px[i] += grain * (float)(rng_uniform(&r) - 0.5);
  if (rng_uniform(&r) < 0.3) draw_saturation(&cv, &r); /* after the grain: saturated areas stay flat */
  for (int y = 0; y < h; y++) {
    uint8_t *row = raw->data + (size_t)y * raw->stride;
    for (int i = 0; i < w * 3; i++) {
      float v = cv.px[(size_t)y * w * 3 + i];
      v = v < 0 ? 0 : v > 1 ? 1 : v;
      row[i] = (uint8_t)(v * 255.0f + 0.5f);
    }
  }
  free(cv.px);
  raw->x0 = raw->y0 = 0; raw->full_w = raw->orig_w = w; raw->full_h = raw->orig_h = h; raw->scale = 1.0;
  return 0;
}

int mf_image_generate(uint64_t seed, uint64_t index, int w, int h, mf_image *out) {
  memset(out, 0, sizeof *out);
  raw_image r = {0};
  if (gen_render(seed, index, w, h, &r) != 0) { raw_image_free(&r); return -1; }
  out->data = malloc((size_t)w * h * 3 * sizeof(float));
  if (!out->data) { raw_image_free(&r); return -1; }
  for (size_t i = 0; i < (size_t)w * h * 3; i++) out->data[i] = r.data[i] / 255.0f;
  out->w = w; out->h = h; out->c = 3;
  raw_image_free(&r);
  return 0;
}
