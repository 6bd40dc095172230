/* cmd_train.c — `memfit train WORKLOAD [options]`: parses the options every workload takes (and hands the
 * rest to the workload), fixes or searches the settings for --budget, makes the session and runs the trainer. */
#include "cli/cli.h"
#include "models/workload.h"
#include "train/session.h"
#include "dist/dist.h"
#include "train/measure.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void train_usage(const mf_workload *w) {
  printf("usage: memfit train %s [options]\n%s.\n", w->name, w->summary);
  printf("Options every workload takes (same meaning for each; defaults are %s's):\n", w->name);
  mf_train_args d;
  memset(&d, 0, sizeof d);
  w->train->train_defaults(&d);
  char batch[32];
  if (d.batch) snprintf(batch, sizeof batch, "%d", d.batch);
  else snprintf(batch, sizeof batch, "the preset's");
  printf("  --data DIR|FILE        image folder (recursive PNG/JPEG), an IDX images file (MNIST, Fashion-MNIST:\n"
         "                         plain or .gz, labels from PREFIX-labels-idx1-ubyte beside it) or 'generated',\n"
         "                         the workload's generated data (default: %s)\n"
         "  --val-data DIR|FILE    validation images (default: a --val-split share of --data's files)\n"
         "  --val-split F          share of --data's files held out for validation (default 0.1; --val-fraction too)\n"
         "  --batch B              effective batch (default %s): micro-batch x accumulation\n"
         "  --micro-batch N        samples per micro-step, dividing --batch (default: --batch without --budget,\n"
         "                         searched with it); --accum N: micro-steps per update (--batch / N per micro-step)\n"
         "  --precision P          f32, bf16, f16 or auto (f32 and bf16) (default: f32 without --budget, auto with it)\n"
         "  --recompute M          none, all or auto (default: all without --budget, auto: searched, with it)\n"
         "  --variant N            the workload's graph variant ('memfit plan %s --help'); the same settings plan the\n"
         "                         same memory as 'memfit plan' does\n"
         "  --budget SIZE          fit the device budget (e.g. 4GiB): searches micro-batch, precision, recompute\n"
         "  --host-budget SIZE     host memory for optimizer state offloaded from a device (default: no limit)\n"
         "  --epochs N | --steps N training length (default %d epochs); --steps: optimizer updates in all\n"
         "  --epoch-steps N        updates per epoch (default: one pass over the training data)\n"
         "  --lr X                 learning rate (default %.3g); --beta1 B1 --beta2 B2 (default %g, %g); --weight-decay W (%g)\n"
         "  --schedule S           cosine, step, constant or plateau (default %s); --warmup N updates (default 0);\n"
         "                         step: --step-every N updates (default a third of the run), --gamma G (0.5);\n"
         "                         plateau: the lr is multiplied by --factor F (0.1) after more than --patience N (10)\n"
         "                         validations without a lower validation loss\n"
         "  --clip X               clip the global gradient norm to X (default 0: off)\n"
         "  --resume CK            continue from a checkpoint written by this command: weights, optimizer state,\n"
         "                         schedule and the data order (the same batches as an uninterrupted run; refused,\n"
         "                         naming the setting, when --data, --seed, --batch... no longer match)\n"
         "  --init FILE            start a new run from the weights of FILE (a model.safetensors or checkpoint of this\n"
         "                         workload with the same model settings): fine-tuning; optimizer and schedule start afresh\n"
         "  --restart-data         with --resume: keep the weights and optimizer state but start the data order again\n"
         "  --every N              also save a checkpoint every N updates (default: at epoch ends)\n"
         "  --val-every N          also validate every N updates (samples OUT/samples-stepNNNNNNN.png)\n"
         "  --stop-after N         stop after update N as if interrupted, with a checkpoint there to --resume from\n"
         "  Ctrl-C (SIGINT) or SIGTERM: finish the current update, save a checkpoint, exit 130 / 143 (a second one\n"
         "                         ends the run at once; the last checkpoint stays whole)\n"
         "  --loss-log FILE        write 'update loss terms...' for every update (exact decimal values)\n"
         "  --log FILE.jsonl       one JSON object per update (losses, lr, grad norm, loss scale, samples/s, memory), per\n"
         "                         validation, and at the end planned vs measured bytes per arena (each starts {\"step\": N)\n"
         "                         (default OUT/log.jsonl); OUT/report.html is drawn from it at every epoch end and at the\n"
         "                         end (curves, memory plan vs measured, timeline, samples; 'memfit report OUT' rebuilds it)\n"
         "  --json                 the final summary (how the run ended, updates, seconds, planned vs measured bytes\n"
         "                         per arena) also as one JSON object, the last line of standard output\n"
         "  --out DIR              checkpoints, model.safetensors, samples, log.jsonl, report.html (default %s)\n"
         "  --backend B            cpu (default) or cuda; on a device the next batch is copied in during each step\n"
         "  --threads T --workers W --seed S (default %d) --log-every SECONDS (default 10)\n"
         "  Data parallel: mpirun -np N memfit train ... runs N ranks (docs/distributed.md): --batch is the global batch,\n"
         "                         each rank trains on every N-th sample of it; rank 0 prints, logs and saves\n"
         "  --bucket SIZE          gradient bytes per all-reduce bucket, started during backward (default 25MiB)\n"
         "  --shard-optimizer      ZeRO-1: each rank keeps the optimizer state of its 1/N slice of the gradients only\n"
         "                         (reduce-scatter after backward, all-gather of the parameters after the update)\n",
         d.data, batch, w->name, d.epochs, d.lr, d.beta1, d.beta2, d.weight_decay, d.schedule, d.out, d.seed);
  printf("Options of %s:\n", w->name);
  w->train->train_help(stdout);
}

