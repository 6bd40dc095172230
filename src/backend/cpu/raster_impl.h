/* raster_impl.h — the CPU rasteriser's per-tile loops for one real type, included twice by raster.c
 * (R = float, SFX(x) = x##_f; R = double, SFX(x) = x##_d). Not a header of its own. */

/* Table row of Gaussian g: cx, cy, A, B, C, f[0..C). sigma at pixel (x, y) = (j, i). */
static inline R SFX(sig5)(R cx, R cy, R A, R B, R C, R x, R y) {
  R dx = x - cx, dy = y - cy;
  return (R)0.5 * (A * dx * dx + C * dy * dy) + B * dx * dy;
}
static inline R SFX(sigma)(const R *t, R x, R y) { return SFX(sig5)(t[0], t[1], t[2], t[3], t[4], x, y); }

/* A tile's Gaussians copied out of the table as columns (cx, cy, A, B, C), so that the sigmas of one pixel against
 * all of them are one vectorisable loop; the same values, so the same bits as SFX(sigma). Lists longer than
 * RS_STAGE are selected from the table directly. On the stack: nothing planned. */
#ifndef RS_STAGE
#define RS_STAGE 512
#endif
typedef struct SFX(rs_stage) {
  int L, nseed;                   /* list length (-1: not staged); positions selected at the previous pixel */
  int32_t seed[MF_RASTER_MAX_K], cand[RS_STAGE];
  R cx[RS_STAGE], cy[RS_STAGE], A[RS_STAGE], B[RS_STAGE], C[RS_STAGE], s[RS_STAGE];
} SFX(rs_stage);

/* Insertion of the sigmas s[0..L) of Gaussians ids[0..L) into the sorted top K (wv, wi; n of them so far). The ids
 * of a tile's list ascend (binned in Gaussian order), so a later one ties after every kept one: mf_gs_before
 * reduces to s < kept sigma. Returns the new n. */
static inline int SFX(sel_insert)(const R *s, const int32_t *ids, int L, int K, int n, R *wv, int32_t *wi) {
  int l = 0;
  for (; l < L && n < K; l++) {
    R v = s[l];
    int p = n++;
    while (p > 0 && v < wv[p - 1]) { wv[p] = wv[p - 1]; wi[p] = wi[p - 1]; p--; }
    wv[p] = v;
    wi[p] = ids[l];
  }
  if (l == L) return n;
  R worst = wv[K - 1];
  for (; l < L; l++) {
    R v = s[l];
    if (!(v < worst)) continue;
    int p = K - 1; /* the last one is dropped */
    while (p > 0 && v < wv[p - 1]) { wv[p] = wv[p - 1]; wi[p] = wi[p - 1]; p--; }
    wv[p] = v;
    wi[p] = ids[l];
    worst = wv[K - 1];
  }
  return n;
}

/* The top K Gaussians of list[0..L) (a tile's list: ascending ids) at pixel (x, y) by mf_gs_before order (smallest
 * sigma first): ids in wi, weights exp(-sigma) in wv (the sigmas when !wexp), best first. Returns how many (<= K).
 * One function for every caller that selects, and weights computed as SFX(kept) computes them, so forward and
 * backward agree bit for bit. st: the list staged (st->L == L), or NULL: read from the table. */
static int SFX(select)(const R *table, int stride, const int32_t *list, int L, R x, R y, int K, R *wv, int32_t *wi,
                       SFX(rs_stage) *st, int wexp) {
  int n = 0;
  if (st) {
    R *sg = st->s;
    for (int l = 0; l < L; l++) sg[l] = SFX(sig5)(st->cx[l], st->cy[l], st->A[l], st->B[l], st->C[l], x, y);
    /* The previous pixel's K selected Gaussians bound this pixel's K-th sigma by the largest of their sigmas here,
     * th: a Gaussian whose sigma is above th has K before it and cannot be selected. The candidates (sigma <= th,
     * list order, so ids still ascend) are few more than K, and their insertion is the same as the whole list's. */
    int m = L;
    const int32_t *cand = NULL;
    if (st->nseed == K) {
      R th = sg[st->seed[0]];
      for (int k = 1; k < K; k++) th = sg[st->seed[k]] > th ? sg[st->seed[k]] : th;
      if (th == th) {
        m = 0;
        for (int l = 0; l < L; l++) { st->cand[m] = l; m += sg[l] <= th; }
        cand = st->cand;
      }
    }
    int32_t wl[MF_RASTER_MAX_K];
    n = 0;
    int c = 0;
    for (; c < m && n < K; c++) {
      int l = cand ? cand[c] : c;
      R v = sg[l];
      int p = n++;
      while (p > 0 && v < wv[p - 1]) { wv[p] = wv[p - 1]; wl[p] = wl[p - 1]; p--; }
      wv[p] = v;
      wl[p] = l;
    }
    for (; c < m; c++) {
      int l = cand ? cand[c] : c;
      R v = sg[l];
      if (!(v < wv[K - 1])) continue;
      int p = K - 1;
      while (p > 0 && v < wv[p - 1]) { wv[p] = wv[p - 1]; wl[p] = wl[p - 1]; p--; }
      wv[p] = v;
      wl[p] = l;
    }
    for (int k = 0; k < n; k++) { wi[k] = list[wl[k]]; st->seed[k] = wl[k]; }
    st->nseed = n;
  } else {
    R sb[64];
    for (int l0 = 0; l0 < L; l0 += 64) {
      int m = L - l0 < 64 ? L - l0 : 64;
      for (int l = 0; l < m; l++) sb[l] = SFX(sigma)(table + (size_t)list[l0 + l] * stride, x, y);
      n = SFX(sel_insert)(sb, list + l0, m, K, n, wv, wi);
    }
  }
  if (wexp)
    for (int k = 0; k < n; k++) wv[k] = RX_EXP(-wv[k]);
  return n;
}

