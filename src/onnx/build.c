/* build.c — the ONNX importer proper: maps each node of an opened model onto memfit's ops, folds the
 * nodes whose inputs are known at import (Constant, shape arithmetic), appends the loss, and writes the
 * file's initializers into a session of the built graph. */
#include "onnx/onnx.h"
#ifdef MEMFIT_HAVE_ONNX
#include "ops/ops.h"
#include "graph/dtype.h"
#include "train/session.h"
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* a value known at import: ONNX element type, dims, values as doubles (int64 shape values are exact) */
typedef struct cst { int et; int ndim; int64_t dims[ONNX_MAX_RANK]; int64_t n; double *v; } cst;

/* one named ONNX value: a graph tensor (t >= 0), an initializer (init >= 0) and/or a known value */
typedef struct val { const char *name; mf_tensor t; int init; int has_c; cst c; int pad; int alias; } val;
/* alias: the value is an Identity of initializer `init` under its own name. torch.onnx.export replaces initializers
 * of equal values (bn2.weight, all ones, equal to bn1.weight) by Identity nodes of one of them; in the model they
 * are different parameters, so an alias becomes a parameter of its own, initialised from the shared data. */
/* pad > 0: the value is tensor t zero-padded by pad on each side of H and W (an ONNX Pad), which only a
 * convolution or an average pool (counting padded zeros, as memfit's does) may read: they pad themselves */

/* what mf_onnx_load_weights writes: tensor t gets initializer init's data, or the values vals */
typedef struct bind { mf_tensor t; int init; float *vals; int64_t n; char *alias; } bind;
/* alias: the name of the Identity output this parameter or buffer stands for (it has no initializer of its own) */
typedef struct priv { bind *b; int n, cap; } priv;

typedef struct ctx {
  const mf_onnx *m;
  mf_graph *g;
  val *vals;
  int nv, capv;
  int *hash;                    /* open addressing over vals, -1 empty */
  int hcap;
  priv *pv;
  const Onnx__NodeProto *node;
  size_t idx;
  int n_before;                 /* graph nodes before the current ONNX node */
  int nconst;
  mf_tensor *init_t;            /* per initializer: its parameter once made (-1 before) */
  int bn_eval;
  int frozen;                  /* float initializers as buffers (no gradient) */
  const char *prefix;          /* prepended to the names of the tensors made from the file */
  int64_t n_params, n_param_elems;
  char *err;
  size_t errlen;
} ctx;

static uint64_t str_hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
  return h;
}

static val *val_find(ctx *c, const char *name) {
  if (!name || !name[0]) return NULL;
  for (uint64_t h = str_hash(name) & (uint64_t)(c->hcap - 1);; h = (h + 1) & (uint64_t)(c->hcap - 1)) {
    int k = c->hash[h];
    if (k < 0) return NULL;
    if (!strcmp(c->vals[k].name, name)) return &c->vals[k];
  }
}

/* the value named `name`, made when new (its slot is reused when a node redefines it) */
static val *val_get(ctx *c, const char *name) {
  val *v = val_find(c, name);
  if (v) return v;
  if (c->nv == c->capv) return NULL; /* sized up front: cannot happen */
  uint64_t h = str_hash(name) & (uint64_t)(c->hcap - 1);
  while (c->hash[h] >= 0) h = (h + 1) & (uint64_t)(c->hcap - 1);
  c->hash[h] = c->nv;
  v = &c->vals[c->nv++];
  memset(v, 0, sizeof *v);
  v->name = name;
  v->t = -1;
  v->init = -1;
  return v;
}

