/* report.c — the run report: DIR/report.html, one self-contained page (inline CSS and SVG, images as data: URIs,
 * no scripts) drawn from a training run's --log JSON lines; `memfit report DIR` rebuilds it. */
#include "train/report.h"
#include "train/json.h"
#include "plan/plan.h"
#include <stdio.h>
#include "data/metrics.h"
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------- a strict reader for the flat JSON objects train's --log writes ---------------- */

enum { JV_NULL, JV_NUM, JV_STR, JV_OBJ, JV_BOOL };
typedef struct jv {
  int type;
  char *key; /* member name (NULL at the top) */
  double num;
  char *str;
  struct jv *kids; /* object members */
  int nkids;
} jv;

static void jv_free(jv *v) {
  for (int i = 0; i < v->nkids; i++) jv_free(&v->kids[i]);
  free(v->kids);
  free(v->key);
  free(v->str);
  memset(v, 0, sizeof *v);
}

typedef struct { const char *p; const char *why; } jp;
static char json_why[160]; /* a string reader's reason: outlives the parse (the caller prints it); one report at a time */

static void ws(jp *s) { while (*s->p == ' ' || *s->p == '\t' || *s->p == '\r' || *s->p == '\n') s->p++; }

/* a JSON string at s->p (on its opening quote): a new NUL-terminated copy, or NULL (s->why says why) */
static char *jstr(jp *s) {
  size_t n = strlen(s->p), i = 0, len;
  char *o = malloc(n + 1), why[160];
  if (!o) { s->why = "out of memory"; return NULL; }
  if (mf_json_string_read(s->p, n, &i, o, &len, why, sizeof why) < 0) {
    snprintf(json_why, sizeof json_why, "%s", why);
    s->why = json_why;
    free(o);
    return NULL;
  }
  s->p += i;
  return o;
}

static int jvalue(jp *s, jv *v, int depth);

static int jobject(jp *s, jv *v, int depth) {
  if (depth > 4) { s->why = "nested too deep"; return -1; }
  v->type = JV_OBJ;
  s->p++; /* '{' */
  ws(s);
  if (*s->p == '}') { s->p++; return 0; }
  for (;;) {
    ws(s);
    char *k = jstr(s);
    if (!k) return -1;
    jv *nk = realloc(v->kids, (size_t)(v->nkids + 1) * sizeof *nk);
    if (!nk) { free(k); s->why = "out of memory"; return -1; }
    v->kids = nk;
    jv *m = &v->kids[v->nkids++];
    memset(m, 0, sizeof *m);
    m->key = k;
    ws(s);
    if (*s->p != ':') { s->why = "expected ':'"; return -1; }
    s->p++;
    ws(s);
    if (jvalue(s, m, depth + 1) < 0) return -1;
    ws(s);
    if (*s->p == ',') { s->p++; continue; }
    if (*s->p == '}') { s->p++; return 0; }
    s->why = "expected ',' or '}'";
    return -1;
  }
}

static int jvalue(jp *s, jv *v, int depth) {
  const char *p = s->p;
  if (*p == '{') return jobject(s, v, depth);
  if (*p == '"') { v->type = JV_STR; return (v->str = jstr(s)) ? 0 : -1; }
  if (!strncmp(p, "null", 4)) { v->type = JV_NULL; v->num = NAN; s->p += 4; return 0; }
  if (!strncmp(p, "true", 4)) { v->type = JV_BOOL; v->num = 1; s->p += 4; return 0; }
  if (!strncmp(p, "false", 5)) { v->type = JV_BOOL; v->num = 0; s->p += 5; return 0; }
  if (*p == '-' || (*p >= '0' && *p <= '9')) {
    const char *q = p + (*p == '-');
    if (!(*q >= '0' && *q <= '9')) { s->why = "bad number"; return -1; }
    while ((*q >= '0' && *q <= '9') || *q == '.' || *q == 'e' || *q == 'E' || *q == '+' || *q == '-') q++;
    char *end;
    errno = 0;
    v->num = strtod(p, &end);
    if (end != q || !isfinite(v->num)) { s->why = "bad number"; return -1; }
    v->type = JV_NUM;
    s->p = q;
    return 0;
  }
  s->why = "unexpected character";
  return -1;
}

/* parses one line as a JSON object; 0, or -1 with *why set (v is freed) */
static int jparse_line(const char *line, jv *v, const char **why) {
  jp s = {.p = line, .why = NULL};
  memset(v, 0, sizeof *v);
  ws(&s);
  if (*s.p != '{') { *why = "not a JSON object"; return -1; }
  if (jobject(&s, v, 0) < 0) { *why = s.why; jv_free(v); return -1; }
  ws(&s);
  if (*s.p) { *why = "text after the object"; jv_free(v); return -1; }
  return 0;
}

static const jv *jget(const jv *o, const char *key) {
  for (int i = 0; o && i < o->nkids; i++)
    if (!strcmp(o->kids[i].key, key)) return &o->kids[i];
  return NULL;
}
/* a member's number: NaN when absent, null or not a number */
static double jnum(const jv *o, const char *key) {
  const jv *m = jget(o, key);
  return m && m->type == JV_NUM ? m->num : NAN;
}
static const char *jstrv(const jv *o, const char *key) {
  const jv *m = jget(o, key);
  return m && m->type == JV_STR ? m->str : NULL;
}