/* Copies tile t's list into st when it fits (st->L = its length), else st->L = -1. */
static inline void SFX(stage_tile)(const rs_ctx *x, const R *table, int t, SFX(rs_stage) *st) {
  int L = x->tstart[t + 1] - x->tstart[t];
  st->nseed = 0;
  if (L > RS_STAGE) { st->L = -1; return; }
  const int32_t *list = x->list + x->tstart[t];
  for (int l = 0; l < L; l++) {
    const R *r = table + (size_t)list[l] * x->stride;
    st->cx[l] = r[0]; st->cy[l] = r[1]; st->A[l] = r[2]; st->B[l] = r[3]; st->C[l] = r[4];
  }
  st->L = L;
}

/* The kept selection of one pixel (ids, -1 padded) with its weights recomputed. */
static inline int SFX(kept)(const R *table, int stride, const int32_t *ids, int K, R x, R y, R *wv, int32_t *wi) {
  int n = 0;
  for (int k = 0; k < K && ids[k] >= 0; k++) {
    wi[n] = ids[k];
    wv[n++] = SFX(sigma)(table + (size_t)ids[k] * stride, x, y);
  }
  for (int k = 0; k < n; k++) wv[k] = RX_EXP(-wv[k]);
  return n;
}

/* colour of one pixel: out[c] = sum_k w_k f_kc / (sum_k w_k + eps); returns the denominator */
static inline R SFX(blend)(const R *table, int stride, int C, int n, const R *wv, const int32_t *wi, R *out) {
  R S = 0;
  for (int k = 0; k < n; k++) S += wv[k];
  S += (R)MF_RASTER_EPS;
  for (int c = 0; c < C; c++) {
    R num = 0;
    for (int k = 0; k < n; k++) num += wv[k] * table[(size_t)wi[k] * stride + 5 + c];
    out[c] = num / S;
  }
  return S;
}

/* One pixel's selection: kept ids (topk != NULL) or selected from its tile's list. */
static inline int SFX(pixel_sel)(const rs_ctx *x, const R *table, const int32_t *topk, int i, int j, R *wv, int32_t *wi,
                                 SFX(rs_stage) *st, int wexp) {
  if (i >= x->Hl || j >= x->Wl) return 0; /* outside the full image (a window at its edge): nothing drawn */
  R px = (R)(j + x->ox), py = (R)(i + x->oy); /* the pixel in the full image's coordinates, as the whole image has it */
  if (topk) return SFX(kept)(table, x->stride, topk + ((size_t)i * x->W + j) * x->K, x->K, px, py, wv, wi);
  int t = (i / MF_RASTER_TILE) * x->TX + j / MF_RASTER_TILE;
  return SFX(select)(table, x->stride, x->list + x->tstart[t], x->tstart[t + 1] - x->tstart[t], px, py, x->K, wv, wi,
                     st->L >= 0 ? st : NULL, wexp);
}

/* gauss_topk: ids of every pixel, [H,W,K], -1 padded */
static void SFX(run_topk)(const rs_ctx *x, const R *table, int32_t *out) {
  #pragma omp parallel for schedule(dynamic, 1)
  for (int t = 0; t < x->T; t++) {
    R wv[MF_RASTER_MAX_K];
    int32_t wi[MF_RASTER_MAX_K];
    SFX(rs_stage) st;
    SFX(stage_tile)(x, table, t, &st);
    int i0 = (t / x->TX) * MF_RASTER_TILE, j0 = (t % x->TX) * MF_RASTER_TILE;
    for (int i = i0; i < i0 + MF_RASTER_TILE && i < x->H; i++)
      for (int j = j0; j < j0 + MF_RASTER_TILE && j < x->W; j++) {
        int n = SFX(pixel_sel)(x, table, NULL, i, j, wv, wi, &st, 0); /* ids only: no exp */
        int32_t *o = out + ((size_t)i * x->W + j) * x->K;
        for (int k = 0; k < x->K; k++) o[k] = k < n ? wi[k] : -1;
      }
  }
}

