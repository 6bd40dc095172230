/* optim.c (CPU) — the optimizer update (SGD with momentum, Adam, AdamW on f32 master weights) and
 * the deterministic sum of squares behind gradient clipping and the inf/NaN check. */
#include "backend/cpu/cpu.h"
#include <math.h>

double mf_cpu_sum_squares(const float *g, int64_t n, void *stream) {
  (void)stream;
  enum { CHUNKS = 64 }; /* fixed chunks summed in order: the same bits for any thread count */
  double part[CHUNKS];
  #pragma omp parallel for schedule(static) if (n > 65536)
  for (int c = 0; c < CHUNKS; c++) {
    int64_t lo = n * c / CHUNKS, hi = n * (c + 1) / CHUNKS;
    double acc[8] = {0}; /* 8 lanes (element i to lane (i - lo) % 8), added in order: one chain would wait on each add */
    int64_t i = lo;
    for (; i + 8 <= hi; i += 8)
      for (int j = 0; j < 8; j++) acc[j] += (double)g[i + j] * g[i + j];
    for (; i < hi; i++) acc[(i - lo) % 8] += (double)g[i] * g[i];
    double t = 0;
    for (int j = 0; j < 8; j++) t += acc[j];
    part[c] = t;
  }
  double s = 0;
  for (int c = 0; c < CHUNKS; c++) s += part[c];
  return s;
}

void mf_cpu_optim_update(float *w, const float *g, float *m, float *v, int64_t n, const mf_optim_args *a, void *stream) {
  (void)stream;
  float lr = a->lr, gs = a->gscale, wd = a->weight_decay;
  if (a->kind == MF_SGD) {
    float mu = a->momentum;
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
      float gi = g[i] * gs + wd * w[i];
      m[i] = mu * m[i] + gi;
      w[i] -= lr * m[i];
    }
    return;
  }
  float b1 = a->beta1, b2 = a->beta2, eps = a->eps, c1 = a->bc1, c2 = a->bc2;
  int adamw = a->kind == MF_ADAMW;
  #pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) {
    float gi = g[i] * gs;
    if (!adamw) gi += wd * w[i];
    m[i] = b1 * m[i] + (1 - b1) * gi;
    v[i] = b2 * v[i] + (1 - b2) * gi * gi;
    float upd = (m[i] * c1) / (sqrtf(v[i] * c2) + eps);
    if (adamw) w[i] -= lr * wd * w[i];
    w[i] -= lr * upd;
  }
}
