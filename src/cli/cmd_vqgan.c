/* cmd_vqgan.c — `memfit plan vqgan` (the exact plan of both phases, or with --budget what fits without
 * shrinking the model) and `memfit presets vqgan` (the seed's hand-made tiers computed for 4-80 GiB). The
 * planning is src/models/vqgan_workload.c; this file parses and prints. */
#include "cli/cli.h"
#include "models/vqgan_workload.h"
#include "backend/backend.h"
#include <stdlib.h>
#include <string.h>

typedef struct vq_args {
  vqgan_cfg cfg;
  int64_t budget;
  unsigned dtypes;
  int mode, threads, micro;
  const char *backend;
} vq_args;

static void usage(FILE *f, const char *cmd) {
  fprintf(f, "usage: memfit %s vqgan [settings] [options]\n\n", cmd);
  if (!strcmp(cmd, "plan"))
    fprintf(f, "The exact plan of one VQGAN training step: the generator phase and the discriminator phase share the\n"
               "persistent arenas; the activation arena is the larger phase's peak. With --budget: the fastest setting\n"
               "that fits without shrinking the model (micro-batch, precision, recompute) and every one planned.\n\n"
               "options:\n  --budget SIZE        e.g. 4GiB\n"
               "  --precision P        f32, bf16 or auto (default f32 without --budget, auto with it)\n"
               "  --recompute M        none, all or auto (default none without --budget, auto with it)\n"
               "  --micro-batch N      fix the micro-batch (a divisor of --batch)\n");
  else
    fprintf(f, "The setting memfit chooses for each preset at 4, 6, 8, 12, 16, 24, 48 and 80 GiB, and the largest\n"
               "preset that fits each budget without shrinking it (the seed project's hand-made tiers, computed).\n\n"
               "options:\n  --precision P, --recompute M  narrow the search as for plan\n");
  fprintf(f, "  --backend B          cpu or cuda (planning for cuda needs no GPU)\n"
             "  --threads T          CPU threads (default: all cores)\n\nsettings:\n");
  vqgan_cfg_help(f);
  fprintf(f, "\nexit status: 0 planned, 1 failed, 2 usage error, 3 nothing fits the --budget\n");
}

static int parse(int argc, char **argv, const char *cmd, vq_args *a) {
  memset(a, 0, sizeof *a);
  a->mode = -2;
  a->backend = "cpu";
  char err[512];
  vqgan_cfg_preset("low", &a->cfg, err, sizeof err);
  for (int i = 2; i < argc; i++) {
    const char *v;
    if (!strcmp(argv[i], "--help")) { usage(stdout, cmd); return 1; }
    else if ((v = cli_opt(argc, argv, &i, "--budget"))) { if (cli_bytes("--budget", v, &a->budget)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--precision"))) { if (cli_precision(cmd, v, &a->dtypes)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--recompute"))) { if (cli_recompute(cmd, v, &a->mode)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--threads"))) { if (cli_int("--threads", v, 0, 1024, &a->threads)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--backend"))) a->backend = v;
    else if ((v = cli_opt(argc, argv, &i, "--micro-batch"))) { if (cli_int("--micro-batch", v, 1, 1 << 20, &a->micro)) return 2; }
    else if (!strncmp(argv[i], "--", 2) && i + 1 < argc) {
      const char *key = argv[i] + 2, *eq = strchr(key, '=');
      char k[64];
      if (eq) { snprintf(k, sizeof k, "%.*s", (int)(eq - key), key); v = eq + 1; }
      else { snprintf(k, sizeof k, "%s", key); v = argv[++i]; }
      if (vqgan_cfg_set(&a->cfg, k, v, err, sizeof err) < 0) {
        if (strstr(err, "unknown setting")) return cli_unknown_option(cmd, argv[eq ? i : i - 1]);
        fprintf(stderr, "memfit %s vqgan: %s\n", cmd, err);
        return 2;
      }
    } else return cli_unknown_option(cmd, argv[i]);
  }
  if (vqgan_cfg_check(&a->cfg, err, sizeof err) < 0 || vqgan_perceptual_check(&a->cfg, err, sizeof err) < 0) {
    fprintf(stderr, "memfit %s vqgan: %s\n", cmd, err);
    return 2;
  }
  if (a->micro && a->cfg.batch % a->micro) {
    fprintf(stderr, "memfit %s vqgan: --micro-batch %d does not divide --batch %d\n", cmd, a->micro, a->cfg.batch);
    return 2;
  }
  char e2[256];
  if (!mf_backend_get(a->backend, e2, sizeof e2)) { fprintf(stderr, "memfit %s vqgan: --backend: %s\n", cmd, e2); return 2; }
  return 0;
}

