/* transform.c — random augmentation of one view: draw the parameters from the sample's RNG, then
 * resample the crop box of a decoded region into float planes [C][H][W] (antialiased bilinear or
 * area filter) and apply flips, 90-degree turns, colour jitter, grayscale, blur, noise, normalisation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

mf_transform_opts mf_transform_opts_default(void) {
  mf_transform_opts o;
  memset(&o, 0, sizeof o);
  o.out_w = o.out_h = 224;
  o.channels = 3;
  o.crop = MF_CROP_NONE;
  o.scale[0] = 0.08f; o.scale[1] = 1.0f;
  o.ratio[0] = 3.0f / 4.0f; o.ratio[1] = 4.0f / 3.0f;
  o.filter = MF_FILTER_BILINEAR;
  o.jitter_p = 1.0f;
  o.blur_sigma[0] = 0.1f; o.blur_sigma[1] = 2.0f;
  for (int i = 0; i < 3; i++) { o.mean[i] = 0.0f; o.std[i] = 1.0f; }
  o.jpeg_draft = 1;
  return o;
}

double rng_normal(rng_t *r) {
  double u = rng_uniform(r), v = rng_uniform(r);
  return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}

/* ---------------- parameters ---------------- */
static int fixed_crop(const mf_transform_opts *o, rng_t *r, int w, int h, int random, tf_params *p, char *err,
                      size_t errlen) {
  double s = 1.0;
  double rw = w, rh = h; /* image size after the optional shorter-side resize */
  if (o->resize_short > 0) {
    s = (double)o->resize_short / (w < h ? w : h);
    rw = nearbyint(w * s); rh = nearbyint(h * s);
    if (w < h) rw = o->resize_short; else rh = o->resize_short;
  }
  if (rw < o->out_w || rh < o->out_h) {
    snprintf(err, errlen, "image %dx%d smaller than the %dx%d crop", w, h, o->out_w, o->out_h);
    return -1;
  }
  double ox, oy;
  if (random) {
    ox = (double)rng_below(r, (uint64_t)(rw - o->out_w) + 1);
    oy = (double)rng_below(r, (uint64_t)(rh - o->out_h) + 1);
  } else { /* torchvision: int(round((H - h) / 2)), ties to even */
    ox = nearbyint((rw - o->out_w) / 2.0);
    oy = nearbyint((rh - o->out_h) / 2.0);
  }
  double sx = rw / w, sy = rh / h;
  p->bx = ox / sx; p->by = oy / sy; p->bw = o->out_w / sx; p->bh = o->out_h / sy;
  return 0;
}

static void rrc_box(const mf_transform_opts *o, rng_t *r, int w, int h, tf_params *p) {
  double area = (double)w * h, lr0 = log(o->ratio[0]), lr1 = log(o->ratio[1]);
  for (int attempt = 0; attempt < 10; attempt++) {
    double ta = area * rng_range(r, o->scale[0], o->scale[1]);
    double ar = exp(rng_range(r, lr0, lr1));
    int cw = (int)nearbyint(sqrt(ta * ar)), ch = (int)nearbyint(sqrt(ta / ar));
    if (cw > 0 && ch > 0 && cw <= w && ch <= h) {
      p->by = (double)rng_below(r, (uint64_t)(h - ch) + 1);
      p->bx = (double)rng_below(r, (uint64_t)(w - cw) + 1);
      p->bw = cw; p->bh = ch;
      return;
    }
  }
  /* fallback: centre crop with the ratio clamped into range */
  double in_ratio = (double)w / h;
  int cw = w, ch = h;
  if (in_ratio < o->ratio[0]) ch = (int)nearbyint(w / o->ratio[0]);
  else if (in_ratio > o->ratio[1]) cw = (int)nearbyint(h * o->ratio[1]);
  if (ch < 1) ch = 1;
  if (cw < 1) cw = 1;
  p->bx = (w - cw) / 2; p->by = (h - ch) / 2; p->bw = cw; p->bh = ch;
}

