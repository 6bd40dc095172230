/* test_state.c — persistent state in the STATE arena, f32 and bf16: an EMA copy read by a no-grad key
 * branch and ring buffers (MoCo's queue) against host references, plain f32/i32 states, measured ==
 * planned for every arena, bit-identical checkpoint round trips and refusals of damaged states; a
 * growing model (active mask, mf_session_grow); batch-norm buffers in STATE. */
#include "check.h"
#include "st_rewrite.h"
#include "graph/dtype.h"
#include "train/session.h"
#include <unistd.h>

static const double U = 0x1p-24; /* unit roundoff of f32 */
static double gam(int k) { return k * U / (1 - k * U); }
static double u_act(mf_dtype dt) { return dt == MF_BF16 ? 0x1p-8 : U; } /* rounding of a stored activation */
static double to_act(mf_dtype dt, float v) { return dt == MF_BF16 ? mf_bf16_to_f32(mf_f32_to_bf16(v)) : v; }
static size_t align64(size_t b) { return (b + 63) / 64 * 64; }

static char tmpdir[] = "/tmp/memfit_state_XXXXXX";

static void check_arenas(mf_session *s, const char *what) {
  const mf_plan *p = mf_session_plan(s);
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    size_t pl = mf_plan_arena_bytes(p, (mf_arena_kind)a), me = mf_session_measured_bytes(s, (mf_arena_kind)a);
    CHECK(pl == me, "%s: arena %s planned %zu measured %zu", what, mf_arena_name((mf_arena_kind)a), pl, me);
  }
}

/* inputs of step t: multiples of 1/8 in [-5/8, 5/8], exact in bf16 */
static void step_data(float *v, int n, int t, int salt) {
  for (int i = 0; i < n; i++) v[i] = (float)(((i * 7 + t * 3 + salt * 5) % 11) - 5) / 8.0f;
}

/* ============ MoCo-like: EMA key branch, two rings, plain states ============
 * q = x w; k = x2 wk (wk = EMA of w, no gradient); logits = q queue^T [B,R]; pred = q + k/2 + logits P;
 * loss = mse(pred, y). Both rings take k after each micro-step: queue has R = 7 rows (B = 3 does not
 * divide it), small has 2 rows (fewer than B). */
enum { B = 3, D = 4, E = 5, R = 7, R2 = 2, STEPS = 10, SAVE_AT = 4 };
static const double MOM = 0.9;

typedef struct moco { mf_graph *g; mf_tensor x, x2, y, w, P, wk, queue, small, k, sums, counts, loss; } moco;

static void moco_build(moco *m, mf_dtype dt, int64_t small_rows, int extra) {
  mf_graph *g = m->g = mf_graph_init(dt);
  m->x = mf_input(g, "x", 2, (int64_t[]){B, D});
  m->x2 = mf_input(g, "x2", 2, (int64_t[]){B, D});
  m->y = mf_input(g, "y", 2, (int64_t[]){B, E});
  m->w = mf_param(g, "w", 2, (int64_t[]){D, E}, MF_INIT_NORMAL, 0.5);
  m->P = mf_param(g, "P", 2, (int64_t[]){R, E}, MF_INIT_NORMAL, 0.3);
  m->wk = mf_ema(g, "wk", m->w, MOM);
  mf_tensor q = mf_matmul(g, m->x, m->w, 0, 0);      /* [B,E] */
  m->k = mf_matmul(g, m->x2, m->wk, 0, 0);           /* [B,E], no gradient */
  m->queue = mf_ring(g, "queue", R, E);             /* [R,E] */
  m->small = mf_ring(g, "small", small_rows, E);    /* [2,E] */
  mf_tensor logits = mf_matmul(g, q, m->queue, 0, 1); /* [B,R] */
  mf_tensor pred = mf_add(g, mf_add(g, q, mf_mul_scalar(g, m->k, 0.5)), mf_matmul(g, logits, m->P, 0, 0));
  m->loss = mf_mse_loss(g, pred, m->y);
  mf_ring_push(g, m->queue, m->k);
  mf_ring_push(g, m->small, m->k);
  m->sums = mf_state(g, "sums", MF_F32, 2, (int64_t[]){2, 3}, MF_INIT_CONST, 0.25);
  m->counts = mf_state(g, "counts", MF_I32, 1, (int64_t[]){3}, MF_INIT_ZERO, 0);
  if (extra) mf_state(g, "extra", MF_F32, 1, (int64_t[]){4}, MF_INIT_ZERO, 0);
}

static mf_train_opts moco_opts(void) {
  mf_train_opts o = mf_train_opts_default();
  o.threads = 2;
  o.lr = 0.05;
  o.debug_memory = 1;
  return o;
}

