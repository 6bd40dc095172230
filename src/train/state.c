/* state.c (train) — the session's side of persistent state: EMA averages follow their parameters after
 * each update, rings take their keys once per optimizer step, masks of growing models, host reads and
 * writes of states, growth (mf_session_grow) and the checks a checkpoint's states must pass. */
#include "train/session.h"
#include "graph/dtype.h"
#include "ops/ops.h"
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static bool is_kind(const mf_node *n, mf_state_kind k) { return n->role == MF_ROLE_BUFFER && n->state_kind == k; }

void mf_state_key(const mf_node *n, char *buf, size_t len) {
  snprintf(buf, len, "%s.%s", n->state_kind == MF_STATE_BUFFER ? "buffer" : "state", n->name);
}

/* small copies between the host and the backend's memory */
static int dev_out(mf_session *s, void *dst, const void *src, size_t n) {
  if (s->be->copy_out) return s->be->copy_out(dst, src, n);
  memcpy(dst, src, n);
  return 0;
}
static int dev_in(mf_session *s, void *dst, const void *src, size_t n) {
  if (s->be->copy_in) return s->be->copy_in(dst, src, n);
  memcpy(dst, src, n);
  return 0;
}

/* Entries of a mask that are 1 before the first 0; -1 (and *bad the element) when it is not ones then
 * zeros. v: n values of dtype dt. */
static int64_t mask_count(const void *v, mf_dtype dt, int64_t n, int64_t *bad) {
  int64_t k = 0;
  while (k < n && mf_ld(v, dt, k) == 1) k++;
  for (int64_t i = k; i < n; i++)
    if (mf_ld(v, dt, i) != 0) { *bad = i; return -1; }
  return k;
}

int mf_state_init(mf_session *s, char *err, size_t errlen) {
  const mf_graph *g = s->plan->g;
  for (int id = 0; id < g->n; id++) {
    const mf_node *n = &g->nodes[id];
    if (is_kind(n, MF_STATE_MASK) && !s->n_active) {
      if (!(s->n_active = calloc((size_t)g->n, sizeof *s->n_active))) { snprintf(err, errlen, "session: out of host memory"); return -1; }
    }
    if (n->role != MF_ROLE_BUFFER) continue;
    void *d = mf_session_host_ptr(s, id);
    if (!d) continue;
    if (n->state_kind == MF_STATE_EMA) /* the average starts at its parameter's initial value */
      memcpy(d, mf_session_host_ptr(s, n->link), mf_node_bytes(n));
    else if (n->state_kind == MF_STATE_RING || n->state_kind == MF_STATE_RING_POS || n->state_kind == MF_STATE_RING_STAGE)
      memset(d, 0, mf_node_bytes(n));
    else if (n->state_kind == MF_STATE_MASK) {
      int64_t k = (int64_t)n->fp[0];
      for (int64_t i = 0; i < n->ne[0]; i++) mf_st(d, n->dtype, i, i < k ? 1 : 0);
      s->n_active[id] = k;
    }
  }
  return 0;
}

int mf_state_after_update(mf_session *s) { return mf_state_after_update_some(s, NULL); }

int mf_state_after_update_some(mf_session *s, const uint8_t *only) {
  const mf_graph *g = s->plan->g;
  for (int id = 0; id < g->n; id++) {
    const mf_node *n = &g->nodes[id];
    if (!is_kind(n, MF_STATE_EMA) || (only && !only[n->link])) continue;
    float *k = mf_session_ptr(s, NULL, id);
    const float *q = mf_session_ptr(s, NULL, n->link);
    int64_t cnt = mf_node_numel(n);
    float m = (float)n->fp[0], om = (float)(1 - n->fp[0]);
    if (n->dtype != MF_F32) { /* f64 graphs (tests): the formula in f64 */
      double *kd = (double *)k;
      const double *qd = (const double *)q;
      for (int64_t i = 0; i < cnt; i++) kd[i] = n->fp[0] * kd[i] + (1 - n->fp[0]) * qd[i];
    } else if (s->be->ema_update)
      s->be->ema_update(k, q, cnt, m, om, s->stream);
    else {
      #pragma omp parallel for schedule(static) if (cnt > 65536)
      for (int64_t i = 0; i < cnt; i++) k[i] = m * k[i] + om * q[i];
    }
  }
  return 0;
}

