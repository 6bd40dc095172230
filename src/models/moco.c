/* moco.c — MoCo v2 / v3 training graphs on ResNet backbones (docs/design.md 3.2): query encoder with its
 * head, key encoder as EMA states of every query parameter, L2-normalised embeddings, InfoNCE against a
 * queue of negatives pushed once per optimizer step (v2) or the symmetric in-batch loss (v3); presets,
 * settings checks, the eval-mode feature graph and the copy of trained weights into it. */
#include "models/moco.h"
#include "graph/graph.h"
#include "graph/oplist.h"
#include "plan/plan.h"
#include "train/session.h"
#include "base/rng.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

moco_cfg moco_cfg_default(void) {
  moco_cfg c = {.version = 2, .depth = 18, .width = 1, .small_stem = 1, .size = 32, .channels = 3, .batch = 256,
                .micro_batch = 0, .accum = 1, .queue = 4096, .dim = 128, .hidden = 2048, .temperature = 0.2,
                .momentum = 0.99, .bn_splits = 8, .bn_momentum = 0.1, .bn_eps = 1e-5, .ranks = 1, .shuffle_bn = -1};
  snprintf(c.preset, sizeof c.preset, "small");
  return c;
}

const char *moco_preset_names(void) { return "small, seed-low-vram, seed-16gb, tiny"; }

int moco_cfg_preset(const char *name, moco_cfg *c, char *err, size_t n) {
  moco_cfg d = moco_cfg_default();
  if (!strcmp(name, "small")) {
    /* CIFAR-style (the official demo's ResNet-18, small stem, K 4096, m 0.99), v2 head and T 0.2 */
  } else if (!strcmp(name, "seed-low-vram")) { /* the seed's 8 GB run: ResNet-50, 224 px, 64 x 4 accumulated */
    d.depth = 50, d.small_stem = 0, d.size = 224, d.batch = 256, d.micro_batch = 64, d.queue = 65536, d.momentum = 0.999;
    d.bn_splits = 1;
  } else if (!strcmp(name, "seed-16gb")) { /* the seed's 16 GB setting: batch 96, queue 76,800 */
    d.depth = 50, d.small_stem = 0, d.size = 224, d.batch = 96, d.micro_batch = 96, d.queue = 76800, d.momentum = 0.999;
    d.bn_splits = 1;
  } else if (!strcmp(name, "tiny")) { /* tests: ResNet-18 at 1/16 width, 16 px */
    d.width = 0.0625, d.size = 16, d.batch = 8, d.queue = 20, d.dim = 8, d.hidden = 16, d.bn_splits = 2;
  } else {
    snprintf(err, n, "--preset: '%s' is not a moco preset (%s)", name, moco_preset_names());
    return -1;
  }
  snprintf(d.preset, sizeof d.preset, "%s", name);
  *c = d;
  return 0;
}

static resnet_cfg backbone_cfg(const moco_cfg *c, int training) {
  resnet_cfg r = resnet_cfg_default(c->depth);
  r.width = c->width;
  r.small_stem = c->small_stem;
  r.channels = c->channels;
  r.bn_splits = c->bn_splits;
  r.training = training;
  r.bn_momentum = c->bn_momentum;
  r.bn_eps = c->bn_eps;
  r.segments = c->segments;
  return r;
}

