/* image.c — PNG (libpng) and JPEG (libjpeg-turbo) decoding from memory into raw regions, cheap
 * header probes, file reading, and the public single-image load/save API. Corrupt input returns an
 * error string; libpng/libjpeg errors are caught with setjmp/longjmp and never abort the process. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "data/data.h"

#define MAX_SIDE 65535                    /* refuse larger images */
#define MAX_PIXELS ((size_t)1 << 28)      /* 268M pixels */

void raw_image_free(raw_image *r) {
  free(r->data);
  memset(r, 0, sizeof *r);
}

int raw_image_reserve(raw_image *r, int w, int h, int c, int depth) {
  if (w <= 0 || h <= 0 || (size_t)w * (size_t)h > MAX_PIXELS) return -1;
  size_t stride = (size_t)w * (size_t)c * (size_t)(depth / 8);
  size_t need = stride * (size_t)h;
  if (need > r->cap) {
    uint8_t *p = realloc(r->data, need);
    if (!p) return -1;
    r->data = p; r->cap = need;
  }
  r->w = w; r->h = h; r->c = c; r->depth = depth; r->stride = stride;
  return 0;
}

int image_sniff(const uint8_t *buf, size_t n) {
  static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
  if (n >= 8 && memcmp(buf, png_sig, 8) == 0) return IMG_PNG;
  if (n >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff) return IMG_JPEG;
  return IMG_UNKNOWN;
}

/* Whole-image region request helper: clamps the box (+margin) to the image, in scaled pixels. */
static void region_bounds(const decode_region *reg, double s, int fw, int fh, int *x0, int *y0, int *x1, int *y1) {
  double fx = reg->out_w > 0 ? reg->bw * s / reg->out_w : 1, fy = reg->out_h > 0 ? reg->bh * s / reg->out_h : 1;
  double mx = (fx > 1 ? fx : 1) * reg->support + 2, my = (fy > 1 ? fy : 1) * reg->support + 2;
  int a = (int)(reg->bx * s - mx), b = (int)(reg->by * s - my);
  int c = (int)((reg->bx + reg->bw) * s + mx + 1), d = (int)((reg->by + reg->bh) * s + my + 1);
  *x0 = a < 0 ? 0 : a; *y0 = b < 0 ? 0 : b;
  *x1 = c > fw ? fw : c; *y1 = d > fh ? fh : d;
  if (*x1 <= *x0) { *x0 = 0; *x1 = fw; }
  if (*y1 <= *y0) { *y0 = 0; *y1 = fh; }
}

static unsigned be16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }
static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

/* ---------------- PNG ---------------- */
/* Checks the colour type / bit depth pair of a PNG whose first 33 bytes are hd (signature + IHDR).
 * Returns 0 with *ch (1 or 3 after conversion), or -(1 + skip_reason). */
static int png_ihdr_check(const uint8_t *hd, int *ch, char *err, size_t errlen) {
  if (memcmp(hd + 12, "IHDR", 4) != 0) { snprintf(err, errlen, "corrupt PNG: no IHDR"); return -1 - SKIP_CORRUPT; }
  int bd = hd[24], ct = hd[25], ok = 0;
  switch (ct) {
  case 0: ok = bd == 1 || bd == 2 || bd == 4 || bd == 8 || bd == 16; *ch = 1; break;
  case 2: ok = bd == 8 || bd == 16; *ch = 3; break;
  case 3: ok = bd == 1 || bd == 2 || bd == 4 || bd == 8; *ch = 3; break;
  case 4: ok = bd == 8 || bd == 16; *ch = 1; break;
  case 6: ok = bd == 8 || bd == 16; *ch = 3; break;
  default: snprintf(err, errlen, "unsupported PNG colour type %d", ct); return -1 - SKIP_UNSUPPORTED;
  }
  if (!ok) { snprintf(err, errlen, "unsupported bit depth %d for PNG colour type %d", bd, ct); return -1 - SKIP_UNSUPPORTED; }
  return 0;
}

