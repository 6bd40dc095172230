/* loader.c — the threaded batch loader: persistent worker threads claim samples one at a time,
 * decode and augment them straight into a ring of prefetch+1 staging buffers (allocated once through
 * a hook), and the consumer takes finished batches in order. Every sample's randomness comes from
 * (seed, epoch, sample index), so batches are byte-identical for any number of workers, and a loader
 * can report its position and be started again there (exact resume). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "data/data.h"

enum { SLOT_FREE = 0, SLOT_FILLING, SLOT_READY, SLOT_HELD };

typedef struct slot {
  void *mem;               /* staging buffer: views x images, then labels (64-byte aligned parts) */
  mf_batch b;
  int64_t *idx;            /* [B] dataset indices (b.indices points here) */
  size_t *pos;             /* [B] positions in the usable list (for substitution) */
  int64_t seq;
  int state, done;
} slot;

struct mf_loader {
  mf_loader_opts o;
  mf_dataset *d;
  size_t *use; size_t nuse;          /* usable dataset indices */
  size_t per_epoch;                  /* batches per epoch */
  int B, C, T, V, nbuf;
  size_t view_bytes, label_off, buf_bytes;
  slot *slots;
  pthread_mutex_t mu;
  pthread_cond_t cv_work, cv_ready;
  /* fill cursor (under mu) */
  int64_t fill_seq;                  /* next batch to open */
  int cur_slot, cur_pos;             /* open batch being claimed, -1 when none */
  int64_t perm_epoch; size_t *perm;
  /* consumer */
  int64_t next_seq; int epoch_end;
  /* workers */
  pthread_t *th; int nth; int stop;
  char fatal[512];
  /* accounting (under mu) */
  uint8_t *bad_file; size_t nbad_flags;
  int64_t bad_samples, bad_files, bad_by_reason[SKIP_REASON_COUNT], bad_files_by_reason[SKIP_REASON_COUNT], reported_bad;
  int64_t init_skipped[SKIP_REASON_COUNT];
  double wait_s; int64_t batches, samples;
  uint64_t data_id;                  /* hash of what decides the batches' content (see data_id_of) */
};

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static void *default_alloc(size_t n, void *ctx) { (void)ctx; return aligned_alloc(64, align64(n ? n : 1)); }
static void default_free(void *p, size_t n, void *ctx) { (void)n; (void)ctx; free(p); }

mf_loader_opts mf_loader_opts_default(void) {
  mf_loader_opts o;
  memset(&o, 0, sizeof o);
  o.batch_size = 8; o.workers = 0; o.prefetch = 2; o.shuffle = 1; o.drop_last = 1; o.views = 1; o.seed = 0;
  o.tf = mf_transform_opts_default();
  return o;
}

static int loader_check(const mf_loader_opts *o, char *err, size_t errlen) {
  if (!o->dataset) { snprintf(err, errlen, "loader: no dataset"); return -1; }
  if (o->batch_size < 1) { snprintf(err, errlen, "loader: batch_size must be >= 1, not %d", o->batch_size); return -1; }
  if (o->prefetch < 1 || o->prefetch > 64) { snprintf(err, errlen, "loader: prefetch must be in 1..64, not %d", o->prefetch); return -1; }
  if (o->views != 1 && o->views != 2) { snprintf(err, errlen, "loader: views must be 1 or 2, not %d", o->views); return -1; }
  if (o->workers < 0 || o->workers > 256) { snprintf(err, errlen, "loader: bad worker count %d", o->workers); return -1; }
  if ((o->alloc == NULL) != (o->free == NULL)) { snprintf(err, errlen, "loader: set both alloc and free, or neither"); return -1; }
  if (o->ranks > 1 && (o->rank < 0 || o->rank >= o->ranks || o->batch_size % o->ranks || !o->drop_last)) {
    snprintf(err, errlen, "loader: rank %d of %d ranks: the global batch %d must be a multiple of the ranks, drop_last 1 and "
             "0 <= rank < ranks", o->rank, o->ranks, o->batch_size);
    return -1;
  }
  return tf_validate(&o->tf, err, errlen);
}

