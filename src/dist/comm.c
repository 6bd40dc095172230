/* comm.c — the communicator every build has: choosing MPI or a single process, the one-process
 * communicator (every collective leaves its buffer as it is), and agreement checks over hashes. */
#include "dist/dist.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int single_allreduce(mf_comm *c, void *b, size_t n, mf_comm_type t, mf_comm_op op, const char *w) {
  (void)c; (void)b; (void)n; (void)t; (void)op; (void)w;
  return 0;
}
static int single_rs(mf_comm *c, float *b, size_t n, const char *w) { (void)c; (void)b; (void)n; (void)w; return 0; }
static int single_bcast(mf_comm *c, void *b, size_t n, int root, const char *w) { (void)c; (void)b; (void)n; (void)root; (void)w; return 0; }
static int single_barrier(mf_comm *c, const char *w) { (void)c; (void)w; return 0; }
static int single_iallreduce(mf_comm *c, float *b, size_t n, int slot, const char *w) {
  (void)c; (void)b; (void)n; (void)slot; (void)w;
  return 0;
}
static int single_test(mf_comm *c) { (void)c; return 0; }
static int single_wait(mf_comm *c, int slot) { (void)c; (void)slot; return 0; }
static void single_abort(mf_comm *c, const char *msg) {
  (void)c;
  fprintf(stderr, "%s\n", msg);
  exit(1);
}
static void single_free(mf_comm *c) { (void)c; }

static mf_comm single_comm = {"single process", 0, 1, 300, 0, NULL, single_allreduce, single_rs, single_rs, single_bcast,
                              single_barrier, single_iallreduce, single_test, single_wait, single_abort, single_free};

mf_comm *mf_comm_single(void) { return &single_comm; }

int mf_comm_launched(void) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "MPI_LOCALNRANKS", "SLURM_STEP_NUM_TASKS"};
  const char *f = getenv("MEMFIT_DIST");
  if (f && !strcmp(f, "single")) return 0;
  if (f && !strcmp(f, "mpi")) return 1;
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
    if (getenv(vars[i])) return 1;
  return 0;
}

mf_comm *mf_comm_init(int *argc, char ***argv, char *err, size_t errlen) {
  if (!mf_comm_launched()) return mf_comm_single();
  mf_comm *c = mf_comm_mpi_init(argc, argv, err, errlen);
  if (!c) return NULL;
  const char *t = getenv("MEMFIT_DIST_TIMEOUT");
  if (t && atof(t) > 0) c->timeout_s = atof(t);
  return c;
}

void mf_comm_free(mf_comm *c) {
  if (c && c != &single_comm) c->free(c);
}

const char *mf_comm_builtin(char *buf, size_t n) {
  char v[160];
  if (mf_comm_mpi_version(v, sizeof v)) snprintf(buf, n, "MPI (%s)", v);
  else snprintf(buf, n, "none (built without MPI: single process only)");
  return buf;
}

double mf_comm_take_time(mf_comm *c) {
  double t = c->reduce_s;
  c->reduce_s = 0;
  return t;
}

uint64_t mf_comm_hash(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  if (!h) h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
  return h;
}

int mf_comm_agree(mf_comm *c, uint64_t h, const char *what, int *first_bad) {
  if (first_bad) *first_bad = -1;
  if (c->size == 1) return 1;
  uint64_t mm[2] = {h, h};
  if (c->allreduce(c, &mm[0], 1, MF_COMM_U64, MF_COMM_MIN, what) < 0 || c->allreduce(c, &mm[1], 1, MF_COMM_U64, MF_COMM_MAX, what) < 0)
    return -1;
  if (mm[0] == mm[1]) return 1;
  uint64_t h0 = h, who;
  if (c->broadcast(c, &h0, sizeof h0, 0, what) < 0) return -1;
  who = h != h0 ? (uint64_t)c->rank : (uint64_t)c->size;
  if (c->allreduce(c, &who, 1, MF_COMM_U64, MF_COMM_MIN, what) < 0) return -1;
  if (first_bad) *first_bad = (int)who;
  return 0;
}
