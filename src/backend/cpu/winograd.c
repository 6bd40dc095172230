/* winograd.c (CPU) — 3x3 stride-1 convolutions by Winograd's minimal filtering, F(m x m, 3 x 3) with m = 4
 * (tiles of 6 x 6, 36 multiplications per 16 outputs instead of 144) or m = 2 (4 x 4 tiles, 16 per 4): forward,
 * backward-data and backward-weights, computed in f32 (operands stored in f32, bf16 or f16 are converted while they
 * are gathered, and the output rounded once as it is scattered), for the conv nodes conv_choice.c puts here.
 *
 * Per tile t of the output and input channel c, V = B^T d B (d: the al x al input patch, al = m + 2); per output
 * channel k and input channel c, U = G g G^T (g: the 3 x 3 kernel); then for each of the al*al positions ab one
 * GEMM, M_ab [Co, tiles] = U_ab [Co, Ci] . V_ab [Ci, tiles], and each output tile is A^T M A. Backward-data is the
 * same forward pass over dy with the flipped, transposed kernel and pad 2 - p. Backward-weights is the adjoint
 * of the forward pass: dU_ab [Co, Ci] = sum over tiles of (A dY A^T)_ab [Co, tiles] . V_ab^T [tiles, Ci], then
 * dw = G^T dU G, so the gradient is the exact derivative of what the forward computes.
 *
 * Tiles go in chunks (wino_geo.tc, fixed by the shapes so the workspace is known when planning); inside a
 * chunk the transforms run on VL tiles at once (one vector lane per tile) and the al*al GEMMs are spread over
 * the OpenMP threads, each a single-threaded OpenBLAS call, so the result does not depend on the thread count.
 * Output channels go in blocks of cob (wino_geo.cob). Workspace: one block's U (or dU) [al*al][cob][Ci] and a chunk's
 * V [al*al][Ci][tc] and one block's M [al*al][cob][tc]. */
#include "backend/cpu/cpu.h"
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { VL = 8 };                      /* tiles (vector lanes) per transform */
#define WINO_CHUNK_BYTES (8u << 20)   /* a chunk's V + M: about this much */
#define WINO_U_BYTES ((int64_t)8 << 20) /* a block's U (dU): at most about this much */

typedef struct wino_geo {
  int m, al;                          /* output tile side, input tile side (m + 2) */
  int pad;                            /* zero padding on every side of the tiled input */
  int64_t N, Ci, Hi, Wi;              /* the tiled input: x (fwd, bwd weight) or dy (bwd data) */
  int64_t Co, Ho, Wo;                 /* the output of the forward pass tiled: y, or dx (bwd data); dy (bwd weight) */
  int64_t th, tw, T, tc;              /* tiles per column and row of an image, tiles in all, tiles per chunk */
  int64_t cob, nblk;                  /* output channels per block (U and M hold one block), blocks */
  mf_dtype t_in, t_w, t_b, t_dy, t_out; /* how the tiled input, w, the bias, dy (bwd weight) and the output are stored */
  size_t o_u, o_v, o_m, total;        /* workspace offsets (bytes) and size */
} wino_geo;

/* ------------------------------------------------------------------ which nodes, which tile */

/* MEMFIT_WINOGRAD: 0 / off never, 2 F(2x2,3x3), 4 (or unset) F(4x4,3x3) */
static int wino_m(void) {
  const char *e = getenv("MEMFIT_WINOGRAD");
  if (!e || !*e) return 4;
  if (!strcmp(e, "0") || !strcmp(e, "off")) return 0;
  return atoi(e) == 2 ? 2 : 4;
}