typedef struct png_src {
  const uint8_t *buf; size_t n, pos;
  jmp_buf jb;
  char msg[200];
} png_src;

static void png_err_fn(png_structp png, png_const_charp msg) {
  png_src *s = png_get_error_ptr(png);
  snprintf(s->msg, sizeof s->msg, "%s", msg ? msg : "PNG error");
  longjmp(s->jb, 1);
}
static void png_warn_fn(png_structp png, png_const_charp msg) { (void)png; (void)msg; }
static void png_read_fn(png_structp png, png_bytep out, size_t len) {
  png_src *s = png_get_io_ptr(png);
  if (len > s->n - s->pos) png_error(png, "truncated file (unexpected end of data)");
  memcpy(out, s->buf + s->pos, len);
  s->pos += len;
}

int png_decode_mem(const uint8_t *buf, size_t n, raw_image *out, decode_choose_fn choose, void *ctx,
                   char *err, size_t errlen) {
  if (n < 8 || image_sniff(buf, n) != IMG_PNG) { snprintf(err, errlen, "not a PNG file"); return -1; }
  int ihdr_ch;
  if (n >= 33 && png_ihdr_check(buf, &ihdr_ch, err, errlen) != 0) return -1;
  png_src src = {.buf = buf, .n = n, .pos = 0};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_err_fn, png_warn_fn);
  if (!png) { snprintf(err, errlen, "out of memory"); return -1; }
  png_infop info = png_create_info_struct(png);
  uint8_t *volatile row16 = NULL;  /* scratch for interlaced images, freed on every path */
  volatile int rejected = 0;       /* by choose, which may have said why in err (a readable image, not a corrupt one) */
  if (!info) { png_destroy_read_struct(&png, NULL, NULL); snprintf(err, errlen, "out of memory"); return -1; }
  if (errlen) err[0] = 0;
  if (setjmp(src.jb)) {
    png_destroy_read_struct(&png, &info, NULL);
    free(row16);
    if (!rejected) snprintf(err, errlen, "corrupt PNG: %s", src.msg);
    else if (errlen && !err[0]) snprintf(err, errlen, "image rejected by the caller");
    return -1;
  }
  png_set_read_fn(png, &src, png_read_fn);
#ifdef MEMFIT_FUZZING /* let mutated data past the checksums so the fuzzer reaches the decoder */
  png_set_crc_action(png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);
#ifdef PNG_IGNORE_ADLER32
  png_set_option(png, PNG_IGNORE_ADLER32, PNG_OPTION_ON);
