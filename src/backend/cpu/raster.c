/* raster.c (CPU) — kernels of the Image-GS tile rasteriser: the per-Gaussian table, binning into 16x16 tiles
 * (counting sort, lists in Gaussian order), the top-K map, the image and its backward, threaded over tiles.
 * f64 nodes compute in double, all others in float. Backward sums into 16 fixed chunks of tiles, added in
 * chunk order: the same bits for every thread count. A step that would bin more pairs than the node's
 * capacity writes nothing past it: its output is NaN (ids -1) and the step fails with a message. */
#include "backend/cpu/cpu.h"
#include "ops/raster.h"
#include <math.h>
#include <stdio.h>

/* What the tile loops need (raster_impl.h). */
typedef struct rs_ctx {
  int W, H, K, C, TX, TY, T, N, stride; /* the output's (window's) size and tiles; stride: table row length 5 + C */
  int ox, oy, Wl, Hl;                   /* window origin in the full image; pixels j < Wl, i < Hl lie in it (others: 0) */
  const int32_t *tstart, *list;         /* tile t's Gaussians: list[tstart[t] .. tstart[t+1]) */
} rs_ctx;

static inline double rs_load(const void *p, mf_dtype t, size_t i) {
  if (t == MF_F32) return ((const float *)p)[i];
  if (t == MF_F64) return ((const double *)p)[i];
  return mf_ld(p, t, (int64_t)i);
}
static inline void rs_store(void *p, mf_dtype t, size_t i, double v) {
  if (t == MF_F32) ((float *)p)[i] = (float)v;
  else if (t == MF_F64) ((double *)p)[i] = v;
  else mf_st(p, t, (int64_t)i, v);
}

#define R float
#define SFX(x) x##_f
#define RX_EXP expf
#include "backend/cpu/raster_impl.h"
#undef R
#undef SFX
#undef RX_EXP
#define R double
#define SFX(x) x##_d
#define RX_EXP exp
#include "backend/cpu/raster_impl.h"
#undef R
#undef SFX
#undef RX_EXP

/* ------------------------------------------------------------------ workspace layout */

typedef struct rs_layout {
  size_t table, boxes, tstart, list, acc, total; /* byte offsets; boxes also holds the tile cursors */
  int bins, real64;
} rs_layout;

static size_t al64(size_t b) { return (b + 63) / 64 * 64; }

static rs_layout rs_plan(const mf_graph *g, const mf_node *n) {
  rs_layout L = {0};
  const mf_node *pos = &g->nodes[n->src[0]];
  int64_t N = pos->ne[0], C = n->op == MF_OP_GAUSS_TOPK || n->op == MF_OP_GAUSS_STATS ? 0 : g->nodes[n->src[3]].ne[1];
  int64_t T = (int64_t)((n->ip[MF_RIP_W] + 15) / 16) * ((n->ip[MF_RIP_H] + 15) / 16);
  size_t rs = pos->dtype == MF_F64 ? 8 : 4;
  L.real64 = pos->dtype == MF_F64;
  L.bins = n->op == MF_OP_GAUSS_TOPK || n->ip[MF_RIP_TOPK] < 0;
  size_t off = 0;
  L.table = off; off += al64((size_t)N * (size_t)(5 + C) * rs);
  if (L.bins) {
    L.boxes = off; off += al64((size_t)N * 4 * sizeof(int32_t) + (size_t)T * sizeof(int32_t));
    L.tstart = off; off += al64((size_t)(T + 1) * sizeof(int32_t));
    L.list = off; off += al64((size_t)n->ip[MF_RIP_CAP] * sizeof(int32_t));
  }
  if (n->op == MF_OP_GAUSS_RASTER_BWD) { L.acc = off; off += al64((size_t)MF_RASTER_CHUNKS * (size_t)N * (size_t)(5 + C) * rs); }
  L.total = off;
  return L;
}

size_t mf_cpu_ws_raster(const mf_graph *g, const mf_node *n) {
  if (n->op == MF_OP_GAUSS_STATS) return 0;
  return rs_plan(g, n).total;
}

/* ------------------------------------------------------------------ table and bins */

static int rs_active(const void *mask, mf_dtype mt, int64_t i) { return !mask || mf_ld(mask, mt, i) != 0; }

/* Table rows (cx, cy, A, B, C, f...) and tile boxes of every Gaussian; boxes of inactive or skipped ones are
 * empty. feat may be NULL (C = 0). */