typedef struct moco_out {
  double loss[STEPS];
  float w[D * E], P[R * E], wk[D * E], queue[R * E], small[R2 * E], sums[6], counts[3];
  int64_t pos, spos;
} moco_out;

/* the host's copy of a ring push: rows in order, wrapping around */
static void ring_ref_push(float *ring, int64_t rows, int64_t *pos, const float *keys, int64_t nk) {
  for (int64_t i = 0; i < nk; i++) {
    memcpy(ring + *pos * E, keys + i * E, E * sizeof(float));
    *pos = (*pos + 1) % rows;
  }
}

/* Runs steps [start, STEPS) (start: the loaded checkpoint's step, else 0), saving after SAVE_AT when
 * save is given; with refs, checks EMA, keys and rings against host references at every step. */
static int moco_run(mf_dtype dt, const char *load, const char *save, int refs, moco_out *out) {
  const char *dn = mf_dtype_name(dt);
  moco m;
  moco_build(&m, dt, R2, 0);
  CHECK(!mf_graph_error(m.g), "%s: build: %s", dn, mf_graph_error(m.g));
  mf_train_opts o = moco_opts();
  char err[512];
  mf_session *s = mf_session_init(m.g, m.loss, &o, err, sizeof err);
  if (!s) { CHECK(0, "%s: session: %s", dn, err); mf_graph_free(m.g); return -1; }
  const mf_plan *p = mf_session_plan(s);
  if (!load) {
    /* the plan: parameters hold w and P only; STATE holds every state, packed in node order */
    size_t es = mf_dtype_size(dt), lp = dt == MF_F32 ? 0 : align64(D * E * es);
    size_t want_state = align64(D * E * 4) + lp + align64(R * E * es) + align64(4) + align64(R2 * E * es) + align64(4) +
                        align64(6 * 4) + 3 * 4;
    CHECK(mf_plan_arena_bytes(p, MF_ARENA_PARAM) == align64(D * E * 4) + R * E * 4, "%s: parameters arena %zu bytes", dn,
          mf_plan_arena_bytes(p, MF_ARENA_PARAM));
    CHECK(mf_plan_arena_bytes(p, MF_ARENA_STATE) == want_state, "%s: state arena %zu bytes, expected %zu", dn,
          mf_plan_arena_bytes(p, MF_ARENA_STATE), want_state);
    CHECK(!strcmp(mf_arena_name(MF_ARENA_STATE), "state"), "arena name '%s'", mf_arena_name(MF_ARENA_STATE));
  }
  if (load && mf_session_load(s, load, err, sizeof err) < 0) {
    CHECK(0, "%s: load: %s", dn, err);
    mf_session_free(s);
    mf_graph_free(m.g);
    return -1;
  }
  float gtmp[D * E];
  CHECK(mf_session_read_grad(s, m.wk, gtmp, D * E) < 0, "%s: the EMA has a gradient", dn);
  int start = (int)mf_session_step(s);
  double ema_ref[D * E], ema_bound[D * E] = {0};
  float ring_ref[R * E] = {0}, small_ref[R2 * E] = {0}, wv[D * E], ev[D * E];
  int64_t pos_ref = 0, spos_ref = 0;
  mf_session_read(s, m.w, wv, D * E);
  mf_session_read(s, m.wk, ev, D * E);
  if (refs) {
    CHECK(!memcmp(wv, ev, sizeof wv), "%s: the EMA does not start at its parameter's initial value", dn);
    for (int i = 0; i < D * E; i++) ema_ref[i] = wv[i];
  }
  int ema_bad = 0, key_bad = 0, ring_bad = 0;
  double worst_ema = 0, worst_key = 0;
  for (int t = start; t < STEPS; t++) {
    float x[B * D], x2[B * D], y[B * E], kv[B * E];
    step_data(x, B * D, t, 0);
    step_data(x2, B * D, t, 1);
    step_data(y, B * E, t, 2);
    mf_session_write_input(s, m.x, x, B * D);
    mf_session_write_input(s, m.x2, x2, B * D);
    mf_session_write_input(s, m.y, y, B * E);
    mf_session_read(s, m.wk, ev, D * E); /* the average this step's key branch reads */
    out->loss[t] = mf_session_micro_step(s);
    /* the keys as the step left them (kept alive to its end by the plan) against x2 wk */
    CHECK(mf_session_read(s, m.k, kv, B * E) == 0, "%s: keys not readable after the step", dn);
    for (int i = 0; i < B && refs; i++)
      for (int j = 0; j < E; j++) {
        double ref = 0, mag = 0;
        for (int d = 0; d < D; d++) {
          double a = x2[i * D + d], b = to_act(dt, ev[d * E + j]);
          ref += a * b;
          mag += fabs(a * b);
        }
        double bound = gam(D) * mag + u_act(dt) * (fabs(ref) + gam(D) * mag), e = fabs(kv[i * E + j] - ref);
        if (e > bound) key_bad++;
        if (e / (bound + 1e-300) > worst_key) worst_key = e / (bound + 1e-300);
      }
    if (refs) {
      ring_ref_push(ring_ref, R, &pos_ref, kv, B);
      ring_ref_push(small_ref, R2, &spos_ref, kv, B);
      float rq[R * E], rs[R2 * E];
      mf_session_read(s, m.queue, rq, R * E);
      mf_session_read(s, m.small, rs, R2 * E);
      ring_bad += memcmp(rq, ring_ref, sizeof rq) != 0 || memcmp(rs, small_ref, sizeof rs) != 0 ||
                  mf_session_ring_pos(s, m.queue) != pos_ref || mf_session_ring_pos(s, m.small) != spos_ref;
    }
    CHECK(mf_session_update(s) == 1, "%s: step %d: update skipped", dn, t);
    /* plain states, updated by the caller between steps (VQGAN's EMA codebook sums and counts) */
    float sums[6], counts[3];
    mf_session_read(s, m.sums, sums, 6);
    mf_session_read(s, m.counts, counts, 3);
    for (int i = 0; i < 6; i++) sums[i] = sums[i] * 0.5f + (float)(t + i);
    for (int i = 0; i < 3; i++) counts[i] += (float)(i + 1);
    CHECK(mf_session_write_state(s, m.sums, sums, 6) == 0 && mf_session_write_state(s, m.counts, counts, 3) == 0,
          "%s: write_state", dn);
    if (t + 1 == SAVE_AT && save) CHECK(mf_session_save(s, save, err, sizeof err) == 0, "%s: save: %s", dn, err);
    if (!refs) continue;
    /* the average after the update against k = m k + (1-m) q in f64 from the parameter read back; each
     * step the kernel rounds m and 1-m to f32, the two products and the sum: gamma_3 of the terms */
    mf_session_read(s, m.w, wv, D * E);
    mf_session_read(s, m.wk, ev, D * E);
    for (int i = 0; i < D * E; i++) {
      double prev = ema_ref[i];
      ema_ref[i] = MOM * prev + (1 - MOM) * wv[i];
      ema_bound[i] = MOM * ema_bound[i] + gam(3) * (MOM * (fabs(prev) + ema_bound[i]) + (1 - MOM) * fabs(wv[i]));
      double e = fabs(ev[i] - ema_ref[i]);
      if (e > ema_bound[i]) ema_bad++;
      if (e / ema_bound[i] > worst_ema) worst_ema = e / ema_bound[i];
    }
  }
  if (refs) {
    CHECK(!ema_bad, "%s: %d EMA values outside their bound", dn, ema_bad);
    CHECK(!key_bad, "%s: %d key values outside their bound (not kept alive?)", dn, key_bad);
    CHECK(!ring_bad, "%s: ring contents or positions differ from the host's copies at %d steps", dn, ring_bad);
    CHECK(pos_ref == (int64_t)(B * STEPS) % R && spos_ref == (int64_t)(B * STEPS) % R2, "%s: reference positions", dn);
    printf("  %s: EMA worst error %.3g of its bound, keys %.3g; rings exact (queue at %lld after %d wraps, small at %lld)\n", dn,
           worst_ema, worst_key, (long long)pos_ref, B * STEPS / R, (long long)spos_ref);
  }
  check_arenas(s, dn);
  mf_session_read(s, m.w, out->w, D * E);
  mf_session_read(s, m.P, out->P, R * E);
  mf_session_read(s, m.wk, out->wk, D * E);
  mf_session_read(s, m.queue, out->queue, R * E);
  mf_session_read(s, m.small, out->small, R2 * E);
  mf_session_read(s, m.sums, out->sums, 6);
  mf_session_read(s, m.counts, out->counts, 3);
  out->pos = mf_session_ring_pos(s, m.queue);
  out->spos = mf_session_ring_pos(s, m.small);
  mf_session_free(s);
  mf_graph_free(m.g);
  return 0;
}

