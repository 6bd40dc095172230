/* test_onnx_plan_json.c — mf_onnx_plan_json (what the Python module calls): its JSON holds the same bytes per arena,
 * total and peak as a plan made directly with mf_onnx_build and mf_plan_init; with a budget the search's choice
 * (fits or null); the length protocol (NULL buffer, a short buffer cut and terminated) and its errors. The model:
 * ONNX's node test of a padded convolution from Debian's libonnx-testdata (skips when it is not installed). */
#include "check.h"
#include "memfit.h"
#include <stdint.h>

#define MODEL "/usr/share/libonnx-testdata/data/node/test_basic_conv_with_padding/model.onnx"

/* the number after "key": in json (-1 when absent) */
static long long json_int(const char *json, const char *key) {
  char pat[128];
  snprintf(pat, sizeof pat, "\"%s\": ", key);
  const char *p = strstr(json, pat);
  return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

int main(void) {
  char err[1024];
  struct stat st;
  if (stat(MODEL, &st) != 0) {
    printf("test_onnx_plan_json: SKIP (%s is missing: install libonnx-testdata)\n", MODEL);
    return 0;
  }
  mf_onnx *m = mf_onnx_open(MODEL, err, sizeof err);
  if (!m && strstr(err, "without ONNX support")) { printf("test_onnx_plan_json: SKIP (%s)\n", err); return 0; }
  CHECK(m != NULL, "open: %s", err);
  if (!m) return check_finish("test_onnx_plan_json");
  /* the input as the file declares it, batch included */
  mf_onnx_shape in = {.name = mf_onnx_input_name(m, 0)};
  CHECK(mf_onnx_input_shape(m, 0, &in.ndim, in.dims) == 0 && in.ndim == 4, "the model's input is [N,C,H,W]");
  mf_onnx_plan_opts o = {.n_inputs = 1, .inputs = &in, .loss = MF_ONNX_LOSS_MSE, .threads = 1};

  /* the reference: the same plan made directly */
  mf_graph *g = mf_graph_init(MF_F32);
  mf_onnx_build_opts bo = {.n_inputs = 1, .inputs = &in, .loss = MF_ONNX_LOSS_MSE};
  mf_onnx_built bt;
  int built = mf_onnx_build(m, g, &bo, &bt, err, sizeof err) == 0;
  CHECK(built, "build: %s", err);
  mf_plan_opts po = mf_plan_opts_default();
  po.threads = 1;
  mf_plan *p = built ? mf_plan_init(g, bt.loss, &po, err, sizeof err) : NULL;
  CHECK(p != NULL, "plan: %s", err);

  int64_t len = mf_onnx_plan_json(MODEL, &o, NULL, 0, err, sizeof err);
  CHECK(len > 0, "the length without a buffer: %s", err);
  char *js = malloc((size_t)(len > 0 ? len : 0) + 1);
  if (p && js && len > 0) {
    CHECK(mf_onnx_plan_json(MODEL, &o, js, (size_t)len + 1, err, sizeof err) == len, "the JSON in a buffer of its length + 1");
    CHECK(strlen(js) == (size_t)len && js[0] == '{' && js[len - 1] == '\n', "one NUL-terminated object");
    CHECK(json_int(js, "total_bytes") == (long long)mf_plan_total_bytes(p), "total_bytes %lld vs the plan's %zu",
          json_int(js, "total_bytes"), mf_plan_total_bytes(p));
    const char *ar = strstr(js, "\"arenas\": {"); /* inside it ("parameters" is also the count's key before it) */
    CHECK(ar != NULL, "an arenas object");
    for (int k = 0; ar && k < MF_ARENA_COUNT; k++)
      CHECK(json_int(ar, mf_arena_name((mf_arena_kind)k)) == (long long)mf_plan_arena_bytes(p, (mf_arena_kind)k),
            "arena '%s': %lld vs the plan's %zu", mf_arena_name((mf_arena_kind)k), json_int(ar, mf_arena_name((mf_arena_kind)k)),
            mf_plan_arena_bytes(p, (mf_arena_kind)k));
    CHECK(json_int(js, "parameters") == (long long)bt.n_param_elems, "parameters");
    const char *pk = mf_plan_peak_op(p, NULL);
    CHECK(pk && strstr(js, "\"peak_op\": \"") && strstr(js, pk), "the peak op '%s' is in the JSON", pk ? pk : "");
    CHECK(!strstr(js, "\"fits\""), "no budget, no search");
    /* a short buffer: cut, terminated, the full length returned */
    char small[16];
    memset(small, 'x', sizeof small);
    CHECK(mf_onnx_plan_json(MODEL, &o, small, sizeof small, err, sizeof err) == len && small[15] == 0 &&
              !strncmp(small, js, 15), "a short buffer holds the start, NUL-terminated");
  }
  free(js);

  /* with a budget: everything fits 1 GiB; nothing fits 64 bytes (chosen null, the smallest said) */
  char buf[16384];
  o.budget = (int64_t)1 << 30;
  CHECK(mf_onnx_plan_json(MODEL, &o, buf, sizeof buf, err, sizeof err) > 0, "with a budget: %s", err);
  CHECK(json_int(buf, "fits") == 1 && strstr(buf, "\"chosen\": {\"settings\"") && json_int(buf, "micro_batch") == in.dims[0],
        "1 GiB: fits at the model's batch: %.300s", buf);
  o.budget = 64;
  CHECK(mf_onnx_plan_json(MODEL, &o, buf, sizeof buf, err, sizeof err) > 0, "with a tiny budget: %s", err);
  CHECK(json_int(buf, "fits") == 0 && strstr(buf, "\"chosen\": null") && strstr(buf, "\"smallest\": {"),
        "64 bytes: nothing fits, the smallest setting said: %.300s", buf);
  o.budget = 0;

  /* errors: a missing file, an input the model lacks, bad arguments */
  CHECK(mf_onnx_plan_json("/nonexistent/m.onnx", &o, buf, sizeof buf, err, sizeof err) == -1 && strstr(err, "m.onnx"),
        "a missing file is named: %s", err);
  mf_onnx_shape bad = in;
  bad.name = "no_such_input";
  mf_onnx_plan_opts ob = o;
  ob.inputs = &bad;
  CHECK(mf_onnx_plan_json(MODEL, &ob, buf, sizeof buf, err, sizeof err) == -1 && strstr(err, "no_such_input"),
        "an unknown input is named: %s", err);
  CHECK(mf_onnx_plan_json(MODEL, NULL, buf, sizeof buf, err, sizeof err) == -1, "NULL options refused");
  ob.n_inputs = MF_ONNX_MAX_IO + 1;
  CHECK(mf_onnx_plan_json(MODEL, &ob, buf, sizeof buf, err, sizeof err) == -1 && strstr(err, "input shapes"), "too many inputs refused: %s", err);

  mf_plan_free(p);
  if (built) mf_onnx_built_free(&bt);
  mf_graph_free(g);
  mf_onnx_close(m);
  return check_finish("test_onnx_plan_json");
}