static int node_fail(ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int node_fail(ctx *c, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(c->err, c->errlen, "%s: node %zu '%s' (%s): %s", c->m->path, c->idx, c->node->name ? c->node->name : "",
           c->node->op_type, msg);
  return -1;
}
#define UNSUP(...) node_fail(c, "unsupported: " __VA_ARGS__)

static void cst_free(cst *k) { free(k->v); k->v = NULL; }
static int cst_alloc(ctx *c, cst *k, int et, int ndim, const int64_t *dims) {
  k->et = et;
  k->ndim = ndim;
  k->n = 1;
  for (int i = 0; i < ndim; i++) {
    k->dims[i] = dims[i];
    if (dims[i] < 0 || dims[i] > ((int64_t)1 << 32) || (dims[i] && k->n > ((int64_t)1 << 32) / dims[i]))
      return node_fail(c, "a constant of too many elements or a negative dim");
    k->n *= dims[i];
  }
  if (k->n == 0 && ndim > 1) return node_fail(c, "an empty constant of %d dims", ndim);
  k->v = calloc((size_t)(k->n ? k->n : 1), sizeof(double));
  if (!k->v) return node_fail(c, "out of host memory");
  return 0;
}
/* a known value as an integer (shape arithmetic): NaN is 0, magnitudes clamp to 2^62 (C's conversion of an
 * out-of-range double is undefined) */
static int64_t to_i64(double v) {
  if (!(v == v)) return 0;
  if (v > 4611686018427387904.0) return (int64_t)1 << 62;
  if (v < -4611686018427387904.0) return -((int64_t)1 << 62);
  return (int64_t)v;
}
static bool et_is_float(int et) { return et == ONNX_FLOAT || et == ONNX_DOUBLE || et == ONNX_FLOAT16 || et == ONNX_BFLOAT16; }

/* ---- attributes ---- */
static int64_t attr_i(const Onnx__NodeProto *n, const char *name, int64_t def) {
  const Onnx__AttributeProto *a = onnx_attr(n, name);
  return a && a->has_i ? a->i : def;
}
static double attr_f(const Onnx__NodeProto *n, const char *name, double def) {
  const Onnx__AttributeProto *a = onnx_attr(n, name);
  return a && a->has_f ? a->f : def;
}
/* ints attribute into out (at most max); returns the count, or -1 when absent */
static int attr_ints(const Onnx__NodeProto *n, const char *name, int64_t *out, int max) {
  const Onnx__AttributeProto *a = onnx_attr(n, name);
  if (!a) return -1;
  int k = (int)(a->n_ints < (size_t)max ? a->n_ints : (size_t)max);
  for (int i = 0; i < k; i++) out[i] = a->ints[i];
  return a->n_ints > (size_t)max ? max + 1 : k;
}
static const char *attr_s(const Onnx__NodeProto *n, const char *name, char *buf, size_t len) {
  const Onnx__AttributeProto *a = onnx_attr(n, name);
  if (!a || !a->has_s) return NULL;
  size_t k = a->s.len < len - 1 ? a->s.len : len - 1;
  memcpy(buf, a->s.data, k);
  buf[k] = 0;
  return buf;
}

/* ---- inputs of the current node ---- */
static val *in_val(ctx *c, int k) {
  if (k < 0 || (size_t)k >= c->node->n_input || !c->node->input[k][0]) return NULL;
  return val_find(c, c->node->input[k]);
}
static bool has_in(ctx *c, int k) { return k >= 0 && (size_t)k < c->node->n_input && c->node->input[k][0]; }
static bool known(const val *v) { return v && (v->has_c || (v->init >= 0 && v->t < 0)); }
/* a float initializer: a trained parameter (or a batch-norm buffer), never folded into a constant */
static bool is_weight(const ctx *c, const val *v) {
  return v && v->init >= 0 && et_is_float(c->m->graph->initializer[v->init]->data_type);
}

/* the value of v known at import (reads an initializer once) */
static cst *const_of(ctx *c, val *v, const char *what) {
  if (!v) { node_fail(c, "%s is missing", what); return NULL; }
  if (v->has_c) return &v->c;
  if (v->init >= 0) {
    const Onnx__TensorProto *t = c->m->graph->initializer[v->init];
    int64_t dims[ONNX_MAX_RANK];
    for (size_t i = 0; i < t->n_dims; i++) dims[i] = t->dims[i];
    if (cst_alloc(c, &v->c, t->data_type, (int)t->n_dims, dims) < 0) return NULL;
    if (onnx_tensor_read(c->m, t, v->c.v, v->c.n, c->err, c->errlen) < 0) { cst_free(&v->c); return NULL; }
    v->has_c = 1;
    return &v->c;
  }
  node_fail(c, "%s '%s' must be known at import (a constant or shape arithmetic), but it is computed by the graph", what,
            v->name);
  return NULL;
}

static int bind_add(ctx *c, mf_tensor t, int init, const cst *k);
static int bind_alias(ctx *c, const char *name) {
  bind *b = &c->pv->b[c->pv->n - 1];
  b->alias = strdup(name);
  return b->alias ? 0 : node_fail(c, "out of host memory");
}
static int bind_add(ctx *c, mf_tensor t, int init, const cst *k) {
  priv *p = c->pv;
  if (p->n == p->cap) {
    int nc = p->cap ? 2 * p->cap : 64;
    bind *nb = realloc(p->b, (size_t)nc * sizeof *nb);
    if (!nb) return node_fail(c, "out of host memory");
    p->b = nb;
    p->cap = nc;
  }
  bind *b = &p->b[p->n];
  memset(b, 0, sizeof *b);
  b->t = t;
  b->init = init;
  if (k) {
    b->vals = malloc((size_t)(k->n ? k->n : 1) * sizeof(float));
    if (!b->vals) return node_fail(c, "out of host memory");
    for (int64_t i = 0; i < k->n; i++) b->vals[i] = (float)k->v[i];
    b->n = k->n;
  }
  p->n++;
  return 0;
}

static int dims_to_mf(ctx *c, int ndim, const int64_t *dims, int64_t *ne, const char *what) {
  if (ndim > MF_MAX_DIMS) return node_fail(c, "%s has %d dims; memfit tensors have at most %d", what, ndim, MF_MAX_DIMS);
  if (ndim == 0) { ne[0] = 1; return 1; }
  for (int i = 0; i < ndim; i++) ne[i] = dims[i];
  return ndim;
}

/* the graph tensor of v: a parameter (or buffer) for a float initializer, a state for another constant */
static mf_tensor tensor_of(ctx *c, val *v, const char *what) {
  if (!v) return node_fail(c, "%s is missing", what);
  if (v->pad && v->t >= 0) /* a zero Pad read by something other than a Conv or AveragePool: done as an op */
    return mf_pad2d(c->g, v->t, MF_PAD_CONSTANT, v->pad, v->pad, v->pad, v->pad, 0);
  if (v->t >= 0) return v->t;
  int64_t ne[MF_MAX_DIMS];
  if (v->init >= 0) {
    const Onnx__TensorProto *t = c->m->graph->initializer[v->init];
    if (!et_is_float(t->data_type))
      return node_fail(c, "%s '%s' is an initializer of type %s used as data; memfit trains float tensors only", what,
                       v->name, onnx_elem_name(t->data_type));
    int64_t dims[ONNX_MAX_RANK];
    for (size_t i = 0; i < t->n_dims; i++) dims[i] = t->dims[i];
    int nd = dims_to_mf(c, (int)t->n_dims, dims, ne, v->name);
    if (nd < 0) return -1;
    mf_tensor id;
    if (!v->alias && c->init_t[v->init] >= 0) return v->t = c->init_t[v->init]; /* one initializer read twice */
    char pn[MF_NAME_LEN];
    snprintf(pn, sizeof pn, "%s%s", c->prefix, v->alias ? v->name : t->name);
    id = c->frozen ? mf_buffer(c->g, pn, nd, ne, MF_INIT_ZERO, 0) : mf_param(c->g, pn, nd, ne, MF_INIT_ZERO, 0);
    if (!v->alias) c->init_t[v->init] = id;
    if (!c->frozen) {
      c->n_params++;
      c->n_param_elems += onnx_tensor_numel(t);
    }
    if (id < 0) return node_fail(c, "%s", mf_graph_error(c->g));
    if (bind_add(c, id, v->init, NULL) < 0 || (v->alias && bind_alias(c, v->name) < 0)) return -1;
    v->t = id;
    return id;
  }
  if (!v->has_c) return node_fail(c, "%s '%s' is not produced by any node before it", what, v->name);
  cst *k = &v->c;
  int nd = dims_to_mf(c, k->ndim, k->dims, ne, v->name);
  if (nd < 0) return -1;
  if (k->n == 0) return node_fail(c, "%s '%s' is an empty constant", what, v->name);
  char nm[MF_NAME_LEN];
  snprintf(nm, sizeof nm, "%sonnx.const%d", c->prefix, c->nconst++);
  mf_tensor id = mf_state(c->g, nm, et_is_float(k->et) ? c->g->act_dtype : MF_I32, nd, ne, MF_INIT_ZERO, 0);
  if (id < 0) return node_fail(c, "%s", mf_graph_error(c->g));
  if (bind_add(c, id, -1, k) < 0) return -1;
  v->t = id;
  return id;
}

static mf_tensor in_tensor(ctx *c, int k) {
  char what[32];
  snprintf(what, sizeof what, "input %d", k);
  if (!has_in(c, k)) return node_fail(c, "%s is missing", what);
  val *v = in_val(c, k);
  if (!v) return node_fail(c, "input %d '%s' is not produced by any node before it", k, c->node->input[k]);
  return tensor_of(c, v, what);
}
static cst *in_const(ctx *c, int k, const char *what) {
  if (!has_in(c, k)) { node_fail(c, "%s (input %d) is missing", what, k); return NULL; }
  val *v = in_val(c, k);
  if (!v) { node_fail(c, "%s '%s' is not produced by any node before it", what, c->node->input[k]); return NULL; }
  return const_of(c, v, what);
}

static const mf_node *nd_of(ctx *c, mf_tensor t) { return &c->g->nodes[t]; }

/* output k of the current node is read by a later node or is a graph output */
static bool out_used(ctx *c, int k) {
  if ((size_t)k >= c->node->n_output || !c->node->output[k][0]) return false;
  const char *nm = c->node->output[k];
  const Onnx__GraphProto *gp = c->m->graph;
  for (size_t i = 0; i < gp->n_output; i++)
    if (gp->output[i]->name && !strcmp(gp->output[i]->name, nm)) return true;
  for (size_t i = c->idx + 1; i < gp->n_node; i++)
    for (size_t j = 0; j < gp->node[i]->n_input; j++)
      if (!strcmp(gp->node[i]->input[j], nm)) return true;
  return false;
}

/* at most 2^40 elements (memfit's byte counts stay far from overflow) */
static bool numel_ok(const mf_node *n) {
  int64_t e = 1;
  for (int i = 0; i < n->ndim; i++)
    if (__builtin_mul_overflow(e, n->ne[i], &e) || e > ((int64_t)1 << 40)) return false;
  return true;
}

/* output k of the current node is graph tensor t; a tensor this node made takes the node's name */
static int set_out(ctx *c, int k, mf_tensor t) {
  if (t < 0 || mf_graph_error(c->g)) {
    if (mf_graph_error(c->g)) return node_fail(c, "%s", mf_graph_error(c->g));
    return -1;
  }
  if (!numel_ok(nd_of(c, t))) return node_fail(c, "a result of more than 2^40 elements");
  if ((size_t)k >= c->node->n_output || !c->node->output[k][0]) return 0;
  val *v = val_get(c, c->node->output[k]);
  if (!v) return node_fail(c, "too many values");
  if (v->has_c) cst_free(&v->c);
  v->has_c = 0;
  v->init = -1;
  v->t = t;
  v->pad = 0;
  v->alias = 0;
  if (t >= c->n_before) {
    char nm[MF_NAME_LEN];
    const char *base = c->node->name && c->node->name[0] ? c->node->name : c->node->output[k];
    if (k) snprintf(nm, sizeof nm, "%s:%d", base, k);
    else snprintf(nm, sizeof nm, "%s", base);
    mf_tensor_set_name(c->g, t, nm);
  }
  return 0;
}
/* output k is the known value k (taken over) */
static int set_out_const(ctx *c, int k, cst *kc) {
  if ((size_t)k >= c->node->n_output || !c->node->output[k][0]) { cst_free(kc); return 0; }
  val *v = val_get(c, c->node->output[k]);
  if (!v) { cst_free(kc); return node_fail(c, "too many values"); }
  if (v->has_c) cst_free(&v->c);
  v->c = *kc;
  v->has_c = 1;
  v->init = -1;
  v->t = -1;
  v->pad = 0;
  v->alias = 0;
  return 0;
}

/* ---- folding of nodes whose inputs are all known ---- */
static int bcast_shape(ctx *c, const cst *a, const cst *b, int *nd, int64_t *dims) {
  *nd = a->ndim > b->ndim ? a->ndim : b->ndim;
  for (int i = 0; i < *nd; i++) {
    int64_t da = i < *nd - a->ndim ? 1 : a->dims[i - (*nd - a->ndim)];
    int64_t db = i < *nd - b->ndim ? 1 : b->dims[i - (*nd - b->ndim)];
    if (da != db && da != 1 && db != 1) return node_fail(c, "constants of shapes that do not broadcast");
    dims[i] = da == 1 ? db : da;
  }
  return 0;
}
static int64_t bcast_index(const cst *a, int nd, const int64_t *dims, int64_t flat) {
  int64_t idx = 0, stride = 1;
  for (int i = nd - 1; i >= 0; i--) {
    int64_t coord = flat % dims[i];
    flat /= dims[i];
    int ai = i - (nd - a->ndim);
    if (ai >= 0) {
      if (a->dims[ai] != 1) idx += coord * stride;
      stride *= a->dims[ai];
    }
  }
  return idx;
}

static double fold_bin(const char *op, double x, double y, bool isint) {
  if (!strcmp(op, "Add")) return x + y;
  if (!strcmp(op, "Sub")) return x - y;
  if (!strcmp(op, "Mul")) return x * y;
  if (!strcmp(op, "Div")) return isint ? (y != 0 ? trunc(x / y) : 0) : x / y;
  if (!strcmp(op, "Pow")) return pow(x, y);
  if (!strcmp(op, "Equal")) return x == y;
  if (!strcmp(op, "Less")) return x < y;
  if (!strcmp(op, "Greater")) return x > y;
  if (!strcmp(op, "Max")) return x > y ? x : y;
  if (!strcmp(op, "Min")) return x < y ? x : y;
  return NAN;
}

static int norm_axis(ctx *c, int64_t a, int rank, int64_t *out) {
  if (a < 0) a += rank;
  if (a < 0 || a >= rank) return node_fail(c, "axis %lld is outside the %d dims of its input", (long long)a, rank);
  *out = a;
  return 0;
}

/* new dims of Squeeze/Unsqueeze given the axes; -1 on error */
static int squeeze_dims(ctx *c, bool unsq, int nd, const int64_t *dims, const int64_t *axes, int na, int *ond, int64_t *od) {
  if (unsq) {
    int r = nd + na;
    if (r > ONNX_MAX_RANK) return node_fail(c, "too many dims");
    uint8_t mark[ONNX_MAX_RANK] = {0};
    for (int i = 0; i < na; i++) {
      int64_t a = 0;
      if (norm_axis(c, axes[i], r, &a) < 0) return -1;
      mark[a] = 1;
    }
    int j = 0;
    for (int i = 0; i < r; i++) od[i] = mark[i] ? 1 : dims[j++];
    *ond = r;
    return 0;
  }
  uint8_t mark[ONNX_MAX_RANK] = {0};
  if (na == 0)
    for (int i = 0; i < nd; i++) mark[i] = dims[i] == 1;
  for (int i = 0; i < na; i++) {
    int64_t a = 0;
    if (norm_axis(c, axes[i], nd, &a) < 0) return -1;
    if (dims[a] != 1) return node_fail(c, "cannot squeeze axis %lld of size %lld", (long long)a, (long long)dims[a]);
    mark[a] = 1;
  }
  int j = 0;
  for (int i = 0; i < nd; i++)
    if (!mark[i]) od[j++] = dims[i];
  *ond = j;
  return 0;
}

/* the axes of Squeeze/Unsqueeze/Reduce*: attribute (older opsets) or input 1 */
static int get_axes(ctx *c, int input, int64_t *axes, int *na) {
  int k = attr_ints(c->node, "axes", axes, ONNX_MAX_RANK);
  if (k > ONNX_MAX_RANK) return node_fail(c, "too many axes");
  if (k >= 0) { *na = k; return 0; }
  *na = 0;
  if (!has_in(c, input)) return 0;
  cst *a = in_const(c, input, "axes");
  if (!a) return -1;
  if (a->n > ONNX_MAX_RANK) return node_fail(c, "too many axes");
  for (int64_t i = 0; i < a->n; i++) axes[i] = to_i64(a->v[i]);
  *na = (int)a->n;
  return 0;
}

/* Reshape's target: 0 copies the input's dim (unless allowzero), -1 is inferred later */
static int reshape_dims(ctx *c, int nd, const int64_t *dims, const cst *s, int allowzero, int *ond, int64_t *od) {
  if (s->n > ONNX_MAX_RANK) return node_fail(c, "a shape of %lld dims", (long long)s->n);
  *ond = (int)s->n;
  int64_t total = 1, known_ = 1;
  int infer = -1;
  for (int i = 0; i < nd; i++)
    if (__builtin_mul_overflow(total, dims[i], &total)) return node_fail(c, "an input of too many elements");
  for (int i = 0; i < *ond; i++) {
    int64_t d = to_i64(s->v[i]);
    if (d == 0 && !allowzero) {
      if (i >= nd) return node_fail(c, "shape copies dim %d that the input does not have", i);
      d = dims[i];
    }
    if (d == -1) {
      if (infer >= 0) return node_fail(c, "shape has two -1 dims");
      infer = i;
    } else if (d < 0) return node_fail(c, "shape has dim %lld", (long long)d);
    else if (__builtin_mul_overflow(known_, d, &known_)) return node_fail(c, "a shape of too many elements");
    od[i] = d;
  }
  if (infer >= 0) {
    if (known_ == 0 || total % known_) return node_fail(c, "cannot infer the -1 dim of the shape");
    od[infer] = total / known_;
  } else if (known_ != total)
    return node_fail(c, "shape of %lld elements for an input of %lld", (long long)known_, (long long)total);
  return 0;
}

/* Slice parameters for one axis of dim elements (ONNX's clamping): the first index *s and the element count *n;
 * a step < 0 walks backwards (torch's exporter reverses pad lists so) */
static int slice_range(ctx *c, int64_t dim, double st, double en, int64_t step, int64_t *s, int64_t *n) {
  if (step == 0) return node_fail(c, "Slice with step 0");
  int64_t a = to_i64(st), b = to_i64(en);
  if (a < 0) a += dim;
  if (b < 0) b += dim;
  if (step > 0) {
    a = a < 0 ? 0 : a > dim ? dim : a;
    b = b < 0 ? 0 : b > dim ? dim : b;
    *n = b > a ? (b - a + step - 1) / step : 0;
  } else {
    a = a < 0 ? 0 : a > dim - 1 ? dim - 1 : a;
    b = b < -1 ? -1 : b > dim - 1 ? dim - 1 : b;
    *n = a > b ? (a - b - step - 1) / -step : 0;
  }
  *s = a;
  return 0;
}

/* slices of Slice's inputs: per axis the first index st, the step sp and en = st + count * sp (ONNX rank of the data) */
static int slice_params(ctx *c, int rank, int64_t *st, int64_t *en, int64_t *sp, const int64_t *dims) {
  cst *s = in_const(c, 1, "starts"), *e = s ? in_const(c, 2, "ends") : NULL;
  if (!s || !e) return -1;
  if (s->n != e->n || s->n > rank) return node_fail(c, "starts and ends of %lld and %lld values", (long long)s->n, (long long)e->n);
  cst *ax = has_in(c, 3) ? in_const(c, 3, "axes") : NULL, *stp = has_in(c, 4) ? in_const(c, 4, "steps") : NULL;
  if ((has_in(c, 3) && !ax) || (has_in(c, 4) && !stp)) return -1;
  for (int i = 0; i < rank; i++) { st[i] = 0; en[i] = dims[i]; sp[i] = 1; }
  for (int64_t i = 0; i < s->n; i++) {
    int64_t a = ax ? to_i64(ax->v[i]) : i, cnt;
    if (norm_axis(c, a, rank, &a) < 0) return -1;
    int64_t step = stp ? to_i64(stp->v[i]) : 1;
    if (slice_range(c, dims[a], s->v[i], e->v[i], step, &st[a], &cnt) < 0) return -1;
    sp[a] = step;
    en[a] = st[a] + cnt * step;
  }
  return 0;
}

static int fold(ctx *c, const char *op, bool *done) {
  *done = false;
  const Onnx__NodeProto *n = c->node;
  static const char *const foldable[] = {"Identity", "Cast", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Concat", "Gather",
                                         "Add", "Sub", "Mul", "Div", "Pow", "Equal", "Less", "Greater", "Max", "Min", "Neg",
                                         "Sqrt", "Floor", "Ceil", "Slice", "Range", "Where", "Not", "Abs", "Relu",
                                         "Transpose"};
  bool ok = false;
  for (size_t i = 0; i < sizeof foldable / sizeof *foldable; i++) ok |= !strcmp(op, foldable[i]);
  if (!ok || n->n_input == 0) return 0;
  for (size_t i = 0; i < n->n_input; i++) {
    const val *v = val_find(c, n->input[i]);
    if (n->input[i][0] && (!known(v) || is_weight(c, v))) return 0;
  }
  /* Reshape/Squeeze of a big initializer that is a weight: leave it to the graph */
  cst *a = in_const(c, 0, "input 0");
  if (!a) return -1;
  cst r = {0};
  bool isint = !et_is_float(a->et);
  if (!strcmp(op, "Identity") || !strcmp(op, "Cast")) {
    int to = !strcmp(op, "Cast") ? (int)attr_i(n, "to", ONNX_FLOAT) : a->et;
    if (cst_alloc(c, &r, to, a->ndim, a->dims) < 0) return -1;
    for (int64_t i = 0; i < a->n; i++) {
      double x = a->v[i];
      if (!et_is_float(to)) x = to == ONNX_BOOL ? (x != 0) : trunc(x);
      else if (to == ONNX_FLOAT) x = (float)x;
      r.v[i] = x;
    }
  } else if (!strcmp(op, "Reshape") || !strcmp(op, "Unsqueeze") || !strcmp(op, "Squeeze") || !strcmp(op, "Flatten")) {
    int ond = 0;
    int64_t od[ONNX_MAX_RANK];
    if (!strcmp(op, "Reshape")) {
      cst *s = in_const(c, 1, "shape");
      if (!s || reshape_dims(c, a->ndim, a->dims, s, (int)attr_i(n, "allowzero", 0), &ond, od) < 0) return -1;
    } else if (!strcmp(op, "Flatten")) {
      int64_t ax = attr_i(n, "axis", 1), p = 1, q = 1;
      if (ax < 0) ax += a->ndim;
      if (ax < 0 || ax > a->ndim) return node_fail(c, "axis out of range");
      for (int i = 0; i < a->ndim; i++) *(i < ax ? &p : &q) *= a->dims[i];
      ond = 2; od[0] = p; od[1] = q;
    } else {
      int64_t axes[ONNX_MAX_RANK];
      int na;
      if (get_axes(c, 1, axes, &na) < 0) return -1;
      if (squeeze_dims(c, !strcmp(op, "Unsqueeze"), a->ndim, a->dims, axes, na, &ond, od) < 0) return -1;
    }
    if (cst_alloc(c, &r, a->et, ond, od) < 0) return -1;
    memcpy(r.v, a->v, (size_t)a->n * sizeof(double));
  } else if (!strcmp(op, "Concat")) {
    int64_t ax = 0;
    if (a->ndim == 0 || norm_axis(c, attr_i(n, "axis", 0), a->ndim, &ax) < 0) return a->ndim ? -1 : node_fail(c, "scalar input");
    int64_t dims[ONNX_MAX_RANK];
    memcpy(dims, a->dims, sizeof dims);
    dims[ax] = 0;
    for (size_t i = 0; i < n->n_input; i++) {
      cst *b = in_const(c, (int)i, "input");
      if (!b) return -1;
      if (b->ndim != a->ndim) return node_fail(c, "inputs of different ranks");
      dims[ax] += b->dims[ax];
    }
    if (cst_alloc(c, &r, a->et, a->ndim, dims) < 0) return -1;
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < ax; i++) outer *= dims[i];
    for (int i = (int)ax + 1; i < a->ndim; i++) inner *= dims[i];
    int64_t off = 0;
    for (size_t i = 0; i < n->n_input; i++) {
      cst *b = in_const(c, (int)i, "input");
      int64_t blk = b->dims[ax] * inner;
      for (int64_t o = 0; o < outer; o++) memcpy(r.v + o * dims[ax] * inner + off, b->v + o * blk, (size_t)blk * sizeof(double));
      off += blk;
    }
  } else if (!strcmp(op, "Gather")) {
    cst *ix = in_const(c, 1, "indices");
    if (!ix) return -1;
    int64_t ax = 0;
    if (a->ndim == 0 || norm_axis(c, attr_i(n, "axis", 0), a->ndim, &ax) < 0) return a->ndim ? -1 : node_fail(c, "scalar data");
    int64_t dims[ONNX_MAX_RANK];
    int nd = 0;
    for (int i = 0; i < ax; i++) dims[nd++] = a->dims[i];
    for (int i = 0; i < ix->ndim; i++) dims[nd++] = ix->dims[i];
    for (int i = (int)ax + 1; i < a->ndim; i++) dims[nd++] = a->dims[i];
    if (nd > ONNX_MAX_RANK) return node_fail(c, "too many dims");
    if (cst_alloc(c, &r, a->et, nd, dims) < 0) return -1;
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < ax; i++) outer *= a->dims[i];
    for (int i = (int)ax + 1; i < a->ndim; i++) inner *= a->dims[i];
    for (int64_t o = 0; o < outer; o++)
      for (int64_t j = 0; j < ix->n; j++) {
        int64_t k = to_i64(ix->v[j]);
        if (k < 0) k += a->dims[ax];
        if (k < 0 || k >= a->dims[ax]) { cst_free(&r); return node_fail(c, "index %lld out of range", (long long)ix->v[j]); }
        memcpy(r.v + (o * ix->n + j) * inner, a->v + (o * a->dims[ax] + k) * inner, (size_t)inner * sizeof(double));
      }
  } else if (!strcmp(op, "Neg") || !strcmp(op, "Sqrt") || !strcmp(op, "Floor") || !strcmp(op, "Ceil") || !strcmp(op, "Not") ||
             !strcmp(op, "Abs") || !strcmp(op, "Relu")) {
    if (cst_alloc(c, &r, a->et, a->ndim, a->dims) < 0) return -1;
    for (int64_t i = 0; i < a->n; i++) {
      double x = a->v[i];
      r.v[i] = op[0] == 'N' && op[1] == 'e' ? -x : op[0] == 'S' ? sqrt(x) : op[0] == 'F' ? floor(x) : op[0] == 'C' ? ceil(x)
               : op[0] == 'N' ? (x == 0) : op[0] == 'A' ? fabs(x) : (x > 0 ? x : 0);
    }
  } else if (!strcmp(op, "Transpose")) { /* torch's pad lists are reshaped to [k,2], reversed and transposed */
    int64_t perm[ONNX_MAX_RANK], dims[ONNX_MAX_RANK], st[ONNX_MAX_RANK];
    int np = attr_ints(n, "perm", perm, ONNX_MAX_RANK);
    if (np < 0) { np = a->ndim; for (int i = 0; i < np; i++) perm[i] = np - 1 - i; }
    if (np != a->ndim) return node_fail(c, "perm of %d values for a tensor of rank %d", np, a->ndim);
    for (int i = 0; i < np; i++) {
      if (perm[i] < 0 || perm[i] >= np) return node_fail(c, "perm value %lld", (long long)perm[i]);
      for (int j = 0; j < i; j++)
        if (perm[j] == perm[i]) return node_fail(c, "perm repeats axis %lld", (long long)perm[i]);
      dims[i] = a->dims[perm[i]];
    }
    int64_t acc = 1;
    for (int i = np - 1; i >= 0; i--) { st[i] = acc; acc *= a->dims[i]; }
    if (cst_alloc(c, &r, a->et, np, dims) < 0) return -1;
    for (int64_t f = 0; f < r.n; f++) {
      int64_t rem = f, src = 0;
      for (int i = np - 1; i >= 0; i--) {
        src += rem % dims[i] * st[perm[i]];
        rem /= dims[i];
      }
      r.v[f] = a->v[src];
    }
  } else if (!strcmp(op, "Slice")) {
    if (a->ndim < 1) return node_fail(c, "slice of a scalar");
    int64_t st[ONNX_MAX_RANK], en[ONNX_MAX_RANK], sp[ONNX_MAX_RANK], dims[ONNX_MAX_RANK];
    if (slice_params(c, a->ndim, st, en, sp, a->dims) < 0) return -1;
    for (int i = 0; i < a->ndim; i++) dims[i] = (en[i] - st[i]) / sp[i];
    if (cst_alloc(c, &r, a->et, a->ndim, dims) < 0) return -1;
    for (int64_t f = 0; f < r.n; f++) {
      int64_t rem = f, src = 0, stride = 1;
      for (int i = a->ndim - 1; i >= 0; i--) {
        int64_t coord = rem % dims[i];
        rem /= dims[i];
        src += (st[i] + coord * sp[i]) * stride;
        stride *= a->dims[i];
      }
      r.v[f] = a->v[src];
    }
  } else if (!strcmp(op, "Range")) {
    cst *lim = in_const(c, 1, "limit"), *d = lim ? in_const(c, 2, "delta") : NULL;
    if (!d || a->n != 1 || lim->n != 1 || d->n != 1 || d->v[0] == 0) return node_fail(c, "Range needs scalar start, limit, delta != 0");
    double cnt = ceil((lim->v[0] - a->v[0]) / d->v[0]);
    int64_t dims[1] = {cnt > 0 ? to_i64(cnt) : 0};
    if (cst_alloc(c, &r, a->et, 1, dims) < 0) return -1;
    for (int64_t i = 0; i < dims[0]; i++) r.v[i] = a->v[0] + (double)i * d->v[0];
  } else if (!strcmp(op, "Where")) {
    cst *x = in_const(c, 1, "X"), *y = x ? in_const(c, 2, "Y") : NULL;
    if (!y) return -1;
    int nd, nd2;
    int64_t d1[ONNX_MAX_RANK], d2[ONNX_MAX_RANK];
    if (bcast_shape(c, a, x, &nd, d1) < 0) return -1;
    cst t1 = {.ndim = nd};
    memcpy(t1.dims, d1, sizeof d1);
    if (bcast_shape(c, &t1, y, &nd2, d2) < 0) return -1;
    if (cst_alloc(c, &r, x->et, nd2, d2) < 0) return -1;
    for (int64_t f = 0; f < r.n; f++)
      r.v[f] = a->v[bcast_index(a, nd2, d2, f)] != 0 ? x->v[bcast_index(x, nd2, d2, f)] : y->v[bcast_index(y, nd2, d2, f)];
  } else { /* binary with broadcasting */
    cst *b = in_const(c, 1, "input 1");
    if (!b) return -1;
    int nd;
    int64_t dims[ONNX_MAX_RANK];
    if (bcast_shape(c, a, b, &nd, dims) < 0) return -1;
    bool cmp = !strcmp(op, "Equal") || !strcmp(op, "Less") || !strcmp(op, "Greater");
    if (cst_alloc(c, &r, cmp ? ONNX_BOOL : a->et, nd, dims) < 0) return -1;
    for (int64_t f = 0; f < r.n; f++) {
      double v = fold_bin(op, a->v[bcast_index(a, nd, dims, f)], b->v[bcast_index(b, nd, dims, f)], isint);
      r.v[f] = r.et == ONNX_FLOAT ? (float)v : v;
    }
  }
  *done = true;
  return set_out_const(c, 0, &r);
}

