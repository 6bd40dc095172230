/* steg_loss.c — the steganography trainer's SSIM and block-DCT loss terms as graphs of existing ops
 * (the fused SSIM map, elementwise, reshape/permute, matmul, L1); tests/test_grad_steg_loss.c checks them. */
#include "models/steg_loss.h"
#include <math.h>

mf_tensor mf_steg_ssim_map(mf_graph *g, mf_tensor x, mf_tensor y, int k) { return mf_ssim_map(g, x, y, k); }

mf_tensor mf_steg_ssim_loss(mf_graph *g, mf_tensor x, mf_tensor y, int k) {
  mf_tensor map = mf_steg_ssim_map(g, x, y, k);
  if (map < 0) return map;
  double n = (double)mf_tensor_numel(g, map);
  return mf_add_scalar(g, mf_mul_scalar(g, mf_sum(g, map, 0, 0), -1.0), n); /* sum(1 - map) */
}

int mf_steg_ssim_window(int size) { return size >= 14 ? 7 : 3; }

void mf_steg_dct_matrix(double D[64]) {
  for (int u = 0; u < 8; u++)
    for (int x = 0; x < 8; x++) D[u * 8 + x] = (u ? sqrt(2.0 / 8) : sqrt(1.0 / 8)) * cos((2 * x + 1) * u * M_PI / 16);
}

/* [B,C,H,W] -> [B*C*H/8, 8(y), W/8, 8(x)] -> permute -> [B*C*H/8, W/8, 8(y), 8(x)]; X D^T, transpose,
 * times D^T -> (D X D^T)^T per block. */
mf_tensor mf_steg_dct_blocks(mf_graph *g, mf_tensor x, mf_tensor D) {
  if (x < 0) return x;
  int64_t B = mf_tensor_dim(g, x, 0), C = mf_tensor_dim(g, x, 1), H = mf_tensor_dim(g, x, 2), W = mf_tensor_dim(g, x, 3);
  int64_t s4[4] = {B * C * (H / 8), 8, W / 8, 8};
  int perm[4] = {0, 2, 1, 3};
  mf_tensor b = mf_permute(g, mf_reshape(g, x, 4, s4), perm); /* [B*C*H/8, W/8, 8, 8] */
  mf_tensor r = mf_matmul(g, b, D, 0, 1);                     /* X D^T */
  return mf_matmul(g, mf_transpose(g, r, 2, 3), D, 0, 1);     /* (D X D^T)^T */
}

mf_tensor mf_steg_dct_loss(mf_graph *g, mf_tensor x, mf_tensor y, mf_tensor D) {
  mf_tensor cx = mf_steg_dct_blocks(g, x, D), cy = mf_steg_dct_blocks(g, y, D);
  if (cx < 0 || cy < 0) return -1;
  double cnt = (double)mf_tensor_numel(g, cx);
  return mf_mul_scalar(g, mf_l1_loss(g, cx, cy), cnt); /* mean -> sum */
}