/* sizes of one staging buffer's parts */
static void loader_sizes(const mf_loader_opts *o, size_t *view_bytes, size_t *label_off, size_t *buf_bytes) {
  size_t rb = (size_t)o->batch_size / (size_t)(o->ranks > 1 ? o->ranks : 1); /* this rank's samples */
  size_t per = rb * o->tf.channels * (size_t)mf_dataset_frames(o->dataset) * o->tf.out_w * o->tf.out_h;
  *view_bytes = align64(per * sizeof(float));
  *label_off = *view_bytes * o->views;
  *buf_bytes = *label_off + align64(rb * sizeof(int32_t));
}

size_t mf_loader_staging_bytes(const mf_loader_opts *o) {
  char err[8];
  if (!o || loader_check(o, err, sizeof err) != 0) return 0;
  size_t vb, lo, bb;
  loader_sizes(o, &vb, &lo, &bb);
  return bb * (size_t)(o->prefetch + 1);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

/* epoch permutation of usable positions (under mu) */
static void make_perm(mf_loader *l, int64_t epoch) {
  for (size_t i = 0; i < l->nuse; i++) l->perm[i] = i;
  if (l->o.shuffle) {
    rng_t r;
    rng_init(&r, hash_words(l->o.seed, (uint64_t)epoch, 0x7368756666ull));
    for (size_t i = l->nuse - 1; i > 0; i--) {
      size_t j = (size_t)rng_below(&r, (uint64_t)i + 1), t = l->perm[i];
      l->perm[i] = l->perm[j]; l->perm[j] = t;
    }
  }
  l->perm_epoch = epoch;
}

static size_t file_of(const mf_dataset *d, size_t i) { return d->kind == 2 ? d->clip_file[i] : i; }

/* ---- data id: FNV-1a over everything that decides which bytes batch k holds ---- */
static void h_bytes(uint64_t *h, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) { *h ^= b[i]; *h *= 0x100000001b3ull; }
}
static void h_u64(uint64_t *h, uint64_t v) {
  uint8_t b[8];
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
  h_bytes(h, b, 8);
}
static void h_f32(uint64_t *h, float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  h_u64(h, u);
}
static void h_str(uint64_t *h, const char *s) { h_bytes(h, s, strlen(s) + 1); }

/* The usable samples (relative path and header size, generator seed and size, clip starts, IDX content), the
 * batching (batch size, drop_last, shuffle, views), every transform option and the seed. Worker
 * count, prefetch and the allocator are left out: they never change a byte. A field added to
 * mf_transform_opts or the datasets that changes samples belongs here too. */
