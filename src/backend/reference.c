/* reference.c — the reference evaluator: every node of a graph in its own allocation, run in id
 * order by the CPU backend's kernels; tests check ops, gradients and plans against it. */
#include "backend/reference.h"
#include <stdlib.h>
#include <string.h>

int mf_ref_eval(const mf_graph *g, void *const *leaf_data, double grad_seed, mf_ref *out, char *err, size_t errlen) {
  out->n = g->n;
  out->data = calloc((size_t)g->n, sizeof *out->data);
  if (!out->data) { snprintf(err, errlen, "reference eval: out of host memory"); return -1; }
  char fault[256] = "";
  /* a training step: dropout draws with the graph's seed (mf_graph_set_seed) */
  mf_kctx k = {.g = g, .grad_seed = grad_seed, .nthreads = 1, .fault = fault, .fault_len = sizeof fault, .training = 1,
               .step_seed = g->seed};
  out->alias = calloc((size_t)g->n, 1);
  if (!out->alias) { snprintf(err, errlen, "reference eval: out of host memory"); return -1; }
  for (int id = 0; id < g->n; id++) {
    const mf_node *n = &g->nodes[id];
    size_t bytes = mf_node_bytes(n);
    if (n->role == MF_ROLE_GRAD && g->nodes[n->master].grad != id) { /* shares its parameter's gradient */
      out->data[id] = out->data[g->nodes[n->master].grad];
      out->alias[id] = 1;
    } else
      out->data[id] = calloc(1, bytes ? bytes : 1);
    if (!out->data[id]) { snprintf(err, errlen, "reference eval: out of host memory"); return -1; }
    if ((n->op == MF_OP_INPUT || n->op == MF_OP_PARAM || n->op == MF_OP_BUFFER) && leaf_data && leaf_data[id])
      memcpy(out->data[id], leaf_data[id], bytes);
    mf_node nc = *n; /* the implementation is chosen as a plan would choose it (the graph is not the evaluator's to edit) */
    if (mf_backend_cpu.choose) mf_backend_cpu.choose(g, &nc, 0);
    size_t wsb = mf_backend_cpu.workspace(g, &nc);
    void *ws = wsb ? malloc(wsb) : NULL;
    if (wsb && !ws) { snprintf(err, errlen, "reference eval: out of host memory"); return -1; }
    void *src[MF_MAX_SRC] = {0};
    for (int i = 0; i < n->nsrc; i++) src[i] = out->data[n->src[i]];
    mf_backend_cpu.kernels[n->op](&k, &nc, out->data[id], src, ws);
    free(ws);
  }
  if (fault[0]) {
    snprintf(err, errlen, "reference eval: %s", fault);
    mf_ref_free(out);
    return -1;
  }
  return 0;
}

void mf_ref_free(mf_ref *r) {
  if (!r->data) return;
  for (int i = 0; i < r->n; i++)
    if (!r->alias || !r->alias[i]) free(r->data[i]);
  free(r->data);
  free(r->alias);
  r->alias = NULL;
  r->data = NULL;
}
