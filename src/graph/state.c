/* state.c — builders of persistent state that gradients do not train (STATE arena): plain states,
 * EMA averages of parameters, ring buffers with their write position and push, and the active-entry
 * masks of models that grow. The session updates them (src/train/state.c). */
#include "graph/graph.h"
#include "graph/oplist.h"
#include <string.h>

/* the f32 master of a parameter as mf_param returned it (its low-precision copy or itself), else -1 */
static int state_param_master(const mf_graph *g, mf_tensor t) {
  if (t < 0 || t >= g->n) return -1;
  if (g->nodes[t].op == MF_OP_PARAM_LP && g->nodes[t].role == MF_ROLE_PARAM_LP) t = g->nodes[t].master;
  return g->nodes[t].op == MF_OP_PARAM ? t : -1;
}

/* the state leaf behind t (an EMA's low-precision copy stands for its average), else -1 */
int mf_state_node(const mf_graph *g, mf_tensor t) {
  if (t < 0 || t >= g->n) return -1;
  if (g->nodes[t].role == MF_ROLE_STATE_LP) t = g->nodes[t].master;
  return g->nodes[t].role == MF_ROLE_BUFFER ? t : -1;
}

/* Appends a state leaf of kind `kind` named `name` (unique among the states). */
static int state_add(mf_graph *g, const char *what, const char *name, mf_state_kind kind, mf_dtype dt, int ndim,
                     const int64_t *shape) {
  if (g->err[0]) return -1;
  if (!name || !*name) return mf_graph_fail(g, "%s: a state needs a name (it is its checkpoint key)", what);
  if (strlen(name) >= MF_NAME_LEN - 4)
    return mf_graph_fail(g, "%s: state name '%s' is longer than %d characters", what, name, MF_NAME_LEN - 5);
  for (int id = 0; id < g->n; id++) {
    const mf_node *n = &g->nodes[id];
    if (n->role == MF_ROLE_BUFFER && n->state_kind != MF_STATE_BUFFER && !strcmp(n->name, name))
      return mf_graph_fail(g, "%s: a state named '%s' already exists", what, name);
  }
  int id = mf_graph_add(g, MF_OP_BUFFER, dt, ndim, shape, 0, NULL);
  if (id < 0) return -1;
  mf_node *n = &g->nodes[id];
  n->role = MF_ROLE_BUFFER;
  n->state_kind = (uint8_t)kind;
  n->seg = -1;
  snprintf(n->name, sizeof n->name, "%s", name);
  return id;
}

mf_tensor mf_state(mf_graph *g, const char *name, mf_dtype dt, int ndim, const int64_t *shape, mf_init init, double scale) {
  if (g->err[0]) return -1;
  if (dt != MF_F32 && dt != MF_I32 && dt != g->act_dtype)
    return mf_graph_fail(g, "state '%s': dtype %s: expected f32, i32 or the graph's %s", name ? name : "?", mf_dtype_name(dt),
                         mf_dtype_name(g->act_dtype));
  int id = state_add(g, "state", name, MF_STATE_PLAIN, dt, ndim, shape);
  if (id < 0) return -1;
  g->nodes[id].init = init;
  g->nodes[id].init_scale = scale;
  return id;
}

mf_tensor mf_ema(mf_graph *g, const char *name, mf_tensor param, double momentum) {
  if (g->err[0]) return -1;
  int p = state_param_master(g, param);
  if (p < 0) return mf_graph_fail(g, "ema '%s': tensor %d is not a parameter (mf_param)", name ? name : "?", param);
  if (!(momentum >= 0 && momentum <= 1))
    return mf_graph_fail(g, "ema '%s' of '%s': momentum %g is not in [0, 1]", name ? name : "?", g->nodes[p].name, momentum);
  mf_node pn = g->nodes[p]; /* a copy: adding nodes may move the array */
  int id = state_add(g, "ema", name, MF_STATE_EMA, pn.dtype, pn.ndim, pn.ne);
  if (id < 0) return -1;
  g->nodes[id].link = p;
  g->nodes[id].fp[0] = momentum;
  if (g->act_dtype == MF_F32 || g->act_dtype == MF_F64) return id;
  /* the copy the ops read in bf16/f16 graphs, refreshed after each average update (like PARAM_LP) */
  int lp = mf_graph_add(g, MF_OP_PARAM_LP, g->act_dtype, pn.ndim, pn.ne, 1, &id);
  if (lp < 0) return -1;
  mf_node *n = &g->nodes[lp];
  n->role = MF_ROLE_STATE_LP;
  n->seg = -1;
  n->master = id;
  memcpy(n->name, g->nodes[id].name, sizeof n->name);
  return lp;
}

mf_tensor mf_ring(mf_graph *g, const char *name, int64_t rows, int64_t cols) {
  if (g->err[0]) return -1;
  if (rows < 1 || cols < 1)
    return mf_graph_fail(g, "ring '%s': %lld rows x %lld columns: both must be at least 1", name ? name : "?", (long long)rows,
                         (long long)cols);
  if (rows > INT32_MAX) return mf_graph_fail(g, "ring '%s': %lld rows: at most %d", name ? name : "?", (long long)rows, INT32_MAX);
  int64_t shape[2] = {rows, cols}, one = 1;
  int id = state_add(g, "ring", name, MF_STATE_RING, g->act_dtype, 2, shape); /* [rows, cols] */
  if (id < 0) return -1;
  char pname[MF_NAME_LEN];
  snprintf(pname, sizeof pname, "%s.pos", name);
  int pos = state_add(g, "ring", pname, MF_STATE_RING_POS, MF_I32, 1, &one); /* [1] */
  if (pos < 0) return -1;
  g->nodes[pos].link = id;
  g->nodes[pos].ip[0] = -1;
  g->nodes[pos].ip[1] = 1;
  g->nodes[pos].ip[2] = -1;
  g->nodes[id].link = pos;
  return id;
}