static uint64_t data_id_of(const mf_loader *l) {
  const mf_dataset *d = l->d;
  const mf_loader_opts *o = &l->o;
  const mf_transform_opts *t = &o->tf;
  uint64_t h = 0xcbf29ce484222325ull;
  h_str(&h, "memfit-loader-1");
  h_u64(&h, o->seed);
  h_u64(&h, (uint64_t)o->batch_size); h_u64(&h, (uint64_t)o->drop_last); h_u64(&h, (uint64_t)o->shuffle);
  h_u64(&h, (uint64_t)o->views);
  h_u64(&h, (uint64_t)d->kind); h_u64(&h, (uint64_t)d->frames); h_u64(&h, l->nuse);
  if (d->kind == 1) { h_u64(&h, d->gen_seed); h_u64(&h, (uint64_t)d->gen_w); h_u64(&h, (uint64_t)d->gen_h); }
  if (d->kind == 2) { h_u64(&h, (uint64_t)d->clip_len); h_u64(&h, (uint64_t)d->frame_stride); h_u64(&h, (uint64_t)d->clip_step); }
  if (d->kind == 3) {
    h_u64(&h, d->idx_hash); h_u64(&h, (uint64_t)d->idx_w); h_u64(&h, (uint64_t)d->idx_h); h_u64(&h, d->idx_total);
    for (size_t u = 0; u < l->nuse; u++) h_u64(&h, (uint64_t)d->idx_index[l->use[u]] << 32 | (uint32_t)d->idx_label[l->use[u]]);
  }
  for (size_t u = 0; u < l->nuse && d->kind != 1 && d->kind != 3; u++) {
    size_t i = l->use[u];
    const file_entry *f = &d->files[file_of(d, i)];
    h_str(&h, f->rel);
    h_u64(&h, (uint64_t)f->w); h_u64(&h, (uint64_t)f->h); h_u64(&h, (uint64_t)(int64_t)f->label);
    if (d->kind == 2) h_u64(&h, (uint64_t)d->clip_start[i]);
  }
  int64_t ti[] = {t->out_w, t->out_h, t->channels, t->crop, t->resize_short, t->filter, t->rot90, t->normalize, t->jpeg_draft};
  for (size_t i = 0; i < sizeof ti / sizeof *ti; i++) h_u64(&h, (uint64_t)ti[i]);
  float tf[] = {t->scale[0], t->scale[1], t->ratio[0], t->ratio[1], t->hflip, t->vflip, t->jitter_p, t->brightness,
                t->contrast, t->saturation, t->hue, t->gray_p, t->blur_p, t->blur_sigma[0], t->blur_sigma[1], t->noise_std,
                t->mean[0], t->mean[1], t->mean[2], t->std[0], t->std[1], t->std[2]};
  for (size_t i = 0; i < sizeof tf / sizeof *tf; i++) h_f32(&h, tf[i]);
  return h ? h : 1; /* 0 means "not checked" in mf_loader_pos */
}

/* Sets the first batch from o->start (after the usable list and per_epoch are known). */
static int apply_start(mf_loader *l, char *err, size_t errlen) {
  const mf_loader_pos *p = &l->o.start;
  if (p->epoch < 0 || p->batch < 0) {
    snprintf(err, errlen, "loader: start position epoch %lld, batch %lld: both must be >= 0", (long long)p->epoch,
             (long long)p->batch);
    return -1;
  }
  if (p->data_id) {
    if (p->seed != l->o.seed) {
      snprintf(err, errlen, "loader: start position was taken with seed %llu, this loader has seed %llu",
               (unsigned long long)p->seed, (unsigned long long)l->o.seed);
      return -1;
    }
    if (p->data_id != l->data_id) {
      snprintf(err, errlen, "loader: start position was taken from other data (data id %016llx, this loader's %016llx: "
               "the usable samples, batch size, shuffling, views or transforms differ)", (unsigned long long)p->data_id,
               (unsigned long long)l->data_id);
      return -1;
    }
    if ((uint64_t)p->batch >= l->per_epoch) {
      snprintf(err, errlen, "loader: start position batch %lld, but an epoch has %zu batches", (long long)p->batch, l->per_epoch);
      return -1;
    }
  }
  if (p->epoch > (INT64_MAX - p->batch) / (int64_t)l->per_epoch) {
    snprintf(err, errlen, "loader: start position epoch %lld, batch %lld is too far", (long long)p->epoch, (long long)p->batch);
    return -1;
  }
  l->fill_seq = l->next_seq = p->epoch * (int64_t)l->per_epoch + p->batch;
  return 0;
}

