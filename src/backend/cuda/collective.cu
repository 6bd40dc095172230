/* collective.cu — the local half of the all-gather op on the device: this rank's rows into its block of the
 * output, the other blocks zeroed (the session exchanges blocks; one rank on a device today: a copy). */
#include "backend/cuda/common.cuh"

extern "C" void mf_cuda_allgather(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  size_t block = mf_node_bytes(n) / (size_t)n->ip[0];
  int r = k->rank >= 0 && k->rank < n->ip[0] ? k->rank : 0;
  if (n->ip[0] > 1) mf_cuda_note(cudaMemsetAsync(out, 0, mf_node_bytes(n), mf_cuda_stream(k)), "allgather");
  mf_cuda_note(cudaMemcpyAsync((char *)out + (size_t)r * block, src[0], block, cudaMemcpyDeviceToDevice, mf_cuda_stream(k)),
               "allgather");
}