static void wino_geometry(const mf_graph *g, const mf_node *n, int m, wino_geo *w) {
  const mf_node *s0 = &g->nodes[n->src[0]], *s1 = &g->nodes[n->src[1]];
  const mf_node *x = n->op == MF_OP_CONV2D_BWD_DATA ? n : s0;           /* x [N,C,H,W] */
  const mf_node *y = n->op == MF_OP_CONV2D ? n : n->op == MF_OP_CONV2D_BWD_DATA ? s0 : s1; /* y [N,OC,OH,OW] */
  int p = mf_conv_cfg_of(n).pt;
  w->t_in = s0->dtype;
  w->t_w = n->op == MF_OP_CONV2D_BWD_WEIGHT ? MF_F32 : s1->dtype;
  w->t_b = n->op == MF_OP_CONV2D && n->nsrc > 2 ? g->nodes[n->src[2]].dtype : MF_F32;
  w->t_dy = n->op == MF_OP_CONV2D_BWD_WEIGHT ? s1->dtype : MF_F32;
  w->t_out = n->dtype;
  w->m = m;
  w->al = m + 2;
  w->N = x->ne[0];
  if (n->op == MF_OP_CONV2D_BWD_DATA) { /* a forward pass from dy to dx */
    w->Ci = y->ne[1]; w->Hi = y->ne[2]; w->Wi = y->ne[3];
    w->Co = x->ne[1]; w->Ho = x->ne[2]; w->Wo = x->ne[3];
    w->pad = 2 - p;
  } else {
    w->Ci = x->ne[1]; w->Hi = x->ne[2]; w->Wi = x->ne[3];
    w->Co = y->ne[1]; w->Ho = y->ne[2]; w->Wo = y->ne[3];
    w->pad = p;
  }
  w->th = (w->Ho + m - 1) / m;
  w->tw = (w->Wo + m - 1) / m;
  w->T = w->N * w->th * w->tw;
  int64_t aa = (int64_t)w->al * w->al;
  /* U (dU) of all output channels would be aa*Co*Ci floats (37.7 MB at 512 x 512): blocks of output channels keep
   * it under WINO_U_BYTES (so Winograd's workspace stays near the GEMM algorithms'); a block's U is made again for
   * each chunk of tiles, and V for each block in backward-weights (cheap next to the GEMMs: 4 MiB blocks cost the
   * 512-channel layers of ResNet-18 up to 1.6x, 8 MiB none measurable) */
  int64_t u_all = aa * w->Co * w->Ci * (int64_t)sizeof(float), nb = (u_all + WINO_U_BYTES - 1) / WINO_U_BYTES;
  int64_t cob = (w->Co + nb - 1) / nb;   /* blocks of equal size, a multiple of VL rows */
  cob = (cob + VL - 1) / VL * VL;
  if (cob >= w->Co) cob = w->Co;
  w->cob = cob;
  w->nblk = (w->Co + cob - 1) / cob;
  int64_t per_tile = aa * (w->Ci + cob) * (int64_t)sizeof(float);
  int64_t tc = (int64_t)WINO_CHUNK_BYTES / per_tile / VL * VL, tall = (w->T + VL - 1) / VL * VL;
  if (tc < 64) tc = 64;
  if (tc > tall) tc = tall;
  w->tc = tc;
  size_t o = 0;
  w->o_u = o; o += ((size_t)aa * cob * w->Ci * sizeof(float) + 63) / 64 * 64;
  w->o_v = o; o += ((size_t)aa * w->Ci * tc * sizeof(float) + 63) / 64 * 64;
  w->o_m = o; o += ((size_t)aa * cob * tc * sizeof(float) + 63) / 64 * 64;
  w->total = o;
}

int mf_cpu_wino_takes(const mf_graph *g, const mf_node *n) {
  if (n->op != MF_OP_CONV2D && n->op != MF_OP_CONV2D_BWD_DATA && n->op != MF_OP_CONV2D_BWD_WEIGHT) return 0;
  int m = wino_m();
  /* stored in f32, bf16 or f16 (converted while gathered and scattered); computed in f32 */
  if (!m || (n->dtype != MF_F32 && n->dtype != MF_BF16 && n->dtype != MF_F16)) return 0;
  for (int i = 0; i < n->nsrc; i++) {
    mf_dtype t = g->nodes[n->src[i]].dtype;
    if (t != MF_F32 && t != MF_BF16 && t != MF_F16) return 0;
  }
  const mf_node *w = n->op == MF_OP_CONV2D_BWD_WEIGHT ? n : &g->nodes[n->src[1]];
  mf_conv_cfg cf = mf_conv_cfg_of(n);
  if (w->ne[2] != 3 || w->ne[3] != 3 || cf.stride != 1 || mf_conv_sw(&cf) != 1 || cf.groups != 1 || !mf_conv_cfg_plain(&cf) ||
      cf.pt > 2)
    return 0;
  /* few channels on either side: the GEMMs are too thin to win back the transforms */
  if (w->ne[0] < 16 || w->ne[1] < 16) return 0;
  return m;
}