/* Copies checkpoint src to dst with the i32 tensor `name` ([1]) set to v (st_rewrite poisons floats only). */
static int st_set_i32(const char *src, const char *dst, const char *name, int32_t v) {
  char err[512];
  mf_st_file *f = mf_st_open(src, err, sizeof err);
  if (!f) { fprintf(stderr, "%s\n", err); return -1; }
  mf_st_writer *w = mf_st_writer_init();
  for (int i = 0; i < mf_st_count(f); i++) {
    const mf_st_tensor *t = mf_st_at(f, i);
    mf_st_writer_add_typed(w, t->name, t->dtype_name, t->ndim, t->shape, strcmp(t->name, name) ? t->data : (const void *)&v);
  }
  for (int i = 0; i < mf_st_meta_count(f); i++) {
    const char *k, *val;
    mf_st_meta_at(f, i, &k, &val);
    if (strncmp(k, "memfit.", 7)) mf_st_writer_meta(w, k, val);
  }
  int rc = mf_st_writer_save(w, dst, err, sizeof err);
  if (rc) fprintf(stderr, "%s\n", err);
  mf_st_writer_free(w);
  mf_st_close(f);
  return rc;
}

/* a fresh session of a graph built by moco_build loading path: must fail naming `name` */
static void moco_refuses(mf_dtype dt, int64_t small_rows, int extra, const char *path, const char *name, const char *what) {
  moco m;
  moco_build(&m, dt, small_rows, extra);
  mf_train_opts o = moco_opts();
  char err[512] = "";
  mf_session *s = mf_session_init(m.g, m.loss, &o, err, sizeof err);
  CHECK(s, "%s: session: %s", what, err);
  if (s) {
    int rc = mf_session_load(s, path, err, sizeof err);
    CHECK(rc < 0 && strstr(err, name), "%s: load gave %d: '%s' (expected an error naming %s)", what, rc, err, name);
    if (rc < 0) printf("  %s: refused: %s\n", what, err);
    mf_session_free(s);
  }
  mf_graph_free(m.g);
}

