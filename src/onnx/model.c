/* model.c — opening an ONNX model file (protobuf-c), checking it (opset, inputs, initializer data inline
 * or in external files) and reading tensor data; the table of op types the importer maps (build.c). */
#include "onnx/onnx.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int mf_onnx_loss_parse(const char *s) {
  if (!s) return -1;
  if (!strcmp(s, "cross-entropy") || !strcmp(s, "ce")) return MF_ONNX_LOSS_CE;
  if (!strcmp(s, "mse")) return MF_ONNX_LOSS_MSE;
  if (!strcmp(s, "own")) return MF_ONNX_LOSS_OWN;
  if (!strcmp(s, "none")) return MF_ONNX_LOSS_NONE;
  return -1;
}

#ifndef MEMFIT_HAVE_ONNX
/* built without protobuf-c or onnx.proto: every entry point says so */
mf_onnx *mf_onnx_open(const char *path, char *err, size_t errlen) {
  snprintf(err, errlen, "%s: memfit was built without ONNX support (install libprotobuf-c-dev, protobuf-c-compiler and "
                        "libonnx-dev, then rebuild)", path ? path : "?");
  return NULL;
}
mf_onnx *mf_onnx_open_memory(const void *data, size_t n, const char *base_dir, char *err, size_t errlen) {
  (void)data; (void)n; (void)base_dir;
  return mf_onnx_open("<memory>", err, errlen);
}
void mf_onnx_close(mf_onnx *m) { (void)m; }
int64_t mf_onnx_opset(const mf_onnx *m) { (void)m; return -1; }
int mf_onnx_input_count(const mf_onnx *m) { (void)m; return 0; }
const char *mf_onnx_input_name(const mf_onnx *m, int i) { (void)m; (void)i; return NULL; }
int mf_onnx_input_shape(const mf_onnx *m, int i, int *ndim, int64_t dims[MF_MAX_DIMS]) {
  (void)m; (void)i; (void)ndim; (void)dims;
  return -1;
}
int mf_onnx_unsupported(const mf_onnx *m, FILE *f) { (void)m; (void)f; return -1; }
int onnx_input_is_integer(const mf_onnx *m, int i) { (void)m; (void)i; return -1; }
int mf_onnx_build(const mf_onnx *m, mf_graph *g, const mf_onnx_build_opts *o, mf_onnx_built *out, char *err, size_t errlen) {
  (void)m; (void)g; (void)o;
  if (out) memset(out, 0, sizeof *out);
  snprintf(err, errlen, "memfit was built without ONNX support");
  return -1;
}
int mf_onnx_load_weights(const mf_onnx *m, const mf_onnx_built *b, mf_session *s, char *err, size_t errlen) {
  (void)m; (void)b; (void)s;
  snprintf(err, errlen, "memfit was built without ONNX support");
  return -1;
}
void mf_onnx_built_free(mf_onnx_built *b) { (void)b; }
int mf_onnx_save(const mf_onnx *m, const mf_onnx_built *b, mf_session *s, const char *path, char *err, size_t errlen) {
  (void)m; (void)b; (void)s; (void)path;
  snprintf(err, errlen, "memfit was built without ONNX support");
  return -1;
}
#else

size_t onnx_elem_size(int et) {
  switch (et) {
  case ONNX_FLOAT: case ONNX_INT32: case ONNX_UINT32: return 4;
  case ONNX_UINT8: case ONNX_INT8: case ONNX_BOOL: return 1;
  case ONNX_UINT16: case ONNX_INT16: case ONNX_FLOAT16: case ONNX_BFLOAT16: return 2;
  case ONNX_INT64: case ONNX_DOUBLE: case ONNX_UINT64: return 8;
  default: return 0;
  }
}

const char *onnx_elem_name(int et) {
  static const char *names[] = {"undefined", "float", "uint8", "int8", "uint16", "int16", "int32", "int64", "string",
                                "bool", "float16", "double", "uint32", "uint64", "complex64", "complex128", "bfloat16"};
  return et >= 0 && et <= 16 ? names[et] : "unknown";
}

