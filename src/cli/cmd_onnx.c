/* cmd_onnx.c — `memfit plan MODEL.onnx --input NAME=SHAPE [--budget SIZE] [--loss L]`: the exact plan of
 * a training step of a model the user exported to ONNX, or with a budget the settings that fit; and
 * `memfit plan --list-unsupported MODEL.onnx`: every node the importer cannot map, at once. */
#include "cli/cli.h"
#include "plan/plan.h"
#include "train/safetensors.h"
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_IN MF_ONNX_MAX_IO

typedef struct onnx_args {
  const char *path;
  mf_onnx_shape in[MAX_IN];
  char names[MAX_IN][256];
  int n_in;
  int loss;
  int64_t budget;
  unsigned dtypes;
  int threads, json, list, bn_eval, run, by_layer;
  const char *backend;
  const char *feed, *dump;      /* --run: the batch from a safetensors file; loss, gradients, weights written to one */
  int sgd;                      /* --run: --optim sgd (default adam) */
  double lr;                    /* --run: --lr (default 1e-4) */
} onnx_args;

/* ctx of the search's model builder: the opened model and the shapes at the given batch */
typedef struct onnx_builder {
  const mf_onnx *m;
  const onnx_args *a;
} onnx_builder;

int cli_is_onnx_model(const char *arg) {
  if (!arg) return 0;
  if (!strcmp(arg, "--list-unsupported")) return 1;
  size_t n = strlen(arg);
  if (n > 5 && !strcmp(arg + n - 5, ".onnx")) return 1;
  struct stat st;
  return stat(arg, &st) == 0 && S_ISREG(st.st_mode);
}

static void onnx_usage(FILE *f) {
  fprintf(f, "usage: memfit plan MODEL.onnx [--input NAME=SHAPE]... [options]\n"
             "       memfit plan --list-unsupported MODEL.onnx\n\n"
             "The exact memory plan of one training step of an ONNX model (torch.onnx.export, opsets 11-17): its\n"
             "initializers are the trained parameters (BatchNormalization's running statistics buffers), its inputs\n"
             "take the shapes given, and a loss is appended. With --budget, the fastest settings that fit (the\n"
             "micro-batch is searched when the model's batch axis is dynamic).\n\n"
             "options:\n"
             "  --input NAME=SHAPE   shape of a model input, e.g. --input input=8x3x224x224 (repeat per input; an\n"
             "                       input not given takes the shape the model fixes)\n"
             "  --loss L             cross-entropy (default: logits [N,K] against i32 labels [N]), mse (against a\n"
             "                       target of the output's shape), own (the model's first output is its loss)\n"
             "  --budget SIZE        find the fastest settings that fit, e.g. 4GiB\n"
             "  --precision P        f32, bf16, f16 or auto (default: f32 without --budget, auto with it)\n"
             "  --bn-eval            BatchNormalization frozen (running statistics, no update)\n"
             "  --backend B          cpu or cuda (default cpu; planning for cuda needs no GPU)\n"
             "  --threads T          CPU threads the plan's workspaces are sized for (default: all cores)\n"
             "  --json               machine-readable output\n"
             "  --by-layer           the activation bytes each layer (ONNX node) keeps for backward, the top ten, and\n"
             "                       the layer at the peak of forward and of backward; and every convolution (forward,\n"
             "                       backward-data, backward-weights) with the implementation chosen for it\n"
             "  --run N              then train N steps on random data (the file's weights) with the memory checked:\n"
             "                       measured bytes per arena next to the plan (exit 1 when they differ)\n"
             "  --feed FILE          with --run: the batch from a safetensors file (f32 tensors named as the model's\n"
             "                       inputs, and 'labels' or 'target' for the loss) instead of random data\n"
             "  --dump FILE          with --run: writes a safetensors file: 'loss' (f64, the first step's), 'grad.NAME'\n"
             "                       (each parameter's gradient of the first step), 'init.NAME' (each parameter and buffer\n"
             "                       as loaded), 'param.NAME' and 'buffer.NAME' (after the last update), all f32 (the PyTorch parity test, tests/onnx_parity.py, reads it)\n"
             "  --optim sgd|adam     with --run: the optimizer (default adam; no weight decay, no momentum)\n"
             "  --lr X               with --run: the learning rate (default 1e-4)\n"
             "  --list-unsupported   list every node memfit cannot map (op type, node name, index) and exit\n\n"
             "exit status: 0 planned (or nothing unsupported), 1 the model or the plan failed (or ops are\n"
             "unsupported), 2 usage error, 3 nothing fits the --budget\n");
}

