/* imagegs_model.c — the Image-GS model file: saving a session's active Gaussians, and rendering a model file at
 * any resolution with the rasteriser (one forward pass over the whole image). */
#include "models/imagegs_model.h"
#include "train/safetensors.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

double igs_bpp(int64_t gaussians, int channels, int bits, int w, int h) {
  return (double)gaussians * (5 + channels) * bits / ((double)w * h);
}

int igs_model_save(mf_session *s, const igs_net *net, const char *path, const char *note, char *err, size_t n) {
  const igs_cfg *c = &net->cfg;
  int64_t N = c->gaussians, A = mf_session_active(s, net->mask), C = c->channels;
  float *buf = malloc(sizeof(float) * (size_t)N * (5 + C));
  if (!buf) { snprintf(err, n, "out of host memory"); return -1; }
  float *pos = buf, *isc = pos + 2 * N, *rot = isc + 2 * N, *feat = rot + N;
  int rc = -1;
  char qb[16];
  snprintf(qb, sizeof qb, "%d", c->quant_bits);
  if (mf_session_read(s, net->pos, pos, (size_t)(2 * N)) || mf_session_read(s, net->inv_scale, isc, (size_t)(2 * N)) ||
      mf_session_read(s, net->rot, rot, (size_t)N) || mf_session_read(s, net->feat, feat, (size_t)(N * C))) {
    snprintf(err, n, "%s: reading the Gaussians failed", path);
    free(buf);
    return -1;
  }
  if (c->quant_bits > 0) { /* the values the fit drew */
    float *ps[4] = {pos, isc, rot, feat};
    int64_t cnt[4] = {2 * N, 2 * N, N, C * N};
    for (int k = 0; k < 4; k++)
      for (int64_t i = 0; i < cnt[k]; i++) ps[k][i] = igs_quantize(ps[k][i], k, c->quant_bits);
  }
  mf_st_writer *w = mf_st_writer_init();
  int64_t s2[2] = {A, 2}, s1[2] = {A, 1}, sc[2] = {A, C};
  char v[6][64];
  snprintf(v[0], sizeof v[0], "%d", c->width);
  snprintf(v[1], sizeof v[1], "%d", c->height);
  snprintf(v[2], sizeof v[2], "%lld", (long long)C);
  snprintf(v[3], sizeof v[3], "%d", c->top_k);
  snprintf(v[4], sizeof v[4], "%.17g", c->max_radius);
  snprintf(v[5], sizeof v[5], "%lld", (long long)mf_session_step(s));
  if (w) {
    mf_st_writer_add(w, "pos", MF_F32, 2, s2, pos);
    mf_st_writer_add(w, "inv_scale", MF_F32, 2, s2, isc);
    mf_st_writer_add(w, "rot", MF_F32, 2, s1, rot);
    mf_st_writer_add(w, "feat", MF_F32, 2, sc, feat);
    mf_st_writer_meta(w, "format", IGS_MODEL_FORMAT);
    mf_st_writer_meta(w, "width", v[0]);
    mf_st_writer_meta(w, "height", v[1]);
    mf_st_writer_meta(w, "channels", v[2]);
    mf_st_writer_meta(w, "top_k", v[3]);
    mf_st_writer_meta(w, "max_radius", v[4]);
    mf_st_writer_meta(w, "step", v[5]);
    mf_st_writer_meta(w, "quant_bits", qb);
    if (note) mf_st_writer_meta(w, "command", note);
    rc = mf_st_writer_save(w, path, err, n);
  } else snprintf(err, n, "out of host memory");
  mf_st_writer_free(w);
  free(buf);
  return rc;
}

static int meta_int(const mf_st_file *f, const char *key, long lo, long hi, long *out) {
  const char *v = mf_st_meta(f, key);
  char *end;
  if (!v) return -1;
  long x = strtol(v, &end, 10);
  if (!*v || *end || x < lo || x > hi) return -1;
  *out = x;
  return 0;
}

/* Sigma' = D Sigma D with D = diag(sx, sy), Sigma = R diag(1/a^2, 1/b^2) R^T: its eigenvalues give the new inverse
 * scales, its eigenvector the new angle */
static void rescale(double a, double b, double t, double sx, double sy, float *na, float *nb, float *nt) {
  if (sx == sy) { /* the same aspect: the scales follow, the angle stays (at the fitted size: the values as fitted) */
    *na = (float)(a / sx);
    *nb = (float)(b / sx);
    *nt = (float)t;
    return;
  }
  double c = cos(t), s = sin(t), va = 1 / (a * a), vb = 1 / (b * b);
  double xx = (va * c * c + vb * s * s) * sx * sx, yy = (va * s * s + vb * c * c) * sy * sy, xy = (va - vb) * c * s * sx * sy;
  double tr = xx + yy, d = sqrt(0.25 * (xx - yy) * (xx - yy) + xy * xy), l1 = 0.5 * tr + d, l2 = 0.5 * tr - d;
  if (l2 < 1e-30) l2 = 1e-30;
  double ang = 0.5 * atan2(2 * xy, xx - yy); /* the axis of l1 */
  *na = (float)(1 / sqrt(l1));
  *nb = (float)(1 / sqrt(l2));
  *nt = (float)ang;
}

