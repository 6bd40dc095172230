/* cmd_plan.c — `memfit plan` (exact memory plan of a workload's training step, or with --budget the
 * fastest settings that fit and the runners-up), `memfit presets` (the chosen settings for common
 * GPU sizes), and the memory timeline picture. */
#include "cli/cli.h"
#include "models/workload.h"
#include "train/measure.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct plan_args {
  const mf_workload *w;
  void *cfg;
  int64_t budget, host_budget;
  int json, threads, micro_batch, mode, variant, offload, by_layer;
  int ranks, shard;          /* --ranks N, --shard-optimizer: the plan of one rank of a data-parallel job */
  unsigned dtypes;
  const char *timeline, *backend;
} plan_args;

static void plan_usage(FILE *f, const char *cmd) {
  int plan = !strcmp(cmd, "plan");
  fprintf(f, "usage: memfit %s WORKLOAD [settings] [options]\n", cmd);
  if (plan) fprintf(f, "       memfit plan MODEL.onnx --input NAME=SHAPE [options]   (an ONNX model: memfit plan M.onnx --help)\n");
  fprintf(f, "\n");
  if (plan)
    fprintf(f, "The exact memory plan of one training step (bytes per arena, where the peak is) with the settings as\n"
               "given; with --budget, the fastest settings that fit, the runners-up and what each would cost.\n");
  else
    fprintf(f, "The settings memfit chooses for 4, 6, 8, 12, 16, 24, 48 and 80 GiB of device memory: micro-batch x\n"
               "accumulation, precision, recomputed segments, graph variant, peak and predicted time. Each option\n"
               "below narrows every row's search.\n");
  fprintf(f, "\nworkloads: %s\n\noptions:\n", mf_workload_names());
  if (plan)
    fprintf(f, "  --budget SIZE        find the fastest settings that fit, e.g. 4GiB, 6000MiB (default: none, plan the\n"
               "                       settings as given)\n"
               "  --timeline FILE.svg  draw memory in use across one training step\n"
               "  --ranks N            the plan of one of N data-parallel ranks (mpirun -np N memfit train ...): its\n"
               "                       bytes, with the gradient all-reduce buckets; the micro-batch is each rank's\n"
               "  --shard-optimizer    with --ranks: ZeRO-1, each rank keeps the optimizer state of its 1/N slice\n");
  if (plan)
    fprintf(f, "  --by-layer           every convolution of the plan (forward, backward-data, backward-weights): the\n"
               "                       implementation chosen for it (oneDNN and its kernel, or memfit's GEMM algorithm;\n"
               "                       measured per shape when 'memfit calibrate WORKLOAD' has been run) and its workspace\n");
  fprintf(f, "  --host-budget SIZE   host memory allowed for offloaded optimizer state, a device backend only\n"
             "                       (default: no limit)\n"
             "  --json               machine-readable output\n");
  if (plan)
    fprintf(f, "  --micro-batch N      fix the micro-batch, a divisor of the effective batch (default: the workload's\n"
               "                       batch without --budget, searched with it)\n"
               "  --precision P        f32, bf16, f16 or auto: f32 and bf16 (default: f32 without --budget, auto with it)\n"
               "  --recompute M        none, all or auto (default: all without --budget, auto: searched, with it)\n"
               "  --variant N          graph variant, listed below (default: the workload's (0, Image-GS 1) without --budget,\n"
               "                       searched with it)\n");
  else
    fprintf(f, "  --micro-batch N      fix the micro-batch, a divisor of the effective batch (default: searched)\n"
               "  --precision P        f32, bf16, f16 or auto: f32 and bf16 (default auto)\n"
               "  --recompute M        none, all or auto (default auto: searched)\n"
               "  --variant N          graph variant, listed below (default: searched)\n");
  fprintf(f, "  --backend B          cpu or cuda (default cpu; planning for cuda needs no GPU)\n"
             "  --threads T          CPU threads the cost model is calibrated for (default: all cores; see\n"
             "                       'memfit calibrate')\n");
  const mf_workload *ws[] = {&mf_workload_steg, &mf_workload_moco, &mf_workload_imagegs};
  for (size_t k = 0; k < sizeof ws / sizeof ws[0]; k++) {
    fprintf(f, "\nsettings of %s: %s\n", ws[k]->name, ws[k]->summary);
    ws[k]->cfg_help(f);
    fprintf(f, "variants of %s (--variant):\n", ws[k]->name);
    for (int v = 0; v < ws[k]->n_variants; v++) fprintf(f, "  %d  %s\n", v, ws[k]->variant_names[v]);
  }
  fprintf(f, "\nsettings of vqgan: 'memfit %s vqgan --help' (its generator and discriminator phases are planned together)\n", cmd);
  if (plan)
    fprintf(f, "\nexit status: 0 planned, 1 the plan failed, 2 usage error, 3 nothing fits the --budget\n");
  else
    fprintf(f, "\nexit status: 0 done (a size where nothing fits is a row, not an error), 1 the search failed, 2 usage error\n");
}