/* The tile side a node runs with: the one recorded when it was put on Winograd (mf_cpu_wino_tile), so a
 * MEMFIT_WINOGRAD changed after planning changes neither its workspace nor its kernel; a node not (yet) put
 * there: what _takes says now. */
static int wino_tile_of(const mf_graph *g, const mf_node *n) {
  if (mf_cpu_conv_on_wino(n)) return n->impl_threads == 2 || n->impl_threads == 4 ? n->impl_threads : 0;
  return mf_cpu_wino_takes(g, n);
}

void mf_cpu_wino_tile(const mf_graph *g, mf_node *n) {
  n->impl_threads = (int16_t)mf_cpu_wino_takes(g, n);
}

size_t mf_cpu_wino_ws(const mf_graph *g, const mf_node *n) {
  int m = wino_tile_of(g, n);
  if (!m) return 0;
  wino_geo w;
  wino_geometry(g, n, m, &w);
  return w.total;
}

/* ------------------------------------------------------------------ the transforms, VL tiles at a time
 * s: al (or 3, m) lane vectors VL floats apart at stride ss; o likewise at stride os. */

/* V = B^T d (one dimension) */
MF_CPU_INLINE void bt_1d(int m, const float *s, int ss, float *o, int os) {
  for (int l = 0; l < VL; l++) {
    if (m == 4) {
      float d0 = s[l], d1 = s[ss + l], d2 = s[2 * ss + l], d3 = s[3 * ss + l], d4 = s[4 * ss + l], d5 = s[5 * ss + l];
      o[l] = 4 * d0 - 5 * d2 + d4;
      o[os + l] = -4 * (d1 + d2) + (d3 + d4);
      o[2 * os + l] = 4 * (d1 - d2) + (d4 - d3);
      o[3 * os + l] = 2 * (d3 - d1) + (d4 - d2);
      o[4 * os + l] = 2 * (d1 - d3) + (d4 - d2);
      o[5 * os + l] = 4 * d1 - 5 * d3 + d5;
    } else {
      float d0 = s[l], d1 = s[ss + l], d2 = s[2 * ss + l], d3 = s[3 * ss + l];
      o[l] = d0 - d2;
      o[os + l] = d1 + d2;
      o[2 * os + l] = d2 - d1;
      o[3 * os + l] = d1 - d3;
    }
  }
}

/* y = A^T M (one dimension: al values to m) */
MF_CPU_INLINE void at_1d(int m, const float *s, int ss, float *o, int os) {
  for (int l = 0; l < VL; l++) {
    if (m == 4) {
      float m0 = s[l], m1 = s[ss + l], m2 = s[2 * ss + l], m3 = s[3 * ss + l], m4 = s[4 * ss + l], m5 = s[5 * ss + l];
      float a = m1 + m2, b = m1 - m2, c = m3 + m4, d = m3 - m4;
      o[l] = m0 + a + c;
      o[os + l] = b + 2 * d;
      o[2 * os + l] = a + 4 * c;
      o[3 * os + l] = b + 8 * d + m5;
    } else {
      float m0 = s[l], m1 = s[ss + l], m2 = s[2 * ss + l], m3 = s[3 * ss + l];
      o[l] = m0 + m1 + m2;
      o[os + l] = m1 - m2 - m3;
    }
  }
}

/* Z = A dy (one dimension: m values to al), the adjoint of at_1d */
MF_CPU_INLINE void a_1d(int m, const float *s, int ss, float *o, int os) {
  for (int l = 0; l < VL; l++) {
    if (m == 4) {
      float y0 = s[l], y1 = s[ss + l], y2 = s[2 * ss + l], y3 = s[3 * ss + l];
      float e = y0 + y2, f = y1 + y3, p = y0 + 4 * y2, q = 2 * y1 + 8 * y3;
      o[l] = y0;
      o[os + l] = e + f;
      o[2 * os + l] = e - f;
      o[3 * os + l] = p + q;
      o[4 * os + l] = p - q;
      o[5 * os + l] = y3;
    } else {
      float y0 = s[l], y1 = s[ss + l];
      o[l] = y0;
      o[os + l] = y0 + y1;
      o[2 * os + l] = y0 - y1;
      o[3 * os + l] = -y1;
    }
  }
}

