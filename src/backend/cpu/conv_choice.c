/* conv_choice.c (CPU) — which implementation runs each conv node, oneDNN (conv_dnnl.c) or memfit's own: Winograd
 * (winograd.c) where it takes the node, else the GEMM algorithms (conv.c); chosen once when planning and recorded
 * in the node (impl, impl_threads), which the workspace and the kernel then follow.
 *
 * The choice, per conv node: memfit's own when oneDNN does not take the node (conv_dnnl.c says when);
 * otherwise, when the conv cache of the plan's thread count has the node's shape and pass, the faster of the
 * two as measured there; otherwise the shape rule: Winograd where it takes the node and pays (wino_pays), else oneDNN. The cache is written by mf_cpu_conv_measure
 * (`memfit calibrate WORKLOAD`): one line per shape and pass, kept beside the cost model's calibration in
 * $XDG_CACHE_HOME/memfit/conv-cpu-tT.txt, versioned and dated like it; a cache from another memfit or oneDNN
 * version, damaged or older than 30 days is not used (the shape rule stays). MEMFIT_CONV=rule ignores it. */
#include "backend/cpu/cpu.h"
#include "base/atomic_file.h"
#include "ops/ops.h"
#include <errno.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum {
  CC_VERSION = 3,             /* bump when what a line means changes (2: memfit's is Winograd where it takes the shape;
                               * 3: the storage type is part of the key) */
  CC_MAX_AGE_S = 30 * 86400,  /* older measurements are not used (new BLAS, new machine) */
  CC_KEY = 13,                /* pass N C H W OC KH KW stride pad groups bias type (the input's storage type) */
};
static const char *const cc_pass[3] = {"fwd", "bwd-data", "bwd-weight"};

typedef struct cc_entry {
  int64_t key[CC_KEY];
  int dnnl;                   /* 1: oneDNN was faster */
  double t_gemm, t_dnnl;      /* seconds per run, the better of the repeats */
} cc_entry;

/* the cache last read (one file: the plan's thread count), reread when the file changes */
typedef struct cc_cache {
  char path[1024];
  struct timespec mtime;
  off_t size;
  int loaded;                 /* 1: read (usable or not) for path / mtime / size */
  cc_entry *e;
  int n, cap;
  char why[160];              /* why it is not used ("" when it is, or when there is none) */
} cc_cache;

static pthread_mutex_t cc_lock = PTHREAD_MUTEX_INITIALIZER;
static cc_cache cc;

static void cc_clear(cc_cache *c) {
  free(c->e);
  c->e = NULL;
  c->n = c->cap = 0;
}

static void cc_free_all(void) { cc_clear(&cc); }

void mf_cpu_conv_cache_path(int threads, char *buf, size_t n) {
  const char *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
  if (threads <= 0) threads = omp_get_max_threads();
  if (x && *x) snprintf(buf, n, "%s/memfit/conv-cpu-t%d.txt", x, threads);
  else snprintf(buf, n, "%s/.cache/memfit/conv-cpu-t%d.txt", h && *h ? h : "/tmp", threads);
}

static int conv_pass(int op) { return op == MF_OP_CONV2D ? 0 : op == MF_OP_CONV2D_BWD_DATA ? 1 : 2; }

/* The key of a conv node: its pass and (x, w) geometry, as conv_dnnl.c tells shapes apart. */
static void cc_key(const mf_graph *g, const mf_node *n, int64_t *key) {
  const mf_node *s0 = &g->nodes[n->src[0]], *s1 = &g->nodes[n->src[1]];
  const mf_node *x = n->op == MF_OP_CONV2D ? s0 : n->op == MF_OP_CONV2D_BWD_DATA ? n : s0;
  const mf_node *w = n->op == MF_OP_CONV2D_BWD_WEIGHT ? n : s1;
  int64_t k[CC_KEY] = {conv_pass(n->op), x->ne[0], x->ne[1], x->ne[2], x->ne[3], w->ne[0], w->ne[2], w->ne[3],
                       n->ip[0], n->ip[1], n->ip[2], n->op == MF_OP_CONV2D && n->nsrc > 2, s0->dtype};
  memcpy(key, k, sizeof k);
}