/* parses the shared options; returns 0, 1 (help shown) or 2 (error) */
static int parse(int argc, char **argv, const char *cmd, plan_args *a) {
  memset(a, 0, sizeof *a);
  a->mode = -1;
  a->variant = -1;
  a->backend = "cpu";
  if (argc < 2 || !strcmp(argv[1], "--help")) { plan_usage(argc < 2 ? stderr : stdout, cmd); return argc < 2 ? 2 : 1; }
  a->w = mf_workload_find(argv[1]);
  if (!a->w) {
    const char *names[] = {mf_workload_steg.name, mf_workload_moco.name, mf_workload_imagegs.name}, *near = cli_nearest(argv[1], names, 3);
    fprintf(stderr, "memfit %s: unknown workload '%s'%s%s%s (workloads: %s)\n", cmd, argv[1], near ? "; did you mean '" : "",
            near ? near : "", near ? "'?" : "", mf_workload_names());
    return 2;
  }
  a->cfg = a->w->cfg_new();
  char err[512];
  for (int i = 2; i < argc; i++) {
    const char *v;
    if (!strcmp(argv[i], "--help")) { plan_usage(stdout, cmd); return 1; }
    else if ((v = cli_opt(argc, argv, &i, "--budget"))) {
      if (cli_bytes("--budget", v, &a->budget)) return 2;
    } else if ((v = cli_opt(argc, argv, &i, "--host-budget"))) {
      if (cli_bytes("--host-budget", v, &a->host_budget)) return 2;
    } else if (!strcmp(argv[i], "--json")) a->json = 1;
    else if (!strcmp(argv[i], "--by-layer") && !strcmp(cmd, "plan")) a->by_layer = 1;
    else if ((v = cli_opt(argc, argv, &i, "--timeline"))) a->timeline = v;
    else if ((v = cli_opt(argc, argv, &i, "--ranks"))) { if (cli_int("--ranks", v, 1, 1 << 20, &a->ranks)) return 2; }
    else if (!strcmp(argv[i], "--shard-optimizer")) a->shard = 1;
    else if ((v = cli_opt(argc, argv, &i, "--threads"))) { if (cli_int("--threads", v, 0, 1024, &a->threads)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--micro-batch"))) { if (cli_int("--micro-batch", v, 1, 1 << 20, &a->micro_batch)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--variant"))) { if (cli_int("--variant", v, 0, a->w->n_variants - 1, &a->variant)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--backend"))) a->backend = v;
    else if ((v = cli_opt(argc, argv, &i, "--precision"))) { if (cli_precision(cmd, v, &a->dtypes)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--recompute"))) { if (cli_recompute(cmd, v, &a->mode)) return 2; }
    else if (!strncmp(argv[i], "--", 2) && i + 1 < argc) {
      const char *key = argv[i] + 2, *eq = strchr(key, '=');
      char k[64];
      if (eq) { snprintf(k, sizeof k, "%.*s", (int)(eq - key), key); v = eq + 1; }
      else { snprintf(k, sizeof k, "%s", key); v = argv[++i]; }
      if (a->w->cfg_set(a->cfg, k, v, err, sizeof err) < 0) {
        if (strstr(err, "unknown setting")) return cli_unknown_option(cmd, argv[eq ? i : i - 1]);
        fprintf(stderr, "memfit %s: %s\n", cmd, err);
        return 2;
      }
    } else return cli_unknown_option(cmd, argv[i]);
  }
  if (a->w->cfg_ranks) a->w->cfg_ranks(a->cfg, a->ranks); /* a graph that gathers over the ranks (MoCo) */
  if (a->w->cfg_check && a->w->cfg_check(a->cfg, err, sizeof err) < 0) { fprintf(stderr, "memfit %s: %s\n", cmd, err); return 2; }
  char e2[256];
  if (!mf_backend_get(a->backend, e2, sizeof e2)) { fprintf(stderr, "memfit %s: --backend: %s\n", cmd, e2); return 2; }
  a->offload = strcmp(a->backend, "cpu") != 0; /* host offload only means something with device memory */
  return 0;
}

static void print_candidate_json(FILE *f, const char *key, const mf_candidate *c, const mf_workload *w) {
  char d[256];
  mf_candidate_describe(c, d, sizeof d);
  if (key) { fprintf(f, "  "); mf_json_str(f, key); fprintf(f, ": "); }
  else fprintf(f, "    ");
  fprintf(f, "{\"settings\": ");
  mf_json_str(f, d);
  fprintf(f, ", \"micro_batch\": %d, \"accum\": %d, \"precision\": ", c->micro_batch, c->accum);
  mf_json_str(f, mf_dtype_name(c->dtype));
  fprintf(f, ", \"variant\": ");
  mf_json_str(f, w->variant_names[c->variant]);
  fprintf(f, ", \"recomputed_segments\": %d, \"segments\": %d, \"offload\": %d, \"zero1_ranks\": %d, \"device_bytes\": %zu, "
             "\"staging_bytes\": %zu, \"predicted_step_s\": %.6g, \"fits\": %d, \"peak\": ",
          c->n_recomputed, c->n_seg, c->offload, c->shard_ranks, c->device_bytes, c->staging_bytes, c->step_s, c->fits);
  mf_json_str(f, c->peak_desc);
  fprintf(f, ", \"bytes\": {");
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    if (a) fputs(", ", f);
    mf_json_str(f, mf_arena_name((mf_arena_kind)a));
    fprintf(f, ": %zu", c->arena[a]);
  }
  fprintf(f, "}}");
}

static void print_candidate(const mf_candidate *c, const mf_candidate *ref, int64_t budget) {
  char d[256], h[32], hb[32], fit[128] = "";
  mf_candidate_describe(c, d, sizeof d);
  mf_format_bytes(c->device_bytes, h, sizeof h);
  mf_format_bytes((size_t)budget, hb, sizeof hb);
  if (budget) snprintf(fit, sizeof fit, " (%s %s)", c->fits ? "fits" : "over", hb);
  if (c->side_bytes) { /* the run's bytes besides the step's plan (listed under the plan) */
    char hs[32];
    mf_format_bytes(c->side_bytes, hs, sizeof hs);
    size_t k = strlen(fit);
    snprintf(fit + k, sizeof fit - k, ", with %s besides the step", hs);
  }
  printf("  %s\n    peak %s%s, predicted %.3g s per effective batch (%.2fx the unconstrained plan)\n", d, h, fit, c->step_s,
         c->step_s / ref->step_s);
}

/* Device bytes of w's one-micro-step graph of `batch` samples (variant v; recompute every segment or none) in the
 * chosen plan's precision, with its fixed overhead (0: it does not build or plan); *nseg: the graph's segments. */
static size_t batch_bytes(const mf_workload *w, const void *cfg, int v, int all, int batch, const mf_candidate *c, int ranks, int threads,
                          const char *backend, int *nseg) {
  mf_graph *g = mf_graph_init(c->dtype);
  void *state = NULL;
  mf_tensor loss;
  char err[512];
  size_t bytes = 0;
  if (g && w->build_batch(g, cfg, v, batch, &loss, &state, err, sizeof err) == 0) {
    if (nseg) *nseg = mf_graph_segment_count(g);
    mf_plan_opts po = mf_plan_opts_default();
    po.threads = threads;
    po.backend = backend;
    po.offload_opt = c->offload;
    po.ranks = ranks; /* a graph that gathers over the ranks is planned for them */
    po.recompute = all ? MF_RECOMPUTE_ALL : MF_RECOMPUTE_NONE;
    mf_plan *p = mf_plan_init(g, loss, &po, err, sizeof err);
    size_t planned = 0;
    for (int a = 0; a < MF_ARENA_COUNT; a++) planned += c->arena[a];
    if (p) bytes = mf_plan_total_bytes(p) + (c->device_bytes - planned); /* the backend's fixed overhead */
    mf_plan_free(p);
  }
  if (state) w->state_free(state);
  mf_graph_free(g);
  return bytes;
}

/* The largest one-micro-step batch that fits: bisection (memory grows with the batch) in multiples of the
 * smallest batch the model takes (batch-norm splits); *peak its bytes. 0 when none fits. */
static int fit_batch(const mf_workload *w, const void *cfg, int v, int all, const mf_candidate *c, int ranks, int64_t budget, int threads,
                     const char *backend, int u, size_t *peak) {
  int lo = 0, hi = 1;
  size_t b;
  *peak = 0;
  while (hi <= (1 << 16) && (b = batch_bytes(w, cfg, v, all, hi * u, c, ranks, threads, backend, NULL)) && b <= (size_t)budget)
    lo = hi, *peak = b, hi *= 2;
  while (hi - lo > 1) {
    int mid = lo + (hi - lo) / 2;
    b = batch_bytes(w, cfg, v, all, mid * u, c, ranks, threads, backend, NULL);
    if (b && b <= (size_t)budget) lo = mid, *peak = b;
    else hi = mid;
  }
  return lo * u;
}

/* "the largest batch that fits", storing every activation and, per variant with segments, recomputing them all */
static void largest_batch(const mf_workload *w, const void *cfg, const mf_candidate *c, int ranks, int64_t budget, int threads,
                          const char *backend) {
  char why[160], h[32];
  int u = 2;
  while (u < 4096 && w->batch_ok && w->batch_ok(cfg, u, why, sizeof why) < 0) u++;
  size_t peak;
  int B = fit_batch(w, cfg, 0, 0, c, ranks, budget, threads, backend, u, &peak);
  mf_format_bytes(peak, h, sizeof h);
  if (B) printf("largest batch that fits: %d in %s storing every activation (peak %s)%s\n", B, mf_dtype_name(c->dtype), h,
                w->batch_note ? w->batch_note : "");
  else printf("largest batch that fits: none in one micro-step in %s storing every activation\n", mf_dtype_name(c->dtype));
  for (int v = 0; v < (w->n_variants > 0 ? w->n_variants : 1); v++) {
    int nseg = 0;
    if (!batch_bytes(w, cfg, v, 1, u, c, ranks, threads, backend, &nseg) || !nseg) continue;
    int Br = fit_batch(w, cfg, v, 1, c, ranks, budget, threads, backend, u, &peak);
    mf_format_bytes(peak, h, sizeof h);
    if (Br > B) printf("  %d recomputing all %d segments of variant '%s' in backward (peak %s)\n", Br, nseg, w->variant_names[v], h);
  }
  if (u > 2) printf("  (batches in multiples of %d, the smallest the model takes)\n", u);
}

int mf_cmd_plan(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "vqgan")) return mf_cmd_plan_vqgan(argc, argv); /* two phases: cmd_vqgan.c */
  if (argc >= 2 && !mf_workload_find(argv[1]) && cli_is_onnx_model(argv[1])) return mf_cmd_plan_onnx(argc, argv);
  plan_args a;
  int rc = parse(argc, argv, "plan", &a);
  if (rc) { free(a.cfg); return rc == 1 ? 0 : rc; }
  const mf_workload *w = a.w;
  char desc[256], err[1024];
  w->cfg_describe(a.cfg, desc, sizeof desc);
  mf_search_opts so = mf_search_opts_default();
  so.budget = a.budget;
  so.host_budget = a.host_budget;
  so.backend = a.backend;
  so.threads = a.threads;
  so.allow_offload = a.offload;
  so.ranks = a.ranks; /* data parallel: per-rank plans; --budget may shard the optimizer state (ZeRO-1) */
  so.shard = a.shard ? 2 : a.budget ? 1 : 0;
  if (a.dtypes) so.dtypes = a.dtypes;
  if (!a.budget) { /* a plain plan: the settings as given */
    so.fixed_mode = a.mode < 0 ? 1 : a.mode;
    so.fixed_variant = a.variant < 0 ? w->default_variant : a.variant;
    so.fixed_micro_batch = a.micro_batch ? a.micro_batch : w->default_micro_batch(a.cfg);
    if (!a.dtypes) so.dtypes = 1u << MF_F32;
    so.allow_offload = 0;
  } else {
    so.fixed_mode = a.mode;
    so.fixed_variant = a.variant;
    so.fixed_micro_batch = a.micro_batch;
  }
  mf_search_result r;
  if (mf_workload_search(w, a.cfg, &so, &r, err, sizeof err) < 0) { fprintf(stderr, "memfit plan: %s\n", err); free(a.cfg); return 1; }
  /* the plan shown in full: the choice, or with a budget nothing fits, the smallest setting */
  const mf_candidate *show = a.budget && !r.found ? &r.smallest : &r.best;
  if (a.json) {
    printf("{\n  \"workload\": ");
    mf_json_str(stdout, w->name);
    printf(",\n  \"description\": ");
    mf_json_str(stdout, desc);
    printf(",\n  \"budget_bytes\": %lld,\n  \"found\": %d,\n", (long long)a.budget, a.budget ? r.found : 1);
    print_candidate_json(stdout, a.budget && !r.found ? "smallest" : "chosen", show, w);
    printf(",\n");
    print_candidate_json(stdout, "unconstrained", &r.unconstrained, w);
    printf(",\n  \"runners_up\": [");
    for (int i = 0; i < r.n_runners; i++) {
      printf(i ? ",\n" : "\n");
      print_candidate_json(stdout, NULL, &r.runners[i], w);
    }
    printf("],\n  \"plans_computed\": %d,\n  \"calibration\": ", r.n_planned);
    mf_json_str(stdout, r.cal.source); /* the object is closed after the plan below (--by-layer's table goes in it) */
  } else {
    printf("%s\n", desc);
    if (!a.budget) {
      char d[256];
      mf_candidate_describe(show, d, sizeof d);
      printf("settings: %s\n", d);
    }
  }
  /* the full table of the shown plan */
  int timeline_failed = 0;
  mf_graph *g = mf_graph_init(show->dtype);
  void *state = NULL;
  mf_tensor loss;
  if (w->build(g, a.cfg, show->variant, show->micro_batch, &loss, &state, err, sizeof err) == 0) {
    mf_plan_opts po = mf_plan_opts_default();
    mf_candidate_apply(show, &po);
    po.threads = a.threads;
    po.backend = a.backend;
    po.ranks = a.ranks;
    po.shard_optimizer = (a.shard || show->shard_ranks > 1) && a.ranks > 1;
    mf_plan *p = mf_plan_init(g, loss, &po, err, sizeof err);
    if (!p && a.ranks > 1) fprintf(stderr, "memfit plan: %s\n", err);
    if (p && a.json && a.by_layer) cli_print_convs(p, 1);
    if (p && !a.json) {
      mf_plan_print(p, stdout);
      if (po.shard_optimizer) { /* what ZeRO-1 saves: the same plan unsharded */
        mf_plan_opts pu = po;
        pu.shard_optimizer = 0;
        mf_graph *g2 = mf_graph_init(show->dtype);
        void *st2 = NULL;
        mf_tensor l2;
        mf_plan *q = g2 && w->build(g2, a.cfg, show->variant, show->micro_batch, &l2, &st2, err, sizeof err) == 0
                     ? mf_plan_init(g2, l2, &pu, err, sizeof err) : NULL;
        if (q) {
          char h1[32], h2[32], h3[32], h4[32];
          mf_format_bytes(mf_plan_arena_bytes(p, MF_ARENA_OPT), h1, sizeof h1);
          mf_format_bytes(mf_plan_arena_bytes(q, MF_ARENA_OPT), h2, sizeof h2);
          mf_format_bytes(mf_plan_total_bytes(p), h3, sizeof h3);
          mf_format_bytes(mf_plan_total_bytes(q), h4, sizeof h4);
          printf("  per rank with ZeRO-1 over %d ranks: optimizer state %s (unsharded %s), total %s (unsharded %s)\n", a.ranks, h1, h2,
                 h3, h4);
        }
        mf_plan_free(q);
        if (st2) w->state_free(st2);
        mf_graph_free(g2);
      }
      char h[32];
      mf_format_bytes(w->staging_bytes(a.cfg, show->micro_batch), h, sizeof h);
      printf("  %-26s %14zu B  %12s  (host, %s)\n", "loader staging", w->staging_bytes(a.cfg, show->micro_batch), h,
             w->micro_steps ? "the image, read tile by tile" : "data loader: 3 batches in flight");
      if (show->side_bytes) { /* held at the same time as the step, outside its plan: the search's figure */
        mf_format_bytes(show->side_bytes, h, sizeof h);
        printf("  %-26s %14zu B  %12s  (%s, held beside the step; --budget counts it)\n", "besides the step", show->side_bytes, h,
               show->side_what ? show->side_what : "the model's own");
      }
      if (w->explain) w->explain(a.cfg, show->variant, show->micro_batch, stdout);
      if (a.by_layer) cli_print_convs(p, 0);
    }
    if (p && a.timeline) {
      if (mf_report_timeline_svg(a.timeline, p, desc, "plan") != 0) timeline_failed = 1;
      else if (!a.json) printf("timeline: %s\n", a.timeline);
    }
    mf_plan_free(p);
  }
  if (state) w->state_free(state);
  mf_graph_free(g);
  if (a.json) printf("\n}\n");
  if (!a.json && a.budget) {
    char hb[32], hs[32];
    mf_format_bytes((size_t)a.budget, hb, sizeof hb);
    if (!r.found) {
      mf_format_bytes(r.smallest.device_bytes, hs, sizeof hs);
      char d[256];
      mf_candidate_describe(&r.smallest, d, sizeof d);
      printf("\nNOTHING FITS in %s. The smallest any setting needs is %s:\n  %s\n", hb, hs, d);
      printf("Give it at least %s (--budget), or shrink the model or image size (%s, --size).\n", hs,
             !strcmp(w->name, "steg") ? "--growth, --blocks" : w->wider_option ? w->wider_option : "the model's settings");
    } else {
      printf("\nchosen for a budget of %s (%d plans computed; cost model %s):\n", hb, r.n_planned, r.cal.source);
      if (*r.cal.note) printf("cost model: %s\n", r.cal.note);
      print_candidate(&r.best, &r.unconstrained, a.budget);
      if (*r.best.note) printf("    why: %s\n", r.best.note);
      printf("runners-up:\n");
      for (int i = 0; i < r.n_runners; i++) {
        print_candidate(&r.runners[i], &r.unconstrained, a.budget);
        printf("    lost: %s\n", r.runners[i].note);
      }
      if (!r.unconstrained.fits) {
        printf("unconstrained fastest (needs more memory than the budget):\n");
        print_candidate(&r.unconstrained, &r.unconstrained, a.budget);
      }
      if (w->build_batch) largest_batch(w, a.cfg, &r.best, a.ranks, a.budget, a.threads, a.backend);
      double use = (double)r.best.device_bytes / (double)a.budget;
      if (use < 0.85)
        printf("\nthe chosen plan uses %.0f%% of the budget: %.0f%% is idle. It could grow: a larger effective batch "
               "(--batch)%s%s%s, or less recompute, if the model needs it.\n", 100 * use, 100 * (1 - use),
               w->wider_option ? ", a wider model (" : "", w->wider_option ? w->wider_option : "", w->wider_option ? ")" : "");
    }
  }
  mf_search_result_free(&r);
  free(a.cfg);
  return timeline_failed ? 1 : a.budget && !r.found ? 3 : 0;
}

