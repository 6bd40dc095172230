/* test_vqgan.c — the VQGAN training graph (src/models/vqgan.c): two phases (generator, discriminator) in
 * sessions with measured == planned per arena, f32 and bf16, gradient and EMA codebooks; the adaptive GAN
 * weight lambda in f64 against its definition (the last conv's gradients with the GAN factor on and off);
 * which phase sets the activation arena; the refusals of bad settings. */
#include "check.h"
#include "torch_ref.h"
#include "train/safetensors.h"
#include "backend/reference.h"
#include "graph/dtype.h"
#include "models/vqgan.h"
#include "ops/autodiff.h"
#include "ops/ops.h"
#include <stdint.h>
#include <unistd.h>

static uint64_t rs = 99;
static double unif(void) {
  rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(rs >> 11) / 9007199254740992.0;
}

static vqgan_cfg tiny(int ema) {
  vqgan_cfg c;
  char err[256];
  vqgan_cfg_preset("tiny", &c, err, sizeof err);
  c.q.ema = ema;
  return c;
}

/* Two optimizer steps of both phases; measured == planned per arena. */
static void session_run(mf_dtype dt, int ema) {
  vqgan_cfg c = tiny(ema);
  mf_graph *g = mf_graph_init(dt);
  vqgan_net net;
  char err[512];
  if (vqgan_build(g, &c, c.micro_batch, &net, err, sizeof err) < 0) { CHECK(0, "build: %s", err); mf_graph_free(g); return; }
  mf_phase_opts ph[2];
  vqgan_phases(&net, ph);
  mf_tensor keep[12];
  mf_train_opts o = mf_train_opts_default();
  o.plan.n_keep = vqgan_keep(&net, keep);
  o.plan.keep = keep;
  o.plan.optim = MF_ADAM;
  o.n_groups = 2;
  o.groups[1] = o.groups[0];
  o.beta1 = o.groups[1].beta1 = 0.5;
  o.beta2 = o.groups[1].beta2 = 0.9;
  o.lr = o.groups[1].lr = 1e-4;
  o.debug_memory = 1;
  o.threads = 2;
  o.loss_scaling = 0;
  mf_session *s = mf_session_init_phases(g, 2, ph, &o, err, sizeof err);
  if (!s) { CHECK(0, "session: %s", err); mf_graph_free(g); return; }
  vq_session_ready(&net.vq, s);
  vq_stats st;
  vq_stats_init(&st, &net.vq, 3);
  int64_t nx = mf_tensor_numel(g, net.x);
  float *x = malloc((size_t)nx * sizeof *x);
  int ok = 1;
  for (int step = 0; step < 2; step++) {
    for (int64_t i = 0; i < nx; i++) x[i] = (float)(2 * unif() - 1);
    mf_session_write_input(s, net.x, x, (size_t)nx);
    vqgan_set_factor(s, &net, step);
    double l0 = mf_session_phase_step(s, 0);
    ok &= isfinite(l0) && vq_observe(&st, &net.vq, s, 1) == 0 && mf_session_phase_update(s, 0) == 1 && vq_ema_apply(&st, &net.vq, s) == 0;
    double l1 = mf_session_phase_step(s, 1);
    ok &= isfinite(l1) && mf_session_phase_update(s, 1) == 1;
  }
  CHECK(ok, "%s%s: two steps of both phases ran", mf_dtype_name(dt), ema ? " EMA" : "");
  const mf_plan *p = mf_session_plan(s);
  int arenas_ok = 1;
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    size_t pl = mf_plan_arena_bytes(p, (mf_arena_kind)a), me = mf_session_measured_bytes(s, (mf_arena_kind)a);
    if (pl != me) { arenas_ok = 0; fprintf(stderr, "  arena %s planned %zu measured %zu\n", mf_arena_name((mf_arena_kind)a), pl, me); }
  }
  const char *op0, *op1;
  size_t p0 = mf_plan_phase_peak(p, 0, &op0), p1 = mf_plan_phase_peak(p, 1, &op1), act = mf_plan_arena_bytes(p, MF_ARENA_ACT);
  CHECK(arenas_ok, "%s%s: measured == planned per arena", mf_dtype_name(dt), ema ? " EMA" : "");
  CHECK(act >= p0 && act >= p1 && (act == p0 || act == p1), "activation arena %zu is the larger phase peak (%zu, %zu)", act, p0, p1);
  double usage, ppl;
  vq_stats_usage(&st, &usage, &ppl);
  printf("  vqgan tiny %s%s: generator peak %zu B (%s), discriminator %zu B (%s), total %zu B measured == planned; usage %.2f "
         "perplexity %.2f\n", mf_dtype_name(dt), ema ? " EMA" : "", p0, op0 ? op0 : "-", p1, op1 ? op1 : "-", mf_plan_total_bytes(p),
         usage, ppl);
  free(x);
  vq_stats_free(&st);
  mf_session_free(s);
  mf_graph_free(g);
}


