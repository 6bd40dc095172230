/* conv_table.c — `memfit plan ... --by-layer`: which implementation runs each convolution of the plan
 * (forward, backward-data, backward-weights), as the planner chose it, with its workspace; text or JSON. */
#include "cli/cli.h"
#include "backend/cpu/cpu.h"
#include "plan/plan.h"
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static int is_conv(const mf_node *n) {
  return n->op == MF_OP_CONV2D || n->op == MF_OP_CONV2D_BWD_DATA || n->op == MF_OP_CONV2D_BWD_WEIGHT;
}

static const char *pass_name(const mf_node *n) {
  if (n->op == MF_OP_CONV2D) return n->phase == MF_PHASE_RECOMPUTE ? "forward (recompute)" : "forward";
  return n->op == MF_OP_CONV2D_BWD_DATA ? "backward-data" : "backward-weights";
}

/* x [N,C,H,W] and w [OC,Cg,KH,KW] of a conv node, whichever of its operands / output they are */
static void conv_xw(const mf_graph *g, const mf_node *n, const mf_node **x, const mf_node **w) {
  const mf_node *s0 = &g->nodes[n->src[0]], *s1 = &g->nodes[n->src[1]];
  *x = n->op == MF_OP_CONV2D_BWD_DATA ? n : s0;
  *w = n->op == MF_OP_CONV2D_BWD_WEIGHT ? n : s1;
}

/* The layer a conv node belongs to, for the table: the forward conv it differentiates (backward-data: the
 * one with the same weight; backward-weights: the one with the same input and weight shape), named by its
 * name, or when that is only the op's by its segment and id ("blk0.phi/conv2d#12"). */
static void layer_label(const mf_graph *g, int id, char *buf, size_t len) {
  const mf_node *n = &g->nodes[id];
  int f = id;
  for (int j = 0; j < g->n && n->op != MF_OP_CONV2D; j++) {
    const mf_node *c = &g->nodes[j];
    if (c->op != MF_OP_CONV2D) continue;
    if (n->op == MF_OP_CONV2D_BWD_DATA ? c->src[1] == n->src[1]
                                       : c->src[0] == n->src[0] && mf_shape_eq(&g->nodes[c->src[1]], n)) { f = j; break; }
  }
  const mf_node *fn = &g->nodes[f];
  if (strcmp(fn->name, mf_op_name(fn->op))) snprintf(buf, len, "%s", fn->name);
  else if (fn->seg >= 0 && fn->seg < g->nseg) snprintf(buf, len, "%s/%s#%d", g->segs[fn->seg].name, fn->name, f);
  else snprintf(buf, len, "%s#%d", fn->name, f);
}

/* the conv nodes the plan's programs run, each once, in the order of first appearance */
static int conv_list(const mf_plan *p, int **out) {
  const mf_graph *g = p->g;
  int *ids = malloc((size_t)(g->n ? g->n : 1) * sizeof *ids);
  unsigned char *seen = calloc((size_t)(g->n ? g->n : 1), 1);
  int n = 0;
  if (!ids || !seen) { free(ids); free(seen); *out = NULL; return 0; }
  const mf_program *prs[MF_MAX_PHASES + 1];
  int np = 0;
  for (int k = 0; k < p->n_phases && p->has_train; k++) prs[np++] = p->phase[k].prog;
  prs[np++] = &p->fwd;
  for (int k = 0; k < np; k++)
    for (int s = 0; s < prs[k]->n_steps; s++) {
      int id = prs[k]->steps[s];
      if (!seen[id] && is_conv(&g->nodes[id])) { seen[id] = 1; ids[n++] = id; }
    }
  free(seen);
  *out = ids;
  return n;
}

