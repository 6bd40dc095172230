/* test_vqgan.c — the VQGAN training graph (src/models/vqgan.c): two phases (generator, discriminator) in
 * sessions with measured == planned per arena, f32 and bf16, gradient and EMA codebooks; the adaptive GAN
 * weight lambda in f64 against its definition (the last conv's gradients with the GAN factor on and off), its
 * numerator with the SSIM and perceptual terms;
 * which phase sets the activation arena; the refusals of bad settings. */
#include "gradcheck.h"
#include "torch_ref.h"
#include "train/safetensors.h"
#include "backend/reference.h"
#include "graph/dtype.h"
#include "models/vqgan.h"
#include "models/steg_loss.h"
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

/* After a generator step of loss value l0: the logged objective (vqgan_gen_objective) against its terms read one by
 * one, nll + lambda g_loss + codebook_weight q_loss (+ ssim), summed in double; the loss's forward added the same
 * stored terms in its dtype (u: f32's or coarser), 4 roundings (3 adds, codebook_weight x q) of partial sums below
 * the sum of magnitudes: bound gamma_4 * sum|terms| (lambda x g in double adds nothing of that size). With the factor
 * off lambda is 0: the objective leaves out the raw g_loss that the forward value holds. */
static void objective_check(mf_session *s, const vqgan_net *net, double l0, int step, mf_dtype dt) {
  float nll, gl, q, lam, ss = 0;
  int ok = mf_session_read(s, net->nll, &nll, 1) == 0 && mf_session_read(s, net->g_loss, &gl, 1) == 0 &&
           mf_session_read(s, net->q_loss, &q, 1) == 0 && mf_session_read(s, net->lambda, &lam, 1) == 0 &&
           (net->ssim_loss < 0 || mf_session_read(s, net->ssim_loss, &ss, 1) == 0);
  double g_adv, got = vqgan_gen_objective(s, net, l0, &g_adv);
  if (!ok || isnan(got)) { CHECK(0, "step %d: reading the generator's terms", step); return; }
  double cw = net->cfg.codebook_weight, want = (double)nll + (double)lam * gl + cw * q + ss;
  double mag = fabs(nll) + fabs(gl) + fabs(cw * q) + fabs(ss), u = ldexp(1, dt == MF_BF16 ? -8 : dt == MF_F16 ? -11 : -24);
  double bound = 4 * u / (1 - 4 * u) * mag;
  CHECK(fabs(got - want) <= bound && g_adv == gl, "%s step %d (GAN factor %d): objective %.9g, terms give %.9g (bound %.3g), raw g_loss %g",
        mf_dtype_name(dt), step, step >= net->cfg.disc_start, got, want, bound, gl);
  if (step == net->cfg.disc_start && dt == MF_F32)
    printf("  generator objective (f32, GAN factor 1): %.7g = nll %.6g + lambda %.4g x g_loss %.4g + %g x q_loss %.4g%s; forward value "
           "%.7g\n", got, nll, lam, gl, cw, q, ss ? " + ssim" : "", l0);
  if (step < net->cfg.disc_start) CHECK(lam == 0, "step %d before disc_start: lambda %g", step, lam);
  else CHECK(lam > 0, "step %d from disc_start: lambda %g", step, lam);
}