static void test_moco(mf_dtype dt) {
  const char *dn = mf_dtype_name(dt);
  char ck[512], bad[600];
  snprintf(ck, sizeof ck, "%s/moco-%s.safetensors", tmpdir, dn);
  moco_out a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  if (moco_run(dt, NULL, ck, 1, &a) < 0 || moco_run(dt, ck, NULL, 0, &b) < 0) return;
  CHECK(!memcmp(a.loss + SAVE_AT, b.loss + SAVE_AT, sizeof(double) * (STEPS - SAVE_AT)), "%s: resumed losses differ", dn);
  CHECK(!memcmp(a.w, b.w, sizeof a.w) && !memcmp(a.P, b.P, sizeof a.P), "%s: resumed parameters differ", dn);
  CHECK(!memcmp(a.wk, b.wk, sizeof a.wk), "%s: resumed EMA differs", dn);
  CHECK(!memcmp(a.queue, b.queue, sizeof a.queue) && !memcmp(a.small, b.small, sizeof a.small) && a.pos == b.pos &&
        a.spos == b.spos, "%s: resumed rings differ (pos %lld/%lld, %lld/%lld)", dn, (long long)a.pos, (long long)b.pos,
        (long long)a.spos, (long long)b.spos);
  CHECK(!memcmp(a.sums, b.sums, sizeof a.sums) && !memcmp(a.counts, b.counts, sizeof a.counts), "%s: resumed plain states differ", dn);
  CHECK(a.counts[2] == 3 * STEPS, "%s: i32 state counted to %g", dn, a.counts[2]);
  printf("  %s: resumed at step %d: losses, parameters, EMA, rings and positions bit-identical (last loss %.6f)\n", dn, SAVE_AT,
         a.loss[STEPS - 1]);
  /* damaged or mismatched states are refused, naming the tensor */
  snprintf(bad, sizeof bad, "%s/moco-%s-nan.safetensors", tmpdir, dn);
  if (st_rewrite(ck, bad, NULL, NULL, "state.wk", NAN) == 0) moco_refuses(dt, R2, 0, bad, "state.wk", "NaN in the EMA");
  snprintf(bad, sizeof bad, "%s/moco-%s-sums.safetensors", tmpdir, dn);
  if (st_rewrite(ck, bad, NULL, NULL, "state.sums", INFINITY) == 0) moco_refuses(dt, R2, 0, bad, "state.sums", "inf in a state");
  snprintf(bad, sizeof bad, "%s/moco-%s-pos.safetensors", tmpdir, dn);
  if (st_set_i32(ck, bad, "state.queue.pos", R) == 0) moco_refuses(dt, R2, 0, bad, "state.queue.pos", "a position past the ring");
  moco_refuses(dt, R2 + 1, 0, ck, "state.small", "a ring of another size");
  moco_refuses(dt, R2, 1, ck, "state.extra", "a state the file lacks");
}

/* ============ a growing model ============
 * pred = X (A*mask + B*mask), A and B [NMAX,C] tied to the mask; loss = mse(pred, Y). AdamW with
 * weight decay, so an update that touched inactive rows would move them. Schedule: 2 active, grow to
 * 4 before step GROW1, prune to 3 before PRUNE (write_state), grow to 5 before GROW2. */
enum { NMAX = 6, NINIT = 2, C = 3, PX = 8, GSTEPS = 10, GROW1 = 3, GSAVE = 5, PRUNE = 6, GROW2 = 7 };

