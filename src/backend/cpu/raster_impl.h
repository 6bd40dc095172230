/* raster_impl.h — the CPU rasteriser's per-tile loops for one real type, included twice by raster.c
 * (R = float, SFX(x) = x##_f; R = double, SFX(x) = x##_d). Not a header of its own. */

/* Table row of Gaussian g: cx, cy, A, B, C, f[0..C). sigma at pixel (x, y) = (j, i). */
static inline R SFX(sigma)(const R *t, R x, R y) {
  R dx = x - t[0], dy = y - t[1];
  return (R)0.5 * (t[2] * dx * dx + t[4] * dy * dy) + t[3] * dx * dy;
}

/* The top K Gaussians of list[0..L) at pixel (x, y) by mf_gs_before order (smallest sigma first): ids in wi,
 * weights exp(-sigma) in wv, best first. Returns how many (<= K). One function for every caller that
 * selects, and weights computed as SFX(kept) computes them, so forward and backward agree bit for bit. */
__attribute__((noinline)) static int SFX(select)(const R *table, int stride, const int32_t *list, int L, R x, R y, int K, R *wv,
                                                 int32_t *wi) {
  int n = 0;
  for (int l = 0; l < L; l++) {
    int32_t g = list[l];
    R s = SFX(sigma)(table + (size_t)g * stride, x, y);
    if (n == K && !mf_gs_before(s, g, wv[K - 1], wi[K - 1])) continue;
    int p = n < K ? n++ : K - 1; /* the slot freed (or the last one, dropped) */
    while (p > 0 && mf_gs_before(s, g, wv[p - 1], wi[p - 1])) { wv[p] = wv[p - 1]; wi[p] = wi[p - 1]; p--; }
    wv[p] = s;
    wi[p] = g;
  }
  for (int k = 0; k < n; k++) wv[k] = RX_EXP(-wv[k]);
  return n;
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
static inline int SFX(pixel_sel)(const rs_ctx *x, const R *table, const int32_t *topk, int i, int j, R *wv, int32_t *wi) {
  if (i >= x->Hl || j >= x->Wl) return 0; /* outside the full image (a window at its edge): nothing drawn */
  R px = (R)(j + x->ox), py = (R)(i + x->oy); /* the pixel in the full image's coordinates, as the whole image has it */
  if (topk) return SFX(kept)(table, x->stride, topk + ((size_t)i * x->W + j) * x->K, x->K, px, py, wv, wi);
  int t = (i / MF_RASTER_TILE) * x->TX + j / MF_RASTER_TILE;
  return SFX(select)(table, x->stride, x->list + x->tstart[t], x->tstart[t + 1] - x->tstart[t], px, py, x->K, wv, wi);
}

/* gauss_topk: ids of every pixel, [H,W,K], -1 padded */
static void SFX(run_topk)(const rs_ctx *x, const R *table, int32_t *out) {
  #pragma omp parallel for schedule(dynamic, 1)
  for (int t = 0; t < x->T; t++) {
    R wv[MF_RASTER_MAX_K];
    int32_t wi[MF_RASTER_MAX_K];
    int i0 = (t / x->TX) * MF_RASTER_TILE, j0 = (t % x->TX) * MF_RASTER_TILE;
    for (int i = i0; i < i0 + MF_RASTER_TILE && i < x->H; i++)
      for (int j = j0; j < j0 + MF_RASTER_TILE && j < x->W; j++) {
        int n = SFX(pixel_sel)(x, table, NULL, i, j, wv, wi);
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
    int i0 = (t / x->TX) * MF_RASTER_TILE, j0 = (t % x->TX) * MF_RASTER_TILE;
    for (int i = i0; i < i0 + MF_RASTER_TILE && i < x->H; i++)
      for (int j = j0; j < j0 + MF_RASTER_TILE && j < x->W; j++) {
        int n = SFX(pixel_sel)(x, table, topk, i, j, wv, wi);
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
    for (int t = t0; t < t1; t++) {
      int i0 = (t / x->TX) * MF_RASTER_TILE, j0 = (t % x->TX) * MF_RASTER_TILE;
      for (int i = i0; i < i0 + MF_RASTER_TILE && i < x->H; i++)
        for (int j = j0; j < j0 + MF_RASTER_TILE && j < x->W; j++) {
          int n = SFX(pixel_sel)(x, table, topk, i, j, wv, wi);
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