static void rs_table(const mf_node *n, const rs_ctx *x, const mf_node *pos, void *const *src, const void *mask, mf_dtype mt, const void *feat,
                     int C, void *table, int real64, int32_t *boxes) {
  int64_t N = pos->ne[0];
  mf_dtype dt = pos->dtype;
  int W = (int)n->fp[2], H = (int)n->fp[3], stride = 5 + C; /* the full image: centres and tiles in its pixels */
  #pragma omp parallel for schedule(static) if (N > 4096)
  for (int64_t g = 0; g < N; g++) {
    mf_gs_setup s;
    double row[5 + MF_RASTER_MAX_C] = {0};
    int ok = rs_active(mask, mt, g) &&
             mf_gs_setup_one(rs_load(src[0], dt, 2 * g), rs_load(src[0], dt, 2 * g + 1), rs_load(src[1], dt, 2 * g),
                             rs_load(src[1], dt, 2 * g + 1), rs_load(src[2], dt, g), W, H, n->fp[0], n->fp[1], &s);
    if (ok) {
      row[0] = s.cx; row[1] = s.cy; row[2] = s.A; row[3] = s.B; row[4] = s.C;
      for (int c = 0; c < C; c++) row[5 + c] = rs_load(feat, dt, (size_t)g * C + c);
    }
    for (int c = 0; c < stride; c++) {
      if (real64) ((double *)table)[g * stride + c] = row[c];
      else ((float *)table)[g * stride + c] = (float)row[c];
    }
    if (boxes) {
      int32_t *b = boxes + 4 * g;
      if (ok) mf_gs_window_box(&s, x->ox / MF_RASTER_TILE, x->oy / MF_RASTER_TILE, x->TX, x->TY);
      if (ok && mf_gs_tiles(&s)) { b[0] = s.tx0; b[1] = s.tx1; b[2] = s.ty0; b[3] = s.ty1; }
      else { b[0] = 0; b[1] = -1; b[2] = 0; b[3] = -1; }
    }
  }
}

/* Counting sort of the Gaussian-tile pairs by tile, Gaussians in id order within a tile. Returns the pair
 * count, or -1 (nothing written past the list) when it exceeds cap; *total gets the count either way. */
static int64_t rs_bin(const int32_t *boxes, int64_t N, int TX, int T, int32_t cap, int32_t *cursor, int32_t *tstart, int32_t *list) {
  int64_t total = 0;
  for (int64_t g = 0; g < N; g++) {
    const int32_t *b = boxes + 4 * g;
    if (b[0] <= b[1] && b[2] <= b[3]) total += (int64_t)(b[1] - b[0] + 1) * (b[3] - b[2] + 1);
  }
  if (total > cap) return -1 - total;
  memset(cursor, 0, (size_t)T * sizeof *cursor);
  for (int64_t g = 0; g < N; g++) {
    const int32_t *b = boxes + 4 * g;
    for (int ty = b[2]; ty <= b[3]; ty++)
      for (int tx = b[0]; tx <= b[1]; tx++) cursor[ty * TX + tx]++;
  }
  tstart[0] = 0;
  for (int t = 0; t < T; t++) { tstart[t + 1] = tstart[t] + cursor[t]; cursor[t] = tstart[t]; }
  for (int64_t g = 0; g < N; g++) {
    const int32_t *b = boxes + 4 * g;
    for (int ty = b[2]; ty <= b[3]; ty++)
      for (int tx = b[0]; tx <= b[1]; tx++) list[cursor[ty * TX + tx]++] = (int32_t)g;
  }
  return total;
}

/* Fills the context and the table (and bins when the node selects itself). Returns 0, or -1 after reporting
 * an overflow of the pair capacity. */