#endif
#endif
  png_set_user_limits(png, MAX_SIDE, MAX_SIDE);
  png_set_chunk_malloc_max(png, 64u << 20);
  png_read_info(png, info);
  png_uint_32 w, h;
  int bit_depth, color_type, interlace;
  png_get_IHDR(png, info, &w, &h, &bit_depth, &color_type, &interlace, NULL, NULL);
  if ((size_t)w * h > MAX_PIXELS) png_error(png, "image too large");
  /* normalise to 8/16-bit gray or RGB, alpha dropped */
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  int alpha = (color_type & PNG_COLOR_MASK_ALPHA) != 0;
  if (png_get_valid(png, info, PNG_INFO_tRNS)) { png_set_tRNS_to_alpha(png); alpha = 1; } /* then dropped */
  if (alpha) png_set_strip_alpha(png);
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  if (bit_depth == 16) png_set_swap(png);
#endif
  int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  int c = png_get_channels(png, info);
  int depth = png_get_bit_depth(png, info);
  if ((c != 1 && c != 3) || (depth != 8 && depth != 16)) png_error(png, "unsupported pixel format after conversion");

  decode_region reg = {0, 0, (double)w, (double)h, 0, 0, 1.0};
  if (choose && choose(ctx, (int)w, (int)h, &reg) != 0) { rejected = 1; png_error(png, "image rejected"); }
  int x0 = 0, y0 = 0, x1 = (int)w, y1 = (int)h;
  if (choose) region_bounds(&reg, 1.0, (int)w, (int)h, &x0, &y0, &x1, &y1);
  /* rows are decoded whole; keep columns x0..x1 and stop after row y1 (non-interlaced) */
  if (interlace != PNG_INTERLACE_NONE) { y0 = 0; y1 = (int)h; x0 = 0; x1 = (int)w; }
  if (raw_image_reserve(out, x1 - x0, y1 - y0, c, depth) != 0) png_error(png, "out of memory");
  out->x0 = x0; out->y0 = y0; out->full_w = out->orig_w = (int)w; out->full_h = out->orig_h = (int)h;
  out->scale = 1.0;
  size_t px = (size_t)c * (size_t)(depth / 8);
  if (passes > 1) {
    /* interlaced: libpng needs the whole image across passes */
    for (int p = 0; p < passes; p++)
      for (png_uint_32 y = 0; y < h; y++) png_read_row(png, out->data + (size_t)y * out->stride, NULL);
  } else if (x0 == 0 && x1 == (int)w) {
    for (int y = 0; y < y1; y++) {
      uint8_t *dst = out->data + (size_t)(y < y0 ? 0 : y - y0) * out->stride; /* rows above y0 land in row 0, overwritten */
      png_read_row(png, dst, NULL);
    }
  } else {
    row16 = malloc((size_t)w * px);
    if (!row16) png_error(png, "out of memory");
    for (int y = 0; y < y1; y++) {
      png_read_row(png, row16, NULL);
      if (y >= y0) memcpy(out->data + (size_t)(y - y0) * out->stride, row16 + (size_t)x0 * px, (size_t)(x1 - x0) * px);
    }
  }
  /* a full read also checks the end of the stream (truncation after the last row) */
  if (y1 == (int)h) png_read_end(png, NULL);
  png_destroy_read_struct(&png, &info, NULL);
  free(row16);
  return 0;
}

/* ---------------- JPEG ---------------- */
typedef struct jpeg_err {
  struct jpeg_error_mgr pub;
  jmp_buf jb;
  char msg[JMSG_LENGTH_MAX + 32];
} jpeg_err;

static void jpeg_error_exit_fn(j_common_ptr ci) {
  jpeg_err *e = (jpeg_err *)ci->err;
  char buf[JMSG_LENGTH_MAX];
  e->pub.format_message(ci, buf);
  snprintf(e->msg, sizeof e->msg, "%s", buf);
  longjmp(e->jb, 1);
}
/* Warnings about damaged data are errors: a "premature end of file" would otherwise be padded
 * with grey and look like a real image. Harmless ones (extraneous bytes, odd JFIF version) pass. */
static void jpeg_emit_fn(j_common_ptr ci, int level) {
  if (level != -1) return;
  int code = ci->err->msg_code;
  if (code == JWRN_EXTRANEOUS_DATA || code == JWRN_JFIF_MAJOR || code == JWRN_ADOBE_XFORM) return;
  jpeg_error_exit_fn(ci);
}

static int jpeg_pick_scale(const decode_region *reg, int draft) {
  /* largest denominator d in {8,4,2} with the box still at least the output size at 1/d */
  if (!draft || reg->out_w <= 0 || reg->out_h <= 0) return 1;
  for (int d = 8; d > 1; d /= 2)
    if (reg->bw / d >= reg->out_w && reg->bh / d >= reg->out_h) return d;
  return 1;
}

