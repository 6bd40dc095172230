/* wavelet.c — STUB, to be replaced by the real wavelet ops (shape rules, builders, gradients). */
#include "ops/ops.h"

mf_tensor mf_dwt_haar(mf_graph *g, mf_tensor x) {
  (void)x;
  return mf_graph_fail(g, "mf_dwt_haar: not implemented yet");
}
mf_tensor mf_idwt_haar(mf_graph *g, mf_tensor x) {
  (void)x;
  return mf_graph_fail(g, "mf_idwt_haar: not implemented yet");
}
const mf_op_def mf_op_def_dwt = {"dwt", NULL, NULL};
const mf_op_def mf_op_def_idwt = {"idwt", NULL, NULL};