/* Two optimizer steps of both phases; measured == planned per arena. */
static void session_run(mf_dtype dt, int ema, int frames) {
  vqgan_cfg c = tiny(ema);
  c.frames = frames; /* clips: [micro*T, C, S, S] with a temporal conv in every ResNet block */
  if (frames > 1) c.ssim_weight = 0.1; /* and the SSIM term's nodes in the plan */
  c.disc_start = 1;                     /* the GAN factor 0 in step 0, 1 in step 1 (objective_check) */
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
    objective_check(s, &net, l0, step, dt);
    ok &= isfinite(l0) && vq_observe(&st, &net.vq, s, 1) == 0 && mf_session_phase_update(s, 0) == 1 && vq_ema_apply(&st, &net.vq, s) == 0;
    double l1 = mf_session_phase_step(s, 1);
    ok &= isfinite(l1) && mf_session_phase_update(s, 1) == 1;
  }
  CHECK(ok, "%s%s T=%d: two steps of both phases ran", mf_dtype_name(dt), ema ? " EMA" : "", frames);
  const mf_plan *p = mf_session_plan(s);
  int arenas_ok = 1;
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    size_t pl = mf_plan_arena_bytes(p, (mf_arena_kind)a), me = mf_session_measured_bytes(s, (mf_arena_kind)a);
    if (pl != me) { arenas_ok = 0; fprintf(stderr, "  arena %s planned %zu measured %zu\n", mf_arena_name((mf_arena_kind)a), pl, me); }
  }
  const char *op0, *op1;
  size_t p0 = mf_plan_phase_peak(p, 0, &op0), p1 = mf_plan_phase_peak(p, 1, &op1), act = mf_plan_arena_bytes(p, MF_ARENA_ACT);
  CHECK(arenas_ok, "%s%s T=%d: measured == planned per arena", mf_dtype_name(dt), ema ? " EMA" : "", frames);
  CHECK(act >= p0 && act >= p1 && (act == p0 || act == p1), "activation arena %zu is the larger phase peak (%zu, %zu)", act, p0, p1);
  double usage, ppl;
  vq_stats_usage(&st, &usage, &ppl);
  printf("  vqgan tiny %s%s%s: generator peak %zu B (%s), discriminator %zu B (%s), total %zu B measured == planned; usage %.2f "
         "perplexity %.2f\n", mf_dtype_name(dt), ema ? " EMA" : "", frames > 1 ? " clips of 4 frames, ssim 0.1" : "", p0, op0 ? op0 : "-", p1, op1 ? op1 : "-", mf_plan_total_bytes(p),
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

/* f64 reference evaluation of the generator phase of model c with the GAN factor f; returns lambda, fills the
 * gradient of every generator parameter (concatenated), of decoder.conv_out.weight, and the reconstruction tap's
 * norm |grad_W (nll + perceptual + ssim)| (the seed is 1). */
static double gen_grads(const vqgan_cfg *cin, double f, double *grads, int64_t *ng, double *gw, int64_t *nw, double *rec_norm) {
  vqgan_cfg c = *cin;
  c.segments = 0;
  mf_graph *g = mf_graph_init(MF_F64);
  vqgan_net net;
  char err[1024];
  if (vqgan_build(g, &c, c.micro_batch, &net, err, sizeof err) < 0) { CHECK(0, "build: %s", err); mf_graph_free(g); return NAN; }
  if (mf_autodiff_phase(g, net.gen_loss, 1u << VQGAN_GROUP_GEN, NULL) < 0) {
    CHECK(0, "autodiff: %s", mf_graph_error(g));
    vqgan_net_free(&net);
    mf_graph_free(g);
    return NAN;
  }
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
      else if (nd->op == MF_OP_BUFFER && strncmp(nd->name, "perceptual.", 11)) v[i] = 1;
      else if (id == net.x) v[i] = 2 * unif() - 1;
      else if (strstr(nd->name, "norm") && strstr(nd->name, "weight")) v[i] = 1 + 0.1 * (unif() - 0.5);
      else v[i] = 0.3 * (2 * unif() - 1); /* parameters, and the frozen feature network's weights */
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
    *rec_norm = *(double *)r.data[g->nodes[net.rec].ip[2]];
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
  vqgan_net_free(&net);
  mf_graph_free(g);
  return lam;
}

/* lambda = w |grad_W nll| / (|grad_W g_loss| + 1e-4), nll every reconstruction term (taming's nll_loss: pixel +
 * perceptual; memfit's SSIM too): with the factor off (B) the last conv's gradient is the reconstruction's (+ nothing
 * from the GAN); with it on (A) it is rec + lambda * gan, so gan = (A - B) / lambda. Returns |grad_W nll|. */
static double lambda_check(const vqgan_cfg *c, const char *what) {
  enum { MAXG = 400000 };
  static double ga[MAXG], gb[MAXG], wa[4096], wb[4096];
  int64_t na = 0, nb = 0, nwa = 0, nwb = 0;
  double ra = 0, rb = 0;
  double lam = gen_grads(c, 1, ga, &na, wa, &nwa, &ra);
  double lam0 = gen_grads(c, 0, gb, &nb, wb, &nwb, &rb);
  if (!isfinite(lam) || na != nb || nwa != nwb || !nwa) { CHECK(0, "%s: lambda runs: %g %g", what, lam, lam0); return NAN; }
  double nrec = 0, ngan = 0;
  for (int64_t i = 0; i < nwa; i++) nrec += wb[i] * wb[i], ngan += (wa[i] - wb[i]) * (wa[i] - wb[i]);
  nrec = sqrt(nrec);
  ngan = sqrt(ngan) / lam;
  double want = 0.8 * nrec / (ngan + 1e-4);
  CHECK(lam0 == 0, "%s: lambda with the factor off is 0 (%g)", what, lam0);
  CHECK(fabs(ra - nrec) <= 1e-10 * nrec && fabs(rb - nrec) <= 1e-10 * nrec,
        "%s: the reconstruction tap's |grad_W nll| %.12g equals the gradient's norm %.12g", what, ra, nrec);
  CHECK(fabs(lam - want) <= 1e-9 * want, "%s: lambda %.12g, want 0.8 |g_rec| / (|g_gan| + 1e-4) = %.12g", what, lam, want);
  /* every generator gradient changed by lambda * (the GAN gradient): nonzero somewhere upstream of the decoder */
  int64_t changed = 0;
  for (int64_t i = 0; i < na - nwa; i++) changed += ga[i] != gb[i];
  CHECK(changed > 0, "%s: the GAN term reaches the encoder's gradients", what);
  printf("  adaptive lambda (f64, tiny%s): %.6g = 0.8 x %.6g / (%.6g + 1e-4)\n", what, lam, nrec, ngan);
  return nrec;
}

/* The numerator holds every reconstruction term: with the SSIM term, and (with python3-torch to export a feature
 * network) the perceptual term, lambda follows their whole gradient (lambda_check), which differs from the pixel
 * term's alone (the same model with the term's weight 0: the same graph, the term's gradient zero). */
static void lambda_terms_check(void) {
  vqgan_cfg c = tiny(0);
  double plain = lambda_check(&c, "");
  c.ssim_weight = 0.5;
  double with = lambda_check(&c, ", ssim 0.5");
  CHECK(fabs(with - plain) > 1e-3 * plain, "the SSIM term changes |grad_W nll| (%.9g vs %.9g without it)", with, plain);
  if (!torch_available()) return;
  char dir[] = "/tmp/memfit_vqlam_XXXXXX", cmd[600];
  if (!mkdtemp(dir)) { CHECK(0, "mkdtemp"); return; }
  const char *root = getenv("MEMFIT_ROOT") ? getenv("MEMFIT_ROOT") : ".";
  c = tiny(0);
  snprintf(c.perceptual, sizeof c.perceptual, "%s/feat.onnx", dir);
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/vqgan_perceptual.py export %s >/dev/null 2>&1", root, c.perceptual);
  if (system(cmd) != 0) CHECK(0, "exporting the feature network failed: %s", cmd);
  else {
    c.perceptual_weight = 0;
    double off = lambda_check(&c, ", perceptual weight 0");
    c.perceptual_weight = 2;
    with = lambda_check(&c, ", perceptual weight 2");
    CHECK(fabs(off - plain) <= 1e-10 * plain, "a perceptual term of weight 0 leaves |grad_W nll| alone (%.12g vs %.12g)", off, plain);
    CHECK(fabs(with - plain) > 1e-3 * plain, "the perceptual term changes |grad_W nll| (%.9g vs %.9g without it)", with, plain);
  }
  unlink(c.perceptual);
  rmdir(dir);
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

/* ---- video: the temporal conv (vqgan_temporal_conv) ---- */
static mf_tensor build_temporal(mf_graph *g, const mf_tensor *in, void *ctx) {
  return vqgan_temporal_conv(g, in[0], in[1], in[2], *(const int *)ctx);
}

/* its gradients against finite differences (f64), and its output against the definition
 * y[b,t,o] = bias[o] + sum_k sum_c w[o, k*C + c] h[b, t+k-1, c] (zero outside the clip) evaluated in f64 */
static void temporal_check(void) {
  for (int T = 1; T <= 3; T += 2) {
    int t = T;
    gc_input in[3] = {{4, {2 * T, 2, 2, 3}, GC_NORMAL}, {4, {3, 6, 1, 1}, GC_NORMAL}, {1, {3}, GC_NORMAL}};
    char nm[96];
    snprintf(nm, sizeof nm, "temporal conv h[%d,2,2,3] (2 clips of %d frames) w[3,6,1,1]", 2 * T, T);
    gc_check(nm, 3, in, build_temporal, &t, 0, 1e-6);
  }
  enum { B = 2, T = 4, C = 3, O = 2, HW = 5 };
  mf_graph *g = mf_graph_init(MF_F64);
  int64_t sh[4] = {B * T, C, 1, HW}, sw[4] = {O, 3 * C, 1, 1}, sb[1] = {O};
  mf_tensor h = mf_input(g, "h", 4, sh), w = mf_input(g, "w", 4, sw), b = mf_input(g, "b", 1, sb);
  int tt = T;
  mf_tensor in[3] = {h, w, b};
  mf_tensor y = build_temporal(g, in, &tt);
  static double hv[B * T * C * HW], wv[O * 3 * C], bv[O];
  for (size_t i = 0; i < sizeof hv / sizeof hv[0]; i++) hv[i] = 2 * unif() - 1;
  for (size_t i = 0; i < sizeof wv / sizeof wv[0]; i++) wv[i] = 2 * unif() - 1;
  for (size_t i = 0; i < sizeof bv / sizeof bv[0]; i++) bv[i] = 2 * unif() - 1;
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  leaf[h] = hv, leaf[w] = wv, leaf[b] = bv;
  mf_ref r;
  char err[256];
  if (mf_graph_error(g) || mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) < 0) {
    CHECK(0, "temporal conv forward: %s", mf_graph_error(g) ? mf_graph_error(g) : err);
  } else {
    const double *yv = r.data[y];
    double worst = 0;
    int ok = 1;
    for (int bb = 0; bb < B; bb++)
      for (int t = 0; t < T; t++)
        for (int o = 0; o < O; o++)
          for (int p = 0; p < HW; p++) {
            double want = bv[o], mag = fabs(bv[o]);
            for (int k = 0; k < 3; k++) {
              int src = t + k - 1;
              if (src < 0 || src >= T) continue;
              for (int c = 0; c < C; c++) {
                double pr = wv[o * 3 * C + k * C + c] * hv[((bb * T + src) * C + c) * HW + p];
                want += pr, mag += fabs(pr);
              }
            }
            double got = yv[((bb * T + t) * O + o) * HW + p], e = fabs(got - want);
            /* both sides sum at most 3C + 1 f64 terms: gamma_(3C+1) |products| bounds each */
            if (!(e <= (3 * C + 1) * 0x1p-53 * mag * 2)) ok = 0;
            if (mag > 0 && e / mag > worst) worst = e / mag;
          }
    CHECK(ok, "temporal conv output equals its definition (worst %.3g of sum |products|)", worst);
    mf_ref_free(&r);
  }
  free(leaf);
  mf_graph_free(g);
}

/* ---- the SSIM term (--ssim W): its value against the definition (uniform k x k windows, two-pass
 * variances, C1 = 0.01^2, C2 = 0.03^2 on [0, 1]) and its gradient to the decoder's last conv against central
 * finite differences, in f64 on a clip model (4 frames) ---- */
static double ssim_host(const double *x, const double *y, int n_img, int S, int k) {
  const double C1 = 1e-4, C2 = 9e-4;
  double tot = 0;
  int m = S - k + 1;
  for (int im = 0; im < n_img; im++)
    for (int i = 0; i < m; i++)
      for (int j = 0; j < m; j++) {
        const double *a = x + (size_t)im * S * S, *b = y + (size_t)im * S * S;
        double ma = 0, mb = 0, va = 0, vb = 0, cab = 0, kk = (double)k * k;
        for (int u = 0; u < k; u++)
          for (int v = 0; v < k; v++) ma += a[(i + u) * S + j + v] / kk, mb += b[(i + u) * S + j + v] / kk;
        for (int u = 0; u < k; u++)
          for (int v = 0; v < k; v++) {
            double da = a[(i + u) * S + j + v] - ma, db = b[(i + u) * S + j + v] - mb;
            va += da * da / kk, vb += db * db / kk, cab += da * db / kk;
          }
        tot += 1 - (2 * ma * mb + C1) * (2 * cab + C2) / ((ma * ma + mb * mb + C1) * (va + vb + C2));
      }
  return tot / ((double)n_img * m * m);
}

static void ssim_check(void) {
  vqgan_cfg c = tiny(0);
  c.segments = 0;
  c.frames = 4;
  c.ssim_weight = 0.5;
  mf_graph *g = mf_graph_init(MF_F64);
  vqgan_net net;
  char err[512];
  if (vqgan_build(g, &c, c.micro_batch, &net, err, sizeof err) < 0 || net.ssim_loss < 0) { CHECK(0, "build: %s", err); mf_graph_free(g); return; }
  if (mf_autodiff_phase(g, net.ssim_loss, 1u << VQGAN_GROUP_GEN, NULL) < 0) { CHECK(0, "autodiff: %s", mf_graph_error(g)); mf_graph_free(g); return; }
  mf_tensor bias = -1;
  for (int id = 0; id < g->n; id++)
    if (g->nodes[id].op == MF_OP_PARAM && !strcmp(g->nodes[id].name, "decoder.conv_out.bias")) bias = id;
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  for (int id = 0; id < g->n; id++) {
    const mf_node *nd = &g->nodes[id];
    if (nd->op != MF_OP_INPUT && nd->op != MF_OP_PARAM && nd->op != MF_OP_BUFFER) continue;
    int64_t k = mf_node_numel(nd);
    double *v = leaf[id] = calloc((size_t)k, sizeof(double));
    for (int64_t i = 0; i < k; i++) {
      if (nd->op == MF_OP_BUFFER || id == net.factor) v[i] = 1;
      else if (id == net.x) v[i] = 2 * unif() - 1;
      else if (strstr(nd->name, "norm") && strstr(nd->name, "weight")) v[i] = 1 + 0.1 * (unif() - 0.5);
      else v[i] = 0.3 * (2 * unif() - 1);
    }
  }
  mf_ref r;
  if (bias < 0 || mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) < 0) { CHECK(0, "ssim eval: %s", err); goto out; }
  int64_t nx = mf_tensor_numel(g, net.x), S = c.size;
  double *a = malloc((size_t)nx * sizeof *a), *b = malloc((size_t)nx * sizeof *b);
  const double *xr = r.data[net.xrec], *xv = leaf[net.x];
  for (int64_t i = 0; i < nx; i++) a[i] = 0.5 * xr[i] + 0.5, b[i] = 0.5 * xv[i] + 0.5;
  double got = *(double *)r.data[net.ssim_loss], want = 0.5 * ssim_host(a, b, (int)(nx / (S * S)), (int)S, mf_steg_ssim_window((int)S));
  CHECK(fabs(got - want) <= 1e-9 * fabs(want), "ssim term %.12g, want 0.5 x mean(1 - SSIM) = %.12g (8 frames of 16x16, 7x7 windows)", got, want);
  const double *gb = r.data[g->nodes[bias].grad];
  double gbias[3];
  memcpy(gbias, gb, sizeof gbias);
  mf_ref_free(&r);
  double *bv = leaf[bias], worst = 0;
  int bad = 0;
  for (int i = 0; i < 3; i++) {
    double b0 = bv[i], h = 1e-6;
    bv[i] = b0 + h;
    double lp = gc_loss(g, leaf, net.ssim_loss);
    bv[i] = b0 - h;
    double lm = gc_loss(g, leaf, net.ssim_loss);
    bv[i] = b0;
    double fd = (lp - lm) / (2 * h), e = fabs(fd - gbias[i]) / (1e-12 + fabs(fd));
    if (!(fabs(fd - gbias[i]) <= 1e-6 * (1e-3 + fabs(fd)))) bad++;
    if (e > worst) worst = e;
  }
  CHECK(bad == 0 && gbias[0] != 0, "ssim term: gradient to decoder.conv_out.bias matches finite differences (worst relative %.3g)", worst);
  printf("  ssim term (f64, 4-frame clips): %.9g; d/d bias %.6g %.6g %.6g\n", got, gbias[0], gbias[1], gbias[2]);
  free(a);
  free(b);
out:
  for (int id = 0; id < g->n; id++) free(leaf[id]);
  free(leaf);
  mf_graph_free(g);
}