int tf_params_draw(const mf_transform_opts *o, rng_t *r, int w, int h, tf_params *p, char *err, size_t errlen) {
  memset(p, 0, sizeof *p);
  switch (o->crop) {
  case MF_CROP_CENTER: if (fixed_crop(o, r, w, h, 0, p, err, errlen)) return -1; break;
  case MF_CROP_RANDOM: if (fixed_crop(o, r, w, h, 1, p, err, errlen)) return -1; break;
  case MF_CROP_RANDOM_RESIZED: rrc_box(o, r, w, h, p); break;
  default: p->bx = 0; p->by = 0; p->bw = w; p->bh = h; break;
  }
  if (o->hflip > 0) p->hflip = rng_uniform(r) < o->hflip;
  if (o->vflip > 0) p->vflip = rng_uniform(r) < o->vflip;
  if (o->rot90) p->rot = (int)rng_below(r, 4);
  if (o->jitter_p > 0 && (o->brightness > 0 || o->contrast > 0 || o->saturation > 0 || o->hue > 0) &&
      rng_uniform(r) < o->jitter_p) {
    p->jitter = 1;
    int ord[4] = {0, 1, 2, 3};
    for (int i = 3; i > 0; i--) { int j = (int)rng_below(r, (uint64_t)i + 1), t = ord[i]; ord[i] = ord[j]; ord[j] = t; }
    memcpy(p->order, ord, sizeof ord);
    double b = o->brightness, c = o->contrast, s = o->saturation;
    p->bright = b > 0 ? (float)rng_range(r, b < 1 ? 1 - b : 0, 1 + b) : 1.0f;
    p->contrast = c > 0 ? (float)rng_range(r, c < 1 ? 1 - c : 0, 1 + c) : 1.0f;
    p->sat = s > 0 ? (float)rng_range(r, s < 1 ? 1 - s : 0, 1 + s) : 1.0f;
    p->hue = o->hue > 0 ? (float)rng_range(r, -o->hue, o->hue) : 0.0f;
  }
  if (o->gray_p > 0) p->gray = rng_uniform(r) < o->gray_p;
  if (o->blur_p > 0 && rng_uniform(r) < o->blur_p) p->blur_sigma = (float)rng_range(r, o->blur_sigma[0], o->blur_sigma[1]);
  if (o->noise_std > 0) { p->noise_std = o->noise_std; p->noise_seed = rng_u64(r); }
  return 0;
}

int tf_validate(const mf_transform_opts *o, char *err, size_t errlen) {
  if (o->out_w <= 0 || o->out_h <= 0 || o->out_w > 16384 || o->out_h > 16384) {
    snprintf(err, errlen, "bad output size %dx%d", o->out_w, o->out_h); return -1;
  }
  if (o->channels != 1 && o->channels != 3) { snprintf(err, errlen, "channels must be 1 or 3, not %d", o->channels); return -1; }
  if (o->rot90 && o->out_w != o->out_h) { snprintf(err, errlen, "rot90 needs a square output, not %dx%d", o->out_w, o->out_h); return -1; }
  if (o->crop == MF_CROP_RANDOM_RESIZED &&
      !(o->scale[0] > 0 && o->scale[0] <= o->scale[1] && o->ratio[0] > 0 && o->ratio[0] <= o->ratio[1])) {
    snprintf(err, errlen, "bad random-resized-crop ranges scale (%g,%g) ratio (%g,%g)", o->scale[0], o->scale[1],
             o->ratio[0], o->ratio[1]);
    return -1;
  }
  if (o->blur_p > 0 && !(o->blur_sigma[0] > 0 && o->blur_sigma[0] <= o->blur_sigma[1] && o->blur_sigma[1] <= 10)) {
    snprintf(err, errlen, "bad blur sigma range (%g,%g) (0 < min <= max <= 10)", o->blur_sigma[0], o->blur_sigma[1]);
    return -1;
  }
  if (o->hue < 0 || o->hue > 0.5f || o->brightness < 0 || o->contrast < 0 || o->saturation < 0 || o->noise_std < 0) {
    snprintf(err, errlen, "bad colour jitter (brightness, contrast, saturation >= 0, hue in [0, 0.5])"); return -1;
  }
  if (o->normalize)
    for (int c = 0; c < o->channels; c++)
      if (!(o->std[c] > 0)) { snprintf(err, errlen, "normalisation std[%d] must be > 0", c); return -1; }
  return 0;
}