/* Every ResNet and attention block recomputed in backward gives the same gradients as everything stored
 * (the same kernels on the same values), and both plans' measured == planned. */
static void recompute_same(void) {
  float *grads[2] = {NULL, NULL};
  int64_t ng = 0;
  size_t act[2] = {0, 0};
  for (int rc = 0; rc < 2; rc++) {
    vqgan_cfg c = tiny(0);
    mf_graph *g = mf_graph_init(MF_F32);
    mf_graph_set_seed(g, 8);
    vqgan_net net;
    char err[512];
    if (vqgan_build(g, &c, c.micro_batch, &net, err, sizeof err) < 0) { CHECK(0, "build: %s", err); mf_graph_free(g); return; }
    mf_phase_opts ph[2];
    vqgan_phases(&net, ph);
    mf_train_opts o = mf_train_opts_default();
    o.plan.optim = MF_ADAM;
    o.plan.recompute = rc ? MF_RECOMPUTE_ALL : MF_RECOMPUTE_NONE;
    o.n_groups = 2;
    o.threads = 1;
    o.debug_memory = 1;
    o.loss_scaling = 0;
    mf_session *s = mf_session_init_phases(g, 2, ph, &o, err, sizeof err);
    if (!s) { CHECK(0, "session: %s", err); mf_graph_free(g); return; }
    int64_t nx = mf_tensor_numel(g, net.x);
    float *x = malloc((size_t)nx * sizeof *x), one = 1;
    rs = 77;
    for (int64_t i = 0; i < nx; i++) x[i] = (float)(2 * unif() - 1);
    mf_session_write_input(s, net.x, x, (size_t)nx);
    mf_session_write_input(s, net.factor, &one, 1);
    CHECK(isfinite(mf_session_phase_step(s, 0)), "phase 0 step (recompute %d)", rc);
    ng = 0;
    for (int id = 0; id < g->n; id++)
      if (g->nodes[id].op == MF_OP_PARAM && g->nodes[id].group == VQGAN_GROUP_GEN) ng += mf_node_numel(&g->nodes[id]);
    grads[rc] = malloc((size_t)ng * sizeof(float));
    int64_t o2 = 0;
    for (int id = 0; id < g->n; id++)
      if (g->nodes[id].op == MF_OP_PARAM && g->nodes[id].group == VQGAN_GROUP_GEN) {
        mf_session_read_grad(s, id, grads[rc] + o2, (size_t)mf_node_numel(&g->nodes[id]));
        o2 += mf_node_numel(&g->nodes[id]);
      }
    const mf_plan *p = mf_session_plan(s);
    int ok = 1;
    for (int a = 0; a < MF_ARENA_COUNT; a++) ok &= mf_plan_arena_bytes(p, (mf_arena_kind)a) == mf_session_measured_bytes(s, (mf_arena_kind)a);
    CHECK(ok, "recompute %d: measured == planned", rc);
    act[rc] = mf_plan_arena_bytes(p, MF_ARENA_ACT);
    free(x);
    mf_session_free(s);
    mf_graph_free(g);
  }
  CHECK(memcmp(grads[0], grads[1], (size_t)ng * sizeof(float)) == 0, "recomputed blocks give the stored gradients, bit for bit");
  CHECK(act[1] < act[0], "recomputing lowers the activation arena (%zu < %zu)", act[1], act[0]);
  printf("  recompute all blocks: generator gradients bit-identical, activations %zu B instead of %zu B\n", act[1], act[0]);
  free(grads[0]);
  free(grads[1]);
}

