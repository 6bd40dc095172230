/* test_onnx_conformance.c — ONNX's own node tests (Debian's libonnx-testdata) through the importer: every
 * test whose model opens and imports runs forward on memfit's CPU backend and its outputs are compared with
 * the expected ones (tolerance of ONNX's backend test runner: rtol 1e-3, atol 1e-7). Prints the counts
 * (supported / passed / failed / skipped, and why skipped); nothing supported may fail. MEMFIT_ONNX_VERBOSE=1
 * names each skipped test and the reason. Skips with a message when the package is not installed. */
#include "check.h"
#include "memfit.h"
#ifdef MEMFIT_HAVE_ONNX
#include "onnx/onnx.h"
#include <dirent.h>

#define NODE_DIR "/usr/share/libonnx-testdata/data/node"

/* a .pb TensorProto: dims and values as doubles (via the importer's reader); NULL when unreadable */
typedef struct pb { Onnx__TensorProto *t; double *v; int64_t n; int et; } pb;
static int pb_read(const mf_onnx *m, const char *path, pb *out) {
  memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *buf = malloc(sz > 0 ? (size_t)sz : 1);
  size_t got = buf ? fread(buf, 1, (size_t)sz, f) : 0;
  fclose(f);
  if (!buf || got != (size_t)sz) { free(buf); return -1; }
  out->t = onnx__tensor_proto__unpack(NULL, got, buf);
  free(buf);
  if (!out->t) return -1;
  out->et = out->t->has_data_type ? out->t->data_type : 0;
  out->n = onnx_tensor_numel(out->t);
  char err[256];
  if (out->n < 0 || !onnx_elem_size(out->et) || out->et == ONNX_STRING) return -1;
  out->v = malloc((size_t)(out->n ? out->n : 1) * sizeof *out->v);
  if (!out->v || onnx_tensor_read(m, out->t, out->v, out->n, err, sizeof err) < 0) return -1;
  return 0;
}
static void pb_free(pb *p) {
  if (p->t) onnx__tensor_proto__free_unpacked(p->t, NULL);
  free(p->v);
  memset(p, 0, sizeof *p);
}

enum { R_OPSET = 0, R_UNSUPPORTED_OP, R_REFUSED, R_TYPES, R_FOLDED, R_OTHER, R_COUNT };
static const char *reason_names[R_COUNT] = {"opset outside 11-17", "an op memfit does not map",
                                            "an attribute, shape or input form the importer refuses",
                                            "non-float inputs or outputs", "every output folded at import (nothing runs)",
                                            "other (unreadable test data, planning)"};

static int verbose;

/* The model at path with the graph inputs after the first turned into initializers holding the test's values (in[1..]):
 * for a node test whose op reads a parameter from a graph input (Resize's scales or sizes, Pad's pads, a Conv's
 * weight), which memfit needs at import. The expected outputs do not change; the op is then run as a model would
 * have it (a constant or a trained parameter). NULL with err when the rewrite fails. */