int jpeg_decode_mem(const uint8_t *buf, size_t n, raw_image *out, decode_choose_fn choose, void *ctx,
                    int draft, char *err, size_t errlen) {
  if (n < 3 || image_sniff(buf, n) != IMG_JPEG) { snprintf(err, errlen, "not a JPEG file"); return -1; }
  if (n > ULONG_MAX) { snprintf(err, errlen, "file too large"); return -1; }
  struct jpeg_decompress_struct ci;
  jpeg_err je;
  uint8_t *volatile row = NULL;
  volatile int rejected = 0; /* by choose, which may have said why in err (a readable image, not a corrupt one) */
  if (errlen) err[0] = 0;
  memset(&ci, 0, sizeof ci);
  ci.err = jpeg_std_error(&je.pub);
  je.pub.error_exit = jpeg_error_exit_fn;
  je.pub.emit_message = jpeg_emit_fn;
  je.msg[0] = 0;
  if (setjmp(je.jb)) {
    int precision = je.pub.msg_code == JERR_BAD_PRECISION ? je.pub.msg_parm.i[0] : 0; /* a valid file, not ours to read */
    jpeg_destroy_decompress(&ci);
    free(row);
    if (precision)
      snprintf(err, errlen, "unsupported %d-bit JPEG: memfit reads 8-bit JPEG only (convert it to 8 bits or to PNG)", precision);
    else if (rejected) {
      if (errlen && !err[0]) snprintf(err, errlen, "image rejected by the caller");
    } else
      snprintf(err, errlen, "corrupt JPEG: %s", je.msg);
    return -1;
  }
  jpeg_create_decompress(&ci);
  jpeg_mem_src(&ci, buf, (unsigned long)n);
  jpeg_read_header(&ci, TRUE);
  if (ci.data_precision != 8) {
    je.pub.msg_code = JERR_BAD_PRECISION;
    je.pub.msg_parm.i[0] = ci.data_precision;
    longjmp(je.jb, 1);
  }
  int W = (int)ci.image_width, H = (int)ci.image_height;
  if (W <= 0 || H <= 0 || W > MAX_SIDE || H > MAX_SIDE || (size_t)W * H > MAX_PIXELS) {
    snprintf(je.msg, sizeof je.msg, "bad image size %dx%d", W, H);
    longjmp(je.jb, 1);
  }
  int cmyk = 0;
  switch (ci.jpeg_color_space) {
  case JCS_GRAYSCALE: ci.out_color_space = JCS_GRAYSCALE; break;
  case JCS_CMYK: case JCS_YCCK: ci.out_color_space = JCS_CMYK; cmyk = 1; break;
  default: ci.out_color_space = JCS_RGB; break;
  }
  decode_region reg = {0, 0, W, H, 0, 0, 1.0};
  if (choose && choose(ctx, W, H, &reg) != 0) {
    rejected = 1;
    longjmp(je.jb, 1);
  }
  int d = choose ? jpeg_pick_scale(&reg, draft) : 1;
  ci.scale_num = 1; ci.scale_denom = (unsigned)d;
  ci.dct_method = JDCT_ISLOW;
  jpeg_start_decompress(&ci);
  int fw = (int)ci.output_width, fh = (int)ci.output_height, comps = ci.output_components;
  double s = (double)fw / W;
  int x0 = 0, y0 = 0, x1 = fw, y1 = fh;
  if (choose) region_bounds(&reg, s, fw, fh, &x0, &y0, &x1, &y1);
  if (x0 > 0 || x1 < fw) {
    JDIMENSION xo = (JDIMENSION)x0, xw = (JDIMENSION)(x1 - x0);
    jpeg_crop_scanline(&ci, &xo, &xw);  /* widens to iMCU boundaries */
    x0 = (int)xo; x1 = (int)(xo + xw);
  }
  int cw = (int)ci.output_width; /* after cropping */
  int c = cmyk ? 3 : comps;
  if (raw_image_reserve(out, x1 - x0, y1 - y0, c, 8) != 0) {
    snprintf(je.msg, sizeof je.msg, "out of memory");
    longjmp(je.jb, 1);
  }
  if (cw != x1 - x0) { snprintf(je.msg, sizeof je.msg, "crop width mismatch"); longjmp(je.jb, 1); }
  out->x0 = x0; out->y0 = y0; out->full_w = fw; out->full_h = fh; out->orig_w = W; out->orig_h = H; out->scale = s;
  if (y0 > 0) {
    JDIMENSION skipped = jpeg_skip_scanlines(&ci, (JDIMENSION)y0);
    if ((int)skipped != y0) { snprintf(je.msg, sizeof je.msg, "skip failed"); longjmp(je.jb, 1); }
  }
  if (cmyk) {
    row = malloc((size_t)cw * 4);
    if (!row) { snprintf(je.msg, sizeof je.msg, "out of memory"); longjmp(je.jb, 1); }
  }
  while ((int)ci.output_scanline < y1) {
    int y = (int)ci.output_scanline - y0;
    JSAMPROW rp = cmyk ? (JSAMPROW)row : (JSAMPROW)(out->data + (size_t)y * out->stride);
    if (jpeg_read_scanlines(&ci, &rp, 1) != 1) { snprintf(je.msg, sizeof je.msg, "read failed"); longjmp(je.jb, 1); }
    if (cmyk) { /* Adobe-style inverted CMYK: R = C*K/255 */
      uint8_t *dst = out->data + (size_t)y * out->stride;
      for (int x = 0; x < cw; x++) {
        unsigned k = row[4 * x + 3];
        for (int ch = 0; ch < 3; ch++) dst[3 * x + ch] = (uint8_t)((row[4 * x + ch] * k + 127) / 255);
      }
    }
  }
  if (y1 == fh) jpeg_finish_decompress(&ci);
  else jpeg_abort_decompress(&ci);
  jpeg_destroy_decompress(&ci);
  free(row);
  return 0;
}

