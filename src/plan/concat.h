/* concat.h — the planner's in-place concatenation pass (concat.c): a chain of concats whose source lists are
 * prefixes of one root concat (a dense block's cat(x, c1, ..., ck)) is stored in the root's buffer. */
#ifndef MF_PLAN_CONCAT_H
#define MF_PLAN_CONCAT_H

#include "graph/graph.h"

/* Finds the concat groups among nodes [first, g->n) and records them in g->cat_root / g->cat_off (grown to g->n;
 * nodes it does not group get -1): cat_root[id] is the concat whose buffer stores node id (the root itself for a
 * root), cat_off[id] its byte offset there. A group is a concat that something reads, with nothing before its axis
 * but ones (its sources' slices are then contiguous: a [1, C, H, W] channel concat), the concats in range whose source
 * lists are prefixes of its own (offset 0), and those of its activation sources in range that appear once in its
 * list, are no concat themselves, belong to no other group and start at a multiple of MF_ALIGN bytes (written there
 * by their producer, read there by every reader). first = 0: the graph the planner starts from; then the nodes each
 * recompute rewrite built (program.c), so an inverted subnet is grouped like the forward's. Returns the nodes stored
 * inside another's buffer, or -1 (out of host memory). pinned (NULL: none; else g->n entries): sources that keep their
 * own storage (the planner's: tensors that live far past the chain, which would keep its whole buffer alive). */
int mf_concat_alias(mf_graph *g, int first, const uint8_t *pinned);

#endif