typedef struct gm { mf_graph *g; mf_tensor X, Y, A, Bp, mask, loss; } gm;
static void gm_build(gm *m, mf_dtype dt) {
  mf_graph *g = m->g = mf_graph_init(dt);
  m->X = mf_input(g, "X", 2, (int64_t[]){PX, NMAX});
  m->Y = mf_input(g, "Y", 2, (int64_t[]){PX, C});
  m->A = mf_param(g, "A", 2, (int64_t[]){NMAX, C}, MF_INIT_NORMAL, 0.5);
  m->Bp = mf_param(g, "B", 2, (int64_t[]){NMAX, C}, MF_INIT_NORMAL, 0.5);
  m->mask = mf_active_mask(g, "mask", NMAX, NINIT);
  mf_mask_rows(g, m->mask, m->A);
  mf_mask_rows(g, m->mask, m->Bp);
  mf_tensor mc = mf_reshape(g, m->mask, 2, (int64_t[]){NMAX, 1});
  mf_tensor W = mf_add(g, mf_mul(g, m->A, mc), mf_mul(g, m->Bp, mc)); /* [NMAX,C] */
  m->loss = mf_mse_loss(g, mf_matmul(g, m->X, W, 0, 0), m->Y);
}

static mf_train_opts gm_opts(void) {
  mf_train_opts o = mf_train_opts_default();
  o.threads = 2;
  o.lr = 0.05;
  o.weight_decay = 0.1;
  o.debug_memory = 1;
  return o;
}

/* Adam's m and v of a parameter's rows [lo, hi): all zero? (the session's own storage, as tests read it) */
static int opt_rows_zero(mf_session *s, mf_tensor param, int lo, int hi) {
  const mf_graph *g = s->plan->g;
  int id = g->nodes[param].role == MF_ROLE_PARAM_LP ? g->nodes[param].master : param;
  const float *m = (const float *)(s->arena[MF_ARENA_OPT] + s->plan->opt_off[id]);
  for (int k = 0; k < 2; k++)
    for (int i = lo * C; i < hi * C; i++)
      if (m[k * NMAX * C + i] != 0) return 0;
  return 1;
}

typedef struct gm_out { double loss[GSTEPS]; float A[NMAX * C], B[NMAX * C], mask[NMAX]; } gm_out;

static void gm_grow(mf_session *s, gm *m, int64_t to, int with_b, const char *dn) {
  int64_t from = mf_session_active(s, m->mask);
  float rowsA[NMAX * C], rowsB[NMAX * C];
  for (int i = 0; i < NMAX * C; i++) rowsA[i] = 0.125f * (float)(i % 5 + 1), rowsB[i] = -0.25f * (float)(i % 3 + 1);
  const float *init[2] = {rowsA, with_b ? rowsB : NULL};
  float before[NMAX * C], a[NMAX * C], b[NMAX * C], grad[NMAX * C], mk[NMAX];
  mf_session_read(s, m->Bp, before, NMAX * C);
  CHECK(mf_session_grow(s, m->mask, to, 2, (mf_tensor[]){m->A, m->Bp}, init) == 0, "%s: grow to %lld", dn, (long long)to);
  CHECK(mf_session_active(s, m->mask) == to, "%s: %lld active after growing to %lld", dn, (long long)mf_session_active(s, m->mask),
        (long long)to);
  mf_session_read(s, m->A, a, NMAX * C);
  mf_session_read(s, m->Bp, b, NMAX * C);
  mf_session_read(s, m->mask, mk, NMAX);
  int ok = 1;
  for (int i = 0; i < NMAX; i++) ok &= mk[i] == (i < to ? 1.0f : 0.0f);
  CHECK(ok, "%s: mask after growing to %lld", dn, (long long)to);
  CHECK(!memcmp(a + from * C, rowsA, (size_t)((to - from) * C) * sizeof(float)), "%s: new rows of A", dn);
  CHECK(!memcmp(b + from * C, with_b ? rowsB : before + from * C, (size_t)((to - from) * C) * sizeof(float)), "%s: new rows of B", dn);
  CHECK(opt_rows_zero(s, m->A, (int)from, (int)to) && opt_rows_zero(s, m->Bp, (int)from, (int)to),
        "%s: new rows' optimizer state not zero after growing", dn);
  mf_session_read_grad(s, m->A, grad, NMAX * C);
  ok = 1;
  for (int i = (int)from * C; i < to * C; i++) ok &= grad[i] == 0;
  CHECK(ok, "%s: new rows' gradient not zero after growing", dn);
}

