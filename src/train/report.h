/* report.h — the run report (DIR/report.html drawn from a run's --log records), the step's memory timeline
 * (SVG) and the planned-vs-measured memory table the trainer prints at the end of a run. */
#ifndef MF_REPORT_H
#define MF_REPORT_H

#include "memfit.h"
#include <stdio.h>

/* (Re)builds DIR/report.html from the records in log_path (a damaged line is skipped with a warning that
 * starts "memfit CMD:"); 0 or -1 with err. */
int mf_report_write(const char *dir, const char *log_path, const char *cmd, char *err, size_t n);
/* mf_report_write for a run in progress: a page that cannot be written is a warning, not a failed run. */
void mf_report_update(const char *dir, const char *log_path, const char *cmd);
/* Writes the --log record a run starts with (command line, settings, values per image tensor, the loss terms
 * the report shows as PSNR (space-separated names: sums of squared errors over `pixels` values), planned
 * arenas); 0, or -1 when the write failed. */
int mf_report_start_record(FILE *f, int64_t step, const char *command, const char *settings, double pixels,
                           const char *psnr_terms, const mf_plan *p);
/* Writes s escaped for HTML text and attributes (bytes that are not UTF-8: U+FFFD). */
void mf_html_str(FILE *f, const char *s);
/* The memory timeline of the plan's training step as an SVG file; 0, or -1 after saying why on stderr
 * ("memfit CMD: ..."). */
int mf_report_timeline_svg(const char *path, const mf_plan *p, const char *title, const char *cmd);
/* Prints the plan next to the runtime's measured high-water of every arena and the process's peak RSS
 * (rss_note explains what RSS holds beyond the plan, or ""). Returns 1 when every arena is exact. */
int mf_report_memory(mf_session *s, const char *rss_note);

#endif
