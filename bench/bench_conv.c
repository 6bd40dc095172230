/* bench_conv.c — times memfit's CPU conv2d forward / backward-data / backward-weight kernels, each implementation
 * (memfit's GEMM algorithms and oneDNN), on the steganography net's shapes (3x3, pad 1, 32x32, C in 12..332, OC 80
 * or 12, batch 1 and 4) and, with `moco`, on the MoCo ResNet-18 small-stem shapes (32 px, batch 64, 3x3 and the 1x1
 * stride-2 shortcuts) and, with `vqgan`, on VQGAN low's 3x3 shapes (16-128 channels, batch 4), next to PyTorch's (run through python3 with the same thread count). Prints per shape and pass
 * the best time, the achieved GFLOP/s and its percentage of the sgemm peak measured with OpenBLAS in this process
 * (bench/common/peak.c), which implementation the planner would pick, and the per-op ratios.
 * Usage: OMP_NUM_THREADS=2 ./bench_conv [reps] [steg|moco|vqgan|all]   (set MEMFIT_BENCH_NO_TORCH=1 to skip PyTorch) */
#include "backend/cpu/cpu.h"
#include "common/peak.h"
#include "ops/ops.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cblas.h>
#include <omp.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct conv_shape { int64_t N, C, H, W, OC, K, S, P, bias; } conv_shape;

static const conv_shape steg_shapes[] = {
    {1, 12, 32, 32, 80, 3, 1, 1, 1},  {1, 92, 32, 32, 80, 3, 1, 1, 1},  {1, 172, 32, 32, 80, 3, 1, 1, 1},
    {1, 252, 32, 32, 80, 3, 1, 1, 1}, {1, 332, 32, 32, 12, 3, 1, 1, 1}, {4, 12, 32, 32, 80, 3, 1, 1, 1},
    {4, 92, 32, 32, 80, 3, 1, 1, 1},  {4, 172, 32, 32, 80, 3, 1, 1, 1}, {4, 252, 32, 32, 80, 3, 1, 1, 1},
    {4, 332, 32, 32, 12, 3, 1, 1, 1},
};
static const conv_shape moco_shapes[] = { /* ResNet-18, small stem, 32 px, batch 64, no conv bias */
    {64, 3, 32, 32, 64, 3, 1, 1, 0},    {64, 64, 32, 32, 64, 3, 1, 1, 0},  {64, 64, 32, 32, 128, 3, 2, 1, 0},
    {64, 128, 16, 16, 128, 3, 1, 1, 0}, {64, 64, 32, 32, 128, 1, 2, 0, 0}, {64, 128, 16, 16, 256, 3, 2, 1, 0},
    {64, 256, 8, 8, 256, 3, 1, 1, 0},   {64, 128, 16, 16, 256, 1, 2, 0, 0}, {64, 256, 8, 8, 512, 3, 2, 1, 0},
    {64, 512, 4, 4, 512, 3, 1, 1, 0},   {64, 256, 8, 8, 512, 1, 2, 0, 0},
};

static const conv_shape vqgan_shapes[] = { /* VQGAN low (channels 16, 32, 64, 128 at 64, 32, 16, 8 px), batch 4, with bias */
    {4, 16, 64, 64, 16, 3, 1, 1, 1}, {4, 32, 32, 32, 32, 3, 1, 1, 1}, {4, 64, 16, 16, 64, 3, 1, 1, 1}, {4, 128, 8, 8, 128, 3, 1, 1, 1},
    {4, 24, 64, 64, 24, 3, 1, 1, 1}, {4, 32, 64, 64, 32, 3, 1, 1, 1},
};

/* one conv node set up for an implementation (MF_CPU_CONV_GEMM or _DNNL) with its own workspace */
typedef struct conv_run { mf_node n; void *ws; int ok; } conv_run;

static void run_init(mf_graph *g, int id, int impl, int threads, conv_run *r) {
  r->n = g->nodes[id];
  r->n.impl = mf_cpu_wino_takes(g, &r->n) ? MF_CPU_CONV_WINO : MF_CPU_CONV_GEMM; /* memfit's own: Winograd where it takes the node */
  r->n.impl_threads = 0;
  if (mf_cpu_conv_on_wino(&r->n)) mf_cpu_wino_tile(g, &r->n);
  r->ws = NULL;
  r->ok = 1;
  if (impl == MF_CPU_CONV_DNNL) {
    size_t bytes;
    int t = mf_cpu_dnnl_conv_prepare(g, &r->n, threads, &bytes);
    if (!t) { r->ok = 0; return; } /* oneDNN does not take it */
    r->n.impl = MF_CPU_CONV_DNNL;
    r->n.impl_threads = (int16_t)t;
  }
  size_t wsb = (mf_backend_cpu.workspace(g, &r->n) + 63) / 64 * 64;
  if (wsb && (r->ws = aligned_alloc(64, wsb))) memset(r->ws, 0, wsb);
  if (wsb && !r->ws) r->ok = 0;
}