/* 0, 1 after --help, 2 after a usage error (said) */
static int train_parse(const mf_workload *w, void *tcfg, int argc, char **argv, mf_train_args *a, int ranks) {
  memset(a, 0, sizeof *a);
  a->data = "generated"; a->out = "run"; a->schedule = "cosine"; a->backend = "cpu";
  a->batch = 8; a->epochs = 10; a->workers = 1; a->log_every = 10; a->val_split = 0.1;
  a->lr = 1e-3; a->beta1 = 0.9; a->beta2 = 0.999; a->weight_decay = 0; a->gamma = 0.5; a->seed = 1;
  a->variant = -1; a->mode = -2; a->patience = 10; a->factor = 0.1;
  w->train->train_defaults(a);
  a->argc = argc;
  a->argv = argv;
  char cmd[64], err[1024];
  snprintf(cmd, sizeof cmd, "train %s", w->name);
  const char *budget = NULL, *host_budget = NULL, *bucket = NULL;
  for (int i = 1; i < argc; i++) {
    const char *v;
#define INT_OPT(nm, field, lo, hi) else if ((v = cli_opt(argc, argv, &i, nm))) { if (cli_int(nm, v, lo, hi, &a->field)) return 2; }
#define DBL_OPT(nm, field, lo, hi) else if ((v = cli_opt(argc, argv, &i, nm))) { if (cli_double(nm, v, lo, hi, &a->field)) return 2; }
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { train_usage(w); return 1; }
    else if ((v = cli_opt(argc, argv, &i, "--data"))) a->data = v;
    else if ((v = cli_opt(argc, argv, &i, "--val-data"))) a->val_data = v;
    else if ((v = cli_opt(argc, argv, &i, "--resume"))) a->resume = v;
    else if ((v = cli_opt(argc, argv, &i, "--init"))) a->init = v;
    else if ((v = cli_opt(argc, argv, &i, "--out"))) a->out = v;
    else if ((v = cli_opt(argc, argv, &i, "--budget"))) budget = v;
    else if ((v = cli_opt(argc, argv, &i, "--host-budget"))) host_budget = v;
    else if ((v = cli_opt(argc, argv, &i, "--bucket"))) bucket = v;
    else if ((v = cli_opt(argc, argv, &i, "--schedule"))) a->schedule = v;
    else if ((v = cli_opt(argc, argv, &i, "--loss-log"))) a->loss_log = v;
    else if ((v = cli_opt(argc, argv, &i, "--log"))) a->log = v;
    else if ((v = cli_opt(argc, argv, &i, "--backend"))) a->backend = v;
    else if (!strcmp(argv[i], "--restart-data")) a->restart_data = 1;
    else if (!strcmp(argv[i], "--json")) a->json = 1;
    else if (!strcmp(argv[i], "--shard-optimizer")) a->shard_optimizer = 1;
    else if ((v = cli_opt(argc, argv, &i, "--precision"))) { if (cli_precision(cmd, v, &a->dtypes)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--recompute"))) { if (cli_recompute(cmd, v, &a->mode)) return 2; }
    INT_OPT("--micro-batch", micro_batch, 1, 1 << 20)
    INT_OPT("--accum", accum, 1, 1 << 20)
    INT_OPT("--variant", variant, 0, w->n_variants - 1)
    INT_OPT("--batch", batch, 1, 1 << 20)
    INT_OPT("--epochs", epochs, 1, 1000000)
    INT_OPT("--steps", steps, 1, 1 << 30)
    INT_OPT("--epoch-steps", epoch_steps, 1, 1 << 30)
    INT_OPT("--warmup", warmup, 0, 1 << 30)
    INT_OPT("--threads", threads, 0, 1024)
    INT_OPT("--workers", workers, 1, 64)
    INT_OPT("--step-every", step_every, 1, 1 << 30)
    INT_OPT("--log-every", log_every, 0, 100000)
    INT_OPT("--seed", seed, 0, 1 << 30)
    INT_OPT("--stop-after", stop_after, 1, 1 << 30)
    INT_OPT("--every", every, 1, 1 << 30)
    INT_OPT("--val-every", val_every, 1, 1 << 30)
    INT_OPT("--patience", patience, 0, 1 << 30)
    DBL_OPT("--factor", factor, 0, 1)
    DBL_OPT("--val-split", val_split, 0, 0.9)
    DBL_OPT("--val-fraction", val_split, 0, 0.9)
    DBL_OPT("--lr", lr, 0, 10)
    DBL_OPT("--beta1", beta1, 0, 0.99999)
    DBL_OPT("--beta2", beta2, 0, 0.99999999)
    DBL_OPT("--weight-decay", weight_decay, 0, 10)
    DBL_OPT("--gamma", gamma, 0, 1)
    DBL_OPT("--clip", clip, 0, 1e12)
    else if (!strncmp(argv[i], "--", 2) && argv[i][2]) { /* one of the workload's own settings */
      char key[64];
      const char *eq = strchr(argv[i], '=');
      size_t kl = eq ? (size_t)(eq - argv[i] - 2) : strlen(argv[i] + 2);
      snprintf(key, sizeof key, "%.*s", (int)(kl < sizeof key ? kl : sizeof key - 1), argv[i] + 2);
      int rc = -2;
      if (eq || i + 1 < argc) {
        rc = w->train->train_cfg_set(tcfg, key, eq ? eq + 1 : argv[i + 1], err, sizeof err);
        if (rc == -1) { fprintf(stderr, "memfit %s: %s\n", cmd, err); return 2; }
        if (rc == 0 && !eq) i++;
      } else if (w->train->train_cfg_set(tcfg, key, "", err, sizeof err) != -2) {
        fprintf(stderr, "memfit: %s needs a value\n", argv[i]);
        return 2;
      }
      if (rc == -2) return cli_unknown_option(cmd, argv[i]);
    }
    else return cli_unknown_option(cmd, argv[i]);
#undef INT_OPT
#undef DBL_OPT
  }
  if (budget && cli_bytes("--budget", budget, &a->budget)) return 2;
  if (host_budget && cli_bytes("--host-budget", host_budget, &a->host_budget)) return 2;
  if (bucket && cli_bytes("--bucket", bucket, &a->bucket_bytes)) return 2;
  a->ranks = ranks > 1 ? ranks : 1; /* a model that gathers over the ranks builds its graph for them (MoCo) */
  /* --batch is the global batch: from here on a->batch is one rank's share (mf_train_check splits it) */
  if (mf_train_check(w->train, tcfg, a, err, sizeof err) < 0) { fprintf(stderr, "memfit %s: %s\n", cmd, err); return 2; }
  if (a->init && a->resume) { fprintf(stderr, "memfit %s: --init and --resume exclude each other (--resume continues a run with its optimizer state; --init starts a new one from a model's weights)\n", cmd); return 2; }
  if (a->restart_data && !a->resume) { fprintf(stderr, "memfit %s: --restart-data goes with --resume CK\n", cmd); return 2; }
  if (strcmp(a->schedule, "cosine") && strcmp(a->schedule, "step") && strcmp(a->schedule, "constant") &&
      strcmp(a->schedule, "plateau")) {
    fprintf(stderr, "memfit %s: --schedule '%s': use cosine, step, constant or plateau\n", cmd, a->schedule);
    return 2;
  }
  if (!(a->factor > 0 && a->factor < 1)) {
    fprintf(stderr, "memfit %s: --factor %g: the plateau cut must be above 0 and below 1\n", cmd, a->factor);
    return 2;
  }
  if (a->accum) {
    if (a->micro_batch && a->micro_batch * a->accum != a->batch) {
      fprintf(stderr, "memfit %s: --micro-batch %d x --accum %d is not --batch %d\n", cmd, a->micro_batch, a->accum, a->batch);
      return 2;
    }
    if (a->batch % a->accum) {
      fprintf(stderr, "memfit %s: --accum %d does not divide --batch %d\n", cmd, a->accum, a->batch);
      return 2;
    }
    a->micro_batch = a->batch / a->accum;
  }
  return 0;
}

/* The run's settings: as given, or searched for --budget. 0, 1 (failed), 3 (nothing fits); said. */
static int train_choose(const mf_workload *w, const void *tcfg, const mf_train_args *a, const mf_backend *be, int ranks,
                        mf_train_choice *ch, mf_candidate *cand, int *have_cand) {
  char err[2048], cmd[64];
  snprintf(cmd, sizeof cmd, "train %s", w->name);
  ch->micro_batch = a->batch; ch->accum = 1; ch->variant = 0; ch->dtype = MF_F32;
  *have_cand = 0;
  if (w->train->train_choose) { /* the workload's own exact choice (VQGAN: both phases planned) */
    int rc = w->train->train_choose(tcfg, a, ch, err, sizeof err);
    if (rc) fprintf(stderr, "memfit %s: %s\n", cmd, err);
    return rc;
  }
  int fixed = a->dtypes || a->mode != -2 || a->micro_batch || a->variant >= 0; /* settings given as plan takes them */
  if (!a->budget && !fixed) return 0; /* the workload's default: memory-free backprop / recompute all, f32 */
  void *wc = w->cfg_new();
  int bad = !wc || w->train->train_plan_cfg(tcfg, a, wc, err, sizeof err) < 0;
  mf_search_opts so = mf_search_opts_default();
  so.budget = a->budget;
  so.host_budget = a->host_budget;
  so.threads = a->threads;
  so.backend = a->backend;
  so.allow_offload = be->alloc != NULL; /* host offload only means something with device memory */
  so.ranks = ranks; /* data parallel: per-rank plans; --budget may shard the optimizer state (ZeRO-1) */
  so.shard = a->shard_optimizer ? 2 : a->budget ? 1 : 0;
  if (a->budget) { /* searched, within what was given */
    so.dtypes = a->dtypes ? a->dtypes : (1u << MF_F32) | (1u << MF_BF16);
    so.fixed_mode = a->mode == -2 ? -1 : a->mode;
    so.fixed_variant = a->variant;
    so.fixed_micro_batch = a->micro_batch;
  } else { /* as given; what was not given as without these options, as memfit plan does */
    so.allow_offload = 0;
    so.dtypes = a->dtypes ? a->dtypes : 1u << MF_F32;
    so.fixed_mode = a->mode < 0 ? 1 : a->mode;
    so.fixed_variant = a->variant < 0 ? 0 : a->variant;
    so.fixed_micro_batch = a->micro_batch ? a->micro_batch : a->batch;
  }
  mf_search_result *r = bad ? NULL : malloc(sizeof *r);
  if (bad || !r || mf_workload_search(w, wc, &so, r, err, sizeof err) < 0) {
    fprintf(stderr, "memfit %s: %s: %s\n", cmd, a->budget ? "budget search" : "settings", bad ? err : r ? err : "out of memory");
    free(r); free(wc); /* mf_search frees its candidates itself when it fails */
    return 1;
  }
  char d[256], hb[32], hs[32];
  mf_format_bytes((size_t)a->budget, hb, sizeof hb);
  if (!r->found) {
    mf_format_bytes(r->smallest.device_bytes, hs, sizeof hs);
    mf_candidate_describe(&r->smallest, d, sizeof d);
    fprintf(stderr, "memfit %s: nothing fits %s; the smallest setting needs %s (%s). Raise --budget, or make the model or "
                    "its inputs smaller ('memfit train %s --help').\n", cmd, hb, hs, d, w->name);
    mf_search_result_free(r);
    free(r); free(wc);
    return 3;
  }
  *cand = r->best;
  *have_cand = 1;
  mf_candidate_describe(cand, d, sizeof d);
  mf_format_bytes(cand->device_bytes, hs, sizeof hs);
  char side[96] = "";
  if (cand->side_bytes) { /* bytes the run holds beside the step (e.g. MoCo's feature pass), in the total */
    char h[32];
    mf_format_bytes(cand->side_bytes, h, sizeof h);
    snprintf(side, sizeof side, ", with %s beside the step for evaluation", h);
  }
  if (a->budget) printf("budget %s: chose %s (plans %s%s; %d plans searched)\n", hb, d, hs, side, r->n_planned);
  else printf("settings: %s (plans %s)\n", d, hs);
  if (*cand->note) printf("  why: %s\n", cand->note);
  ch->micro_batch = cand->micro_batch; ch->accum = cand->accum; ch->dtype = cand->dtype; ch->variant = cand->variant;
  mf_search_result_free(r);
  free(r); free(wc);
  return 0;
}

static int train_ranks(const mf_workload *w, void *tcfg, mf_train_args *argp, mf_comm *comm, int argc, char **argv);
static int train_workload(const mf_workload *w, int argc, char **argv) {
  char cmd[64], err[2048];
  snprintf(cmd, sizeof cmd, "train %s", w->name);
  void *tcfg = w->train->train_cfg_new();
  if (!tcfg) { fprintf(stderr, "memfit %s: out of host memory\n", cmd); return 1; }
  mf_train_args a;
  /* data parallel: one rank of the job mpirun started, or the only process */
  mf_comm *comm = mf_comm_init(NULL, NULL, err, sizeof err);
  if (!comm) { fprintf(stderr, "memfit %s: %s\n", cmd, err); free(tcfg); return 1; }
  int rc = train_parse(w, tcfg, argc, argv, &a, comm->size);
  if (comm->size > 1) { /* every rank parsed the same options, or all stop (a usage error is said by each rank) */
    uint64_t v = (uint64_t)(rc == 2 ? 2 : rc == 1 ? 1 : 0);
    if (comm->allreduce(comm, &v, 1, MF_COMM_U64, MF_COMM_MAX, "the agreement on the options") < 0) v = 2;
    if ((int)v != rc && !rc) rc = 2;
  }
  if (rc) { free(tcfg); mf_comm_free(comm); return rc == 1 ? 0 : rc; }
  rc = train_ranks(w, tcfg, &a, comm, argc, argv);
  mf_comm_free(comm);
  return rc;
}

/* Every rank's status (0 ok) agreed: the highest failing rank's status for all, naming it (rank 0 says it). */
static int ranks_agree(mf_comm *c, int rc, const char *cmd, const char *what) {
  if (c->size == 1) return rc;
  uint64_t v[2] = {rc ? (uint64_t)c->rank + 1 : 0, (uint64_t)rc};
  if (c->allreduce(c, v, 2, MF_COMM_U64, MF_COMM_MAX, what) < 0) return 1;
  if (!v[0]) return 0;
  if (c->rank == 0)
    fprintf(stderr, "memfit %s: rank %d of %d could not %s (its message is above): stopping all ranks\n", cmd, (int)v[0] - 1, c->size,
            what);
  return rc ? rc : (int)v[1] ? (int)v[1] : 1;
}

static int train_ranks(const mf_workload *w, void *tcfg, mf_train_args *argp, mf_comm *comm, int argc, char **argv) {
  char cmd[64], err[2048];
  snprintf(cmd, sizeof cmd, "train %s", w->name);
  mf_train_args a = *argp;
  int rc = 0, R = comm->size;
  /* data parallel: rank 0 prints the run; the others print their own plan line only (on the standard output
   * they started with) and the rest of theirs goes to /dev/null */
  FILE *rank_out = stdout;
  if (comm->rank > 0) {
    int fd = dup(fileno(stdout));
    fflush(stdout);
    rank_out = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!rank_out || !freopen("/dev/null", "w", stdout)) rank_out = stderr;
  }
  const mf_backend *be = mf_backend_get(a.backend, err, sizeof err);
  if (!be) { fprintf(stderr, "memfit %s: --backend: %s\n", cmd, err); rc = 2; }
  else if (be->alloc) { /* a device backend: is there a device? (planning works without one, training does not) */
    void *probe = be->alloc(1, err, sizeof err);
    if (!probe) { fprintf(stderr, "memfit %s: --backend %s: %s\n", cmd, a.backend, err); rc = 2; }
    else be->free(probe);
  }
  if ((rc = ranks_agree(comm, rc, cmd, "open its backend"))) { free(tcfg); goto done; }
  mf_train_choice ch;
  mf_candidate cand;
  int have_cand;
  rc = train_choose(w, tcfg, &a, be, R, &ch, &cand, &have_cand);
  if ((rc = ranks_agree(comm, rc, cmd, "choose settings that fit"))) { free(tcfg); goto done; }

  mf_train_job job;
  memset(&job, 0, sizeof job);
  mf_session *s = NULL;
  mf_trainer *tr = NULL;
  rc = 0;
  if (w->train->train_setup(tcfg, &a, &ch, &job, err, sizeof err) < 0) { fprintf(stderr, "memfit %s: %s\n", cmd, err); rc = 1; }
  if (!rc && be->host_alloc) { /* a device: page-locked staging buffers, so their copies to the device are asynchronous */
    job.lo.alloc = be->host_alloc;
    job.lo.free = be->host_free;
  }
  if (!rc && a.resume && job.resume_check && job.resume_check(job.hooks.ctx, a.resume) < 0) rc = 1;
  if ((rc = ranks_agree(comm, rc, cmd, "set up its model and data"))) goto out;
  if (R > 1) { /* each rank loads every R-th sample of the global batches */
    job.lo.batch_size *= R;
    job.lo.ranks = R;
    job.lo.rank = comm->rank;
    /* the data order is one of global batches: a checkpoint records the micro-batch over all ranks, so a run
     * with other ranks and the same global batch resumes it */
    for (int i = 0; i < job.n_data_settings; i++) {
      mf_data_setting *d = &job.data_settings[i];
      if (d->scales_with_ranks) snprintf(d->value, sizeof d->value, "%d", atoi(d->value) * R);
    }
  }

  /* ---- session (the trainer sets the schedule's length from the run's) ---- */
  mf_train_opts o = mf_train_opts_default();
  o.threads = a.threads;
  o.plan.threads = a.threads;
  o.plan.optim = job.optim;
  o.lr = a.lr; o.beta1 = a.beta1; o.beta2 = a.beta2; o.weight_decay = a.weight_decay;
  o.momentum = job.sgd_momentum;
  o.clip_norm = a.clip;
  o.schedule = !strcmp(a.schedule, "cosine") ? MF_SCHED_COSINE : !strcmp(a.schedule, "step") ? MF_SCHED_STEP
               : !strcmp(a.schedule, "plateau") ? MF_SCHED_PLATEAU : MF_SCHED_CONSTANT;
  o.plateau_patience = a.patience;
  o.plateau_factor = a.factor;
  o.warmup_steps = a.warmup;
  o.total_steps = 0;
  o.step_every = a.step_every;
  o.step_gamma = a.gamma;
  o.accum_steps = ch.accum;
  o.seed = (uint64_t)a.seed;
  o.plan.backend = a.backend;
  if (have_cand) mf_candidate_apply(&cand, &o.plan);
  else { o.plan.recompute = MF_RECOMPUTE_ALL; o.plan.invertible = 1; }
  o.plan.keep = job.keep;
  o.plan.n_keep = job.n_keep;
  o.plan.ranks = R;
  o.plan.bucket_bytes = (size_t)a.bucket_bytes;
  o.plan.shard_optimizer = (a.shard_optimizer || (have_cand && cand.shard_ranks > 1)) && R > 1;
  o.plan.rank = comm->rank;
  if (job.n_groups > 1) { /* every group with the run's optimizer settings (train_opts may change them) */
    o.n_groups = job.n_groups;
    for (int k = 1; k < job.n_groups; k++) {
      o.groups[k].lr = a.lr; o.groups[k].beta1 = a.beta1; o.groups[k].beta2 = a.beta2; o.groups[k].weight_decay = a.weight_decay;
    }
  }
  if (job.train_opts) job.train_opts(job.hooks.ctx, &o);
  rc = 1;
  if (job.n_phases > 1) s = mf_session_init_phases(job.g, job.n_phases, job.phases, &o, err, sizeof err);
  else s = mf_session_init(job.g, job.loss, &o, err, sizeof err);
  if (!s) fprintf(stderr, "memfit %s: rank %d: %s\n", cmd, comm->rank, err);
  else if (mf_session_set_comm(s, comm, job.loss_sum, err, sizeof err) < 0) fprintf(stderr, "memfit %s: %s\n", cmd, err);
  else if (job.session_ready && job.session_ready(job.hooks.ctx, s, err, sizeof err) < 0) fprintf(stderr, "memfit %s: %s\n", cmd, err);
  else rc = 0;
  if ((rc = ranks_agree(comm, rc, cmd, "make its plan and allocate it"))) goto out;
  if (R > 1) { /* all ranks must run the same plan: the same arenas and buckets, byte for byte */
    const mf_plan *pl = mf_session_plan(s);
    uint64_t h = mf_comm_hash(0, pl->arena, sizeof pl->arena);
    h = mf_comm_hash(h, &pl->n_buckets, sizeof pl->n_buckets);
    for (int k = 0; k < pl->n_buckets; k++) { /* field by field: the struct has padding */
      h = mf_comm_hash(h, &pl->buckets[k].off, sizeof pl->buckets[k].off);
      h = mf_comm_hash(h, &pl->buckets[k].bytes, sizeof pl->buckets[k].bytes);
      h = mf_comm_hash(h, &pl->buckets[k].ready_step, sizeof pl->buckets[k].ready_step);
    }
    h = mf_comm_hash(h, &ch, sizeof ch);
    int bad = -1, ok = mf_comm_agree(comm, h, "the agreement on the plan", &bad);
    if (ok <= 0) {
      if (ok == 0 && comm->rank == 0)
        fprintf(stderr, "memfit %s: rank %d's plan differs from rank 0's (its plan line above shows how): every rank must run "
                        "the same options and settings; stopping all %d ranks\n", cmd, bad, R);
      if (ok == 0) { /* each rank's plan line, so the difference shows */
        char hb[32];
        mf_format_bytes(mf_plan_total_bytes(pl), hb, sizeof hb);
        fprintf(stderr, "memfit %s: rank %d of %d: plan %s (micro-batch %d x %d, %s)\n", cmd, comm->rank, R, hb, ch.micro_batch, ch.accum,
                mf_dtype_name(ch.dtype));
      }
      rc = 1;
      goto out;
    }
  }

  /* ---- the trainer ---- */
  mf_trainer_opts to = mf_trainer_opts_default();
  to.name = cmd;
  to.out = a.out;
  to.epochs = a.epochs;
  to.total_steps = a.steps;
  to.steps_per_epoch = a.epoch_steps;
  to.accum = ch.accum;
  to.samples_per_step = a.batch * R; /* the global batch: rates count every rank's samples */
  to.sample_unit = job.sample_unit;
  to.loss_divisor = job.loss_divisor > 0 ? job.loss_divisor : 1;
  to.n_terms = job.n_terms;
  to.term_names = job.term_names;
  to.psnr_terms = job.psnr_terms;
  to.resume = a.resume;
  to.init = a.init;
  to.restart_data = a.restart_data;
  to.stop_after = a.stop_after;
  to.every = a.every;
  to.val_every = a.val_every;
  to.loss_log = a.loss_log;
  to.log = a.log;
  to.log_every = a.log_every;
  to.handle_signals = 1;
  to.json = a.json;
  to.data_source = a.data;
  to.n_data_settings = job.n_data_settings;
  to.data_settings = job.data_settings;
  to.settings = job.settings;
  to.timeline_title = job.timeline_title;
  to.values_per_sample = job.values_per_sample;
  to.crop_option = job.crop_option;
  to.batch_note = job.batch_note;
  to.more_data_hint = job.more_data_hint;
  to.model_use = job.model_use;
  to.model_file = job.model_file;
  char command[1024];
  size_t k = (size_t)snprintf(command, sizeof command, "memfit %s", cmd);
  for (int i = 1; i < argc && k < sizeof command; i++) k += (size_t)snprintf(command + k, sizeof command - k, " %s", argv[i]);
  to.command = command;
  if (!(tr = mf_trainer_init(s, &job.lo, &to, &job.hooks, err, sizeof err))) {
    if (strcmp(err, "said above")) fprintf(stderr, "memfit %s: %s\n", cmd, err);
    rc = 1;
  }
  if ((rc = ranks_agree(comm, rc, cmd, "start training (data, checkpoint or output folder)"))) goto out;
  int64_t start = mf_trainer_first_step(tr), total = mf_trainer_total_steps(tr);
  if (start < total && !(a.stop_after && a.stop_after <= start)) {
    printf("%s; %d epoch%s of %lld updates (%lld in all)\n", job.header, mf_trainer_epochs(tr), mf_trainer_epochs(tr) == 1 ? "" : "s",
           (long long)mf_trainer_steps_per_epoch(tr), (long long)total);
    char opt[64];
    if (job.optim == MF_SGD) snprintf(opt, sizeof opt, "momentum %g, weight decay %g", job.sgd_momentum, a.weight_decay);
    else snprintf(opt, sizeof opt, "betas %g, %g", a.beta1, a.beta2);
    printf("%s; %s lr %.3g (%s), %s schedule, warm-up %d, clip %g\n", job.losses,
           job.optim == MF_SGD ? "SGD" : job.optim == MF_ADAM ? "Adam" : "AdamW", a.lr, opt, a.schedule, a.warmup, a.clip);
    mf_plan_print(mf_session_plan(s), stdout);
    if (R > 1)
      printf("data parallel: %d ranks (%s), each micro-batch %d x %d accumulation of the global batch %d (rank r takes its "
             "samples r, r+%d, ...); %s\n", R, comm->kind, ch.micro_batch, ch.accum, a.batch * R, R,
             job.loss_sum ? "the loss is a sum over samples: losses and gradients summed over the ranks"
                          : "the loss is a mean: losses and gradients averaged over the ranks");
    if (a.budget && (int64_t)mf_plan_total_bytes(mf_session_plan(s)) > a.budget) {
      char hb[32], ht[32];
      mf_format_bytes((size_t)a.budget, hb, sizeof hb);
      mf_format_bytes(mf_plan_total_bytes(mf_session_plan(s)), ht, sizeof ht);
      printf("note: the search planned the base losses; with the extra terms and the tensors kept for the metrics this run "
             "plans %s, above the %s budget. Lower --batch or the sample size if the budget is hard.\n", ht, hb);
    }
    fflush(stdout);
  }
  if (R > 1) { /* every rank's plan line */
    char hb[32];
    const mf_plan *pl = mf_session_plan(s);
    mf_format_bytes(mf_plan_total_bytes(pl), hb, sizeof hb);
    fflush(stdout);
    char gr[64];
    if (pl->shard_n) snprintf(gr, sizeof gr, "reduce-scattered");
    else snprintf(gr, sizeof gr, "in %d all-reduce bucket%s", pl->n_buckets, pl->n_buckets == 1 ? "" : "s");
    fprintf(rank_out, "rank %d of %d: plan %s (%zu B: activations %zu B, gradients %zu B %s, optimizer state %zu B%s), "
                      "micro-batch %d x %d, %s\n", comm->rank, R, hb, mf_plan_total_bytes(pl), mf_plan_arena_bytes(pl, MF_ARENA_ACT),
            mf_plan_arena_bytes(pl, MF_ARENA_GRAD), gr, mf_plan_arena_bytes(pl, MF_ARENA_OPT), pl->shard_n ? " of its slice" : "",
            ch.micro_batch, ch.accum, mf_dtype_name(ch.dtype));
    fflush(rank_out);
  }
  rc = mf_trainer_run(tr);
  if (job.finish && job.finish(job.hooks.ctx, rc, err, sizeof err) < 0) {
    fprintf(stderr, "memfit %s: %s\n", cmd, err);
    if (rc == 0) rc = 1;
  }
  if (a.json && rank_out == stdout) rank_out = stderr; /* --json: its record stays the last line of the standard output */
  if (R > 1 && mf_session_step(s) > 0) { /* every rank's own measured == planned (rank 0's table is above) */
    const mf_plan *pl = mf_session_plan(s);
    int exact = 1;
    for (int k = 0; k < MF_ARENA_COUNT; k++)
      exact &= mf_session_measured_bytes(s, (mf_arena_kind)k) == mf_plan_arena_bytes(pl, (mf_arena_kind)k);
    fprintf(rank_out, "rank %d of %d: memory measured %s planned in every arena (optimizer state %zu B)\n", comm->rank, R,
            exact ? "==" : "DIFFERS FROM", mf_session_measured_bytes(s, MF_ARENA_OPT));
    fflush(rank_out);
  }
  if (R > 1 && comm->rank == 0 && mf_session_step(s) > mf_trainer_first_step(tr)) {
    double per = 1e3 * s->comm_wait_s / (double)(mf_session_step(s) - mf_trainer_first_step(tr));
    const char *over = s->acomm ? s->acomm->kind : comm->kind;
    if (s->comm_early + s->comm_late)
      fprintf(rank_out, "gradient all-reduce: %lld bucket(s) started during backward, %lld after it; the updates waited %.3f ms each for "
             "the reduction after backward (over %s)\n", (long long)s->comm_early, (long long)s->comm_late, per, over);
    else fprintf(rank_out, "gradient reduce-scatter (ZeRO-1) after backward: %.3f ms per update (over %s)\n", per, over);
  }
out:
  mf_trainer_free(tr);
  mf_session_free(s);
  mf_train_job_free(&job);
  free(tcfg);
done:
  if (rank_out != stdout && rank_out != stderr) fclose(rank_out);
  return rc;
}

/* `memfit train WORKLOAD ...` */
int mf_cmd_train(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    printf("usage: memfit train WORKLOAD [options]   (workloads: %s; 'memfit train WORKLOAD --help')\n", mf_workload_names());
    return argc < 2 ? 2 : 0;
  }
  const mf_workload *w = mf_workload_find(argv[1]);
  if (w && w->train) return train_workload(w, argc - 1, argv + 1);
  const char *names[] = {"steg", "moco", "imagegs", "vqgan", "onnx"}, *near = cli_nearest(argv[1], names, 5);
  fprintf(stderr, "memfit train: unknown workload '%s'%s%s%s (available: %s)\n", argv[1], near ? "; did you mean '" : "",
          near ? near : "", near ? "'?" : "", mf_workload_names());
  return 2;
}