/* ---------------- what the report shows, gathered from the records ---------------- */

typedef struct { double *x, *y; int n, cap; } series;

static int series_add(series *s, double x, double y) {
  if (s->n == s->cap) {
    int c = s->cap ? s->cap * 2 : 256;
    double *nx = realloc(s->x, (size_t)c * sizeof *nx);
    if (!nx) return -1;
    s->x = nx;
    double *ny = realloc(s->y, (size_t)c * sizeof *ny);
    if (!ny) return -1;
    s->y = ny;
    s->cap = c;
  }
  s->x[s->n] = x;
  s->y[s->n++] = y;
  return 0;
}

/* fixed series; a workload's terms (update records) and validation metrics follow from S_N on */
enum { S_LOSS, S_VLOSS, S_LR, S_GRAD, S_N };
enum { MAX_ARENAS = 16, MAX_NAMED = 12 };

typedef struct {
  series s[S_N + 2 * MAX_NAMED];
  char *command, *settings, *ended;
  /* the workload's loss terms (update records) and validation metrics, by name, in order of appearance */
  int n_terms, n_vals;
  char term[MAX_NAMED][48], val[MAX_NAMED][48];
  int term_psnr[MAX_NAMED];   /* shown as PSNR: a sum of squared errors over `pixels` values (start record) */
  double val_last[MAX_NAMED];
  char *psnr_terms;           /* start record: the terms shown as PSNR, space-separated */
  double pixels;       /* values per micro-batch image tensor (start record): turns summed squared errors into PSNR */
  double updates, seconds, plan_bytes, peak_rss, last_step;
  int n_arenas, have_end, n_records, n_bad;
  char arena_name[MAX_ARENAS][64];
  double planned[MAX_ARENAS], measured[MAX_ARENAS];
  double v_step;
} run_log;

static void run_log_free(run_log *r) {
  for (int i = 0; i < S_N + 2 * MAX_NAMED; i++) { free(r->s[i].x); free(r->s[i].y); }
  free(r->command); free(r->settings); free(r->ended); free(r->psnr_terms);
}

static void set_str(char **dst, const char *v) {
  free(*dst);
  *dst = v ? strdup(v) : NULL;
}

static double psnr_of(double sum, double pixels) {
  if (!(pixels > 0) || !isfinite(sum)) return NAN;
  return psnr_from_mse(sum / pixels);
}

static void arenas_take(run_log *r, const jv *a, int measured) {
  if (!a || a->type != JV_OBJ) return;
  if (!measured) r->n_arenas = 0;
  for (int i = 0; i < a->nkids && i < MAX_ARENAS; i++) {
    const jv *k = &a->kids[i];
    int j = 0;
    while (j < r->n_arenas && strcmp(r->arena_name[j], k->key)) j++;
    if (j == r->n_arenas) {
      if (r->n_arenas == MAX_ARENAS) continue;
      snprintf(r->arena_name[j], sizeof r->arena_name[j], "%s", k->key);
      r->planned[j] = r->measured[j] = NAN;
      r->n_arenas++;
    }
    double pl = jnum(k, "planned"), me = jnum(k, "measured");
    if (isfinite(pl)) r->planned[j] = pl;
    r->measured[j] = me;
  }
}