static int parse_shape(const char *spec, onnx_args *a) {
  const char *eq = strrchr(spec, '=');
  if (!eq || eq == spec) {
    fprintf(stderr, "memfit plan: --input '%s': expected NAME=SHAPE, e.g. input=8x3x224x224\n", spec);
    return -1;
  }
  if (a->n_in == MAX_IN) { fprintf(stderr, "memfit plan: more than %d --input options\n", MAX_IN); return -1; }
  size_t nl = (size_t)(eq - spec);
  if (nl >= sizeof a->names[0]) { fprintf(stderr, "memfit plan: --input '%s': name too long\n", spec); return -1; }
  mf_onnx_shape *s = &a->in[a->n_in];
  memcpy(a->names[a->n_in], spec, nl);
  a->names[a->n_in][nl] = 0;
  s->name = a->names[a->n_in];
  s->ndim = 0;
  const char *p = eq + 1;
  while (*p) {
    char *end;
    long long d = strtoll(p, &end, 10);
    if (end == p || d < 1 || d > ((long long)1 << 40) || (*end && *end != 'x') || s->ndim == MF_MAX_DIMS) {
      fprintf(stderr, "memfit plan: --input '%s': the shape must be 1 to %d positive sizes joined by 'x', e.g. 8x3x224x224\n",
              spec, MF_MAX_DIMS);
      return -1;
    }
    s->dims[s->ndim++] = d;
    p = *end ? end + 1 : end;
    if (*end && !*p) { fprintf(stderr, "memfit plan: --input '%s': the shape ends with 'x'\n", spec); return -1; }
  }
  if (!s->ndim) { fprintf(stderr, "memfit plan: --input '%s': no shape after '='\n", spec); return -1; }
  a->n_in++;
  return 0;
}