static void cand_line(const vqgan_cand *c, const vqgan_cand *ref) {
  char mb[32], t[32];
  snprintf(mb, sizeof mb, "%d x %d", c->micro, c->accum);
  snprintf(t, sizeof t, "%.2fx", ref && ref->time > 0 ? c->time / ref->time : 1.0);
  printf("  %-12s %-5s %-9s %9.3f GiB  (generator %.3f GiB, discriminator %.3f GiB of activations)  %s%s\n", mb,
         mf_dtype_name(c->dtype), c->recompute ? "all" : "none", c->total / 1073741824.0, c->peak[0] / 1073741824.0,
         c->peak[1] / 1073741824.0, t, c->fits ? "" : "  does not fit");
}

int mf_cmd_plan_vqgan(int argc, char **argv) {
  vq_args a;
  int rc = parse(argc, argv, "plan", &a);
  if (rc) return rc == 1 ? 0 : rc;
  char desc[512], err[1024], d[256];
  vqgan_cfg_describe(&a.cfg, desc, sizeof desc);
  printf("%s\n", desc);
  vqgan_search_opts so = {a.budget, a.backend, a.threads, a.dtypes ? a.dtypes : (1u << MF_F32), a.mode < 0 ? 0 : a.mode,
                          a.micro ? a.micro : a.cfg.micro_batch};
  if (a.budget) {
    so.dtypes = a.dtypes ? a.dtypes : (1u << MF_F32) | (1u << MF_BF16);
    so.mode = a.mode == -2 ? -1 : a.mode;
    so.micro = a.micro;
  }
  vqgan_cand cands[64];
  int nc = 0;
  int src = vqgan_search(&a.cfg, &so, cands, 64, &nc, err, sizeof err);
  if (src < 0 || nc == 0) {
    fprintf(stderr, "memfit plan vqgan: %s\n", src < 0 ? err : "no setting to plan");
    return 1;
  }
  const vqgan_cand *best = &cands[0];
  char hb[32];
  mf_format_bytes((size_t)a.budget, hb, sizeof hb);
  if (a.budget && !best->fits) {
    const vqgan_cand *sm = &cands[0];
    for (int i = 1; i < nc; i++) if (cands[i].total < sm->total) sm = &cands[i];
    vqgan_cand_describe(sm, d, sizeof d);
    printf("\nNOTHING FITS in %s without shrinking the model. The smallest setting needs %.3f GiB: %s.\n"
           "Give it at least that (--budget), or shrink the model (--preset, --ch, --size, --codes).\n", hb, sm->total / 1073741824.0, d);
    return 3;
  }
  if (a.budget) {
    vqgan_cand_describe(best, d, sizeof d);
    printf("\nchosen for a budget of %s without shrinking the model: %s\n", hb, d);
    printf("every setting planned (micro x acc, precision, recompute, device bytes, phase peaks, predicted time):\n");
    for (int i = 0; i < nc; i++) cand_line(&cands[i], best);
  } else {
    vqgan_cand_describe(best, d, sizeof d);
    printf("settings: %s\n", d);
  }
  /* the chosen plan in full, with both phases and which one sets the activation arena */
  mf_plan *p;
  mf_graph *g;
  vqgan_cand c;
  if (vqgan_plan_one(&a.cfg, best->micro, best->dtype, best->recompute, a.backend, a.threads, &c, &p, &g, err, sizeof err) < 0) {
    fprintf(stderr, "memfit plan vqgan: %s\n", err);
    return 1;
  }
  printf("\n");
  mf_plan_print(p, stdout);
  printf("peak set by the %s phase (generator %.3f GiB, discriminator %.3f GiB of activations)\n",
         c.peak[0] >= c.peak[1] ? "generator" : "discriminator", c.peak[0] / 1073741824.0, c.peak[1] / 1073741824.0);
  mf_plan_free(p);
  mf_graph_free(g);
  return 0;
}