/* keys of update records the trainer writes for every workload; the others are the workload's loss terms */
static int generic_update_key(const char *k) {
  static const char *const keys[] = {"step", "type", "epoch", "loss", "lr", "grad_norm", "loss_scale", "data_wait_share",
                                     "plan_bytes", "peak_rss_bytes"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    if (!strcmp(k, keys[i])) return 1;
  size_t n = strlen(k);
  return n > 6 && !strcmp(k + n - 6, "_per_s"); /* samples per second, by the workload's unit */
}

/* is term `name` one the start record lists as PSNR (older logs: steg's guide and rec) */
static int term_is_psnr(const run_log *r, const char *name) {
  if (!r->psnr_terms) return !strcmp(name, "guide") || !strcmp(name, "rec");
  size_t n = strlen(name);
  for (const char *p = r->psnr_terms; (p = strstr(p, name)) != NULL; p += n)
    if ((p == r->psnr_terms || p[-1] == ' ') && (p[n] == ' ' || !p[n])) return 1;
  return 0;
}

/* the series of named value `name` (a term or a validation metric), made on first sight; -1 when full */
static int named_series(run_log *r, int val, const char *name) {
  int *n = val ? &r->n_vals : &r->n_terms;
  char(*names)[48] = val ? r->val : r->term;
  for (int i = 0; i < *n; i++)
    if (!strcmp(names[i], name)) return S_N + val * MAX_NAMED + i;
  if (*n == MAX_NAMED) return -1;
  snprintf(names[*n], sizeof names[*n], "%s", name);
  if (!val) r->term_psnr[*n] = term_is_psnr(r, name);
  (*n)++;
  return S_N + val * MAX_NAMED + *n - 1;
}

/* one record into r; 0, or -1 with *why when it lacks what its type needs */
static int take_record(run_log *r, const jv *o, const char **why) {
  const char *type = jstrv(o, "type");
  double step = jnum(o, "step");
  if (!type) { *why = "no \"type\""; return -1; }
  if (!strcmp(type, "update") || !strcmp(type, "validation")) {
    if (!isfinite(step)) { *why = "no \"step\" number"; return -1; }
  }
  int fail = 0;
  if (!strcmp(type, "start")) {
    set_str(&r->command, jstrv(o, "command"));
    set_str(&r->settings, jstrv(o, "settings"));
    double px = jnum(o, "pixels");
    if (isfinite(px)) r->pixels = px;
    set_str(&r->psnr_terms, jstrv(o, "psnr_terms"));
    arenas_take(r, jget(o, "arenas"), 0);
    r->plan_bytes = jnum(o, "plan_bytes");
    r->have_end = 0;
    set_str(&r->ended, NULL);
  } else if (!strcmp(type, "update")) {
    fail |= series_add(&r->s[S_LOSS], step, jnum(o, "loss"));
    for (int i = 0; i < o->nkids; i++) {
      const jv *k = &o->kids[i];
      int id;
      if (generic_update_key(k->key) || (k->type != JV_NUM && k->type != JV_NULL) || (id = named_series(r, 0, k->key)) < 0)
        continue;
      double v = jnum(o, k->key);
      fail |= series_add(&r->s[id], step, r->term_psnr[id - S_N] ? psnr_of(v, r->pixels) : v);
    }
    fail |= series_add(&r->s[S_LR], step, jnum(o, "lr"));
    fail |= series_add(&r->s[S_GRAD], step, jnum(o, "grad_norm"));
    double pb = jnum(o, "plan_bytes"), rss = jnum(o, "peak_rss_bytes");
    if (isfinite(pb)) r->plan_bytes = pb;
    if (isfinite(rss)) r->peak_rss = rss;
  } else if (!strcmp(type, "validation")) {
    fail |= series_add(&r->s[S_VLOSS], step, jnum(o, "loss"));
    for (int i = 0; i < r->n_vals; i++) r->val_last[i] = NAN;
    for (int i = 0; i < o->nkids; i++) {
      const jv *k = &o->kids[i];
      int id;
      if (!strcmp(k->key, "step") || !strcmp(k->key, "type") || !strcmp(k->key, "epoch") || !strcmp(k->key, "loss") ||
          (k->type != JV_NUM && k->type != JV_NULL) || (id = named_series(r, 1, k->key)) < 0)
        continue;
      double v = jnum(o, k->key);
      r->val_last[id - S_N - MAX_NAMED] = v;
      fail |= series_add(&r->s[id], step, v);
    }
    r->v_step = step;
  } else if (!strcmp(type, "end")) {
    r->have_end = 1;
    set_str(&r->ended, jstrv(o, "ended"));
    r->updates = jnum(o, "updates");
    r->seconds = jnum(o, "seconds");
    arenas_take(r, jget(o, "arenas"), 1);
    double pb = jnum(o, "plan_bytes"), rss = jnum(o, "peak_rss_bytes");
    if (isfinite(pb)) r->plan_bytes = pb;
    if (isfinite(rss)) r->peak_rss = rss;
  } /* other types: from a later memfit; nothing to draw */
  if (fail) { *why = "out of memory"; return -1; }
  if (isfinite(step) && step > r->last_step) r->last_step = step;
  r->n_records++;
  return 0;
}

/* reads the log; a damaged line is skipped with a warning naming the file and line. 0, or -1 when it cannot be read. */
static int run_log_read(const char *path, run_log *r, const char *cmd, char *err, size_t n) {
  memset(r, 0, sizeof *r);
  r->pixels = NAN; r->updates = r->seconds = r->plan_bytes = r->peak_rss = NAN;
  r->v_step = NAN;
  r->last_step = -1;
  FILE *f = fopen(path, "r");
  if (!f) { snprintf(err, n, "cannot read %s: %s", path, strerror(errno)); return -1; }
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  long ln = 0;
  while ((len = getline(&line, &cap, f)) >= 0) {
    ln++;
    const char *why = NULL;
    if ((size_t)len != strlen(line)) why = "a NUL byte in the line";
    else if (len == 0 || line[len - 1] != '\n') why = "cut short (no line end)";
    jv o;
    if (!why && jparse_line(line, &o, &why) == 0) {
      if (take_record(r, &o, &why) == 0) why = NULL;
      else if (!why) why = "bad record";
      jv_free(&o);
    }
    if (why) {
      if (len == 1 && line[0] == '\n') continue; /* an empty line: nothing lost */
      r->n_bad++;
      fprintf(stderr, "memfit %s: warning: %s line %ld: damaged record skipped (%s)\n", cmd, path, ln, why);
    }
  }
  int bad = ferror(f), e = errno;
  free(line);
  fclose(f);
  if (bad) { snprintf(err, n, "reading %s failed: %s", path, strerror(e)); return -1; }
  return 0;
}

/* ---------------- HTML and SVG ---------------- */

void mf_html_str(FILE *f, const char *s) {
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    switch (*p) {
    case '&': fputs("&amp;", f); break;
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '"': fputs("&quot;", f); break;
    case '\'': fputs("&#39;", f); break;
    default:
      if (*p < 0x20 && *p != '\n' && *p != '\t') fputs("\xef\xbf\xbd", f); /* not allowed in HTML text: U+FFFD */
      else if (*p == 0x7f) fputs("\xef\xbf\xbd", f);
      else if (*p < 0x80) fputc(*p, f);
      else {
        int n = mf_utf8_len(p);
        if (n) { fwrite(p, 1, (size_t)n, f); p += n - 1; }
        else fputs("\xef\xbf\xbd", f); /* not UTF-8 */
      }
    }
  }
}

