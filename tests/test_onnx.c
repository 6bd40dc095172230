/* test_onnx.c — the ONNX importer on models this test writes with protobuf-c: a small CNN whose flatten is
 * torch's dynamic-batch shape arithmetic imports to the same graph as one built by hand (same loss,
 * gradients and plan, measured == planned), and bad files each give a clear error naming the problem. */
#include "check.h"
#include "memfit.h"
#include "graph/graph.h"
#include "graph/oplist.h"
#include "ops/ops.h"
#ifdef MEMFIT_HAVE_ONNX
#include "onnx.pb-c.h"
#include <unistd.h>

/* ---- writing models ---- */
typedef struct mb {
  Onnx__NodeProto *nodes[64];
  int nn;
  Onnx__TensorProto *inits[32];
  int ni;
  Onnx__ValueInfoProto *ins[8], *outs[8];
  int nin, nout;
  void *allocs[4096];
  int na;
} mb;

static void *A(mb *b, size_t n) {
  void *p = calloc(1, n ? n : 1);
  b->allocs[b->na++] = p;
  return p;
}
static char *S(mb *b, const char *s) { char *p = A(b, strlen(s) + 1); strcpy(p, s); return p; }
static void mb_free(mb *b) { for (int i = 0; i < b->na; i++) free(b->allocs[i]); memset(b, 0, sizeof *b); }

static Onnx__NodeProto *node(mb *b, const char *op, const char *name, const char *in_csv, const char *out_csv) {
  Onnx__NodeProto *n = A(b, sizeof *n);
  onnx__node_proto__init(n);
  n->op_type = S(b, op);
  n->name = S(b, name);
  const char *csv[2] = {in_csv, out_csv};
  for (int k = 0; k < 2; k++) {
    char **arr = A(b, 16 * sizeof(char *));
    size_t cnt = 0;
    char *tmp = S(b, csv[k]), *save = NULL;
    for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save)) arr[cnt++] = S(b, t[0] == '-' ? "" : t);
    if (k == 0) { n->input = arr; n->n_input = cnt; }
    else { n->output = arr; n->n_output = cnt; }
  }
  n->attribute = A(b, 8 * sizeof *n->attribute);
  b->nodes[b->nn++] = n;
  return n;
}
static Onnx__AttributeProto *attr(mb *b, Onnx__NodeProto *n, const char *name) {
  Onnx__AttributeProto *a = A(b, sizeof *a);
  onnx__attribute_proto__init(a);
  a->name = S(b, name);
  n->attribute[n->n_attribute++] = a;
  return a;
}
static void attr_i(mb *b, Onnx__NodeProto *n, const char *name, int64_t v) {
  Onnx__AttributeProto *a = attr(b, n, name);
  a->has_i = 1; a->i = v; a->has_type = 1; a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
}
static void attr_f(mb *b, Onnx__NodeProto *n, const char *name, float v) {
  Onnx__AttributeProto *a = attr(b, n, name);
  a->has_f = 1; a->f = v; a->has_type = 1; a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
}
static void attr_ints(mb *b, Onnx__NodeProto *n, const char *name, int k, const int64_t *v) {
  Onnx__AttributeProto *a = attr(b, n, name);
  a->ints = A(b, (size_t)k * sizeof *v);
  memcpy(a->ints, v, (size_t)k * sizeof *v);
  a->n_ints = (size_t)k; a->has_type = 1; a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
}
static Onnx__TensorProto *tensor(mb *b, const char *name, int et, int nd, const int64_t *dims) {
  Onnx__TensorProto *t = A(b, sizeof *t);
  onnx__tensor_proto__init(t);
  t->name = S(b, name);
  t->has_data_type = 1;
  t->data_type = et;
  t->dims = A(b, (size_t)(nd ? nd : 1) * sizeof *dims);
  memcpy(t->dims, dims, (size_t)nd * sizeof *dims);
  t->n_dims = (size_t)nd;
  return t;
}
static int64_t numel(int nd, const int64_t *d) { int64_t n = 1; for (int i = 0; i < nd; i++) n *= d[i]; return n; }
static Onnx__TensorProto *init_f(mb *b, const char *name, int nd, const int64_t *dims, const float *v) {
  Onnx__TensorProto *t = tensor(b, name, 1, nd, dims);
  int64_t n = numel(nd, dims);
  t->float_data = A(b, (size_t)n * sizeof(float));
  memcpy(t->float_data, v, (size_t)n * sizeof(float));
  t->n_float_data = (size_t)n;
  b->inits[b->ni++] = t;
  return t;
}
static Onnx__TensorProto *init_i64(mb *b, const char *name, int nd, const int64_t *dims, const int64_t *v) {
  Onnx__TensorProto *t = tensor(b, name, 7, nd, dims);
  int64_t n = numel(nd, dims);
  t->int64_data = A(b, (size_t)n * sizeof(int64_t));
  memcpy(t->int64_data, v, (size_t)n * sizeof(int64_t));
  t->n_int64_data = (size_t)n;
  b->inits[b->ni++] = t;
  return t;
}
static Onnx__ValueInfoProto *vinfo(mb *b, const char *name, int nd, const int64_t *dims) {
  Onnx__ValueInfoProto *v = A(b, sizeof *v);
  onnx__value_info_proto__init(v);
  v->name = S(b, name);
  if (nd < 0) return v;
  Onnx__TypeProto *tp = A(b, sizeof *tp);
  onnx__type_proto__init(tp);
  Onnx__TypeProto__Tensor *tt = A(b, sizeof *tt);
  onnx__type_proto__tensor__init(tt);
  tt->has_elem_type = 1;
  tt->elem_type = 1;
  Onnx__TensorShapeProto *sp = A(b, sizeof *sp);
  onnx__tensor_shape_proto__init(sp);
  sp->dim = A(b, (size_t)(nd ? nd : 1) * sizeof *sp->dim);
  for (int i = 0; i < nd; i++) {
    Onnx__TensorShapeProto__Dimension *d = A(b, sizeof *d);
    onnx__tensor_shape_proto__dimension__init(d);
    if (dims[i] >= 0) { d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE; d->dim_value = dims[i]; }
    else { d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM; d->dim_param = S(b, "batch"); }
    sp->dim[i] = d;
  }
  sp->n_dim = (size_t)nd;
  tt->shape = sp;
  tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  tp->tensor_type = tt;
  v->type = tp;
  return v;
}
static void input(mb *b, const char *name, int nd, const int64_t *dims) { b->ins[b->nin++] = vinfo(b, name, nd, dims); }
static void output(mb *b, const char *name) { b->outs[b->nout++] = vinfo(b, name, -1, NULL); }