/* ---- graph ops ---- */
static bool fits(const mf_node *a, const mf_node *b) { /* b broadcasts onto a (memfit's binary rule) */
  if (b->ndim > a->ndim) return false;
  for (int i = 0; i < b->ndim; i++) {
    int64_t db = b->ne[b->ndim - 1 - i], da = a->ne[a->ndim - 1 - i];
    if (db != da && db != 1) return false;
  }
  return true;
}

/* a (op) b with ONNX broadcasting; kind MF_BIN_* */
static mf_tensor binary_op(ctx *c, int kind, int ia, int ib) {
  mf_graph *g = c->g;
  val *va = in_val(c, ia), *vb = in_val(c, ib);
  if (!va || !vb) return node_fail(c, "an input is missing or not produced before this node");
  bool ka = known(va) && va->t < 0 && !is_weight(c, va), kb = known(vb) && vb->t < 0 && !is_weight(c, vb);
  if (kb) {
    cst *b = const_of(c, vb, "input 1");
    if (!b) return -1;
    if (b->n == 1) {
      mf_tensor a = tensor_of(c, va, "input 0");
      if (a < 0) return -1;
      double s = b->v[0];
      switch (kind) {
      case MF_BIN_ADD: return mf_add_scalar(g, a, s);
      case MF_BIN_SUB: return mf_add_scalar(g, a, -s);
      case MF_BIN_MUL: return mf_mul_scalar(g, a, s);
      case MF_BIN_POW: return mf_pow_scalar(g, a, s);
      default: return mf_mul_scalar(g, a, 1.0 / s);
      }
    }
  }
  if (ka) {
    cst *a = const_of(c, va, "input 0");
    if (!a) return -1;
    if (a->n == 1 && kind != MF_BIN_DIV && kind != MF_BIN_POW) {
      mf_tensor b = tensor_of(c, vb, "input 1");
      if (b < 0) return -1;
      double s = a->v[0];
      switch (kind) {
      case MF_BIN_ADD: return mf_add_scalar(g, b, s);
      case MF_BIN_SUB: return mf_add_scalar(g, mf_mul_scalar(g, b, -1), s);
      default: return mf_mul_scalar(g, b, s);
      }
    }
  }
  mf_tensor a = tensor_of(c, va, "input 0");
  if (a < 0) return -1;
  mf_tensor b = tensor_of(c, vb, "input 1");
  if (b < 0) return -1;
  const mf_node *na = nd_of(c, a), *nb = nd_of(c, b);
  if (fits(na, nb)) {
    switch (kind) {
    case MF_BIN_ADD: return mf_add(g, a, b);
    case MF_BIN_SUB: return mf_sub(g, a, b);
    case MF_BIN_MUL: return mf_mul(g, a, b);
    case MF_BIN_POW: return mf_pow(g, a, b);
    default: return mf_div(g, a, b);
    }
  }
  if (fits(nb, na)) {
    switch (kind) {
    case MF_BIN_ADD: return mf_add(g, b, a);
    case MF_BIN_MUL: return mf_mul(g, b, a);
    case MF_BIN_SUB: return mf_mul_scalar(g, mf_sub(g, b, a), -1);
    case MF_BIN_POW: return mf_pow(g, mf_expand(g, a, b, 1.0), b);
    default: return mf_div(g, mf_expand(g, a, b, 1.0), b);
    }
  }
  char sa[64], sb[64];
  mf_shape_str(na, sa, sizeof sa);
  mf_shape_str(nb, sb, sizeof sb);
  return UNSUP("operands %s and %s both need broadcasting (memfit broadcasts one operand onto the other)", sa, sb);
}

/* A matmul operand that is a Transpose of the last two axes of a weight (torch exports nn.Linear on a 3-D input as
 * MatMul(x, Transpose(W))): the matmul reads the weight itself with its trans flag flipped. The transposed copy is
 * then read by nothing, so the planner drops it; unfolded, it was an activation the matmul kept for backward (in
 * vit_b_16, 26 MB per encoder layer: the qkv, fc1 and fc2 weights). Only for tensors outside the activation arena
 * (parameters, state, inputs): a transposed activation may be read by others, and its source kept instead of it. */
static mf_tensor fold_transpose(ctx *c, mf_tensor t, int *trans) {
  const mf_node *n = nd_of(c, t);
  int nd = n->ndim;
  if (n->op != MF_OP_PERMUTE || nd < 2 || nd_of(c, n->src[0])->role == MF_ROLE_ACT) return t;
  for (int i = 0; i < nd - 2; i++)
    if (n->ip[i] != i) return t;
  if (n->ip[nd - 2] != nd - 1 || n->ip[nd - 1] != nd - 2) return t;
  *trans = !*trans;
  return n->src[0];
}

/* ---- GELU in its erf form, as torch exports F.gelu: y = Mul(Mul(x, Add(Erf(Div(x, sqrt 2)), 1)), 0.5). At the
 * last Mul the chain is recognised and replaced by one GELU op (its backward keeps x only; the ops of the chain
 * are then read by nothing and the planner drops them). ---- */
static const Onnx__NodeProto *producer(ctx *c, const char *name, size_t *at) {
  for (size_t i = c->idx; i-- > 0;) {
    const Onnx__NodeProto *n = c->m->graph->node[i];
    for (size_t k = 0; k < n->n_output; k++)
      if (!strcmp(n->output[k], name)) { if (at) *at = i; return n; }
  }
  return NULL;
}
static bool const_is(ctx *c, const char *name, double want, double tol) {
  val *v = val_find(c, name);
  return v && v->has_c && v->c.n == 1 && fabs(v->c.v[0] - want) <= tol;
}
/* the other input of a binary node than `name`'s side: index of the input that is the constant `want` */
static int bin_const_side(ctx *c, const Onnx__NodeProto *n, double want, double tol) {
  if (n->n_input != 2) return -1;
  if (const_is(c, n->input[1], want, tol)) return 1;
  if (const_is(c, n->input[0], want, tol)) return 0;
  return -1;
}
static mf_tensor gelu_match(ctx *c) {
  const Onnx__NodeProto *n = c->node, *m1, *ad, *er, *dv;
  int k = bin_const_side(c, n, 0.5, 0);
  if (k < 0 || !(m1 = producer(c, n->input[1 - k], NULL)) || strcmp(m1->op_type, "Mul") || m1->n_input != 2) return -1;
  for (int side = 0; side < 2; side++) { /* Mul(x, add) or Mul(add, x) */
    ad = producer(c, m1->input[side], NULL);
    if (!ad || strcmp(ad->op_type, "Add")) continue;
    int ka = bin_const_side(c, ad, 1.0, 0);
    if (ka < 0 || !(er = producer(c, ad->input[1 - ka], NULL)) || strcmp(er->op_type, "Erf") || er->n_input != 1) continue;
    if (!(dv = producer(c, er->input[0], NULL))) continue;
    const char *x = m1->input[1 - side];
    bool div = !strcmp(dv->op_type, "Div") && dv->n_input == 2 && !strcmp(dv->input[0], x) &&
               const_is(c, dv->input[1], 1.4142135623730951, 1e-6);
    bool mul = !strcmp(dv->op_type, "Mul") && bin_const_side(c, dv, 0.7071067811865476, 1e-6) >= 0 &&
               !strcmp(dv->input[1 - bin_const_side(c, dv, 0.7071067811865476, 1e-6)], x);
    if (!div && !mul) continue;
    val *vx = val_find(c, x);
    if (!vx || vx->t < 0 || vx->pad) continue;
    return mf_gelu(c->g, vx->t);
  }
  return -1;
}

/* Readers of value `name`: graph nodes that take it as an input, and the graph's outputs. */
static int readers(ctx *c, const char *name) {
  const Onnx__GraphProto *gr = c->m->graph;
  int k = 0;
  for (size_t i = 0; i < gr->n_node; i++)
    for (size_t j = 0; j < gr->node[i]->n_input; j++) k += !strcmp(gr->node[i]->input[j], name);
  for (size_t i = 0; i < gr->n_output; i++) k += gr->output[i]->name && !strcmp(gr->output[i]->name, name);
  return k;
}
/* name's producer if it is Div(x, c) or Mul(x, c) / Mul(c, x) by a known scalar: *name becomes x, *scale is
 * multiplied by 1/c or c; else nothing changes */
static void unscale(ctx *c, const char **name, double *scale) {
  const Onnx__NodeProto *p = producer(c, *name, NULL);
  if (!p || p->n_input != 2 || (strcmp(p->op_type, "Div") && strcmp(p->op_type, "Mul"))) return;
  for (int side = p->op_type[0] == 'D' ? 1 : 0; side < 2; side++) {
    val *v = val_find(c, p->input[side]);
    if (!v || !v->has_c || v->c.n != 1 || !(v->c.v[0] > 0) || !isfinite(v->c.v[0])) continue;
    *scale *= p->op_type[0] == 'D' ? 1.0 / v->c.v[0] : v->c.v[0];
    *name = p->input[1 - side];
    return;
  }
}

/* Attention as torch exports it (nn.MultiheadAttention, F.scaled_dot_product_attention): at the last MatMul,
 * MatMul(Softmax(MatMul(q, kT) [x s]), v) over the last axis, with q, kT or the scores scaled by known scalars,
 * becomes one fused attention op (mf_attention, scores recomputed tile by tile in backward): backward keeps q, k
 * and v instead of the scaled q, kT, the probabilities [.., Nq, Nk] and v, and forward never holds the scores
 * and the probabilities whole (vit_b_16: 14.9 MB per layer kept, 29.8 MB less at the peak). Only when the scores
 * and the probabilities are read by nothing else and the shapes are the fused op's (v as k's). k is kT with its
 * last two axes swapped: when kT is itself a transpose, one transpose of its source. */
