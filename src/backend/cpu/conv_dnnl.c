/* conv_dnnl.c (CPU) — conv2d forward, backward-data and backward-weight of f32 and bf16 tensors on oneDNN,
 * with every scratch byte (blocked copies of the operands, oneDNN's scratchpad) in the node's planned workspace.
 *
 * Primitives are created when the planner chooses a node's implementation (mf_cpu_dnnl_conv_prepare from
 * conv_choice.c, at plan / session build time) and kept in a process-wide cache keyed by the conv's shape,
 * its op and the OpenMP thread count (oneDNN sizes its scratchpad for the threads it was created with, so a
 * kernel always runs its primitive with those threads: the node records them in impl_threads). The step
 * only sets data handles and runs. The operands stay in memfit's plain layouts (x/dy/y [N,C,H,W],
 * w [OC,Cg,KH,KW]); where oneDNN's fastest kernel wants a blocked layout, reorders into workspace run
 * before and after the conv.
 * oneDNN takes a conv whose operands are stored in f32 or bf16 (a combination its kernels have: bf16 activations
 * and weights, with f32 or bf16 output, bias and weight gradient; on CPUs with AVX-512) when its chosen
 * implementation is not oneDNN's reference one and its workspace
 * is at most DN_WS_EXTRA (64 MiB) above memfit's own; whether it then runs it (the shape rule: yes) or
 * memfit's own GEMM algorithms do (faster for that shape, measured) is conv_choice.c's decision. Never
 * when the environment sets MEMFIT_CONV=gemm. */
#include "backend/cpu/cpu.h"

#ifdef MEMFIT_HAVE_DNNL
#include <dnnl.h>
#include <dnnl_debug.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DN_ALIGN 64
#define DN_SERIAL_MACS (1 << 20)
#define DN_WS_EXTRA ((size_t)64 << 20)
static size_t dn_align(size_t b) { return (b + DN_ALIGN - 1) / DN_ALIGN * DN_ALIGN; }

/* one operand of the conv primitive: memfit's plain layout (user) and the primitive's (prim) */
typedef struct dn_arg {
  int arg;                   /* DNNL_ARG_* of the conv primitive */
  int is_out;                /* written by the conv (reorder prim -> user after it) */
  int src_index;             /* index into the kernel's src[], or -1 for the node's output */
  dnnl_memory_desc_t user, prim;
  dnnl_primitive_t reorder;  /* user -> prim (inputs) or prim -> user (output); NULL when layouts agree */
  dnnl_memory_t m_user, m_prim;
  size_t off;                /* workspace offset of the blocked copy */
} dn_arg;

typedef struct dn_conv {
  int64_t key[16];
  int ok;                    /* 0: oneDNN not used for this shape (memfit's algorithms run) */
  int threads;               /* OpenMP threads at creation */
  int nargs;
  dn_arg a[4];
  dnnl_primitive_t prim;
  dnnl_memory_t m_scratch;
  size_t scratch_off, total;
  char impl[64];
  struct dn_conv *next;
} dn_conv;

static pthread_mutex_t dn_lock = PTHREAD_MUTEX_INITIALIZER;
static dnnl_engine_t dn_engine;
static dnnl_stream_t dn_stream;
static dn_conv *dn_cache;
static int dn_state; /* 0 unknown, 1 usable, -1 off (MEMFIT_CONV=gemm or no engine) */
static int dn_disabled; /* mf_cpu_dnnl_conv_enable(0): tests run memfit's own algorithms */
static long dn_runs;    /* convs run on oneDNN so far (tests: the kernel follows the plan) */
/* The process that made the engine. A fork()ed child inherits libgomp's thread pool without its
 * threads, and oneDNN's primitives always start the team they were made for (it hangs), so a child
 * runs only the one-thread primitives of small convs on oneDNN and plans memfit's own algorithms for
 * the rest (those start threads only for large tensors). A session planned before fork() is not for
 * the child: its workspace may be too small for them. */
static pid_t dn_pid;