int64_t onnx_tensor_numel(const Onnx__TensorProto *t) {
  int64_t n = 1;
  if (t->n_dims > ONNX_MAX_RANK) return -1;
  for (size_t i = 0; i < t->n_dims; i++) {
    if (t->dims[i] < 0 || t->dims[i] > ((int64_t)1 << 40)) return -1;
    if (t->dims[i] && n > ((int64_t)1 << 40) / t->dims[i]) return -1;
    n *= t->dims[i];
  }
  return n;
}

const Onnx__AttributeProto *onnx_attr(const Onnx__NodeProto *n, const char *name) {
  for (size_t i = 0; i < n->n_attribute; i++)
    if (n->attribute[i]->name && !strcmp(n->attribute[i]->name, name)) return n->attribute[i];
  return NULL;
}

/* external data: the file (relative to the model's folder, no "..") and the byte range */
typedef struct ext_ref { char file[2048]; int64_t offset, length; } ext_ref;

static int ext_parse(const mf_onnx *m, const Onnx__TensorProto *t, ext_ref *r, char *err, size_t errlen) {
  const char *loc = NULL;
  r->offset = 0;
  r->length = -1;
  for (size_t i = 0; i < t->n_external_data; i++) {
    const Onnx__StringStringEntryProto *e = t->external_data[i];
    if (!e->key || !e->value) continue;
    if (!strcmp(e->key, "location")) loc = e->value;
    else if (!strcmp(e->key, "offset") || !strcmp(e->key, "length")) {
      char *end;
      errno = 0;
      long long v = strtoll(e->value, &end, 10);
      if (errno || end == e->value || *end || v < 0) {
        snprintf(err, errlen, "%s: initializer '%s': external data %s '%s' is not a byte count", m->path, t->name, e->key,
                 e->value);
        return -1;
      }
      if (!strcmp(e->key, "offset")) r->offset = v;
      else r->length = v;
    }
  }
  if (!loc || !loc[0]) {
    snprintf(err, errlen, "%s: initializer '%s' says its data is external but names no location", m->path, t->name);
    return -1;
  }
  if (loc[0] == '/' || strstr(loc, "..")) {
    snprintf(err, errlen, "%s: initializer '%s': external data location '%s' must be a file beside the model", m->path,
             t->name, loc);
    return -1;
  }
  if (!m->dir[0]) {
    snprintf(err, errlen, "%s: initializer '%s' keeps its data in '%s', but a model read from memory has no folder", m->path,
             t->name, loc);
    return -1;
  }
  snprintf(r->file, sizeof r->file, "%s/%s", m->dir, loc);
  return 0;
}

/* the bytes of a tensor's raw data: inline raw_data, or loaded from its external file into *owned */
static int tensor_raw(const mf_onnx *m, const Onnx__TensorProto *t, size_t need, const uint8_t **p, uint8_t **owned,
                      char *err, size_t errlen) {
  *owned = NULL;
  if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
    ext_ref r;
    if (ext_parse(m, t, &r, err, errlen) < 0) return -1;
    FILE *f = fopen(r.file, "rb");
    if (!f) {
      snprintf(err, errlen, "%s: initializer '%s' keeps its data in '%s', which cannot be opened (%s)", m->path, t->name,
               r.file, strerror(errno));
      return -1;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    if (r.length >= 0 && (size_t)r.length != need) {
      fclose(f);
      snprintf(err, errlen, "%s: initializer '%s': external data length %lld, its dims need %zu bytes", m->path, t->name,
               (long long)r.length, need);
      return -1;
    }
    if (size < 0 || r.offset > (int64_t)size || (size_t)(size - r.offset) < need) {
      fclose(f);
      snprintf(err, errlen, "%s: initializer '%s': '%s' holds %ld bytes, too few for %zu bytes at offset %lld", m->path,
               t->name, r.file, size, need, (long long)r.offset);
      return -1;
    }
    if (!p) { fclose(f); return 0; } /* a check only */
    *owned = malloc(need ? need : 1);
    if (!*owned) { fclose(f); snprintf(err, errlen, "onnx: out of host memory"); return -1; }
    fseek(f, r.offset, SEEK_SET);
    size_t got = fread(*owned, 1, need, f);
    fclose(f);
    if (got != need) {
      free(*owned);
      *owned = NULL;
      snprintf(err, errlen, "%s: initializer '%s': could not read %zu bytes from '%s'", m->path, t->name, need, r.file);
      return -1;
    }
    *p = *owned;
    return 0;
  }
  if (t->raw_data.len != need) {
    snprintf(err, errlen, "%s: tensor '%s': raw data of %zu bytes, its dims need %zu", m->path, t->name ? t->name : "",
             t->raw_data.len, need);
    return -1;
  }
  if (p) *p = t->raw_data.data;
  return 0;
}

