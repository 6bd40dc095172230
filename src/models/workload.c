/* workload.c — the registry of built-in workloads (one line per workload). */
#include "models/workload.h"
#include <string.h>

static const mf_workload *const workloads[] = {&mf_workload_steg};
enum { N_WORKLOADS = sizeof workloads / sizeof workloads[0] };

const mf_workload *mf_workload_find(const char *name) {
  for (int i = 0; name && i < N_WORKLOADS; i++)
    if (!strcmp(workloads[i]->name, name)) return workloads[i];
  return NULL;
}
const char *mf_workload_names(void) { return "steg"; }

void mf_train_job_free(mf_train_job *job) {
  if (job->ctx_free) job->ctx_free(job->hooks.ctx);
  mf_dataset_free(job->train);
  mf_dataset_free(job->val);
  memset(job, 0, sizeof *job);
}