/* U = G g (one dimension: 3 values to al), scaled by sc (24 for m = 4, 2 for m = 2: integer coefficients;
 * the 2-D transform divides by sc*sc once at the end) */
MF_CPU_INLINE void g_1d(int m, const float *s, int ss, float *o, int os) {
  for (int l = 0; l < VL; l++) {
    float g0 = s[l], g1 = s[ss + l], g2 = s[2 * ss + l];
    if (m == 4) {
      o[l] = 6 * g0;
      o[os + l] = -4 * (g0 + g1 + g2);
      o[2 * os + l] = -4 * (g0 - g1 + g2);
      o[3 * os + l] = g0 + 2 * g1 + 4 * g2;
      o[4 * os + l] = g0 - 2 * g1 + 4 * g2;
      o[5 * os + l] = 24 * g2;
    } else {
      o[l] = 2 * g0;
      o[os + l] = g0 + g1 + g2;
      o[2 * os + l] = g0 - g1 + g2;
      o[3 * os + l] = 2 * g2;
    }
  }
}

/* dg = G^T dU (one dimension: al values to 3), scaled like g_1d */
MF_CPU_INLINE void gt_1d(int m, const float *s, int ss, float *o, int os) {
  for (int l = 0; l < VL; l++) {
    if (m == 4) {
      float u0 = s[l], u1 = s[ss + l], u2 = s[2 * ss + l], u3 = s[3 * ss + l], u4 = s[4 * ss + l], u5 = s[5 * ss + l];
      o[l] = 6 * u0 - 4 * (u1 + u2) + (u3 + u4);
      o[os + l] = 4 * (u2 - u1) + 2 * (u3 - u4);
      o[2 * os + l] = 4 * ((u3 + u4) - (u1 + u2)) + 24 * u5;
    } else {
      float u0 = s[l], u1 = s[ss + l], u2 = s[2 * ss + l], u3 = s[3 * ss + l];
      o[l] = 2 * u0 + (u1 + u2);
      o[os + l] = u1 - u2;
      o[2 * os + l] = (u1 + u2) + 2 * u3;
    }
  }
}

/* ------------------------------------------------------------------ per-group steps (VL tiles or VL kernels) */

/* element i of p stored as t, in f32; and stored back */
MF_CPU_INLINE float ldf(const void *p, mf_dtype t, int64_t i) {
  return t == MF_F32 ? ((const float *)p)[i] : t == MF_BF16 ? mf_bf16_to_f32(((const uint16_t *)p)[i]) : mf_f16_to_f32(((const uint16_t *)p)[i]);
}
MF_CPU_INLINE void stf(void *p, mf_dtype t, int64_t i, float v) {
  if (t == MF_F32) ((float *)p)[i] = v;
  else if (t == MF_BF16) ((uint16_t *)p)[i] = mf_f32_to_bf16(v);
  else ((uint16_t *)p)[i] = mf_f32_to_f16(v);
}

/* where lane l's tile starts in the tiled input / output: image, first row, first column (T: no tile) */
typedef struct lane_at { int64_t n[VL], r0[VL], c0[VL]; int live[VL]; } lane_at;

static void lanes_locate(const wino_geo *w, int64_t t0, lane_at *a) {
  int64_t per = w->th * w->tw;
  for (int l = 0; l < VL; l++) {
    int64_t t = t0 + l;
    a->live[l] = t < w->T;
    if (!a->live[l]) { a->n[l] = a->r0[l] = a->c0[l] = 0; continue; }
    int64_t r = t % per;
    a->n[l] = t / per;
    a->r0[l] = r / w->tw * w->m;
    a->c0[l] = r % w->tw * w->m;
  }
}