static uint8_t *pack(mb *b, int64_t opset, size_t *n) {
  Onnx__GraphProto g;
  onnx__graph_proto__init(&g);
  g.name = "test";
  g.node = b->nodes; g.n_node = (size_t)b->nn;
  g.initializer = b->inits; g.n_initializer = (size_t)b->ni;
  g.input = b->ins; g.n_input = (size_t)b->nin;
  g.output = b->outs; g.n_output = (size_t)b->nout;
  Onnx__OperatorSetIdProto os, *osp = &os;
  onnx__operator_set_id_proto__init(&os);
  os.domain = "";
  os.has_version = 1;
  os.version = opset;
  Onnx__ModelProto m;
  onnx__model_proto__init(&m);
  m.has_ir_version = 1;
  m.ir_version = 8;
  m.opset_import = &osp;
  m.n_opset_import = 1;
  m.graph = &g;
  *n = onnx__model_proto__get_packed_size(&m);
  uint8_t *buf = malloc(*n);
  onnx__model_proto__pack(&m, buf);
  return buf;
}

static void write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (f) { fwrite(p, 1, n, f); fclose(f); }
}

/* ---- the small CNN ---- */
enum { NB = 2, C = 3, H = 8, OC = 4, K = 5 };
typedef struct weights {
  float w1[OC * C * 9], b1[OC], s[OC], bb[OC], mean[OC], var[OC], w2[K * OC * 16], b2[K];
} weights;

static void fill(float *v, int n, uint64_t *st, double scale) {
  for (int i = 0; i < n; i++) {
    *st = *st * 6364136223846793005ull + 1442695040888963407ull;
    v[i] = (float)(((double)(*st >> 11) / 9007199254740992.0 * 2 - 1) * scale);
  }
}

/* conv(pad 1) -> BN -> Relu -> MaxPool 2 -> Shape/Gather/Unsqueeze/Concat/Reshape (torch's flatten with a
 * dynamic batch) -> Gemm(transB) -> logits [N,K] */