int moco_cfg_check(moco_cfg *c, char *err, size_t n) {
  if (c->version != 2 && c->version != 3) { snprintf(err, n, "--version: %d is not 2 or 3", c->version); return -1; }
  resnet_cfg r = backbone_cfg(c, 1);
  if (resnet_cfg_check(&r, err, n) < 0) return -1;
  if (c->batch < 2) { snprintf(err, n, "--batch: %d: MoCo needs at least 2 samples per step", c->batch); return -1; }
  int mb = c->micro_batch > 0 ? c->micro_batch : c->batch;
  if (c->batch % mb) {
    snprintf(err, n, "--micro-batch: %d does not divide --batch %d", mb, c->batch);
    return -1;
  }
  c->micro_batch = mb;
  c->accum = c->batch / mb;
  if (!(c->temperature > 0) || !isfinite(c->temperature)) {
    snprintf(err, n, "--temperature: %g must be above 0", c->temperature);
    return -1;
  }
  if (!(c->momentum >= 0 && c->momentum <= 1)) { snprintf(err, n, "--momentum: %g is not in [0, 1]", c->momentum); return -1; }
  if (c->dim < 1 || c->hidden < 1) { snprintf(err, n, "--dim / --hidden: %d / %d must be at least 1", c->dim, c->hidden); return -1; }
  int R = c->ranks > 1 ? c->ranks : 1; /* data parallel: batch is one rank's share; the queue takes every rank's keys */
  if (c->version == 2 && c->queue < (int64_t)c->batch * R) {
    snprintf(err, n, "--queue: %d negatives is shorter than --batch %d (the keys of one step would overwrite each other); "
                     "raise --queue or lower --batch", c->queue, c->batch * R);
    return -1;
  }
  if (c->size < 8) { snprintf(err, n, "--size: %d pixels is too small (at least 8)", c->size); return -1; }
  if (c->shuffle_bn == 1 && c->version != 2) {
    snprintf(err, n, "--shuffle-bn: 1 is for MoCo v2 (its reference shuffles the key encoder's batch; v3's does not)");
    return -1;
  }
  if (mb % c->bn_splits || mb / c->bn_splits < 2) {
    snprintf(err, n, "--bn-splits: %d does not divide the micro-batch of %d into slices of at least 2 samples", c->bn_splits, mb);
    return -1;
  }
  return 0;
}

int moco_shuffle_on(const moco_cfg *c) {
  return c->version == 2 && (c->shuffle_bn == 1 || (c->shuffle_bn < 0 && c->ranks > 1));
}

int moco_shuffle_draw(uint64_t seed, int64_t micro, int ranks, int rank, int B, float *shuffle, float *unshuffle, int *perm) {
  int R = ranks > 1 ? ranks : 1, M = R * B;
  int *p = malloc(2 * (size_t)M * sizeof *p), *inv = p ? p + M : NULL; /* [M] perm, [M] its inverse */
  if (!p) return -1;
  uint64_t st = hash_words(seed, 0x53485546464C45ull /* "SHUFFLE" */, (uint64_t)micro);
  for (int i = 0; i < M; i++) p[i] = i;
  for (int i = M - 1; i > 0; i--) { /* Fisher-Yates */
    int j = (int)(splitmix64_next(&st) % (uint64_t)(i + 1)), t = p[i];
    p[i] = p[j], p[j] = t;
  }
  for (int i = 0; i < M; i++) inv[p[i]] = i;
  for (int j = 0; j < B; j++) {
    int gs = p[rank + R * j], gu = inv[rank + R * j];           /* global sample taken; position of own sample */
    shuffle[j] = (float)((gs % R) * B + gs / R);                 /* its row in the gathered views */
    unshuffle[j] = (float)((gu % R) * B + gu / R);               /* the gathered key of position gu */
  }
  if (perm) memcpy(perm, p, (size_t)M * sizeof *perm);
  free(p);
  return 0;
}

double moco_momentum_at(const moco_cfg *c, int64_t step, int64_t total) {
  if (c->version != 3 || total <= 0) return c->momentum;
  double t = (double)step / (double)total;
  if (t > 1) t = 1;
  return 1 - (1 - c->momentum) * (cos(M_PI * t) + 1) / 2;
}

/* ---- building blocks ---- */
typedef struct head_ctx {
  mf_graph *g;
  const moco_cfg *c;
  int training, key;       /* key: weights are EMAs of the query's */
  double momentum;
} head_ctx;

static mf_tensor find_reader(const mf_graph *g, mf_tensor master) {
  if (master < 0 || g->act_dtype == MF_F32 || g->act_dtype == MF_F64) return master;
  for (int id = master + 1; id < g->n; id++)
    if (g->nodes[id].op == MF_OP_PARAM_LP && g->nodes[id].master == master) return id;
  return master;
}