static int cc_push(cc_cache *c, const cc_entry *e) {
  for (int i = 0; i < c->n; i++)
    if (!memcmp(c->e[i].key, e->key, sizeof e->key)) { c->e[i] = *e; return 0; }
  if (c->n == c->cap) {
    int cap = c->cap ? 2 * c->cap : 64;
    cc_entry *ne = realloc(c->e, (size_t)cap * sizeof *ne);
    if (!ne) return -1;
    c->e = ne;
    c->cap = cap;
  }
  c->e[c->n++] = *e;
  return 0;
}

/* Reads path into c: 1 usable (c->n entries), 0 missing, -1 not usable (c->why says why). */
static int cc_read(const char *path, cc_cache *c) {
  cc_clear(c);
  c->why[0] = 0;
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  int version = 0, got = 0, bad = 0;
  long long at = 0;
  char line[512], dnnl[32] = "";
  while (fgets(line, sizeof line, f)) {
    char pass[16], pick[16], type[16];
    cc_entry e;
    long long k[CC_KEY - 2];
    if (line[0] == '#' || line[0] == '\n') continue;
    if (sscanf(line, "memfit-conv-cache %d", &version) == 1) got |= 1;
    else if (sscanf(line, "measured %lld", &at) == 1) got |= 2;
    else if (sscanf(line, "onednn %31s", dnnl) == 1) got |= 4;
    else if (sscanf(line, "conv %15s %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %15s %15s %lf %lf", pass, &k[0], &k[1],
                    &k[2], &k[3], &k[4], &k[5], &k[6], &k[7], &k[8], &k[9], &k[10], type, pick, &e.t_gemm, &e.t_dnnl) == 16) {
      int p = -1, t = mf_dtype_parse(type);
      for (int i = 0; i < 3; i++)
        if (!strcmp(pass, cc_pass[i])) p = i;
      e.dnnl = !strcmp(pick, "onednn") ? 1 : !strcmp(pick, "memfit") ? 0 : -1;
      if (p < 0 || e.dnnl < 0 || t < 0) { bad = 1; continue; }
      e.key[0] = p;
      for (int i = 0; i < CC_KEY - 2; i++) e.key[1 + i] = k[i];
      e.key[CC_KEY - 1] = t;
      if (cc_push(c, &e) < 0) { bad = 1; break; }
    } else bad = 1;
  }
  fclose(f);
  const char *have = mf_cpu_dnnl_version();
  long long now = (long long)time(NULL);
  if (!(got & 1) || version != CC_VERSION) snprintf(c->why, sizeof c->why, "it is from another memfit version");
  else if (bad || got != 7 || at <= 0) snprintf(c->why, sizeof c->why, "it is damaged");
  else if (!have || strcmp(have, dnnl)) snprintf(c->why, sizeof c->why, "it was measured with oneDNN %s, this is %s", dnnl, have ? have : "built without it");
  else if (now - at > CC_MAX_AGE_S || at > now + 86400) snprintf(c->why, sizeof c->why, "it is over 30 days old");
  if (c->why[0]) { cc_clear(c); return -1; }
  return 1;
}

/* Makes cc the cache of `threads` as the file is now (under cc_lock). */
static void cc_refresh(int threads) {
  static int registered;
  if (!registered) { atexit(cc_free_all); registered = 1; }
  char path[1024];
  mf_cpu_conv_cache_path(threads, path, sizeof path);
  struct stat st;
  int exists = stat(path, &st) == 0;
  /* unchanged: same size and time, and not written in the last two seconds (a rewrite within the file
   * system's clock tick keeps the time) */
  if (cc.loaded && !strcmp(cc.path, path) &&
      (exists ? cc.size == st.st_size && cc.mtime.tv_sec == st.st_mtim.tv_sec && cc.mtime.tv_nsec == st.st_mtim.tv_nsec &&
                    (long long)time(NULL) - (long long)st.st_mtim.tv_sec >= 2
              : cc.size == -1))
    return;
  snprintf(cc.path, sizeof cc.path, "%s", path);
  cc.size = exists ? st.st_size : -1;
  if (exists) cc.mtime = st.st_mtim;
  cc.loaded = 1;
  if (exists) cc_read(path, &cc);
  else { cc_clear(&cc); cc.why[0] = 0; }
}

