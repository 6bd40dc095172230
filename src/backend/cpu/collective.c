/* collective.c (CPU) — the local half of the all-gather op: this rank's rows into its block of the output, the
 * other blocks zeroed; the session exchanges the blocks through its communicator (src/train/session.c). */
#include "backend/cpu/cpu.h"
#include <string.h>

void mf_cpu_allgather(const mf_kctx *k, const mf_node *n, void *out, void *const *src, void *ws) {
  (void)ws;
  size_t block = mf_node_bytes(n) / (size_t)n->ip[0]; /* one rank's rows: x's bytes */
  int r = k->rank >= 0 && k->rank < n->ip[0] ? k->rank : 0;
  memset(out, 0, mf_node_bytes(n));
  memcpy((uint8_t *)out + (size_t)r * block, src[0], block);
}