static mf_onnx *open_lifted(const mf_onnx *m0, const char *path, const char *dir, const pb *in, int nin, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) { snprintf(err, errlen, "cannot read %.900s", path); return NULL; }
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *buf = malloc(sz > 0 ? (size_t)sz : 1);
  size_t got = buf ? fread(buf, 1, (size_t)sz, f) : 0;
  fclose(f);
  Onnx__ModelProto *mp = buf && got == (size_t)sz ? onnx__model_proto__unpack(NULL, got, buf) : NULL;
  free(buf);
  if (!mp || !mp->graph) { if (mp) onnx__model_proto__free_unpacked(mp, NULL); snprintf(err, errlen, "cannot unpack %.900s", path); return NULL; }
  Onnx__GraphProto *gp = mp->graph;
  size_t n_in0 = gp->n_input, n_init0 = gp->n_initializer;
  Onnx__ValueInfoProto **in0 = gp->input;
  Onnx__TensorProto **init0 = gp->initializer;
  Onnx__ValueInfoProto **ni = malloc((n_in0 + 1) * sizeof *ni);
  Onnx__TensorProto **nt = malloc((n_init0 + (size_t)nin + 1) * sizeof *nt);
  char *names[MF_ONNX_MAX_IO] = {0};
  size_t kin = 0, kt = n_init0;
  for (size_t i = 0; i < n_init0; i++) nt[i] = init0[i];
  for (size_t i = 0; i < n_in0; i++) {
    int lift = -1;
    for (int k = 1; k < nin; k++)
      if (m0->in_idx[k] == (int)i) lift = k;
    if (lift < 0) { ni[kin++] = in0[i]; continue; }
    names[lift] = in[lift].t->name; /* restored below: the pb owns it */
    in[lift].t->name = in0[i]->name;
    nt[kt++] = in[lift].t;
  }
  gp->input = ni, gp->n_input = kin, gp->initializer = nt, gp->n_initializer = kt;
  size_t n = onnx__model_proto__get_packed_size(mp);
  uint8_t *out = malloc(n ? n : 1);
  onnx__model_proto__pack(mp, out);
  gp->input = in0, gp->n_input = n_in0, gp->initializer = init0, gp->n_initializer = n_init0;
  for (int k = 1; k < nin; k++)
    if (in[k].t && in[k].t->name != names[k] && names[k] != NULL) in[k].t->name = names[k];
  free(ni);
  free(nt);
  onnx__model_proto__free_unpacked(mp, NULL);
  mf_onnx *m = mf_onnx_open_memory(out, n, dir, err, errlen);
  free(out);
  return m;
}

/* runs one node test; returns 1 passed, 0 failed, -1 - reason skipped. lift: the inputs after the first become
 * initializers (open_lifted) */