/* V[ab][c][j0 .. j0+VL) = B^T d B for the VL tiles starting at chunk column j0 (tiles t0 ..), channel c of x */
MF_CPU_INLINE void input_group_m(const int m, const wino_geo *w, const void *x, float *V, int64_t c, int64_t j0, const lane_at *a) {
  const int al = m + 2;
  float d[6 * 6 * VL], t[6 * 6 * VL];
  for (int l = 0; l < VL; l++) {
    int64_t r0 = a->r0[l] - w->pad, c0 = a->c0[l] - w->pad;
    int64_t img = (a->n[l] * w->Ci + c) * w->Hi * w->Wi;
    int inside = a->live[l] && r0 >= 0 && c0 >= 0 && r0 + al <= w->Hi && c0 + al <= w->Wi;
    if (inside && w->t_in == MF_F32) {
      const float *p = (const float *)x + img + r0 * w->Wi + c0;
      for (int i = 0; i < al; i++)
        for (int j = 0; j < al; j++) d[(i * al + j) * VL + l] = p[i * w->Wi + j];
      continue;
    }
    for (int i = 0; i < al; i++)
      for (int j = 0; j < al; j++) {
        int64_t r = r0 + i, cc = c0 + j;
        d[(i * al + j) * VL + l] =
            a->live[l] && r >= 0 && r < w->Hi && cc >= 0 && cc < w->Wi ? ldf(x, w->t_in, img + r * w->Wi + cc) : 0.0f;
      }
  }
  for (int j = 0; j < al; j++) bt_1d(m, d + j * VL, al * VL, t + j * VL, al * VL);   /* columns */
  for (int i = 0; i < al; i++) bt_1d(m, t + i * al * VL, VL, d + i * al * VL, VL);   /* rows */
  for (int ab = 0; ab < al * al; ab++) memcpy(V + ((int64_t)ab * w->Ci + c) * w->tc + j0, d + ab * VL, VL * sizeof(float));
}

/* y[n][k][...] (+ bias) = A^T M A for the VL tiles of chunk column j0, output channel k */
MF_CPU_INLINE void output_group_m(const int m, const wino_geo *w, const float *M, void *y, const void *bias, int64_t k, int64_t j0,
                                     const lane_at *a) {
  const int64_t rows = w->nblk > 1 && k / w->cob == w->nblk - 1 ? w->Co - (w->nblk - 1) * w->cob : w->cob, kl = k % w->cob;
  const int al = m + 2;
  float s[6 * 6 * VL], t[6 * 6 * VL];
  for (int ab = 0; ab < al * al; ab++) memcpy(s + ab * VL, M + ((int64_t)ab * rows + kl) * w->tc + j0, VL * sizeof(float));
  for (int j = 0; j < al; j++) at_1d(m, s + j * VL, al * VL, t + j * VL, al * VL);   /* columns: [m][al] */
  for (int i = 0; i < m; i++) at_1d(m, t + i * al * VL, VL, s + i * m * VL, VL);     /* rows: [m][m] */
  float b = bias ? ldf(bias, w->t_b, k) : 0.0f;
  for (int l = 0; l < VL; l++) {
    if (!a->live[l]) continue;
    int64_t img = (a->n[l] * w->Co + k) * w->Ho * w->Wo;
    for (int i = 0; i < m && a->r0[l] + i < w->Ho; i++)
      for (int j = 0; j < m && a->c0[l] + j < w->Wo; j++)
        stf(y, w->t_out, img + (a->r0[l] + i) * w->Wo + a->c0[l] + j, s[(i * m + j) * VL + l] + b);
  }
}

/* M[ab][k][j0 ..) = A dY A^T for the VL tiles of chunk column j0, channel k of dy (bwd weight) */
MF_CPU_INLINE void dy_group_m(const int m, const wino_geo *w, const void *dy, float *M, int64_t k, int64_t j0, const lane_at *a) {
  const int al = m + 2;
  const int64_t rows = w->nblk > 1 && k / w->cob == w->nblk - 1 ? w->Co - (w->nblk - 1) * w->cob : w->cob, kl = k % w->cob;
  float s[6 * 6 * VL], t[6 * 6 * VL];
  for (int l = 0; l < VL; l++) {
    int64_t img = (a->n[l] * w->Co + k) * w->Ho * w->Wo;
    for (int i = 0; i < m; i++)
      for (int j = 0; j < m; j++) {
        int64_t r = a->r0[l] + i, c = a->c0[l] + j;
        s[(i * m + j) * VL + l] = a->live[l] && r < w->Ho && c < w->Wo ? ldf(dy, w->t_dy, img + r * w->Wo + c) : 0.0f;
      }
  }
  for (int j = 0; j < m; j++) a_1d(m, s + j * VL, m * VL, t + j * VL, m * VL);         /* columns: [al][m] */
  for (int i = 0; i < al; i++) a_1d(m, t + i * m * VL, VL, s + i * al * VL, VL);       /* rows: [al][al] */
  for (int ab = 0; ab < al * al; ab++) memcpy(M + ((int64_t)ab * rows + kl) * w->tc + j0, s + ab * VL, VL * sizeof(float));
}