/* A head weight: "<q-prefix><name>" as a parameter, or for the key encoder "encoder_k.<name>" as its EMA.
 * Looked up first, so a second pass (v3's second view) reuses it. */
static mf_tensor hw(head_ctx *h, const char *qname, const char *kname, int ndim, const int64_t *shape, mf_init init,
                    double scale) {
  const char *name = h->key ? kname : qname;
  mf_tensor have = resnet_find(h->g, name);
  if (have >= 0) return find_reader(h->g, have);
  if (!h->key) return mf_param(h->g, name, ndim, shape, init, scale);
  mf_tensor p = resnet_find(h->g, qname);
  if (p < 0) return mf_graph_fail(h->g, "moco: key weight '%s' has no query parameter '%s'", kname, qname);
  return mf_ema(h->g, kname, p, h->momentum);
}

/* "encoder_q.fc.0" -> "encoder_k.fc.0" (predictor: no key twin) */
static void twin(char *k, size_t n, const char *q) {
  if (!strncmp(q, "encoder_q.", 10)) snprintf(k, n, "encoder_k.%s", q + 10);
  else snprintf(k, n, "%s", q);
}

/* linear named base (.weight [out,in], .bias [out] when bias): PyTorch's default uniform(+-1/sqrt(in)) */
static mf_tensor linear(head_ctx *h, mf_tensor x, const char *base, int64_t out, int bias) {
  int64_t in = mf_tensor_dim(h->g, x, 1), ws[2] = {out, in};
  char qn[96], kn[96];
  double sc = 1 / sqrt((double)in);
  snprintf(qn, sizeof qn, "%s.weight", base);
  twin(kn, sizeof kn, qn);
  mf_tensor w = hw(h, qn, kn, 2, ws, MF_INIT_UNIFORM, sc);
  mf_tensor bb = -1;
  if (bias) {
    snprintf(qn, sizeof qn, "%s.bias", base);
    twin(kn, sizeof kn, qn);
    bb = hw(h, qn, kn, 1, &out, MF_INIT_UNIFORM, sc);
  }
  return mf_linear(h->g, x, w, bb); /* [B,out] */
}

/* BatchNorm1d named base over x [B,D]; affine 0: no weight and bias (constant ones / zeros buffers) */
static mf_tensor bn1d(head_ctx *h, mf_tensor x, const char *base, int affine) {
  int64_t D = mf_tensor_dim(h->g, x, 1), S = h->training ? h->c->bn_splits : 1, SD = S * D;
  char qn[96], kn[96];
  mf_tensor ga, be;
  if (affine) {
    snprintf(qn, sizeof qn, "%s.weight", base);
    twin(kn, sizeof kn, qn);
    ga = hw(h, qn, kn, 1, &D, MF_INIT_ONE, 0);
    snprintf(qn, sizeof qn, "%s.bias", base);
    twin(kn, sizeof kn, qn);
    be = hw(h, qn, kn, 1, &D, MF_INIT_ZERO, 0);
  } else { /* BatchNorm1d(affine=False): gamma 1 and beta 0, constants (buffers nothing writes) */
    snprintf(qn, sizeof qn, "%s.one", base);
    if ((ga = resnet_find(h->g, qn)) < 0) ga = mf_buffer(h->g, qn, 1, &D, MF_INIT_ONE, 0);
    snprintf(qn, sizeof qn, "%s.zero", base);
    if ((be = resnet_find(h->g, qn)) < 0) be = mf_buffer(h->g, qn, 1, &D, MF_INIT_ZERO, 0);
  }
  char rn[96];
  snprintf(qn, sizeof qn, "%s.running_mean", base);
  twin(rn, sizeof rn, qn);
  const char *mname = h->key ? rn : qn;
  mf_tensor rm = resnet_find(h->g, mname);
  if (rm < 0) rm = mf_buffer(h->g, mname, 1, &SD, MF_INIT_ZERO, 0);
  snprintf(qn, sizeof qn, "%s.running_var", base);
  twin(rn, sizeof rn, qn);
  const char *vname = h->key ? rn : qn;
  mf_tensor rv = resnet_find(h->g, vname);
  if (rv < 0) rv = mf_buffer(h->g, vname, 1, &SD, MF_INIT_ONE, 0);
  return resnet_split_bn(h->g, x, ga, be, rm, rv, (int)S, h->training, h->c->bn_momentum, h->c->bn_eps);
}