/* Produces one sample into slot s at position p (no lock held). */
static void produce(mf_loader *l, slot *s, int p, worker_ctx *w) {
  int C = l->C, T = l->T, V = l->V;
  size_t hw = (size_t)l->o.tf.out_w * l->o.tf.out_h;
  float *planes[2 * 64 * 3 + 1];
  float **pl = planes;
  size_t need = (size_t)V * T * C;
  if (need > sizeof planes / sizeof *planes) pl = malloc(need * sizeof *pl);
  if (!pl) {
    pthread_mutex_lock(&l->mu);
    snprintf(l->fatal, sizeof l->fatal, "out of memory");
    pthread_cond_broadcast(&l->cv_ready);
    pthread_mutex_unlock(&l->mu);
    return;
  }
  for (int v = 0; v < V; v++) {
    float *base = (float *)((uint8_t *)s->mem + (size_t)v * l->view_bytes) + (size_t)p * C * T * hw;
    for (int t = 0; t < T; t++)
      for (int c = 0; c < C; c++) pl[((size_t)v * T + t) * C + c] = base + ((size_t)c * T + t) * hw; /* [C][T][H][W] */
  }
  int64_t epoch = s->seq / (int64_t)l->per_epoch;
  size_t u = s->pos[p], orig = l->use[u];
  char err[768];
  for (size_t attempt = 0; attempt < l->nuse; attempt++) {
    size_t di = l->use[(u + attempt) % l->nuse];
    rng_t r;
    rng_init(&r, hash_words(l->o.seed, (uint64_t)epoch, (uint64_t)orig) ^ attempt);
    int rc = l->d->vt->get(l->d, di, &l->o.tf, V, &r, pl, w, err, sizeof err);
    if (rc == 0) {
      s->idx[p] = (int64_t)di;
      ((int32_t *)((uint8_t *)s->mem + l->label_off))[p] = mf_dataset_label(l->d, di);
      break;
    }
    int reason = -1 - rc;
    pthread_mutex_lock(&l->mu);
    l->bad_samples++;
    l->bad_by_reason[reason]++;
    size_t f = file_of(l->d, di);
    int first = 1;
    if (f < l->nbad_flags) { first = !l->bad_file[f]; l->bad_file[f] = 1; }
    if (first) { l->bad_files++; l->bad_files_by_reason[reason]++; }
    if (attempt + 1 == l->nuse) {
      snprintf(l->fatal, sizeof l->fatal, "no sample could be loaded (last: %.400s)", err);
      pthread_cond_broadcast(&l->cv_ready);
    }
    pthread_mutex_unlock(&l->mu);
    if (first) data_warn(l->o.quiet, "%s (replaced by the next sample)", err);
  }
  if (pl != planes) free(pl);
}

static void *worker_main(void *arg) {
  mf_loader *l = arg;
  worker_ctx w;
  memset(&w, 0, sizeof w);
  pthread_mutex_lock(&l->mu);
  while (!l->stop) {
    if (l->cur_slot >= 0) {
      slot *s = &l->slots[l->cur_slot];
      int p = l->cur_pos++;
      if (l->cur_pos >= s->b.n) l->cur_slot = -1;
      pthread_mutex_unlock(&l->mu);
      produce(l, s, p, &w);
      pthread_mutex_lock(&l->mu);
      if (++s->done == s->b.n) { s->state = SLOT_READY; pthread_cond_broadcast(&l->cv_ready); }
      continue;
    }
    slot *s = &l->slots[l->fill_seq % l->nbuf];
    if (s->state != SLOT_FREE) { pthread_cond_wait(&l->cv_work, &l->mu); continue; }
    /* open the next batch */
    int64_t seq = l->fill_seq++, epoch = seq / (int64_t)l->per_epoch, bi = seq % (int64_t)l->per_epoch;
    if (epoch != l->perm_epoch) make_perm(l, epoch);
    size_t first = (size_t)bi * l->B, n = l->nuse - first < (size_t)l->B ? l->nuse - first : (size_t)l->B;
    size_t R = l->o.ranks > 1 ? (size_t)l->o.ranks : 1, r = R > 1 ? (size_t)l->o.rank : 0;
    n /= R; /* data parallel: this rank's share of the global batch, every R-th sample from position r */
    for (size_t i = 0; i < n; i++) { s->pos[i] = l->perm[first + r + i * R]; s->idx[i] = (int64_t)l->use[s->pos[i]]; }
    s->seq = seq; s->state = SLOT_FILLING; s->done = 0;
    s->b.n = (int)n; s->b.epoch = epoch; s->b.step = seq;
    l->cur_slot = (int)(s - l->slots); l->cur_pos = 0;
    pthread_cond_broadcast(&l->cv_work); /* other idle workers can claim samples of it */
  }
  pthread_mutex_unlock(&l->mu);
  worker_ctx_free(&w);
  return NULL;
}

