/* steg_loss.h — the optional loss terms of the steganography trainer (SSIM and 8x8 block DCT),
 * built from graph ops so that the planner, recompute and autodiff see them like any other node. */
#ifndef MF_STEG_LOSS_H
#define MF_STEG_LOSS_H

#include "memfit.h"

/* sum over positions and channels of (1 - SSIM map) of x and y ([B,C,H,W], H and W >= k), with local
 * means, variances and covariance over a k x k uniform window (avgpool, stride 1, no padding) and
 * C1 = 0.01^2, C2 = 0.03^2 (range 1) -> scalar (f32; f64 in an f64 graph). */
mf_tensor mf_steg_ssim_loss(mf_graph *g, mf_tensor x, mf_tensor y, int k);
/* The SSIM map itself, [B,C,H-k+1,W-k+1]: entry (i, j) is the SSIM of the k x k windows at (i, j) (Image-GS weights
 * it per position to sum it over image tiles). One fused op (mf_ssim_map). */
mf_tensor mf_steg_ssim_map(mf_graph *g, mf_tensor x, mf_tensor y, int k);
/* The window the trainer uses for a crop of size x size: 7, or 3 below 14 pixels. */
int mf_steg_ssim_window(int size);

/* Orthonormal 8-point DCT-II matrix, row-major: D[u*8 + x] = c(u) cos((2x + 1) u pi / 16),
 * c(0) = sqrt(1/8), c(u > 0) = sqrt(2/8). */
void mf_steg_dct_matrix(double D[64]);
/* 8x8 block DCT of x [B,C,H,W] (H, W multiples of 8) with D the [8,8] input holding mf_steg_dct_matrix:
 * [B*C*H/8, W/8, 8, 8], block (i, j) holding the transposed coefficients (D X D^T)^T of its pixels
 * X = x[b, c, 8i.., 8j..]. */
mf_tensor mf_steg_dct_blocks(mf_graph *g, mf_tensor x, mf_tensor D);
/* sum |DCT8x8(x) - DCT8x8(y)| over every coefficient -> scalar (f32; f64 in an f64 graph). (The DCT
 * keeps the L2 norm of a difference, so the frequency term is L1.) */
mf_tensor mf_steg_dct_loss(mf_graph *g, mf_tensor x, mf_tensor y, mf_tensor D);

#endif