int image_decode_mem(const uint8_t *buf, size_t n, raw_image *out, decode_choose_fn choose, void *ctx, int draft,
                     char *err, size_t errlen) {
  if (n == 0) { snprintf(err, errlen, "empty file"); return -1; }
  switch (image_sniff(buf, n)) {
  case IMG_PNG: return png_decode_mem(buf, n, out, choose, ctx, err, errlen);
  case IMG_JPEG: return jpeg_decode_mem(buf, n, out, choose, ctx, draft, err, errlen);
  default: snprintf(err, errlen, "not a PNG or JPEG image"); return -1;
  }
}

/* ---------------- header probe ---------------- */

/* What a file that is not a regular file is, for messages. */
static const char *file_kind(mode_t m) {
  return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO (named pipe)" : S_ISCHR(m) ? "a character device"
       : S_ISBLK(m) ? "a block device" : S_ISSOCK(m) ? "a socket" : "not a regular file";
}

FILE *file_open_regular(const char *path, char *err, size_t errlen) {
  /* O_NONBLOCK: opening a FIFO without a writer would block; it is refused below anyway */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) { snprintf(err, errlen, "cannot open: %s", strerror(errno)); return NULL; }
  struct stat st;
  if (fstat(fd, &st) != 0) { snprintf(err, errlen, "cannot stat: %s", strerror(errno)); close(fd); return NULL; }
  if (!S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "is %s, not an image file", file_kind(st.st_mode));
    close(fd);
    return NULL;
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) { snprintf(err, errlen, "cannot open: %s", strerror(errno)); close(fd); return NULL; }
  FILE *f = fdopen(fd, "rb");
  if (!f) { snprintf(err, errlen, "cannot open: %s", strerror(errno)); close(fd); }
  return f;
}

