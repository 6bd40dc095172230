/* fuzz_checkpoint.c — libFuzzer harness for the checkpoint metadata reader (mf_session_load,
 * src/train/checkpoint.c): each input is a list of "key=value" lines set as metadata on a valid,
 * checksummed checkpoint of a small model, which is then loaded; the session must either take it
 * or refuse it cleanly. See docs/data.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memfit.h"
#include "train/safetensors.h"

static mf_session *sess;
static mf_graph *graph; /* kept for the whole run (held here so no leak is reported at exit) */
static mf_tensor in_x, in_y;
static char good[64], path[64];

static int setup(void) {
  snprintf(good, sizeof good, "/tmp/fuzz_ck.%d.good", (int)getpid());
  snprintf(path, sizeof path, "/tmp/fuzz_ck.%d.safetensors", (int)getpid());
  mf_graph *g = graph = mf_graph_init(MF_F32);
  int64_t xs[2] = {2, 4}, ws[2] = {4, 3}, ys[2] = {2, 3};
  mf_tensor x = in_x = mf_input(g, "x", 2, xs), y = in_y = mf_input(g, "y", 2, ys);
  mf_tensor w = mf_param(g, "w", 2, ws, MF_INIT_NORMAL, 0.1);
  mf_tensor loss = mf_mse_loss(g, mf_matmul(g, x, w, 0, 0), y);
  mf_train_opts o = mf_train_opts_default();
  o.threads = 1;
  o.accum_steps = 2;
  char err[256];
  sess = mf_session_init(g, loss, &o, err, sizeof err);
  if (!sess) { fprintf(stderr, "fuzz_checkpoint: %s\n", err); return -1; }
  if (mf_session_save(sess, good, err, sizeof err)) { fprintf(stderr, "fuzz_checkpoint: %s\n", err); return -1; }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!sess && setup()) abort();
  char err[1024];
  mf_st_file *f = mf_st_open(good, err, sizeof err);
  if (!f) abort();
  mf_st_writer *w = mf_st_writer_init();
  for (int i = 0; i < mf_st_count(f); i++) {
    const mf_st_tensor *t = mf_st_at(f, i);
    mf_st_writer_add_typed(w, t->name, t->dtype_name, t->ndim, t->shape, t->data);
  }
  for (int i = 0; i < mf_st_meta_count(f); i++) {
    const char *k, *v;
    mf_st_meta_at(f, i, &k, &v);
    if (strncmp(k, "memfit.", 7)) mf_st_writer_meta(w, k, v);
  }
  /* the input's lines override or add metadata */
  char *text = malloc(size + 1);
  memcpy(text, data, size);
  text[size] = 0;
  for (char *line = text, *next; line; line = next) {
    next = strchr(line, '\n');
    if (next) *next++ = 0;
    char *eq = strchr(line, '=');
    if (!eq) continue;
    *eq = 0;
    if (strncmp(line, "memfit.", 7)) mf_st_writer_meta(w, line, eq + 1);
  }
  free(text);
  if (mf_st_writer_error(w) == NULL && mf_st_writer_save(w, path, err, sizeof err) == 0) {
    if (mf_session_load(sess, path, err, sizeof err) == 0) {
      /* accepted: the session must still run a step */
      static const float xv[8] = {1, 2, 3, 4, 5, 6, 7, 8}, yv[6] = {1, 0, 1, 0, 1, 0};
      mf_session_write_input(sess, in_x, xv, 8);
      mf_session_write_input(sess, in_y, yv, 6);
      mf_session_micro_step(sess);
      mf_session_update(sess);
      mf_session_load(sess, good, err, sizeof err);
    }
  }
  mf_st_writer_free(w);
  mf_st_close(f);
  return 0;
}