int mf_cmd_presets_vqgan(int argc, char **argv) {
  vq_args a;
  int rc = parse(argc, argv, "presets", &a);
  if (rc) return rc == 1 ? 0 : rc;
  if (a.budget) { fprintf(stderr, "memfit presets vqgan: --budget: presets plans 4 to 80 GiB in turn; use 'memfit plan vqgan --budget'\n"); return 2; }
  static const char *names[] = {"low", "mid", "high", "original"};
  static const int gib[] = {4, 6, 8, 12, 16, 24, 48, 80};
  enum { NP = 4, MAXC = 64 };
  static vqgan_cand cands[NP][MAXC];
  int nc[NP];
  char err[1024], desc[512];
  printf("VQGAN presets (the seed's tiers: low for 4-6 GB, mid 8-12 GB, high 16 GB+, original about 12 GB by hand)%s:\n",
         a.cfg.frames > 1 ? ", for clips" : "");
  for (int p = 0; p < NP; p++) {
    vqgan_cfg c;
    vqgan_cfg_preset(names[p], &c, err, sizeof err);
    c.size = a.cfg.size; /* --size and --clips apply to every preset (clips: 128 x 128 unless --size) */
    c.frames = a.cfg.frames;
    if (vqgan_cfg_check(&c, err, sizeof err) < 0) { fprintf(stderr, "memfit presets vqgan: %s: %s\n", names[p], err); return 2; }
    vqgan_cfg_describe(&c, desc, sizeof desc);
    printf("  %-9s %s\n", names[p], desc);
    vqgan_search_opts so = {0, a.backend, a.threads, a.dtypes ? a.dtypes : (1u << MF_F32) | (1u << MF_BF16), a.mode == -2 ? -1 : a.mode, 0};
    if (vqgan_search(&c, &so, cands[p], MAXC, &nc[p], err, sizeof err) < 0) { fprintf(stderr, "memfit presets vqgan: %s\n", err); return 1; }
  }
  printf("\n%-8s %-9s %-12s %-5s %-9s %12s %10s   %s\n", "budget", "preset", "micro x acc", "prec", "recompute", "peak",
         "rel. time", "each preset: fastest setting that fits");
  for (int b = 0; b < 8; b++) {
    size_t budget = (size_t)gib[b] << 30;
    const vqgan_cand *pick[NP] = {0};
    for (int p = 0; p < NP; p++)
      for (int i = 0; i < nc[p] && !pick[p]; i++) /* ranked by time: the first that fits is the fastest */
        if (cands[p][i].total <= budget) pick[p] = &cands[p][i];
    int top = -1;
    for (int p = NP - 1; p >= 0 && top < 0; p--) if (pick[p]) top = p;
    char others[256] = "";
    size_t o = 0;
    for (int p = 0; p < NP; p++)
      if (pick[p])
        o += (size_t)snprintf(others + o, sizeof others - o, "%s%s %dx%d %s%s", p ? ", " : "", names[p], pick[p]->micro, pick[p]->accum,
                              mf_dtype_name(pick[p]->dtype), pick[p]->recompute ? "/rc" : "");
      else o += (size_t)snprintf(others + o, sizeof others - o, "%s%s -", p ? ", " : "", names[p]);
    if (top < 0) { printf("%3d GiB   nothing fits   %s\n", gib[b], others); continue; }
    const vqgan_cand *c = pick[top];
    char mb[32];
    snprintf(mb, sizeof mb, "%d x %d", c->micro, c->accum);
    printf("%3d GiB   %-9s %-12s %-5s %-9s %8.2f GiB %9.2fx   %s\n", gib[b], names[top], mb, mf_dtype_name(c->dtype),
           c->recompute ? "all" : "none", c->total / 1073741824.0, cands[top][0].time > 0 ? c->time / cands[top][0].time : 1.0, others);
  }
  printf("\npreset: the largest preset that fits without shrinking; rc: every block recomputed in backward; rel. time:\n"
         "predicted time per effective batch relative to that preset's fastest plan with no memory limit.\n");
  return 0;
}
