/* cmd_render.c — `memfit render MODEL --size WxH --out IMG.png`: draws an Image-GS model file at any resolution. */
#include "cli/cli.h"
#include "models/imagegs_model.h"
#include <stdio.h>
#include <string.h>

static void render_usage(FILE *f) {
  fprintf(f, "usage: memfit render MODEL [--size WxH] --out IMAGE.png [--threads T]\n\n"
             "Draws an Image-GS model (the model.safetensors of 'memfit train imagegs') at any resolution: the Gaussians'\n"
             "positions are fractions of the image, their scales and angles are mapped to the new pixel grid.\n\n"
             "  --size WxH     output size (default: the size the model was fitted at)\n"
             "  --out FILE     the PNG to write\n"
             "  --threads T    CPU threads (default: all cores)\n\n"
             "exit status: 0 written, 1 the model or the image file failed (the message says why), 2 usage error\n");
}

int mf_cmd_render(int argc, char **argv) {
  const char *model = NULL, *out = NULL, *v;
  int w = 0, h = 0, threads = 0;
  char err[1024];
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { render_usage(stdout); return 0; }
    if ((v = cli_opt(argc, argv, &i, "--out"))) out = v;
    else if ((v = cli_opt(argc, argv, &i, "--threads"))) { if (cli_int("--threads", v, 0, 1024, &threads)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--size"))) {
      if (igs_parse_size(v, &w, &h, err, sizeof err) < 0) { fprintf(stderr, "memfit render: %s\n", err); return 2; }
    } else if (argv[i][0] == '-' && argv[i][1]) return cli_unknown_option("render", argv[i]);
    else if (!model) model = argv[i];
    else { fprintf(stderr, "memfit render: one model file, not '%s' too\n", argv[i]); return 2; }
  }
  if (!model || !out) { fprintf(stderr, "memfit render: %s\n", !model ? "no MODEL given" : "no --out FILE.png given"); render_usage(stderr); return 2; }
  mf_image im;
  if (igs_model_render(model, w, h, threads, &im, err, sizeof err) < 0) { fprintf(stderr, "memfit render: %s\n", err); return 1; }
  int rc = mf_image_save_png(out, im.data, im.w, im.h, im.c, err, sizeof err);
  if (rc < 0) fprintf(stderr, "memfit render: %s\n", err);
  else printf("memfit render: %s -> %s (%dx%d, %d channel%s)\n", model, out, im.w, im.h, im.c, im.c == 1 ? "" : "s");
  mf_image_free(&im);
  return rc < 0 ? 1 : 0;
}