int image_probe_file(const char *path, int *w, int *h, int *c, int *depth, char *err, size_t errlen) {
  FILE *f = file_open_regular(path, err, errlen);
  if (!f) return -1 - SKIP_UNREADABLE;
  uint8_t hd[33];
  size_t got = fread(hd, 1, sizeof hd, f);
  int rc = -1 - SKIP_CORRUPT;
  if (got == 0) { snprintf(err, errlen, "empty file"); rc = -1 - SKIP_EMPTY; goto done; }
  int kind = image_sniff(hd, got);
  if (kind == IMG_PNG) {
    if (got < 33 || memcmp(hd + 12, "IHDR", 4) != 0) { snprintf(err, errlen, "corrupt PNG: no IHDR"); goto done; }
    uint32_t pw = be32(hd + 16), ph = be32(hd + 20);
    int ch = 0, bd = hd[24];
    rc = png_ihdr_check(hd, &ch, err, errlen);
    if (rc != 0) goto done;
    rc = -1 - SKIP_CORRUPT;
    if (pw == 0 || ph == 0 || pw > MAX_SIDE || ph > MAX_SIDE) { snprintf(err, errlen, "bad PNG size %ux%u", pw, ph); goto done; }
    *w = (int)pw; *h = (int)ph; *c = ch; *depth = bd == 16 ? 16 : 8;
    rc = 0;
  } else if (kind == IMG_JPEG) {
    /* walk the markers to the first SOFn */
    if (fseek(f, 2, SEEK_SET) != 0) { snprintf(err, errlen, "cannot seek"); goto done; }
    for (int guard = 0; guard < 4096; guard++) {
      int m0 = fgetc(f);
      if (m0 == EOF) break;
      if (m0 != 0xff) { snprintf(err, errlen, "corrupt JPEG: bad marker"); goto done; }
      int m = fgetc(f);
      while (m == 0xff) m = fgetc(f);
      if (m == EOF) break;
      if (m == 0xd8 || (m >= 0xd0 && m <= 0xd7) || m == 0x01) continue;
      if (m == 0xd9 || m == 0xda) { snprintf(err, errlen, "corrupt JPEG: no frame header"); goto done; }
      uint8_t lb[2];
      if (fread(lb, 1, 2, f) != 2) break;
      unsigned len = be16(lb);
      if (len < 2) { snprintf(err, errlen, "corrupt JPEG: bad segment length"); goto done; }
      if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) {
        uint8_t sof[6];
        if (len < 8 || fread(sof, 1, 6, f) != 6) break;
        if (m == 0xc3 || m == 0xc7 || m == 0xcb || m == 0xcf) { snprintf(err, errlen, "unsupported lossless JPEG"); rc = -1 - SKIP_UNSUPPORTED; goto done; }
        if (sof[0] != 8) { snprintf(err, errlen, "unsupported %d-bit JPEG: memfit reads 8-bit JPEG only (convert it to 8 bits or to PNG)", sof[0]); rc = -1 - SKIP_UNSUPPORTED; goto done; }
        *h = (int)be16(sof + 1); *w = (int)be16(sof + 3);
        *c = sof[5] == 1 ? 1 : 3; *depth = 8;
        if (*w == 0 || *h == 0) { snprintf(err, errlen, "bad JPEG size %dx%d", *w, *h); goto done; }
        rc = 0;
        goto done;
      }
      if (fseek(f, (long)len - 2, SEEK_CUR) != 0) break;
    }
    snprintf(err, errlen, "corrupt JPEG: truncated header");
  } else {
    snprintf(err, errlen, "not a PNG or JPEG image");
    rc = -1 - SKIP_NOT_IMAGE;
  }
done:
  fclose(f);
  return rc;
}

long file_read_all(const char *path, uint8_t **buf, size_t *cap, char *err, size_t errlen) {
  FILE *f = file_open_regular(path, err, errlen);
  if (!f) return -1;
  if (fseek(f, 0, SEEK_END) != 0) { fclose(f); snprintf(err, errlen, "cannot seek"); return -1; }
  long n = ftell(f);
  if (n < 0 || fseek(f, 0, SEEK_SET) != 0) { fclose(f); snprintf(err, errlen, "cannot read size"); return -1; }
  if ((size_t)n + 1 > *cap) {
    uint8_t *p = realloc(*buf, (size_t)n + 1);
    if (!p) { fclose(f); snprintf(err, errlen, "out of memory (%ld bytes)", n); return -1; }
    *buf = p; *cap = (size_t)n + 1;
  }
  size_t got = n ? fread(*buf, 1, (size_t)n, f) : 0;
  int bad = ferror(f);
  fclose(f);
  if (bad || got != (size_t)n) { snprintf(err, errlen, "read error"); return -1; }
  return n;
}

/* ---------------- public single-image API ---------------- */
void mf_image_free(mf_image *im) {
  if (!im) return;
  free(im->data);
  memset(im, 0, sizeof *im);
}