/* f64 reference evaluation of the generator phase with the GAN factor f; returns lambda, fills the
 * gradient of every generator parameter (concatenated) and of decoder.conv_out.weight. */
static double gen_grads(double f, double *grads, int64_t *ng, double *gw, int64_t *nw, double *rec_norm) {
  vqgan_cfg c = tiny(0);
  c.segments = 0;
  mf_graph *g = mf_graph_init(MF_F64);
  vqgan_net net;
  char err[512];
  if (vqgan_build(g, &c, c.micro_batch, &net, err, sizeof err) < 0) { CHECK(0, "build: %s", err); mf_graph_free(g); return NAN; }
  if (mf_autodiff_phase(g, net.gen_loss, 1u << VQGAN_GROUP_GEN, NULL) < 0) { CHECK(0, "autodiff: %s", mf_graph_error(g)); mf_graph_free(g); return NAN; }
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  uint64_t save = rs;
  rs = 4242;
  for (int id = 0; id < g->n; id++) {
    const mf_node *nd = &g->nodes[id];
    if (nd->op != MF_OP_INPUT && nd->op != MF_OP_PARAM && nd->op != MF_OP_BUFFER) continue;
    int64_t k = mf_node_numel(nd);
    double *v = leaf[id] = calloc((size_t)k, sizeof(double));
    for (int64_t i = 0; i < k; i++) {
      if (id == net.factor) v[i] = f;
      else if (nd->op == MF_OP_BUFFER) v[i] = 1;
      else if (id == net.x) v[i] = 2 * unif() - 1;
      else if (strstr(nd->name, "norm") && strstr(nd->name, "weight")) v[i] = 1 + 0.1 * (unif() - 0.5);
      else v[i] = 0.3 * (2 * unif() - 1);
    }
  }
  rs = save;
  mf_ref r;
  double lam = NAN;
  if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) < 0) CHECK(0, "eval: %s", err);
  else {
    lam = *(double *)r.data[g->nodes[net.tap].ip[2]];
    double st = mf_ld(r.data[net.lambda], g->nodes[net.lambda].dtype, 0); /* an f32 state */
    CHECK(fabs(st - lam) <= 0x1p-24 * fabs(lam), "the lambda state holds lambda (%.9g vs %.9g)", st, lam);
    *rec_norm = *(double *)r.data[net.rec_norm];
    *ng = 0;
    for (int id = 0; id < g->n; id++) {
      const mf_node *nd = &g->nodes[id];
      if (nd->op != MF_OP_PARAM || nd->grad < 0) continue;
      int64_t k = mf_node_numel(nd);
      memcpy(grads + *ng, r.data[nd->grad], (size_t)k * sizeof(double));
      *ng += k;
      if (id == net.last_w) { memcpy(gw, r.data[nd->grad], (size_t)k * sizeof(double)); *nw = k; }
    }
    mf_ref_free(&r);
  }
  for (int id = 0; id < g->n; id++) free(leaf[id]);
  free(leaf);
  mf_graph_free(g);
  return lam;
}

/* lambda = w |grad_W nll| / (|grad_W g_loss| + 1e-4): with the factor off (B) the last conv's gradient is the
 * reconstruction's (+ nothing from the GAN); with it on (A) it is rec + lambda * gan, so gan = (A - B) / lambda. */