void cli_print_convs(const mf_plan *p, int json) {
  const mf_graph *g = p->g;
  int *ids, n = conv_list(p, &ids);
  int threads = p->opts.threads > 0 ? p->opts.threads : omp_get_max_threads();
  int cpu = !strcmp(p->be->name, "cpu");
  char path[1024] = "", why[160] = "";
  int shapes = 0;
  if (cpu) {
    mf_cpu_conv_cache_path(threads, path, sizeof path);
    shapes = mf_cpu_conv_cache_status(threads, why, sizeof why);
  }
  const char *env = getenv("MEMFIT_CONV");
  int ignored = env && !strcmp(env, "rule");
  if (json) {
    printf(",\n  \"convolutions\": {\"backend\": ");
    mf_json_str(stdout, p->be->name);
    printf(", \"threads\": %d, \"conv_cache\": ", threads);
    if (cpu) mf_json_str(stdout, path);
    else printf("null");
    printf(", \"conv_cache_shapes\": %d, \"conv_cache_not_used\": ", ignored ? 0 : shapes);
    mf_json_str(stdout, ignored ? "MEMFIT_CONV=rule" : why);
    printf(", \"nodes\": [");
  } else {
    printf("convolutions: %d node%s, the implementation of each chosen when planning (backend %s, %d thread%s)\n", n,
           n == 1 ? "" : "s", p->be->name, threads, threads == 1 ? "" : "s");
    if (cpu) {
      if (ignored) printf("  conv cache %s: not used (MEMFIT_CONV=rule): the shape rule\n", path);
      else if (*why) printf("  conv cache %s: not used (%s): the shape rule\n", path, why);
      else if (shapes) printf("  conv cache %s: %d measured shape%s (memfit calibrate WORKLOAD measures more)\n", path, shapes,
                              shapes == 1 ? "" : "s");
      else printf("  conv cache %s: none: the shape rule (memfit calibrate WORKLOAD measures each shape)\n", path);
    }
    printf("  %-34s %-20s %-40s %-34s %-24s %12s\n", "layer", "pass", "x / w", "implementation", "chosen by", "workspace");
  }
  for (int i = 0; i < n; i++) {
    const mf_node *nd = &g->nodes[ids[i]], *x, *w;
    conv_xw(g, nd, &x, &w);
    mf_conv_cfg cf = mf_conv_cfg_of(nd);
    char name[128] = "", geo[160], hb[32], layer[160];
    layer_label(g, ids[i], layer, sizeof layer);
    const char *by = "";
    if (!p->be->impl_describe || !p->be->impl_describe(g, nd, name, sizeof name, &by)) {
      snprintf(name, sizeof name, "%s", p->be->name);
      by = "only one";
    }
    size_t ws = p->be->workspace(g, nd);
    if (json) {
      printf("%s\n    {\"node\": %d, \"layer\": ", i ? "," : "", ids[i]);
      mf_json_str(stdout, layer);
      printf(", \"pass\": ");
      mf_json_str(stdout, pass_name(nd));
      printf(", \"x\": [%lld, %lld, %lld, %lld], \"w\": [%lld, %lld, %lld, %lld], \"stride\": %d, \"pad\": [%d, %d, %d, %d], "
             "\"dilation\": %d, \"groups\": %d, \"implementation\": ",
             (long long)x->ne[0], (long long)x->ne[1], (long long)x->ne[2], (long long)x->ne[3], (long long)w->ne[0],
             (long long)w->ne[1], (long long)w->ne[2], (long long)w->ne[3], cf.stride, cf.pt, cf.pl, cf.pb, cf.pr, cf.dil,
             cf.groups);
      mf_json_str(stdout, name);
      printf(", \"chosen_by\": ");
      mf_json_str(stdout, by);
      printf(", \"threads\": %d, \"workspace_bytes\": %zu}", nd->impl_threads, ws);
    } else {
      int l = snprintf(geo, sizeof geo, "x[%lld,%lld,%lld,%lld] w[%lld,%lld,%lld,%lld] s%d", (long long)x->ne[0],
                       (long long)x->ne[1], (long long)x->ne[2], (long long)x->ne[3], (long long)w->ne[0], (long long)w->ne[1],
                       (long long)w->ne[2], (long long)w->ne[3], cf.stride);
      if (mf_conv_cfg_plain(&cf)) l += snprintf(geo + l, sizeof geo - (size_t)l, " p%d", cf.pt);
      else l += snprintf(geo + l, sizeof geo - (size_t)l, " p%d,%d,%d,%d d%d", cf.pt, cf.pl, cf.pb, cf.pr, cf.dil);
      if (cf.groups > 1 && l < (int)sizeof geo) snprintf(geo + l, sizeof geo - (size_t)l, " g%d", cf.groups);
      mf_format_bytes(ws, hb, sizeof hb);
      printf("  %-34s %-20s %-40s %-34s %-24s %12s\n", layer, pass_name(nd), geo, name, by, hb);
    }
  }
  if (json) printf("%s]}", n ? "\n  " : "");
  free(ids);
}
