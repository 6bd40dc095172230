/* suggest.c — "did you mean" for the memfit command: the nearest command, or the nearest option a
 * command's own --help lists, by edit distance (insertions, deletions, substitutions, swaps). */
#include "cli/cli.h"
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* optimal string alignment distance between two short strings (longer ones count as far apart) */
int cli_edit_distance(const char *a, const char *b) {
  enum { MAXN = 64 };
  size_t n = strlen(a), m = strlen(b);
  if (n >= MAXN || m >= MAXN) return 1000;
  int d[MAXN][MAXN];
  for (size_t i = 0; i <= n; i++) d[i][0] = (int)i;
  for (size_t j = 0; j <= m; j++) d[0][j] = (int)j;
  for (size_t i = 1; i <= n; i++)
    for (size_t j = 1; j <= m; j++) {
      int cost = a[i - 1] != b[j - 1];
      int v = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
      if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v) v = d[i - 2][j - 2] + 1;
      d[i][j] = v;
    }
  return d[n][m];
}

/* close enough to be a slip of the fingers: at most 2 edits, and fewer than half the word */
static int near(const char *word, const char *cand, int *best) {
  int d = cli_edit_distance(word, cand);
  int n = (int)strlen(word);
  if (d == 0 || d > 2 || 2 * d > n || d >= *best) return 0;
  *best = d;
  return 1;
}

const char *cli_nearest(const char *word, const char *const *cands, int n) {
  const char *pick = NULL;
  int best = 1000;
  for (int i = 0; i < n; i++)
    if (near(word, cands[i], &best)) pick = cands[i];
  return pick;
}

/* Runs `memfit CMD... --help` in this process with stdout caught in a temporary file; returns the
 * text (malloc'ed) or NULL. */
static char *help_text(const char *cmd) {
  char words[128], *argv[8];
  int argc = 0;
  snprintf(words, sizeof words, "%s", cmd);
  for (char *t = strtok(words, " "); t && argc < 6; t = strtok(NULL, " ")) argv[argc++] = t;
  argv[argc++] = "--help";
  argv[argc] = NULL;
  const mf_cmd *c = argc > 1 ? cli_command_find(argv[0]) : NULL;
  if (!c) return NULL;
  FILE *t = tmpfile();
  if (!t) return NULL;
  fflush(stdout);
  int saved = dup(STDOUT_FILENO);
  if (saved < 0 || dup2(fileno(t), STDOUT_FILENO) < 0) { fclose(t); if (saved >= 0) close(saved); return NULL; }
  c->run(argc, argv);
  fflush(stdout);
  dup2(saved, STDOUT_FILENO);
  close(saved);
  long len = ftell(t);
  char *s = len > 0 ? malloc((size_t)len + 1) : NULL;
  if (s) {
    rewind(t);
    size_t got = fread(s, 1, (size_t)len, t);
    s[got] = 0;
  }
  fclose(t);
  return s;
}

int cli_unknown_option(const char *cmd, const char *arg) {
  char word[64];
  snprintf(word, sizeof word, "%s", arg);
  char *eq = strchr(word, '=');
  if (eq) *eq = 0;
  const char *pick = NULL;
  char best_opt[64] = "";
  if (!strncmp(word, "--", 2) && strlen(word) > 3) {
    char *help = help_text(cmd);
    int best = 1000;
    for (char *p = help; p && (p = strstr(p, "--")) != NULL;) { /* every --name the help mentions */
      char opt[64];
      size_t k = 0;
      while (k + 1 < sizeof opt && (isalnum((unsigned char)p[k]) || p[k] == '-' || p[k] == '_')) { opt[k] = p[k]; k++; }
      opt[k] = 0;
      p += k > 2 ? k : 2;
      if (k > 3 && near(word, opt, &best)) snprintf(best_opt, sizeof best_opt, "%s", opt);
    }
    free(help);
    if (*best_opt) pick = best_opt;
  }
  if (pick) fprintf(stderr, "memfit %s: unknown option '%s'; did you mean %s? (see memfit %s --help)\n", cmd, arg, pick, cmd);
  else fprintf(stderr, "memfit %s: unknown option '%s' (see memfit %s --help)\n", cmd, arg, cmd);
  return 2;
}