/* x / max(||x||_2, eps) along axis 1 of [B,D]: PyTorch's F.normalize (eps 1e-12) */
static mf_tensor l2_normalize(mf_graph *g, mf_tensor x) { return mf_l2_normalize(g, x, 1e-12); }

/* v2 head fc.0 (F -> hidden), relu, fc.2 (hidden -> dim), normalised */
static mf_tensor head_v2(head_ctx *h, mf_tensor feat) {
  mf_tensor z = mf_relu(h->g, linear(h, feat, "encoder_q.fc.0", h->c->hidden, 1)); /* [B,hidden] */
  z = linear(h, z, "encoder_q.fc.2", h->c->dim, 1);                                /* [B,dim] */
  return z;
}

/* v3 projector: fc.0 linear-bn(fc.1)-relu, fc.3 linear-bn(fc.4)-relu, fc.6 linear-bn(fc.7, no affine) */
static mf_tensor projector_v3(head_ctx *h, mf_tensor feat) {
  mf_graph *g = h->g;
  mf_tensor z = mf_relu(g, bn1d(h, linear(h, feat, "encoder_q.fc.0", h->c->hidden, 0), "encoder_q.fc.1", 1));
  z = mf_relu(g, bn1d(h, linear(h, z, "encoder_q.fc.3", h->c->hidden, 0), "encoder_q.fc.4", 1));
  return bn1d(h, linear(h, z, "encoder_q.fc.6", h->c->dim, 0), "encoder_q.fc.7", 0); /* [B,dim] */
}

/* v3 predictor: predictor.0 linear-bn(predictor.1)-relu, predictor.3 linear */
static mf_tensor predictor_v3(head_ctx *h, mf_tensor z) {
  z = mf_relu(h->g, bn1d(h, linear(h, z, "predictor.0", h->c->hidden, 0), "predictor.1", 1));
  return linear(h, z, "predictor.3", h->c->dim, 0); /* [B,dim] */
}

/* 2T * CE(q k^T / T, arange): v3's contrastive loss of one direction */
static mf_tensor ctr_v3(mf_graph *g, mf_tensor q, mf_tensor k, mf_tensor labels, double T, mf_tensor *logits) {
  *logits = mf_mul_scalar(g, mf_matmul(g, q, k, 0, 1), 1 / T); /* [B, R*B]: R = 1 gives [B,B] */
  return mf_mul_scalar(g, mf_softmax_ce(g, *logits, labels), 2 * T);
}

static int fail(mf_graph *g, char *err, size_t n);

/* Creates the query encoder's parameters (backbone and head, in the order and with the initialisation a
 * query build gives them) before any op, so that the key branch can be built first: its activations then
 * die before the query's pile up for backward, which keeps the key encoder out of the activation peak. The
 * shapes come from a query build on a scratch graph. */
static int declare_query_params(mf_graph *g, const moco_cfg *c, const resnet_cfg *rc, int64_t B, char *err, size_t n) {
  mf_graph *gs = mf_graph_init(g->act_dtype);
  if (!gs) { snprintf(err, n, "moco: out of host memory"); return -1; }
  int64_t xs[4] = {B, c->channels, c->size, c->size};
  resnet_src sq = {.prefix = "encoder_q."};
  resnet_cfg r = *rc;
  r.segments = 0;
  resnet_net bn;
  head_ctx h = {gs, c, 1, 0, c->momentum};
  int rcode = resnet_build(gs, &r, &sq, mf_input(gs, "x", 4, xs), &bn, err, n);
  if (rcode == 0) {
    if (c->version == 2) head_v2(&h, bn.feat);
    else predictor_v3(&h, projector_v3(&h, bn.feat));
    if (mf_graph_error(gs)) rcode = fail(gs, err, n);
  }
  for (int id = 0; rcode == 0 && id < gs->n; id++) {
    const mf_node *nd = &gs->nodes[id];
    if (nd->op == MF_OP_PARAM && mf_param(g, nd->name, nd->ndim, nd->ne, (mf_init)nd->init, nd->init_scale) < 0) rcode = fail(g, err, n);
  }
  mf_graph_free(gs);
  return rcode;
}