static mf_tensor attention_match(ctx *c) {
  const Onnx__NodeProto *n = c->node, *sm, *mm;
  if (n->n_input != 2 || !(sm = producer(c, n->input[0], NULL)) || strcmp(sm->op_type, "Softmax") || sm->n_input != 1) return -1;
  if (readers(c, n->input[0]) != 1 || readers(c, sm->input[0]) != 1) return -1;
  double scale = 1;
  const char *s_name = sm->input[0];
  unscale(c, &s_name, &scale);
  if (strcmp(s_name, sm->input[0]) && readers(c, s_name) != 1) return -1;
  if (!(mm = producer(c, s_name, NULL)) || strcmp(mm->op_type, "MatMul") || mm->n_input != 2) return -1;
  const char *qn = mm->input[0], *kn = mm->input[1];
  unscale(c, &qn, &scale);
  unscale(c, &kn, &scale);
  val *vq = val_find(c, qn), *vk = val_find(c, kn), *vv = val_find(c, n->input[1]), *vs = val_find(c, sm->input[0]);
  if (!vq || !vk || !vv || !vs || vq->t < 0 || vk->t < 0 || vv->t < 0 || vs->t < 0 || vq->pad || vk->pad || vv->pad) return -1;
  const mf_node *q = nd_of(c, vq->t), *kt = nd_of(c, vk->t), *v = nd_of(c, vv->t);
  int nd = q->ndim;
  int64_t ax = attr_i(sm, "axis", c->m->opset >= 13 ? -1 : 1); /* opsets 11-12: the last axis only as the axis itself */
  if (ax < 0) ax += nd_of(c, vs->t)->ndim;
  if (nd < 2 || kt->ndim != nd || v->ndim != nd || ax != nd - 1 || !mf_dtype_is_float(q->dtype) || kt->dtype != q->dtype ||
      v->dtype != q->dtype || !(scale > 0) || !isfinite(scale))
    return -1;
  for (int i = 0; i < nd - 2; i++)
    if (kt->ne[i] != q->ne[i] || v->ne[i] != q->ne[i]) return -1;
  /* kT [.., D, Nk]: k [.., Nk, D] must be v's shape, D q's */
  if (kt->ne[nd - 2] != q->ne[nd - 1] || kt->ne[nd - 1] != v->ne[nd - 2] || v->ne[nd - 1] != q->ne[nd - 1]) return -1;
  mf_graph *g = c->g;
  mf_tensor k;
  if (kt->op == MF_OP_PERMUTE) { /* kT = permute(src, p): k = permute(src, p with its last two entries swapped) */
    int perm[MF_MAX_DIMS];
    bool id = true;
    for (int i = 0; i < nd; i++) perm[i] = kt->ip[i];
    perm[nd - 2] = kt->ip[nd - 1];
    perm[nd - 1] = kt->ip[nd - 2];
    for (int i = 0; i < nd; i++) id &= perm[i] == i;
    k = id ? kt->src[0] : mf_permute(g, kt->src[0], perm);
  } else
    k = mf_transpose(g, vk->t, -2, -1);
  if (k < 0) return -1;
  return mf_attention(g, vq->t, k, vv->t, scale, 0);                         /* [.., Nq, D] */
}

/* Mul(x, Sigmoid(x)) in either order (torch exports SiLU / swish so) -> one SiLU op, whose backward reads x only:
 * the sigmoid's output is then not kept for backward (the unfused pair keeps x, sigmoid(x) and their product) */
static mf_tensor silu_match(ctx *c) {
  const Onnx__NodeProto *n = c->node, *sg;
  if (n->n_input != 2) return -1;
  for (int side = 0; side < 2; side++) {
    if (!(sg = producer(c, n->input[side], NULL)) || strcmp(sg->op_type, "Sigmoid") || sg->n_input != 1) continue;
    if (strcmp(sg->input[0], n->input[1 - side])) continue;
    val *vx = val_find(c, sg->input[0]);
    if (!vx || vx->t < 0 || vx->pad) continue;
    return mf_silu(c->g, vx->t);
  }
  return -1;
}

/* true when ReduceMean node r averages its input over the last axis only (rank nd), keeping it */
static bool mean_last(ctx *c, const Onnx__NodeProto *r, int nd) {
  if (!r || strcmp(r->op_type, "ReduceMean") || r->n_input < 1 || !attr_i(r, "keepdims", 1)) return false;
  int64_t ax[8];
  int na = attr_ints(r, "axes", ax, 8);
  (void)c;
  return na == 1 && (ax[0] == -1 || ax[0] == nd - 1);
}

/* torch's LayerNorm over the last axis as opset < 17 exports it:
 *   d = x - ReduceMean(x); y = d / Sqrt(ReduceMean(Pow(d, 2)) + eps) * gamma + beta
 * ending at this Add (either operand order) -> one group norm of [M, D] with one group, whose backward keeps
 * only x (the unfused chain keeps d and d / sqrt(var + eps), two tensors of x's size). Returns 1 with *out, 0 when
 * it does not match, -1 on an error (recorded) */
static int ln_match(ctx *c, mf_tensor *out) {
  const Onnx__NodeProto *n = c->node, *mu, *dv, *sq, *ad, *rv, *pw, *sb, *rm;
  if (n->n_input != 2) return 0;
  for (int side = 0; side < 2; side++) {
    val *vb = val_find(c, n->input[1 - side]);
    if (!is_weight(c, vb) || !(mu = producer(c, n->input[side], NULL)) || strcmp(mu->op_type, "Mul") || mu->n_input != 2) continue;
    for (int ms = 0; ms < 2; ms++) {
      val *vg = val_find(c, mu->input[1 - ms]);
      if (!is_weight(c, vg) || !(dv = producer(c, mu->input[ms], NULL)) || strcmp(dv->op_type, "Div") || dv->n_input != 2) continue;
      if (!(sq = producer(c, dv->input[1], NULL)) || strcmp(sq->op_type, "Sqrt") || sq->n_input != 1) continue;
      if (!(ad = producer(c, sq->input[0], NULL)) || strcmp(ad->op_type, "Add") || ad->n_input != 2) continue;
      int ke = -1;
      for (int k = 0; k < 2 && ke < 0; k++) {
        val *ve = val_find(c, ad->input[k]);
        if (known(ve) && !is_weight(c, ve)) ke = k;
      }
      if (ke < 0 || !(rv = producer(c, ad->input[1 - ke], NULL))) continue;
      cst *ec = const_of(c, val_find(c, ad->input[ke]), "epsilon");
      if (!ec) return -1;
      if (ec->n != 1 || !(ec->v[0] >= 0)) continue;
      double eps = ec->v[0];
      if (!(sb = producer(c, dv->input[0], NULL)) || strcmp(sb->op_type, "Sub") || sb->n_input != 2) continue;
      if (!(rm = producer(c, sb->input[1], NULL)) || strcmp(rm->op_type, "ReduceMean") || strcmp(rm->input[0], sb->input[0])) continue;
      if (!(pw = producer(c, rv->input[0], NULL)) || strcmp(pw->op_type, "Pow") || pw->n_input != 2 ||
          strcmp(pw->input[0], dv->input[0]) || !const_is(c, pw->input[1], 2.0, 0))
        continue;
      val *vx = val_find(c, sb->input[0]);
      if (!vx || vx->t < 0 || vx->pad) continue;
      const mf_node *nx = nd_of(c, vx->t);
      int nd = nx->ndim;
      if (nd < 2 || !mean_last(c, rm, nd) || !mean_last(c, rv, nd)) continue;
      int64_t D = nx->ne[nd - 1], M = mf_node_numel(nx) / D;
      mf_tensor gm = tensor_of(c, vg, "gamma"), bt = gm >= 0 ? tensor_of(c, vb, "beta") : -1;
      if (bt < 0) return -1;
      if (nd_of(c, gm)->ndim != 1 || nd_of(c, gm)->ne[0] != D || nd_of(c, bt)->ndim != 1 || nd_of(c, bt)->ne[0] != D) continue;
      int64_t m2[2] = {M, D};
      mf_tensor y = mf_groupnorm(c->g, mf_reshape(c->g, vx->t, 2, m2), gm, bt, 1, eps); /* [M, D] */
      *out = y < 0 ? -1 : mf_reshape(c->g, y, nd, nx->ne); /* a graph error is the graph's (set_out reports it) */
      return 1;
    }
  }
  return 0;
}

/* strides, dilations and pads [top, left, bottom, right] of a Conv, ConvTranspose or pool over 2-D spatial dims (H
 * then W); `transposed`: auto_pad SAME sizes the output as in * stride (ConvTranspose) instead of in / stride */
static int geom2d(ctx *c, const mf_node *x, int64_t kh, int64_t kw, bool transposed, int64_t st[2], int64_t dl[2], int64_t p[4]) {
  const Onnx__NodeProto *n = c->node;
  int64_t v[8];
  int k = attr_ints(n, "strides", v, 8);
  if (k > 2) return UNSUP("strides of %d values (memfit: 2-D)", k);
  st[0] = k >= 1 ? v[0] : 1, st[1] = k >= 2 ? v[1] : st[0];
  k = attr_ints(n, "dilations", v, 8);
  if (k > 2) return UNSUP("dilations of %d values (memfit: 2-D)", k);
  dl[0] = k >= 1 ? v[0] : 1, dl[1] = k >= 2 ? v[1] : dl[0];
  for (int i = 0; i < 2; i++)
    if (st[i] < 1 || dl[i] < 1 || st[i] > 1 << 15 || dl[i] > 1 << 15)
      return node_fail(c, "stride %lld or dilation %lld", (long long)st[i], (long long)dl[i]);
  char ap[32];
  const char *autopad = attr_s(n, "auto_pad", ap, sizeof ap);
  p[0] = p[1] = p[2] = p[3] = 0;
  if (autopad && (!strcmp(autopad, "SAME_UPPER") || !strcmp(autopad, "SAME_LOWER"))) {
    int64_t ins[2] = {x->ne[2], x->ne[3]}, ks[2] = {kh, kw};
    for (int i = 0; i < 2; i++) {
      int64_t ek = dl[i] * (ks[i] - 1) + 1, tot;
      if (transposed) tot = (ins[i] - 1) * st[i] + ek - ins[i] * st[i]; /* output in * stride */
      else tot = ((ins[i] + st[i] - 1) / st[i] - 1) * st[i] + ek - ins[i];
      if (tot < 0) tot = 0;
      bool upper = autopad[5] == 'U';
      p[i] = upper ? tot / 2 : tot - tot / 2;
      p[i + 2] = tot - p[i];
    }
  } else if (!autopad || !strcmp(autopad, "NOTSET")) {
    k = attr_ints(n, "pads", v, 8);
    if (k > 4 || (k > 0 && k != 4)) return UNSUP("pads of %d values", k);
    for (int i = 0; i < k; i++) p[i] = v[i];
  } else if (strcmp(autopad, "VALID")) return UNSUP("auto_pad %s", autopad);
  for (int i = 0; i < 4; i++)
    if (p[i] < 0 || p[i] > 1 << 15) return UNSUP("padding %lld", (long long)p[i]);
  return 0;
}
static int spatial_cfg(ctx *c, const mf_node *x, int64_t kh, int64_t kw, bool transposed, mf_conv_cfg *cf) {
  int64_t st[2], dl[2], p[4];
  if (geom2d(c, x, kh, kw, transposed, st, dl, p) < 0) return -1;
  cf->stride = (int)st[0];
  cf->dil = (int)dl[0];
  cf->sw = (int)st[1];
  cf->dw = (int)dl[1];
  cf->groups = 1;
  cf->pt = (int)p[0];
  cf->pl = (int)p[1];
  cf->pb = (int)p[2];
  cf->pr = (int)p[3];
  return 0;
}
static mf_tensor padded_input(ctx *c, int *extra) {
  val *v = in_val(c, 0);
  *extra = 0;
  if (v && v->pad && v->t >= 0) { *extra = v->pad; return v->t; }
  return in_tensor(c, 0);
}

static mf_tensor need4d(ctx *c, mf_tensor x, const char *what) {
  if (x < 0) return -1;
  if (nd_of(c, x)->ndim != 4) {
    char s[64];
    mf_shape_str(nd_of(c, x), s, sizeof s);
    return UNSUP("%s %s is not 4-D [N,C,H,W] (memfit: 2-D convolutions and pools)", what, s);
  }
  return x;
}

static mf_tensor reshape_to(ctx *c, mf_tensor x, int nd, const int64_t *dims) {
  int64_t ne[MF_MAX_DIMS];
  int k = dims_to_mf(c, nd, dims, ne, "the result");
  if (k < 0) return -1;
  const mf_node *nx = nd_of(c, x);
  if (nx->ndim == k && !memcmp(nx->ne, ne, (size_t)k * sizeof *ne)) return x;
  return mf_reshape(c->g, x, k, ne);
}