static bool has_raw(const Onnx__TensorProto *t) {
  return t->has_raw_data || (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL);
}

/* number of values in the typed field the type uses */
static size_t typed_count(const Onnx__TensorProto *t, int et) {
  switch (et) {
  case ONNX_FLOAT: return t->n_float_data;
  case ONNX_DOUBLE: return t->n_double_data;
  case ONNX_INT64: return t->n_int64_data;
  case ONNX_UINT32: case ONNX_UINT64: return t->n_uint64_data;
  default: return t->n_int32_data; /* int32, int16, int8, uint16, uint8, bool, float16, bfloat16 */
  }
}

int onnx_tensor_check(const mf_onnx *m, const Onnx__TensorProto *t, const char *what, char *err, size_t errlen) {
  const char *nm = t->name ? t->name : "";
  int et = t->has_data_type ? t->data_type : 0;
  int64_t n = onnx_tensor_numel(t);
  if (n < 0) {
    snprintf(err, errlen, "%s: %s '%s' has a negative, too large or too many (%zu) dims", m->path, what, nm, t->n_dims);
    return -1;
  }
  if (et == ONNX_STRING) return 0; /* never read as numbers */
  size_t es = onnx_elem_size(et);
  if (!es) {
    snprintf(err, errlen, "%s: %s '%s' has element type %s (%d), which memfit does not read", m->path, what, nm,
             onnx_elem_name(et), et);
    return -1;
  }
  if (has_raw(t)) return tensor_raw(m, t, (size_t)n * es, NULL, &(uint8_t *){NULL}, err, errlen);
  size_t c = typed_count(t, et);
  if ((int64_t)c != n) {
    snprintf(err, errlen, "%s: %s '%s' holds %zu values, its dims need %lld", m->path, what, nm, c, (long long)n);
    return -1;
  }
  return 0;
}