static int run_test(const char *dir, const char *name, int lift, char *why, size_t whylen) {
  char path[1200], err[1024] = "";
  snprintf(path, sizeof path, "%s/model.onnx", dir);
  mf_onnx *m = mf_onnx_open(path, err, sizeof err);
  if (!m) { snprintf(why, whylen, "%s", err); return -1 - (strstr(err, "opset") ? R_OPSET : R_OTHER); }
  int rc = -1 - R_OTHER;
  pb in[MF_ONNX_MAX_IO], outp[MF_ONNX_MAX_IO];
  memset(in, 0, sizeof in);
  memset(outp, 0, sizeof outp);
  mf_graph *g = NULL;
  mf_session *s = NULL;
  mf_onnx_built b;
  memset(&b, 0, sizeof b);
  if (mf_onnx_unsupported(m, NULL) > 0) {
    char list[512] = "";
    FILE *f = fmemopen(list, sizeof list - 1, "w");
    mf_onnx_unsupported(m, f);
    fclose(f);
    snprintf(why, whylen, "%s", list);
    rc = -1 - R_UNSUPPORTED_OP;
    goto out;
  }
  int nin = mf_onnx_input_count(m);
  mf_onnx_shape sh[MF_ONNX_MAX_IO];
  mf_dtype act = MF_F32;
  for (int i = 0; i < nin; i++) {
    snprintf(path, sizeof path, "%s/test_data_set_0/input_%d.pb", dir, i);
    if (pb_read(m, path, &in[i]) < 0) { snprintf(why, whylen, "input %d unreadable", i); goto out; }
    int et = in[i].et;
    if (et != ONNX_FLOAT && et != ONNX_DOUBLE && et != ONNX_INT64 && et != ONNX_INT32) {
      snprintf(why, whylen, "input %d of type %s", i, onnx_elem_name(et));
      rc = -1 - R_TYPES;
      goto out;
    }
    if (et == ONNX_DOUBLE) act = MF_F64;
    sh[i].name = mf_onnx_input_name(m, i);
    sh[i].ndim = (int)in[i].t->n_dims;
    if (in[i].n == 0 && i > 0 && !lift) { /* an empty optional parameter (Resize's roi): only as an initializer */
      snprintf(why, whylen, "input %d is empty: it must be known at import", i);
      rc = -1 - R_REFUSED;
      goto out;
    }
    if (sh[i].ndim > MF_MAX_DIMS || (in[i].n == 0 && i == 0)) { snprintf(why, whylen, "input %d: %d dims or empty", i, sh[i].ndim); rc = -1 - R_REFUSED; goto out; }
    for (int k = 0; k < sh[i].ndim; k++) sh[i].dims[k] = in[i].t->dims[k];
    if (sh[i].ndim == 0) { sh[i].ndim = 1; sh[i].dims[0] = 1; }
  }
  if (lift) {
    if (nin < 2) { snprintf(why, whylen, "nothing to lift"); rc = -1 - R_REFUSED; goto out; }
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    mf_onnx *m2 = open_lifted(m, path, dir, in, nin, err, sizeof err);
    if (!m2) { snprintf(why, whylen, "lifting the inputs: %s", err); goto out; }
    mf_onnx_close(m);
    m = m2;
    nin = 1; /* input 0 stays an input; its pb and shape are in[0], sh[0] */
    sh[0].name = mf_onnx_input_name(m, 0);
    if (!sh[0].name) { snprintf(why, whylen, "no input left after lifting"); goto out; }
  }
  g = mf_graph_init(act);
  mf_onnx_build_opts bo = {.n_inputs = nin, .inputs = sh, .loss = MF_ONNX_LOSS_NONE};
  if (mf_onnx_build(m, g, &bo, &b, err, sizeof err) < 0) {
    snprintf(why, whylen, "%s", err);
    rc = -1 - (strstr(err, "is a constant, not computed") ? R_FOLDED : R_REFUSED);
    goto out;
  }
  int nout = b.n_outputs;
  for (int i = 0; i < nout; i++) {
    snprintf(path, sizeof path, "%s/test_data_set_0/output_%d.pb", dir, i);
    if (pb_read(m, path, &outp[i]) < 0) { snprintf(why, whylen, "output %d unreadable", i); goto out; }
    if (outp[i].et != ONNX_FLOAT && outp[i].et != ONNX_DOUBLE) {
      snprintf(why, whylen, "output %d of type %s", i, onnx_elem_name(outp[i].et));
      rc = -1 - R_TYPES;
      goto out;
    }
    if (b.outputs[i] < 0) { snprintf(why, whylen, "output %d folded to a constant", i); rc = -1 - R_FOLDED; goto out; }
  }
  mf_train_opts o = mf_train_opts_default();
  o.threads = 1;
  o.plan.training = 0;
  o.plan.n_keep = nout;
  o.plan.keep = b.outputs;
  s = mf_session_init(g, b.outputs[0], &o, err, sizeof err);
  if (!s) { snprintf(why, whylen, "session: %s", err); goto out; }
  if (mf_onnx_load_weights(m, &b, s, err, sizeof err) < 0) { snprintf(why, whylen, "weights: %s", err); goto out; }
  for (int i = 0; i < nin; i++) {
    float *f = malloc((size_t)in[i].n * sizeof *f);
    for (int64_t k = 0; k < in[i].n; k++) f[k] = (float)in[i].v[k];
    int w = mf_session_write_input(s, b.inputs[i], f, (size_t)in[i].n);
    free(f);
    if (w != 0) { snprintf(why, whylen, "input %d not written", i); goto out; }
  }
  if (act == MF_F64) { snprintf(why, whylen, "double inputs (the session stages f32)"); rc = -1 - R_TYPES; goto out; }
  mf_session_forward(s);
  rc = 1;
  for (int i = 0; i < nout && rc == 1; i++) {
    int64_t n = mf_tensor_numel(g, b.outputs[i]);
    if (n != outp[i].n) {
      snprintf(why, whylen, "output %d: %lld values, expected %lld", i, (long long)n, (long long)outp[i].n);
      rc = 0;
      break;
    }
    float *y = malloc((size_t)n * sizeof *y);
    mf_session_read(s, b.outputs[i], y, (size_t)n);
    for (int64_t k = 0; k < n; k++) {
      double e = outp[i].v[k], v = y[k];
      bool same = (isnan(e) && isnan(v)) || (isinf(e) && e == v) || fabs(v - e) <= 1e-7 + 1e-3 * fabs(e);
      if (!same) {
        snprintf(why, whylen, "output %d value %lld: %.9g, expected %.9g", i, (long long)k, v, e);
        rc = 0;
        break;
      }
    }
    free(y);
  }
out:
  (void)name;
  for (int i = 0; i < MF_ONNX_MAX_IO; i++) { pb_free(&in[i]); pb_free(&outp[i]); }
  mf_session_free(s);
  mf_onnx_built_free(&b);
  mf_graph_free(g);
  mf_onnx_close(m);
  return rc;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(void) {
  verbose = getenv("MEMFIT_ONNX_VERBOSE") && atoi(getenv("MEMFIT_ONNX_VERBOSE"));
  DIR *d = opendir(NODE_DIR);
  if (!d) {
    printf("test_onnx_conformance: SKIP (%s is missing: install libonnx-testdata, scripts/deps.sh)\n", NODE_DIR);
    return 0;
  }
  char **names = NULL;
  int nn = 0, cap = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    if (nn == cap) { cap = cap ? 2 * cap : 1024; names = realloc(names, (size_t)cap * sizeof *names); }
    names[nn++] = strdup(e->d_name);
  }
  closedir(d);
  qsort(names, (size_t)nn, sizeof *names, cmp_str);
  int passed = 0, failed = 0, skipped[R_COUNT] = {0}, lifted = 0;
  for (int i = 0; i < nn; i++) {
    char dir[1100], why[1024] = "";
    snprintf(dir, sizeof dir, "%s/%s", NODE_DIR, names[i]);
    int r = run_test(dir, names[i], 0, why, sizeof why);
    if (r == -1 - R_REFUSED && strstr(why, "must be known at import")) { /* a parameter given as a graph input */
      char why2[1024] = "";
      int r2 = run_test(dir, names[i], 1, why2, sizeof why2);
      if (r2 >= 0) lifted++;
      if (r2 >= 0 || r2 != -1 - R_REFUSED || !strstr(why2, "nothing to lift")) { r = r2; memcpy(why, why2, sizeof why); }
    }
    if (r == 1) passed++;
    else if (r == 0) {
      failed++;
      printf("FAILED %s: %s\n", names[i], why);
    } else {
      skipped[-1 - r]++;
      if (verbose) printf("skipped %s (%s): %s", names[i], reason_names[-1 - r], why[0] && why[strlen(why) - 1] == '\n' ? why : strcat(why, "\n"));
    }
    free(names[i]);
  }
  free(names);
  int nskip = 0;
  for (int k = 0; k < R_COUNT; k++) nskip += skipped[k];
  printf("onnx node tests: %d in all, %d supported: %d passed, %d failed; %d skipped\n", nn, passed + failed, passed, failed, nskip);
  for (int k = 0; k < R_COUNT; k++) printf("  skipped, %s: %d\n", reason_names[k], skipped[k]);
  printf("  of the supported, %d run with the parameters their op reads from graph inputs (scales, pads, weights...) "
         "given as initializers\n", lifted);
  CHECK(failed == 0, "%d supported node tests failed", failed);
  CHECK(passed > 0, "no node test ran");
  return check_finish("test_onnx_conformance");
}
#else
int main(void) {
  printf("test_onnx_conformance: SKIP (memfit built without ONNX support)\n");
  return 0;
}
#endif