int mf_cmd_presets(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "vqgan")) return mf_cmd_presets_vqgan(argc, argv);
  plan_args a;
  int rc = parse(argc, argv, "presets", &a);
  if (rc) { free(a.cfg); return rc == 1 ? 0 : rc; }
  const mf_workload *w = a.w;
  char desc[256], err[1024];
  /* each row is its own budget, and no plan is drawn: these two belong to `plan` */
  if (a.budget) {
    fprintf(stderr, "memfit presets: --budget: presets plans for 4 to 80 GiB in turn; for one budget use "
                    "'memfit plan %s --budget SIZE'\n", w->name);
    free(a.cfg);
    return 2;
  }
  if (a.timeline) {
    fprintf(stderr, "memfit presets: --timeline: presets draws no plan; use 'memfit plan %s --timeline FILE.svg' "
                    "(with --budget for a chosen plan)\n", w->name);
    free(a.cfg);
    return 2;
  }
  w->cfg_describe(a.cfg, desc, sizeof desc);
  if (a.json) {
    printf("{\n  \"workload\": ");
    mf_json_str(stdout, w->name);
    printf(",\n  \"description\": ");
    mf_json_str(stdout, desc);
    printf(",\n  \"presets\": [");
  }
  else printf("%s\n\n%-8s %-12s %-7s %-9s %-26s %12s %10s\n", desc, "budget", "micro x acc", "prec", "recompute", "variant", "peak", "rel. time");
  static const int gib[] = {4, 6, 8, 12, 16, 24, 48, 80};
  double ref = 0;
  char cal_source[sizeof(((mf_calibration *)0)->source)] = "";
  for (int i = 0; i < 8; i++) {
    mf_search_opts so = mf_search_opts_default();
    so.budget = (int64_t)gib[i] << 30;
    so.host_budget = a.host_budget;
    so.fixed_micro_batch = a.micro_batch;
    so.fixed_variant = a.variant;
    so.fixed_mode = a.mode;
    so.backend = a.backend;
    so.threads = a.threads;
    so.allow_offload = a.offload;
    if (a.dtypes) so.dtypes = a.dtypes;
    mf_search_result r;
    if (mf_workload_search(w, a.cfg, &so, &r, err, sizeof err) < 0) { fprintf(stderr, "memfit presets: %s\n", err); free(a.cfg); return 1; }
    if (!ref) ref = r.unconstrained.step_s;
    snprintf(cal_source, sizeof cal_source, "%s", r.cal.source);
    mf_search_result_free(&r);
    if (a.json) {
      printf("%s\n    {\"budget_bytes\": %lld, \"found\": %d, \"relative_time\": %.6g,\n    ", i ? "," : "",
             (long long)so.budget, r.found, r.found ? r.best.step_s / ref : 0.0);
      print_candidate_json(stdout, r.found ? "chosen" : "smallest", r.found ? &r.best : &r.smallest, w);
      printf("}");
      continue;
    }
    if (!r.found) { printf("%3d GiB   nothing fits (smallest needs %.2f GiB)\n", gib[i], r.smallest.device_bytes / 1073741824.0); continue; }
    const mf_candidate *c = &r.best;
    char mb[32], rec[32];
    snprintf(mb, sizeof mb, "%d x %d", c->micro_batch, c->accum);
    snprintf(rec, sizeof rec, "%d/%d", c->n_recomputed, c->n_seg);
    printf("%3d GiB   %-12s %-7s %-9s %-26s %9.2f GiB %9.2fx\n", gib[i], mb, mf_dtype_name(c->dtype), rec,
           w->variant_names[c->variant], c->device_bytes / 1073741824.0, c->step_s / ref);
  }
  if (a.json) {
    printf("\n  ],\n  \"calibration\": ");
    mf_json_str(stdout, cal_source);
    printf("\n}\n");
  }
  else printf("\nrel. time: predicted time per effective batch relative to the fastest plan with no memory limit\n"
              "(cost model %s).\n", cal_source);
  free(a.cfg);
  return 0;
}