static void dn_free_all(void) {
  for (dn_conv *c = dn_cache, *nx; c; c = nx) {
    nx = c->next;
    for (int i = 0; i < c->nargs; i++) {
      if (c->a[i].reorder) dnnl_primitive_destroy(c->a[i].reorder);
      if (c->a[i].m_user) dnnl_memory_destroy(c->a[i].m_user);
      if (c->a[i].m_prim) dnnl_memory_destroy(c->a[i].m_prim);
    }
    if (c->m_scratch) dnnl_memory_destroy(c->m_scratch);
    if (c->prim) dnnl_primitive_destroy(c->prim);
    free(c);
  }
  dn_cache = NULL;
  if (dn_stream) dnnl_stream_destroy(dn_stream);
  if (dn_engine) dnnl_engine_destroy(dn_engine);
  dn_stream = NULL;
  dn_engine = NULL;
}

static int dn_ready(void) { /* under dn_lock */
  if (dn_state) return dn_state > 0;
  const char *e = getenv("MEMFIT_CONV");
  if (e && !strcmp(e, "gemm")) { dn_state = -1; return 0; }
  if (dnnl_engine_create(&dn_engine, dnnl_cpu, 0) != dnnl_success ||
      dnnl_stream_create(&dn_stream, dn_engine, dnnl_stream_default_flags) != dnnl_success) {
    dn_state = -1;
    return 0;
  }
  atexit(dn_free_all);
  dn_pid = getpid();
  dn_state = 1;
  return 1;
}

/* The three conv ops see (x, w, y) in different places: src / output. */
static void dn_nodes(const mf_graph *g, const mf_node *n, const mf_node **x, const mf_node **w, const mf_node **y) {
  const mf_node *s0 = &g->nodes[n->src[0]], *s1 = &g->nodes[n->src[1]];
  switch (n->op) {
  case MF_OP_CONV2D: *x = s0; *w = s1; *y = n; break;
  case MF_OP_CONV2D_BWD_DATA: *y = s0; *w = s1; *x = n; break;
  default: *x = s0; *y = s1; *w = n; break;
  }
}

/* oneDNN's type of a memfit storage type; dnnl_data_type_undef for the ones oneDNN convs are not asked to take */
static dnnl_data_type_t dn_type(mf_dtype t) {
  return t == MF_F32 ? dnnl_f32 : t == MF_BF16 ? dnnl_bf16 : dnnl_data_type_undef;
}

static mf_dtype dn_bias_type(const mf_graph *g, const mf_node *n) {
  return n->op == MF_OP_CONV2D && n->nsrc > 2 ? g->nodes[n->src[2]].dtype : MF_F32;
}

static int dn_eligible(const mf_graph *g, const mf_node *n) {
  const mf_node *x, *w, *y;
  dn_nodes(g, n, &x, &w, &y);
  if (dn_type(x->dtype) == dnnl_data_type_undef || dn_type(w->dtype) == dnnl_data_type_undef ||
      dn_type(y->dtype) == dnnl_data_type_undef || dn_type(dn_bias_type(g, n)) == dnnl_data_type_undef)
    return 0;
  mf_conv_cfg cf = mf_conv_cfg_of(n);
  if (!mf_conv_cfg_plain(&cf)) return 0; /* dilated or asymmetric pads: memfit's im2col */
  return 1;
}

static void dn_key(const mf_graph *g, const mf_node *n, int threads, int64_t *key) {
  const mf_node *x, *w, *y;
  dn_nodes(g, n, &x, &w, &y);
  int act = mf_conv_act(n);
  double slope = act == MF_UN_LEAKY ? n->fp[0] : 0;
  int64_t sb;
  memcpy(&sb, &slope, sizeof sb);
  int64_t k[16] = {n->op, x->ne[0], x->ne[1], x->ne[2], x->ne[3], w->ne[0], w->ne[2], w->ne[3], n->ip[0], n->ip[1], n->ip[2],
                   n->op == MF_OP_CONV2D && n->nsrc > 2, threads, act, sb,
                   (int64_t)x->dtype | (int64_t)w->dtype << 8 | (int64_t)y->dtype << 16 | (int64_t)dn_bias_type(g, n) << 24};
  memcpy(key, k, sizeof k);
}

static dn_conv *dn_find(const int64_t *key) {
  for (dn_conv *c = dn_cache; c; c = c->next)
    if (!memcmp(c->key, key, sizeof c->key)) return c;
  return NULL;
}