static int rs_setup(const mf_kctx *k, const mf_node *n, void *const *src, void *ws, rs_ctx *x, rs_layout *L) {
  const mf_node *pos = mf_src(k, n, 0);
  int hasfeat = n->op == MF_OP_GAUSS_RASTER || n->op == MF_OP_GAUSS_RASTER_BWD;
  *L = rs_plan(k->g, n);
  x->W = n->ip[MF_RIP_W]; x->H = n->ip[MF_RIP_H]; x->K = n->ip[MF_RIP_K];
  x->C = hasfeat ? (int)mf_src(k, n, 3)->ne[1] : 0;
  x->TX = (x->W + 15) / 16; x->TY = (x->H + 15) / 16; x->T = x->TX * x->TY;
  x->N = (int)pos->ne[0];
  x->stride = 5 + x->C;
  x->ox = x->oy = 0;
  if (n->ip[MF_RIP_ORIGIN] >= 0) {
    const int32_t *org = src[n->ip[MF_RIP_ORIGIN]];
    if (org[0] < 0 || org[1] < 0 || org[0] % MF_RASTER_TILE || org[1] % MF_RASTER_TILE || org[0] > (1 << 21) || org[1] > (1 << 21)) {
      if (k->fault && !k->fault[0])
        snprintf(k->fault, k->fault_len, "%s '%s': window origin (%d, %d): x0 and y0 must be multiples of %d from 0 to 2^21 pixels. "
                 "Its output is NaN", mf_op_name(n->op), n->name, (int)org[0], (int)org[1], MF_RASTER_TILE);
      return -1;
    }
    x->ox = org[0];
    x->oy = org[1];
  }
  x->Wl = (int)n->fp[2] - x->ox < x->W ? (int)n->fp[2] - x->ox : x->W;
  x->Hl = (int)n->fp[3] - x->oy < x->H ? (int)n->fp[3] - x->oy : x->H;
  int mi = n->ip[MF_RIP_MASK];
  const void *mask = mi >= 0 ? src[mi] : NULL;
  mf_dtype mt = mi >= 0 ? mf_src(k, n, mi)->dtype : MF_F32;
  char *w = ws;
  int32_t *boxes = L->bins ? (int32_t *)(w + L->boxes) : NULL;
  rs_table(n, x, pos, src, mask, mt, hasfeat ? src[3] : NULL, x->C, w + L->table, L->real64, boxes);
  x->tstart = x->list = NULL;
  if (!L->bins) return 0;
  int32_t *tstart = (int32_t *)(w + L->tstart), *list = (int32_t *)(w + L->list);
  int64_t r = rs_bin(boxes, x->N, x->TX, x->T, n->ip[MF_RIP_CAP], boxes + 4 * (size_t)x->N, tstart, list);
  if (r < 0) {
    if (k->fault && !k->fault[0])
      snprintf(k->fault, k->fault_len, "%s '%s': the Gaussians touch %lld tiles in all, more than its capacity of %d Gaussian-tile pairs "
               "(mf_raster_opts.max_pairs); raise max_pairs or lower max_radius. Its output is NaN", mf_op_name(n->op), n->name,
               (long long)(-1 - r), n->ip[MF_RIP_CAP]);
    return -1;
  }
  x->tstart = tstart;
  x->list = list;
  return 0;
}

static void rs_fill_nan(const mf_node *n, void *out) {
  int64_t total = mf_node_numel(n);
  for (int64_t i = 0; i < total; i++) {
    if (n->dtype == MF_I32) ((int32_t *)out)[i] = -1;
    else rs_store(out, n->dtype, (size_t)i, NAN);
  }
}

/* ------------------------------------------------------------------ kernels */

void mf_cpu_gauss_topk(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  rs_ctx x;
  rs_layout L;
  if (rs_setup(k, n, src, ws, &x, &L) < 0) { rs_fill_nan(n, out); return; }
  if (L.real64) run_topk_d(&x, (const double *)((char *)ws + L.table), out);
  else run_topk_f(&x, (const float *)((char *)ws + L.table), out);
}

void mf_cpu_gauss_raster(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  rs_ctx x;
  rs_layout L;
  if (rs_setup(k, n, src, ws, &x, &L) < 0) { rs_fill_nan(n, out); return; }
  const int32_t *topk = n->ip[MF_RIP_TOPK] >= 0 ? src[n->ip[MF_RIP_TOPK]] : NULL;
  if (L.real64) run_raster_d(&x, (const double *)((char *)ws + L.table), topk, out, n->dtype);
  else run_raster_f(&x, (const float *)((char *)ws + L.table), topk, out, n->dtype);
}

