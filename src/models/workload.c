/* workload.c — the registry of built-in workloads (one line per workload). */
#include "models/workload.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const mf_workload *const workloads[] = {&mf_workload_steg, &mf_workload_moco, &mf_workload_imagegs, &mf_workload_vqgan,
                                                &mf_workload_onnx};
enum { N_WORKLOADS = sizeof workloads / sizeof workloads[0] };

const mf_workload *mf_workload_find(const char *name) {
  for (int i = 0; name && i < N_WORKLOADS; i++)
    if (!strcmp(workloads[i]->name, name)) return workloads[i];
  return NULL;
}
const char *mf_workload_names(void) { return "steg, moco, imagegs, vqgan, onnx"; }

void mf_train_args_command(const mf_train_args *a, const char *workload, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "memfit train %s", workload);
  for (int i = 1; i < a->argc && k < n; i++) k += (size_t)snprintf(buf + k, n - k, " %s", a->argv[i]);
}

int mf_train_check(const mf_workload_train *t, void *tcfg, mf_train_args *a, char *err, size_t n) {
  int R = a->ranks > 1 ? a->ranks : 1;
  a->batch_default = 0;
  if (!a->batch && t->train_batch) {
    if (t->train_batch(tcfg, a, &a->batch, err, n) < 0) return -1;
    a->batch_default = 1;
  }
  if (a->batch < 1) { snprintf(err, n, "--batch %d: give 1 or more samples", a->batch); return -1; }
  if (a->batch % R) {
    snprintf(err, n, "--batch %d%s is not a multiple of the %d ranks: each rank trains on an equal share", a->batch,
             a->batch_default ? " (the preset's)" : "", R);
    return -1;
  }
  a->batch /= R; /* data parallel: from here on one rank's share */
  return t->train_check(tcfg, a, err, n);
}

void mf_train_job_free(mf_train_job *job) {
  if (job->ctx_free) job->ctx_free(job->hooks.ctx);
  mf_dataset_free(job->train);
  mf_dataset_free(job->val);
  memset(job, 0, sizeof *job);
}

void mf_train_job_data_setting(mf_train_job *j, const char *key, const char *option, int flags, const char *fmt, double v) {
  if (j->n_data_settings >= MF_MAX_DATA_SETTINGS) return;
  mf_data_setting *d = &j->data_settings[j->n_data_settings++];
  d->key = key;
  d->option = option;
  d->decisive = (flags & MF_DATA_DECISIVE) != 0;
  d->scales_with_ranks = (flags & MF_DATA_PER_RANK) != 0;
  if (fmt[1] == 'd') snprintf(d->value, sizeof d->value, "%d", (int)v);
  else snprintf(d->value, sizeof d->value, "%.17g", v);
}

int mf_setting_int(const char *key, const char *val, int lo, int hi, int *out, char *err, size_t n) {
  char *end;
  long v = strtol(val, &end, 10);
  if (!*val || *end || v < lo || v > hi) { snprintf(err, n, "--%s: '%s' is not a whole number from %d to %d", key, val, lo, hi); return -1; }
  *out = (int)v;
  return 0;
}

int mf_setting_double(const char *key, const char *val, double lo, double hi, double *out, char *err, size_t n) {
  char *end;
  double v = strtod(val, &end);
  if (!*val || *end || !(v >= lo && v <= hi)) { snprintf(err, n, "--%s: '%s' is not a number from %g to %g", key, val, lo, hi); return -1; }
  *out = v;
  return 0;
}