static int fail(mf_graph *g, char *err, size_t n) {
  snprintf(err, n, "%s", mf_graph_error(g) ? mf_graph_error(g) : "moco: build failed");
  return -1;
}

int moco_build(mf_graph *g, const moco_cfg *cin, int micro_batch, moco_net *out, char *err, size_t n) {
  memset(out, 0, sizeof *out);
  out->xq = out->xk = out->labels = out->loss = out->logits = out->q = out->k = out->queue = out->shuffle = out->unshuffle = -1;
  moco_cfg c = *cin;
  c.micro_batch = micro_batch;
  if (moco_cfg_check(&c, err, n) < 0) return -1;
  out->cfg = c;
  int R = c.ranks > 1 ? c.ranks : 1;
  int64_t B = micro_batch, xs[4] = {B, c.channels, c.size, c.size};
  out->xq = mf_input(g, "xq", 4, xs);                                      /* [B,C,H,W] view 1 */
  out->xk = mf_input(g, "xk", 4, xs);                                      /* [B,C,H,W] view 2 */
  out->labels = mf_input_typed(g, "labels", MF_I32, 1, &B);                /* [B] */
  resnet_cfg rc = backbone_cfg(&c, 1);
  resnet_src sq = {.prefix = "encoder_q."}, sk = {.prefix = "encoder_k.", .ema_prefix = "encoder_q.", .momentum = c.momentum,
                                                  .ema = 1};
  head_ctx hq = {g, &c, 1, 0, c.momentum}, hk = {g, &c, 1, 1, c.momentum};
  if (declare_query_params(g, &c, &rc, B, err, n) < 0) return -1;
  if (c.version == 2 && moco_shuffle_on(&c)) { /* shuffled BN: the key encoder runs on a permuted slice of the global batch */
    out->shuffle = mf_input_typed(g, "shuffle", MF_I32, 1, &B);             /* [B] rows of the gathered views */
    out->unshuffle = mf_input_typed(g, "unshuffle", MF_I32, 1, &B);         /* [B] rows of the gathered keys */
    int64_t pix = (int64_t)c.channels * c.size * c.size, flat[2] = {R * B, pix};
    mf_tensor xa = R > 1 ? mf_allgather(g, out->xk, R) : out->xk;           /* [R*B,C,H,W] the global micro-batch */
    if (R > 1) mf_tensor_set_name(g, xa, "xk_gathered");
    mf_tensor xsh = mf_gather(g, mf_reshape(g, xa, 2, flat), out->shuffle); /* [B,C*H*W] */
    xsh = mf_reshape(g, xsh, 4, xs);                                        /* [B,C,H,W] */
    if (resnet_build(g, &rc, &sk, xsh, &out->bk, err, n) < 0) return -1;
    mf_tensor ksh = l2_normalize(g, head_v2(&hk, out->bk.feat));            /* [B,dim] keys of the shuffled slice */
    mf_tensor ka = R > 1 ? mf_allgather(g, ksh, R) : ksh;                   /* [R*B,dim] */
    if (R > 1) mf_tensor_set_name(g, ka, "k_gathered");
    out->k = mf_gather(g, ka, out->unshuffle);                              /* [B,dim] this rank's own samples' keys */
    mf_tensor_set_name(g, out->k, "k");
  } else if (c.version == 2) { /* the key branch first (see declare_query_params) */
    if (resnet_build(g, &rc, &sk, out->xk, &out->bk, err, n) < 0) return -1;
    out->k = l2_normalize(g, head_v2(&hk, out->bk.feat));                 /* [B,dim], EMA weights only: no gradient */
  }
  if (c.version == 2) {
    if (resnet_build(g, &rc, &sq, out->xq, &out->bq, err, n) < 0) return -1;
    out->q = l2_normalize(g, head_v2(&hq, out->bq.feat));                 /* [B,dim] */
    out->queue = mf_ring(g, "queue", c.queue, c.dim);                      /* [K,dim] */
    mf_tensor lpos = mf_sum(g, mf_mul(g, out->q, out->k), 1u << 1, 1);     /* [B,1] */
    mf_tensor lneg = mf_matmul(g, out->q, out->queue, 0, 1);              /* [B,K] */
    mf_tensor parts[2] = {lpos, lneg};
    out->logits = mf_mul_scalar(g, mf_concat(g, 2, parts, 1), 1 / c.temperature); /* [B,1+K] */
    mf_tensor_set_name(g, out->logits, "logits");
    out->loss = mf_softmax_ce(g, out->logits, out->labels);
    if (mf_ring_push_steps(g, out->queue, out->k, c.accum) < 0) return fail(g, err, n);
  } else {
    resnet_net b2; /* the key branches first (see declare_query_params) */
    if (resnet_build(g, &rc, &sk, out->xq, &out->bk, err, n) < 0) return -1;
    mf_tensor k1 = l2_normalize(g, projector_v3(&hk, out->bk.feat));      /* [B,dim], no gradient */
    if (resnet_build(g, &rc, &sk, out->xk, &b2, err, n) < 0) return -1;
    mf_tensor k2 = l2_normalize(g, projector_v3(&hk, b2.feat));
    if (resnet_build(g, &rc, &sq, out->xq, &out->bq, err, n) < 0) return -1;
    mf_tensor q1 = l2_normalize(g, predictor_v3(&hq, projector_v3(&hq, out->bq.feat)));  /* [B,dim] */
    if (resnet_build(g, &rc, &sq, out->xk, &b2, err, n) < 0) return -1;   /* same parameters, second view */
    mf_tensor q2 = l2_normalize(g, predictor_v3(&hq, projector_v3(&hq, b2.feat)));
    mf_tensor l2;
    /* over R ranks the negatives are the global batch's keys (the reference's concat_all_gather): logits [B, R*B],
     * the positive of local row i at column r*B + i (the labels) */
    mf_tensor k2a = R > 1 ? mf_allgather(g, k2, R) : k2, k1a = R > 1 ? mf_allgather(g, k1, R) : k1; /* [R*B,dim] */
    if (R > 1) mf_tensor_set_name(g, k2a, "k2_gathered"), mf_tensor_set_name(g, k1a, "k1_gathered");
    out->loss = mf_add(g, ctr_v3(g, q1, k2a, out->labels, c.temperature, &out->logits),
                       ctr_v3(g, q2, k1a, out->labels, c.temperature, &l2));
    mf_tensor_set_name(g, out->logits, "logits");
    out->q = q1;
    out->k = k2;
  }
  for (int id = 0; id < g->n; id++)
    out->n_ema += g->nodes[id].role == MF_ROLE_BUFFER && g->nodes[id].state_kind == MF_STATE_EMA;
  if (mf_graph_error(g)) return fail(g, err, n);
  return 0;
}