static int parse(int argc, char **argv, onnx_args *a) {
  memset(a, 0, sizeof *a);
  a->loss = MF_ONNX_LOSS_CE;
  a->backend = "cpu";
  for (int i = 1; i < argc; i++) {
    const char *v;
    if (!strcmp(argv[i], "--help")) { onnx_usage(stdout); return 1; }
    else if (!strcmp(argv[i], "--list-unsupported")) a->list = 1;
    else if (!strcmp(argv[i], "--json")) a->json = 1;
    else if (!strcmp(argv[i], "--bn-eval")) a->bn_eval = 1;
    else if (!strcmp(argv[i], "--by-layer")) a->by_layer = 1;
    else if ((v = cli_opt(argc, argv, &i, "--input"))) { if (parse_shape(v, a) < 0) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--loss"))) {
      a->loss = mf_onnx_loss_parse(v);
      if (a->loss < 0 || a->loss == MF_ONNX_LOSS_NONE) {
        fprintf(stderr, "memfit plan: --loss: '%s' is not cross-entropy, mse or own\n", v);
        return 2;
      }
    } else if ((v = cli_opt(argc, argv, &i, "--budget"))) { if (cli_bytes("--budget", v, &a->budget) < 0) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--precision"))) { if (cli_precision("plan", v, &a->dtypes) < 0) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--backend"))) a->backend = v;
    else if ((v = cli_opt(argc, argv, &i, "--threads"))) { if (cli_int("--threads", v, 0, 4096, &a->threads) < 0) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--run"))) { if (cli_int("--run", v, 1, 1000000, &a->run) < 0) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--feed"))) a->feed = v;
    else if ((v = cli_opt(argc, argv, &i, "--dump"))) a->dump = v;
    else if ((v = cli_opt(argc, argv, &i, "--optim"))) {
      if (strcmp(v, "sgd") && strcmp(v, "adam")) { fprintf(stderr, "memfit plan: --optim: '%s' is not sgd or adam\n", v); return 2; }
      a->sgd = !strcmp(v, "sgd");
    } else if ((v = cli_opt(argc, argv, &i, "--lr"))) {
      char *end;
      a->lr = strtod(v, &end);
      if (!*v || *end || !(a->lr > 0 && a->lr <= 10)) { fprintf(stderr, "memfit plan: --lr: '%s' is not a number above 0 and at most 10\n", v); return 2; }
    }
    else if (argv[i][0] == '-' && argv[i][1]) return cli_unknown_option("plan", argv[i]);
    else if (!a->path) a->path = argv[i];
    else { fprintf(stderr, "memfit plan: a second model '%s' (one at a time)\n", argv[i]); return 2; }
  }
  if (!a->path) { fprintf(stderr, "memfit plan: no model file given\n"); onnx_usage(stderr); return 2; }
  if (a->run && a->budget) { fprintf(stderr, "memfit plan: --run checks the plan as given; leave out --budget\n"); return 2; }
  if (!a->run && (a->feed || a->dump || a->lr > 0)) { fprintf(stderr, "memfit plan: --feed, --dump and --lr go with --run N\n"); return 2; }
  return 0;
}

/* the shapes at micro-batch mb: the first axis of every input given scales from the given batch */
static int shapes_at(const onnx_args *a, int mb, mf_onnx_shape *out) {
  for (int i = 0; i < a->n_in; i++) {
    out[i] = a->in[i];
    if (mb > 0) out[i].dims[0] = mb;
  }
  return a->n_in;
}

static int build_at(mf_graph *g, int variant, int mb, void *ctx, mf_tensor *loss, char *err, size_t errlen) {
  (void)variant;
  onnx_builder *b = ctx;
  mf_onnx_shape sh[MAX_IN];
  mf_onnx_build_opts bo = {.n_inputs = shapes_at(b->a, mb, sh), .inputs = sh, .loss = b->a->loss, .bn_eval = b->a->bn_eval};
  mf_onnx_built bt;
  if (mf_onnx_build(b->m, g, &bo, &bt, err, errlen) < 0) return -1;
  *loss = bt.loss;
  mf_onnx_built_free(&bt);
  return 0;
}

static int batch_ok(int mb, void *ctx, char *why, size_t n) {
  mf_graph *g = mf_graph_init(MF_F32);
  if (!g) { snprintf(why, n, "out of host memory"); return -1; }
  mf_tensor loss;
  int rc = build_at(g, 0, mb, ctx, &loss, why, n);
  mf_graph_free(g);
  return rc;
}

/* --dump: each parameter's gradient (grads 1: "grad.NAME"), or each parameter and buffer (grads 0: "param.NAME",
 * "buffer.NAME"; with init set "init.NAME": the values loaded from the file) as f32 into w; the copies are kept in
 * held until the file is written. 0, or 1. */