/* raw (whole image) -> float HWC with c channels */
static int raw_to_image(const raw_image *r, int c, mf_image *out) {
  size_t np = (size_t)r->w * r->h;
  float *d = malloc(np * (size_t)c * sizeof *d);
  if (!d) return -1;
  float inv = r->depth == 16 ? 1.0f / 65535.0f : 1.0f / 255.0f;
  for (int y = 0; y < r->h; y++) {
    const uint8_t *row = r->data + (size_t)y * r->stride;
    for (int x = 0; x < r->w; x++) {
      float v[3];
      for (int k = 0; k < r->c; k++)
        v[k] = (r->depth == 16 ? (float)((const uint16_t *)row)[x * r->c + k] : (float)row[x * r->c + k]) * inv;
      float *o = d + ((size_t)y * r->w + x) * c;
      if (c == r->c) for (int k = 0; k < c; k++) o[k] = v[k];
      else if (c == 3) o[0] = o[1] = o[2] = v[0];
      else o[0] = 0.299f * v[0] + 0.587f * v[1] + 0.114f * v[2];
    }
  }
  out->w = r->w; out->h = r->h; out->c = c; out->data = d;
  return 0;
}

int mf_image_decode(const void *buf, size_t n, int c, mf_image *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (c != 1 && c != 3) { snprintf(err, errlen, "channels must be 1 or 3, not %d", c); return -1; }
  raw_image r = {0};
  if (image_decode_mem(buf, n, &r, NULL, NULL, 0, err, errlen) != 0) { raw_image_free(&r); return -1; }
  int rc = raw_to_image(&r, c, out);
  raw_image_free(&r);
  if (rc) snprintf(err, errlen, "out of memory");
  return rc;
}

int mf_image_load(const char *path, int c, mf_image *out, char *err, size_t errlen) {
  uint8_t *buf = NULL; size_t cap = 0;
  char why[300];
  memset(out, 0, sizeof *out);
  long n = file_read_all(path, &buf, &cap, why, sizeof why);
  int rc = -1;
  if (n >= 0) rc = mf_image_decode(buf, (size_t)n, c, out, why, sizeof why);
  free(buf);
  if (rc) snprintf(err, errlen, "%s: %s", path, why);
  return rc;
}

typedef struct png_wr { jmp_buf jb; char msg[200]; } png_wr;
static void png_wr_err(png_structp png, png_const_charp msg) {
  png_wr *w = png_get_error_ptr(png);
  snprintf(w->msg, sizeof w->msg, "%s", msg);
  longjmp(w->jb, 1);
}

/* Where mf_image_save_png writes. A regular file, or a path that does not exist yet, is written to a
 * temporary file beside it (PATH.tmp.PID.N, created exclusively) that is renamed over it once complete,
 * so a failed write leaves the old file as it was and removes only that temporary file. A symlink is
 * resolved first: the link stays a link and its target gets the new image. Anything else that exists
 * (a device such as /dev/stdout, a FIFO, a socket, a dangling symlink) cannot be replaced by a rename
 * and is not ours to delete: it is opened and written directly, and never removed, even when the
 * write fails; so is any path under /dev/ or /proc/ (/dev/stdout redirected to a file writes into the
 * file the shell opened, not a new one renamed over it). A directory is refused, and so is a regular
 * file we may not write (access W_OK), which a rename would otherwise replace. The new file keeps the
 * old one's permissions; other hard links to the old file keep the old content. */