/* drops files whose size makes a fixed crop impossible (folder datasets) */
static int build_usable(mf_loader *l, char *err, size_t errlen) {
  mf_dataset *d = l->d;
  l->use = malloc((d->n ? d->n : 1) * sizeof *l->use);
  if (!l->use) { snprintf(err, errlen, "out of memory"); return -1; }
  for (size_t i = 0; i < d->n; i++) {
    int w = 0, h = 0;
    if (d->kind == 0) { w = d->files[i].w; h = d->files[i].h; }
    else if (d->kind == 1) { w = d->gen_w; h = d->gen_h; }
    else if (d->kind == 3) { w = d->idx_w; h = d->idx_h; }
    if (w > 0 && (l->o.tf.crop == MF_CROP_CENTER || l->o.tf.crop == MF_CROP_RANDOM)) {
      rng_t r; tf_params p; char why[200];
      rng_init(&r, 1);
      if (tf_params_draw(&l->o.tf, &r, w, h, &p, why, sizeof why) != 0) {
        if (d->kind == 1) { snprintf(err, errlen, "generated images: %s", why); return -1; }
        if (d->kind == 3) { snprintf(err, errlen, "%s: its %dx%d images: %s", d->root, w, h, why); return -1; }
        char path[4096];
        dataset_path(d, i, path, sizeof path);
        data_warn(l->o.quiet, "%s: skipped: %s", path, why);
        l->init_skipped[SKIP_TOO_SMALL]++;
        continue;
      }
    }
    l->use[l->nuse++] = i;
  }
  for (int r = 0; r < SKIP_REASON_COUNT; r++) l->init_skipped[r] += (int64_t)d->skipped[r];
  if (l->nuse == 0) { snprintf(err, errlen, "dataset is empty after skipping unusable files (%zu samples, all skipped)", d->n); return -1; }
  if (l->o.drop_last && l->nuse < (size_t)l->B) {
    snprintf(err, errlen, "dataset has %zu usable samples, fewer than one batch of %d (add samples, use a smaller "
                          "batch, or set mf_loader_opts.drop_last = 0 to allow a short batch)",
             l->nuse, l->B);
    return -1;
  }
  return 0;
}