static int dump_tensors(mf_session *s, const mf_graph *g, mf_st_writer *w, float **held, int *n_held, int grads, int init) {
  for (int id = 0; id < g->n; id++) {
    const mf_node *nd = &g->nodes[id];
    if (nd->role != MF_ROLE_PARAM && (grads || nd->role != MF_ROLE_BUFFER)) continue;
    size_t n = (size_t)mf_node_numel(nd);
    float *v = malloc((n ? n : 1) * sizeof *v);
    if (!v) { fprintf(stderr, "memfit plan: --dump: out of host memory\n"); return 1; }
    held[(*n_held)++] = v;
    if ((grads ? mf_session_read_grad(s, id, v, n) : mf_session_read(s, id, v, n)) != 0) {
      fprintf(stderr, "memfit plan: --dump: reading '%s' failed\n", nd->name);
      return 1;
    }
    char key[MF_NAME_LEN + 16];
    snprintf(key, sizeof key, "%s.%s", grads ? "grad" : init ? "init" : nd->role == MF_ROLE_PARAM ? "param" : "buffer", nd->name);
    mf_st_writer_add(w, key, MF_F32, nd->ndim, nd->ne, v);
  }
  return 0;
}

/* --run: N training steps on random data (deterministic), the arenas' measured high-water marks against the
 * plan; returns 0 when every arena matches */
static int run_steps(const onnx_args *a, const mf_onnx *m, mf_graph *g, const mf_onnx_built *bt, const mf_plan_opts *po) {
  char err[1024];
  mf_train_opts to = mf_train_opts_default();
  to.plan = *po;
  to.threads = a->threads;
  to.debug_memory = 1;
  to.lr = a->lr > 0 ? a->lr : 1e-4;
  to.weight_decay = 0;
  to.momentum = 0;
  to.plan.optim = a->sgd ? MF_SGD : MF_ADAM;
  to.groups[0].lr = to.lr, to.groups[0].weight_decay = 0, to.groups[0].momentum = 0;
  mf_session *s = mf_session_init(g, bt->loss, &to, err, sizeof err);
  if (!s) { fprintf(stderr, "memfit plan: --run: %s\n", err); return 1; }
  if (mf_onnx_load_weights(m, bt, s, err, sizeof err) < 0) { fprintf(stderr, "memfit plan: --run: %s\n", err); mf_session_free(s); return 1; }
  uint64_t st = 0x9e3779b97f4a7c15ull;
  int64_t K = bt->labels >= 0 && a->loss == MF_ONNX_LOSS_CE ? mf_tensor_dim(g, bt->outputs[0], 1) : 0;
  mf_tensor ins[MF_ONNX_MAX_IO + 1];
  const char *names[MF_ONNX_MAX_IO + 1];
  int nin = 0;
  for (int i = 0; i < bt->n_inputs; i++) names[nin] = bt->input_names[i], ins[nin++] = bt->inputs[i];
  if (bt->labels >= 0) names[nin] = a->loss == MF_ONNX_LOSS_CE ? "labels" : "target", ins[nin++] = bt->labels;
  mf_st_file *ff = NULL;
  if (a->feed && !(ff = mf_st_open(a->feed, err, sizeof err))) { fprintf(stderr, "memfit plan: --feed: %s\n", err); mf_session_free(s); return 1; }
  for (int i = 0; i < nin; i++) {
    size_t n = (size_t)mf_tensor_numel(g, ins[i]);
    if (ff) { /* the batch as given: f32, the input's element count */
      const mf_st_tensor *t = mf_st_find(ff, names[i]);
      if (!t || t->dtype != MF_F32 || (size_t)t->numel != n) {
        fprintf(stderr, "memfit plan: --feed %s: input '%s' needs an F32 tensor of %zu values; the file %s\n", a->feed, names[i], n,
                !t ? "has no tensor of that name" : t->dtype != MF_F32 ? "holds another dtype" : "holds another count");
        mf_st_close(ff);
        mf_session_free(s);
        return 1;
      }
      mf_session_write_input(s, ins[i], t->data, n);
      continue;
    }
    float *v = malloc(n * sizeof *v);
    if (!v) { mf_session_free(s); fprintf(stderr, "memfit plan: --run: out of host memory\n"); return 1; }
    int integer = mf_tensor_dtype(g, ins[i]) == MF_I32;
    for (size_t k = 0; k < n; k++) {
      st = st * 6364136223846793005ull + 1442695040888963407ull;
      double u = (double)(st >> 11) / 9007199254740992.0;
      v[k] = integer ? (float)(int64_t)(u * (double)(ins[i] == bt->labels && K > 0 ? K : 2)) : (float)(2 * u - 1);
    }
    mf_session_write_input(s, ins[i], v, n);
    free(v);
  }
  mf_st_close(ff);
  /* --dump: the first step's loss and gradients, the values after the last update */
  mf_st_writer *dw = a->dump ? mf_st_writer_init() : NULL;
  float **held = NULL;
  int n_held = 0;
  double loss0 = 0;
  if (a->dump && (!dw || !(held = calloc((size_t)3 * (size_t)g->n, sizeof *held)))) {
    fprintf(stderr, "memfit plan: --dump: out of host memory\n");
    mf_st_writer_free(dw);
    mf_session_free(s);
    return 1;
  }
  int bad = dw ? dump_tensors(s, g, dw, held, &n_held, 0, 1) : 0;
  for (int step = 0; step < a->run && !bad; step++) {
    double l = mf_session_micro_step(s);
    if (dw && step == 0 && l == l) { /* the gradients of the first step, before its update */
      loss0 = l;
      bad |= dump_tensors(s, g, dw, held, &n_held, 1, 0);
    }
    if (mf_session_update(s) < 0 || l != l) { fprintf(stderr, "memfit plan: --run: step %d failed\n", step + 1); bad = 1; break; }
    printf("step %d: loss %.6g\n", step + 1, l);
  }
  if (dw && !bad) {
    int64_t one = 1;
    bad |= dump_tensors(s, g, dw, held, &n_held, 0, 0);
    mf_st_writer_add(dw, "loss", MF_F64, 1, &one, &loss0);
    if (!bad && mf_st_writer_save(dw, a->dump, err, sizeof err) < 0) { fprintf(stderr, "memfit plan: --dump: %s\n", err); bad = 1; }
    else if (!bad) printf("wrote %s: the first step's loss and gradients, the weights after step %d\n", a->dump, a->run);
  }
  for (int i = 0; i < n_held; i++) free(held[i]);
  free(held);
  mf_st_writer_free(dw);
  const mf_plan *p = mf_session_plan(s);
  printf("arena                        planned B     measured B\n");
  for (int k = 0; k < MF_ARENA_COUNT; k++) {
    size_t pl = mf_plan_arena_bytes(p, (mf_arena_kind)k), me = mf_session_measured_bytes(s, (mf_arena_kind)k);
    printf("  %-24s %14zu %14zu%s\n", mf_arena_name((mf_arena_kind)k), pl, me, pl == me ? "" : "  DIFFERENT");
    bad |= pl != me;
  }
  char h[32];
  mf_format_bytes(mf_peak_rss_bytes(), h, sizeof h);
  printf("measured == planned: %s (process peak RSS %s)\n", bad ? "NO" : "yes, every arena", h);
  mf_session_free(s);
  return bad;
}

