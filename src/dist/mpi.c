/* mpi.c — the MPI communicator (Open MPI on Debian): every collective is started non-blocking and
 * waited for with a deadline, so a rank that died or hangs ends the job with a message instead of a hang. */
#include "dist/dist.h"
#include <stdio.h>

#ifndef MEMFIT_HAVE_MPI
mf_comm *mf_comm_mpi_init(int *argc, char ***argv, char *err, size_t errlen) {
  (void)argc; (void)argv;
  snprintf(err, errlen, "this memfit was built without MPI (install libopenmpi-dev and rebuild); started by an MPI launcher, "
                        "it cannot join the job (MEMFIT_DIST=single runs each process alone)");
  return NULL;
}
const char *mf_comm_mpi_version(char *buf, size_t n) { (void)buf; (void)n; return NULL; }
#else
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct mpi_impl {
  MPI_Comm comm;
  MPI_Request req[MF_COMM_MAX_PENDING];
  const char *what[MF_COMM_MAX_PENDING];
  int finalize;              /* memfit called MPI_Init, so it calls MPI_Finalize */
} mpi_impl;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int mpi_fail(mf_comm *c, int rc, const char *what) {
  char s[MPI_MAX_ERROR_STRING] = "";
  int len = 0;
  MPI_Error_string(rc, s, &len);
  fprintf(stderr, "memfit: rank %d of %d: %s failed: %s\n", c->rank, c->size, what, s);
  return -1;
}

/* Waits for *r, testing with a deadline; past it the job is aborted, naming this rank and the collective. */
static int req_wait(mf_comm *c, MPI_Request *r, const char *what) {
  mpi_impl *m = c->impl;
  double t0 = now_s(), spin_until = t0 + 2e-3;
  for (;;) {
    int done = 0, rc = MPI_Test(r, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) { c->reduce_s += now_s() - t0; return mpi_fail(c, rc, what); }
    if (done) break;
    double t = now_s();
    if (t - t0 > c->timeout_s) {
      fprintf(stderr, "memfit: rank %d of %d: %s did not finish within %.0f s (MEMFIT_DIST_TIMEOUT): another rank died or "
                      "hangs; ending the job\n", c->rank, c->size, what, c->timeout_s);
      fflush(stderr);
      MPI_Abort(m->comm, 1);
      return -1;
    }
    if (t > spin_until) { /* past the first milliseconds: leave the core to others while waiting */
      struct timespec ns = {0, 50000};
      nanosleep(&ns, NULL);
    }
  }
  c->reduce_s += now_s() - t0;
  return 0;
}

static MPI_Datatype dtype_of(mf_comm_type t) {
  return t == MF_COMM_F32 ? MPI_FLOAT : t == MF_COMM_F64 ? MPI_DOUBLE : t == MF_COMM_U64 ? MPI_UINT64_T : MPI_BYTE;
}
static MPI_Op op_of(mf_comm_op op) {
  return op == MF_COMM_SUM ? MPI_SUM : op == MF_COMM_MIN ? MPI_MIN : op == MF_COMM_MAX ? MPI_MAX : MPI_BOR;
}

/* MPI counts are int: large buffers go in pieces of at most 2^30 elements */
#define MPI_CHUNK ((size_t)1 << 30)

static int m_allreduce(mf_comm *c, void *buf, size_t n, mf_comm_type t, mf_comm_op op, const char *what) {
  mpi_impl *m = c->impl;
  size_t es = t == MF_COMM_F32 ? 4 : t == MF_COMM_U8 ? 1 : 8;
  for (size_t o = 0; o < n; o += MPI_CHUNK) {
    size_t k = n - o < MPI_CHUNK ? n - o : MPI_CHUNK;
    MPI_Request r;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, (char *)buf + o * es, (int)k, dtype_of(t), op_of(op), m->comm, &r);
    if (rc != MPI_SUCCESS) return mpi_fail(c, rc, what);
    if (req_wait(c, &r, what) < 0) return -1;
  }
  return 0;
}

static int m_reduce_scatter(mf_comm *c, float *buf, size_t n, const char *what) {
  mpi_impl *m = c->impl;
  if (n > MPI_CHUNK) { fprintf(stderr, "memfit: rank %d: %s: %zu floats per rank is too many for one reduce-scatter\n", c->rank, what, n); return -1; }
  MPI_Request r;
  /* in place: rank r's reduced block lands at the start of buf; moved to its own place after */
  int rc = MPI_Ireduce_scatter_block(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, m->comm, &r);
  if (rc != MPI_SUCCESS) return mpi_fail(c, rc, what);
  if (req_wait(c, &r, what) < 0) return -1;
  if (c->rank) memmove(buf + (size_t)c->rank * n, buf, n * sizeof *buf);
  return 0;
}

static int m_allgather(mf_comm *c, float *buf, size_t n, const char *what) {
  mpi_impl *m = c->impl;
  if (n > MPI_CHUNK) { fprintf(stderr, "memfit: rank %d: %s: %zu floats per rank is too many for one all-gather\n", c->rank, what, n); return -1; }
  MPI_Request r;
  int rc = MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, (int)n, MPI_FLOAT, m->comm, &r);
  if (rc != MPI_SUCCESS) return mpi_fail(c, rc, what);
  return req_wait(c, &r, what);
}