/* U[ab][q0 .. q0+VL) = G g G^T for the kernels q = (k - co0)*Ci + c of output channels k = co0 .. of the block: rows of
 * w (forward) or, for bwd data, the flipped, transposed kernel (w [OC][C] read as [Ci][Co]); nq kernels in the block */
MF_CPU_INLINE void kernel_group_m(const int m, const wino_geo *w, const void *wt, float *U, int64_t q0, int64_t nq, int64_t co0,
                                  int flip) {
  const int al = m + 2;
  const float inv = m == 4 ? 1.0f / 576.0f : 0.25f;
  float s[6 * 6 * VL], t[6 * 6 * VL];
  for (int l = 0; l < VL; l++) {
    int64_t q = q0 + l;
    int64_t g = q >= nq ? -1 : flip ? ((q % w->Ci) * w->Co + co0 + q / w->Ci) * 9 : (co0 * w->Ci + q) * 9;
    for (int i = 0; i < 3; i++)
      for (int j = 0; j < 3; j++) s[(i * 3 + j) * VL + l] = g < 0 ? 0.0f : ldf(wt, w->t_w, g + (flip ? (2 - i) * 3 + 2 - j : i * 3 + j));
  }
  for (int j = 0; j < 3; j++) g_1d(m, s + j * VL, 3 * VL, t + j * VL, 3 * VL);         /* columns: [al][3] */
  for (int i = 0; i < al; i++) g_1d(m, t + i * 3 * VL, VL, s + i * al * VL, VL);       /* rows: [al][al] */
  int64_t n = nq - q0 < VL ? nq - q0 : VL;
  for (int ab = 0; ab < al * al; ab++)
    for (int l = 0; l < n; l++) U[(int64_t)ab * nq + q0 + l] = s[ab * VL + l] * inv;
}

/* dw[q0 .. q0+VL) = G^T dU G for q = k*Ci + c */
MF_CPU_INLINE void dkernel_group_m(const int m, const wino_geo *w, const float *dU, void *dw, int64_t off, int64_t q0, int64_t nq) {
  const int al = m + 2;
  const float inv = m == 4 ? 1.0f / 576.0f : 0.25f;
  float s[6 * 6 * VL], t[6 * 6 * VL];
  int64_t n = nq - q0 < VL ? nq - q0 : VL;
  for (int ab = 0; ab < al * al; ab++)
    for (int l = 0; l < VL; l++) s[ab * VL + l] = l < n ? dU[(int64_t)ab * nq + q0 + l] : 0.0f;
  for (int j = 0; j < al; j++) gt_1d(m, s + j * VL, al * VL, t + j * VL, al * VL);     /* columns: [3][al] */
  for (int i = 0; i < 3; i++) gt_1d(m, t + i * al * VL, VL, s + i * 3 * VL, VL);       /* rows: [3][3] */
  for (int l = 0; l < n; l++)
    for (int e = 0; e < 9; e++) stf(dw, w->t_out, off + (q0 + l) * 9 + e, s[e * VL + l] * inv);
}

