/* test_train_check.c — mf_train_check, the one place a data-parallel job's global batch becomes each rank's share
 * before a workload checks its settings: --batch or the preset's, divided by the ranks for every workload, refusals
 * naming --batch and the rank count, and the checks that see that share (MoCo's queue against every rank's keys). */
#include "check.h"
#include "models/workload.h"

/* The settings of workload `name` with key=value pairs (NULL-terminated), checked with `batch` over `ranks`:
 * mf_train_check's status; *out is the args after it, err its message. */
static int check_with(const char *name, int batch, int ranks, const char *const *kv, mf_train_args *out, char *err, size_t n) {
  const mf_workload *w = mf_workload_find(name);
  if (!w || !w->train) { snprintf(err, n, "no workload %s", name); return -2; }
  void *tcfg = w->train->train_cfg_new();
  mf_train_args a;
  memset(&a, 0, sizeof a);
  a.data = "generated";
  a.variant = -1;
  a.mode = -2;
  w->train->train_defaults(&a);
  if (batch) a.batch = batch;
  a.ranks = ranks;
  int rc = 0;
  for (int i = 0; kv && kv[i] && !rc; i += 2) rc = w->train->train_cfg_set(tcfg, kv[i], kv[i + 1], err, n) ? -2 : 0;
  if (!rc) rc = mf_train_check(w->train, tcfg, &a, err, n);
  *out = a;
  free(tcfg);
  return rc;
}

int main(void) {
  char err[1024];
  mf_train_args a;
  const char *small[] = {"preset", "small", NULL}, *bench[] = {"preset", "bench", NULL}, *tiny[] = {"preset", "tiny", NULL};
  const char *low[] = {"preset", "low", NULL};

  /* steg: the preset's batch (small: 4) is global too */
  int rc = check_with("steg", 0, 2, small, &a, err, sizeof err);
  CHECK(rc == 0 && a.batch == 2 && a.batch_default == 1, "steg small, no --batch, 2 ranks: %d, batch %d (%s)", rc, a.batch, rc ? err : "");
  rc = check_with("steg", 8, 4, small, &a, err, sizeof err);
  CHECK(rc == 0 && a.batch == 2 && a.batch_default == 0, "steg --batch 8 over 4 ranks: %d, batch %d (%s)", rc, a.batch, rc ? err : "");
  rc = check_with("steg", 3, 2, small, &a, err, sizeof err);
  CHECK(rc == -1 && strstr(err, "--batch 3") && strstr(err, "2 ranks"), "steg --batch 3 over 2 ranks refused: %s", rc ? err : "(accepted)");
  rc = check_with("steg", 0, 2, bench, &a, err, sizeof err); /* bench: batch 1 x 1 */
  CHECK(rc == -1 && strstr(err, "--batch 1 (the preset's)") && strstr(err, "2 ranks"), "steg bench's batch over 2 ranks refused: %s",
        rc ? err : "(accepted)");
  rc = check_with("steg", 0, 1, bench, &a, err, sizeof err);
  CHECK(rc == 0 && a.batch == 1, "steg bench in one process: %d, batch %d", rc, a.batch);

  /* MoCo v2 (tiny: batch 8, queue 20): each update pushes every rank's keys, so the queue must hold batch x ranks */
  rc = check_with("moco", 0, 2, tiny, &a, err, sizeof err);
  CHECK(rc == 0 && a.batch == 4 && a.batch_default, "moco tiny, no --batch, 2 ranks: %d, batch %d (%s)", rc, a.batch, rc ? err : "");
  rc = check_with("moco", 12, 1, tiny, &a, err, sizeof err);
  CHECK(rc == 0 && a.batch == 12, "moco --batch 12 in one process: %d (%s)", rc, rc ? err : "");
  rc = check_with("moco", 24, 2, tiny, &a, err, sizeof err);
  CHECK(rc == -1 && strstr(err, "--queue: 20") && strstr(err, "--batch 24"), "moco --batch 24 over 2 ranks, queue 20: %s",
        rc ? err : "(accepted)");

  /* VQGAN: the preset's batch (low: 1 x 8) split like any other; one the ranks do not divide is refused */
  rc = check_with("vqgan", 0, 2, low, &a, err, sizeof err);
  CHECK(rc == 0 && a.batch == 4 && a.batch_default, "vqgan low, no --batch, 2 ranks: %d, batch %d (%s)", rc, a.batch, rc ? err : "");
  rc = check_with("vqgan", 0, 3, low, &a, err, sizeof err);
  CHECK(rc == -1 && strstr(err, "--batch 8 (the preset's)") && strstr(err, "3 ranks"), "vqgan low over 3 ranks refused: %s",
        rc ? err : "(accepted)");

  /* Image-GS fits one image per update: its batch 1 cannot be split */
  rc = check_with("imagegs", 0, 2, NULL, &a, err, sizeof err);
  CHECK(rc == -1 && strstr(err, "--batch 1") && strstr(err, "2 ranks"), "imagegs over 2 ranks refused: %s", rc ? err : "(accepted)");
  printf("test_train_check: the global batch split before every workload's check; e.g. '%s'\n", err);
  return check_finish("test_train_check");
}