int igs_model_render(const char *path, int width, int height, int threads, mf_image *out, char *err, size_t n) {
  memset(out, 0, sizeof *out);
  mf_st_file *f = mf_st_open(path, err, n);
  if (!f) return -1;
  const char *fmt = mf_st_meta(f, "format");
  if (!fmt || strcmp(fmt, IGS_MODEL_FORMAT)) {
    snprintf(err, n, "%s is %s%s%s, not an Image-GS model; render takes the model.safetensors that 'memfit train imagegs' writes",
             path, fmt ? "a model file of another kind (format '" : "not a memfit model file (no format)", fmt ? fmt : "", fmt ? "')" : "");
    mf_st_close(f);
    return -1;
  }
  long W0, H0, C, K;
  const char *mr = mf_st_meta(f, "max_radius");
  double rmax = mr ? strtod(mr, NULL) : 0;
  const mf_st_tensor *tp = mf_st_find(f, "pos");
  if (meta_int(f, "width", 1, 1 << 20, &W0) || meta_int(f, "height", 1, 1 << 20, &H0) || meta_int(f, "channels", 1, 12, &C) ||
      meta_int(f, "top_k", 1, 32, &K) || !(rmax >= 1) || !tp || tp->ndim != 2 || tp->shape[0] < 1) {
    snprintf(err, n, "%s: an Image-GS model file with damaged metadata or no Gaussians", path);
    mf_st_close(f);
    return -1;
  }
  int64_t N = tp->shape[0];
  int64_t s2[2] = {N, 2}, s1[2] = {N, 1}, sc[2] = {N, C};
  const float *pos = mf_st_get(f, "pos", MF_F32, 2, s2, err, n), *isc = pos ? mf_st_get(f, "inv_scale", MF_F32, 2, s2, err, n) : NULL;
  const float *rot = isc ? mf_st_get(f, "rot", MF_F32, 2, s1, err, n) : NULL, *feat = rot ? mf_st_get(f, "feat", MF_F32, 2, sc, err, n) : NULL;
  if (!feat) { mf_st_close(f); return -1; }
  if (!width) width = (int)W0, height = (int)H0;
  if (width < 1 || height < 1 || width > (1 << 16) || height > (1 << 16)) {
    snprintf(err, n, "--size %dx%d: width and height must be 1 .. 65536", width, height);
    mf_st_close(f);
    return -1;
  }
  double sx = (double)width / W0, sy = (double)height / H0;
  float *nisc = malloc(sizeof(float) * 2 * N), *nrot = malloc(sizeof(float) * N);
  mf_graph *g = mf_graph_init(MF_F32);
  mf_session *s = NULL;
  int rc = -1;
  if (!nisc || !nrot || !g) { snprintf(err, n, "out of host memory"); goto out; }
  for (int64_t i = 0; i < N; i++) rescale(isc[2 * i], isc[2 * i + 1], rot[i], sx, sy, &nisc[2 * i], &nisc[2 * i + 1], &nrot[i]);
  mf_tensor tpos = mf_input(g, "pos", 2, s2), tisc = mf_input(g, "inv_scale", 2, s2), trot = mf_input(g, "rot", 2, s1),
            tfeat = mf_input(g, "feat", 2, sc);
  mf_raster_opts ro = {0};
  ro.width = width;
  ro.height = height;
  ro.top_k = (int)K;
  ro.max_radius = rmax * (sx > sy ? sx : sy);
  mf_tensor img = mf_gauss_raster(g, tpos, tisc, trot, tfeat, -1, &ro); /* [C,height,width] */
  if (mf_graph_error(g)) { snprintf(err, n, "render: %s", mf_graph_error(g)); goto out; }
  mf_train_opts o = mf_train_opts_default();
  o.plan.training = 0;
  o.threads = o.plan.threads = threads;
  o.plan.keep = &img;
  o.plan.n_keep = 1;
  if (!(s = mf_session_init(g, img, &o, err, n))) goto out;
  mf_session_write_input(s, tpos, pos, (size_t)(2 * N));
  mf_session_write_input(s, tisc, nisc, (size_t)(2 * N));
  mf_session_write_input(s, trot, nrot, (size_t)N);
  mf_session_write_input(s, tfeat, feat, (size_t)(N * C));
  mf_session_forward(s);
  size_t P = (size_t)width * height;
  float *planar = malloc(sizeof(float) * C * P);
  out->data = malloc(sizeof(float) * C * P);
  if (!planar || !out->data || mf_session_read(s, img, planar, C * P)) {
    free(planar);
    free(out->data);
    out->data = NULL;
    snprintf(err, n, "render: out of host memory");
    goto out;
  }
  for (long ch = 0; ch < C; ch++)
    for (size_t p = 0; p < P; p++) out->data[p * C + ch] = planar[ch * P + p];
  free(planar);
  out->w = width;
  out->h = height;
  out->c = (int)C;
  rc = 0;
out:
  mf_session_free(s);
  mf_graph_free(g);
  free(nisc);
  free(nrot);
  mf_st_close(f);
  return rc;
}