static int node_build(ctx *c) {
  const Onnx__NodeProto *n = c->node;
  const char *op = n->op_type;
  mf_graph *g = c->g;
  const char *why = onnx_op_unsupported(n);
  if (why) return node_fail(c, "unsupported op: %s", why);
  bool done;
  if (fold(c, op, &done) < 0) return -1;
  if (done) return 0;

  if (!strcmp(op, "Constant")) {
    cst r = {0};
    const Onnx__AttributeProto *a;
    if ((a = onnx_attr(n, "value")) && a->t) {
      if (onnx_tensor_check(c->m, a->t, "constant", c->err, c->errlen) < 0) return -1;
      int64_t dims[ONNX_MAX_RANK];
      for (size_t i = 0; i < a->t->n_dims; i++) dims[i] = a->t->dims[i];
      if (cst_alloc(c, &r, a->t->data_type, (int)a->t->n_dims, dims) < 0) return -1;
      if (onnx_tensor_read(c->m, a->t, r.v, r.n, c->err, c->errlen) < 0) { cst_free(&r); return -1; }
    } else if ((a = onnx_attr(n, "value_float")) || (a = onnx_attr(n, "value_int"))) {
      bool f = !strcmp(a->name, "value_float");
      if (cst_alloc(c, &r, f ? ONNX_FLOAT : ONNX_INT64, 0, NULL) < 0) return -1;
      r.v[0] = f ? a->f : (double)a->i;
    } else if ((a = onnx_attr(n, "value_floats")) || (a = onnx_attr(n, "value_ints"))) {
      bool f = !strcmp(a->name, "value_floats");
      int64_t d[1] = {(int64_t)(f ? a->n_floats : a->n_ints)};
      if (cst_alloc(c, &r, f ? ONNX_FLOAT : ONNX_INT64, 1, d) < 0) return -1;
      for (int64_t i = 0; i < d[0]; i++) r.v[i] = f ? a->floats[i] : (double)a->ints[i];
    } else return UNSUP("a Constant without a numeric value");
    return set_out_const(c, 0, &r);
  }
  if (!strcmp(op, "Shape")) {
    val *v = in_val(c, 0);
    int nd;
    int64_t dims[ONNX_MAX_RANK];
    if (v && v->t >= 0) {
      nd = nd_of(c, v->t)->ndim;
      memcpy(dims, nd_of(c, v->t)->ne, (size_t)nd * sizeof *dims);
    } else {
      cst *k = in_const(c, 0, "data");
      if (!k) return -1;
      nd = k->ndim;
      memcpy(dims, k->dims, (size_t)nd * sizeof *dims);
    }
    int64_t st = attr_i(n, "start", 0), en = attr_i(n, "end", nd);
    if (st < 0) st += nd;
    if (en < 0) en += nd;
    st = st < 0 ? 0 : st > nd ? nd : st;
    en = en < st ? st : en > nd ? nd : en;
    cst r = {0};
    int64_t d1[1] = {en - st};
    if (cst_alloc(c, &r, ONNX_INT64, 1, d1) < 0) return -1;
    for (int64_t i = st; i < en; i++) r.v[i - st] = (double)dims[i];
    return set_out_const(c, 0, &r);
  }
  if (!strcmp(op, "ConstantOfShape")) {
    cst *s = in_const(c, 0, "shape");
    if (!s) return -1;
    int64_t dims[ONNX_MAX_RANK];
    if (s->n > ONNX_MAX_RANK) return node_fail(c, "too many dims");
    for (int64_t i = 0; i < s->n; i++) dims[i] = to_i64(s->v[i]);
    double fill = 0;
    int et = ONNX_FLOAT;
    const Onnx__AttributeProto *a = onnx_attr(n, "value");
    if (a && a->t) {
      double tmp[1];
      if (onnx_tensor_numel(a->t) != 1 || onnx_tensor_read(c->m, a->t, tmp, 1, c->err, c->errlen) < 0)
        return node_fail(c, "value must be one number");
      fill = tmp[0];
      et = a->t->data_type;
    }
    cst r = {0};
    if (cst_alloc(c, &r, et, (int)s->n, dims) < 0) return -1;
    for (int64_t i = 0; i < r.n; i++) r.v[i] = fill;
    return set_out_const(c, 0, &r);
  }

  /* from here on the outputs are graph tensors */
  if (!strcmp(op, "Dropout")) {
    /* opsets >= 12: training_mode (input 2, a constant; absent: false) decides; opset 11 (Dropout-10) has none, and
     * drops in training as PyTorch's train mode exported it. Training: mf_dropout, a fresh mask each training step
     * (the identity in evaluation); otherwise the identity. */
    if (out_used(c, 1)) return UNSUP("Dropout's mask output");
    double ratio = attr_f(n, "ratio", 0.5);
    if (has_in(c, 1)) { cst *k = in_const(c, 1, "ratio"); if (!k) return -1; ratio = k->n ? k->v[0] : ratio; }
    bool train = c->m->opset < 12;
    if (has_in(c, 2)) {
      cst *k = in_const(c, 2, "training_mode");
      if (!k) return -1;
      train = k->n && k->v[0] != 0;
    }
    if (!(ratio >= 0 && ratio < 1)) return node_fail(c, "ratio %g is outside [0, 1)", ratio);
    mf_tensor x = in_tensor(c, 0);
    if (x < 0) return -1;
    return set_out(c, 0, train && ratio > 0 ? mf_dropout(g, x, ratio) : x);
  }
  if (!strcmp(op, "Identity")) {
    val *v = in_val(c, 0);
    if (v && v->t < 0 && v->init >= 0 && !v->has_c && n->n_output && n->output[0][0]) { /* an initializer under another name */
      val *o = val_get(c, n->output[0]);
      if (!o) return node_fail(c, "too many values");
      if (o->has_c) cst_free(&o->c);
      o->has_c = 0;
      o->t = -1;
      o->pad = 0;
      o->init = v->init;
      o->alias = 1;
      return 0;
    }
    return set_out(c, 0, in_tensor(c, 0));
  }
  if (!strcmp(op, "Cast")) {
    mf_tensor x = in_tensor(c, 0);
    if (x < 0) return -1;
    int to = (int)attr_i(n, "to", 0);
    if (!et_is_float(to) || !mf_dtype_is_float(nd_of(c, x)->dtype)) return UNSUP("a Cast to %s of a graph tensor", onnx_elem_name(to));
    return set_out(c, 0, x); /* storage precision is the graph's */
  }
  if (!strcmp(op, "Add")) {
    mf_tensor ln = -1;
    int k = ln_match(c, &ln);
    if (k < 0) return -1;
    return set_out(c, 0, k ? ln : binary_op(c, MF_BIN_ADD, 0, 1));
  }
  if (!strcmp(op, "Sub")) return set_out(c, 0, binary_op(c, MF_BIN_SUB, 0, 1));
  if (!strcmp(op, "Mul")) {
    mf_tensor ge = gelu_match(c);
    if (ge < 0) ge = silu_match(c);
    return set_out(c, 0, ge >= 0 ? ge : binary_op(c, MF_BIN_MUL, 0, 1));
  }
  if (!strcmp(op, "Div")) return set_out(c, 0, binary_op(c, MF_BIN_DIV, 0, 1));
  if (!strcmp(op, "Sum") || !strcmp(op, "Mean")) {
    mf_tensor acc = in_tensor(c, 0);
    for (size_t i = 1; acc >= 0 && i < n->n_input; i++) {
      mf_tensor b = in_tensor(c, (int)i);
      if (b < 0) return -1;
      if (!fits(nd_of(c, acc), nd_of(c, b))) return UNSUP("%s of inputs that need broadcasting", op);
      acc = mf_add(g, acc, b);
    }
    if (acc >= 0 && op[0] == 'M' && n->n_input > 1) acc = mf_mul_scalar(g, acc, 1.0 / (double)n->n_input);
    return set_out(c, 0, acc);
  }
  if (!strcmp(op, "Relu")) return set_out(c, 0, mf_relu(g, in_tensor(c, 0)));
  if (!strcmp(op, "LeakyRelu")) return set_out(c, 0, mf_leaky_relu(g, in_tensor(c, 0), attr_f(n, "alpha", 0.01)));
  if (!strcmp(op, "Sigmoid")) return set_out(c, 0, mf_sigmoid(g, in_tensor(c, 0)));
  if (!strcmp(op, "Tanh")) return set_out(c, 0, mf_tanh(g, in_tensor(c, 0)));
  if (!strcmp(op, "Exp")) return set_out(c, 0, mf_exp(g, in_tensor(c, 0)));
  if (!strcmp(op, "Log")) return set_out(c, 0, mf_log(g, in_tensor(c, 0)));
  if (!strcmp(op, "Neg")) return set_out(c, 0, mf_mul_scalar(g, in_tensor(c, 0), -1));
  if (!strcmp(op, "Softplus")) return set_out(c, 0, mf_log(g, mf_add_scalar(g, mf_exp(g, in_tensor(c, 0)), 1)));
  if (!strcmp(op, "HardSigmoid") || !strcmp(op, "HardSwish")) {
    mf_tensor x = in_tensor(c, 0);
    if (x < 0) return -1;
    bool sw = op[4] == 'S' && op[5] == 'w';
    double al = sw ? 1.0 / 6 : attr_f(n, "alpha", 0.2), be = sw ? 0.5 : attr_f(n, "beta", 0.5);
    mf_tensor h = mf_clamp(g, mf_add_scalar(g, mf_mul_scalar(g, x, al), be), 0, 1);
    return set_out(c, 0, sw ? mf_mul(g, x, h) : h);
  }
  if (!strcmp(op, "Clip")) {
    mf_tensor x = in_tensor(c, 0);
    if (x < 0) return -1;
    double lo = attr_f(n, "min", -INFINITY), hi = attr_f(n, "max", INFINITY);
    if (has_in(c, 1)) { cst *k = in_const(c, 1, "min"); if (!k || k->n != 1) return k ? node_fail(c, "min is not one number") : -1; lo = k->v[0]; }
    if (has_in(c, 2)) { cst *k = in_const(c, 2, "max"); if (!k || k->n != 1) return k ? node_fail(c, "max is not one number") : -1; hi = k->v[0]; }
    if (lo == 0 && isinf(hi) && hi > 0) return set_out(c, 0, mf_relu(g, x));
    return set_out(c, 0, mf_clamp(g, x, lo, hi));
  }
  if (!strcmp(op, "Pow")) {
    /* a constant scalar exponent: 1, 2, 3 as products (as before), any other p as mf_pow_scalar; a tensor exponent
     * (constant, weight or computed): mf_pow, the gradient reaching it too. C's pow: NaN for a negative base with a
     * non-integer exponent, as ONNX and NumPy */
    val *ve = in_val(c, 1);
    if (!ve) return node_fail(c, "exponent (input 1) is missing or not produced before this node");
    if (known(ve) && ve->t < 0 && !is_weight(c, ve)) {
      cst *e = const_of(c, ve, "exponent");
      if (!e) return -1;
      if (e->n == 1) {
        mf_tensor x = in_tensor(c, 0);
        if (x < 0) return -1;
        if (e->v[0] == 1) return set_out(c, 0, x);
        if (e->v[0] == 2) return set_out(c, 0, mf_mul(g, x, x));
        if (e->v[0] == 3) return set_out(c, 0, mf_mul(g, mf_mul(g, x, x), x));
        return set_out(c, 0, mf_pow_scalar(g, x, e->v[0]));
      }
    }
    return set_out(c, 0, binary_op(c, MF_BIN_POW, 0, 1));
  }
  if (!strcmp(op, "Pad")) {
    char mb[32];
    const char *mode = attr_s(n, "mode", mb, sizeof mb);
    int pmode = !mode || !strcmp(mode, "constant") ? MF_PAD_CONSTANT : !strcmp(mode, "reflect") ? MF_PAD_REFLECT
                : !strcmp(mode, "edge") ? MF_PAD_EDGE : -1;
    if (pmode < 0) return UNSUP("Pad mode '%s' (memfit: constant, reflect, edge)", mode);
    double value = attr_f(n, "value", 0);
    mf_tensor x = need4d(c, in_tensor(c, 0), "input");
    if (x < 0) return -1;
    int64_t pd[8];
    int np = attr_ints(n, "pads", pd, 8);
    if (np < 0) {
      cst *k = in_const(c, 1, "pads");
      if (!k) return -1;
      if (k->n > 8) return node_fail(c, "pads of %lld values", (long long)k->n);
      np = (int)k->n;
      for (int i = 0; i < np; i++) pd[i] = to_i64(k->v[i]);
    }
    if (has_in(c, 2)) {
      cst *k = in_const(c, 2, "constant_value");
      if (!k) return -1;
      if (k->n > 1) return node_fail(c, "constant_value of %lld values", (long long)k->n);
      if (k->n) value = k->v[0];
    }
    if (np != 8 || pd[0] || pd[1] || pd[4] || pd[5])
      return UNSUP("Pad of other axes than H and W of a 4-D tensor");
    for (int i = 0; i < 8; i++)
      if (pd[i] < 0 || pd[i] > 1 << 20) return UNSUP("Pad of %lld (memfit: pads >= 0)", (long long)pd[i]);
    bool fold = pmode == MF_PAD_CONSTANT && value == 0 && pd[2] == pd[3] && pd[2] == pd[6] && pd[2] == pd[7];
    if (!fold) return set_out(c, 0, mf_pad2d(g, x, pmode, (int)pd[2], (int)pd[3], (int)pd[6], (int)pd[7], value));
    if ((size_t)0 < n->n_output && n->output[0][0]) {
      val *v = val_get(c, n->output[0]);
      if (!v) return node_fail(c, "too many values");
      if (v->has_c) cst_free(&v->c);
      v->has_c = 0;
      v->init = -1;
      v->t = x;
      v->pad = (int)pd[2];
    }
    return 0;
  }
  if (!strcmp(op, "Conv")) {
    int extra;
    mf_tensor x = need4d(c, padded_input(c, &extra), "input");
    if (x < 0) return -1;
    mf_tensor w = in_tensor(c, 1);
    if (w < 0) return -1;
    if (nd_of(c, w)->ndim != 4) return UNSUP("a weight that is not 4-D (memfit: 2-D convolutions)");
    mf_tensor b = has_in(c, 2) ? in_tensor(c, 2) : -1;
    if (has_in(c, 2) && b < 0) return -1;
    mf_conv_cfg cf;
    if (spatial_cfg(c, nd_of(c, x), nd_of(c, w)->ne[2], nd_of(c, w)->ne[3], false, &cf) < 0) return -1;
    cf.pt += extra, cf.pl += extra, cf.pb += extra, cf.pr += extra;
    int64_t grp = attr_i(n, "group", 1);
    if (grp < 1 || grp > 1 << 20) return node_fail(c, "group %lld", (long long)grp);
    cf.groups = (int)grp;
    return set_out(c, 0, mf_conv2d_cfg(g, x, w, b, &cf));
  }
  if (!strcmp(op, "ConvTranspose")) {
    mf_tensor x = need4d(c, in_tensor(c, 0), "input");
    if (x < 0) return -1;
    mf_tensor w = in_tensor(c, 1);
    if (w < 0) return -1;
    if (nd_of(c, w)->ndim != 4) return UNSUP("a weight that is not 4-D (memfit: 2-D convolutions)");
    mf_tensor b = has_in(c, 2) ? in_tensor(c, 2) : -1;
    if (has_in(c, 2) && b < 0) return -1;
    const mf_node *nx = nd_of(c, x), *nw = nd_of(c, w);
    mf_conv_cfg cf;
    if (spatial_cfg(c, nx, nw->ne[2], nw->ne[3], true, &cf) < 0) return -1;
    int64_t grp = attr_i(n, "group", 1);
    if (grp < 1 || grp > 1 << 20) return node_fail(c, "group %lld", (long long)grp);
    cf.groups = (int)grp;
    int64_t op2[8] = {0, 0}, os[8];
    int k = attr_ints(n, "output_padding", op2, 8);
    if (k > 2) return UNSUP("output_padding of %d values", k);
    if (k == 1) op2[1] = op2[0];
    int ko = attr_ints(n, "output_shape", os, 8);
    if (ko > 0) { /* explicit output size: the total padding follows; SAME_UPPER-style split unless auto_pad says LOWER */
      if (ko != 2 && ko != 4) return UNSUP("output_shape of %d values", ko);
      int64_t want[2] = {os[ko - 2], os[ko - 1]}, ins[2] = {nx->ne[2], nx->ne[3]}, ks[2] = {nw->ne[2], nw->ne[3]};
      char ap[32];
      const char *autopad = attr_s(n, "auto_pad", ap, sizeof ap);
      bool lower = autopad && !strcmp(autopad, "SAME_LOWER");
      int pp[4];
      for (int i = 0; i < 2; i++) {
        int64_t si = i ? mf_conv_sw(&cf) : cf.stride, di = i ? mf_conv_dw(&cf) : cf.dil;
        int64_t tot = si * (ins[i] - 1) + op2[i] + ((ks[i] - 1) * di + 1) - want[i];
        if (tot < 0) { op2[i] -= tot; tot = 0; } /* a larger output than the kernel reaches: output padding */
        if (tot > 1 << 20) return node_fail(c, "output_shape %lld is too small", (long long)want[i]);
        pp[i] = (int)(lower ? tot - tot / 2 : tot / 2);
        pp[i + 2] = (int)(tot - pp[i]);
      }
      cf.pt = pp[0], cf.pl = pp[1], cf.pb = pp[2], cf.pr = pp[3];
    }
    if (op2[0] < 0 || op2[1] < 0 || op2[0] > 1 << 20 || op2[1] > 1 << 20) return node_fail(c, "output_padding");
    mf_tensor y = mf_conv_transpose2d_cfg(g, x, w, &cf, (int)op2[0], (int)op2[1]);
    if (y >= 0 && b >= 0) {
      const mf_node *nb = nd_of(c, b);
      if (nb->ndim != 1 || nb->ne[0] != nd_of(c, y)->ne[1]) return node_fail(c, "bias B does not match the output channels");
      int64_t bs[3] = {nb->ne[0], 1, 1};
      y = mf_add(g, y, mf_reshape(g, b, 3, bs));
    }
    return set_out(c, 0, y);
  }
  if (!strcmp(op, "Gemm") || !strcmp(op, "MatMul")) {
    if (op[0] == 'M') {
      mf_tensor at = attention_match(c);
      if (at >= 0) return set_out(c, 0, at);
    }
    mf_tensor a = in_tensor(c, 0);
    if (a < 0) return -1;
    mf_tensor b = in_tensor(c, 1);
    if (b < 0) return -1;
    bool gemm = op[0] == 'G';
    int ta = gemm ? (int)attr_i(n, "transA", 0) : 0, tb = gemm ? (int)attr_i(n, "transB", 0) : 0;
    if (nd_of(c, a)->ndim < 2 || nd_of(c, b)->ndim < 2) return UNSUP("a 1-D operand of %s", op);
    a = fold_transpose(c, a, &ta);
    b = fold_transpose(c, b, &tb);
    mf_tensor y = mf_matmul(g, a, b, ta, tb);
    if (gemm) {
      double al = attr_f(n, "alpha", 1), be = attr_f(n, "beta", 1);
      if (y >= 0 && al != 1) y = mf_mul_scalar(g, y, al);
      if (y >= 0 && has_in(c, 2)) {
        val *vc = in_val(c, 2);
        if (known(vc) && vc->t < 0 && !is_weight(c, vc)) {
          cst *k = const_of(c, vc, "C");
          if (!k) return -1;
          if (k->n == 1) return set_out(c, 0, mf_add_scalar(g, y, be * k->v[0]));
        }
        mf_tensor bias = in_tensor(c, 2);
        if (bias < 0) return -1;
        if (be != 1) bias = mf_mul_scalar(g, bias, be);
        if (bias >= 0 && !fits(nd_of(c, y), nd_of(c, bias))) return UNSUP("a bias C that needs more than broadcasting");
        y = mf_add(g, y, bias);
      }
    }
    return set_out(c, 0, y);
  }
  if (!strcmp(op, "BatchNormalization") || !strcmp(op, "InstanceNormalization")) {
    mf_tensor x = in_tensor(c, 0);
    if (x < 0) return -1;
    mf_tensor sc = in_tensor(c, 1);
    if (sc < 0) return -1;
    mf_tensor bi = in_tensor(c, 2);
    if (bi < 0) return -1;
    double eps = attr_f(n, "epsilon", 1e-5);
    if (op[0] == 'I') return set_out(c, 0, mf_groupnorm(g, x, sc, bi, (int)nd_of(c, x)->ne[1], eps));
    if (out_used(c, 1) || out_used(c, 2)) return UNSUP("BatchNormalization's running statistics outputs");
    /* the running statistics: buffers of their own, initialised from the initializers (torch shares one
     * initializer between equal tensors, e.g. running_var and weight of ones, through Identity nodes) */
    mf_tensor rs[2];
    for (int k = 0; k < 2; k++) {
      val *v = in_val(c, 3 + k);
      if (!v || v->init < 0 || v->t >= 0) return UNSUP("running %s that is not an initializer", k ? "variance" : "mean");
      const Onnx__TensorProto *t = c->m->graph->initializer[v->init];
      int64_t ne[1] = {onnx_tensor_numel(t)};
      char nm[MF_NAME_LEN];
      snprintf(nm, sizeof nm, "%s%s", c->prefix, n->input[3 + k]);
      for (int id = 0, dup = 1; id < g->n; id++) /* a name already taken: "name#2" */
        if (g->nodes[id].op == MF_OP_BUFFER && !strcmp(g->nodes[id].name, nm)) {
          snprintf(nm, sizeof nm, "%.20s%.30s#%d", c->prefix, n->input[3 + k], ++dup);
          id = -1;
        }
      rs[k] = mf_buffer(g, nm, 1, ne, MF_INIT_ZERO, 0);
      if (rs[k] < 0 || bind_add(c, rs[k], v->init, NULL) < 0) return rs[k] < 0 ? node_fail(c, "%s", mf_graph_error(g)) : -1;
      if (v->alias && bind_alias(c, v->name) < 0) return -1;
    }
    mf_tensor rm = rs[0], rv = rs[1];
    double mom = attr_f(n, "momentum", 0.9);
    return set_out(c, 0, mf_batchnorm(g, x, sc, bi, rm, rv, !c->bn_eval, 1 - mom, eps));
  }
  if (!strcmp(op, "MaxPool") || !strcmp(op, "AveragePool")) {
    int extra = 0;
    mf_tensor x = need4d(c, op[0] == 'A' ? padded_input(c, &extra) : in_tensor(c, 0), "input");
    if (x < 0) return -1;
    int64_t ks[4];
    int k = attr_ints(n, "kernel_shape", ks, 4);
    if (k != 2) return UNSUP("kernel_shape of %d values (memfit: 2-D pools)", k);
    if (out_used(c, 1)) return UNSUP("MaxPool's indices output");
    if (ks[0] < 1 || ks[1] < 1 || ks[0] > 1 << 15 || ks[1] > 1 << 15) return UNSUP("kernel %lldx%lld", (long long)ks[0], (long long)ks[1]);
    if (attr_i(n, "storage_order", 0)) return UNSUP("storage_order 1");
    int64_t st[2], dl[2], p[4];
    if (geom2d(c, nd_of(c, x), ks[0], ks[1], false, st, dl, p) < 0) return -1;
    mf_pool_cfg pc = {(int)ks[0], (int)ks[1], (int)st[0], (int)st[1], (int)dl[0], (int)dl[1], (int)p[0], (int)p[1], (int)p[2],
                      (int)p[3], 0, attr_i(n, "ceil_mode", 0) != 0};
    if (op[0] == 'A') {
      pc.exclude_pad = !attr_i(n, "count_include_pad", 0);
      /* a Pad before the pool (torch's count_include_pad=True export) folded in: its zeros are pixels, so they count */
      if (extra) {
        if (pc.exclude_pad && (pc.pt || pc.pl || pc.pb || pc.pr))
          return UNSUP("AveragePool with count_include_pad 0 and pads after a Pad it would fold in");
        pc.exclude_pad = 0;
        pc.pt += extra, pc.pl += extra, pc.pb += extra, pc.pr += extra;
      }
    }
    return set_out(c, 0, mf_pool2d_cfg(g, op[0] == 'A' ? MF_POOL_AVG : MF_POOL_MAX, x, &pc));
  }
  if (!strcmp(op, "GlobalAveragePool")) {
    mf_tensor x = need4d(c, in_tensor(c, 0), "input");
    if (x < 0) return -1;
    int64_t d[4] = {nd_of(c, x)->ne[0], nd_of(c, x)->ne[1], 1, 1};
    return set_out(c, 0, mf_reshape(g, mf_global_avgpool(g, x), 4, d));
  }
  if (!strcmp(op, "Flatten") || !strcmp(op, "Reshape") || !strcmp(op, "Squeeze") || !strcmp(op, "Unsqueeze")) {
    mf_tensor x = in_tensor(c, 0);
    if (x < 0) return -1;
    const mf_node *nx = nd_of(c, x);
    int ond;
    int64_t od[ONNX_MAX_RANK];
    if (op[0] == 'F') {
      int64_t ax = attr_i(n, "axis", 1), p = 1, q = 1;
      if (ax < 0) ax += nx->ndim;
      if (ax < 0 || ax > nx->ndim) return node_fail(c, "axis out of range");
      for (int i = 0; i < nx->ndim; i++) *(i < ax ? &p : &q) *= nx->ne[i];
      ond = 2; od[0] = p; od[1] = q;
    } else if (op[0] == 'R') {
      cst *s = in_const(c, 1, "shape");
      if (!s || reshape_dims(c, nx->ndim, nx->ne, s, (int)attr_i(n, "allowzero", 0), &ond, od) < 0) return -1;
    } else {
      int64_t axes[ONNX_MAX_RANK];
      int na;
      if (get_axes(c, 1, axes, &na) < 0) return -1;
      if (squeeze_dims(c, op[0] == 'U', nx->ndim, nx->ne, axes, na, &ond, od) < 0) return -1;
    }
    return set_out(c, 0, reshape_to(c, x, ond, od));
  }
  if (!strcmp(op, "Transpose")) {
    mf_tensor x = in_tensor(c, 0);
    if (x < 0) return -1;
    int nd = nd_of(c, x)->ndim;
    int64_t p[8];
    int k = attr_ints(n, "perm", p, 8);
    int perm[MF_MAX_DIMS];
    if (k >= 0 && k != nd) return node_fail(c, "perm of %d values for %d dims", k, nd);
    for (int i = 0; i < nd; i++) {
      perm[i] = k >= 0 ? (int)p[i] : nd - 1 - i;
      if (perm[i] < 0 || perm[i] >= nd) return node_fail(c, "perm names axis %d", perm[i]);
    }
    bool id = true;
    for (int i = 0; i < nd; i++) id &= perm[i] == i;
    return set_out(c, 0, id ? x : mf_permute(g, x, perm));
  }
  if (!strcmp(op, "Concat")) {
    if (n->n_input > 64) return UNSUP("Concat of more than 64 inputs");
    mf_tensor xs[64];
    int k = 0;
    for (size_t i = 0; i < n->n_input; i++) {
      if (!n->input[i][0]) continue;
      xs[k] = in_tensor(c, (int)i);
      if (xs[k] < 0) return -1;
      k++;
    }
    int64_t ax = 0;
    if (norm_axis(c, attr_i(n, "axis", 0), nd_of(c, xs[0])->ndim, &ax) < 0) return -1;
    return set_out(c, 0, k == 1 ? xs[0] : mf_concat(g, k, xs, (int)ax));
  }
  if (!strcmp(op, "Split")) {
    mf_tensor x = in_tensor(c, 0);
    if (x < 0) return -1;
    const mf_node *nx = nd_of(c, x);
    int64_t ax = 0;
    if (norm_axis(c, attr_i(n, "axis", 0), nx->ndim, &ax) < 0) return -1;
    int64_t parts[64];
    int np = attr_ints(n, "split", parts, 64);
    if (np < 0 && has_in(c, 1)) {
      cst *s = in_const(c, 1, "split");
      if (!s) return -1;
      if (s->n > 64) return UNSUP("Split into more than 64 parts");
      np = (int)s->n;
      for (int i = 0; i < np; i++) parts[i] = to_i64(s->v[i]);
    }
    if (np > 64) return UNSUP("Split into more than 64 parts");
    int64_t dim = nx->ne[ax];
    if (np < 0) {
      np = (int)n->n_output;
      if (np < 1 || np > 64) return node_fail(c, "%d outputs", np);
      int64_t each = (dim + np - 1) / np;
      for (int i = 0; i < np; i++) parts[i] = i < np - 1 ? each : dim - each * (np - 1);
    }
    int64_t off = 0;
    for (int i = 0; i < np; i++) {
      if (parts[i] < 0 || off + parts[i] > dim) return node_fail(c, "split sizes do not add up to %lld", (long long)dim);
      if (set_out(c, i, mf_slice(g, x, (int)ax, off, off + parts[i])) < 0) return -1;
      off += parts[i];
    }
    return 0;
  }
  if (!strcmp(op, "Slice")) {
    mf_tensor x = in_tensor(c, 0);
    if (x < 0) return -1;
    const mf_node *nx = nd_of(c, x);
    int nd = nx->ndim;
    int64_t st[ONNX_MAX_RANK], en[ONNX_MAX_RANK], sp[ONNX_MAX_RANK], dims[ONNX_MAX_RANK];
    memcpy(dims, nx->ne, (size_t)nd * sizeof *dims);
    if (slice_params(c, nd, st, en, sp, dims) < 0) return -1;
    mf_tensor y = x;
    for (int i = 0; i < nd && y >= 0; i++) {
      if (sp[i] != 1) return UNSUP("Slice of a graph tensor with step %lld (memfit slices with step 1)", (long long)sp[i]);
      if (st[i] == 0 && en[i] == dims[i]) continue;
      if (en[i] <= st[i]) return UNSUP("an empty Slice");
      y = mf_slice(g, y, i, st[i], en[i]);
    }
    return set_out(c, 0, y);
  }
  if (!strcmp(op, "Gather")) {
    val *vd = in_val(c, 0), *vi = in_val(c, 1);
    if (!vd || !vi) return node_fail(c, "an input is missing");
    int64_t ax0 = attr_i(n, "axis", 0);
    if (known(vi) && vi->t < 0) { /* known indices: a slice */
      mf_tensor x = tensor_of(c, vd, "data");
      if (x < 0) return -1;
      cst *ix = const_of(c, vi, "indices");
      if (!ix) return -1;
      const mf_node *nx = nd_of(c, x);
      int64_t ax = 0;
      if (norm_axis(c, ax0, nx->ndim, &ax) < 0) return -1;
      if (ix->n < 1) return UNSUP("empty indices");
      int64_t first = to_i64(ix->v[0]);
      if (first < 0) first += nx->ne[ax];
      for (int64_t i = 0; i < ix->n; i++) {
        int64_t k = to_i64(ix->v[i]);
        if (k < 0) k += nx->ne[ax];
        if (k != first + i) return UNSUP("Gather of indices that are not consecutive");
      }
      if (first < 0 || first + ix->n > nx->ne[ax]) return node_fail(c, "index out of range");
      mf_tensor y = mf_slice(g, x, (int)ax, first, first + ix->n);
      if (y < 0) return set_out(c, 0, y);
      int64_t od[ONNX_MAX_RANK];
      int ond = 0;
      for (int i = 0; i < ax; i++) od[ond++] = nx->ne[i];
      for (int i = 0; i < ix->ndim; i++) od[ond++] = ix->dims[i];
      for (int i = (int)ax + 1; i < nx->ndim; i++) od[ond++] = nx->ne[i];
      if (ond == 0) od[ond++] = 1;
      return set_out(c, 0, reshape_to(c, y, ond, od));
    }
    mf_tensor table = tensor_of(c, vd, "data");
    if (table < 0) return -1;
    mf_tensor idx = tensor_of(c, vi, "indices");
    if (idx < 0) return -1;
    const mf_node *nt = nd_of(c, table), *ni = nd_of(c, idx);
    if (ax0 != 0 || nt->ndim != 2 || ni->dtype != MF_I32) return UNSUP("Gather other than rows of a 2-D table by integer indices (an embedding)");
    int64_t total = mf_node_numel(ni), od[ONNX_MAX_RANK];
    int ond = ni->ndim;
    memcpy(od, ni->ne, (size_t)ond * sizeof *od);
    od[ond++] = nt->ne[1];
    mf_tensor flat = ni->ndim == 1 ? idx : mf_reshape(g, idx, 1, &total);
    mf_tensor y = mf_gather(g, table, flat);
    return set_out(c, 0, y < 0 ? y : reshape_to(c, y, ond, od));
  }
  if (!strcmp(op, "ReduceMean") || !strcmp(op, "ReduceSum")) {
    mf_tensor x = in_tensor(c, 0);
    if (x < 0) return -1;
    int nd = nd_of(c, x)->ndim;
    int64_t axes[ONNX_MAX_RANK];
    int na;
    if (get_axes(c, 1, axes, &na) < 0) return -1;
    unsigned mask = 0;
    for (int i = 0; i < na; i++) {
      int64_t a = 0;
      if (norm_axis(c, axes[i], nd, &a) < 0) return -1;
      mask |= 1u << a;
    }
    if (na == 0 && attr_i(n, "noop_with_empty_axes", 0)) return set_out(c, 0, x);
    int keep = (int)attr_i(n, "keepdims", 1);
    return set_out(c, 0, op[6] == 'M' ? mf_mean(g, x, mask, keep) : mf_sum(g, x, mask, keep));
  }
  if (!strcmp(op, "Upsample") || !strcmp(op, "Resize")) {
    mf_tensor x = need4d(c, in_tensor(c, 0), "input");
    if (x < 0) return -1;
    char buf[64];
    const char *mode = attr_s(n, "mode", buf, sizeof buf);
    bool linear = mode && (!strcmp(mode, "linear") || !strcmp(mode, "bilinear"));
    if (mode && strcmp(mode, "nearest") && !linear) return UNSUP("%s mode '%s' (memfit: nearest, linear)", op, mode);
    int lmode = MF_RESIZE_ASYMMETRIC; /* Upsample's */
    if (linear && op[0] == 'R') {
      char cb[64];
      const char *ct = attr_s(n, "coordinate_transformation_mode", cb, sizeof cb);
      if (!ct || !strcmp(ct, "half_pixel")) lmode = MF_RESIZE_HALF_PIXEL;
      else if (!strcmp(ct, "pytorch_half_pixel")) lmode = MF_RESIZE_PYTORCH_HALF_PIXEL;
      else if (!strcmp(ct, "align_corners")) lmode = MF_RESIZE_ALIGN_CORNERS;
      else if (!strcmp(ct, "asymmetric")) lmode = MF_RESIZE_ASYMMETRIC;
      else return UNSUP("linear Resize with coordinate_transformation_mode '%s'", ct);
      if (attr_i(n, "antialias", 0)) return UNSUP("Resize with antialias");
      int64_t axes[8];
      if (attr_ints(n, "axes", axes, 8) > 0) return UNSUP("Resize with axes");
      char kb[64];
      const char *kar = attr_s(n, "keep_aspect_ratio_policy", kb, sizeof kb);
      if (kar && strcmp(kar, "stretch")) return UNSUP("Resize with keep_aspect_ratio_policy '%s'", kar);
    }
    if (!linear && op[0] == 'R') {
      char cb[64], nb[64];
      const char *ct = attr_s(n, "coordinate_transformation_mode", cb, sizeof cb);
      const char *nm = attr_s(n, "nearest_mode", nb, sizeof nb);
      if (ct && strcmp(ct, "asymmetric") && strcmp(ct, "half_pixel") && strcmp(ct, "pytorch_half_pixel"))
        return UNSUP("coordinate_transformation_mode '%s'", ct);
      if (ct && !strcmp(ct, "asymmetric") && nm && strcmp(nm, "floor")) return UNSUP("asymmetric with nearest_mode '%s'", nm);
      /* half-pixel centres of an integer factor never tie: both round_prefer modes pick floor(o / f); floor and ceil do not */
      if ((!ct || strcmp(ct, "asymmetric")) && nm && strncmp(nm, "round_prefer_", 13))
        return UNSUP("%s with nearest_mode '%s'", ct ? ct : "half_pixel", nm);
    }
    const mf_node *nx = nd_of(c, x);
    double fh = 0, fw = 0;
    int64_t szh = 0, szw = 0; /* sizes given: the output size itself */
    int sidx = op[0] == 'R' ? 2 : 1;
    cst *s = has_in(c, sidx) ? in_const(c, sidx, "scales") : NULL;
    if (has_in(c, sidx) && !s) return -1;
    if (s && s->n == 4) {
      if (s->v[0] != 1 || s->v[1] != 1) return UNSUP("scaling N or C");
      fh = s->v[2];
      fw = s->v[3];
    } else if (op[0] == 'R' && has_in(c, 3)) {
      s = in_const(c, 3, "sizes");
      if (!s) return -1;
      if (s->n != 4 || s->v[0] != (double)nx->ne[0] || s->v[1] != (double)nx->ne[1]) return UNSUP("sizes that change N or C");
      szh = to_i64(s->v[2]);
      szw = to_i64(s->v[3]);
      fh = s->v[2] / (double)nx->ne[2];
      fw = s->v[3] / (double)nx->ne[3];
    } else return UNSUP("%s without 4 scales or sizes", op);
    if (linear) {
      if (!(fh > 0) || !(fw > 0) || fh > 1024 || fw > 1024) return UNSUP("scale factors %g x %g", fh, fw);
      /* output floor(in * scale) (ONNX), or the sizes given */
      int64_t oh = szh > 0 ? szh : (int64_t)floor((double)nx->ne[2] * fh + 1e-9);
      int64_t ow = szw > 0 ? szw : (int64_t)floor((double)nx->ne[3] * fw + 1e-9);
      return set_out(c, 0, mf_resize_linear(g, x, oh, ow, lmode, fh, fw));
    }
    if (fh != fw || fh < 1 || fh != floor(fh) || fh > 1024) return UNSUP("scale factors %g x %g (memfit: one integer factor)", fh, fw);
    return set_out(c, 0, mf_upsample_nearest(g, x, (int)fh));
  }
  if (!strcmp(op, "Softmax") || !strcmp(op, "LogSoftmax")) {
    mf_tensor x = in_tensor(c, 0);
    if (x < 0) return -1;
    const mf_node *nx = nd_of(c, x);
    int nd = nx->ndim, lg = op[0] == 'L';
    int64_t ax;
    if (norm_axis(c, attr_i(n, "axis", c->m->opset >= 13 ? -1 : 1), nd, &ax) < 0) return -1;
    if (c->m->opset >= 13 || ax == nd - 1)
      return set_out(c, 0, lg ? mf_log_softmax(g, x, (int)ax) : mf_softmax(g, x, (int)ax));
    /* opsets 11-12: the input is seen as 2-D [before axis, from axis on] */
    int64_t d2[2] = {1, 1}, keep[MF_MAX_DIMS];
    for (int i = 0; i < nd; i++) d2[i >= ax] *= nx->ne[i];
    memcpy(keep, nx->ne, sizeof keep);
    mf_tensor f = mf_reshape(g, x, 2, d2);
    f = lg ? mf_log_softmax(g, f, 1) : mf_softmax(g, f, 1);
    return set_out(c, 0, f < 0 ? f : mf_reshape(g, f, nd, keep));
  }
  if (!strcmp(op, "SoftmaxCrossEntropyLoss") || !strcmp(op, "NegativeLogLikelihoodLoss")) {
    /* a loss the model computes itself (F.cross_entropy; F.nll_loss after F.log_softmax): memfit's softmax
     * cross-entropy, the mean over rows whose label is in [0,K) of logsumexp(x[n]) - x[n, label] */
    int sce = op[0] == 'S';
    mf_tensor x = in_tensor(c, 0);
    if (x < 0) return -1;
    mf_tensor y = in_tensor(c, 1);
    if (y < 0) return -1;
    const mf_node *nx = nd_of(c, x), *ny = nd_of(c, y);
    if (nx->ndim != 2) return UNSUP("%s of a rank-%d input (memfit: scores [N,C])", op, nx->ndim);
    if (ny->dtype != MF_I32) return UNSUP("labels that are not an integer graph input or computed from one");
    if (has_in(c, 2)) return UNSUP("class weights (input 2)");
    char red[16] = "mean";
    attr_s(n, "reduction", red, sizeof red);
    const Onnx__AttributeProto *ii = onnx_attr(n, "ignore_index");
    if (ii && ii->has_i && ii->i >= 0)
      return UNSUP("ignore_index %lld (memfit ignores the labels outside [0,C), so only a negative one)", (long long)ii->i);
    if (strcmp(red, "mean") && !(strcmp(red, "sum") == 0 && !ii))
      return UNSUP("reduction '%s'%s (memfit: mean, or sum without ignore_index)", red, ii ? " with ignore_index" : "");
    mf_tensor scores = x;
    int64_t rows = nx->ne[0];
    if (!sce) { /* -x[n, label] with x = log_softmax(z) over the classes is the cross-entropy of z */
      if (nx->op != MF_OP_SOFTMAX || !nx->ip[0])
        return UNSUP("NegativeLogLikelihoodLoss of a tensor that is not LogSoftmax's output over the classes");
      scores = nx->src[0];
    }
    mf_tensor l = mf_softmax_ce(g, scores, y); /* [1] */
    if (l >= 0 && !strcmp(red, "sum")) l = mf_mul_scalar(g, l, (double)rows); /* every label is valid: N x mean */
    if (set_out(c, 0, l) < 0) return -1;
    if (sce && out_used(c, 1)) return set_out(c, 1, mf_log_softmax(g, x, 1)); /* log_prob [N,C] */
    return 0;
  }
  if (!strcmp(op, "Sqrt")) return set_out(c, 0, mf_sqrt(g, in_tensor(c, 0)));
  if (!strcmp(op, "Erf")) return set_out(c, 0, mf_erf(g, in_tensor(c, 0)));
  if (!strcmp(op, "LayerNormalization")) {
    /* (x - mean) / sqrt(var + eps) * scale + bias over the axes from `axis` on, from memfit's ops */
    mf_tensor x = in_tensor(c, 0);
    if (x < 0) return -1;
    mf_tensor sc = in_tensor(c, 1);
    if (sc < 0) return -1;
    mf_tensor bi = has_in(c, 2) ? in_tensor(c, 2) : -1;
    if (has_in(c, 2) && bi < 0) return -1;
    if (n->n_output > 1 && ((n->output[1][0]) || (n->n_output > 2 && n->output[2][0])))
      return UNSUP("LayerNormalization's mean and inverse standard deviation outputs");
    int nd = nd_of(c, x)->ndim;
    int64_t ax;
    if (norm_axis(c, attr_i(n, "axis", -1), nd, &ax) < 0) return -1;
    unsigned mask = 0;
    for (int i = (int)ax; i < nd; i++) mask |= 1u << i;
    double eps = attr_f(n, "epsilon", 1e-5);
    mf_tensor d = mf_sub(g, x, mf_mean(g, x, mask, 1));
    mf_tensor v = mf_add_scalar(g, mf_mean(g, mf_mul(g, d, d), mask, 1), eps);
    mf_tensor y = mf_mul(g, mf_div(g, d, mf_sqrt(g, v)), sc);
    if (bi >= 0) y = mf_add(g, y, bi);
    return set_out(c, 0, y);
  }
  if (!strcmp(op, "Expand")) {
    mf_tensor x = in_tensor(c, 0);
    if (x < 0) return -1;
    cst *s = in_const(c, 1, "shape");
    if (!s) return -1;
    const mf_node *nx = nd_of(c, x);
    int nd = (int)(s->n > nx->ndim ? s->n : nx->ndim);
    if (nd > MF_MAX_DIMS) return UNSUP("Expand to %d dims", nd);
    int64_t out[MF_MAX_DIMS];
    for (int i = 0; i < nd; i++) {
      int64_t a = i < nd - nx->ndim ? 1 : nx->ne[i - (nd - nx->ndim)];
      int64_t b = i < nd - s->n ? 1 : to_i64(s->v[i - (nd - s->n)]);
      if (a != b && a != 1 && b != 1) return node_fail(c, "shape does not broadcast with the input");
      out[i] = a == 1 ? b : a;
    }
    bool same = nd == nx->ndim;
    for (int i = 0; same && i < nd; i++) same = out[i] == nx->ne[i];
    if (same) return set_out(c, 0, x);
    int id = mf_graph_add(g, MF_OP_EXPAND, nx->dtype, nd, out, 1, &x);
    if (id >= 0) g->nodes[id].fp[0] = 1.0;
    return set_out(c, 0, id);
  }
  if (!strcmp(op, "Where") || !strcmp(op, "Equal") || !strcmp(op, "Range") || !strcmp(op, "Floor") || !strcmp(op, "Ceil") ||
      !strcmp(op, "Less") || !strcmp(op, "Greater") || !strcmp(op, "Max") || !strcmp(op, "Min") || !strcmp(op, "Not") ||
      !strcmp(op, "Abs"))
    return UNSUP("%s of values the graph computes (memfit folds it only when its inputs are known at import)", op);
  return UNSUP("op %s", op);
}

