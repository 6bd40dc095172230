/* place.h — offsets for a program's activation blocks once all their lifetimes are known (plan.c's second
 * placement): greedy by size, each block at the lowest-waste gap among the blocks whose lifetimes overlap it. */
#ifndef MF_PLACE_H
#define MF_PLACE_H

#include <stddef.h>

typedef struct mf_block {
  int first, last;   /* steps of the program it is live in, both included */
  size_t size;       /* bytes it occupies (aligned) */
  size_t bytes;      /* bytes the kernels touch (<= size): the arena's extent counts these */
} mf_block;

/* Gives each of the n blocks an offset (off[i]) such that no two blocks live at a common step overlap; returns
 * the extent (max of off + bytes), or `limit` as soon as the extent reaches it (the offsets are then partial:
 * not to be used), or (size_t)-1 when out of host memory. Deterministic. */
size_t mf_place_blocks(int n, const mf_block *b, int n_steps, size_t limit, size_t *off);

#endif