int moco_session_ready(mf_session *s, const moco_net *net, char *err, size_t n) {
  const moco_cfg *c = &net->cfg;
  int B = c->micro_batch;
  float *lab = malloc((size_t)B * sizeof *lab);
  if (!lab) { snprintf(err, n, "moco: out of host memory"); return -1; }
  int rank = mf_session_rank(s);
  for (int i = 0; i < B; i++) lab[i] = c->version == 2 ? 0.0f : (float)(rank * B + i); /* v2: the positive is column 0 */
  int rc = mf_session_write_input(s, net->labels, lab, (size_t)B);
  free(lab);
  if (rc < 0) { snprintf(err, n, "moco: writing the labels input failed"); return -1; }
  if (net->queue < 0) return 0;
  /* the reference starts the queue with random unit vectors (normalize(randn(dim, K), dim=0)) */
  size_t cnt = (size_t)c->queue * (size_t)c->dim;
  float *q = malloc(cnt * sizeof *q);
  if (!q) { snprintf(err, n, "moco: out of host memory"); return -1; }
  uint64_t st = 0x9E3779B97F4A7C15ull;
  for (size_t i = 0; i < cnt; i += 2) { /* Box-Muller on a splitmix stream */
    double u[2];
    for (int j = 0; j < 2; j++) {
      uint64_t z = (st += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      u[j] = ((double)(z >> 11) + 0.5) / 9007199254740992.0;
    }
    double r = sqrt(-2 * log(u[0]));
    q[i] = (float)(r * cos(2 * M_PI * u[1]));
    if (i + 1 < cnt) q[i + 1] = (float)(r * sin(2 * M_PI * u[1]));
  }
  for (int r = 0; r < c->queue; r++) {
    double ss = 0;
    for (int d = 0; d < c->dim; d++) ss += (double)q[(size_t)r * c->dim + d] * q[(size_t)r * c->dim + d];
    double inv = 1 / fmax(sqrt(ss), 1e-12);
    for (int d = 0; d < c->dim; d++) q[(size_t)r * c->dim + d] = (float)(q[(size_t)r * c->dim + d] * inv);
  }
  rc = mf_session_write_state(s, net->queue, q, cnt);
  free(q);
  if (rc < 0) { snprintf(err, n, "moco: writing the queue failed"); return -1; }
  return 0;
}

int moco_build_features(mf_graph *g, const moco_cfg *cin, int batch, moco_features *out, char *err, size_t n) {
  memset(out, 0, sizeof *out);
  out->x = out->feat = -1;
  moco_cfg c = *cin;
  resnet_cfg rc = backbone_cfg(&c, 0);
  rc.bn_splits = 1;
  if (resnet_cfg_check(&rc, err, n) < 0) return -1;
  if (batch < 1) { snprintf(err, n, "moco features: batch %d must be at least 1", batch); return -1; }
  int64_t xs[4] = {batch, c.channels, c.size, c.size};
  out->x = mf_input(g, "x", 4, xs);                                         /* [batch,C,H,W] */
  resnet_src sq = {.prefix = "encoder_q."};
  if (resnet_build(g, &rc, &sq, out->x, &out->b, err, n) < 0) return -1;
  out->feat = out->b.feat;                                                  /* [batch,F] */
  return 0;
}

int moco_features_copy(mf_session *train, const moco_net *net, mf_session *feat, const moco_features *f, char *err,
                       size_t n) {
  const mf_graph *gt = mf_session_plan(train)->g, *gf = mf_session_plan(feat)->g;
  int splits = net->cfg.bn_splits;
  for (int id = 0; id < gf->n; id++) {
    const mf_node *nd = &gf->nodes[id];
    if (nd->op != MF_OP_PARAM && nd->op != MF_OP_BUFFER) continue;
    mf_tensor src = resnet_find(gt, nd->name);
    if (src < 0) { snprintf(err, n, "moco features: the training graph has no tensor '%s'", nd->name); return -1; }
    int64_t cnt = mf_node_numel(nd), scnt = mf_node_numel(&gt->nodes[src]);
    float *v = malloc((size_t)scnt * sizeof *v);
    if (!v) { snprintf(err, n, "moco features: out of host memory"); return -1; }
    int rc = mf_session_read(train, src, v, (size_t)scnt);
    if (rc == 0 && scnt != cnt) { /* split batch norm: average the per-split running statistics */
      if (scnt != cnt * splits) rc = -1;
      for (int64_t ch = 0; rc == 0 && ch < cnt; ch++) {
        double acc = 0;
        for (int s = 0; s < splits; s++) acc += v[(int64_t)s * cnt + ch];
        v[ch] = (float)(acc / splits);
      }
    }
    if (rc == 0) rc = nd->op == MF_OP_PARAM ? mf_session_write_param(feat, id, v, (size_t)cnt)
                                             : mf_session_write_state(feat, id, v, (size_t)cnt);
    free(v);
    if (rc < 0) { snprintf(err, n, "moco features: copying '%s' failed", nd->name); return -1; }
  }
  (void)f;
  return 0;
}