static void lambda_check(void) {
  enum { MAXG = 400000 };
  static double ga[MAXG], gb[MAXG], wa[4096], wb[4096];
  int64_t na = 0, nb = 0, nwa = 0, nwb = 0;
  double ra = 0, rb = 0;
  double lam = gen_grads(1, ga, &na, wa, &nwa, &ra);
  double lam0 = gen_grads(0, gb, &nb, wb, &nwb, &rb);
  if (!isfinite(lam) || na != nb || nwa != nwb || !nwa) { CHECK(0, "lambda runs: %g %g", lam, lam0); return; }
  double nrec = 0, ngan = 0;
  for (int64_t i = 0; i < nwa; i++) nrec += wb[i] * wb[i], ngan += (wa[i] - wb[i]) * (wa[i] - wb[i]);
  nrec = sqrt(nrec);
  ngan = sqrt(ngan) / lam;
  double want = 0.8 * nrec / (ngan + 1e-4);
  CHECK(lam0 == 0, "lambda with the factor off is 0 (%g)", lam0);
  CHECK(fabs(ra - nrec) <= 1e-10 * nrec, "the forward |grad_W nll| %.12g equals the gradient's norm %.12g", ra, nrec);
  CHECK(fabs(lam - want) <= 1e-9 * want, "lambda %.12g, want 0.8 |g_rec| / (|g_gan| + 1e-4) = %.12g", lam, want);
  /* every generator gradient changed by lambda * (the GAN gradient): nonzero somewhere upstream of the decoder */
  int64_t changed = 0;
  for (int64_t i = 0; i < na - nwa; i++) changed += ga[i] != gb[i];
  CHECK(changed > 0, "the GAN term reaches the encoder's gradients");
  printf("  adaptive lambda (f64, tiny): %.6g = 0.8 x %.6g / (%.6g + 1e-4)\n", lam, nrec, ngan);
}


/* ---- parity with PyTorch (tests/vqgan_parity.py): a small VQGAN (one ResNet block per level, attention, VQ,
 * a 2-layer PatchGAN) from the same weights and inputs: one generator step (every loss term, every generator
 * gradient: they carry lambda), the Adam update, the EMA codebook update, then one discriminator step on the
 * updated generator (its loss and every discriminator gradient) ---- */