int tf_draw_views(const mf_transform_opts *o, int views, rng_t *r, int w, int h, tf_params *p, decode_region *reg,
                  char *err, size_t errlen) {
  double x0 = 1e30, y0 = 1e30, x1 = -1e30, y1 = -1e30, fmin = 1e30, fmax = 0;
  for (int v = 0; v < views; v++) {
    if (tf_params_draw(o, r, w, h, &p[v], err, errlen) != 0) return -1;
    if (p[v].bx < x0) x0 = p[v].bx;
    if (p[v].by < y0) y0 = p[v].by;
    if (p[v].bx + p[v].bw > x1) x1 = p[v].bx + p[v].bw;
    if (p[v].by + p[v].bh > y1) y1 = p[v].by + p[v].bh;
    double fx = p[v].bw / o->out_w, fy = p[v].bh / o->out_h, f0 = fx < fy ? fx : fy, f1 = fx > fy ? fx : fy;
    if (f0 < fmin) fmin = f0;
    if (f1 > fmax) fmax = f1;
  }
  double sup = o->filter == MF_FILTER_AREA ? 0.5 : 1.0;
  reg->bx = x0; reg->by = y0; reg->bw = x1 - x0; reg->bh = y1 - y0;
  if (o->jpeg_draft) {
    /* out size such that box/out is the smallest view factor: DCT scaling keeps every view >= output */
    reg->out_w = (int)ceil(reg->bw / fmin); reg->out_h = (int)ceil(reg->bh / fmin);
    reg->support = sup * fmax / fmin + 1;
  } else { /* no DCT scaling: margin in full-scale pixels */
    reg->out_w = reg->out_h = 0;
    reg->support = sup * (fmax > 1 ? fmax : 1) + 1;
  }
  return 0;
}

void tf_scratch_free(tf_scratch *s) {
  free(s->buf);
  s->buf = NULL; s->cap = 0;
}
static float *scratch_get(tf_scratch *s, size_t n) {
  if (n > s->cap) {
    float *p = realloc(s->buf, n * sizeof *p);
    if (!p) return NULL;
    s->buf = p; s->cap = n;
  }
  return s->buf;
}

/* ---------------- resampling ---------------- */
/* One axis: for each output i, taps [start[i], start[i]+count[i]) with normalised weights w[i*maxt..]. */
typedef struct axis_w { int *start, *count; float *w; int maxt; } axis_w;

