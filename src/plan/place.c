/* place.c — the offline placement of a program's activation blocks (place.h). The replay in plan.c places each
 * block as it appears, which fragments the arena when a short-lived block takes a gap that a later long-lived
 * one needed; here every lifetime is known first, so the largest blocks are placed first and each goes into the
 * smallest gap that holds it among the blocks it coexists with (or on top of them). plan.c keeps whichever of
 * the two placements has the smaller extent. */
#include "plan/place.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The time index: a placed block that lives within one bucket of BUCKET_STEPS steps is listed in that bucket,
 * a longer one in one list of its own; every list is kept in order of offset, so the blocks a new one meets come
 * out in order of offset by merging its bucket's list with the long list (a long new block sorts them). */
enum { BUCKET_STEPS = 64 };

typedef struct span { size_t lo, hi; } span;
typedef struct order_key { size_t size; int first, i; } order_key;
typedef struct idlist { int *ids; int n, cap; } idlist;

static int by_size(const void *pa, const void *pb) { /* largest first, then earliest, then by index */
  const order_key *a = pa, *b = pb;
  if (a->size != b->size) return a->size < b->size ? 1 : -1;
  if (a->first != b->first) return a->first < b->first ? -1 : 1;
  return a->i - b->i;
}
static int by_lo(const void *pa, const void *pb) {
  const span *a = pa, *b = pb;
  return a->lo < b->lo ? -1 : a->lo > b->lo;
}

/* inserts block id into list k, kept in order of offset */
static int list_insert(idlist *k, int id, const size_t *off) {
  if (k->n == k->cap) {
    int cap = k->cap ? 2 * k->cap : 16;
    int *p = realloc(k->ids, (size_t)cap * sizeof *p);
    if (!p) return -1;
    k->ids = p;
    k->cap = cap;
  }
  int lo = 0, hi = k->n;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (off[k->ids[mid]] <= off[id]) lo = mid + 1;
    else hi = mid;
  }
  memmove(k->ids + lo + 1, k->ids + lo, (size_t)(k->n - lo) * sizeof *k->ids);
  k->ids[lo] = id;
  k->n++;
  return 0;
}

static int meets(const mf_block *a, const mf_block *b) { return a->first <= b->last && b->first <= a->last; }

size_t mf_place_blocks(int n, const mf_block *b, int n_steps, size_t limit, size_t *off) {
  int nb = n_steps / BUCKET_STEPS + 2; /* a block kept to the end lives at step n_steps */
  order_key *order = malloc((size_t)(n ? n : 1) * sizeof *order);
  span *busy = malloc((size_t)(n ? n : 1) * sizeof *busy);
  idlist *bk = calloc((size_t)nb, sizeof *bk), lng = {0};
  size_t extent = (size_t)-1;
  if (!order || !busy || !bk) goto out;
  for (int i = 0; i < n; i++) order[i] = (order_key){b[i].size, b[i].first, i};
  qsort(order, (size_t)n, sizeof *order, by_size);
  extent = 0;
  for (int k = 0; k < n; k++) {
    int i = order[k].i;
    int b0 = b[i].first / BUCKET_STEPS, b1 = b[i].last / BUCKET_STEPS;
    int nbusy = 0;
    if (b0 == b1) { /* merge the bucket's blocks and the long ones, both in order of offset */
      const idlist *s = &bk[b0];
      int e = 0, l = 0;
      while (e < s->n || l < lng.n) {
        int take_s = l == lng.n || (e < s->n && off[s->ids[e]] <= off[lng.ids[l]]);
        int j = take_s ? s->ids[e++] : lng.ids[l++];
        if (meets(&b[i], &b[j])) busy[nbusy++] = (span){off[j], off[j] + b[j].size};
      }
    } else {
      for (int q = b0; q <= b1; q++)
        for (int e = 0; e < bk[q].n; e++) {
          int j = bk[q].ids[e];
          if (meets(&b[i], &b[j])) busy[nbusy++] = (span){off[j], off[j] + b[j].size};
        }
      for (int l = 0; l < lng.n; l++)
        if (meets(&b[i], &b[lng.ids[l]])) busy[nbusy++] = (span){off[lng.ids[l]], off[lng.ids[l]] + b[lng.ids[l]].size};
      qsort(busy, (size_t)nbusy, sizeof *busy, by_lo);
    }
    /* the smallest gap between them that holds the block, else on top of them all */
    size_t at = 0, best = SIZE_MAX, best_gap = SIZE_MAX;
    for (int e = 0; e < nbusy; e++) {
      if (busy[e].lo > at && busy[e].lo - at >= b[i].size && busy[e].lo - at < best_gap) {
        best = at;
        best_gap = busy[e].lo - at;
      }
      if (busy[e].hi > at) at = busy[e].hi;
    }
    off[i] = best != SIZE_MAX ? best : at;
    if (off[i] + b[i].bytes > extent) extent = off[i] + b[i].bytes;
    if (extent >= limit) { extent = limit; goto out; } /* no better than the caller's placement */
    if (list_insert(b0 == b1 ? &bk[b0] : &lng, i, off) < 0) { extent = (size_t)-1; goto out; }
  }
out:
  if (bk)
    for (int q = 0; q < nb; q++) free(bk[q].ids);
  free(bk);
  free(lng.ids);
  free(busy);
  free(order);
  return extent;
}