static int gm_run(mf_dtype dt, const char *load, const char *save, int refs, gm_out *out) {
  const char *dn = mf_dtype_name(dt);
  gm m;
  gm_build(&m, dt);
  CHECK(!mf_graph_error(m.g), "%s: build: %s", dn, mf_graph_error(m.g));
  mf_train_opts o = gm_opts();
  char err[512];
  mf_session *s = mf_session_init(m.g, m.loss, &o, err, sizeof err);
  if (!s) { CHECK(0, "%s: session: %s", dn, err); mf_graph_free(m.g); return -1; }
  const mf_plan *p = mf_session_plan(s);
  size_t planned[MF_ARENA_COUNT];
  for (int a = 0; a < MF_ARENA_COUNT; a++) planned[a] = mf_plan_arena_bytes(p, (mf_arena_kind)a);
  if (load && mf_session_load(s, load, err, sizeof err) < 0) {
    CHECK(0, "%s: load: %s", dn, err);
    mf_session_free(s);
    mf_graph_free(m.g);
    return -1;
  }
  int start = (int)mf_session_step(s);
  /* rows that are inactive keep the bits they had when they became so */
  float frozenA[NMAX * C], frozenB[NMAX * C];
  mf_session_read(s, m.A, frozenA, NMAX * C);
  mf_session_read(s, m.Bp, frozenB, NMAX * C);
  int frozen_bad = 0, loss_bad = 0;
  double worst = 0;
  for (int t = start; t < GSTEPS; t++) {
    if (t == GROW1) gm_grow(s, &m, 4, 0, dn);
    if (t == PRUNE) { /* prune entry 3: it had Adam state, so the next growth must clear it */
      CHECK(!opt_rows_zero(s, m.A, 3, 4), "%s: row 3 has no optimizer state before pruning (the test cannot bite)", dn);
      float mk[NMAX] = {1, 1, 1, 0, 0, 0};
      CHECK(mf_session_write_state(s, m.mask, mk, NMAX) == 0 && mf_session_active(s, m.mask) == 3, "%s: prune", dn);
      mf_session_read(s, m.A, frozenA, NMAX * C);
      mf_session_read(s, m.Bp, frozenB, NMAX * C);
    }
    if (t == GROW2) gm_grow(s, &m, 5, 1, dn);
    int64_t na = mf_session_active(s, m.mask);
    float X[PX * NMAX], Y[PX * C], A[NMAX * C], Bv[NMAX * C];
    step_data(X, PX * NMAX, t, 3);
    step_data(Y, PX * C, t, 4);
    mf_session_write_input(s, m.X, X, PX * NMAX);
    mf_session_write_input(s, m.Y, Y, PX * C);
    mf_session_read(s, m.A, A, NMAX * C);
    mf_session_read(s, m.Bp, Bv, NMAX * C);
    out->loss[t] = mf_session_micro_step(s);
    if (refs) {
      /* the masked model in f64 from the parameters the step read. W = A*m + B*m rounds once to the
       * activation dtype (the products by 0/1 are exact); each pred is a sum of NMAX products (gamma_NMAX,
       * f32 accumulation) stored in the activation dtype; the loss sums in f64 and stores f32. */
      double sum = 0, err_b = 0;
      for (int i = 0; i < PX; i++)
        for (int c = 0; c < C; c++) {
          double ref = 0, mag = 0, werr = 0;
          for (int j = 0; j < NMAX; j++) {
            if (j >= na) continue;
            double w = to_act(dt, A[j * C + c]) + to_act(dt, Bv[j * C + c]);
            ref += X[i * NMAX + j] * w;
            mag += fabs(X[i * NMAX + j] * w) * (1 + u_act(dt));
            werr += fabs(X[i * NMAX + j]) * u_act(dt) * fabs(w);
          }
          double dp = werr + gam(NMAX) * mag, d = ref - Y[i * C + c];
          dp += u_act(dt) * (fabs(ref) + dp);
          sum += d * d;
          err_b += 2 * fabs(d) * dp + dp * dp;
        }
      double lref = sum / (PX * C), bound = err_b / (PX * C) + U * (lref + err_b / (PX * C)) + gam(PX * C) * lref * U;
      double e = fabs(out->loss[t] - lref);
      if (e > bound) loss_bad++;
      if (e / bound > worst) worst = e / bound;
    }
    CHECK(mf_session_update(s) == 1, "%s: step %d: update skipped", dn, t);
    mf_session_read(s, m.A, A, NMAX * C);
    mf_session_read(s, m.Bp, Bv, NMAX * C);
    frozen_bad += memcmp(A + na * C, frozenA + na * C, (size_t)((NMAX - na) * C) * sizeof(float)) != 0 ||
                  memcmp(Bv + na * C, frozenB + na * C, (size_t)((NMAX - na) * C) * sizeof(float)) != 0;
    CHECK(memcmp(A, frozenA, (size_t)(na * C) * sizeof(float)) != 0, "%s: step %d: the active rows did not move", dn, t);
    memcpy(frozenA, A, sizeof A); /* the next step compares against what this one left */
    memcpy(frozenB, Bv, sizeof Bv);
    if (t + 1 == GSAVE && save) CHECK(mf_session_save(s, save, err, sizeof err) == 0, "%s: save: %s", dn, err);
  }
  CHECK(!frozen_bad, "%s: inactive rows changed in %d updates", dn, frozen_bad);
  if (refs) {
    CHECK(!loss_bad, "%s: %d losses outside the masked model's bound", dn, loss_bad);
    printf("  %s: growing model: losses within %.3g of their bound, inactive rows bit-unchanged\n", dn, worst);
  }
  for (int a = 0; a < MF_ARENA_COUNT; a++)
    CHECK(mf_plan_arena_bytes(p, (mf_arena_kind)a) == planned[a], "%s: arena %s changed with growth", dn, mf_arena_name((mf_arena_kind)a));
  check_arenas(s, dn);
  mf_session_read(s, m.A, out->A, NMAX * C);
  mf_session_read(s, m.Bp, out->B, NMAX * C);
  mf_session_read(s, m.mask, out->mask, NMAX);
  mf_session_free(s);
  mf_graph_free(m.g);
  return 0;
}

