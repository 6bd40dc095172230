/* bench_conv.c — times memfit's CPU conv2d forward / backward-data / backward-weight kernels on the
 * steganography net's shapes (3x3, pad 1, 32x32, C in 12..332, OC 80 or 12, batch 1 and 4) next to
 * PyTorch's (run through python3 with the same thread count), and prints the per-op ratios.
 * Usage: OMP_NUM_THREADS=2 ./bench_conv [reps]   (set MEMFIT_BENCH_NO_TORCH=1 to skip PyTorch) */
#include "backend/cpu/cpu.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <omp.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* best (minimum) milliseconds of `reps` runs of node `id`'s kernel */
static double time_node(mf_graph *g, int id, void **data, int reps) {
  const mf_node *n = &g->nodes[id];
  size_t wsb = mf_backend_cpu.workspace(g, n);
  void *ws = wsb ? malloc(wsb) : NULL;
  if (wsb) memset(ws, 0, wsb);
  void *src[MF_MAX_SRC] = {0};
  for (int i = 0; i < n->nsrc; i++) src[i] = data[n->src[i]];
  mf_kctx k = {.g = g, .grad_seed = 1, .nthreads = omp_get_max_threads()};
  double *t = malloc((size_t)reps * sizeof *t);
  for (int r = -2; r < reps; r++) {
    double t0 = now();
    mf_backend_cpu.kernels[n->op](&k, n, data[id], src, ws);
    if (r >= 0) t[r] = now() - t0;
  }
  qsort(t, (size_t)reps, sizeof *t, cmp_d);
  double med = t[0] * 1e3; /* the minimum: the machine may be shared */
  free(t);
  free(ws);
  return med;
}

static const char *torch_script =
    "import torch,time,sys\n"
    "torch.set_num_threads(int(sys.argv[1])); reps=int(sys.argv[2])\n"
    "def med(f):\n"
    "  f(); f(); ts=[]\n"
    "  for _ in range(reps):\n"
    "    t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)\n"
    "  return min(ts)*1e3\n"
    "for N in (1,4):\n"
    "  for C,OC in ((12,80),(92,80),(172,80),(252,80),(332,12)):\n"
    "    x=torch.randn(N,C,32,32); w=torch.randn(OC,C,3,3); b=torch.randn(OC); dy=torch.randn(N,OC,32,32)\n"
    "    cb=torch.ops.aten.convolution_backward\n"
    "    with torch.no_grad():\n"
    "      f=med(lambda: torch.nn.functional.conv2d(x,w,b,1,1))\n"
    "      d=med(lambda: cb(dy,x,w,None,[1,1],[1,1],[1,1],False,[0,0],1,[True,False,False]))\n"
    "      ww=med(lambda: cb(dy,x,w,None,[1,1],[1,1],[1,1],False,[0,0],1,[False,True,False]))\n"
    "    print(N,C,OC,f,d,ww,flush=True)\n";

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 30;
  int threads = omp_get_max_threads();
  double tt[2][5][3] = {{{0}}};
  int have_torch = 0;
  if (!getenv("MEMFIT_BENCH_NO_TORCH")) {
    FILE *f = fopen("/tmp/memfit_bench_conv.py", "w");
    if (f) {
      fputs(torch_script, f);
      fclose(f);
      char cmd[256];
      snprintf(cmd, sizeof cmd, "/usr/bin/python3 /tmp/memfit_bench_conv.py %d %d 2>/dev/null", threads, reps);
      FILE *p = popen(cmd, "r");
      if (p) {
        int N, C, OC, row = 0;
        double a, b, c;
        while (fscanf(p, "%d %d %d %lf %lf %lf", &N, &C, &OC, &a, &b, &c) == 6 && row < 10) {
          tt[row / 5][row % 5][0] = a;
          tt[row / 5][row % 5][1] = b;
          tt[row / 5][row % 5][2] = c;
          row++;
        }
        have_torch = pclose(p) == 0 && row == 10;
      }
    }
  }
  const int64_t cs[5][2] = {{12, 80}, {92, 80}, {172, 80}, {252, 80}, {332, 12}};
  printf("threads %d, best of %d runs, ms (ratio = torch / memfit, > 1 is faster)\n", threads, reps);
  printf("%-18s %9s %9s %9s | %9s %9s %9s | %6s %6s %6s\n", "shape", "fwd", "bwd_data", "bwd_w", "torch fwd", "bwd_data", "bwd_w",
         "r fwd", "r bd", "r bw");
  double sum_m = 0, sum_t = 0;
  for (int bi = 0; bi < 2; bi++)
    for (int ci = 0; ci < 5; ci++) {
      int64_t N = bi ? 4 : 1, C = cs[ci][0], OC = cs[ci][1];
      mf_graph *g = mf_graph_init(MF_F32);
      int x = mf_input(g, "x", 4, (int64_t[]){N, C, 32, 32});
      int w = mf_input(g, "w", 4, (int64_t[]){OC, C, 3, 3});
      int b = mf_input(g, "b", 1, (int64_t[]){OC});
      int dy = mf_input(g, "dy", 4, (int64_t[]){N, OC, 32, 32});
      int y = mf_conv2d(g, x, w, b, 1, 1, 1);
      int dx = mf_conv2d_bwd_data(g, dy, w, x, 1, 1, 1);
      int dw = mf_conv2d_bwd_weight(g, x, dy, w, 1, 1, 1);
      if (mf_graph_error(g)) { fprintf(stderr, "%s\n", mf_graph_error(g)); return 1; }
      void **data = calloc((size_t)g->n, sizeof *data);
      for (int i = 0; i < g->n; i++) {
        data[i] = malloc(mf_node_bytes(&g->nodes[i]));
        float *p = data[i];
        for (int64_t j = 0; j < mf_node_numel(&g->nodes[i]); j++) p[j] = (float)((j * 2654435761u) % 1000) / 1000.0f - 0.5f;
      }
      double m[3] = {time_node(g, y, data, reps), time_node(g, dx, data, reps), time_node(g, dw, data, reps)};
      char shp[32];
      snprintf(shp, sizeof shp, "N%lld C%lld->%lld", (long long)N, (long long)C, (long long)OC);
      printf("%-18s %9.3f %9.3f %9.3f", shp, m[0], m[1], m[2]);
      if (have_torch)
        printf(" | %9.3f %9.3f %9.3f | %6.2f %6.2f %6.2f", tt[bi][ci][0], tt[bi][ci][1], tt[bi][ci][2], tt[bi][ci][0] / m[0],
               tt[bi][ci][1] / m[1], tt[bi][ci][2] / m[2]);
      printf("\n");
      for (int j = 0; j < 3; j++) { sum_m += m[j]; sum_t += tt[bi][ci][j]; }
      for (int i = 0; i < g->n; i++) free(data[i]);
      free(data);
      mf_graph_free(g);
    }
  if (have_torch) printf("total: memfit %.2f ms, torch %.2f ms, ratio %.2f\n", sum_m, sum_t, sum_t / sum_m);
  return 0;
}