typedef struct layer_row { const char *name; size_t bytes; int tensors; } layer_row;
static int row_cmp_name(const void *a, const void *b) { return strcmp(((const layer_row *)a)->name, ((const layer_row *)b)->name); }
static int row_cmp_bytes(const void *a, const void *b) {
  size_t x = ((const layer_row *)a)->bytes, y = ((const layer_row *)b)->bytes;
  return x < y ? 1 : x > y ? -1 : strcmp(((const layer_row *)a)->name, ((const layer_row *)b)->name);
}

static void peak_line(FILE *f, const mf_graph *g, const mf_program *pr, int s, int json) {
  const mf_node *n = &g->nodes[pr->steps[s]];
  if (json) {
    fprintf(f, "{\"bytes\": %zu, \"op\": ", pr->live[s]);
    mf_json_str(f, mf_op_name(n->op));
    fprintf(f, ", \"layer\": ");
    mf_json_str(f, n->name);
    fprintf(f, ", \"step\": %d}", s + 1);
  } else {
    char h[32];
    mf_format_bytes(pr->live[s], h, sizeof h);
    fprintf(f, "%s at %s '%s' (step %d of %d)\n", h, mf_op_name(n->op), n->name, s + 1, pr->n_steps);
  }
}

/* --by-layer: the forward activations backward reads (kept across the turn), summed by layer name, and the
 * steps where forward and backward peak. JSON: fields of the object being printed (no braces). */
