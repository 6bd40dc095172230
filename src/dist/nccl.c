/* nccl.c — the NCCL communicator for device memory (built into libmemfit_cuda.so when the CUDA toolkit has NCCL):
 * initialised over an MPI communicator as llm.c does (rank 0's unique id broadcast), collectives on a CUDA stream,
 * each waited for with the same deadline as MPI's so a dead or hung rank ends the job. */
#include "dist/dist.h"
#include <stdio.h>

#ifdef MEMFIT_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Exported from libmemfit_cuda.so: the session finds them with mf_backend_symbol (dlsym) */
#define NCCL_EXPORT __attribute__((visibility("default")))

typedef struct nccl_impl {
  ncclComm_t comm;
  cudaStream_t stream;
  mf_comm *over;             /* the MPI communicator it was made over (abort, host collectives) */
  int pending[MF_COMM_MAX_PENDING];
  const char *what[MF_COMM_MAX_PENDING];
} nccl_impl;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int nccl_fail(mf_comm *c, ncclResult_t r, const char *what) {
  fprintf(stderr, "memfit: rank %d of %d: %s failed (NCCL): %s\n", c->rank, c->size, what, ncclGetErrorString(r));
  return -1;
}

/* waits for the stream with a deadline; NCCL's asynchronous errors are said; past the deadline the job ends */
static int stream_wait(mf_comm *c, const char *what) {
  nccl_impl *m = c->impl;
  double t0 = now_s();
  for (;;) {
    cudaError_t e = cudaStreamQuery(m->stream);
    if (e == cudaSuccess) break;
    if (e != cudaErrorNotReady) {
      fprintf(stderr, "memfit: rank %d of %d: %s failed (CUDA): %s\n", c->rank, c->size, what, cudaGetErrorString(e));
      c->reduce_s += now_s() - t0;
      return -1;
    }
    ncclResult_t ae = ncclSuccess;
    ncclCommGetAsyncError(m->comm, &ae);
    if (ae != ncclSuccess && ae != ncclInProgress) { c->reduce_s += now_s() - t0; return nccl_fail(c, ae, what); }
    if (now_s() - t0 > c->timeout_s) {
      char msg[256];
      snprintf(msg, sizeof msg, "memfit: rank %d of %d: %s did not finish within %.0f s (MEMFIT_DIST_TIMEOUT): another rank died "
               "or hangs; ending the job", c->rank, c->size, what, c->timeout_s);
      ncclCommAbort(m->comm);
      m->over->abort(m->over, msg);
      return -1;
    }
    struct timespec ns = {0, 20000};
    nanosleep(&ns, NULL);
  }
  c->reduce_s += now_s() - t0;
  return 0;
}

static ncclDataType_t nt_of(mf_comm_type t) {
  return t == MF_COMM_F32 ? ncclFloat32 : t == MF_COMM_F64 ? ncclFloat64 : t == MF_COMM_U64 ? ncclUint64 : ncclUint8;
}

static int n_allreduce(mf_comm *c, void *buf, size_t n, mf_comm_type t, mf_comm_op op, const char *what) {
  nccl_impl *m = c->impl;
  if (op == MF_COMM_BOR) { fprintf(stderr, "memfit: rank %d: %s: NCCL has no bitwise or\n", c->rank, what); return -1; }
  ncclResult_t r = ncclAllReduce(buf, buf, n, nt_of(t), op == MF_COMM_SUM ? ncclSum : op == MF_COMM_MIN ? ncclMin : ncclMax, m->comm,
                                 m->stream);
  return r != ncclSuccess ? nccl_fail(c, r, what) : stream_wait(c, what);
}

/* in place as NCCL defines it: rank r's block of buf [size * n] is both its input's block r and its output */
static int n_reduce_scatter(mf_comm *c, float *buf, size_t n, const char *what) {
  nccl_impl *m = c->impl;
  ncclResult_t r = ncclReduceScatter(buf, buf + (size_t)c->rank * n, n, ncclFloat32, ncclSum, m->comm, m->stream);
  return r != ncclSuccess ? nccl_fail(c, r, what) : stream_wait(c, what);
}