/* writes the file's bytes base64-encoded (at most max bytes); 0, or -1 when it cannot be read or is larger */
static int base64_file(FILE *out, const char *path, long max) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return -1; }
  long n = ftell(f);
  if (n <= 0 || n > max || fseek(f, 0, SEEK_SET) != 0) { fclose(f); return -1; }
  unsigned char *b = malloc((size_t)n);
  if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); fclose(f); return -1; }
  fclose(f);
  static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (long i = 0; i < n; i += 3) {
    unsigned v = (unsigned)b[i] << 16 | (i + 1 < n ? (unsigned)b[i + 1] << 8 : 0) | (i + 2 < n ? b[i + 2] : 0);
    char q[4] = {t[v >> 18 & 63], t[v >> 12 & 63], i + 1 < n ? t[v >> 6 & 63] : '=', i + 2 < n ? t[v & 63] : '='};
    fwrite(q, 1, 4, out);
  }
  free(b);
  return 0;
}

typedef struct { int id; const char *label, *color; int points; } curve;

/* a tick spacing near raw: 1, 2 or 5 times a power of ten */
static double nice_step(double raw) {
  if (!(raw > 0) || !isfinite(raw)) return 1;
  double e = pow(10, floor(log10(raw))), m = raw / e;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * e;
}

/* one chart: an inline SVG with a <path class="curve"> per series (NaN / null values break the line; a lone
 * point gets a dot) and circles for point series */
