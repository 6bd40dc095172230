/* plan_json.c — mf_onnx_plan_json: the plan of an ONNX model's training step (and with a budget, the settings
 * the search chooses) as one JSON text, for callers that cannot walk memfit's structs (the Python module). */
#include "memfit.h"
#include "plan/plan.h"
#include "train/json.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pj_ctx {
  const mf_onnx *m;
  const mf_onnx_plan_opts *o;
} pj_ctx;

/* the shapes at micro-batch mb (0: as given): the first axis of every input given is the batch */
static int pj_build(mf_graph *g, int variant, int mb, void *ctx, mf_tensor *loss, char *err, size_t errlen) {
  (void)variant;
  pj_ctx *c = ctx;
  mf_onnx_shape sh[MF_ONNX_MAX_IO];
  int n = c->o->n_inputs < MF_ONNX_MAX_IO ? c->o->n_inputs : MF_ONNX_MAX_IO;
  for (int i = 0; i < n; i++) {
    sh[i] = c->o->inputs[i];
    if (mb > 0) sh[i].dims[0] = mb;
  }
  mf_onnx_build_opts bo = {.n_inputs = n, .inputs = sh, .loss = c->o->loss, .bn_eval = c->o->bn_eval};
  mf_onnx_built bt;
  if (mf_onnx_build(c->m, g, &bo, &bt, err, errlen) < 0) return -1;
  *loss = bt.loss;
  mf_onnx_built_free(&bt);
  return 0;
}

static int pj_batch_ok(int mb, void *ctx, char *why, size_t n) {
  mf_graph *g = mf_graph_init(MF_F32);
  if (!g) { snprintf(why, n, "out of host memory"); return -1; }
  mf_tensor loss;
  int rc = pj_build(g, 0, mb, ctx, &loss, why, n);
  mf_graph_free(g);
  return rc;
}

static void pj_candidate(FILE *f, const mf_candidate *c) {
  char d[256];
  mf_candidate_describe(c, d, sizeof d);
  fprintf(f, "{\"settings\": ");
  mf_json_str(f, d);
  fprintf(f, ", \"micro_batch\": %d, \"accum\": %d, \"dtype\": \"%s\", \"recompute_segments\": %d, \"segments\": %d, "
             "\"invertible\": %d, \"optimizer_offload\": %d, \"device_bytes\": %zu, \"arenas\": {",
          c->micro_batch, c->accum, mf_dtype_name(c->dtype), c->n_recomputed, c->n_seg, c->invertible, c->offload, c->device_bytes);
  for (int k = 0; k < MF_ARENA_COUNT; k++) {
    fprintf(f, "%s", k ? ", " : "");
    mf_json_str(f, mf_arena_name((mf_arena_kind)k));
    fprintf(f, ": %zu", c->arena[k]);
  }
  fprintf(f, "}, \"step_seconds\": ");
  mf_json_num(f, c->step_s);
  fprintf(f, ", \"peak\": ");
  mf_json_str(f, c->peak_desc);
  fprintf(f, "}");
}