static double filt(int area, double x) {
  if (area) return (x >= -0.5 && x < 0.5) ? 1.0 : 0.0;
  x = fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

/* b0, blen: box in input pixels; in_n: input length; gain scales every weight. */
static void axis_build(axis_w *a, double b0, double blen, int out_n, int in_n, int area, float gain) {
  double scale = blen / out_n, fs = scale > 1 ? scale : 1, support = (area ? 0.5 : 1.0) * fs;
  for (int i = 0; i < out_n; i++) {
    double center = b0 + (i + 0.5) * scale;
    int lo = (int)floor(center - support + 0.5), hi = (int)floor(center + support + 0.5);
    if (lo < 0) lo = 0;
    if (hi > in_n) hi = in_n;
    if (hi <= lo) { /* box entirely outside: clamp to the nearest pixel */
      lo = center < 0 ? 0 : in_n - 1;
      hi = lo + 1;
    }
    if (hi - lo > a->maxt) hi = lo + a->maxt;
    double sum = 0;
    float *w = a->w + (size_t)i * a->maxt;
    for (int j = lo; j < hi; j++) { double v = filt(area, (j + 0.5 - center) / fs); w[j - lo] = (float)v; sum += v; }
    if (sum <= 0) { w[0] = 1; for (int j = lo + 1; j < hi; j++) w[j - lo] = 0; sum = 1; } /* degenerate */
    for (int j = lo; j < hi; j++) w[j - lo] = (float)(w[j - lo] / sum * gain);
    a->start[i] = lo; a->count[i] = hi - lo;
  }
}

static int axis_maxtaps(double blen, int out_n, int area) {
  double scale = blen / out_n, fs = scale > 1 ? scale : 1;
  return (int)ceil(2 * (area ? 0.5 : 1.0) * fs) + 2;
}

/* Resample box of raw (region-local coords) into nplanes (= raw->c) planes of out_h x out_w. */
static int resample(const raw_image *raw, double bx, double by, double bw, double bh, int out_w, int out_h, int area,
                    float *const *planes, tf_scratch *s) {
  int c = raw->c;
  int mtx = axis_maxtaps(bw, out_w, area), mty = axis_maxtaps(bh, out_h, area);
  /* scratch layout: wx, wy, tmp rows (floats), then int tables */
  size_t nwx = (size_t)out_w * mtx, nwy = (size_t)out_h * mty;
  /* the vertical taps span rows [ylo, yhi) of the region */
  size_t ints = 2 * (size_t)out_w + 2 * (size_t)out_h;
  size_t fl = nwx + nwy + ints; /* ints stored as floats-sized slots */
  float *base = scratch_get(s, fl);
  if (!base) return -1;
  axis_w ax = {(int *)(base + nwx + nwy), (int *)(base + nwx + nwy) + out_w, base, mtx};
  axis_w ay = {(int *)(base + nwx + nwy) + 2 * out_w, (int *)(base + nwx + nwy) + 2 * out_w + out_h, base + nwx, mty};
  float gain = raw->depth == 16 ? 1.0f / 65535.0f : 1.0f / 255.0f;
  axis_build(&ax, bx, bw, out_w, raw->w, area, 1.0f);
  axis_build(&ay, by, bh, out_h, raw->h, area, gain);
  int ylo = ay.start[0], yhi = ay.start[out_h - 1] + ay.count[out_h - 1];
  for (int i = 0; i < out_h; i++) {
    if (ay.start[i] < ylo) ylo = ay.start[i];
    if (ay.start[i] + ay.count[i] > yhi) yhi = ay.start[i] + ay.count[i];
  }
  size_t tmp_n = (size_t)(yhi - ylo) * out_w * c;
  base = scratch_get(s, fl + tmp_n); /* may move: rebuild table pointers */
  if (!base) return -1;
  ax.w = base; ay.w = base + nwx;
  ax.start = (int *)(base + nwx + nwy); ax.count = ax.start + out_w;
  ay.start = ax.start + 2 * out_w; ay.count = ay.start + out_h;
  float *tmp = base + fl;
  /* horizontal pass: rows ylo..yhi -> tmp [(y-ylo)][x][c] */
  for (int y = ylo; y < yhi; y++) {
    const uint8_t *row = raw->data + (size_t)y * raw->stride;
    float *t = tmp + (size_t)(y - ylo) * out_w * c;
    if (raw->depth == 8 && c == 3) {
      for (int x = 0; x < out_w; x++) {
        const float *w = ax.w + (size_t)x * mtx;
        const uint8_t *p = row + (size_t)ax.start[x] * 3;
        float a0 = 0, a1 = 0, a2 = 0;
        for (int k = 0; k < ax.count[x]; k++) { a0 += w[k] * p[3 * k]; a1 += w[k] * p[3 * k + 1]; a2 += w[k] * p[3 * k + 2]; }
        t[3 * x] = a0; t[3 * x + 1] = a1; t[3 * x + 2] = a2;
      }
    } else if (raw->depth == 8 && c == 1) {
      for (int x = 0; x < out_w; x++) {
        const float *w = ax.w + (size_t)x * mtx;
        const uint8_t *p = row + ax.start[x];
        float a0 = 0;
        for (int k = 0; k < ax.count[x]; k++) a0 += w[k] * p[k];
        t[x] = a0;
      }
    } else {
      const uint16_t *r16 = (const uint16_t *)row;
      for (int x = 0; x < out_w; x++) {
        const float *w = ax.w + (size_t)x * mtx;
        for (int ch = 0; ch < c; ch++) {
          float a0 = 0;
          for (int k = 0; k < ax.count[x]; k++) {
            size_t i = (size_t)(ax.start[x] + k) * c + ch;
            a0 += w[k] * (raw->depth == 16 ? (float)r16[i] : (float)row[i]);
          }
          t[x * c + ch] = a0;
        }
      }
    }
  }
  /* vertical pass into planes */
  for (int y = 0; y < out_h; y++) {
    const float *w = ay.w + (size_t)y * mty;
    int n = ay.count[y];
    const float *t0 = tmp + (size_t)(ay.start[y] - ylo) * out_w * c;
    for (int ch = 0; ch < c; ch++) {
      float *dst = planes[ch] + (size_t)y * out_w;
      for (int x = 0; x < out_w; x++) dst[x] = 0;
      for (int k = 0; k < n; k++) {
        const float *src = t0 + (size_t)k * out_w * c + ch;
        float wk = w[k];
        for (int x = 0; x < out_w; x++) dst[x] += wk * src[(size_t)x * c];
      }
      for (int x = 0; x < out_w; x++) dst[x] = dst[x] < 0 ? 0 : dst[x] > 1 ? 1 : dst[x];
    }
  }
  return 0;
}

/* Float planes through the same filter as resample: for each output row, the horizontal pass of
 * each source row it reads into one row buffer, summed with the row's vertical weights. */
int tf_resize_planes(const float *src, int sw, int sh, int nc, float *dst, int dw, int dh, mf_filter filter) {
  if (sw < 1 || sh < 1 || dw < 1 || dh < 1 || nc < 1) return -1;
  int area = filter == MF_FILTER_AREA;
  int mtx = axis_maxtaps(sw, dw, area), mty = axis_maxtaps(sh, dh, area);
  size_t nwx = (size_t)dw * mtx, nwy = (size_t)dh * mty;
  float *wts = malloc((nwx + nwy + (size_t)dw) * sizeof *wts);
  int *ints = malloc((2 * (size_t)dw + 2 * (size_t)dh) * sizeof *ints);
  if (!wts || !ints) { free(wts); free(ints); return -1; }
  axis_w ax = {ints, ints + dw, wts, mtx}, ay = {ints + 2 * dw, ints + 2 * dw + dh, wts + nwx, mty};
  float *row = wts + nwx + nwy;
  axis_build(&ax, 0, sw, dw, sw, area, 1.0f);
  axis_build(&ay, 0, sh, dh, sh, area, 1.0f);
  for (int c = 0; c < nc; c++) {
    const float *sp = src + (size_t)c * sw * sh;
    float *dp = dst + (size_t)c * dw * dh;
    for (int y = 0; y < dh; y++) {
      float *d = dp + (size_t)y * dw;
      for (int x = 0; x < dw; x++) d[x] = 0;
      const float *wy = ay.w + (size_t)y * mty;
      for (int k = 0; k < ay.count[y]; k++) {
        const float *s = sp + (size_t)(ay.start[y] + k) * sw;
        for (int x = 0; x < dw; x++) {
          const float *w = ax.w + (size_t)x * mtx, *p = s + ax.start[x];
          float a0 = 0;
          for (int j = 0; j < ax.count[x]; j++) a0 += w[j] * p[j];
          row[x] = a0;
        }
        float wk = wy[k];
        for (int x = 0; x < dw; x++) d[x] += wk * row[x];
      }
      for (int x = 0; x < dw; x++) d[x] = d[x] < 0 ? 0 : d[x] > 1 ? 1 : d[x];
    }
  }
  free(wts); free(ints);
  return 0;
}

/* ---------------- pixel ops on planes ---------------- */
static inline float clamp01(float v) { return v < 0 ? 0 : v > 1 ? 1 : v; }
static inline float luma(float r, float g, float b) { return 0.299f * r + 0.587f * g + 0.114f * b; }

static void flip_h(float *p, int w, int h) {
  for (int y = 0; y < h; y++) {
    float *r = p + (size_t)y * w;
    for (int a = 0, b = w - 1; a < b; a++, b--) { float t = r[a]; r[a] = r[b]; r[b] = t; }
  }
}
static void flip_v(float *p, int w, int h) {
  for (int a = 0, b = h - 1; a < b; a++, b--)
    for (int x = 0; x < w; x++) { float t = p[(size_t)a * w + x]; p[(size_t)a * w + x] = p[(size_t)b * w + x]; p[(size_t)b * w + x] = t; }
}
/* k counter-clockwise quarter turns of a square n x n plane (tmp: n*n floats) */
static void rot90(float *p, int n, int k, float *tmp) {
  k &= 3;
  if (!k) return;
  memcpy(tmp, p, (size_t)n * n * sizeof *p);
  for (int y = 0; y < n; y++)
    for (int x = 0; x < n; x++) {
      int sx, sy; /* out(y,x) = in(sy,sx) */
      if (k == 1) { sy = x; sx = n - 1 - y; }
      else if (k == 2) { sy = n - 1 - y; sx = n - 1 - x; }
      else { sy = n - 1 - x; sx = y; }
      p[(size_t)y * n + x] = tmp[(size_t)sy * n + sx];
    }
}

static void rgb_to_hsv(float r, float g, float b, float *h, float *s, float *v) {
  float mx = r > g ? (r > b ? r : b) : (g > b ? g : b), mn = r < g ? (r < b ? r : b) : (g < b ? g : b);
  float d = mx - mn;
  *v = mx;
  *s = mx > 0 ? d / mx : 0;
  if (d <= 0) { *h = 0; return; }
  float hh;
  if (mx == r) hh = (g - b) / d;
  else if (mx == g) hh = 2.0f + (b - r) / d;
  else hh = 4.0f + (r - g) / d;
  hh /= 6.0f;
  if (hh < 0) hh += 1.0f;
  *h = hh;
}
static void hsv_to_rgb(float h, float s, float v, float *r, float *g, float *b) {
  float h6 = h * 6.0f;
  int i = (int)h6;
  float f = h6 - i;
  i %= 6;
  float p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  switch (i) {
  case 0: *r = v; *g = t; *b = p; break;
  case 1: *r = q; *g = v; *b = p; break;
  case 2: *r = p; *g = v; *b = t; break;
  case 3: *r = p; *g = q; *b = v; break;
  case 4: *r = t; *g = p; *b = v; break;
  default: *r = v; *g = p; *b = q; break;
  }
}

static void jitter(const tf_params *p, float *const *pl, int nc, size_t n) {
  for (int oi = 0; oi < 4; oi++) {
    int op = p->order[oi];
    if (op == 0 && p->bright != 1.0f) {
      for (int c = 0; c < nc; c++) for (size_t i = 0; i < n; i++) pl[c][i] = clamp01(pl[c][i] * p->bright);
    } else if (op == 1 && p->contrast != 1.0f) {
      double m = 0;
      if (nc == 3) for (size_t i = 0; i < n; i++) m += luma(pl[0][i], pl[1][i], pl[2][i]);
      else for (size_t i = 0; i < n; i++) m += pl[0][i];
      float mean = (float)(m / n), f = p->contrast;
      for (int c = 0; c < nc; c++) for (size_t i = 0; i < n; i++) pl[c][i] = clamp01(f * pl[c][i] + (1 - f) * mean);
    } else if (op == 2 && p->sat != 1.0f && nc == 3) {
      float f = p->sat;
      for (size_t i = 0; i < n; i++) {
        float g = luma(pl[0][i], pl[1][i], pl[2][i]);
        for (int c = 0; c < 3; c++) pl[c][i] = clamp01(f * pl[c][i] + (1 - f) * g);
      }
    } else if (op == 3 && p->hue != 0.0f && nc == 3) {
      for (size_t i = 0; i < n; i++) {
        float h, s, v;
        rgb_to_hsv(pl[0][i], pl[1][i], pl[2][i], &h, &s, &v);
        h += p->hue;
        h -= floorf(h);
        if (h >= 1.0f) h = 0.0f;
        hsv_to_rgb(h, s, v, &pl[0][i], &pl[1][i], &pl[2][i]);
      }
    }
  }
}

/* separable Gaussian blur, reflect padding; tmp: w*h floats */
static void blur_plane(float *p, int w, int h, float sigma, float *tmp) {
  int r = (int)ceilf(3 * sigma);
  if (r < 1) r = 1;
  float k[64];
  if (r > 31) r = 31;
  float sum = 0;
  for (int i = -r; i <= r; i++) { k[i + r] = expf(-0.5f * i * i / (sigma * sigma)); sum += k[i + r]; }
  for (int i = 0; i <= 2 * r; i++) k[i] /= sum;
#define REFL(i, n) ((i) < 0 ? ((-(i)) % (n)) : (i) >= (n) ? ((n) - 1 - ((i) - (n) + 1) % (n)) : (i))
  for (int y = 0; y < h; y++) {
    const float *row = p + (size_t)y * w;
    for (int x = 0; x < w; x++) {
      float a = 0;
      for (int i = -r; i <= r; i++) a += k[i + r] * row[REFL(x + i, w)];
      tmp[(size_t)y * w + x] = a;
    }
  }
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      float a = 0;
      for (int i = -r; i <= r; i++) a += k[i + r] * tmp[(size_t)REFL(y + i, h) * w + x];
      p[(size_t)y * w + x] = a;
    }
#undef REFL
}

