/* imagegs_model.h — the Image-GS model file (safetensors: the active Gaussians' pos, inv_scale, rot, feat and
 * the image size they were fitted at, "format" = memfit-imagegs-1) and rendering it at any resolution. */
#ifndef MF_IMAGEGS_MODEL_H
#define MF_IMAGEGS_MODEL_H

#include "models/imagegs.h"

#define IGS_MODEL_FORMAT "memfit-imagegs-1"

/* Writes the session's active Gaussians of net to path (atomically), with note (the command line) in the
 * metadata. 0, or -1 with err naming the file. */
int igs_model_save(mf_session *s, const igs_net *net, const char *path, const char *note, char *err, size_t n);
/* bits per pixel of g Gaussians of 5 + channels values of `bits` bits each on a w x h image */
double igs_bpp(int64_t gaussians, int channels, int bits, int w, int h);
/* Renders the model file at width x height (0 x 0: the size it was fitted at) into *out (interleaved [H][W][C],
 * free with mf_image_free). Inverse scales and angles are mapped exactly to the new pixel grid (a covariance
 * scaled by the two axes' factors, which changes the angle when the aspect ratio changes). 0, or -1 with err
 * (an unreadable file; a file of another kind, naming it; a bad size). */
int igs_model_render(const char *path, int width, int height, int threads, mf_image *out, char *err, size_t n);

#endif