/* m as a constant, so each tile size gets its own unrolled code */
MF_CPU_INLINE void input_group_body(const wino_geo *w, const void *x, float *V, int64_t c, int64_t j0, const lane_at *a) {
  if (w->m == 4) input_group_m(4, w, x, V, c, j0, a);
  else input_group_m(2, w, x, V, c, j0, a);
}
MF_CPU_INLINE void output_group_body(const wino_geo *w, const float *M, void *y, const void *bias, int64_t k, int64_t j0,
                                     const lane_at *a) {
  if (w->m == 4) output_group_m(4, w, M, y, bias, k, j0, a);
  else output_group_m(2, w, M, y, bias, k, j0, a);
}
MF_CPU_INLINE void dy_group_body(const wino_geo *w, const void *dy, float *M, int64_t k, int64_t j0, const lane_at *a) {
  if (w->m == 4) dy_group_m(4, w, dy, M, k, j0, a);
  else dy_group_m(2, w, dy, M, k, j0, a);
}
MF_CPU_INLINE void kernel_group_body(const wino_geo *w, const void *wt, float *U, int64_t q0, int64_t nq, int64_t co0, int flip) {
  if (w->m == 4) kernel_group_m(4, w, wt, U, q0, nq, co0, flip);
  else kernel_group_m(2, w, wt, U, q0, nq, co0, flip);
}
MF_CPU_INLINE void dkernel_group_body(const wino_geo *w, const float *dU, void *dw, int64_t off, int64_t q0, int64_t nq) {
  if (w->m == 4) dkernel_group_m(4, w, dU, dw, off, q0, nq);
  else dkernel_group_m(2, w, dU, dw, off, q0, nq);
}
MF_CPU_TWO_COPIES_VOID(input_group, (const wino_geo *w, const void *x, float *V, int64_t c, int64_t j0, const lane_at *a),
                       (w, x, V, c, j0, a))
MF_CPU_TWO_COPIES_VOID(output_group, (const wino_geo *w, const float *M, void *y, const void *bias, int64_t k, int64_t j0,
                                      const lane_at *a), (w, M, y, bias, k, j0, a))
MF_CPU_TWO_COPIES_VOID(dy_group, (const wino_geo *w, const void *dy, float *M, int64_t k, int64_t j0, const lane_at *a),
                       (w, dy, M, k, j0, a))
MF_CPU_TWO_COPIES_VOID(kernel_group, (const wino_geo *w, const void *wt, float *U, int64_t q0, int64_t nq, int64_t co0, int flip),
                       (w, wt, U, q0, nq, co0, flip))
MF_CPU_TWO_COPIES_VOID(dkernel_group, (const wino_geo *w, const float *dU, void *dw, int64_t off, int64_t q0, int64_t nq),
                       (w, dU, dw, off, q0, nq))

/* ------------------------------------------------------------------ the passes */

/* output channels of block b: the first, and how many */
static int64_t blk_rows(const wino_geo *w, int64_t b, int64_t *co0) {
  *co0 = b * w->cob;
  return w->Co - *co0 < w->cob ? w->Co - *co0 : w->cob;
}

/* U of block b (kernels k = co0 .., all input channels), by all threads of the enclosing parallel region */
static void kernels_transform(const wino_geo *w, const void *wt, float *U, int64_t b, int flip) {
  int64_t co0, nq = blk_rows(w, b, &co0) * w->Ci;
  #pragma omp for schedule(static)
  for (int64_t q0 = 0; q0 < nq; q0 += VL) kernel_group(w, wt, U, q0, nq, co0, flip);
}

/* out = conv(in, w) (+ bias): the forward pass, or backward-data with the flipped kernel (flip) */
static void wino_forward(const wino_geo *w, const void *in, const void *wt, int flip, void *out, const void *bias, char *ws) {
  float *U = (float *)(ws + w->o_u), *V = (float *)(ws + w->o_v), *M = (float *)(ws + w->o_m);
  const int aa = w->al * w->al;
  #pragma omp parallel
  {
    if (w->nblk == 1) kernels_transform(w, wt, U, 0, flip); /* one block: U once for every chunk */
    for (int64_t t0 = 0; t0 < w->T; t0 += w->tc) {
      int64_t nt = w->T - t0 < w->tc ? w->T - t0 : w->tc, groups = (nt + VL - 1) / VL, cols = groups * VL;
      #pragma omp for schedule(static)
      for (int64_t i = 0; i < w->Ci * groups; i++) { /* V [aa][Ci][cols] */
        int64_t c = i / groups, gq = i % groups;
        lane_at a;
        lanes_locate(w, t0 + gq * VL, &a);
        input_group(w, in, V, c, gq * VL, &a);
      }
      for (int64_t b = 0; b < w->nblk; b++) {
        int64_t co0, rows = blk_rows(w, b, &co0);
        if (w->nblk > 1) kernels_transform(w, wt, U, b, flip);
        #pragma omp for schedule(static)
        for (int ab = 0; ab < aa; ab++) /* M_ab [rows, cols] = U_ab [rows, Ci] . V_ab [Ci, cols] */
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rows, (blasint)cols, (blasint)w->Ci, 1.0f,
                      U + (int64_t)ab * rows * w->Ci, (blasint)w->Ci, V + (int64_t)ab * w->Ci * w->tc, (blasint)w->tc, 0.0f,
                      M + (int64_t)ab * rows * w->tc, (blasint)w->tc);
        #pragma omp for schedule(static)
        for (int64_t i = 0; i < rows * groups; i++) {
          int64_t k = co0 + i / groups, gq = i % groups;
          lane_at a;
          lanes_locate(w, t0 + gq * VL, &a);
          output_group(w, M, out, bias, k, gq * VL, &a);
        }
      }
    }
  }
}