static const char *shape_str(int nd, const int64_t *d, char *buf, size_t n) {
  size_t o = 0;
  for (int i = 0; i < nd && o < n; i++) o += (size_t)snprintf(buf + o, n - o, i ? "x%lld" : "%lld", (long long)d[i]);
  if (nd == 0) snprintf(buf, n, "scalar");
  return buf;
}

void mf_onnx_built_free(mf_onnx_built *b) {
  if (!b || !b->priv) return;
  priv *p = b->priv;
  for (int i = 0; i < p->n; i++) { free(p->b[i].vals); free(p->b[i].alias); }
  free(p->b);
  free(p);
  b->priv = NULL;
}

int mf_onnx_build(const mf_onnx *m, mf_graph *g, const mf_onnx_build_opts *o, mf_onnx_built *out, char *err, size_t errlen) {
  if (out) memset(out, 0, sizeof *out);
  if (!m || !g || !o || !out) { snprintf(err, errlen, "mf_onnx_build: a NULL argument"); return -1; }
  out->loss = out->labels = -1;
  const Onnx__GraphProto *gp = m->graph;
  ctx cc = {0}, *c = &cc;
  c->m = m;
  c->g = g;
  c->err = err;
  c->errlen = errlen;
  c->bn_eval = o->bn_eval || o->frozen;
  c->frozen = o->frozen;
  c->prefix = o->name_prefix ? o->name_prefix : "";
  size_t nvals = gp->n_initializer + gp->n_input + 16;
  for (size_t i = 0; i < gp->n_node; i++) nvals += gp->node[i]->n_output;
  c->capv = (int)nvals;
  c->hcap = 64;
  while ((size_t)c->hcap < 2 * nvals) c->hcap *= 2;
  c->vals = calloc(nvals, sizeof *c->vals);
  c->hash = malloc((size_t)c->hcap * sizeof *c->hash);
  c->pv = calloc(1, sizeof *c->pv);
  int rc = -1;
  c->init_t = malloc((gp->n_initializer + 1) * sizeof *c->init_t);
  if (!c->vals || !c->hash || !c->pv || !c->init_t) { snprintf(err, errlen, "onnx: out of host memory"); goto done; }
  for (int i = 0; i < c->hcap; i++) c->hash[i] = -1;
  for (size_t i = 0; i <= gp->n_initializer; i++) c->init_t[i] = -1;
  for (size_t i = 0; i < gp->n_initializer; i++) val_get(c, gp->initializer[i]->name)->init = (int)i;
  /* inputs */
  for (int i = 0; i < o->n_inputs; i++) {
    bool found = false;
    for (int k = 0; k < m->n_in; k++) found |= o->inputs[i].name && !strcmp(o->inputs[i].name, mf_onnx_input_name(m, k));
    if (!found) {
      char names[400] = "";
      size_t off = 0;
      for (int k = 0; k < m->n_in && off < sizeof names; k++)
        off += (size_t)snprintf(names + off, sizeof names - off, "%s'%s'", k ? ", " : "", mf_onnx_input_name(m, k));
      snprintf(err, errlen, "%s: the model has no input '%s' (its inputs: %s)", m->path, o->inputs[i].name ? o->inputs[i].name : "",
               m->n_in ? names : "none");
      goto done;
    }
  }
  for (int k = 0; k < m->n_in; k++) {
    const char *nm = mf_onnx_input_name(m, k);
    const Onnx__ValueInfoProto *vi = gp->input[m->in_idx[k]];
    int fnd = 0;
    int64_t fd[MF_MAX_DIMS];
    if (mf_onnx_input_shape(m, k, &fnd, fd) < 0) {
      snprintf(err, errlen, "%s: input '%s' has more than %d dims", m->path, nm, MF_MAX_DIMS);
      goto done;
    }
    bool declared = vi->type && vi->type->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && vi->type->tensor_type &&
                    vi->type->tensor_type->shape;
    int et = vi->type && vi->type->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && vi->type->tensor_type
                 ? vi->type->tensor_type->elem_type : ONNX_FLOAT;
    if (declared && fnd == 0) { fnd = 1; fd[0] = 1; } /* a scalar input is memfit's [1] */
    const mf_onnx_shape *us = NULL;
    mf_tensor given = -1; /* an existing tensor of g that feeds this input (o->input_tensors) */
    for (int i = 0; i < o->n_inputs; i++)
      if (!strcmp(o->inputs[i].name, nm)) us = &o->inputs[i], given = o->input_tensors ? o->input_tensors[i] : -1;
    int nd;
    int64_t dims[MF_MAX_DIMS];
    char a[96], b[96];
    if (us) {
      if (us->ndim < 1 || us->ndim > MF_MAX_DIMS) {
        snprintf(err, errlen, "%s: input '%s': %d dims given (1..%d)", m->path, nm, us->ndim, MF_MAX_DIMS);
        goto done;
      }
      for (int i = 0; i < us->ndim; i++)
        if (us->dims[i] < 1) {
          snprintf(err, errlen, "%s: input '%s': dimension %d of the shape given is %lld", m->path, nm, i, (long long)us->dims[i]);
          goto done;
        }
      if (declared && fnd != us->ndim) {
        snprintf(err, errlen, "%s: input '%s': shape %s has %d dims, the model's [%s] has %d", m->path, nm,
                 shape_str(us->ndim, us->dims, a, sizeof a), us->ndim, shape_str(fnd, fd, b, sizeof b), fnd);
        goto done;
      }
      for (int i = 0; declared && i < fnd; i++)
        if (fd[i] >= 0 && fd[i] != us->dims[i]) {
          snprintf(err, errlen, "%s: input '%s': shape %s conflicts with the model's %s at axis %d (%lld, the model fixes %lld); "
                                "export the model with that axis dynamic (torch.onnx.export(..., dynamic_axes=...)) to change it",
                   m->path, nm, shape_str(us->ndim, us->dims, a, sizeof a), shape_str(fnd, fd, b, sizeof b), i,
                   (long long)us->dims[i], (long long)fd[i]);
          goto done;
        }
      nd = us->ndim;
      memcpy(dims, us->dims, sizeof dims);
    } else {
      bool fixed = declared && fnd >= 1;
      for (int i = 0; fixed && i < fnd; i++) fixed = fd[i] >= 1;
      if (!fixed) {
        /* the example: the model's own dims with the dynamic ones filled (8 for the batch), else an image batch */
        char ex[96] = "8x3x224x224";
        if (declared && fnd >= 1) {
          size_t o = 0;
          for (int i = 0; i < fnd && o < sizeof ex; i++)
            o += (size_t)snprintf(ex + o, sizeof ex - o, "%s%lld", i ? "x" : "", (long long)(fd[i] >= 1 ? fd[i] : i == 0 ? 8 : 32));
        }
        snprintf(err, errlen, "%s: input '%s' has no fixed shape in the model (%s): give it, e.g. --input %s=%s", m->path, nm,
                 declared ? shape_str(fnd, fd, b, sizeof b) : "none declared", nm, ex);
        goto done;
      }
      nd = fnd;
      memcpy(dims, fd, sizeof dims);
    }
    int64_t ne_all = 1;
    for (int i = 0; i < nd; i++)
      if (dims[i] < 1 || __builtin_mul_overflow(ne_all, dims[i], &ne_all) || ne_all > ((int64_t)1 << 40)) {
        snprintf(err, errlen, "%s: input '%s': a shape of more than 2^40 elements", m->path, nm);
        goto done;
      }
    mf_tensor t;
    if (given >= 0) {
      bool same = given < g->n && mf_tensor_ndim(g, given) == nd && et_is_float(et);
      for (int i = 0; same && i < nd; i++) same = mf_tensor_dim(g, given, i) == dims[i];
      if (!same) {
        snprintf(err, errlen, "%s: input '%s': the tensor given for it is not a float tensor of shape %s", m->path, nm,
                 shape_str(nd, dims, a, sizeof a));
        goto done;
      }
      t = given;
    } else if (et == ONNX_INT64 || et == ONNX_INT32) t = mf_input_typed(g, nm, MF_I32, nd, dims);
    else if (et_is_float(et)) t = mf_input(g, nm, nd, dims);
    else {
      snprintf(err, errlen, "%s: input '%s' has element type %s, which memfit does not take", m->path, nm, onnx_elem_name(et));
      goto done;
    }
    if (t < 0) { snprintf(err, errlen, "%s: input '%s': %s", m->path, nm, mf_graph_error(g)); goto done; }
    val *v = val_get(c, nm);
    v->t = t;
    v->init = -1;
    out->inputs[out->n_inputs] = t;
    snprintf(out->input_names[out->n_inputs], sizeof out->input_names[0], "%s", nm);
    out->n_inputs++;
  }
  /* nodes in file order (ONNX requires a topological order) */
  for (size_t i = 0; i < gp->n_node; i++) {
    c->node = gp->node[i];
    c->idx = i;
    c->n_before = g->n;
    if (node_build(c) < 0) goto done;
    if (mf_graph_error(g)) { node_fail(c, "%s", mf_graph_error(g)); goto done; }
    /* every activation a node made (a LayerNormalization is several ops) carries the node's name: its layer */
    const char *lname = c->node->name && c->node->name[0] ? c->node->name : c->node->n_output ? c->node->output[0] : "";
    for (int id = c->n_before; id < g->n; id++)
      if (g->nodes[id].role == MF_ROLE_ACT) snprintf(g->nodes[id].name, MF_NAME_LEN, "%s", lname);
  }
  /* outputs and the loss */
  if (gp->n_output < 1) { snprintf(err, errlen, "%s: the graph has no output", m->path); goto done; }
  for (size_t i = 0; i < gp->n_output && out->n_outputs < MF_ONNX_MAX_IO; i++) {
    val *v = val_find(c, gp->output[i]->name);
    out->outputs[out->n_outputs++] = v && v->t >= 0 ? v->t : -1;
  }
  mf_tensor y = out->outputs[0];
  if (y < 0) {
    snprintf(err, errlen, "%s: output '%s' is %s", m->path, gp->output[0]->name,
             val_find(c, gp->output[0]->name) ? "a constant, not computed from the inputs" : "produced by no node");
    goto done;
  }
  const mf_node *ny = nd_of(c, y);
  char sy[64];
  mf_shape_str(ny, sy, sizeof sy);
  switch (o->loss) {
  case MF_ONNX_LOSS_CE: {
    if (ny->ndim != 2) {
      snprintf(err, errlen, "%s: --loss cross-entropy needs logits [N,K]; output '%s' is %s", m->path, gp->output[0]->name, sy);
      goto done;
    }
    int64_t ls[1] = {ny->ne[0]};
    out->labels = mf_input_typed(g, "labels", MF_I32, 1, ls);
    out->loss = mf_softmax_ce(g, y, out->labels);
    break;
  }
  case MF_ONNX_LOSS_MSE: {
    int64_t ts[MF_MAX_DIMS];
    memcpy(ts, ny->ne, sizeof ts);
    out->labels = mf_input(g, "target", ny->ndim, ts);
    out->loss = mf_mse_loss(g, y, out->labels);
    break;
  }
  case MF_ONNX_LOSS_OWN: {
    if (mf_node_numel(ny) != 1) {
      snprintf(err, errlen, "%s: --loss own needs a model whose first output is its loss (one number); output '%s' is %s", m->path,
               gp->output[0]->name, sy);
      goto done;
    }
    out->loss = y;
    break;
  }
  default: out->loss = y; break;
  }
  if (mf_graph_error(g) || out->loss < 0) {
    snprintf(err, errlen, "%s: the loss: %s", m->path, mf_graph_error(g) ? mf_graph_error(g) : "could not be built");
    goto done;
  }
  out->n_params = c->n_params;
  out->n_param_elems = c->n_param_elems;
  out->priv = c->pv;
  c->pv = NULL;
  rc = 0;
done:
  if (c->vals)
    for (int i = 0; i < c->nv; i++) cst_free(&c->vals[i].c);
  free(c->vals);
  free(c->hash);
  free(c->init_t);
  if (c->pv) {
    mf_onnx_built tmp = {.priv = c->pv};
    mf_onnx_built_free(&tmp);
  }
  return rc;
}

