/* receptive.h — how far, in input pixels, one output pixel of a graph can see: the halo a tiled
 * run needs so that every tile computes its interior exactly as the whole-image graph would. */
#ifndef MF_RECEPTIVE_H
#define MF_RECEPTIVE_H

#include "graph/graph.h"
#include <stddef.h>
#include <stdint.h>

/* The receptive field of `out` along the two spatial axes (index 0: H, 1: W) of the graph's 4-D
 * [N,C,H,W] inputs, walking its ancestors from the inputs to `out`. Pixels are those of the largest
 * 4-D input (an input of half its size, like a wavelet-domain input, counts each of its pixels as 2).
 *
 * Meaning: cut the image into tiles whose interior edges lie on multiples of align[a], and give each
 * tile's copy of the graph its interior plus radius[a] pixels on each side (clipped at the image
 * border, where the tile graph then pads exactly as the whole-image graph does). Every output pixel
 * of the interior then depends only on inputs the tile holds, so the tile computes it exactly as the
 * whole-image graph does. Rules: a conv or pool with kernel K, stride S, padding p at a tensor whose
 * pixels are s input pixels wide adds s*max(p, K-p-S, 0) and multiplies s by S (the Haar DWT is
 * K = S = 2, p = 0); nearest upsampling and the inverse DWT divide s and add nothing; elementwise
 * ops, channel concat/slice and eval-mode batch norm take the largest radius of their inputs;
 * tensors that depend on no 4-D input (weights, constants) add nothing. align is the least common
 * multiple of the pixel grids involved (2 for one DWT level). Anything else that reaches `out`
 * (global pooling, reductions, reshapes, spatial slices, losses, group norm, broadcasting a
 * position-dependent constant...) is refused.
 *
 * Returns 0, or -1 with a message naming the node in err. */
int mf_graph_receptive_field(const mf_graph *g, int out, int64_t radius[2], int64_t align[2], char *err, size_t errlen);

#endif