static double half_to_double(uint16_t h) {
  int e = (h >> 10) & 31, f = h & 1023;
  double v = e == 0 ? ldexp(f, -24) : e == 31 ? (f ? NAN : INFINITY) : ldexp(f + 1024, e - 25);
  return (h >> 15) ? -v : v;
}
static double bf16_to_double(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

int onnx_tensor_read(const mf_onnx *m, const Onnx__TensorProto *t, double *out, int64_t n, char *err, size_t errlen) {
  int et = t->has_data_type ? t->data_type : 0;
  if (onnx_tensor_numel(t) != n) {
    snprintf(err, errlen, "%s: tensor '%s': %lld values asked, it has other dims", m->path, t->name ? t->name : "", (long long)n);
    return -1;
  }
  size_t es = onnx_elem_size(et);
  if (!es || et == ONNX_STRING) {
    snprintf(err, errlen, "%s: tensor '%s' has element type %s, which memfit does not read", m->path, t->name ? t->name : "",
             onnx_elem_name(et));
    return -1;
  }
  if (has_raw(t)) {
    const uint8_t *p;
    uint8_t *owned;
    if (tensor_raw(m, t, (size_t)n * es, &p, &owned, err, errlen) < 0) return -1;
    for (int64_t i = 0; i < n; i++) {
      const uint8_t *q = p + (size_t)i * es;
      switch (et) { /* little-endian, as ONNX stores raw data */
      case ONNX_FLOAT: { float v; memcpy(&v, q, 4); out[i] = v; } break;
      case ONNX_DOUBLE: { double v; memcpy(&v, q, 8); out[i] = v; } break;
      case ONNX_INT64: { int64_t v; memcpy(&v, q, 8); out[i] = (double)v; } break;
      case ONNX_UINT64: { uint64_t v; memcpy(&v, q, 8); out[i] = (double)v; } break;
      case ONNX_INT32: { int32_t v; memcpy(&v, q, 4); out[i] = v; } break;
      case ONNX_UINT32: { uint32_t v; memcpy(&v, q, 4); out[i] = v; } break;
      case ONNX_INT16: { int16_t v; memcpy(&v, q, 2); out[i] = v; } break;
      case ONNX_UINT16: { uint16_t v; memcpy(&v, q, 2); out[i] = v; } break;
      case ONNX_FLOAT16: { uint16_t v; memcpy(&v, q, 2); out[i] = half_to_double(v); } break;
      case ONNX_BFLOAT16: { uint16_t v; memcpy(&v, q, 2); out[i] = bf16_to_double(v); } break;
      case ONNX_INT8: out[i] = (int8_t)q[0]; break;
      default: out[i] = q[0]; break; /* uint8, bool */
      }
    }
    free(owned);
    return 0;
  }
  if ((int64_t)typed_count(t, et) != n) {
    snprintf(err, errlen, "%s: tensor '%s' holds %zu values, its dims need %lld", m->path, t->name ? t->name : "",
             typed_count(t, et), (long long)n);
    return -1;
  }
  for (int64_t i = 0; i < n; i++) {
    switch (et) {
    case ONNX_FLOAT: out[i] = t->float_data[i]; break;
    case ONNX_DOUBLE: out[i] = t->double_data[i]; break;
    case ONNX_INT64: out[i] = (double)t->int64_data[i]; break;
    case ONNX_UINT32: case ONNX_UINT64: out[i] = (double)t->uint64_data[i]; break;
    case ONNX_FLOAT16: out[i] = half_to_double((uint16_t)t->int32_data[i]); break;
    case ONNX_BFLOAT16: out[i] = bf16_to_double((uint16_t)t->int32_data[i]); break;
    default: out[i] = t->int32_data[i]; break;
    }
  }
  return 0;
}

static bool is_initializer(const Onnx__GraphProto *g, const char *name) {
  for (size_t i = 0; i < g->n_initializer; i++)
    if (g->initializer[i]->name && !strcmp(g->initializer[i]->name, name)) return true;
  return false;
}

static mf_onnx *onnx_check(mf_onnx *m, char *err, size_t errlen) {
  Onnx__ModelProto *mp = m->model;
  if (!mp->has_ir_version || !mp->graph) {
    snprintf(err, errlen, "%s: not an ONNX model (a protobuf without %s)", m->path,
             !mp->has_ir_version ? "an IR version" : "a graph");
    goto fail;
  }
  m->graph = mp->graph;
  m->opset = -1;
  for (size_t i = 0; i < mp->n_opset_import; i++) {
    const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
    if (!o->domain || !o->domain[0] || !strcmp(o->domain, "ai.onnx")) m->opset = o->has_version ? o->version : -1;
  }
  if (m->opset < 11 || m->opset > 17) {
    if (m->opset < 0) snprintf(err, errlen, "%s: the model imports no opset of the default ONNX domain", m->path);
    else
      snprintf(err, errlen, "%s: opset %lld is outside the versions memfit reads (11-17); export again with "
                            "torch.onnx.export(..., opset_version=13)", m->path, (long long)m->opset);
    goto fail;
  }
  Onnx__GraphProto *g = m->graph;
  for (size_t i = 0; i < g->n_initializer; i++) {
    if (!g->initializer[i]->name || !g->initializer[i]->name[0]) {
      snprintf(err, errlen, "%s: initializer %zu has no name", m->path, i);
      goto fail;
    }
    if (onnx_tensor_check(m, g->initializer[i], "initializer", err, errlen) < 0) goto fail;
  }
  if (g->n_sparse_initializer) {
    snprintf(err, errlen, "%s: the model has sparse initializers, which memfit does not read", m->path);
    goto fail;
  }
  m->n_in = 0;
  for (size_t i = 0; i < g->n_input; i++) {
    const char *nm = g->input[i]->name;
    if (!nm || !nm[0]) {
      snprintf(err, errlen, "%s: graph input %zu has no name", m->path, i);
      goto fail;
    }
    if (is_initializer(g, nm)) continue;
    if (m->n_in == MF_ONNX_MAX_IO) {
      snprintf(err, errlen, "%s: more than %d graph inputs", m->path, MF_ONNX_MAX_IO);
      goto fail;
    }
    m->in_idx[m->n_in++] = (int)i;
  }
  for (size_t i = 0; i < g->n_node; i++) {
    const Onnx__NodeProto *n = g->node[i];
    if (!n->op_type || !n->op_type[0]) {
      snprintf(err, errlen, "%s: node %zu '%s' has no op type", m->path, i, n->name ? n->name : "");
      goto fail;
    }
    for (size_t k = 0; k < n->n_input; k++)
      if (!n->input[k]) { snprintf(err, errlen, "%s: node %zu has a missing input name", m->path, i); goto fail; }
    for (size_t k = 0; k < n->n_output; k++)
      if (!n->output[k]) { snprintf(err, errlen, "%s: node %zu has a missing output name", m->path, i); goto fail; }
  }
  return m;
fail:
  mf_onnx_close(m);
  return NULL;
}

mf_onnx *mf_onnx_open_memory(const void *data, size_t n, const char *base_dir, char *err, size_t errlen) {
  mf_onnx *m = calloc(1, sizeof *m);
  if (!m) { snprintf(err, errlen, "onnx: out of host memory"); return NULL; }
  snprintf(m->path, sizeof m->path, "<memory>");
  snprintf(m->dir, sizeof m->dir, "%s", base_dir ? base_dir : "");
  if (n == 0) {
    snprintf(err, errlen, "%s: empty input, not an ONNX model", m->path);
    free(m);
    return NULL;
  }
  m->model = onnx__model_proto__unpack(NULL, n, data);
  if (!m->model) {
    snprintf(err, errlen, "%s: not an ONNX model, or a truncated or corrupted one (the protobuf does not parse)", m->path);
    free(m);
    return NULL;
  }
  return onnx_check(m, err, errlen);
}

mf_onnx *mf_onnx_open(const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) { snprintf(err, errlen, "%s: cannot open (%s)", path, strerror(errno)); return NULL; }
  uint8_t *buf = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    if (n == cap) {
      size_t nc = cap ? cap * 2 : 1 << 20;
      uint8_t *nb = realloc(buf, nc);
      if (!nb) { free(buf); fclose(f); snprintf(err, errlen, "%s: out of host memory reading it", path); return NULL; }
      buf = nb;
      cap = nc;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  int rerr = ferror(f);
  fclose(f);
  if (rerr) { free(buf); snprintf(err, errlen, "%s: read error", path); return NULL; }
  char dir[1024];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = 0;
  else snprintf(dir, sizeof dir, ".");
  mf_onnx *m = calloc(1, sizeof *m);
  if (!m) { free(buf); snprintf(err, errlen, "onnx: out of host memory"); return NULL; }
  snprintf(m->path, sizeof m->path, "%s", path);
  snprintf(m->dir, sizeof m->dir, "%s", dir);
  if (n == 0) {
    free(buf);
    free(m);
    snprintf(err, errlen, "%s: empty file, not an ONNX model", path);
    return NULL;
  }
  m->model = onnx__model_proto__unpack(NULL, n, buf);
  free(buf);
  if (!m->model) {
    snprintf(err, errlen, "%s: not an ONNX model, or a truncated or corrupted one (the protobuf does not parse)", path);
    free(m);
    return NULL;
  }
  return onnx_check(m, err, errlen);
}

void mf_onnx_close(mf_onnx *m) {
  if (!m) return;
  if (m->model) onnx__model_proto__free_unpacked(m->model, NULL);
  free(m);
}

int64_t mf_onnx_opset(const mf_onnx *m) { return m ? m->opset : -1; }
int mf_onnx_input_count(const mf_onnx *m) { return m ? m->n_in : 0; }
const char *mf_onnx_input_name(const mf_onnx *m, int i) {
  return m && i >= 0 && i < m->n_in ? m->graph->input[m->in_idx[i]]->name : NULL;
}
int mf_onnx_input_shape(const mf_onnx *m, int i, int *ndim, int64_t dims[MF_MAX_DIMS]) {
  if (!m || i < 0 || i >= m->n_in) return -1;
  const Onnx__ValueInfoProto *v = m->graph->input[m->in_idx[i]];
  *ndim = 0;
  if (!v->type || v->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !v->type->tensor_type ||
      !v->type->tensor_type->shape)
    return 0;
  const Onnx__TensorShapeProto *s = v->type->tensor_type->shape;
  if (s->n_dim > MF_MAX_DIMS) return -1;
  *ndim = (int)s->n_dim;
  for (size_t k = 0; k < s->n_dim; k++)
    dims[k] = s->dim[k]->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ? s->dim[k]->dim_value : -1;
  return 0;
}

int onnx_input_is_integer(const mf_onnx *m, int i) {
  if (!m || i < 0 || i >= m->n_in) return -1;
  const Onnx__ValueInfoProto *v = m->graph->input[m->in_idx[i]];
  if (!v->type || v->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !v->type->tensor_type) return 0;
  int et = v->type->tensor_type->elem_type;
  return et == ONNX_INT64 || et == ONNX_INT32;
}

/* op types build.c maps (some attributes still refused there, naming them) */
static const char *const supported_ops[] = {
  "Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Neg", "Pow", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Exp", "Log",
  "Clip", "HardSigmoid", "HardSwish", "Identity", "Dropout", "BatchNormalization", "InstanceNormalization", "MaxPool",
  "AveragePool", "GlobalAveragePool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice",
  "Gather", "ReduceMean", "ReduceSum", "Upsample", "Resize", "Constant", "Shape", "ConstantOfShape", "Cast", "Softplus",
  "Sum", "Mean", "Pad", "Softmax", "LogSoftmax", "SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss", "Sqrt", "Erf", "LayerNormalization", "Expand",
  /* folded when their inputs are known at import (shape arithmetic) */
  "Equal", "Where", "Range", "Floor", "Ceil", "Less", "Greater", "Max", "Min", "Not", "Abs",
};

const char *onnx_op_unsupported(const Onnx__NodeProto *n) {
  if (n->domain && n->domain[0] && strcmp(n->domain, "ai.onnx")) return "an op of another domain";
  for (size_t i = 0; i < sizeof supported_ops / sizeof *supported_ops; i++)
    if (!strcmp(n->op_type, supported_ops[i])) return NULL;
  return "memfit has no mapping for this op";
}

int mf_onnx_unsupported(const mf_onnx *m, FILE *f) {
  if (!m) return -1;
  int count = 0;
  for (size_t i = 0; i < m->graph->n_node; i++) {
    const Onnx__NodeProto *n = m->graph->node[i];
    const char *why = onnx_op_unsupported(n);
    if (!why) continue;
    count++;
    if (f)
      fprintf(f, "node %zu '%s' (%s%s%s): %s\n", i, n->name ? n->name : "", n->domain && n->domain[0] ? n->domain : "",
              n->domain && n->domain[0] ? "." : "", n->op_type, why);
  }
  return count;
}
#endif