static int copy_rows(mf_session *s, uint8_t *dst, const uint8_t *src, size_t n) {
  if (s->be->copy_dd) return s->be->copy_dd(dst, src, n, s->stream);
  memcpy(dst, src, n);
  return 0;
}

/* Writes n rows of src into ring r at its position, wrapping around (later rows win when n > rows). */
static int ring_write(mf_session *s, const mf_node *r, uint8_t *ring, int64_t *at, const uint8_t *src, int64_t n) {
  int64_t rows = r->ne[0], done = 0;
  size_t row_bytes = (size_t)r->ne[1] * mf_dtype_size(r->dtype);
  while (done < n) {
    int64_t take = n - done < rows - *at ? n - done : rows - *at;
    if (copy_rows(s, ring + (size_t)*at * row_bytes, src + (size_t)done * row_bytes, (size_t)take * row_bytes) < 0) return -1;
    done += take;
    *at = (*at + take) % rows;
  }
  return 0;
}

/* Pushes into the ring of position node pn: `staged` micro-steps' keys from its stage, then (keys != NULL)
 * this micro-step's B keys. */
static int ring_flush(mf_session *s, const mf_node *pn, int id, int64_t staged, const uint8_t *keys) {
  const mf_graph *g = s->plan->g;
  const mf_node *r = &g->nodes[pn->link], *kn = &g->nodes[pn->ip[0]];
  uint8_t *ring = mf_session_ptr(s, NULL, pn->link);
  int32_t *posp = mf_session_ptr(s, NULL, id), pos;
  if (dev_out(s, &pos, posp, sizeof pos) < 0) return -1;
  int64_t at = pos, B = kn->ne[0];
  if (s->comm) { /* data parallel: the ring takes the global batch's keys, in the order one process would write them */
    mf_comm *c = s->comm;
    int64_t rows = r->ne[0], m_all = staged + (keys != NULL), G = m_all * B * c->size;
    size_t row_bytes = (size_t)r->ne[1] * mf_dtype_size(r->dtype);
    if (G > rows) {
      fprintf(stderr, "memfit: ring '%s': %lld keys per update from %d ranks are more than its %lld rows\n", r->name, (long long)G,
              c->size, (long long)rows);
      return -1;
    }
    for (int64_t i = 0; i < G; i++) memset(ring + (size_t)((at + i) % rows) * row_bytes, 0, row_bytes);
    const uint8_t *stage = staged > 0 ? mf_session_ptr(s, NULL, pn->ip[2]) : NULL;
    for (int64_t m = 0; m < m_all; m++) /* micro-step m's local row j is row m*B*size + rank + size*j of the global keys */
      for (int64_t j = 0; j < B; j++) {
        const uint8_t *src = m < staged ? stage + (size_t)(m * B + j) * row_bytes : keys + (size_t)j * row_bytes;
        memcpy(ring + (size_t)((at + m * B * c->size + c->rank + (int64_t)c->size * j) % rows) * row_bytes, src, row_bytes);
      }
    /* every other rank's rows are zero here: or-ing the bytes gathers them exactly, in any dtype */
    int64_t first = G < rows - at ? G : rows - at;
    if (c->allreduce(c, ring + (size_t)at * row_bytes, (size_t)first * row_bytes, MF_COMM_U8, MF_COMM_BOR, "the all-gather of a ring's keys") < 0 ||
        (G > first && c->allreduce(c, ring, (size_t)(G - first) * row_bytes, MF_COMM_U8, MF_COMM_BOR, "the all-gather of a ring's keys") < 0))
      return -1;
    pos = (int32_t)((at + G) % rows);
    return dev_in(s, posp, &pos, sizeof pos);
  }
  if (staged > 0 && ring_write(s, r, ring, &at, mf_session_ptr(s, NULL, pn->ip[2]), staged * B) < 0) return -1;
  if (keys && ring_write(s, r, ring, &at, keys, B) < 0) return -1;
  pos = (int32_t)at;
  return dev_in(s, posp, &pos, sizeof pos);
}