/* the geometry node n was planned with; 0 (and the step's fault set) for a node without a recorded tile side */
static int wino_geometry_of(const mf_kctx *k, const mf_node *n, wino_geo *w) {
  int m = wino_tile_of(k->g, n);
  if (!m) {
    if (k->fault && !k->fault[0])
      snprintf(k->fault, k->fault_len, "%s '%s': put on Winograd without a tile side (impl_threads %d): choose its "
               "implementation with mf_cpu_conv_choose", mf_op_name(n->op), n->name, n->impl_threads);
    return 0;
  }
  wino_geometry(k->g, n, m, w);
  return 1;
}

void mf_cpu_wino_conv2d(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  wino_geo w;
  if (!wino_geometry_of(k, n, &w)) return;
  wino_forward(&w, src[0], src[1], 0, out, n->nsrc > 2 ? src[2] : NULL, ws);
}

void mf_cpu_wino_conv2d_bwd_data(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  wino_geo w;
  if (!wino_geometry_of(k, n, &w)) return;
  wino_forward(&w, src[0], src[1], 1, out, NULL, ws);
}

/* dw [OC,C,3,3] from x [N,C,H,W] (src[0]) and dy [N,OC,OH,OW] (src[1]); per block of output channels, dU summed over
 * every chunk of tiles (V is made again for each block) */
void mf_cpu_wino_conv2d_bwd_weight(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  wino_geo w;
  if (!wino_geometry_of(k, n, &w)) return;
  char *wsb = ws;
  float *dU = (float *)(wsb + w.o_u), *V = (float *)(wsb + w.o_v), *M = (float *)(wsb + w.o_m);
  const void *x = src[0], *dy = src[1];
  const int aa = w.al * w.al;
  #pragma omp parallel
  for (int64_t b = 0; b < w.nblk; b++) {
    int64_t co0, rows = blk_rows(&w, b, &co0), nq = rows * w.Ci;
    for (int64_t t0 = 0; t0 < w.T; t0 += w.tc) {
      int64_t nt = w.T - t0 < w.tc ? w.T - t0 : w.tc, groups = (nt + VL - 1) / VL, cols = groups * VL;
      #pragma omp for schedule(static) nowait
      for (int64_t i = 0; i < w.Ci * groups; i++) {
        int64_t c = i / groups, gq = i % groups;
        lane_at a;
        lanes_locate(&w, t0 + gq * VL, &a);
        input_group(&w, x, V, c, gq * VL, &a);
      }
      #pragma omp for schedule(static)
      for (int64_t i = 0; i < rows * groups; i++) {
        int64_t kk = co0 + i / groups, gq = i % groups;
        lane_at a;
        lanes_locate(&w, t0 + gq * VL, &a);
        dy_group(&w, dy, M, kk, gq * VL, &a);
      }
      #pragma omp for schedule(static)
      for (int ab = 0; ab < aa; ab++) /* dU_ab [rows, Ci] += M_ab [rows, cols] . V_ab^T [cols, Ci] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows, (blasint)w.Ci, (blasint)cols, 1.0f,
                    M + (int64_t)ab * rows * w.tc, (blasint)w.tc, V + (int64_t)ab * w.Ci * w.tc, (blasint)w.tc, t0 ? 1.0f : 0.0f,
                    dU + (int64_t)ab * nq, (blasint)w.Ci);
    }
    #pragma omp for schedule(static)
    for (int64_t q0 = 0; q0 < nq; q0 += VL) dkernel_group(&w, dU, out, co0 * w.Ci * 9, q0, nq);
  }
}