/* out [N, 5+C]: d pos (2), d inv_scale (2), d rot, d feat (C) from the chunk sums of (A, B, C, cx, cy, f) */
void mf_cpu_gauss_raster_bwd(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  rs_ctx x;
  rs_layout L;
  if (rs_setup(k, n, src, ws, &x, &L) < 0) { rs_fill_nan(n, out); return; }
  const int32_t *topk = n->ip[MF_RIP_TOPK] >= 0 ? src[n->ip[MF_RIP_TOPK]] : NULL;
  const mf_node *dy = mf_src(k, n, 4), *pos = mf_src(k, n, 0);
  size_t P = (size_t)5 + x.C, rs = L.real64 ? 8 : 4;
  char *acc = (char *)ws + L.acc;
  memset(acc, 0, (size_t)MF_RASTER_CHUNKS * x.N * P * rs);
  if (L.real64) run_bwd_d(&x, (const double *)((char *)ws + L.table), topk, src[4], dy->dtype, (double *)acc);
  else run_bwd_f(&x, (const float *)((char *)ws + L.table), topk, src[4], dy->dtype, (float *)acc);
  int mi = n->ip[MF_RIP_MASK];
  const void *mask = mi >= 0 ? src[mi] : NULL;
  mf_dtype mt = mi >= 0 ? mf_src(k, n, mi)->dtype : MF_F32, dt = pos->dtype;
  int W = (int)n->fp[2], H = (int)n->fp[3]; /* d cx / d pos_x is the full image's width */
  #pragma omp parallel for schedule(static) if (x.N > 4096)
  for (int g = 0; g < x.N; g++) {
    double s[5 + MF_RASTER_MAX_C] = {0}, o[5 + MF_RASTER_MAX_C] = {0};
    for (int ch = 0; ch < MF_RASTER_CHUNKS; ch++)
      for (size_t c = 0; c < P; c++) {
        size_t i = ((size_t)ch * x.N + g) * P + c;
        s[c] += L.real64 ? ((double *)acc)[i] : (double)((float *)acc)[i];
      }
    mf_gs_setup u;
    if (rs_active(mask, mt, g) &&
        mf_gs_setup_one(rs_load(src[0], dt, 2 * (size_t)g), rs_load(src[0], dt, 2 * (size_t)g + 1), rs_load(src[1], dt, 2 * (size_t)g),
                        rs_load(src[1], dt, 2 * (size_t)g + 1), rs_load(src[2], dt, g), W, H, n->fp[0], n->fp[1], &u)) {
      double a2 = u.a * u.a, b2 = u.b * u.b, cs = u.c * u.s, cc = u.c * u.c, ss = u.s * u.s;
      o[0] = s[3] * W; /* d cx / d pos_x = W */
      o[1] = s[4] * H;
      o[2] = u.ga * 2 * u.a * (s[0] * cc + s[1] * cs + s[2] * ss);
      o[3] = u.gb * 2 * u.b * (s[0] * ss - s[1] * cs + s[2] * cc);
      o[4] = s[0] * 2 * (b2 - a2) * cs + s[1] * (a2 - b2) * (cc - ss) + s[2] * 2 * (a2 - b2) * cs;
      for (int c = 0; c < x.C; c++) o[5 + c] = s[5 + c];
    }
    for (size_t c = 0; c < P; c++) rs_store(out, n->dtype, (size_t)g * P + c, o[c]);
  }
}

/* i32 [5]: active, clamped large, clamped small, skipped, pairs (saturating) */
void mf_cpu_gauss_stats(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  const mf_node *pos = mf_src(k, n, 0);
  int mi = n->ip[MF_RIP_MASK];
  const void *mask = mi >= 0 ? src[mi] : NULL;
  mf_dtype mt = mi >= 0 ? mf_src(k, n, mi)->dtype : MF_F32, dt = pos->dtype;
  int64_t N = pos->ne[0], active = 0, large = 0, small = 0, skipped = 0, pairs = 0;
  for (int64_t g = 0; g < N; g++) { /* one thread: an OpenMP reduction would export a lock symbol (clang) */
    if (!rs_active(mask, mt, g)) continue;
    active++;
    mf_gs_setup u;
    if (!mf_gs_setup_one(rs_load(src[0], dt, 2 * g), rs_load(src[0], dt, 2 * g + 1), rs_load(src[1], dt, 2 * g),
                         rs_load(src[1], dt, 2 * g + 1), rs_load(src[2], dt, g), n->ip[MF_RIP_W], n->ip[MF_RIP_H], n->fp[0], n->fp[1], &u)) {
      skipped++;
      continue;
    }
    large += u.clamp_large;
    small += u.clamp_small;
    pairs += mf_gs_tiles(&u);
  }
  int32_t *o = out;
  int64_t v[MF_RSTAT_COUNT] = {active, large, small, skipped, pairs};
  for (int i = 0; i < MF_RSTAT_COUNT; i++) o[i] = v[i] > INT32_MAX ? INT32_MAX : (int32_t)v[i];
}