static void chart(FILE *f, const run_log *r, const char *title, const char *ylabel, const curve *c, int nc, int logy) {
  const double W = 720, H = 270, L = 84, R = 16, T = 44, B = 40, PW = W - L - R, PH = H - T - B;
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (int k = 0; k < nc; k++) {
    const series *s = &r->s[c[k].id];
    for (int i = 0; i < s->n; i++) {
      double y = logy ? log10(s->y[i]) : s->y[i];
      if (!isfinite(y) || !isfinite(s->x[i])) continue;
      x0 = fmin(x0, s->x[i]); x1 = fmax(x1, s->x[i]);
      y0 = fmin(y0, y); y1 = fmax(y1, y);
    }
  }
  fprintf(f, "<figure class=\"chart\"><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" viewBox=\"0 0 %g %g\" "
             "role=\"img\" aria-label=\"", W, H, W, H);
  mf_html_str(f, title);
  fprintf(f, "\">\n<text x=\"%g\" y=\"18\" class=\"title\">", L);
  mf_html_str(f, title);
  fputs("</text>\n", f);
  int empty = !(x0 <= x1);
  if (empty) { x0 = 0; x1 = 1; y0 = 0; y1 = 1; }
  if (x1 - x0 < 1) { x0 -= 0.5; x1 += 0.5; }
  if (y1 - y0 < 1e-12 * fmax(1, fabs(y0))) { double d = fabs(y0) > 0 ? fabs(y0) * 0.05 : 0.5; y0 -= d; y1 += d; }
  else { double d = (y1 - y0) * 0.05; y0 -= d; y1 += d; }
#define SX(x) (L + PW * ((x) - x0) / (x1 - x0))
#define SY(y) (T + PH * (1 - ((y) - y0) / (y1 - y0)))
  fprintf(f, "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" class=\"frame\"/>\n", L, T, PW, PH);
  double ys = nice_step((y1 - y0) / 4), xs = fmax(1, nice_step((x1 - x0) / 6)); /* updates are whole numbers */
  for (double yv = ceil(y0 / ys) * ys; yv <= y1 + ys * 1e-9; yv += ys) {
    double yy = SY(yv);
    fprintf(f, "<line x1=\"%g\" x2=\"%g\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid\"/><text x=\"%g\" y=\"%.1f\" class=\"yt\">%.*g</text>\n",
            L, L + PW, yy, yy, L - 4, yy + 4, fabs(yv) >= 1e-3 && fabs(yv) < 1e6 ? 6 : 3, fabs(yv) < ys * 1e-6 ? 0.0 : logy ? pow(10, yv) : yv);
  }
  for (double xv = ceil(x0 / xs) * xs; xv <= x1 + xs * 1e-9; xv += xs)
    fprintf(f, "<text x=\"%.1f\" y=\"%g\" class=\"xt\">%.0f</text>\n", SX(xv), T + PH + 16, xv);
  fprintf(f, "<text x=\"%g\" y=\"%g\" class=\"xl\">update</text>\n", L + PW / 2, H - 4);
  fprintf(f, "<text x=\"12\" y=\"%g\" class=\"yl\" transform=\"rotate(-90 12 %g)\">", T + PH / 2, T + PH / 2);
  mf_html_str(f, ylabel);
  fputs("</text>\n", f);
  for (int k = 0; k < nc; k++) {
    const series *s = &r->s[c[k].id];
    /* long runs: at most ~2000 vertices (the mean of each bucket of consecutive finite points) */
    int stride = s->n > 2000 ? (s->n + 1999) / 2000 : 1;
    fputs("<path class=\"curve\" data-series=\"", f);
    mf_html_str(f, c[k].label); /* a workload's names: escaped */
    fprintf(f, "\" stroke=\"%s\"%s d=\"", c[k].color, c[k].points ? " stroke-dasharray=\"4 3\"" : "");
    int pen = 0;
    for (int i = 0; i < s->n; i += stride) {
      double sx = 0, sy = 0;
      int m = 0;
      for (int j = i; j < i + stride && j < s->n; j++) {
        double y = logy ? log10(s->y[j]) : s->y[j];
        if (isfinite(y) && isfinite(s->x[j])) { sx += s->x[j]; sy += y; m++; }
      }
      if (!m) { pen = 0; continue; } /* a gap: NaN or null */
      fprintf(f, "%s%.1f,%.1f ", pen ? "L" : "M", SX(sx / m), SY(sy / m));
      pen = 1;
    }
    fputs("\"/>\n", f);
    /* dots: every point of a point series; for a line, the points that have no neighbour to join */
    for (int i = 0; i < s->n; i++) {
      double y = logy ? log10(s->y[i]) : s->y[i];
      if (!isfinite(y) || !isfinite(s->x[i])) continue;
      int alone = 0;
      if (!c[k].points && stride == 1) {
        int prev = i > 0 && isfinite(logy ? log10(s->y[i - 1]) : s->y[i - 1]);
        int next = i + 1 < s->n && isfinite(logy ? log10(s->y[i + 1]) : s->y[i + 1]);
        alone = !prev && !next;
      }
      if (c[k].points || alone)
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", SX(s->x[i]), SY(y), c[k].color);
    }
  }
  for (int k = 0; k < nc; k++)
  {
    fprintf(f, "<rect x=\"%g\" y=\"%g\" width=\"10\" height=\"10\" fill=\"%s\"/><text x=\"%g\" y=\"%g\" class=\"lg\">",
            L + k * 150.0, T - 16, c[k].color, L + 14 + k * 150.0, T - 7);
    mf_html_str(f, c[k].label);
    fputs("</text>\n", f);
  }
  if (empty) fprintf(f, "<text x=\"%g\" y=\"%g\" class=\"none\">no values logged yet</text>\n", L + PW / 2, T + PH / 2);
#undef SX
#undef SY
  fputs("</svg></figure>\n", f);
}

static void bytes_cell(FILE *f, double v) {
  if (!isfinite(v)) { fputs("<td class=\"num\">&mdash;</td>", f); return; }
  char h[32];
  mf_format_bytes((size_t)v, h, sizeof h);
  fprintf(f, "<td class=\"num\">%.0f B <span class=\"h\">(", v);
  mf_html_str(f, h);
  fputs(")</span></td>", f);
}

/* the newest DIR/samples-epochNNN.png, into name (empty when none) */
static void latest_samples(const char *dir, char *name, size_t n) {
  name[0] = 0;
  DIR *d = opendir(dir);
  if (!d) return;
  long best = -1;
  struct dirent *e;
  while ((e = readdir(d))) {
    long ep;
    char tail[8];
    if (sscanf(e->d_name, "samples-epoch%ld%7s", &ep, tail) == 2 && !strcmp(tail, ".png") && ep > best) {
      best = ep;
      snprintf(name, n, "%s", e->d_name);
    }
  }
  closedir(d);
}

static const char css[] =
    "body{font-family:sans-serif;margin:24px;color:#222;max-width:1100px}h1{font-size:22px}h2{font-size:17px;margin-top:28px}"
    ".settings{font-family:monospace;background:#f4f4f4;padding:8px;white-space:pre-wrap;word-break:break-all}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}td.num{text-align:right;font-family:monospace}"
    ".h{color:#777}.exact{color:#1a7f37;font-weight:bold}.different{color:#c00;font-weight:bold}"
    "figure{margin:8px 0}svg text{font-size:11px;fill:#333}svg .title{font-size:13px;font-weight:bold}"
    "svg .yt{text-anchor:end}svg .xt,svg .xl,svg .yl,svg .none{text-anchor:middle}"
    "svg .frame{fill:none;stroke:#999}svg .grid{stroke:#eee}svg .curve{fill:none;stroke-width:1.5}"
    "img.samples{min-width:360px;max-width:100%;image-rendering:pixelated;border:1px solid #ccc}img.timeline{max-width:100%}";