/* reorder from -> to with its scratchpad in user mode; returns its scratchpad bytes or SIZE_MAX */
static size_t dn_reorder(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to, dnnl_primitive_t *out) {
  dnnl_primitive_attr_t attr;
  dnnl_primitive_desc_t pd;
  if (dnnl_primitive_attr_create(&attr) != dnnl_success) return SIZE_MAX;
  dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
  dnnl_status_t st = dnnl_reorder_primitive_desc_create(&pd, from, dn_engine, to, dn_engine, attr);
  dnnl_primitive_attr_destroy(attr);
  if (st != dnnl_success) return SIZE_MAX;
  size_t sb = dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
  st = dnnl_primitive_create(out, pd);
  dnnl_primitive_desc_destroy(pd);
  return st == dnnl_success ? sb : SIZE_MAX;
}

/* one conv operand: DNNL arg, its query, memfit's layout, kernel src index (-1: the node's output) */
typedef struct dn_op { int arg; dnnl_query_t q; const dnnl_memory_desc_t *u; int si; } dn_op;

/* Builds the primitive (and reorders) of one conv node; c->ok = 0 when oneDNN cannot do it well. */
static void dn_build(const mf_graph *g, const mf_node *n, dn_conv *c) {
  const mf_node *x, *w, *y;
  dn_nodes(g, n, &x, &w, &y);
  int64_t G = n->ip[2];
  dnnl_dims_t xd = {x->ne[0], x->ne[1], x->ne[2], x->ne[3]}, yd = {y->ne[0], y->ne[1], y->ne[2], y->ne[3]};
  dnnl_dims_t wd = {w->ne[0], w->ne[1], w->ne[2], w->ne[3]}, gwd = {G, w->ne[0] / G, w->ne[1], w->ne[2], w->ne[3]};
  dnnl_dims_t bd = {w->ne[0]}, strides = {n->ip[0], n->ip[0]}, pad = {n->ip[1], n->ip[1]};
  dnnl_memory_desc_t ux, uw, uy, ub, ax, aw, ay;
  dnnl_data_type_t tx = dn_type(x->dtype), tw = dn_type(w->dtype), ty = dn_type(y->dtype), tb = dn_type(dn_bias_type(g, n));
  /* user layouts: x / y [N,C,H,W] = nchw, w [OC,Cg,KH,KW] = oihw (groups: goihw, the same bytes), each in its storage type */
  dnnl_memory_desc_init_by_tag(&ux, 4, xd, tx, dnnl_nchw);
  dnnl_memory_desc_init_by_tag(&uy, 4, yd, ty, dnnl_nchw);
  if (G > 1) dnnl_memory_desc_init_by_tag(&uw, 5, gwd, tw, dnnl_goihw);
  else dnnl_memory_desc_init_by_tag(&uw, 4, wd, tw, dnnl_oihw);
  dnnl_memory_desc_init_by_tag(&ub, 1, bd, tb, dnnl_x);
  dnnl_memory_desc_init_by_tag(&ax, 4, xd, tx, dnnl_format_tag_any);
  dnnl_memory_desc_init_by_tag(&ay, 4, yd, ty, dnnl_format_tag_any);
  if (G > 1) dnnl_memory_desc_init_by_tag(&aw, 5, gwd, tw, dnnl_format_tag_any);
  else dnnl_memory_desc_init_by_tag(&aw, 4, wd, tw, dnnl_format_tag_any);
  int bias = n->op == MF_OP_CONV2D && n->nsrc > 2;

  dnnl_convolution_desc_t fd, od;
  dnnl_primitive_desc_t hint = NULL, pd = NULL;
  dnnl_primitive_attr_t attr = NULL;
  c->ok = 0;
  /* a backward pass's hint: the forward conv of the same shape, in bf16 throughout when any operand is bf16 (a
   * bf16 backward-weight writes an f32 gradient, a forward of bf16 x with f32 weights does not exist) */
  dnnl_memory_desc_t hx = ax, hw = aw, hy = ay;
  if (n->op != MF_OP_CONV2D && (tx == dnnl_bf16 || tw == dnnl_bf16 || ty == dnnl_bf16)) {
    hx.data_type = dnnl_bf16;
    hw.data_type = dnnl_bf16;
    hy.data_type = dnnl_bf16;
  }
  if (dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &hx, &hw, bias ? &ub : NULL, &hy,
                                         strides, pad, pad) != dnnl_success)
    return;
  if (dnnl_primitive_attr_create(&attr) != dnnl_success) return;
  dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
  int act = mf_conv_act(n);
  if (act >= 0) { /* a fused ReLU / leaky ReLU (plan/fuse.c): an eltwise post-op, alpha = the negative slope */
    dnnl_post_ops_t po;
    int bad = dnnl_post_ops_create(&po) != dnnl_success;
    if (!bad) {
      bad = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, act == MF_UN_LEAKY ? (float)n->fp[0] : 0.0f, 0.0f) != dnnl_success ||
            dnnl_primitive_attr_set_post_ops(attr, po) != dnnl_success;
      dnnl_post_ops_destroy(po);
    }
    if (bad) { dnnl_primitive_attr_destroy(attr); return; }
  }
  dnnl_status_t st;
  if (n->op == MF_OP_CONV2D) st = dnnl_primitive_desc_create(&pd, &fd, attr, dn_engine, NULL);
  else {
    st = dnnl_primitive_desc_create(&hint, &fd, NULL, dn_engine, NULL);
    if (st == dnnl_success) {
      if (n->op == MF_OP_CONV2D_BWD_DATA)
        st = dnnl_convolution_backward_data_desc_init(&od, dnnl_convolution_direct, &ax, &aw, &ay, strides, pad, pad);
      else st = dnnl_convolution_backward_weights_desc_init(&od, dnnl_convolution_direct, &ax, &aw, NULL, &ay, strides, pad, pad);
    }
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &od, attr, dn_engine, hint);
  }
  dnnl_primitive_attr_destroy(attr);
  if (hint) dnnl_primitive_desc_destroy(hint);
  if (st != dnnl_success) return;
  const char *impl = "";
  dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
  snprintf(c->impl, sizeof c->impl, "%s", impl ? impl : "");
  if (!strncmp(c->impl, "ref", 3)) { dnnl_primitive_desc_destroy(pd); return; } /* oneDNN's slow reference kernel */

  /* operands: (DNNL arg, query, user md, kernel src index or -1 = output) */
  dn_op ops[4];
  int na = 0;
  switch (n->op) {
  case MF_OP_CONV2D:
    ops[na++] = (dn_op){DNNL_ARG_SRC, dnnl_query_src_md, &ux, 0};
    ops[na++] = (dn_op){DNNL_ARG_WEIGHTS, dnnl_query_weights_md, &uw, 1};
    if (bias) ops[na++] = (dn_op){DNNL_ARG_BIAS, dnnl_query_weights_md, &ub, 2};
    ops[na++] = (dn_op){DNNL_ARG_DST, dnnl_query_dst_md, &uy, -1};
    break;
  case MF_OP_CONV2D_BWD_DATA:
    ops[na++] = (dn_op){DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, &uy, 0};
    ops[na++] = (dn_op){DNNL_ARG_WEIGHTS, dnnl_query_weights_md, &uw, 1};
    ops[na++] = (dn_op){DNNL_ARG_DIFF_SRC, dnnl_query_diff_src_md, &ux, -1};
    break;
  default:
    ops[na++] = (dn_op){DNNL_ARG_SRC, dnnl_query_src_md, &ux, 0};
    ops[na++] = (dn_op){DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, &uy, 1};
    ops[na++] = (dn_op){DNNL_ARG_DIFF_WEIGHTS, dnnl_query_diff_weights_md, &uw, -1};
    break;
  }
  size_t scratch = dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0)), off = 0;
  int fail = 0;
  c->nargs = na;
  for (int i = 0; i < na; i++) {
    dn_arg *a = &c->a[i];
    a->arg = ops[i].arg;
    a->src_index = ops[i].si;
    a->is_out = ops[i].si < 0;
    a->user = *ops[i].u;
    /* the bias is queried as weights index 1 */
    const dnnl_memory_desc_t *pm = dnnl_primitive_desc_query_md(pd, ops[i].q, a->arg == DNNL_ARG_BIAS ? 1 : 0);
    a->prim = pm ? *pm : a->user;
    fail |= dnnl_memory_create(&a->m_user, &a->user, dn_engine, DNNL_MEMORY_NONE) != dnnl_success;
    if (!dnnl_memory_desc_equal(&a->user, &a->prim)) {
      size_t sb = a->is_out ? dn_reorder(&a->prim, &a->user, &a->reorder) : dn_reorder(&a->user, &a->prim, &a->reorder);
      if (sb == SIZE_MAX) { fail = 1; continue; }
      if (sb > scratch) scratch = sb;
      a->off = off;
      off += dn_align(dnnl_memory_desc_get_size(&a->prim));
      fail |= dnnl_memory_create(&a->m_prim, &a->prim, dn_engine, DNNL_MEMORY_NONE) != dnnl_success;
    }
  }
  c->scratch_off = off;
  off += dn_align(scratch);
  c->total = off;
  /* memory first: oneDNN's workspace (mostly blocked copies of whole-batch operands) may exceed memfit's
   * own algorithm's (one image's im2col or padded copy) by at most DN_WS_EXTRA; a workspace lives only
   * during its op, so no plan's peak grows by more than that */
  if (c->total > mf_cpu_ws_conv(g, n) + DN_WS_EXTRA) fail = 1;
  if (!fail && scratch) {
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    /* one scratch buffer for the conv and the reorders (they run one after another): as bytes */
    dnnl_memory_desc_t bytes_md;
    dnnl_dims_t sd = {(int64_t)scratch};
    dnnl_memory_desc_init_by_tag(&bytes_md, 1, sd, dnnl_u8, dnnl_x);
    (void)smd;
    fail |= dnnl_memory_create(&c->m_scratch, &bytes_md, dn_engine, DNNL_MEMORY_NONE) != dnnl_success;
  }
  if (!fail) fail = dnnl_primitive_create(&c->prim, pd) != dnnl_success;
  dnnl_primitive_desc_destroy(pd);
  c->ok = !fail;
}