static void test_grow(mf_dtype dt) {
  const char *dn = mf_dtype_name(dt);
  char ck[512], bad[600], err[512];
  snprintf(ck, sizeof ck, "%s/grow-%s.safetensors", tmpdir, dn);
  gm_out a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  if (gm_run(dt, NULL, ck, 1, &a) < 0 || gm_run(dt, ck, NULL, 0, &b) < 0) return;
  CHECK(!memcmp(a.loss + GSAVE, b.loss + GSAVE, sizeof(double) * (GSTEPS - GSAVE)) && !memcmp(a.A, b.A, sizeof a.A) &&
        !memcmp(a.B, b.B, sizeof a.B) && !memcmp(a.mask, b.mask, sizeof a.mask), "%s: resumed growing model differs", dn);
  printf("  %s: growing model resumed at step %d (4 active) bit-identical\n", dn, GSAVE);
  /* a mask that is not ones then zeros is refused, naming it */
  snprintf(bad, sizeof bad, "%s/grow-%s-mask.safetensors", tmpdir, dn);
  if (st_rewrite(ck, bad, NULL, NULL, "state.mask", 0.5f) == 0) {
    gm m;
    gm_build(&m, dt);
    mf_train_opts o = gm_opts();
    mf_session *s = mf_session_init(m.g, m.loss, &o, err, sizeof err);
    int rc = s ? mf_session_load(s, bad, err, sizeof err) : 0;
    CHECK(s && rc < 0 && strstr(err, "state.mask"), "%s: damaged mask: load gave %d: %s", dn, rc, err);
    if (rc < 0) printf("  %s: damaged mask refused: %s\n", dn, err);
    /* bad growth: below the active count, past n_max, a parameter not tied to the mask */
    if (s) {
      CHECK(mf_session_grow(s, m.mask, 1, 0, NULL, NULL) < 0, "%s: shrinking through grow accepted", dn);
      CHECK(mf_session_grow(s, m.mask, NMAX + 1, 0, NULL, NULL) < 0, "%s: growing past n_max accepted", dn);
      CHECK(mf_session_grow(s, m.mask, 3, 1, &m.X, NULL) < 0, "%s: growing an input accepted", dn);
      CHECK(mf_session_active(s, m.mask) == NINIT, "%s: a refused growth changed the mask", dn);
      float half[NMAX] = {1, 0.5f, 0, 0, 0, 0};
      CHECK(mf_session_write_state(s, m.mask, half, NMAX) < 0, "%s: a mask of 0.5 accepted", dn);
    }
    mf_session_free(s);
    mf_graph_free(m.g);
  }
}

