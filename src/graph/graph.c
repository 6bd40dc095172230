/* graph.c — graph storage and the building helpers shared by every op: node append, op names,
 * shape formatting, sticky build errors, tensor queries and recompute segments. The leaves (inputs,
 * parameters, buffers) are built by the ops layer (ops/leaf.c). */
#include "graph/graph.h"
#include "graph/dtype.h"
#include "graph/oplist.h"
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

size_t mf_dtype_size(mf_dtype t) {
  static const size_t sz[MF_DTYPE_COUNT] = {4, 2, 2, 8, 4, 1};
  return (unsigned)t < MF_DTYPE_COUNT ? sz[t] : 0;
}
const char *mf_dtype_name(mf_dtype t) {
  static const char *nm[MF_DTYPE_COUNT] = {"f32", "f16", "bf16", "f64", "i32", "u8"};
  return (unsigned)t < MF_DTYPE_COUNT ? nm[t] : "?";
}
int mf_dtype_parse(const char *s) {
  for (int t = 0; t < MF_DTYPE_COUNT; t++)
    if (s && strcmp(s, mf_dtype_name((mf_dtype)t)) == 0) return t;
  return -1;
}

void mf_convert(void *dst, mf_dtype dt, const void *src, mf_dtype st, int64_t n) {
  if (dt == st) { memcpy(dst, src, (size_t)n * mf_dtype_size(dt)); return; }
  if (st == MF_F32 && dt == MF_BF16) {
    const float *s = src; uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = mf_f32_to_bf16(s[i]);
    return;
  }
  if (st == MF_BF16 && dt == MF_F32) {
    const uint16_t *s = src; float *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = mf_bf16_to_f32(s[i]);
    return;
  }
  for (int64_t i = 0; i < n; i++) mf_st(dst, dt, i, mf_ld(src, st, i));
}

#define MF_OP_NAME(E, n) [MF_OP_##E] = #n,
static const char *const op_names[MF_OP_COUNT] = {MF_OP_LIST(MF_OP_NAME)};
#undef MF_OP_NAME
const char *mf_op_name(int op) { return op >= 0 && op < MF_OP_COUNT ? op_names[op] : "?"; }

int64_t mf_node_numel(const mf_node *n) {
  int64_t k = 1;
  for (int i = 0; i < n->ndim; i++) k *= n->ne[i];
  return k;
}
size_t mf_node_bytes(const mf_node *n) { return (size_t)mf_node_numel(n) * mf_dtype_size(n->dtype); }

void mf_shape_str(const mf_node *n, char *buf, size_t len) {
  size_t o = 0;
  o += (size_t)snprintf(buf + o, len - o, "[");
  for (int i = 0; i < n->ndim && o < len; i++)
    o += (size_t)snprintf(buf + o, len - o, i ? ",%lld" : "%lld", (long long)n->ne[i]);
  if (o < len) snprintf(buf + o, len - o, "]");
}
bool mf_shape_eq(const mf_node *a, const mf_node *b) {
  if (a->ndim != b->ndim) return false;
  for (int i = 0; i < a->ndim; i++)
    if (a->ne[i] != b->ne[i]) return false;
  return true;
}

mf_graph *mf_graph_init(mf_dtype act_dtype) {
  mf_graph *g = calloc(1, sizeof *g);
  if (!g) return NULL;
  g->act_dtype = act_dtype;
  g->open_seg = -1;
  g->seed = 0x6d656d666974ULL;
  return g;
}
void mf_graph_free(mf_graph *g) {
  if (!g) return;
  free(g->nodes);
  free(g->segs);
  free(g->cat_root);
  free(g->cat_off);
  free(g);
}
const char *mf_graph_error(const mf_graph *g) { return g->err[0] ? g->err : NULL; }
void mf_graph_set_seed(mf_graph *g, uint64_t seed) { g->seed = seed; }

int mf_graph_fail(mf_graph *g, const char *fmt, ...) {
  if (!g->err[0]) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->err, sizeof g->err, fmt, ap);
    va_end(ap);
  }
  return -1;
}

bool mf_graph_check_srcs(mf_graph *g, const char *opname, int nsrc, const int *src) {
  if (g->err[0]) return false;
  for (int i = 0; i < nsrc; i++)
    if (src[i] < 0 || src[i] >= g->n) {
      mf_graph_fail(g, "%s: input %d is not a tensor of this graph (id %d)", opname, i, src[i]);
      return false;
    }
  return true;
}