int tf_apply(const mf_transform_opts *o, const tf_params *p, const raw_image *raw, float *const *planes,
             tf_scratch *s) {
  int W = o->out_w, H = o->out_h, oc = o->channels;
  size_t n = (size_t)W * H;
  /* box in region-local coordinates of the decoded (maybe downscaled) image */
  double sc = raw->scale;
  double bx = p->bx * sc - raw->x0, by = p->by * sc - raw->y0, bw = p->bw * sc, bh = p->bh * sc;
  int area = o->filter == MF_FILTER_AREA;
  float *tmp3[3];
  float *const *dst = planes;
  int nc = raw->c;
  if (raw->c == 3 && oc == 1) {
    /* need 3 working planes: two from scratch, one the output */
    tmp3[0] = planes[0];
    tmp3[1] = malloc(2 * n * sizeof(float));
    if (!tmp3[1]) return -1;
    tmp3[2] = tmp3[1] + n;
    dst = tmp3;
  }
  if (resample(raw, bx, by, bw, bh, W, H, area, dst, s) != 0) { if (dst == tmp3) free(tmp3[1]); return -1; }
  if (raw->c == 1 && oc == 3) { memcpy(planes[1], planes[0], n * sizeof(float)); memcpy(planes[2], planes[0], n * sizeof(float)); nc = 3; }
  if (p->hflip) for (int c = 0; c < nc; c++) flip_h(dst[c], W, H);
  if (p->vflip) for (int c = 0; c < nc; c++) flip_v(dst[c], W, H);
  float *work = NULL;
  if (p->rot || p->blur_sigma > 0) {
    work = scratch_get(s, n);
    if (!work) { if (dst == tmp3) free(tmp3[1]); return -1; }
  }
  if (p->rot && W == H) for (int c = 0; c < nc; c++) rot90(dst[c], W, p->rot, work);
  if (p->jitter) jitter(p, dst, nc, n);
  if (p->gray && nc == 3)
    for (size_t i = 0; i < n; i++) dst[0][i] = dst[1][i] = dst[2][i] = luma(dst[0][i], dst[1][i], dst[2][i]);
  if (dst == tmp3) { /* RGB -> single luma channel */
    for (size_t i = 0; i < n; i++) planes[0][i] = luma(tmp3[0][i], tmp3[1][i], tmp3[2][i]);
    free(tmp3[1]);
    nc = 1;
  }
  if (p->blur_sigma > 0) for (int c = 0; c < oc; c++) blur_plane(planes[c], W, H, p->blur_sigma, work);
  if (p->noise_std > 0) {
    rng_t nr;
    rng_init(&nr, p->noise_seed);
    for (int c = 0; c < oc; c++)
      for (size_t i = 0; i < n; i++) planes[c][i] = clamp01(planes[c][i] + p->noise_std * (float)rng_normal(&nr));
  }
  if (o->normalize)
    for (int c = 0; c < oc; c++) {
      float m = o->mean[c], inv = 1.0f / o->std[c];
      for (size_t i = 0; i < n; i++) planes[c][i] = (planes[c][i] - m) * inv;
    }
  return 0;
}