static void parity(int ema) {
  if (!torch_available()) return;
  vqgan_cfg c = tiny(ema);
  c.segments = 0;
  c.q.dead_threshold = 0; /* restarts draw rows at random: not reproduced by the reference */
  c.q.decay = 0.9;
  mf_graph *g = mf_graph_init(MF_F32);
  mf_graph_set_seed(g, 5);
  vqgan_net net;
  char err[512];
  if (vqgan_build(g, &c, c.micro_batch, &net, err, sizeof err) < 0) { CHECK(0, "parity build: %s", err); mf_graph_free(g); return; }
  mf_phase_opts ph[2];
  vqgan_phases(&net, ph);
  mf_tensor keep[12];
  mf_train_opts o = mf_train_opts_default();
  o.plan.n_keep = vqgan_keep(&net, keep);
  o.plan.keep = keep;
  o.plan.optim = MF_ADAM;
  o.n_groups = 2;
  o.lr = 1e-3;
  o.beta1 = 0.5;
  o.beta2 = 0.9;
  o.weight_decay = 0;
  o.groups[1] = (mf_param_group_opts){NULL, o.lr, 0.5, 0.9, o.eps, 0, 0, 0};
  o.threads = 2;
  o.loss_scaling = 0;
  mf_session *s = mf_session_init_phases(g, 2, ph, &o, err, sizeof err);
  if (!s) { CHECK(0, "parity session: %s", err); mf_graph_free(g); return; }
  vq_session_ready(&net.vq, s);
  vq_stats st;
  vq_stats_init(&st, &net.vq, 1);
  mf_st_writer *w = mf_st_writer_init();
  enum { MAXT = 1024 };
  float *bufs[MAXT];
  int nb = 0;
#define KEEP(ptr) (bufs[nb++] = (ptr))
  /* parameters and states as they start; the codebook of an EMA quantiser is a state */
  for (int id = 0; id < g->n; id++) {
    const mf_node *nd = &g->nodes[id];
    if (nd->op != MF_OP_PARAM && !(nd->role == MF_ROLE_BUFFER && nd->state_kind == MF_STATE_PLAIN)) continue;
    float *v = KEEP(malloc(sizeof(float) * mf_node_numel(nd)));
    mf_session_read(s, id, v, (size_t)mf_node_numel(nd));
    char nm[128];
    snprintf(nm, sizeof nm, "param.%s", nd->name);
    mf_st_writer_add(w, nm, MF_F32, nd->ndim, nd->ne, v);
  }
  int64_t xn = mf_tensor_numel(g, net.x), one = 1;
  float *x = KEEP(malloc(sizeof(float) * (size_t)xn));
  rs = 31;
  for (int64_t i = 0; i < xn; i++) x[i] = (float)(2 * unif() - 1);
  int64_t xs[4] = {c.micro_batch, c.channels, c.size, c.size};
  mf_st_writer_add(w, "x", MF_F32, 4, xs, x);
  mf_session_write_input(s, net.x, x, (size_t)xn);
  float f1 = 1;
  mf_session_write_input(s, net.factor, &f1, 1);
  float *lv = KEEP(malloc(5 * sizeof(float)));
  lv[0] = (float)mf_session_phase_step(s, 0);
  mf_session_read(s, net.nll, lv + 1, 1);
  mf_session_read(s, net.g_loss, lv + 2, 1);
  mf_session_read(s, net.q_loss, lv + 3, 1);
  float *lam = KEEP(malloc(sizeof(float)));
  mf_session_read(s, net.lambda, lam, 1);
  mf_st_writer_add(w, "memfit.lambda", MF_F32, 1, &one, lam);
  const char *ln[4] = {"memfit.gen_loss", "memfit.nll", "memfit.g_loss", "memfit.q_loss"};
  for (int i = 0; i < 4; i++) mf_st_writer_add(w, ln[i], MF_F32, 1, &one, lv + i);
  CHECK(vq_observe(&st, &net.vq, s, 1) == 0, "observe");
  for (int id = 0; id < g->n; id++) {
    const mf_node *nd = &g->nodes[id];
    if (nd->op != MF_OP_PARAM || nd->group != VQGAN_GROUP_GEN) continue;
    float *v = KEEP(malloc(sizeof(float) * mf_node_numel(nd)));
    CHECK(mf_session_read_grad(s, id, v, (size_t)mf_node_numel(nd)) == 0, "grad %s", nd->name);
    char nm[128];
    snprintf(nm, sizeof nm, "memfit.ggrad.%s", nd->name);
    mf_st_writer_add(w, nm, MF_F32, nd->ndim, nd->ne, v);
  }
  CHECK(mf_session_phase_update(s, 0) == 1, "generator update");
  CHECK(vq_ema_apply(&st, &net.vq, s) == 0, "EMA apply");
  for (int id = 0; id < g->n; id++) { /* after the generator's update (and the EMA's) */
    const mf_node *nd = &g->nodes[id];
    if (nd->op != MF_OP_PARAM && !(nd->role == MF_ROLE_BUFFER && nd->state_kind == MF_STATE_PLAIN)) continue;
    float *v = KEEP(malloc(sizeof(float) * mf_node_numel(nd)));
    mf_session_read(s, id, v, (size_t)mf_node_numel(nd));
    char nm[128];
    snprintf(nm, sizeof nm, "memfit.param1.%s", nd->name);
    mf_st_writer_add(w, nm, MF_F32, nd->ndim, nd->ne, v);
  }
  lv[4] = (float)mf_session_phase_step(s, 1);
  mf_st_writer_add(w, "memfit.d_loss", MF_F32, 1, &one, lv + 4);
  for (int id = 0; id < g->n; id++) {
    const mf_node *nd = &g->nodes[id];
    if (nd->op != MF_OP_PARAM || nd->group != VQGAN_GROUP_DISC) continue;
    float *v = KEEP(malloc(sizeof(float) * mf_node_numel(nd)));
    CHECK(mf_session_read_grad(s, id, v, (size_t)mf_node_numel(nd)) == 0, "grad %s", nd->name);
    char nm[128];
    snprintf(nm, sizeof nm, "memfit.dgrad.%s", nd->name);
    mf_st_writer_add(w, nm, MF_F32, nd->ndim, nd->ne, v);
  }
  char meta[64];
#define META(k, fmt, v) (snprintf(meta, sizeof meta, fmt, v), mf_st_writer_meta(w, k, meta))
  META("ch", "%d", c.ch);
  META("levels", "%d", c.levels);
  META("res_blocks", "%d", c.res_blocks);
  META("z_channels", "%d", c.z_channels);
  META("embed_dim", "%d", c.q.dim);
  META("codes", "%lld", (long long)c.q.codes);
  META("beta", "%.17g", c.q.beta);
  META("ema", "%d", c.q.ema);
  META("decay", "%.17g", c.q.decay);
  META("eps", "%.17g", c.q.eps);
  META("disc_layers", "%d", c.disc_layers);
  META("disc_weight", "%.17g", c.disc_weight);
  META("codebook_weight", "%.17g", c.codebook_weight);
  META("lr", "%.17g", o.lr);
  char mult[64];
  size_t k = 0;
  for (int i = 0; i < c.levels; i++) k += (size_t)snprintf(mult + k, sizeof mult - k, "%s%d", i ? "," : "", c.mult[i]);
  mf_st_writer_meta(w, "mult", mult);
  char dir[] = "/tmp/memfit_vqgan_XXXXXX", path[600], cmd[1600];
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  snprintf(path, sizeof path, "%s/parity.safetensors", dir);
  CHECK(mf_st_writer_save(w, path, err, sizeof err) == 0, "save: %s", err);
  const char *root = getenv("MEMFIT_ROOT") ? getenv("MEMFIT_ROOT") : ".";
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/vqgan_parity.py %s --rtol 1e-4", root, path);
  printf("  parity (%s codebook): gen loss %.7g (nll %.7g, g %.7g, q %.7g), d loss %.7g\n", ema ? "EMA" : "gradient", lv[0], lv[1],
         lv[2], lv[3], lv[4]);
  fflush(stdout);
  CHECK(system(cmd) == 0, "parity with PyTorch failed: %s", cmd);
  unlink(path);
  rmdir(dir);
  mf_st_writer_free(w);
  for (int i = 0; i < nb; i++) free(bufs[i]);
  vq_stats_free(&st);
  mf_session_free(s);
  mf_graph_free(g);
}