int mf_ring_push_steps(mf_graph *g, mf_tensor ring, mf_tensor keys, int steps) {
  if (g->err[0]) return -1;
  if (ring < 0 || ring >= g->n || g->nodes[ring].role != MF_ROLE_BUFFER || g->nodes[ring].state_kind != MF_STATE_RING)
    return mf_graph_fail(g, "ring_push: tensor %d is not a ring (mf_ring)", ring);
  const mf_node *r = &g->nodes[ring];
  if (keys < 0 || keys >= g->n) return mf_graph_fail(g, "ring_push '%s': keys (tensor %d) is not a tensor of this graph", r->name, keys);
  const mf_node *k = &g->nodes[keys];
  char ks[64], rs[64];
  mf_shape_str(k, ks, sizeof ks);
  mf_shape_str(r, rs, sizeof rs);
  if (k->ndim != 2 || k->ne[1] != r->ne[1] || k->dtype != r->dtype)
    return mf_graph_fail(g, "ring_push '%s' %s %s: keys '%s' are %s %s: expected [B,%lld] %s", r->name, rs, mf_dtype_name(r->dtype),
                         k->name, ks, mf_dtype_name(k->dtype), (long long)r->ne[1], mf_dtype_name(r->dtype));
  mf_node *pos = &g->nodes[r->link];
  if (pos->ip[0] >= 0) return mf_graph_fail(g, "ring_push '%s': the ring already takes '%s'", r->name, g->nodes[pos->ip[0]].name);
  if (steps < 1) return mf_graph_fail(g, "ring_push '%s': %d micro-steps per push: at least 1", r->name, steps);
  int64_t B = k->ne[0];
  if ((int64_t)steps * B > INT32_MAX)
    return mf_graph_fail(g, "ring_push '%s': %d micro-steps of %lld keys: too many", r->name, steps, (long long)B);
  int stage = -1;
  if (steps > 1) { /* the keys of micro-steps 0 .. steps-2 wait here for the step's last one */
    char sname[MF_NAME_LEN + 8];
    snprintf(sname, sizeof sname, "%s.stage", r->name);
    int64_t shape[2] = {(int64_t)(steps - 1) * B, r->ne[1]}; /* [(steps-1)*B, cols] */
    int ring_pos = r->link;
    mf_dtype dt = r->dtype;
    if ((stage = state_add(g, "ring", sname, MF_STATE_RING_STAGE, dt, 2, shape)) < 0) return -1;
    g->nodes[stage].link = ring_pos;
  }
  pos = &g->nodes[g->nodes[ring].link]; /* adding a node may move the array */
  pos->ip[0] = keys;
  pos->ip[1] = steps;
  pos->ip[2] = stage;
  return 0;
}

int mf_ring_push(mf_graph *g, mf_tensor ring, mf_tensor keys) { return mf_ring_push_steps(g, ring, keys, 1); }



mf_tensor mf_active_mask(mf_graph *g, const char *name, int64_t n_max, int64_t n_initial) {
  if (g->err[0]) return -1;
  if (n_max < 1 || n_initial < 0 || n_initial > n_max)
    return mf_graph_fail(g, "active_mask '%s': %lld of %lld entries active: expected n_max >= 1 and 0 <= n_initial <= n_max",
                         name ? name : "?", (long long)n_initial, (long long)n_max);
  int id = state_add(g, "active_mask", name, MF_STATE_MASK, g->act_dtype, 1, &n_max); /* [n_max] */
  if (id < 0) return -1;
  g->nodes[id].fp[0] = (double)n_initial;
  return id;
}

int mf_mask_rows(mf_graph *g, mf_tensor mask, mf_tensor param) {
  if (g->err[0]) return -1;
  if (mask < 0 || mask >= g->n || g->nodes[mask].role != MF_ROLE_BUFFER || g->nodes[mask].state_kind != MF_STATE_MASK)
    return mf_graph_fail(g, "mask_rows: tensor %d is not a mask (mf_active_mask)", mask);
  int p = state_param_master(g, param);
  const mf_node *m = &g->nodes[mask];
  if (p < 0) return mf_graph_fail(g, "mask_rows '%s': tensor %d is not a parameter (mf_param)", m->name, param);
  mf_node *pn = &g->nodes[p];
  if (pn->ndim < 1 || pn->ne[0] != m->ne[0]) {
    char ps[64];
    mf_shape_str(pn, ps, sizeof ps);
    return mf_graph_fail(g, "mask_rows '%s': parameter '%s' is %s: its first axis must be the mask's %lld entries", m->name, pn->name,
                         ps, (long long)m->ne[0]);
  }
  if (pn->link >= 0) return mf_graph_fail(g, "mask_rows: parameter '%s' is already tied to mask '%s'", pn->name, g->nodes[pn->link].name);
  pn->link = mask;
  return 0;
}
