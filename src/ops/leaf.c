/* leaf.c — the op registry (gradient rules and FLOP counts by op id) and the ops that are not
 * computations of the step: inputs, parameters and their low-precision copies (with their optimizer
 * groups), buffers, the loss gradient seed and the gradient accumulator. */
#include "ops/ops.h"
#include <string.h>

#define MF_OP_TABLE(E, n) [MF_OP_##E] = &mf_op_def_##n,
static const mf_op_def *const op_table[MF_OP_COUNT] = {MF_OP_LIST(MF_OP_TABLE)};
#undef MF_OP_TABLE

const mf_op_def *mf_op_get(int op) { return op >= 0 && op < MF_OP_COUNT ? op_table[op] : NULL; }
double mf_node_flops(const mf_graph *g, const mf_node *n) {
  const mf_op_def *d = mf_op_get(n->op);
  return d && d->flops ? d->flops(g, n) : (double)mf_node_numel(n);
}

static int leaf_add(mf_graph *g, int op, mf_role role, const char *name, mf_dtype dt, int ndim, const int64_t *shape) {
  int id = mf_graph_add(g, op, dt, ndim, shape, 0, NULL);
  if (id < 0) return -1;
  mf_node *n = &g->nodes[id];
  n->role = (uint8_t)role;
  n->seg = -1;
  if (name) snprintf(n->name, sizeof n->name, "%s", name);
  return id;
}

mf_tensor mf_input_typed(mf_graph *g, const char *name, mf_dtype dt, int ndim, const int64_t *shape) {
  return leaf_add(g, MF_OP_INPUT, MF_ROLE_INPUT, name, dt, ndim, shape);
}
mf_tensor mf_input(mf_graph *g, const char *name, int ndim, const int64_t *shape) {
  return mf_input_typed(g, name, g->act_dtype, ndim, shape);
}

mf_tensor mf_param(mf_graph *g, const char *name, int ndim, const int64_t *shape, mf_init init, double scale) {
  int id = leaf_add(g, MF_OP_PARAM, MF_ROLE_PARAM, name, MF_F32, ndim, shape);
  if (id < 0) return -1;
  g->nodes[id].init = init;
  g->nodes[id].init_scale = scale;
  g->nodes[id].requires_grad = true;
  if (g->act_dtype == MF_F32 || g->act_dtype == MF_F64) {
    if (g->act_dtype == MF_F64) g->nodes[id].dtype = MF_F64;
    return id;
  }
  /* low-precision copy that the ops read; refreshed after each optimizer update */
  int lp = mf_graph_add(g, MF_OP_PARAM_LP, g->act_dtype, ndim, shape, 1, &id);
  if (lp < 0) return -1;
  mf_node *n = &g->nodes[lp];
  n->role = MF_ROLE_PARAM_LP;
  n->seg = -1;
  n->master = id;
  snprintf(n->name, sizeof n->name, "%s", name ? name : "param");
  return lp;
}

/* the f32 master of a parameter as mf_param returned it (its low-precision copy or itself), else -1 */
static int param_master(const mf_graph *g, mf_tensor t) {
  if (t < 0 || t >= g->n) return -1;
  if (g->nodes[t].op == MF_OP_PARAM_LP) t = g->nodes[t].master;
  return g->nodes[t].op == MF_OP_PARAM ? t : -1;
}

int mf_param_group_set(mf_graph *g, mf_tensor param, int group) {
  if (g->err[0]) return -1;
  int id = param_master(g, param);
  if (id < 0) return mf_graph_fail(g, "param_group_set: tensor %d is not a parameter (mf_param)", param);
  if (group < 0 || group >= MF_MAX_PARAM_GROUPS)
    return mf_graph_fail(g, "param_group_set: parameter '%s': group %d is not in 0 .. %d", g->nodes[id].name, group,
                         MF_MAX_PARAM_GROUPS - 1);
  g->nodes[id].group = group;
  return 0;
}

int mf_param_group_get(const mf_graph *g, mf_tensor param) {
  int id = param_master(g, param);
  return id < 0 ? -1 : g->nodes[id].group;
}

mf_tensor mf_buffer(mf_graph *g, const char *name, int ndim, const int64_t *shape, mf_init init, double scale) {
  int id = leaf_add(g, MF_OP_BUFFER, MF_ROLE_BUFFER, name, g->act_dtype == MF_F64 ? MF_F64 : MF_F32, ndim, shape);
  if (id < 0) return -1;
  g->nodes[id].init = init;
  g->nodes[id].init_scale = scale;
  return id;
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