mf_loader *mf_loader_init(const mf_loader_opts *o, char *err, size_t errlen) {
  if (!o || loader_check(o, err, errlen) != 0) { if (!o) snprintf(err, errlen, "loader: null options"); return NULL; }
  mf_loader *l = calloc(1, sizeof *l);
  if (!l) { snprintf(err, errlen, "out of memory"); return NULL; }
  l->o = *o;
  if (!l->o.alloc) { l->o.alloc = default_alloc; l->o.free = default_free; }
  l->d = o->dataset;
  l->B = o->batch_size; l->C = o->tf.channels; l->T = mf_dataset_frames(o->dataset); l->V = o->views;
  l->nbuf = o->prefetch + 1;
  l->cur_slot = -1; l->perm_epoch = -1;
  loader_sizes(o, &l->view_bytes, &l->label_off, &l->buf_bytes);
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->cv_work, NULL);
  pthread_cond_init(&l->cv_ready, NULL);
  if (build_usable(l, err, errlen) != 0) { mf_loader_free(l); return NULL; }
  l->per_epoch = o->drop_last ? l->nuse / l->B : (l->nuse + l->B - 1) / l->B;
  l->data_id = data_id_of(l);
  if (apply_start(l, err, errlen) != 0) { mf_loader_free(l); return NULL; }
  l->perm = malloc(l->nuse * sizeof *l->perm);
  l->nbad_flags = l->d->kind == 1 || l->d->kind == 3 ? 0 : l->d->nfiles;
  l->bad_file = calloc(l->nbad_flags ? l->nbad_flags : 1, 1);
  l->slots = calloc((size_t)l->nbuf, sizeof *l->slots);
  if (!l->perm || !l->bad_file || !l->slots) { snprintf(err, errlen, "out of memory"); mf_loader_free(l); return NULL; }
  for (int i = 0; i < l->nbuf; i++) {
    slot *s = &l->slots[i];
    s->mem = l->o.alloc(l->buf_bytes, l->o.alloc_ctx);
    s->idx = malloc((size_t)l->B * sizeof *s->idx);
    s->pos = malloc((size_t)l->B * sizeof *s->pos);
    if (!s->mem || !s->idx || !s->pos) {
      snprintf(err, errlen, "cannot allocate staging buffer %d of %d (%.1f MiB each)", i + 1, l->nbuf,
               l->buf_bytes / 1048576.0);
      mf_loader_free(l);
      return NULL;
    }
    s->b.images = s->b.views[0] = (float *)s->mem;
    s->b.views[1] = l->V > 1 ? (float *)((uint8_t *)s->mem + l->view_bytes) : NULL;
    s->b.labels = (int32_t *)((uint8_t *)s->mem + l->label_off);
    s->b.indices = s->idx;
  }
  int nw = o->workers > 0 ? o->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (nw < 1) nw = 1;
  l->th = calloc((size_t)nw, sizeof *l->th);
  if (!l->th) { snprintf(err, errlen, "out of memory"); mf_loader_free(l); return NULL; }
  for (int i = 0; i < nw; i++) {
    if (pthread_create(&l->th[i], NULL, worker_main, l) != 0) {
      snprintf(err, errlen, "cannot start worker thread %d", i + 1);
      mf_loader_free(l);
      return NULL;
    }
    l->nth++;
  }
  return l;
}

static void print_reasons(FILE *f, const int64_t *by) {
  const char *sep = "";
  for (int r = 0; r < SKIP_REASON_COUNT; r++)
    if (by[r]) { fprintf(f, "%s%lld %s", sep, (long long)by[r], skip_reason_name((skip_reason)r)); sep = ", "; }
}

const mf_batch *mf_loader_next(mf_loader *l) {
  if (!l) return NULL;
  pthread_mutex_lock(&l->mu);
  if (l->epoch_end) {
    l->epoch_end = 0;
    if (l->bad_samples > l->reported_bad && !l->o.quiet) {
      fprintf(stderr, "memfit data: epoch %lld: %lld samples replaced so far (%lld bad files: ",
              (long long)(l->next_seq / (int64_t)l->per_epoch - 1), (long long)l->bad_samples, (long long)l->bad_files);
      print_reasons(stderr, l->bad_by_reason);
      fprintf(stderr, ")\n");
      l->reported_bad = l->bad_samples;
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
  }
  slot *s = &l->slots[l->next_seq % l->nbuf];
  if (!(s->state == SLOT_READY && s->seq == l->next_seq)) {
    double t0 = now_s();
    while (!(s->state == SLOT_READY && s->seq == l->next_seq) && !l->fatal[0]) pthread_cond_wait(&l->cv_ready, &l->mu);
    l->wait_s += now_s() - t0;
  }
  if (l->fatal[0]) { pthread_mutex_unlock(&l->mu); return NULL; }
  s->state = SLOT_HELD;
  l->next_seq++;
  l->batches++; l->samples += s->b.n;
  if (l->next_seq % (int64_t)l->per_epoch == 0) l->epoch_end = 1;
  pthread_mutex_unlock(&l->mu);
  return &s->b;
}

void mf_loader_release(mf_loader *l, const mf_batch *b) {
  if (!l || !b) return;
  pthread_mutex_lock(&l->mu);
  for (int i = 0; i < l->nbuf; i++)
    if (&l->slots[i].b == b && l->slots[i].state == SLOT_HELD) { l->slots[i].state = SLOT_FREE; break; }
  pthread_cond_broadcast(&l->cv_work);
  pthread_mutex_unlock(&l->mu);
}

void mf_loader_free(mf_loader *l) {
  if (!l) return;
  pthread_mutex_lock(&l->mu);
  l->stop = 1;
  pthread_cond_broadcast(&l->cv_work);
  pthread_mutex_unlock(&l->mu);
  for (int i = 0; i < l->nth; i++) pthread_join(l->th[i], NULL);
  if (l->slots)
    for (int i = 0; i < l->nbuf; i++) {
      if (l->slots[i].mem) l->o.free(l->slots[i].mem, l->buf_bytes, l->o.alloc_ctx);
      free(l->slots[i].idx); free(l->slots[i].pos);
    }
  free(l->slots); free(l->th); free(l->use); free(l->perm); free(l->bad_file);
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->cv_work);
  pthread_cond_destroy(&l->cv_ready);
  free(l);
}