int mf_state_after_micro(mf_session *s, const mf_program *pr, int index) {
  const mf_graph *g = s->plan->g;
  for (int id = 0; id < g->n; id++) {
    const mf_node *pn = &g->nodes[id];
    if (!is_kind(pn, MF_STATE_RING_POS) || pn->ip[0] < 0) continue;
    const mf_node *r = &g->nodes[pn->link], *kn = &g->nodes[pn->ip[0]];
    const uint8_t *keys = mf_session_ptr(s, pr, pn->ip[0]);
    if (!keys) {
      fprintf(stderr, "memfit: ring '%s': its keys '%s' are not live after the step\n", r->name, kn->name);
      return -1;
    }
    int steps = pn->ip[1];
    if (index < steps - 1) { /* an earlier micro-step of the optimizer step: its keys wait in the stage */
      uint8_t *stage = mf_session_ptr(s, NULL, pn->ip[2]);
      if (copy_rows(s, stage + (size_t)index * mf_node_bytes(kn), keys, mf_node_bytes(kn)) < 0) return -1;
      continue;
    }
    /* the step's last micro-step: the staged keys, then these, in order */
    if (ring_flush(s, pn, id, index < steps ? index : 0, keys) < 0) return -1;
  }
  return 0;
}

int mf_state_before_update(mf_session *s, int pending) {
  const mf_graph *g = s->plan->g;
  for (int id = 0; id < g->n; id++) {
    const mf_node *pn = &g->nodes[id];
    if (!is_kind(pn, MF_STATE_RING_POS) || pn->ip[0] < 0 || pending <= 0 || pending >= pn->ip[1]) continue;
    if (ring_flush(s, pn, id, pending, NULL) < 0) return -1; /* an update before the step's last micro-step */
  }
  return 0;
}

int mf_state_check_steps(const mf_session *s, char *err, size_t errlen) {
  const mf_graph *g = s->plan->g;
  if (!s->plan->has_train) return 0;
  for (int id = 0; id < g->n; id++) {
    const mf_node *pn = &g->nodes[id];
    if (!is_kind(pn, MF_STATE_RING_POS) || pn->ip[0] < 0 || pn->ip[1] == s->opts.accum_steps) continue;
    snprintf(err, errlen,
             "session: ring '%s' takes the keys of %d micro-steps per optimizer update (mf_ring_push_steps), but accum_steps "
             "is %d: build the graph for the session's accumulation",
             g->nodes[pn->link].name, pn->ip[1], s->opts.accum_steps);
    return -1;
  }
  return 0;
}

int mf_session_set_ema_momentum(mf_session *s, mf_tensor ema, double momentum) {
  mf_graph *g = s->plan->g;
  if (!(momentum >= 0 && momentum <= 1)) {
    fprintf(stderr, "memfit: set_ema_momentum: momentum %g is not in [0, 1]\n", momentum);
    return -1;
  }
  int want = ema < 0 ? -1 : mf_state_node(g, ema), found = 0;
  if (ema >= 0 && (want < 0 || !is_kind(&g->nodes[want], MF_STATE_EMA))) {
    fprintf(stderr, "memfit: set_ema_momentum: tensor %d is not an EMA average (mf_ema)\n", ema);
    return -1;
  }
  for (int id = 0; id < g->n; id++)
    if (is_kind(&g->nodes[id], MF_STATE_EMA) && (want < 0 || id == want)) {
      g->nodes[id].fp[0] = momentum;
      found++;
    }
  return found;
}

int64_t mf_state_active_elems(const mf_session *s, const mf_node *n) {
  int64_t cnt = mf_node_numel(n);
  if (n->link < 0 || !s->n_active) return cnt;
  return s->n_active[n->link] * (cnt / n->ne[0]);
}

/* ---- checkpoints ---- */
int mf_state_load_check(mf_session *s, mf_state_lookup_fn lookup, void *ctx, const char *path, char *err, size_t errlen) {
  const mf_graph *g = s->plan->g;
  char key[MF_NAME_LEN + 16];
  for (int id = 0; id < g->n; id++) {
    const mf_node *n = &g->nodes[id];
    if (!is_kind(n, MF_STATE_MASK) && !is_kind(n, MF_STATE_RING_POS)) continue;
    mf_state_key(n, key, sizeof key);
    const void *v = lookup(ctx, key);
    if (!v) { snprintf(err, errlen, "checkpoint %s: tensor '%s' is missing", path, key); return -1; }
    if (n->state_kind == MF_STATE_MASK) {
      int64_t bad = 0;
      if (mask_count(v, n->dtype, n->ne[0], &bad) < 0) {
        snprintf(err, errlen, "checkpoint %s: tensor '%s' holds %g at element %" PRId64 ": a mask is 1 for its first entries and "
                              "0 after them (was the file edited?)", path, key, mf_ld(v, n->dtype, bad), bad);
        return -1;
      }
    } else {
      int32_t pos;
      memcpy(&pos, v, sizeof pos);
      int64_t rows = g->nodes[n->link].ne[0];
      if (pos < 0 || pos >= rows) {
        snprintf(err, errlen, "checkpoint %s: tensor '%s' is %d: a position in ring '%s' is 0 to %" PRId64 " (was the file edited?)",
                 path, key, (int)pos, g->nodes[n->link].name, rows - 1);
        return -1;
      }
    }
  }
  return 0;
}