static int report_html(FILE *f, const char *dir, const char *log_path, const run_log *r) {
  fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n"
        "<title>memfit run report: ", f);
  mf_html_str(f, dir);
  fprintf(f, "</title>\n<style>%s</style></head><body>\n<h1>memfit run report: ", css);
  mf_html_str(f, dir);
  fputs("</h1>\n<p class=\"status\">", f);
  if (r->have_end) {
    fprintf(f, "Ended: <b>");
    mf_html_str(f, r->ended ? r->ended : "?");
    fprintf(f, "</b> after update %.0f (%.0f updates in this run, %.1f s).", r->last_step, r->updates, r->seconds);
  } else
    fprintf(f, "In progress, or stopped without a closing record (killed): the last record is at update %.0f.", r->last_step);
  fputs(" Records: ", f);
  mf_html_str(f, log_path);
  fprintf(f, " (%d read", r->n_records);
  if (r->n_bad) fprintf(f, ", %d damaged line%s skipped", r->n_bad, r->n_bad == 1 ? "" : "s");
  fputs(").</p>\n", f);
  if (r->command || r->settings) {
    fputs("<h2>Settings</h2>\n<p class=\"settings\" id=\"settings\">", f);
    if (r->command) mf_html_str(f, r->command);
    if (r->command && r->settings) fputs("\n", f);
    if (r->settings) mf_html_str(f, r->settings);
    fputs("</p>\n", f);
  }
  if (isfinite(r->v_step)) {
    fprintf(f, "<p id=\"validation\">Last validation (update %.0f):", r->v_step);
    for (int i = 0; i < r->n_vals; i++) {
      fputs(i ? ", " : " ", f);
      mf_html_str(f, r->val[i]);
      fprintf(f, " %.6g", r->val_last[i]);
    }
    fputs(".</p>\n", f);
  }

  fputs("<h2>Curves</h2>\n", f);
  const curve loss[] = {{S_LOSS, "loss (update)", "#4e79a7", 0}, {S_VLOSS, "loss (validation)", "#e15759", 1}};
  chart(f, r, "Loss", "loss", loss, 2, 0);
  /* PSNR: the terms the start record names, and validation metrics called *_psnr; then each other term; then
   * the other validation metrics together */
  static const char *const palette[8] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7"};
  curve cv[2 * MAX_NAMED];
  char labels[2 * MAX_NAMED][80];
  int nc = 0;
  for (int i = 0; i < r->n_terms; i++)
    if (r->term_psnr[i]) {
      snprintf(labels[nc], sizeof labels[nc], "%s PSNR (train)", r->term[i]);
      cv[nc] = (curve){S_N + i, labels[nc], palette[nc % 8], 0};
      nc++;
    }
  for (int i = 0; i < r->n_vals; i++) {
    size_t n = strlen(r->val[i]);
    if (n > 5 && !strcmp(r->val[i] + n - 5, "_psnr")) {
      snprintf(labels[nc], sizeof labels[nc], "%s (validation)", r->val[i]);
      cv[nc] = (curve){S_N + MAX_NAMED + i, labels[nc], palette[nc % 8], 1};
      nc++;
    }
  }
  if (nc) chart(f, r, "PSNR (dB; train: from the update's summed squared errors)", "dB", cv, nc, 0);
  for (int i = 0; i < r->n_terms; i++)
    if (!r->term_psnr[i]) {
      char title[96];
      snprintf(labels[0], sizeof labels[0], "%s (train)", r->term[i]);
      snprintf(title, sizeof title, "Loss term %s", r->term[i]);
      cv[0] = (curve){S_N + i, labels[0], palette[i % 8], 0};
      chart(f, r, title, r->term[i], cv, 1, 0);
    }
  nc = 0;
  for (int i = 0; i < r->n_vals; i++) {
    size_t n = strlen(r->val[i]);
    if ((n > 5 && !strcmp(r->val[i] + n - 5, "_psnr")) || !strcmp(r->val[i], "pairs") || !strcmp(r->val[i], "samples")) continue;
    snprintf(labels[nc], sizeof labels[nc], "%s (validation)", r->val[i]);
    cv[nc] = (curve){S_N + MAX_NAMED + i, labels[nc], palette[nc % 8], 1};
    nc++;
  }
  if (nc) chart(f, r, "Validation metrics", "value", cv, nc, 0);
  const curve lr[] = {{S_LR, "learning rate", "#76b7b2", 0}};
  chart(f, r, "Learning rate", "lr", lr, 1, 0);
  const curve gn[] = {{S_GRAD, "gradient norm", "#b07aa1", 0}};
  chart(f, r, "Gradient norm (before clipping)", "norm", gn, 1, 0);

  fputs("<h2>Memory: plan and measured arenas</h2>\n<table id=\"memory\"><tr><th>arena</th><th>planned</th><th>measured</th><th></th></tr>\n", f);
  int nexact = 0, nshown = 0;
  for (int i = 0; i < r->n_arenas; i++) {
    if (r->planned[i] == 0 && (r->measured[i] == 0 || !isfinite(r->measured[i]))) continue; /* unused arena */
    nshown++;
    fputs("<tr class=\"arena\"><td>", f);
    mf_html_str(f, r->arena_name[i]);
    fputs("</td>", f);
    bytes_cell(f, r->planned[i]);
    bytes_cell(f, r->measured[i]);
    if (!isfinite(r->measured[i])) fputs("<td>not measured yet</td>", f);
    else if (r->measured[i] == r->planned[i]) { fputs("<td class=\"exact\">exact</td>", f); nexact++; }
    else fputs("<td class=\"different\">DIFFERENT</td>", f);
    fputs("</tr>\n", f);
  }
  fputs("<tr><td><b>plan total</b></td>", f);
  bytes_cell(f, r->plan_bytes);
  fputs("<td></td><td></td></tr>\n<tr><td>process peak RSS</td><td></td>", f);
  bytes_cell(f, r->peak_rss);
  fputs("<td></td></tr>\n</table>\n", f);
  if (!r->n_arenas) fputs("<p>No arena figures in the records.</p>\n", f);
  else if (r->have_end) fprintf(f, "<p>%d of %d arenas measured exactly as planned.</p>\n", nexact, nshown);

  char path[4096];
  snprintf(path, sizeof path, "%s/timeline.svg", dir);
  fputs("<h2>Memory across one training step</h2>\n", f);
  if (access(path, R_OK) == 0) {
    fputs("<img class=\"timeline\" alt=\"memory timeline of one step\" src=\"data:image/svg+xml;base64,", f);
    if (base64_file(f, path, 8L << 20) < 0) fputs("\">\n<p>timeline.svg could not be read.</p>\n", f);
    else fputs("\">\n", f);
  } else
    fputs("<p>No timeline.svg in the run folder.</p>\n", f);

  char name[512];
  latest_samples(dir, name, sizeof name);
  fputs("<h2>Latest samples</h2>\n", f);
  if (name[0]) {
    snprintf(path, sizeof path, "%s/%s", dir, name);
    fputs("<figure><img class=\"samples\" alt=\"samples\" src=\"data:image/png;base64,", f);
    if (base64_file(f, path, 64L << 20) < 0) fputs("\"><figcaption>could not be read: ", f);
    else fputs("\"><figcaption>", f);
    mf_html_str(f, name);
    fputs("</figcaption></figure>\n", f);
  } else
    fputs("<p>No samples yet (they are written at each epoch end).</p>\n", f);
  fputs("</body></html>\n", f);
  return 0;
}