/* gauss_raster: image [C,H,W] */
static void SFX(run_raster)(const rs_ctx *x, const R *table, const int32_t *topk, void *out, mf_dtype dt) {
  size_t HW = (size_t)x->H * x->W;
  #pragma omp parallel for schedule(dynamic, 1)
  for (int t = 0; t < x->T; t++) {
    R wv[MF_RASTER_MAX_K], col[MF_RASTER_MAX_C];
    int32_t wi[MF_RASTER_MAX_K];
    SFX(rs_stage) st;
    st.L = -1;
    if (!topk) SFX(stage_tile)(x, table, t, &st);
    int i0 = (t / x->TX) * MF_RASTER_TILE, j0 = (t % x->TX) * MF_RASTER_TILE;
    for (int i = i0; i < i0 + MF_RASTER_TILE && i < x->H; i++)
      for (int j = j0; j < j0 + MF_RASTER_TILE && j < x->W; j++) {
        int n = SFX(pixel_sel)(x, table, topk, i, j, wv, wi, &st, 1);
        SFX(blend)(table, x->stride, x->C, n, wv, wi, col);
        size_t p = (size_t)i * x->W + j;
        for (int c = 0; c < x->C; c++) rs_store(out, dt, c * HW + p, (double)col[c]);
      }
  }
}

/* gauss_raster_bwd, the pixel part: sums per Gaussian (dA, dB, dC, dcx, dcy, df[C]) into acc, one block
 * of N rows per chunk of tiles; chunk c covers tiles [c T / CHUNKS, (c+1) T / CHUNKS), in tile order */
static void SFX(run_bwd)(const rs_ctx *x, const R *table, const int32_t *topk, const void *dyp, mf_dtype dt, R *acc) {
  size_t HW = (size_t)x->H * x->W, P = (size_t)5 + x->C;
  #pragma omp parallel for schedule(dynamic, 1)
  for (int ch = 0; ch < MF_RASTER_CHUNKS; ch++) {
    R *a = acc + (size_t)ch * x->N * P;
    int t0 = (int)((int64_t)x->T * ch / MF_RASTER_CHUNKS), t1 = (int)((int64_t)x->T * (ch + 1) / MF_RASTER_CHUNKS);
    R wv[MF_RASTER_MAX_K], col[MF_RASTER_MAX_C], dyc[MF_RASTER_MAX_C];
    int32_t wi[MF_RASTER_MAX_K];
    SFX(rs_stage) st;
    st.L = -1;
    for (int t = t0; t < t1; t++) {
      if (!topk) SFX(stage_tile)(x, table, t, &st);
      int i0 = (t / x->TX) * MF_RASTER_TILE, j0 = (t % x->TX) * MF_RASTER_TILE;
      for (int i = i0; i < i0 + MF_RASTER_TILE && i < x->H; i++)
        for (int j = j0; j < j0 + MF_RASTER_TILE && j < x->W; j++) {
          int n = SFX(pixel_sel)(x, table, topk, i, j, wv, wi, &st, 1);
          if (!n) continue;
          R S = SFX(blend)(table, x->stride, x->C, n, wv, wi, col), iS = (R)1 / S;
          size_t p = (size_t)i * x->W + j;
          R q = 0;
          for (int c = 0; c < x->C; c++) { dyc[c] = (R)rs_load(dyp, dt, c * HW + p); q += dyc[c] * col[c]; }
          for (int k = 0; k < n; k++) {
            const R *tg = table + (size_t)wi[k] * x->stride;
            R *ag = a + (size_t)wi[k] * P;
            R ddx = (R)(j + x->ox) - tg[0], ddy = (R)(i + x->oy) - tg[1], w = wv[k], df = 0;
            for (int c = 0; c < x->C; c++) {
              df += dyc[c] * tg[5 + c];
              ag[5 + c] += dyc[c] * w * iS;
            }
            R dsig = -w * (df - q) * iS; /* dL/dsigma = -w dL/dw */
            ag[0] += dsig * (R)0.5 * ddx * ddx;
            ag[1] += dsig * ddx * ddy;
            ag[2] += dsig * (R)0.5 * ddy * ddy;
            ag[3] -= dsig * (tg[2] * ddx + tg[3] * ddy);
            ag[4] -= dsig * (tg[3] * ddx + tg[4] * ddy);
          }
        }
    }
  }
}