void mf_state_load_done(mf_session *s) {
  const mf_graph *g = s->plan->g;
  if (!s->n_active) return;
  for (int id = 0; id < g->n; id++) {
    const mf_node *n = &g->nodes[id];
    if (!is_kind(n, MF_STATE_MASK)) continue;
    int64_t bad;
    const void *v = mf_session_host_ptr(s, id); /* the host view the checkpoint was copied into */
    s->n_active[id] = v ? mask_count(v, n->dtype, n->ne[0], &bad) : 0;
  }
}

/* ---- the public API ---- */
int mf_session_write_state(mf_session *s, mf_tensor t, const float *src, size_t n) {
  const mf_graph *g = s->plan->g;
  int id = mf_state_node(g, t);
  if (id < 0) { fprintf(stderr, "memfit: write_state: tensor %d is not a state of this session\n", t); return -1; }
  const mf_node *nd = &g->nodes[id];
  if ((size_t)mf_node_numel(nd) != n) {
    fprintf(stderr, "memfit: write_state: '%s' has %lld elements, caller passed %zu\n", nd->name, (long long)mf_node_numel(nd), n);
    return -1;
  }
  int64_t k = 0, bad = 0;
  if (nd->state_kind == MF_STATE_MASK && (k = mask_count(src, MF_F32, (int64_t)n, &bad)) < 0) {
    fprintf(stderr, "memfit: write_state: mask '%s' gets %g at element %lld: a mask is 1 for its first entries and 0 after them\n",
            nd->name, (double)src[bad], (long long)bad);
    return -1;
  }
  if (nd->state_kind == MF_STATE_RING_POS && !(src[0] >= 0 && src[0] < (float)g->nodes[nd->link].ne[0])) {
    fprintf(stderr, "memfit: write_state: '%s' gets %g: a position in ring '%s' is 0 to %lld\n", nd->name, (double)src[0],
            g->nodes[nd->link].name, (long long)g->nodes[nd->link].ne[0] - 1);
    return -1;
  }
  void *tmp = malloc(mf_node_bytes(nd));
  if (!tmp) { fprintf(stderr, "memfit: write_state: out of host memory\n"); return -1; }
  mf_convert(tmp, nd->dtype, src, MF_F32, (int64_t)n);
  int rc = dev_in(s, mf_session_ptr(s, NULL, id), tmp, mf_node_bytes(nd));
  free(tmp);
  if (rc < 0) return -1;
  if (nd->state_kind == MF_STATE_MASK) s->n_active[id] = k;
  if (nd->state_kind == MF_STATE_EMA) mf_session_refresh_lp(s);
  return 0;
}

int64_t mf_session_ring_pos(mf_session *s, mf_tensor ring) {
  const mf_graph *g = s->plan->g;
  int id = mf_state_node(g, ring);
  if (id < 0 || !is_kind(&g->nodes[id], MF_STATE_RING)) return -1;
  int32_t pos;
  return dev_out(s, &pos, mf_session_ptr(s, NULL, g->nodes[id].link), sizeof pos) < 0 ? -1 : pos;
}

int64_t mf_session_active(mf_session *s, mf_tensor mask) {
  const mf_graph *g = s->plan->g;
  int id = mf_state_node(g, mask);
  return id < 0 || !is_kind(&g->nodes[id], MF_STATE_MASK) ? -1 : s->n_active[id];
}

/* zeroes elements [lo, lo + cnt) of an f32 tensor in the backend's memory */
static int zero_f32(mf_session *s, float *base, int64_t lo, int64_t cnt) {
  if (cnt <= 0) return 0;
  if (s->be->fill) return s->be->fill(base + lo, 0, (size_t)cnt * sizeof(float));
  memset(base + lo, 0, (size_t)cnt * sizeof(float));
  return 0;
}

