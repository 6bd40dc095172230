/* cuda.c — the CUDA backend table (C11, so the op table can use designated array initialisers):
 * one launcher per op from the .cu files, the workspace each node needs, device memory and the
 * optimizer. The planner asks it for workspace sizes; the session allocates and runs through it. */
#include "backend/cuda/cuda.h"

static size_t cuda_workspace(const mf_graph *g, const mf_node *n) {
  switch (n->op) {
  case MF_OP_MATMUL:
  case MF_OP_CONV2D:
  case MF_OP_CONV2D_BWD_DATA:
  case MF_OP_CONV2D_BWD_WEIGHT: return mf_cuda_ws_gemm(g, n);
  case MF_OP_REDUCE:
  case MF_OP_LOSS:
  case MF_OP_SOFTMAX_CE: return mf_cuda_ws_reduce(g, n);
  case MF_OP_NORM:
  case MF_OP_NORM_BWD_DX:
  case MF_OP_NORM_BWD_PARAM: return mf_cuda_ws_norm(g, n);
  case MF_OP_GATHER_BWD: return mf_cuda_ws_index(g, n);
  case MF_OP_GAUSS_TOPK:
  case MF_OP_GAUSS_RASTER:
  case MF_OP_GAUSS_RASTER_BWD: return mf_cuda_ws_raster(g, n);
  case MF_OP_ATTN_PROBS:
  case MF_OP_ATTENTION:
  case MF_OP_ATTENTION_BWD:
  case MF_OP_VQ_NEAREST: return mf_cuda_ws_attention(g, n);
  case MF_OP_SSIM_BWD: return mf_cuda_ws_ssim(g, n);
  default: return 0;
  }
}

/* a conv node on cuDNN or im2col + cuBLAS (conv_choice.c); every other op has one implementation */
static void cuda_choose(const mf_graph *g, mf_node *n, int threads) {
  (void)threads;
  if (n->op == MF_OP_CONV2D || n->op == MF_OP_CONV2D_BWD_DATA || n->op == MF_OP_CONV2D_BWD_WEIGHT) mf_cuda_conv_choose(g, n);
}

#define MF_CUDA_ENTRY(E, n) [MF_OP_##E] = mf_cuda_##n,
const mf_backend mf_backend_cuda = {
  .name = "cuda",
  .kernels = {MF_OP_LIST(MF_CUDA_ENTRY)},
  .workspace = cuda_workspace,
  .choose = cuda_choose,
  .impl_describe = mf_cuda_conv_describe,
  .fuses_conv_act = 1, /* conv -> ReLU / leaky ReLU: the conv kernel applies it in place (gemm.cu mf_cuda_conv_act) */
  .alloc = mf_cuda_alloc,
  .free = mf_cuda_free,
  .host_alloc = mf_cuda_host_alloc,
  .host_free = mf_cuda_host_free,
  .copy_in = mf_cuda_copy_in,
  .copy_out = mf_cuda_copy_out,
  .stage_copy = mf_cuda_stage_copy,
  .stage_wait = mf_cuda_stage_wait,
  .fill = mf_cuda_fill,
  .sync = mf_cuda_sync,
  .sum_squares = mf_cuda_sum_squares,
  .optim_update = mf_cuda_optim_update,
  .ema_update = mf_cuda_ema_update,
  .copy_dd = mf_cuda_copy_dd,
  .fixed_overhead = mf_cuda_fixed_overhead,
  .compute_stream = mf_cuda_compute_stream,
  .device_key = mf_cuda_device_key,
};
#undef MF_CUDA_ENTRY
