/* conv_choice.c (CUDA) — which implementation runs each conv node, cuDNN (conv_cudnn.cu) or im2col + cuBLAS
 * (gemm.cu), chosen once when planning and recorded in n->impl, which the workspace and the kernel then follow.
 *
 * The choice, per conv node: im2col when MEMFIT_CUDNN=0, when the build has no cuDNN, when cuDNN does not take the
 * node (mf_cuda_conv_dims), or when the plan is made with no usable device (cuDNN's algorithms and their workspace
 * sizes are asked of a handle on the device); otherwise the first algorithm in cuDNN's heuristic order that is
 * deterministic, of the allowed kinds (conv_cudnn.cu) and fits the node's workspace limit (mf_cuda_conv_ws_limit);
 * im2col when there is none. Pure host code apart from the cuDNN queries, so a CPU-only machine tests it. */
#include "backend/cuda/cuda.h"
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_conv(int op) { return op == MF_OP_CONV2D || op == MF_OP_CONV2D_BWD_DATA || op == MF_OP_CONV2D_BWD_WEIGHT; }

/* out = floor((in + 2 pad - (dil (k - 1) + 1)) / stride) + 1: cuDNN's output size with symmetric padding; -1 if none */
static int64_t out_size(int64_t in, int64_t pad, int64_t k, int64_t dil, int64_t stride) {
  int64_t span = in + 2 * pad - (dil * (k - 1) + 1);
  return span < 0 || stride < 1 ? -1 : span / stride + 1;
}

int mf_cuda_conv_dims(const mf_graph *g, const mf_node *n, mf_cudnn_dims *d, const char **why) {
  static const char *none = "";
  *why = none;
  memset(d, 0, sizeof *d);
  if (!is_conv(n->op) || n->nsrc < 2) { *why = "not a convolution"; return -1; }
  const mf_node *s0 = &g->nodes[n->src[0]], *s1 = &g->nodes[n->src[1]];
  const mf_node *x = n->op == MF_OP_CONV2D_BWD_DATA ? n : s0;
  const mf_node *w = n->op == MF_OP_CONV2D_BWD_WEIGHT ? n : s1;
  const mf_node *y = n->op == MF_OP_CONV2D ? n : n->op == MF_OP_CONV2D_BWD_DATA ? s0 : s1;
  if (x->ndim != 4 || w->ndim != 4 || y->ndim != 4) { *why = "not 4-D"; return -1; }
  if (x->dtype != w->dtype || w->dtype != y->dtype) { *why = "operands in different dtypes"; return -1; }
  if (x->dtype != MF_F32 && x->dtype != MF_BF16 && x->dtype != MF_F16) { *why = "dtype not f32, bf16 or f16"; return -1; }
  const mf_node *t[3] = {x, w, y};
  for (int i = 0; i < 3; i++) {
    if (mf_node_numel(t[i]) > INT_MAX) { *why = "a tensor of more than 2^31 - 1 elements"; return -1; }
    for (int k = 0; k < 4; k++)
      if (t[i]->ne[k] < 1) { *why = "an empty tensor"; return -1; }
  }
  mf_conv_cfg cf = mf_conv_cfg_of(n);
  int groups = cf.groups > 0 ? cf.groups : 1, sw = mf_conv_sw(&cf), dw = mf_conv_dw(&cf);
  if (x->ne[1] % groups || w->ne[0] % groups || w->ne[1] * groups != x->ne[1] || y->ne[1] != w->ne[0] || x->ne[0] != y->ne[0]) {
    *why = "channels do not match the groups";
    return -1;
  }
  if (cf.pt < 0 || cf.pl < 0 || cf.stride < 1 || sw < 1 || cf.dil < 1 || dw < 1) { *why = "negative padding"; return -1; }
  /* cuDNN pads top and bottom alike (left and right alike): the node's output size must be the one that gives */
  if (out_size(x->ne[2], cf.pt, w->ne[2], cf.dil, cf.stride) != y->ne[2] || out_size(x->ne[3], cf.pl, w->ne[3], dw, sw) != y->ne[3]) {
    *why = "padding cuDNN cannot express (bottom / right differs from top / left)";
    return -1;
  }
  d->n = (int)x->ne[0]; d->c = (int)x->ne[1]; d->h = (int)x->ne[2]; d->w = (int)x->ne[3];
  d->k = (int)w->ne[0]; d->cg = (int)w->ne[1]; d->r = (int)w->ne[2]; d->s = (int)w->ne[3];
  d->p = (int)y->ne[2]; d->q = (int)y->ne[3];
  d->pad_h = cf.pt; d->pad_w = cf.pl; d->u = cf.stride; d->v = sw; d->dil_h = cf.dil; d->dil_w = dw;
  d->groups = groups;
  d->dtype = x->dtype;
  d->bias = n->op == MF_OP_CONV2D && n->nsrc > 2;
  return 0;
}

size_t mf_cuda_conv_ws_limit(const mf_graph *g, const mf_node *n) {
  size_t b = mf_cuda_ws_conv_im2col(g, n);
  return b < MF_CUDA_CUDNN_WS_MAX ? b : MF_CUDA_CUDNN_WS_MAX;
}

void mf_cuda_conv_choose(const mf_graph *g, mf_node *n) {
  n->impl_threads = 0;
  const char *env = getenv("MEMFIT_CUDNN"), *why;
  mf_cudnn_dims d;
  if (env && !strcmp(env, "0")) { n->impl = MF_CUDA_CONV_IM2COL_OFF; return; }
  if (!mf_cuda_cudnn_built()) { n->impl = MF_CUDA_CONV_IM2COL_NOLIB; return; }
  if (mf_cuda_conv_dims(g, n, &d, &why) < 0) { n->impl = MF_CUDA_CONV_IM2COL_SHAPE; return; }
  if (mf_cuda_device_count() < 1 || mf_cuda_init(NULL, 0) < 0) { n->impl = MF_CUDA_CONV_IM2COL_NODEV; return; }
  size_t ws = 0;
  int a = mf_cuda_cudnn_pick(g, n, mf_cuda_conv_ws_limit(g, n), &ws, &why);
  n->impl = (uint8_t)(a >= 0 ? MF_CUDA_CONV_CUDNN + a : -a);
}

int mf_cuda_conv_describe(const mf_graph *g, const mf_node *n, char *name, size_t len, const char **why) {
  if (!is_conv(n->op)) return 0;
  if (mf_cuda_conv_on_cudnn(n)) {
    snprintf(name, len, "cudnn %s", mf_cuda_cudnn_algo_name(n->op, n->impl - MF_CUDA_CONV_CUDNN));
    *why = "heuristic, ws <= im2col's";
    return 1;
  }
  snprintf(name, len, "im2col + cublas");
  const char *shape = "";
  mf_cudnn_dims d;
  switch (n->impl) {
  case MF_CUDA_CONV_IM2COL_NODEV: *why = "no device when planned"; break;
  case MF_CUDA_CONV_IM2COL_NOLIB: *why = mf_cuda_cudnn_built() ? "cuDNN did not start" : "no cuDNN in this build"; break;
  case MF_CUDA_CONV_IM2COL_OFF: *why = "MEMFIT_CUDNN=0"; break;
  case MF_CUDA_CONV_IM2COL_SHAPE: *why = mf_cuda_conv_dims(g, n, &d, &shape) < 0 ? shape : "cuDNN does not take it"; break;
  case MF_CUDA_CONV_IM2COL_NOALGO: *why = "no cuDNN algorithm fits"; break;
  default: *why = "not chosen"; break;
  }
  return 1;
}