/* The measured choice for key with `threads`: 1 oneDNN, 0 memfit's, -1 not measured. */
static int cc_lookup(int threads, const int64_t *key) {
  pthread_mutex_lock(&cc_lock);
  cc_refresh(threads);
  int r = -1;
  for (int i = 0; i < cc.n && r < 0; i++)
    if (!memcmp(cc.e[i].key, key, sizeof cc.e[i].key)) r = cc.e[i].dnnl;
  pthread_mutex_unlock(&cc_lock);
  return r;
}

int mf_cpu_conv_cache_status(int threads, char *why, size_t n) {
  if (threads <= 0) threads = omp_get_max_threads();
  pthread_mutex_lock(&cc_lock);
  cc_refresh(threads);
  int r = cc.n;
  snprintf(why, n, "%s", cc.why);
  pthread_mutex_unlock(&cc_lock);
  return r;
}

/* memfit's own implementation of node n is Winograd: it takes the node, MEMFIT_CONV is not gemm, and its workspace
 * is at most 64 MiB above memfit's GEMM algorithms' (the same allowance oneDNN gets) */
static int wino_fits(const mf_graph *g, const mf_node *n, const char *env) {
  if (env && !strcmp(env, "gemm")) return 0;
  return mf_cpu_wino_takes(g, n) && mf_cpu_wino_ws(g, n) <= mf_cpu_ws_conv(g, n) + ((size_t)64 << 20);
}

/* The shape rule's part for Winograd: only where its GEMMs are large enough to win back the transforms, at least
 * 64 channels on each side and 1e8 FLOPs of direct convolution (bench_conv: 1.3-2.5x oneDNN on ResNet-18's
 * stride-1 layers and on the steganography block's 92-252 -> 80 channels at 32 x 32; 0.4-0.9x on VQGAN low's 16-128
 * channel convs of 7.5e7 FLOPs and on 12-channel ones). A measured choice (the conv cache) is not bound by it. */
static int wino_pays(const mf_graph *g, const mf_node *n) {
  const mf_node *w = n->op == MF_OP_CONV2D_BWD_WEIGHT ? n : &g->nodes[n->src[1]];
  return w->ne[0] >= 64 && w->ne[1] >= 64 && mf_node_flops(g, n) >= 1e8;
}

/* The shape rule for a conv stored in bf16 that oneDNN takes: 1 where oneDNN's bf16 kernels (bf16 products, twice
 * the f32 rate on AVX-512 with bf16) run it, 0 where memfit's own (f32 arithmetic) does. oneDNN 2.6's bf16
 * backward-weights of kernels larger than 1x1 is slow with a stride or a small output (`memfit calibrate moco --preset
 * small --precision bf16`, EPYC with AVX-512 bf16, 2 threads: 2.3-12.6x slower at stride 2, 5x at 4x4 outputs; 0.7x
 * at 8x8 and larger); everything else ran 1.3-8x faster there, Winograd included. With AMX (oneDNN's `amx` kernels,
 * Xeon with AMX-BF16) every pass of every shape: 1.6-9.7x faster than memfit's own on the same small preset, except
 * the 4x4-output 512-channel backward-weights, a tie (2 threads, 2026-12-02). */