static uint8_t *cnn_model(const weights *w, int64_t opset, int batch_fixed, size_t *n) {
  mb b = {0};
  int64_t xd[4] = {batch_fixed ? NB : -1, C, H, H};
  input(&b, "x", 4, xd);
  int64_t d_w1[4] = {OC, C, 3, 3}, d_c[1] = {OC}, d_w2[2] = {K, OC * 16}, d_b2[1] = {K}, d_one[1] = {1}, d_0[1] = {0};
  init_f(&b, "conv1.weight", 4, d_w1, w->w1);
  init_f(&b, "conv1.bias", 1, d_c, w->b1);
  init_f(&b, "bn1.weight", 1, d_c, w->s);
  init_f(&b, "bn1.bias", 1, d_c, w->bb);
  init_f(&b, "bn1.running_mean", 1, d_c, w->mean);
  init_f(&b, "bn1.running_var", 1, d_c, w->var);
  init_f(&b, "fc.weight", 2, d_w2, w->w2);
  init_f(&b, "fc.bias", 1, d_b2, w->b2);
  int64_t zero = 0, minus1 = -1;
  init_i64(&b, "zero", 0, d_0, &zero);
  init_i64(&b, "minus_one", 1, d_one, &minus1);
  Onnx__NodeProto *nd = node(&b, "Conv", "conv1", "x,conv1.weight,conv1.bias", "c1");
  int64_t pads[4] = {1, 1, 1, 1}, ks[2] = {3, 3}, k2[2] = {2, 2};
  attr_ints(&b, nd, "pads", 4, pads);
  attr_ints(&b, nd, "kernel_shape", 2, ks);
  attr_i(&b, nd, "group", 1);
  nd = node(&b, "BatchNormalization", "bn1", "c1,bn1.weight,bn1.bias,bn1.running_mean,bn1.running_var", "h1");
  attr_f(&b, nd, "epsilon", 1e-5f);
  attr_f(&b, nd, "momentum", 0.9f);
  node(&b, "Relu", "relu", "h1", "r1");
  nd = node(&b, "MaxPool", "pool", "r1", "p1");
  attr_ints(&b, nd, "kernel_shape", 2, k2);
  attr_ints(&b, nd, "strides", 2, k2);
  node(&b, "Shape", "shape", "p1", "s1");
  nd = node(&b, "Gather", "gather", "s1,zero", "g1");
  attr_i(&b, nd, "axis", 0);
  int64_t ax0 = 0;
  nd = node(&b, "Unsqueeze", "unsq", "g1", "u1");
  attr_ints(&b, nd, "axes", 1, &ax0); /* opset 11-12 form; opset 13 takes axes as an input */
  if (opset >= 13) { nd->n_attribute = 0; nd->input[nd->n_input++] = "axes0"; int64_t d1[1] = {1}; init_i64(&b, "axes0", 1, d1, &ax0); }
  nd = node(&b, "Concat", "cat", "u1,minus_one", "shp");
  attr_i(&b, nd, "axis", 0);
  node(&b, "Reshape", "flatten", "p1,shp", "f1");
  nd = node(&b, "Gemm", "fc", "f1,fc.weight,fc.bias", "logits");
  attr_i(&b, nd, "transB", 1);
  output(&b, "logits");
  uint8_t *buf = pack(&b, opset, n);
  mb_free(&b);
  return buf;
}

/* the same network through memfit's own API */
static mf_tensor cnn_native(mf_graph *g, mf_tensor *x, mf_tensor *labels, mf_tensor *logits) {
  int64_t xs[4] = {NB, C, H, H}, w1s[4] = {OC, C, 3, 3}, cs[1] = {OC}, w2s[2] = {K, OC * 16}, b2s[1] = {K}, ls[1] = {NB};
  *x = mf_input(g, "x", 4, xs);
  mf_tensor w1 = mf_param(g, "conv1.weight", 4, w1s, MF_INIT_ZERO, 0), b1 = mf_param(g, "conv1.bias", 1, cs, MF_INIT_ZERO, 0);
  mf_tensor s = mf_param(g, "bn1.weight", 1, cs, MF_INIT_ZERO, 0), bb = mf_param(g, "bn1.bias", 1, cs, MF_INIT_ZERO, 0);
  mf_tensor rm = mf_buffer(g, "bn1.running_mean", 1, cs, MF_INIT_ZERO, 0), rv = mf_buffer(g, "bn1.running_var", 1, cs, MF_INIT_ZERO, 0);
  mf_tensor w2 = mf_param(g, "fc.weight", 2, w2s, MF_INIT_ZERO, 0), b2 = mf_param(g, "fc.bias", 1, b2s, MF_INIT_ZERO, 0);
  mf_tensor h = mf_conv2d(g, *x, w1, b1, 1, 1, 1);
  h = mf_relu(g, mf_batchnorm(g, h, s, bb, rm, rv, 1, 1 - 0.9f, 1e-5f));
  h = mf_maxpool2d(g, h, 2, 2, 0);
  int64_t fs[2] = {NB, OC * 16};
  h = mf_reshape(g, h, 2, fs);
  *logits = mf_add(g, mf_matmul(g, h, w2, 0, 1), b2);
  *labels = mf_input_typed(g, "labels", MF_I32, 1, ls);
  return mf_softmax_ce(g, *logits, *labels);
}

static mf_tensor by_name(const mf_graph *g, const char *name) {
  for (int id = 0; id < g->n; id++)
    if (!strcmp(g->nodes[id].name, name) && (g->nodes[id].op == MF_OP_PARAM || g->nodes[id].op == MF_OP_BUFFER)) return id;
  return -1;
}

