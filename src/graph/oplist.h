/* oplist.h — the list of ops: the id every graph node stores (MF_OP_*) and its name. What an op
 * means (shape rules, gradient, FLOPs) is the ops layer's (ops/ops.h); kernels are the backends'. */
#ifndef MF_OPLIST_H
#define MF_OPLIST_H

/* X(ENUM, name): name is used for mf_op_def_<name> and the backends' mf_<backend>_<name> kernels. */
#define MF_OP_LIST(X)                                                                              \
  X(INPUT, input)                   /* leaf: data staging buffer */                                \
  X(PARAM, param)                   /* leaf: f32 master parameter */                               \
  X(PARAM_LP, param_lp)             /* low-precision copy of src-less master (n->master) */        \
  X(BUFFER, buffer)                 /* leaf: persistent state (bn running stats) */                \
  X(SEED, seed)                     /* d loss / d loss = runtime grad seed (loss scale / accum) */ \
  X(ACC_GRAD, acc_grad)             /* persistent f32 grad += src0 */                              \
  X(BINARY, binary)                 /* ip0 = MF_BIN_*; src1 broadcasts to src0 */                  \
  X(SCALAR, scalar)                 /* ip0 = MF_SCALAR_ADD/MUL, fp0 = c */                         \
  X(UNARY, unary)                   /* ip0 = MF_UN_*, fp0/fp1 = slope or clamp bounds */           \
  X(UNARY_BWD, unary_bwd)           /* src0 = x (or y for sigmoid/tanh/exp), src1 = dy */          \
  X(CONCAT, concat)                 /* ip0 = axis */                                               \
  X(SLICE, slice)                   /* ip0 = axis, ip1 = start, ip2 = end */                       \
  X(SLICE_BWD, slice_bwd)           /* src0 = dy of slice -> zero-padded to the sliced tensor */   \
  X(RESHAPE, reshape)                                                                              \
  X(PERMUTE, permute)               /* ip0..4 = perm */                                            \
  X(REDUCE, reduce)                 /* ip0 = axes mask (0: all), ip1 = keepdim, fp0 = scale */     \
  X(EXPAND, expand)                 /* broadcast src0 (size-1 axes) to the node shape, * fp0 */     \
  X(MATMUL, matmul)                 /* ip0 = trans_a, ip1 = trans_b */                             \
  X(CONV2D, conv2d)                 /* src x,w[,b]; ip0 stride, ip1 pad, ip2 groups */             \
  X(CONV2D_BWD_DATA, conv2d_bwd_data)     /* src dy, w -> dx; ip as conv2d */                      \
  X(CONV2D_BWD_WEIGHT, conv2d_bwd_weight) /* src x, dy -> dw; ip as conv2d */                      \
  X(LOSS, loss)                     /* ip0 = MF_LOSS_MSE/L1, ip1 = 1: sum else mean; f32 scalar */  \
  X(LOSS_BWD, loss_bwd)             /* src pred, target, dL -> dpred */                            \
  X(SOFTMAX_CE, softmax_ce)         /* src logits [N,K], labels i32 [N] -> mean CE, f32 scalar */  \
  X(SOFTMAX_CE_BWD, softmax_ce_bwd) /* src logits, labels, dL -> dlogits */                        \
  X(NORM, norm)                     /* ip0 = MF_NORM_BATCH/GROUP, ip1 groups, ip2 training; fp0 eps, fp1 momentum; src x,gamma,beta[,rmean,rvar] */ \
  X(NORM_BWD_DX, norm_bwd_dx)       /* src x, dy, gamma[, rmean, rvar | param grads [2,C]] -> dx */ \
  X(NORM_BWD_PARAM, norm_bwd_param) /* src x, dy[, rmean, rvar] -> [2,C]: dgamma, dbeta */         \
  X(POOL, pool)                     /* ip0 = MF_POOL_AVG/MAX, ip1 k, ip2 stride, ip3 pad, ip4 global */ \
  X(POOL_BWD, pool_bwd)             /* src x, dy -> dx (avg: src dy only); ip as pool */           \
  X(UPSAMPLE, upsample)             /* ip0 = factor (nearest) */                                   \
  X(UPSAMPLE_BWD, upsample_bwd)     /* src dy -> dx (sum over each block) */                       \
  X(RESIZE, resize)                 /* bilinear [N,C,H,W] -> [N,C,OH,OW]; ip0 = MF_RESIZE_*, fp0/fp1 = scale h/w */ \
  X(RESIZE_BWD, resize_bwd)         /* src dy -> dx like the resize's input */                     \
  X(RESIZE_NEAREST, resize_nearest) /* nearest [N,C,H,W] -> [N,C,OH,OW]; ip0 = mf_resize_coord, ip1 = mf_resize_round, fp0/fp1 = scale h/w */ \
  X(RESIZE_NEAREST_BWD, resize_nearest_bwd) /* src dy -> dx like the input: each pixel sums the outputs that copied it */ \
  X(RESIZE_CUBIC, resize_cubic)     /* bicubic [N,C,H,W] -> [N,C,OH,OW]; ip0 = mf_resize_coord, ip1 = exclude_outside, fp0/fp1 = scale h/w, fp2 = a */ \
  X(RESIZE_CUBIC_BWD, resize_cubic_bwd) /* src dy -> dx like the input (each pixel gathers the outputs whose taps read it) */ \
  X(PAD, pad)                       /* [N,C,H,W] -> padded H, W; ip0 = MF_PAD_*, ip1..4 pads t,l,b,r; fp0 = value */ \
  X(PAD_BWD, pad_bwd)               /* src dy -> dx like the pad's input (sums where edge/reflect repeat a pixel) */ \
  X(DWT, dwt)                       /* Haar: [N,C,H,W] -> [N,4C,H/2,W/2] */                        \
  X(IDWT, idwt)                                                                                   \
  X(ARGMIN, argmin)                 /* ip0 = axis; float x -> i32 indices, axis removed */         \
  X(GATHER, gather)                 /* src table [K,D], idx i32 [N] -> [N,D] */                    \
  X(GATHER_BWD, gather_bwd)         /* src dy [N,D], idx [N] -> [K,D] (ip0 = K), scatter-add */    \
  X(STRAIGHT_THROUGH, straight_through) /* src hard, soft -> hard's value, soft's gradient */       \
  X(ROUND, round)                   /* half to even, no gradient */                                \
  X(L2NORM, l2norm)                 /* x [..,D] / max(||x||_2, fp0 eps) along the last axis */     \
  X(L2NORM_BWD, l2norm_bwd)         /* src x, dy -> dx */                                            \
  X(SOFTMAX, softmax)               /* x [..,D] -> softmax over the last axis; ip0 = 1: log-softmax */ \
  X(SOFTMAX_BWD, softmax_bwd)       /* src y (the forward's output), dy -> dx; ip0 as the forward */   \
  X(GAUSS_TOPK, gauss_topk)         /* Image-GS: src pos,inv_scale,rot[,mask] -> i32 [H,W,K] ids */  \
  X(GAUSS_RASTER, gauss_raster)     /* src pos,inv_scale,rot,feat[,mask][,topk] -> [C,H,W] */        \
  X(GAUSS_RASTER_BWD, gauss_raster_bwd) /* src pos,inv_scale,rot,feat,dy[,mask][,topk] -> [N,5+C] */ \
  X(GAUSS_STATS, gauss_stats)       /* src pos,inv_scale,rot[,mask] -> i32 [5] clamp/pair counts */  \
  X(ATTN_PROBS, attn_probs)         /* src q [..,Nq,D], k [..,Nk,D] -> softmax(fp0 q k^T) [..,Nq,Nk] */ \
  X(ATTENTION, attention)           /* src q, k, v [..,Nk,D][, probs] -> [..,Nq,D]; fp0 = scale */    \
  X(ATTENTION_BWD, attention_bwd)   /* src q, k, v, dy[, probs] -> [..,Nq+2Nk,D]: dq, dk, dv */       \
  X(VQ_NEAREST, vq_nearest)         /* src z [N,D], codebook [K,D] -> i32 [N] nearest rows, tiled */   \
  X(ADAPTIVE_TAP, adaptive_tap)     /* src x, h, w[, factor[, state]] -> x; GAN: gradient x lambda */ \
  X(STATE_WRITE, state_write)       /* src value, state (same count) -> value, also written to the state */ \
  X(DROPOUT, dropout)               /* x * keep / (1 - fp0) in training programs, x at eval; ip0 = mask key */ \
  X(ALLGATHER, allgather)           /* [B,..] -> [ip0 ranks * B,..], rank r's rows at [r B, (r+1) B); forward only */ \
  X(SSIM, ssim)                     /* src x, y [B,C,H,W] -> SSIM map [B,C,H-k+1,W-k+1]; ip0 = k */       \
  X(SSIM_BWD, ssim_bwd)             /* src x, y, dmap -> d(sum dmap * map)/dx like x (dy: x, y swapped) */

#define MF_OP_ENUM(E, n) MF_OP_##E,
typedef enum mf_op { MF_OP_LIST(MF_OP_ENUM) MF_OP_COUNT } mf_op;
#undef MF_OP_ENUM

/* "conv2d", "gather"...; "?" for an id that is not an op */
const char *mf_op_name(int op);

#endif