int mf_graph_add(mf_graph *g, int op, mf_dtype dt, int ndim, const int64_t *ne, int nsrc, const int *src) {
  if (!mf_graph_check_srcs(g, mf_op_name(op), nsrc, src)) return -1;
  if (ndim < 0 || ndim > MF_MAX_DIMS || nsrc > MF_MAX_SRC)
    return mf_graph_fail(g, "%s: %d dims (at most %d)", mf_op_name(op), ndim, MF_MAX_DIMS);
  for (int i = 0; i < ndim; i++)
    if (ne[i] <= 0) return mf_graph_fail(g, "%s: dimension %d has size %lld", mf_op_name(op), i, (long long)ne[i]);
  /* shape and srcs may point into g->nodes, which the growth below can move: copy them first */
  int64_t shape[MF_MAX_DIMS];
  int srcs[MF_MAX_SRC];
  memcpy(shape, ne, sizeof(int64_t) * (size_t)ndim);
  if (nsrc) memcpy(srcs, src, sizeof(int) * (size_t)nsrc);
  ne = shape;
  src = srcs;
  if (g->n == g->cap) {
    int cap = g->cap ? g->cap * 2 : 256;
    mf_node *nn = realloc(g->nodes, (size_t)cap * sizeof *nn);
    if (!nn) return mf_graph_fail(g, "%s: out of host memory while building the graph", mf_op_name(op));
    g->nodes = nn;
    g->cap = cap;
  }
  int id = g->n++;
  mf_node *n = &g->nodes[id];
  memset(n, 0, sizeof *n);
  n->op = op;
  n->dtype = dt;
  n->ndim = ndim;
  for (int i = 0; i < ndim; i++) n->ne[i] = ne[i];
  n->nsrc = nsrc;
  for (int i = 0; i < nsrc; i++) {
    n->src[i] = src[i];
    if (g->nodes[src[i]].requires_grad) n->requires_grad = true;
  }
  n->seg = g->open_seg;
  n->grad = -1;
  n->master = -1;
  n->link = -1;
  n->role = MF_ROLE_ACT;
  n->phase = (uint8_t)g->build_phase;
  snprintf(n->name, sizeof n->name, "%s", mf_op_name(op));
  return id;
}

static bool valid(const mf_graph *g, mf_tensor t) { return t >= 0 && t < g->n; }
int mf_tensor_ndim(const mf_graph *g, mf_tensor t) { return valid(g, t) ? g->nodes[t].ndim : -1; }
int64_t mf_tensor_dim(const mf_graph *g, mf_tensor t, int axis) {
  if (!valid(g, t)) return -1;
  const mf_node *n = &g->nodes[t];
  if (axis < 0) axis += n->ndim;
  return axis >= 0 && axis < n->ndim ? n->ne[axis] : -1;
}
int64_t mf_tensor_numel(const mf_graph *g, mf_tensor t) { return valid(g, t) ? mf_node_numel(&g->nodes[t]) : -1; }
mf_dtype mf_tensor_dtype(const mf_graph *g, mf_tensor t) { return valid(g, t) ? g->nodes[t].dtype : MF_F32; }
void mf_tensor_set_name(mf_graph *g, mf_tensor t, const char *name) {
  if (valid(g, t)) snprintf(g->nodes[t].name, MF_NAME_LEN, "%s", name);
}

int mf_segment_begin(mf_graph *g, const char *name) {
  if (g->err[0]) return -1;
  if (g->open_seg >= 0) return mf_graph_fail(g, "segment '%s': segment '%s' is still open", name, g->segs[g->open_seg].name);
  if (g->nseg == g->segcap) {
    int cap = g->segcap ? g->segcap * 2 : 16;
    mf_segment *s = realloc(g->segs, (size_t)cap * sizeof *s);
    if (!s) return mf_graph_fail(g, "segment '%s': out of host memory", name);
    g->segs = s;
    g->segcap = cap;
  }
  mf_segment *s = &g->segs[g->nseg];
  memset(s, 0, sizeof *s);
  snprintf(s->name, sizeof s->name, "%s", name ? name : "segment");
  s->first = g->n;
  g->open_seg = g->nseg++;
  return g->open_seg;
}

int mf_segment_end(mf_graph *g, int n_in, const mf_tensor *ins, int n_out, const mf_tensor *outs,
                   mf_inverse_fn inverse, void *ctx) {
  if (g->err[0]) return -1;
  if (g->open_seg < 0) return mf_graph_fail(g, "segment end: no segment is open");
  mf_segment *s = &g->segs[g->open_seg];
  if (n_in > MF_MAX_SRC || n_out > MF_MAX_SRC || n_in < 0 || n_out < 1)
    return mf_graph_fail(g, "segment '%s': %d inputs / %d outputs (1..%d)", s->name, n_in, n_out, MF_MAX_SRC);
  s->last = g->n - 1;
  s->n_in = n_in;
  s->n_out = n_out;
  for (int i = 0; i < n_in; i++) {
    if (!valid(g, ins[i]) || ins[i] >= s->first) return mf_graph_fail(g, "segment '%s': input %d was built inside it", s->name, i);
    s->ins[i] = ins[i];
  }
  for (int i = 0; i < n_out; i++) {
    if (!valid(g, outs[i]) || outs[i] < s->first) return mf_graph_fail(g, "segment '%s': output %d was not built inside it", s->name, i);
    s->outs[i] = outs[i];
  }
  s->inverse = inverse;
  s->ctx = ctx;
  int id = g->open_seg;
  g->open_seg = -1;
  return id;
}
int mf_graph_segment_count(const mf_graph *g) { return g->nseg; }