static double run_once(mf_graph *g, int id, const conv_run *r, int threads, void **data) {
  void *src[MF_MAX_SRC] = {0};
  for (int i = 0; i < r->n.nsrc; i++) src[i] = data[r->n.src[i]];
  mf_kctx k = {.g = g, .grad_seed = 1, .nthreads = threads};
  double t0 = now();
  mf_backend_cpu.kernels[r->n.op](&k, &r->n, data[id], src, r->ws);
  return now() - t0;
}

/* best (minimum: the machine may be shared) milliseconds of `reps` runs of node id's kernel with memfit's GEMM
 * algorithms (ms[0]) and with oneDNN (ms[1], -1 when oneDNN does not take the node), the two interleaved run by
 * run so that a burst of other work hits both; each round also times one n = 1024 sgemm (a, b, c [1024, 1024])
 * and raises *peak when it ran faster, so a peak measured during a burst does not stay the reference */
static void time_pass(mf_graph *g, int id, int threads, void **data, int reps, double *ms, double *peak, const float *a,
                      const float *b, float *c, const char **dnnl_impl) {
  conv_run r[2];
  run_init(g, id, MF_CPU_CONV_GEMM, threads, &r[0]);
  run_init(g, id, MF_CPU_CONV_DNNL, threads, &r[1]);
  *dnnl_impl = r[1].ok ? mf_cpu_dnnl_conv_impl(g, &r[1].n) : NULL;
  double best[2] = {1e30, 1e30};
  for (int rep = -2; rep < reps; rep++)
    for (int i = 0; i < 2; i++) {
      if (!r[i].ok) continue;
      double t = run_once(g, id, &r[i], threads, data);
      if (rep >= 0 && t < best[i]) best[i] = t;
      if (i == 1 || !r[1].ok) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1024, 1024, 1024, 1.0f, a, 1024, b, 1024, 0.0f, c, 1024);
        double f = 2.0 * 1024 * 1024 * 1024 / (now() - t0);
        if (f > *peak) *peak = f;
      }
    }
  for (int i = 0; i < 2; i++) {
    ms[i] = r[i].ok ? best[i] * 1e3 : -1;
    free(r[i].ws);
  }
}

static const char *torch_script =
    "import torch,time,sys\n"
    "torch.set_num_threads(int(sys.argv[1])); reps=int(sys.argv[2])\n"
    "def best(f):\n"
    "  f(); f(); ts=[]\n"
    "  for _ in range(reps):\n"
    "    t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)\n"
    "  return min(ts)*1e3\n"
    "for s in sys.argv[3].split(';'):\n"
    "  N,C,H,W,OC,K,S,P,B=map(int,s.split(','))\n"
    "  x=torch.randn(N,C,H,W); w=torch.randn(OC,C,K,K); b=torch.randn(OC) if B else None\n"
    "  dy=torch.randn(torch.nn.functional.conv2d(x,w,b,S,P).shape)\n"
    "  cb=torch.ops.aten.convolution_backward\n"
    "  with torch.no_grad():\n"
    "    f=best(lambda: torch.nn.functional.conv2d(x,w,b,S,P))\n"
    "    d=best(lambda: cb(dy,x,w,None,[S,S],[P,P],[1,1],False,[0,0],1,[True,False,False]))\n"
    "    ww=best(lambda: cb(dy,x,w,None,[S,S],[P,P],[1,1],False,[0,0],1,[False,True,False]))\n"
    "  print(f,d,ww,flush=True)\n";

