/* test_place.c — the planner's second placement (src/plan/place.c): on random lifetimes no two blocks that live
 * at a common step overlap, the extent is what the offsets reach and never below the bytes live at the fullest
 * step; a layout where placing in order of appearance fragments gets the optimum; the limit (the replay's
 * extent, which plan.c asks it to beat) stops it early. */
#include "check.h"
#include "plan/place.h"
#include <stdint.h>

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

/* 1: a valid placement (no overlap in time and memory), the extent its offsets reach, >= the live bound */
static int valid(int n, const mf_block *b, const size_t *off, int steps, size_t extent, size_t *bound) {
  size_t reach = 0, lb = 0;
  for (int i = 0; i < n; i++) {
    if (off[i] + b[i].bytes > reach) reach = off[i] + b[i].bytes;
    if (off[i] % 64) return 0;
    for (int j = 0; j < i; j++)
      if (b[i].first <= b[j].last && b[j].first <= b[i].last && off[i] < off[j] + b[j].size && off[j] < off[i] + b[i].size)
        return 0;
  }
  for (int s = 0; s <= steps; s++) {
    size_t live = 0;
    for (int i = 0; i < n; i++)
      if (b[i].first <= s && s <= b[i].last) live += b[i].size;
    if (live > lb) lb = live;
  }
  *bound = lb;
  return reach == extent && extent + 64 >= lb; /* the last block's bytes may stop short of its aligned size */
}

int main(void) {
  /* random programs: short-lived blocks, some kept to the end, workspaces of one step */
  for (int t = 0; t < 40; t++) {
    int steps = 20 + (int)(next() % 400), n = 10 + (int)(next() % 300);
    mf_block *b = malloc((size_t)n * sizeof *b);
    size_t *off = malloc((size_t)n * sizeof *off);
    for (int i = 0; i < n; i++) {
      int first = (int)(next() % (uint64_t)steps), kind = (int)(next() % 10);
      int last = kind == 0 ? steps : kind < 3 ? first : first + (int)(next() % (uint64_t)(steps - first));
      size_t bytes = 1 + next() % 100000;
      b[i] = (mf_block){first, last, (bytes + 63) / 64 * 64, bytes};
    }
    size_t bound = 0, ext = mf_place_blocks(n, b, steps, SIZE_MAX, off);
    CHECK(ext != (size_t)-1 && valid(n, b, off, steps, ext, &bound), "program %d (%d blocks, %d steps): extent %zu, live bound %zu",
          t, n, steps, ext, bound);
    /* a limit below the extent stops it and says so */
    size_t cut = mf_place_blocks(n, b, steps, ext / 2, off);
    CHECK(cut == ext / 2, "program %d: limit %zu answered %zu", t, ext / 2, cut);
    free(b);
    free(off);
  }
  /* Placed in order of appearance (as the replay does, best fit), the small early block a takes the bottom and the
   * long block c, which needs 256 bytes while b lives, must go above b: 128 + 256 + ... Largest first packs them
   * to the live bound: c [0,2] 256 B, a [0,0] 64 B, b [1,2] 128 B -> 384 B. */
  mf_block lay[3] = {{0, 0, 64, 64}, {1, 2, 128, 128}, {0, 2, 256, 256}};
  size_t off3[3], bound = 0;
  size_t e3 = mf_place_blocks(3, lay, 3, SIZE_MAX, off3);
  CHECK(valid(3, lay, off3, 3, e3, &bound) && e3 == 384, "the three-block layout: extent %zu (optimum 384)", e3);
  CHECK(off3[2] == 0, "the largest block first, at 0 (got %zu)", off3[2]);
  /* determinism: the same input gives the same offsets */
  size_t again[3];
  mf_place_blocks(3, lay, 3, SIZE_MAX, again);
  CHECK(!memcmp(off3, again, sizeof again), "deterministic");
  return check_finish("test_place");
}
