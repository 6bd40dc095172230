/* fuzz_onnx.c — libFuzzer harness for the ONNX importer (src/onnx/): each input is parsed as a model from
 * memory (mf_onnx_open_memory, no external data allowed), its unsupported nodes are listed, and a model that
 * opens is built with the shapes it declares and no loss, in f32, then planned for a forward pass. Seeds:
 * the model.onnx files of Debian's libonnx-testdata node tests (docs/onnx.md says how to run it). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "memfit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[1024];
  mf_onnx *m = mf_onnx_open_memory(data, size, NULL, err, sizeof err);
  if (!m) return 0;
  if (mf_onnx_unsupported(m, NULL) < 0) abort(); /* an opened model can always be listed */
  mf_graph *g = mf_graph_init(MF_F32);
  mf_onnx_build_opts bo = {.loss = MF_ONNX_LOSS_NONE};
  mf_onnx_built b;
  if (mf_onnx_build(m, g, &bo, &b, err, sizeof err) == 0) {
    /* a built graph plans for a forward pass, or says why not: a plan of more than 1 GiB is not made */
    int64_t total = 0;
    for (int i = 0; i < b.n_inputs; i++) total += mf_tensor_numel(g, b.inputs[i]);
    if (total < (1 << 20)) {
      mf_plan_opts po = mf_plan_opts_default();
      po.training = 0;
      po.threads = 1;
      mf_plan *p = mf_plan_init(g, b.loss, &po, err, sizeof err);
      mf_plan_free(p);
    }
    mf_onnx_built_free(&b);
  }
  mf_graph_free(g);
  mf_onnx_close(m);
  return 0;
}