int mf_report_write(const char *dir, const char *log_path, const char *cmd, char *err, size_t n) {
  run_log r;
  if (run_log_read(log_path, &r, cmd, err, n) < 0) { run_log_free(&r); return -1; }
  char path[4096], tmp[4200];
  snprintf(path, sizeof path, "%s/report.html", dir);
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "w");
  if (!f) { snprintf(err, n, "cannot write %s: %s", tmp, strerror(errno)); run_log_free(&r); return -1; }
  report_html(f, dir, log_path, &r);
  run_log_free(&r);
  int bad = fflush(f) != 0 || ferror(f), e = errno;
  if (fclose(f) != 0 && !bad) { bad = 1; e = errno; }
  if (!bad && rename(tmp, path) != 0) { bad = 1; e = errno; }
  if (bad) {
    unlink(tmp);
    snprintf(err, n, "writing %s failed: %s", path, strerror(e));
    return -1;
  }
  return 0;
}

int mf_report_start_record(FILE *f, int64_t step, const char *command, const char *settings, double pixels,
                           const char *psnr_terms, const mf_plan *p) {
  fprintf(f, "{\"step\": %lld, \"type\": \"start\", \"command\": ", (long long)step);
  mf_json_str(f, command);
  fputs(", \"settings\": ", f);
  mf_json_str(f, settings);
  fputs(", \"pixels\": ", f);
  mf_json_num(f, pixels);
  fputs(", \"psnr_terms\": ", f);
  mf_json_str(f, psnr_terms);
  fputs(", \"arenas\": {", f);
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    if (a) fputs(", ", f);
    mf_json_str(f, mf_arena_name((mf_arena_kind)a));
    fprintf(f, ": {\"planned\": %zu}", mf_plan_arena_bytes(p, (mf_arena_kind)a));
  }
  fprintf(f, "}, \"plan_bytes\": %zu}\n", mf_plan_total_bytes(p));
  return ferror(f) || fflush(f) != 0 ? -1 : 0;
}

void mf_report_update(const char *dir, const char *log_path, const char *cmd) {
  char err[4400];
  if (mf_report_write(dir, log_path, cmd, err, sizeof err) < 0) fprintf(stderr, "memfit %s: warning: report: %s\n", cmd, err);
}