int mf_session_grow(mf_session *s, mf_tensor mask, int64_t n_active, int n_params, const mf_tensor *params,
                    const float *const *init_rows) {
  const mf_plan *p = s->plan;
  const mf_graph *g = p->g;
  int mid = mf_state_node(g, mask);
  if (mid < 0 || !is_kind(&g->nodes[mid], MF_STATE_MASK)) {
    fprintf(stderr, "memfit: grow: tensor %d is not a mask (mf_active_mask)\n", mask);
    return -1;
  }
  const mf_node *mn = &g->nodes[mid];
  int64_t old = s->n_active[mid], n_max = mn->ne[0];
  if (n_active < old || n_active > n_max) {
    fprintf(stderr, "memfit: grow: mask '%s' has %lld of %lld entries active; %lld is not in %lld .. %lld\n", mn->name, (long long)old,
            (long long)n_max, (long long)n_active, (long long)old, (long long)n_max);
    return -1;
  }
  if (n_params < 0 || (n_params && !params)) { fprintf(stderr, "memfit: grow: mask '%s': no parameters given\n", mn->name); return -1; }
  for (int i = 0; i < n_params; i++) { /* check everything before changing anything */
    int pid = params[i];
    if (pid >= 0 && pid < g->n && g->nodes[pid].op == MF_OP_PARAM_LP && g->nodes[pid].role == MF_ROLE_PARAM_LP) pid = g->nodes[pid].master;
    if (pid < 0 || pid >= g->n || g->nodes[pid].op != MF_OP_PARAM || g->nodes[pid].link != mid) {
      fprintf(stderr, "memfit: grow: parameter %d (item %d) is not tied to mask '%s' (mf_mask_rows)\n", params[i], i, mn->name);
      return -1;
    }
  }
  if (n_active == old) return 0;
  int64_t add = n_active - old;
  int sp = mf_optim_state_per_param(s->opts.plan.optim);
  for (int i = 0; i < n_params; i++) { /* the new rows' initial values, into the f32 masters */
    if (!init_rows || !init_rows[i]) continue;
    int pid = g->nodes[params[i]].role == MF_ROLE_PARAM_LP ? g->nodes[params[i]].master : params[i];
    const mf_node *n = &g->nodes[pid];
    int64_t r = mf_node_numel(n) / n_max;
    size_t es = mf_dtype_size(n->dtype);
    void *tmp = malloc((size_t)(add * r) * es);
    if (!tmp) { fprintf(stderr, "memfit: grow: out of host memory\n"); return -1; }
    mf_convert(tmp, n->dtype, init_rows[i], MF_F32, add * r);
    int rc = dev_in(s, (uint8_t *)mf_session_ptr(s, NULL, pid) + (size_t)(old * r) * es, tmp, (size_t)(add * r) * es);
    free(tmp);
    if (rc < 0) return -1;
  }
  for (int id = 0; id < g->n; id++) { /* every tied parameter: the new rows' optimizer state and gradient start at zero */
    const mf_node *n = &g->nodes[id];
    if (n->op != MF_OP_PARAM || n->link != mid || n->grad < 0 || !p->has_train) continue;
    int64_t cnt = mf_node_numel(n), r = cnt / n_max;
    float *m = (float *)(s->arena[MF_ARENA_OPT] + p->opt_off[id]);
    for (int k = 0; k < sp; k++) {
      if (s->opt_on_host) memset(m + (size_t)k * (size_t)cnt + old * r, 0, (size_t)(add * r) * sizeof(float));
      else if (zero_f32(s, m + (size_t)k * (size_t)cnt, old * r, add * r) < 0) return -1;
    }
    if (zero_f32(s, mf_session_ptr(s, NULL, n->grad), old * r, add * r) < 0) return -1;
  }
  size_t es = mf_dtype_size(mn->dtype);
  uint8_t *ones = malloc((size_t)add * es);
  if (!ones) { fprintf(stderr, "memfit: grow: out of host memory\n"); return -1; }
  for (int64_t i = 0; i < add; i++) mf_st(ones, mn->dtype, i, 1);
  int rc = dev_in(s, (uint8_t *)mf_session_ptr(s, NULL, mid) + (size_t)old * es, ones, (size_t)add * es);
  free(ones);
  if (rc < 0) return -1;
  s->n_active[mid] = n_active;
  mf_session_refresh_lp(s);
  if (s->be->sync && s->be->sync(s->stream) < 0) return -1;
  return 0;
}
