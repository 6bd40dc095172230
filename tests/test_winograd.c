/* test_winograd.c — memfit's Winograd convolutions (src/backend/cpu/winograd.c), forward, backward-data and
 * backward-weights, F(4x4,3x3) and F(2x2,3x3), against f64 direct convolutions: within a rounding-error bound
 * derived for the algorithm (below), bit-exact for F(2x2,3x3) on integers (every step exact there), the same bits
 * with 1 and 2 threads, shapes that cut tiles at the edges and span several chunks of tiles and blocks of output
 * channels, operands stored in f32, bf16 and f16; then which nodes the planner puts on it, and a training step on
 * it with measured == planned for every arena.
 *
 * The bound: every value the algorithm computes is a sum of products of the operands and transform
 * coefficients; rounded in f32 along a chain of at most n operations, its error is at most gamma_n = n u / (1 - n u)
 * (u = 2^-24) times the same computation done on the absolute values of every operand and coefficient, whatever
 * the order of the sums (so OpenBLAS's kernel or the CPU does not matter). The test does that absolute computation
 * in f64 with the textbook transform matrices (not winograd.c's hand-expanded formulas). */
#include "check.h"
#include "conv_session.h"
#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "ops/ops.h"
#include "plan/plan.h"
#include <omp.h>
#include <stdint.h>

typedef struct shape { int N, C, H, W, OC, pad, bias; } shape;