/* The cache entry of node n for `threads` OpenMP threads; create: build it when missing (planning only).
 * NULL: oneDNN does not run this node with those threads. */
static dn_conv *dn_get(const mf_graph *g, const mf_node *n, int threads, int create) {
  if ((create && dn_disabled) || !dn_eligible(g, n) || threads < 1) return NULL;
  pthread_mutex_lock(&dn_lock);
  dn_conv *c = NULL;
  if (dn_ready() && (threads == 1 || getpid() == dn_pid)) {
    int64_t key[16];
    dn_key(g, n, threads, key);
    c = dn_find(key);
    if (!c && create && (c = calloc(1, sizeof *c))) {
      memcpy(c->key, key, sizeof key);
      c->threads = threads;
      int saved = omp_get_max_threads(); /* oneDNN sizes its kernels for the threads it sees now */
      if (saved != c->threads) omp_set_num_threads(c->threads);
      dn_build(g, n, c);
      if (saved != c->threads) omp_set_num_threads(saved);
      c->next = dn_cache;
      dn_cache = c;
    }
  }
  pthread_mutex_unlock(&dn_lock);
  return c && c->ok ? c : NULL;
}

int mf_cpu_dnnl_conv_enable(int on) {
  dn_disabled = !on;
  pthread_mutex_lock(&dn_lock);
  int ok = dn_ready();
  pthread_mutex_unlock(&dn_lock);
  return on && ok;
}

