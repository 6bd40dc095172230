/* test_steg_recompute.c — the steganography model's training programs compute no dense subnet twice:
 * conv2d steps per subnet and phase in the stored, memory-free and checkpoint programs (planned only). */
#include "check.h"
#include "models/steg.h"
#include "ops/ops.h"
#include "plan/plan.h"

enum { V_STORED = 0, V_MEMFREE, V_CKPT_BLOCKS, V_CKPT_SUBNETS, V_COUNT };
static const char *const vnames[V_COUNT] = {"stored", "memory-free", "checkpointed blocks", "checkpointed subnets"};

typedef struct counts {
  int conv[3][MF_STEG_MAX_BLOCKS][MF_STEG_SUBNETS]; /* [phase][block][subnet] conv2d steps */
  int conv_phase[3];
  double flops_phase[3];
  int twice[3];                                     /* conv2d steps equal to an earlier one of the phase */
  int stray;                                        /* conv2d steps whose weight is no subnet's */
  double flops;
  size_t act, total;
} counts;

/* Block and subnet of a conv weight: the model's parameter tables. */
static int weight_owner(const mf_steg_model *m, int w, int *blk, int *sub) {
  for (int i = 0; i < m->cfg.blocks; i++)
    for (int s = 0; s < MF_STEG_SUBNETS; s++)
      for (int k = 0; k < MF_STEG_CONVS; k++)
        if (m->blk[i].net[s].w[k] == w) { *blk = i; *sub = s; return 0; }
  return -1;
}

static int plan_counts(const mf_steg_config *base, int v, counts *out) {
  static mf_steg_model m; /* the inverse builders point into it while the plan is built */
  mf_steg_config c = *base;
  c.segments = v == V_CKPT_SUBNETS ? MF_STEG_SEG_SUBNETS : MF_STEG_SEG_BLOCKS;
  mf_graph *g = mf_graph_init(MF_F32);
  char err[512];
  if (mf_steg_build(g, &c, &m) != 0) { CHECK(0, "build: %s", mf_graph_error(g)); mf_graph_free(g); return -1; }
  mf_plan_opts o = mf_plan_opts_default();
  o.recompute = v == V_STORED ? MF_RECOMPUTE_NONE : MF_RECOMPUTE_ALL;
  o.invertible = v != V_CKPT_BLOCKS;
  o.threads = 1;
  mf_plan *p = mf_plan_init(g, m.loss, &o, err, sizeof err);
  if (!p) { CHECK(0, "plan (%s): %s", vnames[v], err); mf_graph_free(g); return -1; }
  memset(out, 0, sizeof *out);
  const mf_program *pr = &p->train;
  for (int i = 0; i < pr->n_steps; i++) {
    const mf_node *n = &p->g->nodes[pr->steps[i]];
    out->flops_phase[n->phase] += mf_node_flops(p->g, n);
    if (n->op != MF_OP_CONV2D) continue;
    int blk, sub;
    if (weight_owner(&m, n->src[1], &blk, &sub) == 0) out->conv[n->phase][blk][sub]++;
    else out->stray++;
    out->conv_phase[n->phase]++;
    for (int j = 0; j < i; j++) { /* same phase, same input and weight: the same value computed again */
      const mf_node *e = &p->g->nodes[pr->steps[j]];
      if (e->op == MF_OP_CONV2D && e->phase == n->phase && e->src[0] == n->src[0] && e->src[1] == n->src[1]) {
        out->twice[n->phase]++;
        break;
      }
    }
  }
  out->flops = pr->flops;
  out->act = mf_plan_arena_bytes(p, MF_ARENA_ACT);
  out->total = mf_plan_total_bytes(p);
  mf_plan_free(p);
  mf_graph_free(g);
  return 0;
}