/* Writes the memory timeline as SVG; returns 0, or -1 after saying why (naming the file). */
int mf_report_timeline_svg(const char *path, const mf_plan *p, const char *title, const char *cmd) {
  FILE *f = fopen(path, "w");
  if (!f) { fprintf(stderr, "memfit %s: cannot write --timeline %s: %s\n", cmd, path, strerror(errno)); return -1; }
  const mf_program *pr = &p->train;
  int S = pr->n_steps;
  size_t base[4] = {p->arena[MF_ARENA_PARAM] + p->arena[MF_ARENA_PARAM_LP] + p->arena[MF_ARENA_STATE], p->arena[MF_ARENA_GRAD],
                    p->opts.offload_opt ? 0 : p->arena[MF_ARENA_OPT], p->arena[MF_ARENA_DATA]};
  const char *names[5] = {p->arena[MF_ARENA_STATE] ? "parameters + state" : "parameters", "gradients", "optimizer state",
                          "data staging", "activations + workspace"};
  const char *colors[5] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f"};
  size_t fixed = base[0] + base[1] + base[2] + base[3], ymax = fixed + p->arena[MF_ARENA_ACT];
  double W = 900, H = 360, L = 70, T = 40, PW = W - L - 20, PH = H - T - 60;
  fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%g' height='%g' font-family='sans-serif' font-size='12'>\n", W, H + 30);
  fprintf(f, "<text x='%g' y='20' font-size='14'>", L);
  mf_html_str(f, title); /* XML text: escaped as for HTML */
  fputs("</text>\n", f);
  double y0 = T + PH, acc = 0;
  for (int k = 0; k < 4; k++) {
    double h = PH * (double)base[k] / (double)ymax;
    fprintf(f, "<rect x='%g' y='%g' width='%g' height='%g' fill='%s'/>\n", L, y0 - acc - h, PW, h, colors[k]);
    acc += h;
  }
  fprintf(f, "<polygon fill='%s' points='", colors[4]);
  for (int s = 0; s < S; s++) {
    double x = L + PW * s / (S > 1 ? S - 1 : 1), y = y0 - acc - PH * (double)pr->live[s] / (double)ymax;
    fprintf(f, "%.1f,%.1f ", x, y);
  }
  fprintf(f, "%.1f,%.1f %.1f,%.1f'/>\n", L + PW, y0 - acc, L, y0 - acc);
  int first_bwd = S;
  for (int s = 0; s < S; s++)
    if (p->g->nodes[pr->steps[s]].phase != MF_PHASE_FWD) { first_bwd = s; break; }
  double xb = L + PW * first_bwd / (S > 1 ? S - 1 : 1), xp = L + PW * pr->peak_step / (S > 1 ? S - 1 : 1);
  fprintf(f, "<line x1='%g' y1='%g' x2='%g' y2='%g' stroke='#333' stroke-dasharray='4'/>\n", xb, T, xb, y0);
  fprintf(f, "<text x='%g' y='%g'>forward | backward</text>\n", xb - 60, T - 4);
  fprintf(f, "<line x1='%g' y1='%g' x2='%g' y2='%g' stroke='red'/>\n", xp, T, xp, y0);
  char h[32];
  mf_format_bytes(mf_plan_total_bytes(p), h, sizeof h);
  fprintf(f, "<text x='%g' y='%g' fill='red'>peak %s at step %d</text>\n", xp + 4, T + 14, h, pr->peak_step + 1);
  for (int k = 0; k <= 4; k++) {
    double v = (double)ymax * k / 4;
    char b[32];
    mf_format_bytes((size_t)v, b, sizeof b);
    fprintf(f, "<text x='4' y='%g'>%s</text>\n", y0 - PH * k / 4 + 4, b);
  }
  fprintf(f, "<text x='%g' y='%g'>step of the training step program (1..%d)</text>\n", L + PW / 2 - 120, y0 + 18, S);
  for (int k = 0; k < 5; k++)
    fprintf(f, "<rect x='%g' y='%g' width='12' height='12' fill='%s'/><text x='%g' y='%g'>%s</text>\n", L + k * 165.0,
            y0 + 32, colors[k], L + k * 165.0 + 16, y0 + 43, names[k]);
  fprintf(f, "</svg>\n");
  int bad = fflush(f) != 0 || ferror(f), e = errno;
  if (fclose(f) != 0 && !bad) { bad = 1; e = errno; }
  if (bad) { fprintf(stderr, "memfit %s: writing --timeline %s failed: %s\n", cmd, path, strerror(e)); return -1; }
  return 0;
}


/* Prints the plan next to the measured high-water of every arena; 1 when every arena is exact. */
int mf_report_memory(mf_session *s, const char *rss_note) {
  const mf_plan *p = mf_session_plan(s);
  printf("memory: planned vs measured (runtime high-water per arena)\n");
  int exact = 1;
  for (int a = 0; a < MF_ARENA_COUNT; a++) {
    size_t pl = mf_plan_arena_bytes(p, (mf_arena_kind)a), me = mf_session_measured_bytes(s, (mf_arena_kind)a);
    if (!pl && !me) continue;
    printf("  %-26s planned %12zu B   measured %12zu B   %s\n", mf_arena_name((mf_arena_kind)a), pl, me, pl == me ? "exact" : "DIFFERENT");
    exact &= pl == me;
  }
  char h[32];
  mf_format_bytes(mf_peak_rss_bytes(), h, sizeof h);
  printf("  process peak RSS %s%s\n", h, rss_note);
  return exact;
}