const char *mf_cpu_dnnl_version(void) {
  static char v[32];
  const dnnl_version_t *d = dnnl_version();
  snprintf(v, sizeof v, "%d.%d.%d", d->major, d->minor, d->patch);
  return v;
}

const char *mf_cpu_dnnl_isa(void) {
  const char *s = dnnl_cpu_isa2str(dnnl_get_effective_cpu_isa());
  return s ? s : "unknown";
}

long mf_cpu_dnnl_conv_runs(void) {
  pthread_mutex_lock(&dn_lock);
  long r = dn_runs;
  pthread_mutex_unlock(&dn_lock);
  return r;
}

int mf_cpu_dnnl_conv_prepare(const mf_graph *g, const mf_node *n, int threads, size_t *bytes) {
  if (threads <= 0) threads = omp_get_max_threads();
  /* small convs (under DN_SERIAL_MACS multiply-adds) get one-thread primitives: a team costs more
   * than it saves there, and they run the same (same bits) in a fork()ed child */
  const mf_node *x, *w, *y;
  dn_nodes(g, n, &x, &w, &y);
  double macs = (double)mf_node_numel(y) * (double)w->ne[1] * (double)w->ne[2] * (double)w->ne[3];
  if (macs < DN_SERIAL_MACS) threads = 1;
  dn_conv *c = dn_get(g, n, threads, 1);
  if (!c) return 0;
  *bytes = c->total;
  return threads;
}

