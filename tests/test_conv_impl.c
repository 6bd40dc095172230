/* test_conv_impl.c — which implementation runs each CPU conv (oneDNN, memfit's GEMM algorithms or Winograd) is chosen
 * once by the planner and the kernels follow it: the names a shape oneDNN takes and one it refuses get, the
 * choice standing when oneDNN is switched off after planning, the conv cache's measured choices (hand-written,
 * then measured) with the workspace following them, a stale / damaged / other-oneDNN cache not used, and
 * measured == planned for every arena in each case. Parts 1-5 run with Winograd off (MEMFIT_WINOGRAD=0: oneDNN against
 * the GEMM algorithms); part 6 with it on, where it stands for memfit's own on the 3x3 convs. */
#include "check.h"
#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "plan/plan.h"
#include <stdint.h>
#include <time.h>
#include <unistd.h>

enum { THREADS = 2 };

typedef struct net {
  mf_graph *g;
  mf_tensor x, target, loss;
} net;

/* x [2,16,12,12] -conv1 (w1 [16,16,3,3], p1)-> relu -conv2 (w2 [24,16,3,3], p1)-> relu -conv3 (w3 [8,24,3,3],
 * dilation 2, p2: oneDNN does not take it)-> [2,8,12,12], mse against target */
static int net_build(net *m) {
  mf_graph *g = m->g = mf_graph_init(MF_F32);
  m->x = mf_input(g, "x", 4, (int64_t[]){2, 16, 12, 12});
  m->target = mf_input(g, "target", 4, (int64_t[]){2, 8, 12, 12});
  mf_tensor w1 = mf_param(g, "w1", 4, (int64_t[]){16, 16, 3, 3}, MF_INIT_KAIMING, 0);
  mf_tensor w2 = mf_param(g, "w2", 4, (int64_t[]){24, 16, 3, 3}, MF_INIT_KAIMING, 0);
  mf_tensor w3 = mf_param(g, "w3", 4, (int64_t[]){8, 24, 3, 3}, MF_INIT_KAIMING, 0);
  mf_tensor h = mf_relu(g, mf_conv2d(g, m->x, w1, -1, 1, 1, 1));            /* [2,16,12,12] */
  h = mf_relu(g, mf_conv2d(g, h, w2, -1, 1, 1, 1));                         /* [2,24,12,12] */
  mf_conv_cfg dil = {.stride = 1, .dil = 2, .groups = 1, .pt = 2, .pl = 2, .pb = 2, .pr = 2};
  mf_tensor y = mf_conv2d_cfg(g, h, w3, -1, &dil);                          /* [2,8,12,12] */
  m->loss = mf_mse_loss(g, y, m->target);
  if (mf_graph_error(g)) { CHECK(0, "build: %s", mf_graph_error(g)); return -1; }
  return 0;
}

static int is_conv(const mf_node *n) {
  return n->op == MF_OP_CONV2D || n->op == MF_OP_CONV2D_BWD_DATA || n->op == MF_OP_CONV2D_BWD_WEIGHT;
}

static void fill(mf_session *s, const net *m) {
  mf_tensor ins[2] = {m->x, m->target};
  uint64_t r = 12345;
  for (int t = 0; t < 2; t++) {
    int64_t cnt = mf_tensor_numel(m->g, ins[t]);
    float *b = malloc((size_t)cnt * sizeof *b);
    for (int64_t i = 0; i < cnt; i++) {
      r = r * 6364136223846793005ULL + 1442695040888963407ULL;
      b[i] = (float)((double)(r >> 11) / 9007199254740992.0 * 2 - 1);
    }
    mf_session_write_input(s, ins[t], b, (size_t)cnt);
    free(b);
  }
}

static mf_session *session(const net *m) {
  mf_train_opts o = mf_train_opts_default();
  o.threads = THREADS;
  o.debug_memory = 1;
  char err[512];
  mf_session *s = mf_session_init(m->g, m->loss, &o, err, sizeof err);
  CHECK(s != NULL, "session: %s", err);
  if (s) fill(s, m);
  return s;
}