/* ============ graph errors ============ */
static void test_errors(void) {
  mf_graph *g = mf_graph_init(MF_F32);
  mf_tensor w = mf_param(g, "w", 2, (int64_t[]){4, 3}, MF_INIT_ZERO, 0);
  mf_tensor x = mf_input(g, "x", 2, (int64_t[]){2, 4});
  CHECK(mf_ema(g, "e", x, 0.9) < 0 && strstr(mf_graph_error(g), "not a parameter"), "ema of an input: %s", mf_graph_error(g));
  mf_graph_free(g);
  g = mf_graph_init(MF_F32);
  w = mf_param(g, "w", 2, (int64_t[]){4, 3}, MF_INIT_ZERO, 0);
  CHECK(mf_ema(g, "e", w, 1.5) < 0 && strstr(mf_graph_error(g), "momentum"), "momentum 1.5: %s", mf_graph_error(g));
  mf_graph_free(g);
  g = mf_graph_init(MF_F32);
  mf_tensor r = mf_ring(g, "q", 5, 3);
  x = mf_input(g, "x", 2, (int64_t[]){2, 4});
  CHECK(mf_ring_push(g, r, x) < 0 && strstr(mf_graph_error(g), "ring_push 'q'"), "keys of 4 columns: %s", mf_graph_error(g));
  mf_graph_free(g);
  g = mf_graph_init(MF_F32);
  mf_state(g, "s", MF_F32, 1, (int64_t[]){3}, MF_INIT_ZERO, 0);
  CHECK(mf_state(g, "s", MF_F32, 1, (int64_t[]){3}, MF_INIT_ZERO, 0) < 0 && strstr(mf_graph_error(g), "already exists"),
        "two states named s: %s", mf_graph_error(g));
  mf_graph_free(g);
  g = mf_graph_init(MF_F32);
  mf_tensor mk = mf_active_mask(g, "m", 4, 2);
  w = mf_param(g, "w", 2, (int64_t[]){5, 3}, MF_INIT_ZERO, 0);
  CHECK(mf_mask_rows(g, mk, w) < 0 && strstr(mf_graph_error(g), "'w'"), "5 rows on a mask of 4: %s", mf_graph_error(g));
  mf_graph_free(g);
  g = mf_graph_init(MF_F32);
  CHECK(mf_state(g, "h", MF_BF16, 1, (int64_t[]){3}, MF_INIT_ZERO, 0) < 0 && strstr(mf_graph_error(g), "'h'"), "bf16 state in f32: %s",
        mf_graph_error(g));
  mf_graph_free(g);
}

/* ============ batch norm: running statistics live in STATE ============ */
static void test_batchnorm(void) {
  mf_graph *g = mf_graph_init(MF_F32);
  int64_t C3 = 3;
  mf_tensor x = mf_input(g, "x", 4, (int64_t[]){4, 3, 2, 2}), y = mf_input(g, "y", 4, (int64_t[]){4, 3, 2, 2});
  mf_tensor ga = mf_param(g, "gamma", 1, &C3, MF_INIT_ONE, 0), be = mf_param(g, "beta", 1, &C3, MF_INIT_ZERO, 0);
  mf_tensor rm = mf_buffer(g, "rmean", 1, &C3, MF_INIT_ZERO, 0), rv = mf_buffer(g, "rvar", 1, &C3, MF_INIT_ONE, 0);
  mf_tensor loss = mf_mse_loss(g, mf_batchnorm(g, x, ga, be, rm, rv, 1, 0.1, 1e-5), y);
  mf_train_opts o = mf_train_opts_default();
  o.threads = 2;
  o.debug_memory = 1;
  char err[512];
  mf_session *s = mf_session_init(g, loss, &o, err, sizeof err);
  CHECK(s, "batchnorm session: %s", err);
  if (!s) { mf_graph_free(g); return; }
  const mf_plan *p = mf_session_plan(s);
  CHECK(mf_plan_arena_bytes(p, MF_ARENA_PARAM) == 64 + 12 && mf_plan_arena_bytes(p, MF_ARENA_STATE) == 64 + 12,
        "batchnorm: parameters %zu, state %zu bytes", mf_plan_arena_bytes(p, MF_ARENA_PARAM), mf_plan_arena_bytes(p, MF_ARENA_STATE));
  float xv[48], yv[48], mean[3];
  step_data(xv, 48, 1, 0);
  step_data(yv, 48, 1, 1);
  mf_session_write_input(s, x, xv, 48);
  mf_session_write_input(s, y, yv, 48);
  mf_session_micro_step(s);
  mf_session_update(s);
  mf_session_read(s, rm, mean, 3);
  /* running mean = 0.9 * 0 + 0.1 * batch mean, per channel */
  int ok = 1;
  for (int c = 0; c < 3; c++) {
    double bm = 0;
    for (int n = 0; n < 4; n++)
      for (int i = 0; i < 4; i++) bm += xv[(n * 3 + c) * 4 + i];
    ok &= fabs(mean[c] - 0.1 * bm / 16) <= 1e-6;
  }
  CHECK(ok, "batchnorm: running mean %g %g %g", mean[0], mean[1], mean[2]);
  check_arenas(s, "batchnorm");
  char ck[512];
  snprintf(ck, sizeof ck, "%s/bn.safetensors", tmpdir);
  CHECK(mf_session_save(s, ck, err, sizeof err) == 0, "batchnorm save: %s", err);
  mf_st_file *f = mf_st_open(ck, err, sizeof err);
  CHECK(f && mf_st_find(f, "buffer.rmean") && mf_st_find(f, "buffer.rvar"), "batchnorm: buffers not saved as buffer.*");
  if (f) mf_st_close(f);
  mf_session_free(s);
  mf_graph_free(g);
}

int main(void) {
  if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
  test_errors();
  test_batchnorm();
  mf_dtype dts[2] = {MF_F32, MF_BF16};
  for (int d = 0; d < 2; d++) {
    test_moco(dts[d]);
    test_grow(dts[d]);
  }
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return check_finish("test_state");
}
