/* test_checkpoint_meta.c — hand-edited checkpoint metadata (step=nan, 1e30, 4.5, -5, micro=-1,
 * rng=abc, clean_steps=1e300, loss_scale=0, ...) and non-finite weights are refused with an error
 * naming the key (or tensor), the value and the file, and leave the session untouched. */
#include "check.h"
#include "models.h"
#include "graph/graph.h"
#include "train/safetensors.h"
#include "st_rewrite.h"
#include <unistd.h>

static mf_session *make(mf_graph **gp, tm_model *m) {
  *gp = mf_graph_init(MF_F32);
  if (tm_build(*gp, TM_MLP, 2, 8, m) < 0) return NULL;
  mf_train_opts o = mf_train_opts_default();
  o.threads = 1;
  o.accum_steps = 2;
  char err[256];
  mf_session *s = mf_session_init(*gp, m->loss, &o, err, sizeof err);
  if (!s) fprintf(stderr, "session: %s\n", err);
  return s;
}


int main(void) {
  char dir[] = "/tmp/memfit_ckmeta_XXXXXX";
  if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
  char good[600], bad[600], err[1024];
  snprintf(good, sizeof good, "%s/good.safetensors", dir);
  snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);

  mf_graph *g;
  tm_model m;
  mf_session *s = make(&g, &m);
  CHECK(s != NULL, "session");
  if (!s) return check_finish("test_checkpoint_meta");
  tm_fill_inputs(s, g, &m, 1);
  mf_session_micro_step(s);
  tm_fill_inputs(s, g, &m, 2);
  mf_session_micro_step(s);
  mf_session_update(s);
  CHECK(mf_session_save(s, good, err, sizeof err) == 0, "save: %s", err);
  int64_t step0 = mf_session_step(s);

  /* the unedited copy loads */
  CHECK(st_rewrite(good, bad, NULL, NULL, NULL, 0) == 0, "rewrite");
  CHECK(mf_session_load(s, bad, err, sizeof err) == 0, "unedited copy: %s", err);

  static const struct { const char *key, *value; } cases[] = {
    {"step", "nan"}, {"step", "1e30"}, {"step", "4.5"}, {"step", "-5"}, {"step", ""}, {"step", " 3"},
    {"step", "99999999999999999999"}, {"step", "0x10"}, {"micro", "-1"}, {"micro", "3"}, {"micro", "nan"},
    {"rng", "abc"}, {"rng", "-1"}, {"rng", "18446744073709551616"}, {"clean_steps", "1e300"}, {"clean_steps", "-1"},
    {"clean_steps", "2001"}, {"loss_scale", "0"}, {"loss_scale", "nan"}, {"loss_scale", "inf"}, {"loss_scale", "-1"},
    {"loss_scale", "1e400"}, {"loss_scale", "2x"}, {"skipped", "-5"}, {"skipped", "inf"}, {"step", NULL}, {"rng", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    if (st_rewrite(good, bad, cases[i].key, cases[i].value, NULL, 0)) { CHECK(0, "rewrite %s", cases[i].key); continue; }
    err[0] = 0;
    int rc = mf_session_load(s, bad, err, sizeof err);
    CHECK(rc < 0, "%s=%s accepted", cases[i].key, cases[i].value ? cases[i].value : "(missing)");
    char want[64];
    snprintf(want, sizeof want, "'%s'", cases[i].key);
    CHECK(strstr(err, want) && strstr(err, bad), "%s=%s: error names neither key nor file: %s", cases[i].key,
          cases[i].value ? cases[i].value : "(missing)", err);
    if (cases[i].value && *cases[i].value)
      CHECK(strstr(err, cases[i].value) != NULL, "%s=%s: error does not show the value: %s", cases[i].key, cases[i].value, err);
    CHECK(mf_session_step(s) == step0, "%s=%s: the session changed", cases[i].key, cases[i].value ? cases[i].value : "");
  }
  /* still fine after all that: the session was left untouched */
  CHECK(mf_session_load(s, good, err, sizeof err) == 0, "good after bad: %s", err);

  /* non-finite weights: refused, naming the tensor and the file */
  const float bads[3] = {NAN, INFINITY, -INFINITY};
  for (int i = 0; i < 3; i++) {
    char pn[128];
    snprintf(pn, sizeof pn, "param.%s", g->nodes[m.params[0]].name);
    if (st_rewrite(good, bad, NULL, NULL, pn, bads[i])) { CHECK(0, "rewrite %s", pn); continue; }
    err[0] = 0;
    CHECK(mf_session_load(s, bad, err, sizeof err) < 0, "%s = %g accepted", pn, bads[i]);
    CHECK(strstr(err, pn) && strstr(err, bad) && strstr(err, "finite"), "%s = %g: %s", pn, bads[i], err);
  }

  mf_session_free(s);
  mf_graph_free(g);
  unlink(good);
  unlink(bad);
  rmdir(dir);
  return check_finish("test_checkpoint_meta");
}