/* one micro-step; returns the convs it ran on oneDNN; then measured == planned for every arena */
static long step(mf_session *s, const char *what) {
  long r0 = mf_cpu_dnnl_conv_runs();
  double l = mf_session_micro_step(s);
  long ran = mf_cpu_dnnl_conv_runs() - r0;
  CHECK(isfinite(l), "%s: loss %g", what, l);
  const mf_plan *p = mf_session_plan(s);
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    size_t planned = mf_plan_arena_bytes(p, (mf_arena_kind)a), measured = mf_session_measured_bytes(s, (mf_arena_kind)a);
    CHECK(planned == measured, "%s: arena %s planned %zu measured %zu", what, mf_arena_name((mf_arena_kind)a), planned, measured);
  }
  return ran;
}

/* Counts the plan's conv nodes by what they were given; prints each; checks names against the impl. */
typedef struct tally { int convs, dnnl, gemm, wino, measured, dilated_gemm, dilated; } tally;
static tally survey(const mf_session *s, const char *what) {
  const mf_plan *p = mf_session_plan(s);
  const mf_graph *g = p->g;
  tally t = {0};
  for (int id = 0; id < g->n; id++) {
    const mf_node *n = &g->nodes[id];
    if (!is_conv(n)) continue;
    char name[128];
    const char *why = "";
    CHECK(p->be->impl_describe(g, n, name, sizeof name, &why) == 1, "%s: %s has no description", what, n->name);
    int dil = mf_conv_cfg_of(n).dil > 1;
    t.convs++;
    t.dilated += dil;
    if (mf_cpu_conv_on_dnnl(n)) {
      t.dnnl++;
      const char *im = mf_cpu_dnnl_conv_impl(g, n);
      CHECK(!strncmp(name, "onednn ", 7) && im && *im && strncmp(im, "ref", 3) && strstr(name, im), "%s: %s on oneDNN named '%s'",
            what, n->name, name);
      size_t b = 0;
      CHECK(mf_cpu_dnnl_conv_ws(g, n, &b) && p->be->workspace(g, n) == b, "%s: %s: workspace %zu is not oneDNN's %zu", what,
            n->name, p->be->workspace(g, n), b);
    } else if (mf_cpu_conv_on_wino(n)) {
      t.wino++;
      CHECK(!strncmp(name, "memfit winograd F(4x4,3x3)", 26), "%s: %s on Winograd named '%s'", what, n->name, name);
      CHECK(p->be->workspace(g, n) == mf_cpu_wino_ws(g, n) && mf_cpu_wino_ws(g, n) > 0, "%s: %s: workspace %zu is not Winograd's %zu",
            what, n->name, p->be->workspace(g, n), mf_cpu_wino_ws(g, n));
    } else {
      t.gemm++;
      CHECK(!strncmp(name, "memfit ", 7) && strstr(name, mf_cpu_conv_algo_name(g, n)), "%s: %s on memfit named '%s'", what, n->name,
            name);
      CHECK(p->be->workspace(g, n) == mf_cpu_ws_conv(g, n), "%s: %s: workspace %zu is not memfit's algorithm's %zu", what, n->name,
            p->be->workspace(g, n), mf_cpu_ws_conv(g, n));
      if (dil) {
        t.dilated_gemm++;
        CHECK(!strcmp(why, "oneDNN does not take it") || !strcmp(why, "no oneDNN in this build"), "%s: dilated %s chosen by '%s'",
              what, n->name, why);
      }
    }
    int measured = n->impl == MF_CPU_CONV_DNNL_MEASURED || n->impl == MF_CPU_CONV_GEMM_MEASURED || n->impl == MF_CPU_CONV_WINO_MEASURED;
    t.measured += measured;
    CHECK((!strcmp(why, "measured faster")) == measured,
          "%s: %s chosen by '%s' (impl %d)", what, n->name, why, n->impl);
    printf("  %-12s %-22s %-26s %-36s %s\n", what, n->name, mf_op_name(n->op), name, why);
  }
  return t;
}

static char cache_dir[256];