static int n_allgather(mf_comm *c, float *buf, size_t n, const char *what) {
  nccl_impl *m = c->impl;
  ncclResult_t r = ncclAllGather(buf + (size_t)c->rank * n, buf, n, ncclFloat32, m->comm, m->stream);
  return r != ncclSuccess ? nccl_fail(c, r, what) : stream_wait(c, what);
}

static int n_broadcast(mf_comm *c, void *buf, size_t bytes, int root, const char *what) {
  nccl_impl *m = c->impl;
  ncclResult_t r = ncclBroadcast(buf, buf, bytes, ncclUint8, root, m->comm, m->stream);
  return r != ncclSuccess ? nccl_fail(c, r, what) : stream_wait(c, what);
}

static int n_barrier(mf_comm *c, const char *what) {
  nccl_impl *m = c->impl;
  return m->over->barrier(m->over, what);
}

/* the stream orders the requests: a slot only remembers that one is in flight */
static int n_iallreduce(mf_comm *c, float *buf, size_t n, int slot, const char *what) {
  nccl_impl *m = c->impl;
  if (slot < 0 || slot >= MF_COMM_MAX_PENDING) return -1;
  ncclResult_t r = ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum, m->comm, m->stream);
  if (r != ncclSuccess) return nccl_fail(c, r, what);
  m->pending[slot] = 1;
  m->what[slot] = what;
  return 0;
}
static int n_test(mf_comm *c) { (void)c; return 0; }
static int n_wait(mf_comm *c, int slot) {
  nccl_impl *m = c->impl;
  if (slot < 0 || slot >= MF_COMM_MAX_PENDING || !m->pending[slot]) return 0;
  m->pending[slot] = 0;
  return stream_wait(c, m->what[slot]);
}
static void n_abort(mf_comm *c, const char *msg) {
  nccl_impl *m = c->impl;
  ncclCommAbort(m->comm);
  m->over->abort(m->over, msg);
}
static void n_free(mf_comm *c) {
  nccl_impl *m = c->impl;
  ncclCommDestroy(m->comm);
  free(m);
  free(c);
}

/* An NCCL communicator of the same ranks as `over` (an MPI one, or the single-process one for a 1-rank NCCL
 * communicator), its collectives on `stream` (a cudaStream_t; NULL: the default stream) and the current device.
 * NULL with err. */
NCCL_EXPORT mf_comm *mf_comm_nccl_init(mf_comm *over, void *stream, char *err, size_t errlen) {
  ncclUniqueId id;
  memset(&id, 0, sizeof id);
  ncclResult_t r = ncclSuccess;
  if (over->rank == 0 && (r = ncclGetUniqueId(&id)) != ncclSuccess) {
    snprintf(err, errlen, "ncclGetUniqueId: %s", ncclGetErrorString(r));
    return NULL;
  }
  if (over->broadcast(over, &id, sizeof id, 0, "the broadcast of NCCL's unique id") < 0) {
    snprintf(err, errlen, "the broadcast of NCCL's unique id failed");
    return NULL;
  }
  mf_comm *c = calloc(1, sizeof *c);
  nccl_impl *m = calloc(1, sizeof *m);
  if (!c || !m) {
    free(c);
    free(m);
    snprintf(err, errlen, "out of host memory");
    return NULL;
  }
  if ((r = ncclCommInitRank(&m->comm, over->size, id, over->rank)) != ncclSuccess) {
    snprintf(err, errlen, "ncclCommInitRank (rank %d of %d): %s", over->rank, over->size, ncclGetErrorString(r));
    free(c);
    free(m);
    return NULL;
  }
  m->stream = (cudaStream_t)stream;
  m->over = over;
  *c = (mf_comm){"nccl", over->rank, over->size, over->timeout_s, 0, m, n_allreduce, n_reduce_scatter, n_allgather, n_broadcast,
                 n_barrier, n_iallreduce, n_test, n_wait, n_abort, n_free};
  return c;
}

NCCL_EXPORT const char *mf_comm_nccl_version(char *buf, size_t n) {
  int v = 0;
  ncclGetVersion(&v);
  snprintf(buf, n, "NCCL %d.%d.%d", v / 10000, v / 100 % 100, v % 100);
  return buf;
}
#else
/* without NCCL this file defines nothing; ISO C wants a declaration in every translation unit */
typedef int mf_nccl_not_built;
#endif