static void print_by_layer(const mf_plan *p, int json) {
  const mf_graph *g = p->g;
  const mf_program *pr = &p->train;
  if (!p->has_train || !pr->n_steps) return;
  int *last = malloc((size_t)g->n * sizeof *last);
  layer_row *rows = malloc((size_t)g->n * sizeof *rows);
  if (!last || !rows) { free(last); free(rows); return; }
  for (int i = 0; i < g->n; i++) last[i] = -1;
  int first_bwd = pr->n_steps;
  for (int st = 0; st < pr->n_steps; st++) {
    const mf_node *n = &g->nodes[pr->steps[st]];
    if (n->phase != MF_PHASE_FWD && first_bwd == pr->n_steps) first_bwd = st;
    for (int j = 0; j < n->nsrc; j++) last[mf_node_alias_root(g, n->src[j])] = st;
  }
  int nr = 0;
  size_t kept = 0;
  for (int st = 0; st < first_bwd; st++) {
    int id = pr->steps[st];
    const mf_node *n = &g->nodes[id];
    if (mf_node_arena(n) != MF_ARENA_ACT || pr->act_off[id] == MF_NO_OFFSET || last[id] < first_bwd) continue;
    rows[nr++] = (layer_row){n->name, mf_node_bytes(n), 1};
    kept += mf_node_bytes(n);
  }
  qsort(rows, (size_t)nr, sizeof *rows, row_cmp_name);
  int nl = 0;
  for (int i = 0; i < nr; i++) {
    if (nl && !strcmp(rows[nl - 1].name, rows[i].name)) { rows[nl - 1].bytes += rows[i].bytes; rows[nl - 1].tensors++; }
    else rows[nl++] = rows[i];
  }
  qsort(rows, (size_t)nl, sizeof *rows, row_cmp_bytes);
  int fpk = 0, bpk = first_bwd < pr->n_steps ? first_bwd : 0;
  for (int st = 0; st < pr->n_steps; st++) {
    if (st < first_bwd && pr->live[st] > pr->live[fpk]) fpk = st;
    if (st >= first_bwd && pr->live[st] > pr->live[bpk]) bpk = st;
  }
  int top = nl < 10 ? nl : 10;
  if (json) {
    printf(",\n  \"kept_for_backward_bytes\": %zu,\n  \"layers_keeping\": %d,\n  \"by_layer\": [", kept, nl);
    for (int i = 0; i < top; i++) {
      printf(i ? ",\n    {\"layer\": " : "\n    {\"layer\": ");
      mf_json_str(stdout, rows[i].name);
      printf(", \"kept_bytes\": %zu, \"tensors\": %d}", rows[i].bytes, rows[i].tensors);
    }
    printf("],\n  \"forward_peak\": ");
    peak_line(stdout, g, pr, fpk, 1);
    printf(",\n  \"backward_peak\": ");
    if (first_bwd < pr->n_steps) peak_line(stdout, g, pr, bpk, 1);
    else printf("null");
  } else {
    char h[32];
    mf_format_bytes(kept, h, sizeof h);
    printf("activations kept for backward: %s in %d layers; the top %d:\n", h, nl, top);
    for (int i = 0; i < top; i++) {
      mf_format_bytes(rows[i].bytes, h, sizeof h);
      printf("  %12s  %s%s\n", h, rows[i].name, rows[i].tensors > 1 ? "" : "");
    }
    printf("forward peak: ");
    peak_line(stdout, g, pr, fpk, 0);
    if (first_bwd < pr->n_steps) {
      printf("backward peak: ");
      peak_line(stdout, g, pr, bpk, 0);
    }
  }
  free(last);
  free(rows);
}