static int dnnl_bf16_pays(const mf_graph *g, const mf_node *n) {
  const char *isa = mf_cpu_dnnl_isa();
  if (n->op != MF_OP_CONV2D_BWD_WEIGHT || (isa && strstr(isa, "amx"))) return 1;
  const mf_node *dy = &g->nodes[n->src[1]];
  mf_conv_cfg cf = mf_conv_cfg_of(n);
  return (n->ne[2] == 1 && n->ne[3] == 1) || (cf.stride == 1 && dy->ne[2] * dy->ne[3] >= 64);
}

/* puts node n on memfit's own implementation `impl`; a Winograd one records the tile side it runs with */
static void conv_put_own(const mf_graph *g, mf_node *n, int impl) {
  n->impl = (uint8_t)impl;
  n->impl_threads = 0;
  if (mf_cpu_conv_on_wino(n)) mf_cpu_wino_tile(g, n);
}

void mf_cpu_conv_choose(const mf_graph *g, mf_node *n, int threads) {
  if (threads <= 0) threads = omp_get_max_threads();
  const char *env = getenv("MEMFIT_CONV");
  int wino = wino_fits(g, n, env);
  size_t bytes;
  int t = mf_cpu_dnnl_conv_prepare(g, n, threads, &bytes);
  if (!t) { /* oneDNN does not take it */
    conv_put_own(g, n, wino && wino_pays(g, n) ? MF_CPU_CONV_WINO : MF_CPU_CONV_GEMM);
    return;
  }
  int64_t key[CC_KEY];
  cc_key(g, n, key);
  int m = env && !strcmp(env, "rule") ? -1 : cc_lookup(threads, key);
  if (m == 0) { conv_put_own(g, n, wino ? MF_CPU_CONV_WINO_MEASURED : MF_CPU_CONV_GEMM_MEASURED); return; }
  if (m < 0) { /* the shape rule: in bf16 oneDNN's bf16 kernels but where they are slow; in f32 Winograd where it pays */
    int own = g->nodes[n->src[0]].dtype == MF_BF16 ? !dnnl_bf16_pays(g, n) : wino && wino_pays(g, n);
    if (own) { conv_put_own(g, n, wino ? MF_CPU_CONV_WINO : MF_CPU_CONV_GEMM_RULE); return; }
  }
  n->impl = m == 1 ? MF_CPU_CONV_DNNL_MEASURED : MF_CPU_CONV_DNNL;
  n->impl_threads = (int16_t)t;
}

int mf_cpu_conv_describe(const mf_graph *g, const mf_node *n, char *name, size_t len, const char **why) {
  int act = mf_conv_act(n);
  const char *fused = act == MF_UN_RELU ? " +relu" : act == MF_UN_LEAKY ? " +leaky_relu" : "";
  if (mf_cpu_conv_on_dnnl(n)) {
    const char *im = mf_cpu_dnnl_conv_impl(g, n);
    snprintf(name, len, "onednn %s%s", im && *im ? im : "(primitive missing)", fused);
    *why = n->impl == MF_CPU_CONV_DNNL_MEASURED ? "measured faster" : "shape rule";
    return 1;
  }
  if (mf_cpu_conv_on_wino(n)) {
    int m = n->impl_threads; /* the tile side it was put there with */
    snprintf(name, len, "memfit winograd F(%dx%d,3x3)%s", m, m, fused);
    *why = n->impl == MF_CPU_CONV_WINO_MEASURED ? "measured faster" : mf_cpu_dnnl_version() ? "shape rule" : "no oneDNN in this build";
    return 1;
  }
  snprintf(name, len, "memfit %s%s", mf_cpu_conv_algo_name(g, n), fused);
  const char *env = getenv("MEMFIT_CONV");
  if (n->impl == MF_CPU_CONV_GEMM_MEASURED) *why = "measured faster";
  else if (n->impl == MF_CPU_CONV_GEMM_RULE) *why = "shape rule";
  else if (!n->impl) *why = "not chosen";
  else if (!mf_cpu_dnnl_version()) *why = "no oneDNN in this build";
  else if (env && !strcmp(env, "gemm")) *why = "MEMFIT_CONV=gemm";
  else *why = "oneDNN does not take it";
  return 1;
}