static int m_broadcast(mf_comm *c, void *buf, size_t bytes, int root, const char *what) {
  mpi_impl *m = c->impl;
  for (size_t o = 0; o < bytes || (o == 0 && bytes == 0); o += MPI_CHUNK) {
    size_t k = bytes - o < MPI_CHUNK ? bytes - o : MPI_CHUNK;
    MPI_Request r;
    int rc = MPI_Ibcast((char *)buf + o, (int)k, MPI_BYTE, root, m->comm, &r);
    if (rc != MPI_SUCCESS) return mpi_fail(c, rc, what);
    if (req_wait(c, &r, what) < 0) return -1;
    if (!bytes) break;
  }
  return 0;
}

static int m_barrier(mf_comm *c, const char *what) {
  mpi_impl *m = c->impl;
  MPI_Request r;
  int rc = MPI_Ibarrier(m->comm, &r);
  if (rc != MPI_SUCCESS) return mpi_fail(c, rc, what);
  return req_wait(c, &r, what);
}

static int m_iallreduce(mf_comm *c, float *buf, size_t n, int slot, const char *what) {
  mpi_impl *m = c->impl;
  if (slot < 0 || slot >= MF_COMM_MAX_PENDING || m->req[slot] != MPI_REQUEST_NULL || n > MPI_CHUNK) {
    fprintf(stderr, "memfit: rank %d: %s: request slot %d is busy or out of range (or %zu floats is too many)\n", c->rank, what, slot, n);
    return -1;
  }
  int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, m->comm, &m->req[slot]);
  if (rc != MPI_SUCCESS) return mpi_fail(c, rc, what);
  m->what[slot] = what;
  return 0;
}

static int m_test(mf_comm *c) {
  mpi_impl *m = c->impl;
  int flag = 0;
  for (int i = 0; i < MF_COMM_MAX_PENDING; i++)
    if (m->req[i] != MPI_REQUEST_NULL) {
      int rc = MPI_Test(&m->req[i], &flag, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS) return mpi_fail(c, rc, m->what[i]);
    }
  return 0;
}

static int m_wait(mf_comm *c, int slot) {
  mpi_impl *m = c->impl;
  if (slot < 0 || slot >= MF_COMM_MAX_PENDING || m->req[slot] == MPI_REQUEST_NULL) return 0;
  return req_wait(c, &m->req[slot], m->what[slot]);
}

static void m_abort(mf_comm *c, const char *msg) {
  mpi_impl *m = c->impl;
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
  MPI_Abort(m->comm, 1);
  exit(1);
}

static void m_free(mf_comm *c) {
  mpi_impl *m = c->impl;
  for (int i = 0; i < MF_COMM_MAX_PENDING; i++)
    if (m->req[i] != MPI_REQUEST_NULL) req_wait(c, &m->req[i], m->what[i]);
  MPI_Comm_free(&m->comm);
  if (m->finalize) MPI_Finalize();
  free(m);
  free(c);
}

mf_comm *mf_comm_mpi_init(int *argc, char ***argv, char *err, size_t errlen) {
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) {
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
      snprintf(err, errlen, "MPI_Init failed");
      return NULL;
    }
  }
  mf_comm *c = calloc(1, sizeof *c);
  mpi_impl *m = calloc(1, sizeof *m);
  if (!c || !m) {
    free(c);
    free(m);
    snprintf(err, errlen, "out of host memory");
    return NULL;
  }
  m->finalize = !inited;
  MPI_Comm_dup(MPI_COMM_WORLD, &m->comm);
  /* errors come back as return codes, said with the rank, instead of MPI's default abort without context */
  MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN);
  for (int i = 0; i < MF_COMM_MAX_PENDING; i++) m->req[i] = MPI_REQUEST_NULL;
  MPI_Comm_rank(m->comm, &c->rank);
  MPI_Comm_size(m->comm, &c->size);
  c->kind = "mpi";
  c->timeout_s = 300;
  c->impl = m;
  c->allreduce = m_allreduce;
  c->reduce_scatter = m_reduce_scatter;
  c->allgather = m_allgather;
  c->broadcast = m_broadcast;
  c->barrier = m_barrier;
  c->iallreduce = m_iallreduce;
  c->test = m_test;
  c->wait = m_wait;
  c->abort = m_abort;
  c->free = m_free;
  return c;
}

const char *mf_comm_mpi_version(char *buf, size_t n) {
  char lib[MPI_MAX_LIBRARY_VERSION_STRING] = "";
  int len = 0, v = 0, sv = 0;
  MPI_Get_library_version(lib, &len);
  MPI_Get_version(&v, &sv);
  char *nl = strpbrk(lib, ",\n");
  if (nl) *nl = 0;
  snprintf(buf, n, "%s, MPI %d.%d", lib, v, sv);
  return buf;
}
#endif