/* PyTorch's best ms per shape and pass into tt[i][0..2]; 1 when every shape was timed */
static int torch_times(const conv_shape *sh, int ns, int threads, int reps, double (*tt)[3]) {
  if (getenv("MEMFIT_BENCH_NO_TORCH")) return 0;
  char script[] = "/tmp/memfit_bench_conv_XXXXXX";
  int fd = mkstemp(script);
  if (fd < 0) return 0;
  FILE *f = fdopen(fd, "w");
  if (!f) { remove(script); return 0; }
  fputs(torch_script, f);
  fclose(f);
  char cmd[4096];
  int w = snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %d %d '", script, threads, reps);
  for (int i = 0; i < ns && w < (int)sizeof cmd - 128; i++)
    w += snprintf(cmd + w, sizeof cmd - (size_t)w, "%s%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld", i ? ";" : "", (long long)sh[i].N,
                  (long long)sh[i].C, (long long)sh[i].H, (long long)sh[i].W, (long long)sh[i].OC, (long long)sh[i].K, (long long)sh[i].S,
                  (long long)sh[i].P, (long long)sh[i].bias);
  snprintf(cmd + w, sizeof cmd - (size_t)w, "' 2>/dev/null");
  FILE *p = popen(cmd, "r");
  int row = 0;
  if (p) {
    while (row < ns && fscanf(p, "%lf %lf %lf", &tt[row][0], &tt[row][1], &tt[row][2]) == 3) row++;
    row = pclose(p) == 0 ? row : -1;
  }
  remove(script);
  return row == ns;
}

