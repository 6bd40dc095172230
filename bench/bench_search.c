/* bench_search.c — search quality (issue 4): for several workload/budget cases, measures the step
 * time of EVERY setting the search planned that fits the budget (brute force over the same space),
 * and compares the fastest measured with the one memfit chose. Prints a table and the ratios.
 * usage: bench_search [THREADS (default 1)] [STEPS (default 3)] */
#include "train/measure.h"
#include "models/workload.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bcase { const char *preset; int size, batch; double budget_frac; } bcase;

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1, steps = argc > 2 ? atoi(argv[2]) : 3;
  /* budget_frac: where the budget lies between the smallest setting (0) and the fastest unconstrained one (1) */
  const bcase cases[] = {{"small", 16, 8, 0.3}, {"small", 32, 4, 0.2}, {"bench", 16, 4, 0.3}};
  const mf_workload *w = mf_workload_find("steg");
  char err[512];
  int worst_ok = 1;
  printf("%-34s %-8s %5s %-62s %10s %10s\n", "case", "budget", "fits", "fastest measured / chosen", "measured s", "predicted");
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const bcase *bc = &cases[k];
    void *cfg = w->cfg_new();
    char v[32];
    w->cfg_set(cfg, "preset", bc->preset, err, sizeof err);
    snprintf(v, sizeof v, "%d", bc->size);
    w->cfg_set(cfg, "size", v, err, sizeof err);
    snprintf(v, sizeof v, "%d", bc->batch);
    w->cfg_set(cfg, "batch", v, err, sizeof err);
    /* the budget: a share of the unconstrained plan */
    mf_search_opts so = mf_search_opts_default();
    so.threads = threads;
    mf_search_result r0;
    if (mf_workload_search(w, cfg, &so, &r0, err, sizeof err) < 0) { fprintf(stderr, "%s\n", err); return 1; }
    so.budget = (int64_t)((double)r0.smallest.device_bytes +
                          bc->budget_frac * (double)(r0.unconstrained.device_bytes - r0.smallest.device_bytes));
    mf_search_result_free(&r0);
    mf_search_result r;
    if (mf_workload_search(w, cfg, &so, &r, err, sizeof err) < 0 || !r.found) { fprintf(stderr, "case %zu: nothing fits\n", k); return 1; }
    double best_t = 1e30, chosen_t = -1;
    int best_i = -1, nfit = 0;
    /* two rounds over every fitting setting, keeping each one's best time: on a shared machine a
     * single run can be slowed by other processes */
    double *tm = malloc((size_t)r.n_all * sizeof *tm);
    for (int i = 0; i < r.n_all; i++) tm[i] = 1e30;
    for (int round = 0; round < 2; round++)
      for (int i = 0; i < r.n_all; i++) {
        if (!r.all[i].fits) continue;
        double t = mf_candidate_measure(w, cfg, &r.all[i], "cpu", threads, steps, err, sizeof err);
        if (t < 0) { fprintf(stderr, "measure: %s\n", err); continue; }
        if (t < tm[i]) tm[i] = t;
      }
    for (int i = 0; i < r.n_all; i++) {
      if (!r.all[i].fits) continue;
      nfit++;
      if (tm[i] < best_t) { best_t = tm[i]; best_i = i; }
    }
    chosen_t = tm[0]; /* r.all is ranked: the first is the choice */
    free(tm);
    char name[64], bud[32], d[256];
    snprintf(name, sizeof name, "steg %s %dx%d batch %d", bc->preset, bc->size, bc->size, bc->batch);
    mf_format_bytes((size_t)so.budget, bud, sizeof bud);
    mf_candidate_describe(&r.all[best_i], d, sizeof d);
    printf("%-34s %-8s %5d fastest: %-53s %10.3f %10.3g\n", name, bud, nfit, d, best_t, r.all[best_i].step_s);
    mf_candidate_describe(&r.all[0], d, sizeof d);
    printf("%-34s %-8s %5s chosen:  %-53s %10.3f %10.3g\n", "", "", "", d, chosen_t, r.all[0].step_s);
    double ratio = chosen_t / best_t;
    fflush(stdout);
    printf("%-34s chosen / fastest measured = %.3f %s\n", "", ratio, ratio <= 1.10 ? "(within 10%)" : "(OVER 10%)");
    worst_ok &= ratio <= 1.10;
    mf_search_result_free(&r);
    free(cfg);
  }
  printf("search quality: %s\n", worst_ok ? "every choice within 10% of the fastest measured" : "some choice is more than 10% slower");
  return 0;
}