/* the transforms, as the literature writes them: Y = A^T [(G g G^T) . (B^T d B)] A */
static const double BT4[6][6] = {{4, 0, -5, 0, 1, 0}, {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                 {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
static const double G4[6][3] = {{1. / 4, 0, 0}, {-1. / 6, -1. / 6, -1. / 6}, {-1. / 6, 1. / 6, -1. / 6},
                                {1. / 24, 1. / 12, 1. / 6}, {1. / 24, -1. / 12, 1. / 6}, {0, 0, 1}};
static const double AT4[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
static const double BT2[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
static const double G2[4][3] = {{1, 0, 0}, {.5, .5, .5}, {.5, -.5, .5}, {0, 0, 1}};
static const double AT2[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};

typedef struct absmat { int m, al; double bt[6][6], g[6][3], at[4][6]; } absmat; /* |B^T|, |G|, |A^T| */

static void absmat_init(absmat *a, int m) {
  memset(a, 0, sizeof *a);
  a->m = m;
  a->al = m + 2;
  for (int i = 0; i < a->al; i++) {
    for (int j = 0; j < a->al; j++) a->bt[i][j] = fabs(m == 4 ? BT4[i][j] : BT2[i][j]);
    for (int j = 0; j < 3; j++) a->g[i][j] = fabs(m == 4 ? G4[i][j] : G2[i][j]);
  }
  for (int i = 0; i < m; i++)
    for (int j = 0; j < a->al; j++) a->at[i][j] = fabs(m == 4 ? AT4[i][j] : AT2[i][j]);
}

/* The absolute-value computation of the forward pass in (Ci, Hi, Wi) -> (Co, Ho, Wo) with kernels ker [Co][Ci][3][3]
 * (all >= 0), pad p: S [N][Co][Ho][Wo] (+ |b|). Used for the forward pass and for backward-data (dy with the
 * flipped, transposed kernel, pad 2 - p). */
static void bound_forward(const absmat *a, int N, int Ci, int Hi, int Wi, int Co, int Ho, int Wo, int p, const double *in,
                          const double *ker, const double *b, double *S) {
  int m = a->m, al = a->al, th = (Ho + m - 1) / m, tw = (Wo + m - 1) / m;
  double *U = malloc(sizeof(double) * (size_t)Co * Ci * 36), *V = malloc(sizeof(double) * (size_t)Ci * 36);
  for (int q = 0; q < Co * Ci; q++) { /* U = |G| g |G^T| */
    const double *g = ker + (size_t)q * 9;
    for (int i = 0; i < al; i++)
      for (int j = 0; j < al; j++) {
        double s = 0;
        for (int u = 0; u < 3; u++)
          for (int v = 0; v < 3; v++) s += a->g[i][u] * g[u * 3 + v] * a->g[j][v];
        U[(size_t)q * 36 + i * al + j] = s;
      }
  }
  for (int n = 0; n < N; n++)
    for (int ty = 0; ty < th; ty++)
      for (int tx = 0; tx < tw; tx++) {
        for (int c = 0; c < Ci; c++) { /* V = |B^T| d |B| */
          double d[6][6];
          for (int i = 0; i < al; i++)
            for (int j = 0; j < al; j++) {
              int r = ty * m + i - p, cc = tx * m + j - p;
              d[i][j] = r >= 0 && r < Hi && cc >= 0 && cc < Wi ? in[(((size_t)n * Ci + c) * Hi + r) * Wi + cc] : 0;
            }
          for (int i = 0; i < al; i++)
            for (int j = 0; j < al; j++) {
              double s = 0;
              for (int u = 0; u < al; u++)
                for (int v = 0; v < al; v++) s += a->bt[i][u] * d[u][v] * a->bt[j][v];
              V[(size_t)c * 36 + i * al + j] = s;
            }
        }
        for (int k = 0; k < Co; k++) {
          double M[36] = {0};
          for (int c = 0; c < Ci; c++)
            for (int e = 0; e < al * al; e++) M[e] += U[((size_t)k * Ci + c) * 36 + e] * V[(size_t)c * 36 + e];
          for (int i = 0; i < m; i++)
            for (int j = 0; j < m; j++) {
              int r = ty * m + i, cc = tx * m + j;
              if (r >= Ho || cc >= Wo) continue;
              double s = b ? b[k] : 0;
              for (int u = 0; u < al; u++)
                for (int v = 0; v < al; v++) s += a->at[i][u] * M[u * al + v] * a->at[j][v];
              S[(((size_t)n * Co + k) * Ho + r) * Wo + cc] = s;
            }
        }
      }
  free(U);
  free(V);
}

/* The absolute-value computation of backward-weights: S [OC][C][3][3] = |G^T| (sum over tiles of (|A| dY |A^T|) .
 * (|B^T| d |B|)) |G| */
static void bound_weight(const absmat *a, const shape *s, int OH, int OW, const double *x, const double *dy, double *S) {
  int m = a->m, al = a->al, th = (OH + m - 1) / m, tw = (OW + m - 1) / m, C = s->C, OC = s->OC;
  double *dU = calloc((size_t)OC * C * 36, sizeof(double)), *V = malloc(sizeof(double) * (size_t)C * 36),
         *Z = malloc(sizeof(double) * (size_t)OC * 36);
  for (int n = 0; n < s->N; n++)
    for (int ty = 0; ty < th; ty++)
      for (int tx = 0; tx < tw; tx++) {
        for (int c = 0; c < C; c++)
          for (int i = 0; i < al; i++)
            for (int j = 0; j < al; j++) {
              double v = 0;
              for (int u = 0; u < al; u++)
                for (int w = 0; w < al; w++) {
                  int r = ty * m + u - s->pad, cc = tx * m + w - s->pad;
                  if (r >= 0 && r < s->H && cc >= 0 && cc < s->W) v += a->bt[i][u] * x[(((size_t)n * C + c) * s->H + r) * s->W + cc] * a->bt[j][w];
                }
              V[(size_t)c * 36 + i * al + j] = v;
            }
        for (int k = 0; k < OC; k++)
          for (int i = 0; i < al; i++)
            for (int j = 0; j < al; j++) {
              double z = 0;
              for (int u = 0; u < m; u++)
                for (int w = 0; w < m; w++) {
                  int r = ty * m + u, cc = tx * m + w;
                  if (r < OH && cc < OW) z += a->at[u][i] * dy[(((size_t)n * OC + k) * OH + r) * OW + cc] * a->at[w][j];
                }
              Z[(size_t)k * 36 + i * al + j] = z;
            }
        for (int k = 0; k < OC; k++)
          for (int c = 0; c < C; c++)
            for (int e = 0; e < al * al; e++) dU[((size_t)k * C + c) * 36 + e] += Z[(size_t)k * 36 + e] * V[(size_t)c * 36 + e];
      }
  for (int q = 0; q < OC * C; q++)
    for (int u = 0; u < 3; u++)
      for (int v = 0; v < 3; v++) {
        double t = 0;
        for (int i = 0; i < al; i++)
          for (int j = 0; j < al; j++) t += a->g[i][u] * dU[(size_t)q * 36 + i * al + j] * a->g[j][v];
        S[(size_t)q * 9 + u * 3 + v] = t;
      }
  free(dU);
  free(V);
  free(Z);
}

/* runs node id's kernel on Winograd with `threads` threads into out */
static void run(const mf_graph *g, int id, void **data, void *out, int threads) {
  mf_node n = g->nodes[id];
  n.impl = MF_CPU_CONV_WINO;
  mf_cpu_wino_tile(g, &n);
  size_t wsb = mf_cpu_wino_ws(g, &n);
  void *ws = aligned_alloc(64, (wsb + 63) / 64 * 64);
  memset(ws, 0xff, (wsb + 63) / 64 * 64); /* NaN: a value read before it is written shows */
  void *src[MF_MAX_SRC] = {0};
  for (int i = 0; i < n.nsrc; i++) src[i] = data[n.src[i]];
  mf_kctx k = {.g = g, .grad_seed = 1, .nthreads = threads};
  int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  mf_backend_cpu.kernels[n.op](&k, &n, out, src, ws);
  omp_set_num_threads(saved);
  free(ws);
}

/* one shape: the three passes against f64 */
/* one shape: the three passes against f64; operands and outputs stored as dt (f32, bf16, f16), the reference on the
 * stored operands' values, and a stored output also within its rounding (unit roundoff ur) of the f32 result */
static void check_shape(const shape *s, int m, int integers, mf_dtype dt) {
  char what[160];
  snprintf(what, sizeof what, "F(%d,3) %s N%d C%d %dx%d -> %d p%d%s%s", m, mf_dtype_name(dt), s->N, s->C, s->H, s->W, s->OC, s->pad,
           s->bias ? " bias" : "", integers ? " integers" : "");
  /* rounding of a stored output: relative ur, and for f16 half its subnormal spacing */
  double ur = dt == MF_BF16 ? ldexp(1.0, -8) : dt == MF_F16 ? ldexp(1.0, -11) : 0, ua = dt == MF_F16 ? ldexp(1.0, -25) : 0;
  mf_graph *g = mf_graph_init(dt);
  int x = mf_input(g, "x", 4, (int64_t[]){s->N, s->C, s->H, s->W});
  int w = mf_input(g, "w", 4, (int64_t[]){s->OC, s->C, 3, 3});
  int b = s->bias ? mf_input(g, "b", 1, (int64_t[]){s->OC}) : -1;
  int y = mf_conv2d(g, x, w, b, 1, s->pad, 1); /* y [N, OC, OH, OW] */
  int dy = mf_input(g, "dy", 4, g->nodes[y].ne);
  int dx = mf_conv2d_bwd_data(g, dy, w, x, 1, s->pad, 1);
  int dw = mf_conv2d_bwd_weight(g, x, dy, w, 1, s->pad, 1);
  CHECK(!mf_graph_error(g), "%s: %s", what, mf_graph_error(g));
  if (mf_graph_error(g)) { mf_graph_free(g); return; }
  int ids[3] = {y, dx, dw};
  for (int i = 0; i < 3; i++) CHECK(mf_cpu_wino_takes(g, &g->nodes[ids[i]]) == m, "%s: Winograd takes pass %d", what, i);
  int OH = (int)g->nodes[y].ne[2], OW = (int)g->nodes[y].ne[3];
  void **data = calloc((size_t)g->n, sizeof *data);
  float *vals[4] = {0}; /* the operands' values as stored, in f32 */
  int ops[4] = {x, w, b, dy};
  for (int i = 0; i < g->n; i++) data[i] = calloc(mf_node_bytes(&g->nodes[i]), 1);
  for (int i = 0; i < 4; i++) {
    if (ops[i] < 0) continue;
    int64_t cnt = mf_node_numel(&g->nodes[ops[i]]);
    vals[i] = malloc((size_t)cnt * sizeof(float));
    conv_fill(vals[i], cnt, 1 + (uint64_t)i, integers);
    for (int64_t j = 0; j < cnt; j++) mf_st(data[ops[i]], dt, j, vals[i][j]);
    for (int64_t j = 0; j < cnt; j++) vals[i][j] = (float)mf_ld(data[ops[i]], dt, j);
  }
  const float *X = vals[0], *Wt = vals[1], *B = vals[2], *DY = vals[3];
  int64_t ny = mf_node_numel(&g->nodes[y]), nx = mf_node_numel(&g->nodes[x]), nw = mf_node_numel(&g->nodes[w]);
  /* f64 references and absolute-value inputs */
  double *ry = calloc((size_t)ny, 8), *rx = calloc((size_t)nx, 8), *rw = calloc((size_t)nw, 8);
  double *ax = malloc((size_t)nx * 8), *aw = malloc((size_t)nw * 8), *awt = malloc((size_t)nw * 8), *ady = malloc((size_t)ny * 8),
         *ab = malloc((size_t)s->OC * 8);
  for (int64_t i = 0; i < nx; i++) ax[i] = fabs(X[i]);
  for (int64_t i = 0; i < ny; i++) ady[i] = fabs(DY[i]);
  for (int k = 0; k < s->OC; k++) ab[k] = B ? fabs(B[k]) : 0;
  for (int k = 0; k < s->OC; k++)
    for (int c = 0; c < s->C; c++)
      for (int e = 0; e < 9; e++) {
        aw[((size_t)k * s->C + c) * 9 + e] = fabs(Wt[((size_t)k * s->C + c) * 9 + e]);
        awt[((size_t)c * s->OC + k) * 9 + e] = fabs(Wt[((size_t)k * s->C + c) * 9 + 8 - e]); /* flipped, transposed */
      }
  for (int n = 0; n < s->N; n++)
    for (int k = 0; k < s->OC; k++)
      for (int i = 0; i < OH; i++)
        for (int j = 0; j < OW; j++) {
          double gy = DY[(((size_t)n * s->OC + k) * OH + i) * OW + j], acc = B ? B[k] : 0;
          for (int c = 0; c < s->C; c++)
            for (int u = 0; u < 3; u++)
              for (int v = 0; v < 3; v++) {
                int r = i + u - s->pad, cc = j + v - s->pad;
                if (r < 0 || r >= s->H || cc < 0 || cc >= s->W) continue;
                size_t xi = (((size_t)n * s->C + c) * s->H + r) * s->W + cc, wi = ((size_t)k * s->C + c) * 9 + u * 3 + v;
                acc += (double)X[xi] * Wt[wi];
                rx[xi] += gy * Wt[wi];
                rw[wi] += gy * X[xi];
              }
          ry[(((size_t)n * s->OC + k) * OH + i) * OW + j] = acc;
        }
  absmat am;
  absmat_init(&am, m);
  double *sy = malloc((size_t)ny * 8), *sx = malloc((size_t)nx * 8), *sw = malloc((size_t)nw * 8);
  bound_forward(&am, s->N, s->C, s->H, s->W, s->OC, OH, OW, s->pad, ax, aw, B ? ab : NULL, sy);
  bound_forward(&am, s->N, s->OC, OH, OW, s->C, s->H, s->W, 2 - s->pad, ady, awt, NULL, sx);
  bound_weight(&am, s, OH, OW, ax, ady, sw);
  /* chains: the transforms (at most al + 1 operations per dimension, twice for each of B, G, A), the scaling, the
   * product, and the sum over channels (forward, bwd data) or tiles (bwd weight), and the bias */
  double u = ldexp(1.0, -24);
  int tiles = s->N * ((OH + m - 1) / m) * ((OW + m - 1) / m);
  int chain[3] = {s->C + 6 * (m + 3) + 4, s->OC + 6 * (m + 3) + 4, tiles + 6 * (m + 3) + 4};
  const double *ref[3] = {ry, rx, rw}, *bound[3] = {sy, sx, sw};
  int64_t cnt[3] = {ny, nx, nw};
  const char *pass[3] = {"forward", "bwd-data", "bwd-weight"};
  for (int pi = 0; pi < 3; pi++) {
    size_t bytes = (size_t)cnt[pi] * mf_dtype_size(dt);
    void *r1 = malloc(bytes), *r2 = malloc(bytes);
    run(g, ids[pi], data, r1, 1);
    run(g, ids[pi], data, r2, 2);
    CHECK(!memcmp(r1, r2, bytes), "%s %s: 1 and 2 threads give different bits", what, pass[pi]);
    float *o1 = malloc((size_t)cnt[pi] * 4);
    for (int64_t i = 0; i < cnt[pi]; i++) o1[i] = (float)mf_ld(r1, dt, i);
    double gam = chain[pi] * u / (1 - chain[pi] * u), worst = 0;
    int64_t bad = 0, at = -1;
    for (int64_t i = 0; i < cnt[pi]; i++) {
      double e = fabs((double)o1[i] - ref[pi][i]), tol = gam * bound[pi][i] + ur * (fabs(ref[pi][i]) + gam * bound[pi][i]) + ua;
      int ok = integers && m == 2 ? e == 0 : e <= tol;
      if (!ok && !bad++) at = i;
      double r = tol > 0 ? e / tol : e > 0 ? INFINITY : 0;
      if (r > worst) worst = r;
    }
    CHECK(!bad, "%s %s: %lld of %lld values outside %s (first: [%lld] %.9g vs %.9g, bound %.3g)", what, pass[pi], (long long)bad,
          (long long)cnt[pi], integers && m == 2 ? "exactness" : "the bound", (long long)at, at >= 0 ? o1[at] : 0.0,
          at >= 0 ? ref[pi][at] : 0.0, at >= 0 ? gam * bound[pi][at] : 0.0);
    if (getenv("MEMFIT_TEST_VERBOSE")) printf("  %s %s: worst error / bound %.3g\n", what, pass[pi], worst);
    free(o1);
    free(r1);
    free(r2);
  }
  for (int i = 0; i < 4; i++) free(vals[i]);
  free(ry); free(rx); free(rw); free(ax); free(aw); free(awt); free(ady); free(ab); free(sy); free(sx); free(sw);
  for (int i = 0; i < g->n; i++) free(data[i]);
  free(data);
  mf_graph_free(g);
}

/* x [2,64,28,28] -conv (w1 [72,64,3,3])-> relu -conv (w2 [64,72,3,3])-> relu -conv (w3 [16,64,3,3], stride 2)-> mse:
 * w1 and w2 on Winograd by the shape rule (at least 64 channels a side and 1e8 FLOPs per pass), the strided one
 * not; two steps, measured == planned */
static void check_session(void) {
  mf_graph *g = mf_graph_init(MF_F32);
  mf_tensor x = mf_input(g, "x", 4, (int64_t[]){2, 64, 28, 28}), t = mf_input(g, "t", 4, (int64_t[]){2, 16, 14, 14});
  mf_tensor w1 = mf_param(g, "w1", 4, (int64_t[]){72, 64, 3, 3}, MF_INIT_KAIMING, 0);
  mf_tensor w2 = mf_param(g, "w2", 4, (int64_t[]){64, 72, 3, 3}, MF_INIT_KAIMING, 0);
  mf_tensor w3 = mf_param(g, "w3", 4, (int64_t[]){16, 64, 3, 3}, MF_INIT_KAIMING, 0);
  mf_tensor h = mf_relu(g, mf_conv2d(g, x, w1, -1, 1, 1, 1)); /* [2,72,28,28] */
  h = mf_relu(g, mf_conv2d(g, h, w2, -1, 1, 1, 1));           /* [2,64,28,28] */
  mf_tensor loss = mf_mse_loss(g, mf_conv2d(g, h, w3, -1, 2, 1, 1), t); /* [2,16,14,14] */
  CHECK(!mf_graph_error(g), "session graph: %s", mf_graph_error(g));
  mf_tensor ins[2] = {x, t};
  mf_session *s = conv_session_init(g, loss, ins, 2, 10);
  if (!s) { mf_graph_free(g); return; }
  const mf_plan *pl = mf_session_plan(s);
  const mf_graph *sg = pl->g;
  int wino = 0, strided = 0;
  for (int i = 0; i < sg->n; i++) {
    const mf_node *n = &sg->nodes[i];
    if (!conv_node_is(n)) continue;
    int s2 = mf_conv_cfg_of(n).stride == 2;
    if (n->impl == MF_CPU_CONV_WINO) {
      wino++;
      char name[128];
      const char *why = "";
      CHECK(pl->be->impl_describe(sg, n, name, sizeof name, &why) == 1 && !strncmp(name, "memfit winograd F(4x4,3x3)", 26) &&
                pl->be->workspace(sg, n) == mf_cpu_wino_ws(sg, n),
            "%s: named '%s', workspace %zu", n->name, name, pl->be->workspace(sg, n));
    }
    if (s2) strided += n->impl == MF_CPU_CONV_WINO;
  }
  /* w1: forward, bwd weight (its input x needs no gradient); w2: all three; the strided conv: none */
  CHECK(wino == 5 && strided == 0, "Winograd nodes %d (want 5), strided ones on it %d", wino, strided);
  for (int step = 0; step < 2; step++) {
    double l = mf_session_micro_step(s);
    CHECK(isfinite(l), "step %d: loss %g", step, l);
  }
  const mf_plan *p = mf_session_plan(s);
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    size_t planned = mf_plan_arena_bytes(p, (mf_arena_kind)a), measured = mf_session_measured_bytes(s, (mf_arena_kind)a);
    CHECK(planned == measured, "arena %s planned %zu measured %zu", mf_arena_name((mf_arena_kind)a), planned, measured);
  }
  mf_session_free(s);
  mf_graph_free(g);
}

int main(void) {
  const shape shapes[] = {
      {2, 16, 7, 9, 16, 1, 0},   /* tiles cut at the bottom and right */
      {1, 17, 12, 12, 20, 0, 1}, /* no padding, bias */
      {3, 16, 5, 6, 24, 2, 0},   /* pad 2: the output is larger than the input */
      {1, 256, 6, 7, 240, 1, 0}, /* several blocks of output channels (the last one shorter) */
      {10, 256, 16, 16, 240, 1, 1}, /* F(4x4): 2 blocks of output channels and 2 chunks of tiles in each pass */
  };
  int ns = (int)(sizeof shapes / sizeof *shapes);
  for (int mi = 0; mi < 2; mi++) {
    int m = mi ? 2 : 4;
    setenv("MEMFIT_WINOGRAD", m == 2 ? "2" : "4", 1);
    /* the last shape with F(4x4) only, and not under the sanitizers (minutes there) */
    for (int i = 0; i < ns - (m == 2 || getenv("MEMFIT_SANITIZED")); i++) check_shape(&shapes[i], m, 0, MF_F32);
    if (m == 2)
      for (int i = 0; i < ns - 1; i++) check_shape(&shapes[i], m, 1, MF_F32);
    /* stored in bf16 and f16 (computed in f32) */
    for (int i = 0; i < 3; i++) {
      check_shape(&shapes[i], m, 0, MF_BF16);
      check_shape(&shapes[i], m, 0, MF_F16);
    }
  }
  unsetenv("MEMFIT_WINOGRAD");
  check_session();
  /* the switch and the rules */
  setenv("MEMFIT_WINOGRAD", "0", 1);
  mf_graph *g = mf_graph_init(MF_F32);
  int x = mf_input(g, "x", 4, (int64_t[]){1, 16, 8, 8}), w = mf_input(g, "w", 4, (int64_t[]){16, 16, 3, 3});
  int w8 = mf_input(g, "w8", 4, (int64_t[]){8, 16, 3, 3}), w5 = mf_input(g, "w5", 4, (int64_t[]){16, 16, 5, 5});
  int y = mf_conv2d(g, x, w, -1, 1, 1, 1), y8 = mf_conv2d(g, x, w8, -1, 1, 1, 1), y5 = mf_conv2d(g, x, w5, -1, 1, 2, 1);
  int ys = mf_conv2d(g, x, w, -1, 2, 1, 1);
  CHECK(!mf_graph_error(g), "rules graph: %s", mf_graph_error(g));
  CHECK(mf_cpu_wino_takes(g, &g->nodes[y]) == 0, "MEMFIT_WINOGRAD=0 leaves it on");
  unsetenv("MEMFIT_WINOGRAD");
  CHECK(mf_cpu_wino_takes(g, &g->nodes[y]) == 4, "default tile: %d", mf_cpu_wino_takes(g, &g->nodes[y]));
  CHECK(mf_cpu_wino_takes(g, &g->nodes[y8]) == 0, "takes 8 output channels");
  CHECK(mf_cpu_wino_takes(g, &g->nodes[y5]) == 0, "takes a 5x5 kernel");
  CHECK(mf_cpu_wino_takes(g, &g->nodes[ys]) == 0, "takes stride 2");
  /* the tile side is recorded when the node is put on Winograd: a MEMFIT_WINOGRAD changed afterwards changes
   * neither its workspace nor its kernel, and a node put there without one faults instead of crashing */
  mf_node n4 = g->nodes[y];
  n4.impl = MF_CPU_CONV_WINO;
  mf_cpu_wino_tile(g, &n4);
  size_t ws4 = mf_cpu_wino_ws(g, &n4);
  setenv("MEMFIT_WINOGRAD", "0", 1);
  CHECK(n4.impl_threads == 4 && mf_cpu_wino_ws(g, &n4) == ws4 && ws4 > 0, "recorded tile %d, workspace %zu then %zu",
        n4.impl_threads, ws4, mf_cpu_wino_ws(g, &n4));
  setenv("MEMFIT_WINOGRAD", "2", 1);
  CHECK(mf_cpu_wino_ws(g, &n4) == ws4, "workspace follows MEMFIT_WINOGRAD after planning");
  unsetenv("MEMFIT_WINOGRAD");
  {
    float *xv = calloc(16 * 64, 4), *wv = calloc(16 * 16 * 9, 4), *yv = malloc(16 * 64 * 4);
    char fault[256] = "";
    mf_kctx k = {.g = g, .grad_seed = 1, .nthreads = 1, .fault = fault, .fault_len = sizeof fault};
    mf_node n0 = g->nodes[y];
    n0.impl = MF_CPU_CONV_WINO; /* no tile side recorded */
    void *src[MF_MAX_SRC] = {xv, wv};
    mf_cpu_wino_conv2d(&k, &n0, yv, src, NULL);
    CHECK(strstr(fault, "without a tile side") != NULL, "a node without a tile side: fault '%s'", fault);
    free(xv);
    free(wv);
    free(yv);
  }
  mf_graph_free(g);
  return check_finish("test_winograd");
}