/* ---- the perceptual term (--perceptual FILE): a two-output ONNX feature network exported by PyTorch
 * (tests/vqgan_perceptual.py), frozen: its tensors are buffers without gradients, the plan holds its activations
 * (measured == planned); the term and its gradient to decoder.conv_out.bias against PyTorch in float64; a file
 * that is not ONNX, and one whose input does not take the images, are clear errors ---- */
static void perceptual_check(void) {
  if (!torch_available()) return;
  char dir[] = "/tmp/memfit_vqperc_XXXXXX", onnx[200], data[200], cmd[2000];
  if (!mkdtemp(dir)) { CHECK(0, "mkdtemp"); return; }
  const char *root = getenv("MEMFIT_ROOT") ? getenv("MEMFIT_ROOT") : ".";
  snprintf(onnx, sizeof onnx, "%s/feat.onnx", dir);
  snprintf(data, sizeof data, "%s/term.bin", dir);
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/vqgan_perceptual.py export %s >/dev/null 2>&1", root, onnx);
  if (system(cmd) != 0) { CHECK(0, "exporting the feature network failed: %s", cmd); rmdir(dir); return; }
  vqgan_cfg c = tiny(0);
  c.segments = 0;
  snprintf(c.perceptual, sizeof c.perceptual, "%s", onnx);
  c.perceptual_weight = 1;
  mf_graph *g = mf_graph_init(MF_F32);
  vqgan_net net;
  char err[1024];
  mf_session *s = NULL;
  float *x = NULL, *xr = NULL;
  if (vqgan_build(g, &c, c.micro_batch, &net, err, sizeof err) < 0 || net.p_loss < 0) { CHECK(0, "build: %s", err); goto out; }
  int frozen = 1, nbuf = 0;
  for (int id = 0; id < g->n; id++) {
    const mf_node *nd = &g->nodes[id];
    if (strncmp(nd->name, "perceptual.", 11)) continue;
    if (nd->op == MF_OP_PARAM) frozen = 0;
    if (nd->op == MF_OP_BUFFER) nbuf++;
  }
  CHECK(frozen && nbuf == 4, "the feature network's 4 weights are buffers, no parameters (%d buffers)", nbuf);
  mf_tensor bias = -1;
  for (int id = 0; id < g->n; id++)
    if (g->nodes[id].op == MF_OP_PARAM && !strcmp(g->nodes[id].name, "decoder.conv_out.bias")) bias = id;
  mf_tensor keep[4] = {net.xrec, net.p_loss};
  mf_train_opts o = mf_train_opts_default();
  o.plan.n_keep = 2;
  o.plan.keep = keep;
  o.n_groups = 2; /* the discriminator's group: present in the graph, no gradient from this loss */
  o.groups[1] = o.groups[0];
  o.debug_memory = 1;
  o.threads = 2;
  o.loss_scaling = 0;
  s = mf_session_init(g, net.p_loss, &o, err, sizeof err);
  if (!s) { CHECK(0, "session: %s", err); goto out; }
  CHECK(vqgan_load_perceptual(&net, s, err, sizeof err) == 0, "loading the feature network's weights: %s", err);
  vq_session_ready(&net.vq, s);
  int64_t nx = mf_tensor_numel(g, net.x);
  x = malloc((size_t)nx * sizeof *x);
  xr = malloc((size_t)nx * sizeof *xr);
  for (int64_t i = 0; i < nx; i++) x[i] = (float)(2 * unif() - 1);
  mf_session_write_input(s, net.x, x, (size_t)nx);
  float f0 = 0;
  mf_session_write_input(s, net.factor, &f0, 1);
  double loss = mf_session_micro_step(s);
  float lv = 0, gb[3] = {0, 0, 0};
  int rd = mf_session_read(s, net.xrec, xr, (size_t)nx) == 0 && mf_session_read(s, net.p_loss, &lv, 1) == 0 &&
           mf_session_read_grad(s, bias, gb, 3) == 0;
  CHECK(isfinite(loss) && rd, "a step on the perceptual term ran (loss %g)", loss);
  int arenas_ok = 1;
  const mf_plan *p = mf_session_plan(s);
  for (int a = 0; a < MF_ARENA_COUNT; a++)
    arenas_ok &= mf_plan_arena_bytes(p, (mf_arena_kind)a) == mf_session_measured_bytes(s, (mf_arena_kind)a);
  CHECK(arenas_ok, "perceptual term: measured == planned per arena");
  FILE *fp = fopen(data, "wb");
  int32_t hdr[3] = {(int32_t)(nx / (3 * c.size * c.size)), 3, c.size};
  double l64 = lv, g64[3] = {gb[0], gb[1], gb[2]};
  if (fp) {
    fwrite(hdr, sizeof hdr, 1, fp);
    fwrite(xr, sizeof *xr, (size_t)nx, fp);
    fwrite(x, sizeof *x, (size_t)nx, fp);
    fwrite(&l64, sizeof l64, 1, fp);
    fwrite(g64, sizeof g64, 1, fp);
    fclose(fp);
  }
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/vqgan_perceptual.py check %s %s", root, onnx, data);
  fflush(stdout);
  CHECK(fp && system(cmd) == 0, "the perceptual term and its gradient against PyTorch (float64): %s", cmd);
  /* bad files: not ONNX; an input that does not take the images (the network fixes 1 channel) */
  vqgan_net n2;
  mf_graph *g2 = mf_graph_init(MF_F32);
  snprintf(c.perceptual, sizeof c.perceptual, "%s", data);
  CHECK(vqgan_build(g2, &c, c.micro_batch, &n2, err, sizeof err) < 0 && strstr(err, "--perceptual") && strstr(err, "term.bin"),
        "a file that is not ONNX: %s", err);
  mf_graph_free(g2);
  snprintf(cmd, sizeof cmd,
           "/usr/bin/python3 -c \"import torch; torch.onnx.export(torch.nn.Conv2d(1, 2, 3), torch.zeros(1, 1, 8, 8), '%s/gray.onnx', "
           "input_names=['x'], opset_version=13)\" >/dev/null 2>&1", dir);
  if (system(cmd) == 0) {
    snprintf(c.perceptual, sizeof c.perceptual, "%s/gray.onnx", dir);
    g2 = mf_graph_init(MF_F32);
    CHECK(vqgan_build(g2, &c, c.micro_batch, &n2, err, sizeof err) < 0 && strstr(err, "gray.onnx") && strstr(err, "input 'x'"),
          "a network whose input does not take the images: %s", err);
    mf_graph_free(g2);
    snprintf(cmd, sizeof cmd, "%s/gray.onnx", dir);
    unlink(cmd);
  }
out:
  free(x);
  free(xr);
  if (s) mf_session_free(s);
  vqgan_net_free(&net);
  mf_graph_free(g);
  unlink(onnx);
  unlink(data);
  rmdir(dir);
}

int main(void) {
  temporal_check();
  perceptual_check();
  ssim_check();
  session_run(MF_F32, 0, 1);
  session_run(MF_BF16, 0, 1);
  session_run(MF_F32, 1, 1);
  session_run(MF_BF16, 1, 1);
  session_run(MF_F32, 0, 4);
  session_run(MF_BF16, 1, 4);
  recompute_same();
  lambda_terms_check();
  parity(0);
  parity(1);
  errors();
  return check_finish("test_vqgan");
}