static FILE *png_out_open(const char *path, char **tmp_out, char **resolved_out, char *err, size_t errlen) {
  static _Atomic unsigned serial;
  struct stat st;
  const char *dst = path;
  int direct = 0;
  *tmp_out = *resolved_out = NULL;
  if (!strncmp(path, "/dev/", 5) || !strncmp(path, "/proc/", 6)) direct = 1; /* /dev/stdout to a file: into that open file */
  else if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
    *resolved_out = realpath(path, NULL); /* NULL when dangling: written through the link below */
    if (*resolved_out) dst = *resolved_out;
    else direct = 1;
  }
  if (!direct && stat(dst, &st) == 0) {
    if (S_ISDIR(st.st_mode)) { snprintf(err, errlen, "%s: cannot write a PNG: it is a directory", path); return NULL; }
    direct = !S_ISREG(st.st_mode);
    if (!direct && access(dst, W_OK) != 0) { /* a read-only file stays so, as it would with a plain write */
      snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
      return NULL;
    }
  } else if (!direct) st.st_mode = 0; /* a new file */
  if (direct) {
    FILE *f = fopen(dst, "wb");
    if (!f) snprintf(err, errlen, "%s: cannot open for writing: %s", path, strerror(errno));
    return f;
  }
  size_t n = strlen(dst) + 64;
  char *tmp = malloc(n);
  if (!tmp) { snprintf(err, errlen, "%s: out of memory", path); return NULL; }
  int fd = -1;
  for (int tries = 0; fd < 0 && tries < 100; tries++) {
    snprintf(tmp, n, "%s.tmp.%ld.%u", dst, (long)getpid(), serial++);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    snprintf(err, errlen, "%s: cannot create the temporary file %s: %s", path, tmp, strerror(errno));
    free(tmp);
    return NULL;
  }
  if (st.st_mode) (void)fchmod(fd, st.st_mode & 07777); /* keep the permissions of the file it replaces */
  FILE *f = fdopen(fd, "wb");
  if (!f) {
    snprintf(err, errlen, "%s: cannot open %s: %s", path, tmp, strerror(errno));
    close(fd);
    unlink(tmp);
    free(tmp);
    return NULL;
  }
  *tmp_out = tmp;
  return f;
}

int mf_image_save_png(const char *path, const float *data, int w, int h, int c, char *err, size_t errlen) {
  if (w <= 0 || h <= 0 || (c != 1 && c != 3 && c != 4) || !data) {
    snprintf(err, errlen, "%s: bad image %dx%dx%d", path, w, h, c);
    return -1;
  }
  uint8_t *volatile row = malloc((size_t)w * c);
  if (!row) { snprintf(err, errlen, "%s: out of memory", path); return -1; }
  char *tmp, *resolved;
  FILE *volatile f = png_out_open(path, &tmp, &resolved, err, errlen);
  if (!f) { free(row); free(resolved); return -1; }
  png_wr wr; wr.msg[0] = 0;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &wr, png_wr_err, png_warn_fn);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!png || !info || setjmp(wr.jb)) {
    int e = errno;
    png_destroy_write_struct(&png, &info);
    fclose(f); free(row);
    if (tmp) unlink(tmp); /* only the file this call created */
    snprintf(err, errlen, "%s: PNG write failed: %s%s%s", path, wr.msg[0] ? wr.msg : "out of memory",
             wr.msg[0] && e ? ": " : "", wr.msg[0] && e ? strerror(e) : "");
    free(tmp); free(resolved);
    return -1;
  }
  png_init_io(png, f);
  int ct = c == 1 ? PNG_COLOR_TYPE_GRAY : c == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_RGBA;
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, ct, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  errno = 0;
  png_write_info(png, info);
  for (int y = 0; y < h; y++) {
    const float *src = data + (size_t)y * w * c;
    for (int i = 0; i < w * c; i++) {
      float v = src[i];
      v = v != v ? 0.0f : v < 0 ? 0.0f : v > 1 ? 1.0f : v; /* NaN -> 0 */
      row[i] = (uint8_t)(v * 255.0f + 0.5f);
    }
    png_write_row(png, row);
  }
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  free(row);
  int bad = fflush(f) != 0 || ferror(f);
  int e = errno;
  if (fclose(f) != 0 && !bad) { bad = 1; e = errno; }
  const char *dst = resolved ? resolved : path;
  if (!bad && tmp && rename(tmp, dst) != 0) {
    snprintf(err, errlen, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
    unlink(tmp);
    free(tmp); free(resolved);
    return -1;
  }
  if (bad) {
    if (tmp) unlink(tmp);
    snprintf(err, errlen, "%s: write error: %s", path, strerror(e));
  }
  free(tmp); free(resolved);
  return bad ? -1 : 0;
}
