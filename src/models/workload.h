/* workload.h — the training half of a workload (what `memfit train NAME` and the trainer need from it:
 * the common options, the run it builds, its own settings) and the registry of built-in workloads. The
 * planning half, which every model implements and the budget search uses, is src/plan/workload.h. */
#ifndef MF_WORKLOAD_H
#define MF_WORKLOAD_H

#include "plan/workload.h"
#include <stdio.h>

/* The options every `memfit train WORKLOAD` takes, with the same meaning for every workload (cmd_train.c). */
typedef struct mf_train_args {
  const char *data;          /* folder, or "generated": the workload's built-in default data */
  const char *val_data;      /* folder of validation samples (NULL: a --val-split share of --data) */
  double val_split;          /* share of --data's files held out for validation */
  int workers;               /* loader threads */
  int batch;                 /* effective batch: micro-batch x accumulation; from mf_train_check on, one rank's share of
                                the job's (global) batch */
  int batch_default;         /* 1: --batch was not given and batch is the workload's default (train_batch) */
  int micro_batch, accum;    /* 0: chosen (without --budget: the batch in one micro-step) */
  int variant, mode;         /* as `memfit plan` takes them: -1 / -2 when not given (mode -1: searched) */
  unsigned dtypes;           /* --precision as a dtype set; 0 when not given */
  int64_t budget, host_budget;/* bytes; 0: none */
  const char *backend;
  int threads;
  int epochs, steps, epoch_steps;
  double lr, beta1, beta2, weight_decay, clip, gamma, factor;
  const char *schedule;      /* cosine, step, constant, plateau */
  int warmup, step_every, patience, seed;
  const char *out, *resume, *init, *loss_log, *log; /* init: --init, a model file whose weights start the run */
  int restart_data, stop_after, every, val_every, log_every, json;
  int argc;                  /* the command line (for the model file's and the log's record) */
  char **argv;
  int64_t bucket_bytes;      /* data parallel: gradient bytes per all-reduce bucket (0: the plan's default) */
  int shard_optimizer;       /* data parallel: ZeRO-1, each rank keeps the optimizer state of its slice */
  int ranks;                 /* data parallel: the job's ranks (0 or 1: one process); set before train_check */
} mf_train_args;

/* What the planner chose (or the user fixed) for the run. */
typedef struct mf_train_choice { int micro_batch, accum, variant; mf_dtype dtype; } mf_train_choice;

/* A run a workload built (train_setup): what the trainer and the session need from it. */
typedef struct mf_train_job {
  mf_graph *g;
  mf_tensor loss;
  int n_keep;                /* tensors the hooks read after a step (kept to the step's end by the plan) */
  mf_tensor keep[16];
  mf_optim_kind optim;
  double sgd_momentum;       /* with MF_SGD: the momentum (0: plain SGD) */
  mf_dataset *train, *val;   /* owned by the job */
  mf_loader_opts lo;         /* dataset = train */
  mf_trainer_hooks hooks;
  int n_terms;
  const char *const *term_names;
  unsigned psnr_terms;       /* mf_trainer_opts.psnr_terms */
  const char *sample_unit;
  double loss_divisor, values_per_sample;
  int loss_sum;              /* 1: the loss sums over the micro-batch's samples, so data-parallel ranks add their losses and
                                gradients (as one process with the whole batch); 0: a mean, averaged over the ranks */
  char crop_option[64], batch_note[128], more_data_hint[160], model_use[64];
  char model_file[64];       /* the model file's name in --out ("": model.safetensors) */
  char settings[512], timeline_title[256];
  char header[1536];         /* printed before the plan: the model line, then "data: ..." (the run length follows) */
  char losses[256];          /* "losses: ..." (the optimizer follows) */
  int n_data_settings;
  mf_data_setting data_settings[MF_MAX_DATA_SETTINGS];
  /* Phases (a GAN's generator and discriminator steps): n_phases > 1 makes the session with
   * mf_session_init_phases (loss is then unused); n_groups parameter groups, each with the run's lr and betas. */
  int n_phases, n_groups;
  mf_phase_opts phases[MF_MAX_PHASES];
  /* Checks a --resume checkpoint holds this model before anything is loaded; 0, or -1 after saying why. */
  int (*resume_check)(void *ctx, const char *path);
  /* After the session is made: fixed inputs (constants) the graph reads; 0, or -1 with err. */
  int (*session_ready)(void *ctx, mf_session *s, char *err, size_t errlen);
  /* Optional: adjusts the session's options before it is made (e.g. per-group learning rates from --lr). */
  void (*train_opts)(void *ctx, mf_train_opts *o);
  /* Optional: after the run (status: mf_trainer_run's, 0 done, 1 failed, 128+N stopped by signal N), before ctx_free:
   * finishes what the workload writes besides the trainer's files (Image-GS: closes --video). 0, or -1 with err (the
   * command then fails). */
  int (*finish)(void *ctx, int status, char *err, size_t errlen);
  void (*ctx_free)(void *ctx);
} mf_train_job;