static int list_unsupported(const onnx_args *a) {
  char err[1024];
  mf_onnx *m = mf_onnx_open(a->path, err, sizeof err);
  if (!m) { fprintf(stderr, "memfit plan: %s\n", err); return 1; }
  int n = mf_onnx_unsupported(m, stdout);
  if (n == 0) printf("%s: every node maps onto memfit's ops (opset %lld)\n", a->path, (long long)mf_onnx_opset(m));
  else printf("%s: %d unsupported node%s\n", a->path, n, n == 1 ? "" : "s");
  mf_onnx_close(m);
  return n ? 1 : 0;
}

int mf_cmd_plan_onnx(int argc, char **argv) {
  onnx_args a;
  int rc = parse(argc, argv, &a);
  if (rc) return rc == 1 ? 0 : rc;
  if (a.list) return list_unsupported(&a);
  char err[1024];
  mf_onnx *m = mf_onnx_open(a.path, err, sizeof err);
  if (!m) { fprintf(stderr, "memfit plan: %s\n", err); return 1; }
  int batch = a.n_in ? (int)a.in[0].dims[0] : 0;
  onnx_builder ob = {.m = m, .a = &a};
  /* the plan as given first: its errors (an unsupported op, a shape conflict) are the clearest */
  mf_graph *g = mf_graph_init(MF_F32);
  mf_onnx_shape sh[MAX_IN];
  mf_onnx_build_opts bo = {.n_inputs = shapes_at(&a, 0, sh), .inputs = sh, .loss = a.loss, .bn_eval = a.bn_eval};
  mf_onnx_built bt;
  if (mf_onnx_build(m, g, &bo, &bt, err, sizeof err) < 0) {
    fprintf(stderr, "memfit plan: %s\n", err);
    int nu = mf_onnx_unsupported(m, NULL);
    if (nu > 1) fprintf(stderr, "memfit plan: %d nodes are unsupported in all: memfit plan --list-unsupported %s\n", nu, a.path);
    mf_graph_free(g);
    mf_onnx_close(m);
    return 1;
  }
  if (!batch && bt.n_inputs) batch = (int)mf_tensor_dim(g, bt.inputs[0], 0);
  if (!a.budget) {
    mf_plan_opts po = mf_plan_opts_default();
    po.threads = a.threads;
    po.backend = a.backend;
    mf_graph *gp = g;
    mf_graph *g2 = NULL;
    if (a.dtypes && !(a.dtypes & 1u << MF_F32)) { /* rebuild in the precision asked for */
      int dt = a.dtypes & 1u << MF_BF16 ? MF_BF16 : MF_F16;
      g2 = mf_graph_init((mf_dtype)dt);
      mf_onnx_built_free(&bt);
      if (mf_onnx_build(m, g2, &bo, &bt, err, sizeof err) < 0) {
        fprintf(stderr, "memfit plan: %s\n", err);
        mf_graph_free(g2);
        rc = 1;
        goto out;
      }
      gp = g2;
    }
    mf_plan *p = mf_plan_init(gp, bt.loss, &po, err, sizeof err);
    if (!p) { fprintf(stderr, "memfit plan: %s: %s\n", a.path, err); rc = 1; if (g2) mf_graph_free(g2); goto out; }
    if (a.json) {
      printf("{\n  \"model\": ");
      mf_json_str(stdout, a.path);
      printf(",\n  \"opset\": %lld,\n  \"parameters\": %lld,\n  \"parameter_tensors\": %lld,\n  \"arenas\": {",
             (long long)mf_onnx_opset(m), (long long)bt.n_param_elems, (long long)bt.n_params);
      for (int k = 0; k < MF_ARENA_COUNT; k++) {
        printf("%s\n    ", k ? "," : "");
        mf_json_str(stdout, mf_arena_name((mf_arena_kind)k));
        printf(": %zu", mf_plan_arena_bytes(p, (mf_arena_kind)k));
      }
      int bwd = 0;
      const char *pk = mf_plan_peak_op(p, &bwd);
      printf("\n  },\n  \"total_bytes\": %zu,\n  \"peak_op\": ", mf_plan_total_bytes(p));
      mf_json_str(stdout, pk ? pk : "");
      printf(",\n  \"peak_in_backward\": %d", bwd);
      if (a.by_layer) { print_by_layer(p, 1); cli_print_convs(p, 1); }
      printf("\n}\n");
    } else {
      printf("%s: ONNX opset %lld, %lld parameters in %lld tensors, inputs", a.path, (long long)mf_onnx_opset(m),
             (long long)bt.n_param_elems, (long long)bt.n_params);
      for (int i = 0; i < bt.n_inputs; i++) {
        printf(" %s[", bt.input_names[i]);
        for (int k = 0; k < mf_tensor_ndim(gp, bt.inputs[i]); k++)
          printf(k ? "x%lld" : "%lld", (long long)mf_tensor_dim(gp, bt.inputs[i], k));
        printf("]");
      }
      printf(", loss %s\n", a.loss == MF_ONNX_LOSS_CE ? "cross-entropy" : a.loss == MF_ONNX_LOSS_MSE ? "mse" : "own");
      mf_plan_print(p, stdout);
      if (a.by_layer) { print_by_layer(p, 0); cli_print_convs(p, 0); }
    }
    mf_plan_free(p);
    if (a.run) rc = run_steps(&a, m, gp, &bt, &po);
    if (g2) mf_graph_free(g2);
    goto out;
  }
  /* --budget: the search over micro-batch x accumulation, precision and recompute */
  {
    mf_model_builder mb = {.name = a.path, .effective_batch = batch > 0 ? batch : 1, .build = build_at, .ctx = &ob,
                           .batch_ok = batch_ok};
    mf_search_opts so = mf_search_opts_default();
    so.budget = a.budget;
    so.backend = a.backend;
    so.threads = a.threads;
    if (a.dtypes) so.dtypes = a.dtypes;
    mf_search_result r;
    if (mf_search(&mb, &so, &r, err, sizeof err) < 0) { fprintf(stderr, "memfit plan: %s\n", err); rc = 1; goto out; }
    char hb[32], hs[32], d[256];
    mf_format_bytes((size_t)a.budget, hb, sizeof hb);
    const mf_candidate *show = r.found ? &r.best : &r.smallest;
    mf_format_bytes(show->device_bytes, hs, sizeof hs);
    mf_candidate_describe(show, d, sizeof d);
    if (a.json) {
      printf("{\n  \"model\": ");
      mf_json_str(stdout, a.path);
      printf(",\n  \"budget_bytes\": %lld,\n  \"found\": %d,\n  \"settings\": ", (long long)a.budget, r.found);
      mf_json_str(stdout, d);
      printf(",\n  \"micro_batch\": %d,\n  \"accum\": %d,\n  \"dtype\": \"%s\",\n  \"device_bytes\": %zu,\n  \"peak\": ",
             show->micro_batch, show->accum, mf_dtype_name(show->dtype), show->device_bytes);
      mf_json_str(stdout, show->peak_desc);
      printf("\n}\n");
    } else if (r.found) {
      printf("%s: fits in %s with %s: %s (peak %s; %d plans computed)\n", a.path, hb, d, hs, show->peak_desc, r.n_planned);
    } else {
      printf("%s: NOTHING FITS in %s. The smallest any setting needs is %s: %s\n", a.path, hb, hs, d);
    }
    rc = r.found ? 0 : 3;
    mf_search_result_free(&r);
  }
out:
  mf_onnx_built_free(&bt);
  mf_graph_free(g);
  mf_onnx_close(m);
  return rc;
}