static const char *tmpdir(void) {
  static char d[256];
  if (!d[0]) {
    snprintf(d, sizeof d, "/tmp/memfit_test_onnx_XXXXXX");
    if (!mkdtemp(d)) return "/tmp";
  }
  return d;
}

static void test_cnn(void) {
  weights w;
  uint64_t st = 7;
  fill(w.w1, OC * C * 9, &st, 0.3); fill(w.b1, OC, &st, 0.1); fill(w.s, OC, &st, 1); fill(w.bb, OC, &st, 0.2);
  fill(w.mean, OC, &st, 0.1); fill(w.var, OC, &st, 0.5); fill(w.w2, K * OC * 16, &st, 0.2); fill(w.b2, K, &st, 0.1);
  for (int i = 0; i < OC; i++) w.var[i] += 1; /* variances above 0 */
  float xv[NB * C * H * H];
  fill(xv, NB * C * H * H, &st, 1);
  float lab[NB] = {1, 3};
  for (int opset = 11; opset <= 13; opset += 2) {
    size_t n;
    uint8_t *buf = cnn_model(&w, opset, 0, &n);
    char path[512], err[1024] = "";
    snprintf(path, sizeof path, "%s/cnn%d.onnx", tmpdir(), opset);
    write_file(path, buf, n);
    free(buf);
    mf_onnx *m = mf_onnx_open(path, err, sizeof err);
    CHECK(m != NULL, "open opset %d: %s", opset, err);
    if (!m) continue;
    CHECK(mf_onnx_opset(m) == opset, "opset %lld", (long long)mf_onnx_opset(m));
    CHECK(mf_onnx_input_count(m) == 1 && !strcmp(mf_onnx_input_name(m, 0), "x"), "one input x");
    CHECK(mf_onnx_unsupported(m, NULL) == 0, "every op supported");
    mf_onnx_shape sh = {.name = "x", .ndim = 4, .dims = {NB, C, H, H}};
    mf_onnx_build_opts bo = {.n_inputs = 1, .inputs = &sh, .loss = MF_ONNX_LOSS_CE};
    mf_graph *g = mf_graph_init(MF_F32), *gn = mf_graph_init(MF_F32);
    mf_onnx_built bt;
    int rc = mf_onnx_build(m, g, &bo, &bt, err, sizeof err);
    CHECK(rc == 0, "build: %s", err);
    mf_tensor x, labels, logits;
    mf_tensor lossn = cnn_native(gn, &x, &labels, &logits);
    CHECK(!mf_graph_error(gn), "native: %s", mf_graph_error(gn));
    if (rc == 0) {
      CHECK(bt.n_params == 6 && bt.n_param_elems == OC * C * 9 + 3 * OC + K * OC * 16 + K, "parameters %lld in %lld tensors",
            (long long)bt.n_param_elems, (long long)bt.n_params);
      CHECK(bt.labels >= 0 && bt.n_outputs == 1 && mf_tensor_ndim(g, bt.outputs[0]) == 2 && mf_tensor_dim(g, bt.outputs[0], 1) == K,
            "logits [N,K] and labels");
      mf_train_opts o = mf_train_opts_default();
      o.threads = 1;
      o.debug_memory = 1;
      o.lr = 0.01;
      mf_session *s = mf_session_init(g, bt.loss, &o, err, sizeof err), *sn = mf_session_init(gn, lossn, &o, err, sizeof err);
      CHECK(s && sn, "sessions: %s", err);
      if (s && sn) {
        CHECK(mf_onnx_load_weights(m, &bt, s, err, sizeof err) == 0, "load weights: %s", err);
        const char *names[8] = {"conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                                "fc.weight", "fc.bias"};
        const float *vals[8] = {w.w1, w.b1, w.s, w.bb, w.mean, w.var, w.w2, w.b2};
        size_t cnt[8] = {OC * C * 9, OC, OC, OC, OC, OC, K * OC * 16, K};
        mf_tensor ids[8] = {1, 2, 3, 4, 5, 6, 7, 8}; /* the native graph's leaves in declaration order */
        for (int i = 0; i < 8; i++) CHECK(mf_session_write_param(sn, ids[i], vals[i], cnt[i]) == 0, "native %s", names[i]);
        mf_session_write_input(s, bt.inputs[0], xv, NB * C * H * H);
        mf_session_write_input(s, bt.labels, lab, NB);
        mf_session_write_input(sn, x, xv, NB * C * H * H);
        mf_session_write_input(sn, labels, lab, NB);
        mf_tensor fcw = by_name(g, "fc.weight"), cw = by_name(g, "conv1.weight"), rm = by_name(g, "bn1.running_mean");
        CHECK(fcw >= 0 && cw >= 0 && rm >= 0, "initializers keep their names");
        for (int step = 0; step < 2 && fcw >= 0 && cw >= 0 && rm >= 0; step++) {
          double l1 = mf_session_micro_step(s), l2 = mf_session_micro_step(sn);
          CHECK(isfinite(l1) && l1 == l2, "step %d: loss %.9g imported, %.9g native", step, l1, l2);
          static float g1[K * OC * 16], g2[K * OC * 16];
          CHECK(mf_session_read_grad(s, fcw, g1, K * OC * 16) == 0 && mf_session_read_grad(sn, 7, g2, K * OC * 16) == 0 &&
                !memcmp(g1, g2, sizeof g1), "step %d: fc.weight gradient equals the native graph's", step);
          mf_session_update(s);
          mf_session_update(sn);
        }
        /* parameters and running statistics after two updates: the same bits (same ops on the same data) */
        static float a1[OC * C * 9], a2[OC * C * 9];
        float r1[OC], r2[OC];
        if (cw >= 0 && rm >= 0) {
          mf_session_read(sn, 1, a2, OC * C * 9);
          mf_session_read(sn, 5, r2, OC);
          mf_session_read(s, cw, a1, OC * C * 9);
          mf_session_read(s, rm, r1, OC);
          CHECK(!memcmp(a1, a2, sizeof a1), "conv1.weight after two updates equals the native graph's");
          CHECK(!memcmp(r1, r2, sizeof r1) && memcmp(r1, w.mean, sizeof r1), "running mean updated alike");
        }
        for (int a = 0; a < MF_ARENA_COUNT; a++) {
          size_t planned = mf_plan_arena_bytes(mf_session_plan(s), (mf_arena_kind)a);
          CHECK(planned == mf_session_measured_bytes(s, (mf_arena_kind)a), "opset %d arena %s: planned %zu measured %zu", opset,
                mf_arena_name((mf_arena_kind)a), planned, mf_session_measured_bytes(s, (mf_arena_kind)a));
          CHECK(planned == mf_plan_arena_bytes(mf_session_plan(sn), (mf_arena_kind)a), "arena %s: imported %zu, native %zu",
                mf_arena_name((mf_arena_kind)a), planned, mf_plan_arena_bytes(mf_session_plan(sn), (mf_arena_kind)a));
        }
        /* evaluation uses the running statistics the file brought (updated by the two steps alike) */
        CHECK(mf_session_forward(s) == mf_session_forward(sn), "forward (eval) loss equal");
        /* the trained weights written back into the ONNX file load into a new session bit for bit */
        char sp[512];
        snprintf(sp, sizeof sp, "%s/trained%d.onnx", tmpdir(), opset);
        CHECK(mf_onnx_save(m, &bt, s, sp, err, sizeof err) == 0, "save: %s", err);
        mf_onnx *m2 = mf_onnx_open(sp, err, sizeof err);
        CHECK(m2 != NULL, "reopen: %s", err);
        if (m2) {
          mf_graph *g2 = mf_graph_init(MF_F32);
          mf_onnx_built b2;
          mf_session *s2 = NULL;
          if (mf_onnx_build(m2, g2, &bo, &b2, err, sizeof err) == 0 && (s2 = mf_session_init(g2, b2.loss, &o, err, sizeof err)) &&
              mf_onnx_load_weights(m2, &b2, s2, err, sizeof err) == 0) {
            const char *nms[4] = {"conv1.weight", "bn1.running_mean", "bn1.running_var", "fc.bias"};
            for (int k = 0; k < 4; k++) {
              static float u[OC * C * 9], v[OC * C * 9];
              mf_tensor t1 = by_name(g, nms[k]), t2 = by_name(g2, nms[k]);
              size_t cnt = t1 >= 0 ? (size_t)mf_tensor_numel(g, t1) : 0;
              CHECK(t1 >= 0 && t2 >= 0 && mf_session_read(s, t1, u, cnt) == 0 && mf_session_read(s2, t2, v, cnt) == 0 &&
                    !memcmp(u, v, cnt * sizeof *u), "%s after save and reload: the trained values", nms[k]);
            }
            mf_session_write_input(s2, b2.inputs[0], xv, NB * C * H * H);
            mf_session_write_input(s2, b2.labels, lab, NB);
            CHECK(mf_session_forward(s2) == mf_session_forward(s), "reloaded model: the same evaluation loss");
          } else
            CHECK(0, "reloaded model: %s", err);
          mf_session_free(s2);
          mf_onnx_built_free(&b2);
          mf_graph_free(g2);
          mf_onnx_close(m2);
        }
        unlink(sp);
      }
      mf_session_free(s);
      mf_session_free(sn);
      /* another batch size works: the flatten's shape arithmetic follows the input */
      mf_graph *g4 = mf_graph_init(MF_F32);
      mf_onnx_shape sh4 = {.name = "x", .ndim = 4, .dims = {5, C, H, H}};
      mf_onnx_build_opts bo4 = {.n_inputs = 1, .inputs = &sh4, .loss = MF_ONNX_LOSS_CE};
      mf_onnx_built bt4;
      CHECK(mf_onnx_build(m, g4, &bo4, &bt4, err, sizeof err) == 0 && mf_tensor_dim(g4, bt4.outputs[0], 0) == 5, "batch 5: %s", err);
      mf_onnx_built_free(&bt4);
      mf_graph_free(g4);
    }
    mf_onnx_built_free(&bt);
    mf_graph_free(g);
    mf_graph_free(gn);
    mf_onnx_close(m);
    unlink(path);
  }
}

/* what an error message must contain */
static void expect_open_error(const char *what, const void *buf, size_t n, const char *needle) {
  char path[512], err[1024] = "";
  snprintf(path, sizeof path, "%s/bad.onnx", tmpdir());
  write_file(path, buf, n);
  mf_onnx *m = mf_onnx_open(path, err, sizeof err);
  CHECK(m == NULL && strstr(err, needle) && strstr(err, path), "%s: expected an error with '%s', got '%s'", what, needle, err);
  mf_onnx_close(m);
  unlink(path);
}

static void expect_build_error(const char *what, const uint8_t *buf, size_t n, const mf_onnx_shape *sh, int nsh, int loss,
                               const char *n1, const char *n2) {
  char path[512], err[1024] = "";
  snprintf(path, sizeof path, "%s/bad.onnx", tmpdir());
  write_file(path, buf, n);
  mf_onnx *m = mf_onnx_open(path, err, sizeof err);
  CHECK(m != NULL, "%s: opens: %s", what, err);
  if (m) {
    mf_graph *g = mf_graph_init(MF_F32);
    mf_onnx_build_opts bo = {.n_inputs = nsh, .inputs = sh, .loss = (mf_onnx_loss)loss};
    mf_onnx_built bt;
    int rc = mf_onnx_build(m, g, &bo, &bt, err, sizeof err);
    CHECK(rc < 0 && strstr(err, n1) && (!n2 || strstr(err, n2)), "%s: expected an error with '%s' and '%s', got '%s'", what, n1,
          n2 ? n2 : "", rc < 0 ? err : "(built)");
    if (rc == 0) mf_onnx_built_free(&bt);
    mf_graph_free(g);
    mf_onnx_close(m);
  }
  unlink(path);
}

static void test_bad(void) {
  weights w;
  memset(&w, 0, sizeof w);
  size_t n;
  uint8_t *buf = cnn_model(&w, 13, 0, &n);
  /* not ONNX: text, a PNG header, random bytes; empty; truncated at several points */
  const char *text = "this is not a model\n";
  expect_open_error("text", text, strlen(text), "not an ONNX model");
  const uint8_t png[16] = {0x89, 'P', 'N', 'G', 13, 10, 26, 10, 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  expect_open_error("png", png, sizeof png, "not an ONNX model");
  expect_open_error("empty", "", 0, "empty");
  for (size_t cut = 1; cut < n; cut += n / 7 + 1) {
    char what[64];
    snprintf(what, sizeof what, "truncated at %zu of %zu", cut, n);
    expect_open_error(what, buf, cut, "");
  }
  free(buf);
  /* opsets outside 11-17 */
  buf = cnn_model(&w, 9, 0, &n);
  expect_open_error("opset 9", buf, n, "opset 9 is outside");
  free(buf);
  buf = cnn_model(&w, 18, 0, &n);
  expect_open_error("opset 18", buf, n, "opset 18 is outside");
  free(buf);
  /* shape conflicts and unknown inputs */
  buf = cnn_model(&w, 13, 1, &n);
  mf_onnx_shape sh = {.name = "x", .ndim = 4, .dims = {8, C, H, H}};
  expect_build_error("batch fixed at 2", buf, n, &sh, 1, MF_ONNX_LOSS_CE, "conflicts with the model's", "axis 0");
  mf_onnx_shape sh3 = {.name = "x", .ndim = 3, .dims = {C, H, H}};
  expect_build_error("rank", buf, n, &sh3, 1, MF_ONNX_LOSS_CE, "has 3 dims", "4");
  mf_onnx_shape shy = {.name = "y", .ndim = 4, .dims = {NB, C, H, H}};
  expect_build_error("unknown input", buf, n, &shy, 1, MF_ONNX_LOSS_CE, "no input 'y'", "'x'");
  expect_build_error("own loss of logits", buf, n, NULL, 0, MF_ONNX_LOSS_OWN, "--loss own", "logits");
  free(buf);
  buf = cnn_model(&w, 13, 0, &n);
  char ex[64]; /* the example shape: the model's dims with the symbolic batch as 8 */
  snprintf(ex, sizeof ex, "--input x=8x%dx%dx%d", C, H, H);
  expect_build_error("symbolic batch, no shape", buf, n, NULL, 0, MF_ONNX_LOSS_CE, "no fixed shape", ex);
  mf_onnx_shape shc = {.name = "x", .ndim = 4, .dims = {NB, 5, H, H}};
  expect_build_error("channels", buf, n, &shc, 1, MF_ONNX_LOSS_CE, "conflicts with the model", "axis 1 (5, the model fixes 3)");
  free(buf);
  /* an unsupported op and attribute: op type, node name, index */
  {
    mb b = {0};
    int64_t xd[2] = {4, 6};
    input(&b, "x", 2, xd);
    node(&b, "Relu", "r", "x", "a");
    node(&b, "Elu", "my_elu", "a", "e");
    node(&b, "Celu", "my_celu", "e", "y");
    output(&b, "y");
    buf = pack(&b, 13, &n);
    mb_free(&b);
    expect_build_error("Elu", buf, n, NULL, 0, MF_ONNX_LOSS_NONE, "node 1 'my_elu' (Elu)", "unsupported");
    char path[512], err[1024];
    snprintf(path, sizeof path, "%s/unsup.onnx", tmpdir());
    write_file(path, buf, n);
    mf_onnx *m = mf_onnx_open(path, err, sizeof err);
    char list[1024] = "";
    FILE *f = fmemopen(list, sizeof list, "w");
    CHECK(m && mf_onnx_unsupported(m, f) == 2, "two unsupported nodes");
    fclose(f);
    CHECK(strstr(list, "node 1 'my_elu' (Elu)") && strstr(list, "node 2 'my_celu' (Celu)"), "the list names both: %s", list);
    mf_onnx_close(m);
    unlink(path);
    free(buf);
  }
  {
    mb b = {0};
    int64_t xd[4] = {1, 2, 9, 9}, wd[4] = {2, 2, 3, 3};
    float wv[36] = {0};
    input(&b, "x", 4, xd);
    init_f(&b, "w", 4, wd, wv);
    Onnx__NodeProto *nd = node(&b, "Conv", "dil", "x,w", "y");
    int64_t dil[3] = {2, 1, 1}; /* dilations per axis of a 2-D conv are mapped (test_grad_conv.c); three of them are not */
    attr_ints(&b, nd, "dilations", 3, dil);
    output(&b, "y");
    buf = pack(&b, 13, &n);
    mb_free(&b);
    expect_build_error("dilation", buf, n, NULL, 0, MF_ONNX_LOSS_MSE, "node 0 'dil' (Conv)", "dilations");
    free(buf);
  }
  /* external data: missing file, short file, a path outside the model's folder */
  for (int k = 0; k < 3; k++) {
    mb b = {0};
    int64_t xd[2] = {2, 3}, wd[2] = {3, 3};
    input(&b, "x", 2, xd);
    Onnx__TensorProto *t = tensor(&b, "fc.weight", 1, 2, wd);
    t->has_data_location = 1;
    t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    t->external_data = A(&b, sizeof *t->external_data);
    Onnx__StringStringEntryProto *e = A(&b, sizeof *e);
    onnx__string_string_entry_proto__init(e);
    e->key = "location";
    e->value = k == 2 ? "../weights.bin" : "weights.bin";
    t->external_data[0] = e;
    t->n_external_data = 1;
    b.inits[b.ni++] = t;
    node(&b, "MatMul", "mm", "x,fc.weight", "y");
    output(&b, "y");
    buf = pack(&b, 13, &n);
    mb_free(&b);
    char wpath[512];
    snprintf(wpath, sizeof wpath, "%s/weights.bin", tmpdir());
    if (k == 1) write_file(wpath, "0123456789", 10); /* 10 bytes, 36 needed */
    expect_open_error(k == 0 ? "external missing" : k == 1 ? "external short" : "external outside", buf, n,
                      k == 0 ? "'fc.weight' keeps its data in" : k == 1 ? "too few" : "beside the model");
    unlink(wpath);
    free(buf);
  }
  /* inline data that does not match its dims */
  {
    mb b = {0};
    int64_t xd[2] = {2, 3}, wd[2] = {3, 3};
    float v[9] = {0};
    input(&b, "x", 2, xd);
    Onnx__TensorProto *t = init_f(&b, "fc.weight", 2, wd, v);
    t->n_float_data = 5;
    node(&b, "MatMul", "mm", "x,fc.weight", "y");
    output(&b, "y");
    buf = pack(&b, 13, &n);
    mb_free(&b);
    expect_open_error("short inline data", buf, n, "holds 5 values, its dims need 9");
    free(buf);
  }
}

/* torch's erf-form GELU, x * 0.5 written as Mul(Mul(x, Add(Erf(Div(x, sqrt 2)), one)), 0.5): with one = 1 it
 * becomes one GELU op; with one = 2 it is not GELU and stays the ops it is. Forward values against f64. */
static void test_gelu(void) {
  for (int variant = 0; variant < 2; variant++) {
    mb b = {0};
    int64_t xd[2] = {3, 7}, d0[1] = {0};
    input(&b, "x", 2, xd);
    float sq = 1.4142135381698608f, one = variant ? 2.0f : 1.0f, half = 0.5f;
    Onnx__NodeProto *nd;
    const char *cn[3] = {"c_sqrt2", "c_one", "c_half"};
    const float *cv[3] = {&sq, &one, &half};
    for (int k = 0; k < 3; k++) { /* Constant nodes, as torch writes them */
      nd = node(&b, "Constant", cn[k], "-", cn[k]);
      nd->n_input = 0;
      Onnx__AttributeProto *a = attr(&b, nd, "value");
      a->t = tensor(&b, cn[k], 1, 0, d0);
      a->t->float_data = A(&b, sizeof(float));
      a->t->float_data[0] = *cv[k];
      a->t->n_float_data = 1;
      a->has_type = 1;
      a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
    }
    node(&b, "Div", "div", "x,c_sqrt2", "d");
    node(&b, "Erf", "erf", "d", "e");
    node(&b, "Add", "add", "e,c_one", "a");
    node(&b, "Mul", "mul", "x,a", "m");
    node(&b, "Mul", "mul_1", "m,c_half", "y");
    output(&b, "y");
    size_t n;
    uint8_t *buf = pack(&b, 13, &n);
    mb_free(&b);
    char err[1024] = "";
    mf_onnx *m = mf_onnx_open_memory(buf, n, NULL, err, sizeof err);
    free(buf);
    CHECK(m != NULL, "gelu model: %s", err);
    if (!m) continue;
    mf_graph *g = mf_graph_init(MF_F64);
    mf_onnx_build_opts bo = {.loss = MF_ONNX_LOSS_NONE};
    mf_onnx_built bt;
    memset(err, 'x', sizeof err - 1); /* what the caller's buffer holds must not matter (it once made an Add fail) */
    err[sizeof err - 1] = 0;
    int rc = mf_onnx_build(m, g, &bo, &bt, err, sizeof err);
    CHECK(rc == 0, "gelu build: %.200s", err);
    if (rc == 0) {
      const mf_node *yn = &g->nodes[bt.outputs[0]];
      bool fused = yn->op == MF_OP_UNARY && yn->ip[0] == MF_UN_GELU;
      CHECK(fused == !variant, "variant %d: the output is %s GELU op", variant, fused ? "a" : "not a");
      mf_train_opts o = mf_train_opts_default();
      o.threads = 1;
      o.plan.training = 0;
      o.plan.n_keep = 1;
      o.plan.keep = bt.outputs;
      mf_session *s = mf_session_init(g, bt.outputs[0], &o, err, sizeof err);
      CHECK(s != NULL, "gelu session: %s", err);
      if (s) {
        float xv[21], y[21];
        for (int i = 0; i < 21; i++) xv[i] = (float)(i - 10) * 0.37f;
        mf_session_write_input(s, bt.inputs[0], xv, 21);
        CHECK(mf_onnx_load_weights(m, &bt, s, err, sizeof err) == 0, "constants: %s", err);
        mf_session_forward(s);
        mf_session_read(s, bt.outputs[0], y, 21);
        int bad = 0;
        for (int i = 0; i < 21; i++) {
          double x = xv[i], want = 0.5 * x * (one + erf(x / (double)sq));
          /* f64 graph, the output read as f32: within f32 rounding of the f64 value plus the f32 constant sqrt 2 */
          bad += !(fabs(y[i] - want) <= 0x1p-23 * fabs(want) + 0x1p-22 * fabs(x));
        }
        CHECK(bad == 0, "variant %d: %d values differ from 0.5 x (%g + erf(x / sqrt 2))", variant, bad, one);
      }
      mf_session_free(s);
      mf_onnx_built_free(&bt);
    }
    mf_graph_free(g);
    mf_onnx_close(m);
  }
}

int main(void) {
  test_gelu();
  test_cnn();
  test_bad();
  rmdir(tmpdir());
  return check_finish("test_onnx");
}
#else
int main(void) {
  char err[256];
  CHECK(mf_onnx_open("x.onnx", err, sizeof err) == NULL && strstr(err, "without ONNX support"), "a clear error: %s", err);
  printf("test_onnx: memfit built without ONNX support; only that message checked\n");
  return check_finish("test_onnx");
}
#endif