static void pct(double flops, double ms, double peak, char *buf, size_t n) {
  if (ms <= 0) snprintf(buf, n, "%8s %6s %5s", "-", "-", "-");
  else snprintf(buf, n, "%8.3f %6.1f %4.0f%%", ms, flops / (ms * 1e-3) / 1e9, 100 * flops / (ms * 1e-3) / peak);
}

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 30;
  const char *set = argc > 2 ? argv[2] : "steg";
  if (reps < 1 || (strcmp(set, "steg") && strcmp(set, "moco") && strcmp(set, "vqgan") && strcmp(set, "all"))) {
    fprintf(stderr, "usage: bench_conv [reps >= 1] [steg|moco|vqgan|all]\n");
    return 2;
  }
  int threads = omp_get_max_threads();
  conv_shape sh[32];
  int ns = 0;
  if (!strcmp(set, "steg") || !strcmp(set, "all"))
    for (size_t i = 0; i < sizeof steg_shapes / sizeof *steg_shapes; i++) sh[ns++] = steg_shapes[i];
  if (!strcmp(set, "moco") || !strcmp(set, "all"))
    for (size_t i = 0; i < sizeof moco_shapes / sizeof *moco_shapes; i++) sh[ns++] = moco_shapes[i];
  if (!strcmp(set, "vqgan") || !strcmp(set, "all"))
    for (size_t i = 0; i < sizeof vqgan_shapes / sizeof *vqgan_shapes; i++) sh[ns++] = vqgan_shapes[i];
  double (*tt)[3] = calloc((size_t)ns, sizeof *tt);
  if (!tt) return 1;
  int have_torch = torch_times(sh, ns, threads, reps, tt);
  bench_peak pk;
  if (bench_peak_measure(threads, 3, &pk) < 0) { fprintf(stderr, "bench_conv: out of host memory for the sgemm peak\n"); return 1; }
  double peak = pk.flops_per_s;
  float *ga = malloc(1024 * 1024 * sizeof *ga), *gb = malloc(1024 * 1024 * sizeof *gb), *gc = malloc(1024 * 1024 * sizeof *gc);
  typedef struct row { double fl, ms[2]; int on_dnnl; const char *im; } row;
  row *rows = calloc((size_t)ns * 3, sizeof *rows);
  if (!ga || !gb || !gc || !rows) { fprintf(stderr, "bench_conv: out of host memory\n"); return 1; }
  for (int i = 0; i < 1024 * 1024; i++) ga[i] = gb[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
  for (int si = 0; si < ns; si++) {
    const conv_shape *s = &sh[si];
    mf_graph *g = mf_graph_init(MF_F32);
    int x = mf_input(g, "x", 4, (int64_t[]){s->N, s->C, s->H, s->W});
    int w = mf_input(g, "w", 4, (int64_t[]){s->OC, s->C, s->K, s->K});
    int b = s->bias ? mf_input(g, "b", 1, (int64_t[]){s->OC}) : -1;
    int y = mf_conv2d(g, x, w, b, (int)s->S, (int)s->P, 1); /* y [N, OC, OH, OW] */
    if (mf_graph_error(g)) { fprintf(stderr, "%s\n", mf_graph_error(g)); return 1; }
    int dy = mf_input(g, "dy", 4, g->nodes[y].ne); /* dy like y */
    int dx = mf_conv2d_bwd_data(g, dy, w, x, (int)s->S, (int)s->P, 1);
    int dw = mf_conv2d_bwd_weight(g, x, dy, w, (int)s->S, (int)s->P, 1);
    if (mf_graph_error(g)) { fprintf(stderr, "%s\n", mf_graph_error(g)); return 1; }
    void **data = calloc((size_t)g->n, sizeof *data);
    for (int i = 0; i < g->n; i++) {
      data[i] = malloc(mf_node_bytes(&g->nodes[i]));
      float *p = data[i];
      for (int64_t j = 0; j < mf_node_numel(&g->nodes[i]); j++) p[j] = (float)((j * 2654435761u) % 1000) / 1000.0f - 0.5f;
    }
    int ids[3] = {y, dx, dw};
    for (int pi = 0; pi < 3; pi++) {
      row *r = &rows[si * 3 + pi];
      r->fl = mf_node_flops(g, &g->nodes[ids[pi]]);
      time_pass(g, ids[pi], threads, data, reps, r->ms, &peak, ga, gb, gc, &r->im);
      mf_node pick = g->nodes[ids[pi]];
      mf_cpu_conv_choose(g, &pick, threads);
      r->on_dnnl = mf_cpu_conv_on_dnnl(&pick) && r->ms[1] > 0;
    }
    for (int i = 0; i < g->n; i++) free(data[i]);
    free(data);
    mf_graph_free(g);
  }
  bench_peak end;
  if (bench_peak_measure(threads, 3, &end) == 0 && end.flops_per_s > peak) peak = end.flops_per_s;
  printf("threads %d, best of %d runs; sgemm peak %.1f GFLOP/s (the best sgemm rate seen: %d calls per size n = 1024, 1536, 2048 "
         "before and after, and one n = 1024 per round; OpenBLAS %s core, %s); oneDNN ISA %s\n",
         threads, reps, peak / 1e9, 3, pk.blas_core, pk.blas_parallel, pk.dnnl_isa);
  printf("per implementation: ms, GFLOP/s, %% of the sgemm peak; pick: what the planner runs (shape rule or conv cache); "
         "r: torch ms / picked ms (> 1: memfit faster)\n");
  printf("%-30s %-10s %9s | %-21s | %-21s | %-21s | %-6s %5s  %s\n", "shape (N C HxW -> OC kK sS)", "pass", "GFLOP", "memfit own",
         "oneDNN", "torch", "pick", "r", "oneDNN kernel");
  double sum_m = 0, sum_t = 0, sum_f = 0;
  static const char *pass_name[3] = {"fwd", "bwd_data", "bwd_weight"};
  for (int si = 0; si < ns; si++)
    for (int pi = 0; pi < 3; pi++) {
      const conv_shape *s = &sh[si];
      const row *r = &rows[si * 3 + pi];
      double mp = r->on_dnnl ? r->ms[1] : r->ms[0];
      char shp[48], a[32], d[32], t[32];
      snprintf(shp, sizeof shp, "N%lld C%lld %lldx%lld -> %lld k%lld s%lld", (long long)s->N, (long long)s->C, (long long)s->H,
               (long long)s->W, (long long)s->OC, (long long)s->K, (long long)s->S);
      pct(r->fl, r->ms[0], peak, a, sizeof a);
      pct(r->fl, r->ms[1], peak, d, sizeof d);
      pct(r->fl, have_torch ? tt[si][pi] : -1, peak, t, sizeof t);
      printf("%-30s %-10s %9.4f | %s | %s | %s | %-6s", shp, pass_name[pi], r->fl / 1e9, a, d, t, r->on_dnnl ? "onednn" : "memfit");
      if (have_torch) printf(" %5.2f", tt[si][pi] / mp);
      else printf(" %5s", "-");
      printf("  %s\n", r->im ? r->im : "");
      sum_m += mp;
      sum_t += tt[si][pi];
      sum_f += r->fl;
    }
  printf("total (picked implementations): memfit %.2f ms = %.1f GFLOP/s = %.0f%% of peak", sum_m, sum_f / (sum_m * 1e-3) / 1e9,
         100 * sum_f / (sum_m * 1e-3) / peak);
  if (have_torch)
    printf("; torch %.2f ms = %.1f GFLOP/s = %.0f%% of peak; ratio %.2f", sum_t, sum_f / (sum_t * 1e-3) / 1e9,
           100 * sum_f / (sum_t * 1e-3) / peak, sum_t / sum_m);
  printf("\n");
  free(rows);
  free(ga);
  free(gb);
  free(gc);
  free(tt);
  return 0;
}
