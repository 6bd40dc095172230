/* fuse.h — the planner's fusion pass (fuse.c): a conv2d (or a norm, when g->fuse_norm_act) followed only by
 * a ReLU / leaky ReLU runs both in one kernel. */
#ifndef MF_FUSE_H
#define MF_FUSE_H

#include "ops/ops.h"

/* Fuses every conv2d -> ReLU / leaky ReLU (slope >= 0) pair of g where the ReLU is the conv's only reader and
 * the conv's output is neither kept (keep, n_keep) nor a segment's input or output: the conv gets the
 * activation (mf_conv_act) and the ReLU node becomes a detach of it (the planner aliases it). Run after
 * autodiff (the ReLU's gradient reads its output, which is now the conv's), on a backend whose conv kernels
 * take the activation (mf_backend.fuses_conv_act). With g->fuse_norm_act set (mf_backend.fuses_norm_act), norm ->
 * ReLU pairs fuse the same way (mf_norm_act). Returns the pairs fused, or -1 (out of host memory). */
int mf_fuse_conv_act(mf_graph *g, int *keep, int n_keep);
/* The same for the nodes [first, g->n) an inverse has just built (program.c, when g->fuse_conv_act), so that
 * they equal the fused recompute clones of the forward: their readers there and outs[] (the inverse's
 * results, never fused away) are pointed at the conv directly. Returns the pairs fused, or -1. */
int mf_fuse_conv_act_new(mf_graph *g, int first, int *outs, int n_outs);

#endif