/* writes the conv cache of THREADS threads: header (version, measured `age_s` ago, oneDNN `ver`) and lines */
static void cache_write(const char *ver, long age_s, const char *lines) {
  char path[1024];
  mf_cpu_conv_cache_path(THREADS, path, sizeof path);
  char dir[300];
  snprintf(dir, sizeof dir, "%s/memfit", cache_dir);
  mkdir(dir, 0777);
  FILE *f = fopen(path, "w");
  CHECK(f != NULL, "open %s", path);
  if (!f) return;
  fprintf(f, "memfit-conv-cache 3\nmeasured %lld\nonednn %s\n%s", (long long)time(NULL) - age_s, ver, lines);
  fclose(f);
}

/* "conv PASS N C H W OC KH KW S P G B TYPE" of node n (as the cache writes it) */
static void key_line(const mf_graph *g, const mf_node *n, char *buf, size_t len) {
  const mf_node *s0 = &g->nodes[n->src[0]], *s1 = &g->nodes[n->src[1]];
  const mf_node *x = n->op == MF_OP_CONV2D_BWD_DATA ? n : s0, *w = n->op == MF_OP_CONV2D_BWD_WEIGHT ? n : s1;
  snprintf(buf, len, "conv %s %lld %lld %lld %lld %lld %lld %lld %d %d %d %d %s",
           n->op == MF_OP_CONV2D ? "fwd" : n->op == MF_OP_CONV2D_BWD_DATA ? "bwd-data" : "bwd-weight", (long long)x->ne[0],
           (long long)x->ne[1], (long long)x->ne[2], (long long)x->ne[3], (long long)w->ne[0], (long long)w->ne[2],
           (long long)w->ne[3], n->ip[0], n->ip[1], n->ip[2], n->op == MF_OP_CONV2D && n->nsrc > 2,
           mf_dtype_name(s0->dtype));
}

