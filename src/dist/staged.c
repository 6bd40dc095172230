/* staged.c — a communicator for device memory that has no device collectives of its own (ranks sharing one GPU,
 * where NCCL refuses, or a toolkit without NCCL): each collective copies its device bytes into one host buffer,
 * runs on the host communicator (MPI), and copies the result back. */
#include "dist/dist.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct staged_impl {
  mf_comm *over;                         /* the host communicator the collectives run on */
  mf_comm_copy copy_out, copy_in;        /* device -> host, host -> device; each ordered after the device's queued work */
  uint8_t *host;                         /* [cap] the staging buffer */
  size_t cap;
  const uint8_t *base;                   /* non-blocking all-reduces stage [base, base + cap) at the same offsets */
  float *pend_dev[MF_COMM_MAX_PENDING];  /* a request in flight: its device range, copied back when it is waited for */
  size_t pend_n[MF_COMM_MAX_PENDING];
} staged_impl;

static int too_big(mf_comm *c, size_t bytes, const char *what) {
  staged_impl *m = c->impl;
  fprintf(stderr, "memfit: rank %d of %d: %s: %zu B do not fit the %zu B host staging buffer\n", c->rank, c->size, what, bytes, m->cap);
  return -1;
}

static int s_wait(mf_comm *c, int slot) {
  staged_impl *m = c->impl;
  if (slot < 0 || slot >= MF_COMM_MAX_PENDING || !m->pend_dev[slot]) return 0;
  float *dev = m->pend_dev[slot];
  m->pend_dev[slot] = NULL;
  if (m->over->wait(m->over, slot) < 0) return -1;
  return m->copy_in(dev, m->host + ((const uint8_t *)dev - m->base), m->pend_n[slot] * sizeof(float));
}

/* the blocking collectives use the buffer from its start: the requests in flight finish first */
static int drain(mf_comm *c) {
  for (int k = 0; k < MF_COMM_MAX_PENDING; k++)
    if (s_wait(c, k) < 0) return -1;
  return 0;
}

static size_t type_bytes(mf_comm_type t) { return t == MF_COMM_F64 || t == MF_COMM_U64 ? 8 : t == MF_COMM_F32 ? 4 : 1; }

static int s_allreduce(mf_comm *c, void *buf, size_t n, mf_comm_type t, mf_comm_op op, const char *what) {
  staged_impl *m = c->impl;
  size_t bytes = n * type_bytes(t);
  if (bytes > m->cap) return too_big(c, bytes, what);
  if (drain(c) < 0 || m->copy_out(m->host, buf, bytes) < 0) return -1;
  if (m->over->allreduce(m->over, m->host, n, t, op, what) < 0) return -1;
  return m->copy_in(buf, m->host, bytes);
}

static int s_reduce_scatter(mf_comm *c, float *buf, size_t n, const char *what) {
  staged_impl *m = c->impl;
  size_t bytes = (size_t)c->size * n * sizeof(float), mine = (size_t)c->rank * n;
  if (bytes > m->cap) return too_big(c, bytes, what);
  if (drain(c) < 0 || m->copy_out(m->host, buf, bytes) < 0) return -1;
  if (m->over->reduce_scatter(m->over, (float *)m->host, n, what) < 0) return -1;
  return m->copy_in(buf + mine, (float *)m->host + mine, n * sizeof(float)); /* only this rank's block changed */
}

static int s_allgather(mf_comm *c, float *buf, size_t n, const char *what) {
  staged_impl *m = c->impl;
  size_t bytes = (size_t)c->size * n * sizeof(float), mine = (size_t)c->rank * n;
  if (bytes > m->cap) return too_big(c, bytes, what);
  if (drain(c) < 0 || m->copy_out((float *)m->host + mine, buf + mine, n * sizeof(float)) < 0) return -1;
  if (m->over->allgather(m->over, (float *)m->host, n, what) < 0) return -1;
  return m->copy_in(buf, m->host, bytes);
}

static int s_broadcast(mf_comm *c, void *buf, size_t bytes, int root, const char *what) {
  staged_impl *m = c->impl;
  if (bytes > m->cap) return too_big(c, bytes, what);
  if (drain(c) < 0 || (c->rank == root && m->copy_out(m->host, buf, bytes) < 0)) return -1;
  if (m->over->broadcast(m->over, m->host, bytes, root, what) < 0) return -1;
  return m->copy_in(buf, m->host, bytes);
}

static int s_barrier(mf_comm *c, const char *what) {
  staged_impl *m = c->impl;
  return m->over->barrier(m->over, what);
}

/* buf [n] must lie in [base, base + cap): its bytes are staged at the same offset, so requests in flight never share
 * host bytes */
static int s_iallreduce(mf_comm *c, float *buf, size_t n, int slot, const char *what) {
  staged_impl *m = c->impl;
  const uint8_t *p = (const uint8_t *)buf;
  if (slot < 0 || slot >= MF_COMM_MAX_PENDING) return -1;
  if (!m->base || p < m->base || (size_t)(p - m->base) + n * sizeof(float) > m->cap) return too_big(c, n * sizeof(float), what);
  if (s_wait(c, slot) < 0) return -1; /* the request before in that slot */
  uint8_t *h = m->host + (p - m->base);
  if (m->copy_out(h, buf, n * sizeof(float)) < 0) return -1;
  m->pend_dev[slot] = buf;
  m->pend_n[slot] = n;
  return m->over->iallreduce(m->over, (float *)h, n, slot, what);
}

static int s_test(mf_comm *c) {
  staged_impl *m = c->impl;
  return m->over->test(m->over);
}

static void s_abort(mf_comm *c, const char *msg) {
  staged_impl *m = c->impl;
  m->over->abort(m->over, msg);
}

static void s_free(mf_comm *c) {
  staged_impl *m = c->impl;
  free(m->host);
  free(m);
  free(c);
}

mf_comm *mf_comm_staged_init(mf_comm *over, mf_comm_copy copy_out, mf_comm_copy copy_in, const void *base, size_t cap, char *err,
                             size_t errlen) {
  mf_comm *c = calloc(1, sizeof *c);
  staged_impl *m = calloc(1, sizeof *m);
  uint8_t *host = malloc(cap ? cap : 1);
  if (!c || !m || !host) {
    free(c);
    free(m);
    free(host);
    snprintf(err, errlen, "out of host memory for the %zu B staging buffer of the device's collectives", cap);
    return NULL;
  }
  *m = (staged_impl){.over = over, .copy_out = copy_out, .copy_in = copy_in, .host = host, .cap = cap, .base = base};
  *c = (mf_comm){"host-staged", over->rank, over->size, over->timeout_s, 0, m, s_allreduce, s_reduce_scatter, s_allgather, s_broadcast,
                 s_barrier, s_iallreduce, s_test, s_wait, s_abort, s_free};
  return c;
}
