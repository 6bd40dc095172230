/* grid.h — sample grids: a PNG of image tiles in rows and labelled columns (cover, stego, ...), for
 * eval and the trainer's per-epoch samples of any workload. */
#ifndef MEMFIT_GRID_H
#define MEMFIT_GRID_H

#include <stddef.h>

/* One column of a grid: a planar RGB w x h tile per row (R, G, B planes one after the other). With ref
 * set the column shows gain * |img - ref| instead (a difference map), clamped as the PNG writer does. */
typedef struct grid_col {
  const char *label;          /* drawn above the column in capitals with the built-in 5x7 font; NULL: none */
  const float *const *img;    /* rows tiles */
  const float *const *ref;    /* NULL, or rows tiles to subtract */
  float gain;                 /* with ref: the factor on the difference */
} grid_col;

#define GRID_GAP 2 /* white pixels between tiles */

/* Height of the label row above the tiles for tiles w wide (text scale 1 + w / 192, 2 pixels above and
 * below): what grid_write_png adds when any column has a label. */
int grid_label_height(int w);

/* Writes an 8-bit RGB PNG of rows x ncols tiles, GRID_GAP white pixels apart, under a white label row
 * when any column has a label (black capitals, centred, cut at the tile's width; characters other
 * than A-Z, 0-9, space, '-', '.', '|' and ':' are drawn as blanks, lower case as capitals).
 * Size: ncols * w + (ncols - 1) * GRID_GAP by [grid_label_height(w)] + rows * h + (rows - 1) * GRID_GAP.
 * Returns 0, or -1 with err naming path. */
int grid_write_png(const char *path, const grid_col *cols, int ncols, int rows, int w, int h, char *err, size_t errlen);

#endif