int main(void) {
  snprintf(cache_dir, sizeof cache_dir, "/tmp/memfit-conv-impl-XXXXXX");
  CHECK(mkdtemp(cache_dir) != NULL, "mkdtemp");
  setenv("XDG_CACHE_HOME", cache_dir, 1);
  unsetenv("MEMFIT_CONV");
  setenv("MEMFIT_WINOGRAD", "0", 1);
  int dnnl = mf_cpu_dnnl_conv_enable(1);
  printf("oneDNN %s\n", dnnl ? mf_cpu_dnnl_version() : "not built in");
  net m;
  if (net_build(&m) < 0) return check_finish("test_conv_impl");

  /* 1. no cache: the shape rule; a plain conv on oneDNN (all three passes), the dilated one on memfit's im2col */
  mf_session *s = session(&m);
  if (!s) return check_finish("test_conv_impl");
  tally t = survey(s, "rule");
  CHECK(t.convs == 8, "8 conv nodes expected (2 plain x fwd/bwd-w, 1 bwd-data; the dilated one x 3), got %d", t.convs);
  CHECK(t.dilated == 3 && t.dilated_gemm == 3, "the dilated conv's three nodes run memfit's algorithms (%d of %d)", t.dilated_gemm,
        t.dilated);
  CHECK(t.measured == 0, "no cache, yet %d measured choices", t.measured);
  if (dnnl) CHECK(t.dnnl == 5, "oneDNN takes the plain convs' 5 nodes (it took %d)", t.dnnl);
  long ran = step(s, "rule");
  CHECK(ran == t.dnnl, "a step ran %ld convs on oneDNN, the plan put %d there", ran, t.dnnl);

  /* 2. the kernel follows the plan: oneDNN switched off after planning changes nothing in that session */
  if (dnnl) {
    mf_cpu_dnnl_conv_enable(0);
    ran = step(s, "rule, oneDNN off after planning");
    CHECK(ran == t.dnnl, "oneDNN off after planning: %ld convs on oneDNN, planned %d", ran, t.dnnl);
    mf_session *s2 = session(&m); /* planned while off: memfit's everywhere, and it stays so once on again */
    tally t2 = survey(s2, "off");
    CHECK(t2.dnnl == 0 && t2.gemm == 8, "planned with oneDNN off: %d on oneDNN", t2.dnnl);
    mf_cpu_dnnl_conv_enable(1);
    ran = step(s2, "planned with oneDNN off");
    CHECK(ran == 0, "planned without oneDNN, %ld convs ran on it", ran);
    mf_session_free(s2);
  }

  /* 3. a hand-written cache: conv1's forward measured faster on memfit, conv2's backward-weights on oneDNN */
  const mf_graph *pg = mf_session_plan(s)->g;
  int c1 = -1, c2w = -1;
  for (int id = 0; id < pg->n; id++) {
    const mf_node *n = &pg->nodes[id];
    if (n->op == MF_OP_CONV2D && pg->nodes[n->src[1]].ne[0] == 16 && c1 < 0) c1 = id;
    if (n->op == MF_OP_CONV2D_BWD_WEIGHT && n->ne[0] == 24 && c2w < 0) c2w = id;
  }
  CHECK(c1 >= 0 && c2w >= 0, "conv1's forward and conv2's backward-weights found (%d, %d)", c1, c2w);
  char k1[160] = "", k2[160] = "", lines[512];
  if (c1 >= 0 && c2w >= 0) {
    key_line(pg, &pg->nodes[c1], k1, sizeof k1);
    key_line(pg, &pg->nodes[c2w], k2, sizeof k2);
  }
  snprintf(lines, sizeof lines, "%s memfit 0.001 0.002\n%s onednn 0.002 0.001\n", k1, k2);
  mf_session_free(s);
  if (dnnl) {
    const char *ver = mf_cpu_dnnl_version();
    cache_write(ver, 60, lines);
    char why[160];
    CHECK(mf_cpu_conv_cache_status(THREADS, why, sizeof why) == 2 && !why[0], "the cache's 2 shapes are read (%s)", why);
    s = session(&m);
    t = survey(s, "cache");
    const mf_graph *g3 = mf_session_plan(s)->g;
    int n1 = 0, n2 = 0, m1 = 0, m2 = 0;
    char kl[160];
    for (int id = 0; id < g3->n; id++) {
      const mf_node *n = &g3->nodes[id];
      if (!is_conv(n)) continue;
      key_line(g3, n, kl, sizeof kl);
      if (!strcmp(kl, k1)) { n1++; m1 += n->impl == MF_CPU_CONV_GEMM_MEASURED; }
      if (!strcmp(kl, k2)) { n2++; m2 += n->impl == MF_CPU_CONV_DNNL_MEASURED; }
    }
    CHECK(n1 == 1 && m1 == 1, "conv1's forward on memfit as measured (%d of %d)", m1, n1);
    CHECK(n2 == 1 && m2 == 1, "conv2's backward-weights on oneDNN as measured (%d of %d)", m2, n2);
    CHECK(t.measured == 2 && t.dnnl == 4, "2 measured choices, 4 on oneDNN (got %d, %d)", t.measured, t.dnnl);
    ran = step(s, "cache");
    CHECK(ran == t.dnnl, "a step ran %ld convs on oneDNN, the plan put %d there", ran, t.dnnl);
    mf_session_free(s);

    /* 4. caches that are not used: the shape rule */
    struct { const char *ver; long age; const char *lines; const char *why; } bad[] = {
        {ver, 31L * 86400, lines, "over 30 days"},
        {"0.0.1", 60, lines, "measured with oneDNN 0.0.1"},
        {ver, 60, "conv fwd 1 2 3\n", "damaged"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
      cache_write(bad[i].ver, bad[i].age, bad[i].lines);
      CHECK(mf_cpu_conv_cache_status(THREADS, why, sizeof why) == 0 && strstr(why, bad[i].why), "cache %zu: '%s', expected '%s'", i,
            why, bad[i].why);
      s = session(&m);
      t = survey(s, "bad cache");
      CHECK(t.measured == 0 && t.dnnl == 5, "a cache that is %s: %d measured choices, %d on oneDNN", bad[i].why, t.measured, t.dnnl);
      mf_session_free(s);
    }

    /* 5. measured: every distinct shape and pass oneDNN takes (5), each plan node then on the faster one */
    char path[1024], err[256];
    mf_cpu_conv_cache_path(THREADS, path, sizeof path);
    remove(path);
    s = session(&m);
    int nm = mf_cpu_conv_measure(mf_session_plan(s)->g, THREADS, 2, stdout, err, sizeof err);
    CHECK(nm == 5, "measured %d shapes (expected 5): %s", nm, nm < 0 ? err : "");
    mf_session_free(s);
    CHECK(mf_cpu_conv_cache_status(THREADS, why, sizeof why) == 5 && !why[0], "the measured cache is read (%s)", why);
    s = session(&m);
    t = survey(s, "measured");
    CHECK(t.measured == 5 && t.gemm + t.dnnl == 8, "every oneDNN-able node chosen by measurement (%d of 5)", t.measured);
    /* each node's choice is its line's */
    FILE *f = fopen(path, "r");
    char line[512];
    int agree = 0, lines_n = 0;
    const mf_graph *g5 = mf_session_plan(s)->g;
    while (f && fgets(line, sizeof line, f)) {
      if (strncmp(line, "conv ", 5)) continue;
      lines_n++;
      for (int id = 0; id < g5->n; id++) {
        const mf_node *n = &g5->nodes[id];
        if (!is_conv(n)) continue;
        char kl[160];
        key_line(g5, n, kl, sizeof kl);
        size_t L = strlen(kl);
        if (strncmp(line, kl, L) || line[L] != ' ') continue;
        int want_dnnl = !strncmp(line + L + 1, "onednn", 6);
        agree += want_dnnl == mf_cpu_conv_on_dnnl(n);
      }
    }
    if (f) fclose(f);
    CHECK(lines_n == 5 && agree == 5, "%d of %d cache lines agree with the plan", agree, lines_n);
    ran = step(s, "measured");
    CHECK(ran == t.dnnl, "a step ran %ld convs on oneDNN, the plan put %d there", ran, t.dnnl);
    mf_session_free(s);
    remove(path);

    /* 6. Winograd on: it takes the plain convs (3x3, stride 1, 16 and 24 channels) but the rule leaves such small ones
     * on oneDNN; a cache line saying "memfit" puts a node on Winograd (measured), one saying "onednn" keeps it on oneDNN
     * (test_winograd checks the rule's choice of Winograd for large convs) */
    unsetenv("MEMFIT_WINOGRAD");
    s = session(&m);
    t = survey(s, "winograd");
    CHECK(t.wino == 0 && t.dnnl == 5 && t.measured == 0, "by the rule: %d nodes on Winograd (want 0), %d on oneDNN", t.wino, t.dnnl);
    ran = step(s, "winograd");
    CHECK(ran == 5, "%ld convs ran on oneDNN, 5 planned there", ran);
    mf_session_free(s);
    cache_write(ver, 60, lines);
    s = session(&m);
    t = survey(s, "winograd cache");
    const mf_graph *g6 = mf_session_plan(s)->g;
    int w1 = 0, d2 = 0;
    for (int id = 0; id < g6->n; id++) {
      const mf_node *n = &g6->nodes[id];
      if (!is_conv(n)) continue;
      key_line(g6, n, kl, sizeof kl);
      if (!strcmp(kl, k1)) w1 += n->impl == MF_CPU_CONV_WINO_MEASURED;
      if (!strcmp(kl, k2)) d2 += n->impl == MF_CPU_CONV_DNNL_MEASURED;
    }
    CHECK(w1 == 1 && d2 == 1 && t.wino == 1 && t.dnnl == 4 && t.measured == 2,
          "cache: conv1's forward on Winograd (%d), conv2's backward-weights on oneDNN (%d); %d on Winograd, %d on oneDNN", w1, d2,
          t.wino, t.dnnl);
    ran = step(s, "winograd cache");
    CHECK(ran == 4, "%ld convs ran on oneDNN, 4 planned there", ran);
    mf_session_free(s);
    remove(path);
  }
  char dir[300];
  snprintf(dir, sizeof dir, "%s/memfit", cache_dir);
  rmdir(dir);
  rmdir(cache_dir);
  mf_graph_free(m.g);
  return check_finish("test_conv_impl");
}