static void check_model(const char *what, const mf_steg_config *c) {
  static counts r[V_COUNT];
  for (int v = 0; v < V_COUNT; v++)
    if (plan_counts(c, v, &r[v]) != 0) return;
  int N = c->blocks;
  /* Storing everything runs every subnet application the loss depends on: 2 passes x 3 subnets per
   * block, less the last hide block's rho and eta (they only make y2, which is dropped) and the last
   * reveal block's phi (it only makes the dropped x1). */
  int want_fwd = MF_STEG_CONVS * (2 * MF_STEG_SUBNETS * N - 3);
  for (int v = 0; v < V_COUNT; v++) {
    const counts *x = &r[v];
    printf("%s, %-20s: %.6e FLOP per micro-step (forward %.4e, recompute %.4e, backward %.4e); activations %zu B, "
           "total %zu B; conv2d forward %d, recomputed %d\n", what, vnames[v], x->flops, x->flops_phase[MF_PHASE_FWD],
           x->flops_phase[MF_PHASE_RECOMPUTE], x->flops_phase[MF_PHASE_BWD], x->act, x->total,
           x->conv_phase[MF_PHASE_FWD], x->conv_phase[MF_PHASE_RECOMPUTE]);
    CHECK(x->stray == 0, "%s, %s: %d conv2d steps read a weight that is no subnet's", what, vnames[v], x->stray);
    CHECK(x->conv_phase[MF_PHASE_FWD] == want_fwd, "%s, %s: %d conv2d in the forward pass, the stored step needs %d",
          what, vnames[v], x->conv_phase[MF_PHASE_FWD], want_fwd);
    CHECK(x->twice[MF_PHASE_FWD] == 0 && x->twice[MF_PHASE_RECOMPUTE] == 0,
          "%s, %s: %d forward and %d recompute conv2d steps repeat one with the same input and weight", what, vnames[v],
          x->twice[MF_PHASE_FWD], x->twice[MF_PHASE_RECOMPUTE]);
    CHECK(x->conv_phase[MF_PHASE_RECOMPUTE] <= want_fwd, "%s, %s: recomputes %d conv2d, more than the forward runs (%d)",
          what, vnames[v], x->conv_phase[MF_PHASE_RECOMPUTE], want_fwd);
  }
  /* memory-free: each subnet is rebuilt at most once per pass; at the junction of the hide and
   * reveal passes rho and eta see the same tensor, so at most once in all */
  const counts *mf = &r[V_MEMFREE];
  for (int b = 0; b < N; b++)
    for (int s = 0; s < MF_STEG_SUBNETS; s++)
      CHECK(mf->conv[MF_PHASE_RECOMPUTE][b][s] <= 2 * MF_STEG_CONVS, "%s: block %d subnet %d: %d recomputed conv2d", what,
            b, s, mf->conv[MF_PHASE_RECOMPUTE][b][s]);
  for (int s = MF_STEG_RHO; s <= MF_STEG_ETA; s++)
    CHECK(mf->conv[MF_PHASE_RECOMPUTE][N - 1][s] <= MF_STEG_CONVS, "%s: junction block %d %s: %d recomputed conv2d, want <= %d",
          what, N - 1, s == MF_STEG_RHO ? "rho" : "eta", mf->conv[MF_PHASE_RECOMPUTE][N - 1][s], MF_STEG_CONVS);
  /* so memory-free backprop costs the stored step plus its recompute, FLOP for FLOP */
  const counts *st = &r[V_STORED];
  CHECK_NEAR(mf->flops_phase[MF_PHASE_FWD], st->flops_phase[MF_PHASE_FWD], 1e-9 * st->flops, "memory-free forward FLOPs vs stored");
  CHECK_NEAR(mf->flops_phase[MF_PHASE_BWD], st->flops_phase[MF_PHASE_BWD], 1e-9 * st->flops, "memory-free backward FLOPs vs stored");
  CHECK(mf->act < st->act, "%s: memory-free plans %zu B of activations, storing %zu B", what, mf->act, st->act);
}

int main(void) {
  mf_steg_config c = mf_steg_config_default();
  c.name = "custom";
  c.blocks = 3;
  c.growth = 4;
  c.height = c.width = 16;
  c.batch = 2;
  check_model("3 blocks g 4 16x16 b2", &c);
  char err[256];
  CHECK(mf_steg_config_preset("seed-16gb", &c, err, sizeof err) == 0, "%s", err);
  check_model("seed-16gb 224x224 b8", &c); /* the preset's micro-batch, as `memfit plan steg --preset seed-16gb` */
  c.reveal_segments = 0;
  c.height = c.width = 32;
  c.batch = 1;
  check_model("seed-16gb hide-only segments 32x32 b1", &c);
  return check_finish("test_steg_recompute");
}