static void errors(void) {
  char err[256];
  vqgan_cfg c = tiny(0);
  c.size = 17;
  CHECK(vqgan_cfg_check(&c, err, sizeof err) < 0 && strstr(err, "--size 17") && strstr(err, "latent grid"), "size: %s", err);
  c = tiny(0);
  c.q.codes = 0;
  CHECK(vqgan_cfg_check(&c, err, sizeof err) < 0 && strstr(err, "--codes"), "codes 0: %s", err);
  c = tiny(0);
  c.q.kind = VQ_KIND_FSQ;
  c.q.dim = 2;
  c.q.levels[0] = 1, c.q.levels[1] = 5;
  CHECK(vqgan_cfg_check(&c, err, sizeof err) < 0 && strstr(err, "--fsq-levels"), "fsq level 1: %s", err);
  c = tiny(0);
  c.batch = 3;
  c.micro_batch = 2;
  CHECK(vqgan_cfg_check(&c, err, sizeof err) < 0 && strstr(err, "--micro-batch"), "micro-batch: %s", err);
  CHECK(vqgan_cfg_preset("huge", &c, err, sizeof err) < 0 && strstr(err, "low, mid"), "preset: %s", err);
}

int main(void) {
  session_run(MF_F32, 0);
  session_run(MF_BF16, 0);
  session_run(MF_F32, 1);
  session_run(MF_BF16, 1);
  recompute_same();
  lambda_check();
  parity(0);
  parity(1);
  errors();
  return check_finish("test_vqgan");
}