/* the JSON into f; 0, or -1 with err */
static int pj_write(const char *path, const mf_onnx_plan_opts *o, FILE *f, char *err, size_t errlen) {
  mf_onnx *m = mf_onnx_open(path, err, errlen);
  if (!m) return -1;
  pj_ctx c = {.m = m, .o = o};
  int rc = -1;
  mf_graph *g = mf_graph_init(MF_F32);
  mf_onnx_built bt;
  int have_bt = 0;
  mf_plan *p = NULL;
  if (!g) { snprintf(err, errlen, "out of host memory"); goto out; }
  mf_onnx_build_opts bo = {.n_inputs = o->n_inputs, .inputs = o->inputs, .loss = o->loss, .bn_eval = o->bn_eval};
  if (mf_onnx_build(m, g, &bo, &bt, err, errlen) < 0) goto out;
  have_bt = 1;
  mf_plan_opts po = mf_plan_opts_default();
  po.threads = o->threads;
  if (o->backend) po.backend = o->backend;
  if (!(p = mf_plan_init(g, bt.loss, &po, err, errlen))) goto out;
  fprintf(f, "{\"model\": ");
  mf_json_str(f, path);
  fprintf(f, ", \"opset\": %lld, \"parameters\": %lld, \"parameter_tensors\": %lld, \"inputs\": {", (long long)mf_onnx_opset(m),
          (long long)bt.n_param_elems, (long long)bt.n_params);
  for (int i = 0; i < bt.n_inputs; i++) {
    fprintf(f, "%s", i ? ", " : "");
    mf_json_str(f, bt.input_names[i]);
    fprintf(f, ": [");
    for (int k = 0; k < mf_tensor_ndim(g, bt.inputs[i]); k++) fprintf(f, "%s%lld", k ? ", " : "", (long long)mf_tensor_dim(g, bt.inputs[i], k));
    fprintf(f, "]");
  }
  fprintf(f, "}, \"loss\": \"%s\", \"arenas\": {", o->loss == MF_ONNX_LOSS_CE ? "cross-entropy" : o->loss == MF_ONNX_LOSS_MSE ? "mse"
                                                  : o->loss == MF_ONNX_LOSS_OWN ? "own" : "none");
  for (int k = 0; k < MF_ARENA_COUNT; k++) {
    fprintf(f, "%s", k ? ", " : "");
    mf_json_str(f, mf_arena_name((mf_arena_kind)k));
    fprintf(f, ": %zu", mf_plan_arena_bytes(p, (mf_arena_kind)k));
  }
  int bwd = 0;
  const char *pk = mf_plan_peak_op(p, &bwd);
  const mf_program *pr = p->peak_phase >= 0 ? p->phase[p->peak_phase].prog : &p->fwd;
  const char *layer = pr->n_steps ? p->g->nodes[pr->steps[pr->peak_step]].name : ""; /* the plan's graph: with backward */
  fprintf(f, "}, \"total_bytes\": %zu, \"peak_op\": ", mf_plan_total_bytes(p));
  mf_json_str(f, pk ? pk : "");
  fprintf(f, ", \"peak_layer\": ");
  mf_json_str(f, layer);
  fprintf(f, ", \"peak_in_backward\": %d", bwd);
  if (o->budget > 0) { /* the search over micro-batch x accumulation, precision and recompute */
    mf_model_builder mb = {.name = path, .effective_batch = o->n_inputs && o->inputs[0].ndim ? (int)o->inputs[0].dims[0] : 1,
                           .build = pj_build, .ctx = &c, .batch_ok = pj_batch_ok};
    if (mb.effective_batch < 1) mb.effective_batch = 1;
    mf_search_opts so = mf_search_opts_default();
    so.budget = o->budget;
    so.threads = o->threads;
    if (o->backend) so.backend = o->backend;
    if (o->dtypes) so.dtypes = o->dtypes;
    mf_search_result r;
    if (mf_search(&mb, &so, &r, err, errlen) < 0) goto out;
    fprintf(f, ", \"budget_bytes\": %lld, \"fits\": %d, \"plans_searched\": %d, \"chosen\": ", (long long)o->budget, r.found,
            r.n_planned);
    if (r.found) pj_candidate(f, &r.best);
    else fprintf(f, "null");
    fprintf(f, ", \"smallest\": ");
    pj_candidate(f, &r.smallest);
    mf_search_result_free(&r);
  }
  fprintf(f, "}\n");
  rc = 0;
out:
  mf_plan_free(p);
  if (have_bt) mf_onnx_built_free(&bt);
  if (g) mf_graph_free(g);
  mf_onnx_close(m);
  return rc;
}

int64_t mf_onnx_plan_json(const char *path, const mf_onnx_plan_opts *o, char *buf, size_t n, char *err, size_t errlen) {
  if (!path || !o || (o->n_inputs && !o->inputs) || o->n_inputs < 0) {
    snprintf(err, errlen, "mf_onnx_plan_json: a NULL path or options, or inputs missing");
    return -1;
  }
  if (o->n_inputs > MF_ONNX_MAX_IO) { snprintf(err, errlen, "mf_onnx_plan_json: more than %d input shapes", MF_ONNX_MAX_IO); return -1; }
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) { snprintf(err, errlen, "out of host memory"); return -1; }
  int rc = pj_write(path, o, f, err, errlen);
  if (fclose(f) != 0 && rc == 0) { snprintf(err, errlen, "out of host memory"); rc = -1; }
  if (rc == 0 && buf && n) {
    size_t k = len < n - 1 ? len : n - 1;
    memcpy(buf, text, k);
    buf[k] = 0;
  }
  free(text);
  return rc < 0 ? -1 : (int64_t)len;
}