int mf_onnx_load_weights(const mf_onnx *m, const mf_onnx_built *b, mf_session *s, char *err, size_t errlen) {
  if (!m || !b || !b->priv || !s) { snprintf(err, errlen, "mf_onnx_load_weights: a NULL argument or an unbuilt model"); return -1; }
  const priv *p = b->priv;
  for (int i = 0; i < p->n; i++) {
    const bind *bd = &p->b[i];
    float *vals = bd->vals;
    int64_t n = bd->n;
    float *tmp = NULL;
    if (bd->init >= 0) {
      const Onnx__TensorProto *t = m->graph->initializer[bd->init];
      n = onnx_tensor_numel(t);
      double *d = malloc((size_t)(n ? n : 1) * sizeof *d);
      tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp);
      if (!d || !tmp) { free(d); free(tmp); snprintf(err, errlen, "onnx: out of host memory"); return -1; }
      if (onnx_tensor_read(m, t, d, n, err, errlen) < 0) { free(d); free(tmp); return -1; }
      for (int64_t k = 0; k < n; k++) tmp[k] = (float)d[k];
      free(d);
      vals = tmp;
    }
    const mf_node *nd = &s->plan->g->nodes[bd->t];
    int rc = nd->op == MF_OP_PARAM ? mf_session_write_param(s, bd->t, vals, (size_t)n)
                                   : mf_session_write_state(s, bd->t, vals, (size_t)n);
    free(tmp);
    if (rc < 0) {
      snprintf(err, errlen, "%s: could not write '%s' (%lld values) into the session", m->path, nd->name, (long long)n);
      return -1;
    }
  }
  return 0;
}
int mf_onnx_save(const mf_onnx *m, const mf_onnx_built *b, mf_session *s, const char *path, char *err, size_t errlen) {
  if (!m || !b || !b->priv || !s || !path) { snprintf(err, errlen, "mf_onnx_save: a NULL argument or an unbuilt model"); return -1; }
  const priv *p = b->priv;
  /* a copy of the model to change: packed and unpacked again */
  size_t n = onnx__model_proto__get_packed_size(m->model);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) { snprintf(err, errlen, "onnx: out of host memory"); return -1; }
  onnx__model_proto__pack(m->model, buf);
  Onnx__ModelProto *cp = onnx__model_proto__unpack(NULL, n, buf);
  free(buf);
  if (!cp) { snprintf(err, errlen, "%s: could not copy the model", m->path); return -1; }
  Onnx__GraphProto *g = cp->graph;
  /* room for the initializers aliases add; what this function allocates is freed with the copy's own memory */
  size_t extra = 0;
  for (int i = 0; i < p->n; i++) extra += p->b[i].alias != NULL;
  void **owned = calloc((size_t)p->n * 3 + 1, sizeof *owned);
  /* undo records: the original initializers' fields and Identity inputs, put back before the copy is freed */
  Onnx__TensorProto *saved = calloc(g->n_initializer + 1, sizeof *saved);
  uint8_t *was_saved = calloc(g->n_initializer + 1, 1);
  char **saved_in = calloc(g->n_node + 1, sizeof *saved_in);
  Onnx__TensorProto **inits = malloc((g->n_initializer + extra + 1) * sizeof *inits);
  Onnx__TensorProto **orig_inits = g->initializer;
  size_t orig_n = g->n_initializer;
  int no = 0, rc = -1;
  if (!owned || !inits || !saved || !was_saved || !saved_in) { snprintf(err, errlen, "onnx: out of host memory"); goto done; }
  memcpy(inits, g->initializer, g->n_initializer * sizeof *inits);
  g->initializer = inits;
  for (int i = 0; i < p->n; i++) {
    const bind *bd = &p->b[i];
    if (bd->init < 0) continue; /* folded constants stay as the graph wrote them */
    Onnx__TensorProto *t = g->initializer[bd->init];
    int64_t cnt = onnx_tensor_numel(t);
    int et = t->data_type;
    if (et != ONNX_FLOAT && et != ONNX_DOUBLE) {
      snprintf(err, errlen, "%s: initializer '%s' has element type %s; memfit writes float and double ones", m->path, t->name,
               onnx_elem_name(et));
      goto done;
    }
    size_t es = et == ONNX_FLOAT ? 4 : 8;
    float *v = malloc((size_t)(cnt ? cnt : 1) * sizeof *v);
    uint8_t *raw = malloc((size_t)(cnt ? cnt : 1) * es);
    owned[no++] = raw;
    if (!v || !raw || mf_session_read(s, bd->t, v, (size_t)cnt) != 0) {
      free(v);
      snprintf(err, errlen, "%s: could not read '%s' from the session", m->path, t->name);
      goto done;
    }
    for (int64_t k = 0; k < cnt; k++) {
      if (es == 4) memcpy(raw + 4 * k, &v[k], 4);
      else { double d = v[k]; memcpy(raw + 8 * k, &d, 8); }
    }
    free(v);
    Onnx__TensorProto *dst = t;
    if (bd->alias) { /* a tensor of its own feeding the Identity that stood for the shared one */
      dst = calloc(1, sizeof *dst);
      char *nm = malloc(strlen(bd->alias) + 8);
      int64_t *dims = malloc((t->n_dims ? t->n_dims : 1) * sizeof *dims);
      owned[no++] = nm;
      owned[no++] = dims;
      if (!dst || !nm || !dims) { free(dst); snprintf(err, errlen, "onnx: out of host memory"); goto done; }
      onnx__tensor_proto__init(dst);
      sprintf(nm, "%s:memfit", bd->alias);
      memcpy(dims, t->dims, t->n_dims * sizeof *dims);
      dst->name = nm;
      dst->dims = dims;
      dst->n_dims = t->n_dims;
      dst->has_data_type = 1;
      dst->data_type = et;
      g->initializer[g->n_initializer++] = dst;
      for (size_t k = 0; k < g->n_node; k++) {
        Onnx__NodeProto *nd = g->node[k];
        if (!strcmp(nd->op_type, "Identity") && nd->n_output && !strcmp(nd->output[0], bd->alias) && nd->n_input) {
          if (!saved_in[k]) saved_in[k] = nd->input[0];
          nd->input[0] = nm;
        }
      }
    }
    if (dst == t && !was_saved[bd->init]) { saved[bd->init] = *t; was_saved[bd->init] = 1; }
    dst->n_float_data = dst->n_double_data = dst->n_int32_data = dst->n_int64_data = 0;
    dst->n_external_data = 0;
    dst->has_data_location = 0;
    dst->has_raw_data = 1;
    dst->raw_data.data = raw;
    dst->raw_data.len = (size_t)cnt * es;
  }
  n = onnx__model_proto__get_packed_size(cp);
  buf = malloc(n ? n : 1);
  if (!buf) { snprintf(err, errlen, "onnx: out of host memory"); goto done; }
  onnx__model_proto__pack(cp, buf);
  char tmp[1100];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "wb");
  int ok = f && fwrite(buf, 1, n, f) == n;
  if (f && fclose(f) != 0) ok = 0;
  free(buf);
  if (!ok || rename(tmp, path) != 0) {
    remove(tmp);
    snprintf(err, errlen, "%s: could not write the model", path);
    goto done;
  }
  rc = 0;
done:
  /* hand the copy back its own fields and arrays before freeing it; what memfit added is freed separately */
  if (inits) {
    for (size_t k = orig_n; k < g->n_initializer; k++) free(g->initializer[k]);
    for (size_t k = 0; k < orig_n; k++)
      if (was_saved[k]) *g->initializer[k] = saved[k];
    g->initializer = orig_inits;
    g->n_initializer = orig_n;
    free(inits);
  }
  if (saved_in)
    for (size_t k = 0; k < g->n_node; k++)
      if (saved_in[k]) g->node[k]->input[0] = saved_in[k];
  free(saved);
  free(was_saved);
  free(saved_in);
  for (int o = 0; o < no; o++) free(owned[o]);
  free(owned);
  onnx__model_proto__free_unpacked(cp, NULL);
  return rc;
}
#endif