/* ------------------------------------------------------------------ measuring */

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Writes c to path beside its final name, then renames it into place. */
static int cc_write(const char *path, const cc_cache *c, char *err, size_t errlen) {
  mf_atomic_file af;
  if (mf_atomic_file_open(&af, path, err, errlen)) return -1;
  FILE *f = af.f;
  time_t now = af.now;
  const char *date = af.date;
  fprintf(f, "memfit-conv-cache %d\n# which implementation runs each f32 or bf16 convolution shape and pass on the CPU, measured by\n"
             "# `memfit calibrate WORKLOAD` (memfit: its Winograd where it takes the shape, else its GEMM algorithms); delete this\n"
             "# file to go back to the shape rule (Winograd where it takes a conv, else oneDNN where it takes it)\n"
             "# conv PASS N C H W OC KH KW STRIDE PAD GROUPS BIAS TYPE FASTER MEMFIT_S ONEDNN_S\n", CC_VERSION);
  fprintf(f, "measured %lld %s\nonednn %s\n", (long long)now, date, mf_cpu_dnnl_version() ? mf_cpu_dnnl_version() : "none");
  for (int i = 0; i < c->n; i++) {
    const cc_entry *e = &c->e[i];
    fprintf(f, "conv %s", cc_pass[e->key[0]]);
    for (int k = 1; k < CC_KEY - 1; k++) fprintf(f, " %lld", (long long)e->key[k]);
    fprintf(f, " %s", mf_dtype_name((mf_dtype)e->key[CC_KEY - 1]));
    fprintf(f, " %s %.6g %.6g\n", e->dnnl ? "onednn" : "memfit", e->t_gemm, e->t_dnnl);
  }
  return mf_atomic_file_commit(&af, err, errlen);
}

/* seconds of one run of the kernel of nn (a copy of a conv node with its impl set) */
static double time_run(const mf_kctx *k, const mf_node *nn, void *out, void *const *src, void *ws) {
  double t0 = now_s();
  mf_backend_cpu.kernels[nn->op](k, nn, out, src, ws);
  return now_s() - t0;
}

