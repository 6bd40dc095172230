/* profile.c — the per-kind kernel time table of MEMFIT_PROFILE=1 (profile.h): the session times each kernel
 * (after a device sync), this file sums the times by a label per node and prints them. */
#include "train/profile.h"
#include "backend/backend.h"
#include <stdlib.h>
#include <string.h>

mf_profile *mf_profile_init(int n_nodes) {
  const char *e = getenv("MEMFIT_PROFILE");
  if (!e || !*e || !strcmp(e, "0") || n_nodes < 1) return NULL;
  mf_profile *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->n = n_nodes;
  p->sec = calloc((size_t)n_nodes, sizeof *p->sec);
  p->calls = calloc((size_t)n_nodes, sizeof *p->calls);
  if (!p->sec || !p->calls) { mf_profile_free(p); return NULL; }
  return p;
}

int mf_profile_take(mf_profile *p, const void *pr) {
  if (!p) return 0;
  for (int i = 0; i < p->n_warmed; i++)
    if (p->warmed[i] == pr) return 1;
  if (p->n_warmed == (int)(sizeof p->warmed / sizeof p->warmed[0])) return 1;
  p->warmed[p->n_warmed++] = pr;
  return 0;
}

void mf_profile_free(mf_profile *p) {
  if (!p) return;
  free(p->sec);
  free(p->calls);
  free(p);
}

typedef struct prof_row {
  char label[96];
  double sec;
  int64_t calls;
  int nodes;
} prof_row;

/* "conv2d_bwd_weight (backward) [onednn jit:avx2]": the op, its pass, and for ops with several implementations
 * the one the planner chose */
static void node_label(const mf_plan *plan, const mf_node *n, char *buf, size_t len) {
  const char *pass = n->phase == MF_PHASE_BWD ? " (backward)" : n->phase == MF_PHASE_RECOMPUTE ? " (recompute)" : "";
  char impl[64] = "";
  const char *why = NULL;
  if (plan->be->impl_describe && plan->be->impl_describe(plan->g, n, impl, sizeof impl, &why) <= 0) impl[0] = 0;
  snprintf(buf, len, "%s%s%s%s%s", mf_op_name(n->op), pass, impl[0] ? " [" : "", impl, impl[0] ? "]" : "");
}

static int row_cmp(const void *a, const void *b) {
  double x = ((const prof_row *)a)->sec, y = ((const prof_row *)b)->sec;
  return x < y ? 1 : x > y ? -1 : 0;
}

void mf_profile_print(const mf_profile *p, const mf_plan *plan, FILE *f) {
  if (!p || !plan) return;
  int n = p->n < plan->g->n ? p->n : plan->g->n;
  prof_row *rows = calloc((size_t)n, sizeof *rows);
  if (!rows) return;
  int nr = 0;
  double total = 0;
  for (int id = 0; id < n; id++) {
    if (!p->calls[id]) continue;
    char label[96];
    node_label(plan, &plan->g->nodes[id], label, sizeof label);
    int r = 0;
    while (r < nr && strcmp(rows[r].label, label)) r++;
    if (r == nr) snprintf(rows[nr++].label, sizeof rows->label, "%s", label);
    rows[r].sec += p->sec[id];
    rows[r].calls += p->calls[id];
    rows[r].nodes++;
    total += p->sec[id];
  }
  if (p->updates > 0 && nr < n) { /* the optimizer runs outside the programs: its own row */
    snprintf(rows[nr].label, sizeof rows->label, "optimizer update (%lld updates)", (long long)p->updates);
    rows[nr].sec = p->update_sec;
    rows[nr++].nodes = 0;
    total += p->update_sec;
  }
  qsort(rows, (size_t)nr, sizeof *rows, row_cmp);
  if (p->steps == 0) {
    fprintf(f, "memfit profile (MEMFIT_PROFILE): no training step after the first of its program to show (run 2 or more)\n");
    free(rows);
    return;
  }
  double per = 1e3 / (double)p->steps;
  fprintf(f, "memfit profile (MEMFIT_PROFILE): %lld training micro-step%s (forward + backward; not counted: evaluation, and the "
             "first step of each program, which also faults the arenas' pages in), "
             "%.1f ms per step in kernels and the optimizer, %.1f ms per step from the first kernel's start to the last's end\n",
          (long long)p->steps, p->steps == 1 ? "" : "s", total * per, p->step_sec * per);
  fprintf(f, "  %-60s %6s %10s %7s\n", "node kind", "nodes", "ms/step", "share");
  for (int r = 0; r < nr; r++)
    fprintf(f, "  %-60s %6d %10.3f %6.1f%%\n", rows[r].label, rows[r].nodes, rows[r].sec * per,
            total > 0 ? 100 * rows[r].sec / total : 0);
  free(rows);
}