int mf_cpu_dnnl_conv_ws(const mf_graph *g, const mf_node *n, size_t *bytes) {
  dn_conv *c = dn_get(g, n, n->impl_threads, 0);
  if (!c) return 0;
  *bytes = c->total;
  return 1;
}

const char *mf_cpu_dnnl_conv_impl(const mf_graph *g, const mf_node *n) {
  dn_conv *c = dn_get(g, n, n->impl_threads, 0);
  return c ? c->impl : NULL;
}

int mf_cpu_dnnl_conv_run(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  dn_conv *c = dn_get(k->g, n, n->impl_threads, 0);
  if (!c) return 0;
  char *wsb = ws;
  pthread_mutex_lock(&dn_lock); /* the memory objects and the stream are shared */
  int saved = omp_get_max_threads();
  if (saved != c->threads) omp_set_num_threads(c->threads);
  dnnl_exec_arg_t args[5];
  int nargs = 0;
  for (int i = 0; i < c->nargs; i++) {
    dn_arg *a = &c->a[i];
    void *user = a->is_out ? out : src[a->src_index];
    dnnl_memory_set_data_handle(a->m_user, user);
    dnnl_memory_t m = a->m_user;
    if (a->reorder) {
      dnnl_memory_set_data_handle(a->m_prim, wsb + a->off);
      m = a->m_prim;
      if (!a->is_out) {
        if (c->m_scratch) dnnl_memory_set_data_handle(c->m_scratch, wsb + c->scratch_off);
        dnnl_exec_arg_t ra[3] = {{DNNL_ARG_FROM, a->m_user}, {DNNL_ARG_TO, a->m_prim}, {DNNL_ARG_SCRATCHPAD, c->m_scratch}};
        dnnl_primitive_execute(a->reorder, dn_stream, c->m_scratch ? 3 : 2, ra);
      }
    }
    args[nargs++] = (dnnl_exec_arg_t){a->arg, m};
  }
  if (c->m_scratch) {
    dnnl_memory_set_data_handle(c->m_scratch, wsb + c->scratch_off);
    args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, c->m_scratch};
  }
  dnnl_primitive_execute(c->prim, dn_stream, nargs, args);
  dn_runs++;
  for (int i = 0; i < c->nargs; i++) {
    dn_arg *a = &c->a[i];
    if (!a->is_out || !a->reorder) continue;
    dnnl_exec_arg_t ra[3] = {{DNNL_ARG_FROM, a->m_prim}, {DNNL_ARG_TO, a->m_user}, {DNNL_ARG_SCRATCHPAD, c->m_scratch}};
    dnnl_primitive_execute(a->reorder, dn_stream, c->m_scratch ? 3 : 2, ra);
  }
  dnnl_stream_wait(dn_stream);
  if (saved != c->threads) omp_set_num_threads(saved);
  pthread_mutex_unlock(&dn_lock);
  return 1;
}

#else /* built without oneDNN: memfit's own algorithms run every conv */
long mf_cpu_dnnl_conv_runs(void) { return 0; }
int mf_cpu_dnnl_conv_enable(int on) {
  (void)on;
  return 0;
}
const char *mf_cpu_dnnl_version(void) { return NULL; }
const char *mf_cpu_dnnl_isa(void) { return NULL; }
int mf_cpu_dnnl_conv_prepare(const mf_graph *g, const mf_node *n, int threads, size_t *bytes) {
  (void)g; (void)n; (void)threads; (void)bytes;
  return 0;
}
int mf_cpu_dnnl_conv_ws(const mf_graph *g, const mf_node *n, size_t *bytes) {
  (void)g; (void)n; (void)bytes;
  return 0;
}
const char *mf_cpu_dnnl_conv_impl(const mf_graph *g, const mf_node *n) {
  (void)g; (void)n;
  return NULL;
}
int mf_cpu_dnnl_conv_run(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)k; (void)n; (void)out; (void)src; (void)ws;
  return 0;
}
#endif
