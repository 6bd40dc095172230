/* leaf.c — the op registry (names, gradient rules, FLOP counts by op id) and the ops that are
 * not computations of the step: inputs, parameters and their low-precision copies, buffers,
 * the loss gradient seed and the gradient accumulator. */
#include "ops/ops.h"

#define MF_OP_TABLE(E, n) [MF_OP_##E] = &mf_op_def_##n,
static const mf_op_def *const op_table[MF_OP_COUNT] = {MF_OP_LIST(MF_OP_TABLE)};
#undef MF_OP_TABLE

const mf_op_def *mf_op_get(int op) { return op >= 0 && op < MF_OP_COUNT ? op_table[op] : NULL; }
const char *mf_op_name(int op) {
  const mf_op_def *d = mf_op_get(op);
  return d ? d->name : "?";
}
double mf_node_flops(const mf_graph *g, const mf_node *n) {
  const mf_op_def *d = mf_op_get(n->op);
  return d && d->flops ? d->flops(g, n) : (double)mf_node_numel(n);
}

static double no_flops(const mf_graph *g, const mf_node *n) { (void)g; (void)n; return 0; }

/* the low-precision copy is a cast: its gradient flows unchanged to the f32 master */
static int grad_param_lp(mf_graph *g, int id, int dy, int *dx) {
  (void)g; (void)id;
  dx[0] = dy;
  return 0;
}

const mf_op_def mf_op_def_input = {"input", NULL, no_flops};
const mf_op_def mf_op_def_param = {"param", NULL, no_flops};
const mf_op_def mf_op_def_param_lp = {"param_lp", grad_param_lp, NULL};
const mf_op_def mf_op_def_buffer = {"buffer", NULL, no_flops};
const mf_op_def mf_op_def_seed = {"seed", NULL, no_flops};
const mf_op_def mf_op_def_acc_grad = {"acc_grad", NULL, NULL};