int mf_cpu_conv_measure(const mf_graph *g, int threads, int reps, FILE *log, char *err, size_t errlen) {
  if (threads <= 0) threads = omp_get_max_threads();
  if (reps < 1) reps = 1;
  char path[1024];
  mf_cpu_conv_cache_path(threads, path, sizeof path);
  cc_cache out = {0};
  if (cc_read(path, &out) < 0) cc_clear(&out); /* measured before and usable: kept, the shapes measured now replace theirs */
  int saved_threads = omp_get_max_threads();
  omp_set_num_threads(threads);
  int measured = 0, rc = 0;
  int64_t *done = malloc((size_t)(g->n ? g->n : 1) * CC_KEY * sizeof *done);
  if (!done) { snprintf(err, errlen, "conv measurement: out of host memory"); rc = -1; }
  uint64_t seed = 0x9e3779b97f4a7c15ULL;
  for (int id = 0; id < g->n && !rc; id++) {
    const mf_node *n = &g->nodes[id];
    if (n->op != MF_OP_CONV2D && n->op != MF_OP_CONV2D_BWD_DATA && n->op != MF_OP_CONV2D_BWD_WEIGHT) continue;
    mf_node nd = *n, ng = *n;
    size_t bd = 0;
    int t = mf_cpu_dnnl_conv_prepare(g, n, threads, &bd);
    if (!t) continue; /* oneDNN does not take it: memfit's algorithms, nothing to compare */
    int64_t key[CC_KEY];
    cc_key(g, n, key);
    int seen = 0;
    for (int i = 0; i < measured && !seen; i++) seen = !memcmp(done + (size_t)i * CC_KEY, key, sizeof key);
    if (seen) continue;
    nd.impl = MF_CPU_CONV_DNNL;
    nd.impl_threads = (int16_t)t;
    conv_put_own(g, &ng, wino_fits(g, n, getenv("MEMFIT_CONV")) ? MF_CPU_CONV_WINO : MF_CPU_CONV_GEMM); /* memfit's own, as chosen */
    size_t bg = mf_cpu_conv_on_wino(&ng) ? mf_cpu_wino_ws(g, &ng) : mf_cpu_ws_conv(g, &ng), wsb = bd > bg ? bd : bg;
    void *src[MF_MAX_SRC] = {0}, *o = malloc(mf_node_bytes(n)), *ws = wsb ? aligned_alloc(64, (wsb + 63) / 64 * 64) : NULL;
    int ok = o && (ws || !wsb);
    for (int i = 0; i < n->nsrc && ok; i++) { /* operands: values in [-1, 1), in their storage type (f32 or bf16) */
      const mf_node *s = &g->nodes[n->src[i]];
      int64_t cnt = mf_node_numel(s);
      void *p = malloc(mf_node_bytes(s));
      if (!(src[i] = p)) { ok = 0; break; }
      for (int64_t j = 0; j < cnt; j++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        mf_st(p, s->dtype, j, (double)(seed >> 40) / (double)(1 << 23) - 1.0);
      }
    }
    if (!ok) {
      snprintf(err, errlen, "conv measurement: out of host memory for '%s'", n->name);
      rc = -1;
    } else {
      char fault[256] = "";
      mf_kctx k = {.g = g, .grad_seed = 1, .nthreads = threads, .fault = fault, .fault_len = sizeof fault};
      time_run(&k, &ng, o, src, ws); /* warm-up: caches, OpenMP's team, oneDNN's first run */
      time_run(&k, &nd, o, src, ws);
      double tg = 1e30, td = 1e30;
      for (int r = 0; r < reps; r++) { /* interleaved, so a burst of other work hits both */
        double a = time_run(&k, &ng, o, src, ws), b = time_run(&k, &nd, o, src, ws);
        if (a < tg) tg = a;
        if (b < td) td = b;
      }
      if (fault[0]) { snprintf(err, errlen, "conv measurement: %s", fault); rc = -1; }
      else {
        cc_entry e = {.dnnl = td < tg, .t_gemm = tg, .t_dnnl = td};
        memcpy(e.key, key, sizeof key);
        memcpy(done + (size_t)measured * CC_KEY, key, sizeof key);
        measured++;
        if (cc_push(&out, &e) < 0) { snprintf(err, errlen, "conv measurement: out of host memory"); rc = -1; }
        if (log) {
          const char *im = mf_cpu_dnnl_conv_impl(g, &nd);
          fprintf(log, "  %-10s x[%lld,%lld,%lld,%lld] w[%lld,%lld,%lld,%lld] s%lld p%lld g%lld%s %s: memfit %s %.3f ms, onednn %s %.3f ms -> %s\n",
                  cc_pass[key[0]], (long long)key[1], (long long)key[2], (long long)key[3], (long long)key[4], (long long)key[5],
                  (long long)(key[2] / key[10]), (long long)key[6], (long long)key[7], (long long)key[8], (long long)key[9],
                  (long long)key[10], key[11] ? " bias" : "", mf_dtype_name((mf_dtype)key[12]), mf_cpu_conv_on_wino(&ng) ? "winograd" : mf_cpu_conv_algo_name(g, &ng), tg * 1e3, im ? im : "?", td * 1e3,
                  e.dnnl ? "onednn" : "memfit");
        }
      }
    }
    for (int i = 0; i < n->nsrc; i++) free(src[i]);
    free(o);
    free(ws);
  }
  omp_set_num_threads(saved_threads);
  free(done);
  if (!rc && measured && cc_write(path, &out, err, errlen) < 0) rc = -1;
  cc_clear(&out);
  return rc < 0 ? -1 : measured;
}
