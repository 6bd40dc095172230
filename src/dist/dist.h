/* dist.h — data parallel over several processes: a small communicator interface (all-reduce,
 * reduce-scatter, all-gather, broadcast, barrier) with an MPI implementation and a one-process one. */
#ifndef MF_DIST_H
#define MF_DIST_H

#include <stddef.h>
#include <stdint.h>

/* BOR (bitwise or, U8 only): gathers into a buffer each rank zeroes but for its own bytes, in any dtype, exactly */
typedef enum mf_comm_op { MF_COMM_SUM = 0, MF_COMM_MIN, MF_COMM_MAX, MF_COMM_BOR } mf_comm_op;
typedef enum mf_comm_type { MF_COMM_F32 = 0, MF_COMM_F64, MF_COMM_U64, MF_COMM_U8 } mf_comm_type;

#define MF_COMM_MAX_PENDING 64  /* non-blocking all-reduces in flight at once (gradient buckets) */

/* A communicator: the processes of one job, each a rank 0 .. size-1. Every collective is called by
 * all ranks in the same order. Each returns 0, or -1 after printing (stderr) which rank and which
 * collective failed; a collective that does not finish within timeout_s (another rank died or hangs)
 * aborts the whole job with a message naming this rank and the collective. */
typedef struct mf_comm mf_comm;
struct mf_comm {
  const char *kind;          /* "mpi" or "single process" */
  int rank, size;
  double timeout_s;          /* MEMFIT_DIST_TIMEOUT (seconds; default 300) */
  double reduce_s;           /* seconds spent waiting in collectives since the last mf_comm_take_time */
  void *impl;
  /* buf [n] of type t, the same n on every rank; in place */
  int (*allreduce)(mf_comm *c, void *buf, size_t n, mf_comm_type t, mf_comm_op op, const char *what);
  /* buf [size * n] f32: rank r ends with the reduced sum of its block [r*n, (r+1)*n) in place (the other
   * blocks keep what they held) */
  int (*reduce_scatter)(mf_comm *c, float *buf, size_t n, const char *what);
  /* buf [size * n] f32: block r (rank r's, in place) goes to every rank */
  int (*allgather)(mf_comm *c, float *buf, size_t n, const char *what);
  int (*broadcast)(mf_comm *c, void *buf, size_t bytes, int root, const char *what);
  int (*barrier)(mf_comm *c, const char *what);
  /* non-blocking f32 sum all-reduce of buf [n] in place into request slot (0 .. MF_COMM_MAX_PENDING-1);
   * test: lets pending requests progress (returns 0); wait: finishes slot's request */
  int (*iallreduce)(mf_comm *c, float *buf, size_t n, int slot, const char *what);
  int (*test)(mf_comm *c);
  int (*wait)(mf_comm *c, int slot);
  /* stops every rank at once with this message (a rank that found a fault others cannot see) */
  void (*abort)(mf_comm *c, const char *msg);
  void (*free)(mf_comm *c);
};

/* The job's communicator: MPI when memfit was built with it and the process was started by mpirun
 * (or another MPI launcher), otherwise a single-process one (size 1; every collective is a no-op).
 * MEMFIT_DIST=single forces the latter. NULL with err when MPI was asked for and failed. */
mf_comm *mf_comm_init(int *argc, char ***argv, char *err, size_t errlen);
void mf_comm_free(mf_comm *c);
mf_comm *mf_comm_single(void);
/* What this build can use: "MPI (Open MPI 4.1.4, MPI 3.1)" or "none (single process only)". */
const char *mf_comm_builtin(char *buf, size_t n);
/* 1 when the environment says an MPI launcher started this process (OMPI_COMM_WORLD_SIZE, PMI_SIZE...) */
int mf_comm_launched(void);
/* Seconds the collectives waited since the last call (and resets the count). */
double mf_comm_take_time(mf_comm *c);
/* FNV-1a over bytes, for agreement checks (plans, parameters) */
uint64_t mf_comm_hash(uint64_t h, const void *p, size_t n);
/* Every rank passes its hash; returns 1 when all agree, 0 when not (*first_bad = the lowest rank whose
 * hash differs from rank 0's), -1 when the collective failed. */
int mf_comm_agree(mf_comm *c, uint64_t h, const char *what, int *first_bad);

/* The NCCL implementation (src/dist/nccl.c) lives in libmemfit_cuda.so when the toolkit has NCCL, found there by name
 * (mf_backend_symbol): an NCCL communicator of over's ranks, initialised over it (rank 0's unique id broadcast), its
 * collectives on `stream` (give the backend's compute stream, so they run in order with the kernels). */
typedef mf_comm *(*mf_comm_nccl_init_fn)(mf_comm *over, void *stream, char *err, size_t errlen);
mf_comm *mf_comm_nccl_init(mf_comm *over, void *stream, char *err, size_t errlen);

/* A communicator for device memory over a host one (src/dist/staged.c): each collective copies its bytes from the
 * device into a host buffer of cap bytes (copy_out), runs on `over`, and copies the result back (copy_in); both copies
 * are ordered after the device's queued work. Non-blocking all-reduces take ranges of [base, base + cap) and stage them
 * at the same offsets; a blocking collective first finishes those in flight. A collective larger than cap fails with
 * a message. It does not own `over`. NULL with err. */
typedef int (*mf_comm_copy)(void *dst, const void *src, size_t n);
mf_comm *mf_comm_staged_init(mf_comm *over, mf_comm_copy copy_out, mf_comm_copy copy_in, const void *base, size_t cap, char *err,
                             size_t errlen);

/* the MPI implementation (src/dist/mpi.c); NULL with err when not built in */
mf_comm *mf_comm_mpi_init(int *argc, char ***argv, char *err, size_t errlen);
const char *mf_comm_mpi_version(char *buf, size_t n);

#endif