size_t mf_loader_batches_per_epoch(const mf_loader *l) { return l ? l->per_epoch : 0; }

mf_loader_pos mf_loader_position(const mf_loader *cl) {
  mf_loader_pos p;
  memset(&p, 0, sizeof p);
  if (!cl) return p;
  mf_loader *l = (mf_loader *)cl;
  pthread_mutex_lock(&l->mu);
  p.epoch = l->next_seq / (int64_t)l->per_epoch;
  p.batch = l->next_seq % (int64_t)l->per_epoch;
  pthread_mutex_unlock(&l->mu);
  p.seed = l->o.seed;
  p.data_id = l->data_id;
  return p;
}

const char *mf_loader_error(const mf_loader *l) { return l && l->fatal[0] ? l->fatal : NULL; }

mf_loader_stats mf_loader_get_stats(const mf_loader *cl) {
  mf_loader_stats st;
  memset(&st, 0, sizeof st);
  if (!cl) return st;
  mf_loader *l = (mf_loader *)cl;
  pthread_mutex_lock(&l->mu);
  st.wait_s = l->wait_s; st.batches = l->batches; st.samples = l->samples;
  st.bad_samples = l->bad_samples; st.bad_files = l->bad_files;
  for (int r = 0; r < SKIP_REASON_COUNT; r++) st.skipped_files += l->init_skipped[r];
  st.too_small_files = l->init_skipped[SKIP_TOO_SMALL] + l->bad_files_by_reason[SKIP_TOO_SMALL];
  pthread_mutex_unlock(&l->mu);
  return st;
}

void mf_loader_summary(const mf_loader *cl, FILE *f) {
  if (!cl || !f) return;
  mf_loader *l = (mf_loader *)cl;
  pthread_mutex_lock(&l->mu);
  int64_t sk = 0;
  for (int r = 0; r < SKIP_REASON_COUNT; r++) sk += l->init_skipped[r];
  fprintf(f, "data: %zu usable samples, %zu batches/epoch; skipped at open: %lld", l->nuse, l->per_epoch, (long long)sk);
  if (sk) { fprintf(f, " ("); print_reasons(f, l->init_skipped); fprintf(f, ")"); }
  fprintf(f, "; failed while loading: %lld files, %lld samples replaced", (long long)l->bad_files, (long long)l->bad_samples);
  if (l->bad_samples) { fprintf(f, " ("); print_reasons(f, l->bad_by_reason); fprintf(f, ")"); }
  fprintf(f, "; waited %.3f s for data over %lld batches\n", l->wait_s, (long long)l->batches);
  pthread_mutex_unlock(&l->mu);
}