/* A workload's training side: `memfit train NAME` (src/cli/cmd_train.c parses the common options,
 * src/train/trainer.c runs the loop; the workload builds the graph, the data and the hooks). */
typedef struct mf_workload_train {
  void (*train_defaults)(mf_train_args *a);  /* the workload's defaults for the common options */
  void *(*train_cfg_new)(void);              /* its own training settings (free with free()) */
  /* Applies one of its own settings ("size", "ssim"...); 0, -1 with err naming the setting, or -2 when the
   * key is not one of its settings. */
  int (*train_cfg_set)(void *tcfg, const char *key, const char *val, char *err, size_t errlen);
  void (*train_help)(FILE *f);               /* help lines of its own settings */
  /* Checks the settings together (after parsing) and fills the common options the workload's settings decide
   * when they were not given (e.g. --batch 0: the preset's effective batch); 0, or -1 with err. */
  int (*train_check)(void *tcfg, mf_train_args *a, char *err, size_t errlen);
  /* Optional: the effective batch over all ranks the workload's settings give when --batch was not given (a
   * preset's; a->batch is 0 then). NULL: train_defaults' a->batch is the default. 0, or -1 with err. */
  int (*train_batch)(const void *tcfg, const mf_train_args *a, int *batch, char *err, size_t errlen);
  /* Fills cfg (of cfg_new) with what the run trains, for the budget search (a->batch is the effective batch). */
  int (*train_plan_cfg)(const void *tcfg, const mf_train_args *a, void *cfg, char *err, size_t errlen);
  /* Builds the run for the chosen settings: graph, data, hooks (job is zeroed by the caller; train_job_free
   * releases it, whatever setup left in it). 0, or -1 with err. */
  int (*train_setup)(const void *tcfg, const mf_train_args *a, const mf_train_choice *ch, mf_train_job *job, char *err,
                     size_t errlen);
  /* Optional: the workload's own choice of the run's settings (e.g. planning several phases exactly) instead of
   * the generic search; says what it chose. 0, 1 (failed, err says why) or 3 (nothing fits the budget, err). */
  int (*train_choose)(const void *tcfg, const mf_train_args *a, mf_train_choice *ch, char *err, size_t errlen);
} mf_workload_train;

/* A workload setting's value: a whole number (or a number) from lo to hi; 0, or -1 with err
 * "--KEY: 'VAL' is not a whole number from LO to HI". */
int mf_setting_int(const char *key, const char *val, int lo, int hi, int *out, char *err, size_t errlen);
int mf_setting_double(const char *key, const char *val, double lo, double hi, double *out, char *err, size_t errlen);

/* Writes "memfit train WORKLOAD" and the run's arguments (a->argv[1..]) into buf, cut at n bytes: the command
 * line a model file records. */
void mf_train_args_command(const mf_train_args *a, const char *workload, char *buf, size_t n);

/* The settings checked, for every workload alike: --batch (or, when it was 0, the workload's train_batch, with
 * a->batch_default set) is the job's global batch; over a->ranks ranks it is split here, before train_check, so
 * that train_check and everything after it see one rank's share in a->batch (a global batch the ranks do not divide
 * is refused naming --batch and the rank count); then the workload's train_check. 0, or -1 with err. */
int mf_train_check(const mf_workload_train *t, void *tcfg, mf_train_args *a, char *err, size_t n);

/* Adds a setting that decides which samples the batches hold (saved with each checkpoint, checked on --resume):
 * key, the option to name, flags (MF_DATA_DECISIVE: a resume with another value is refused; MF_DATA_PER_RANK: the
 * value is one rank's share, recorded times the ranks of a data-parallel run: the micro-batch), the value as fmt
 * "%d" or "%.17g". */
enum { MF_DATA_DECISIVE = 1, MF_DATA_PER_RANK = 2 };
void mf_train_job_data_setting(mf_train_job *j, const char *key, const char *option, int flags, const char *fmt, double v);

/* Frees what a workload's train_setup made (graph, datasets, its hook context). */
void mf_train_job_free(mf_train_job *job);

const mf_workload *mf_workload_find(const char *name);
/* "steg" etc., comma-separated */
const char *mf_workload_names(void);

extern const mf_workload mf_workload_steg;
extern const mf_workload_train mf_workload_steg_train;
extern const mf_workload mf_workload_moco;
extern const mf_workload_train mf_workload_moco_train;
extern const mf_workload mf_workload_imagegs;
extern const mf_workload_train mf_workload_imagegs_train;
extern const mf_workload mf_workload_vqgan;
extern const mf_workload mf_workload_onnx;
extern const mf_workload_train mf_workload_onnx_train;

#endif
