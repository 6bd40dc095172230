/* test_receptive.c — mf_graph_receptive_field on small graphs with known answers (convs, residual and
 * dense connections, DWT/IDWT, pooling, upsampling, strided convs, a half-size input, the steganography
 * hide/reveal graphs), its refusals, and an empirical check: perturbing one input pixel at a time in
 * the reference evaluator, the farthest pixel that changes an aligned output block is at the radius. */
#include "check.h"
#include "ops/autodiff.h"
#include "backend/reference.h"
#include "graph/dtype.h"
#include "ops/receptive.h"
#include "models/steg.h"
#include "ops/ops.h"

#define S 32 /* image side of the small graphs */

static mf_tensor conv(mf_graph *g, mf_tensor x, int64_t cin, int64_t cout, int k, int stride, int pad) {
  mf_tensor w = mf_param(g, "w", 4, (int64_t[]){cout, cin, k, k}, MF_INIT_KAIMING, 0);
  mf_tensor b = mf_param(g, "b", 1, (int64_t[]){cout}, MF_INIT_ZERO, 0);
  return mf_conv2d(g, x, w, b, stride, pad, 1);
}

typedef mf_tensor (*build_fn)(mf_graph *g);

static mf_tensor img(mf_graph *g, int64_t c, int64_t side) { return mf_input(g, "x", 4, (int64_t[]){1, c, side, side}); }

static mf_tensor b_conv3(mf_graph *g) { return conv(g, img(g, 2, S), 2, 2, 3, 1, 1); }
static mf_tensor b_conv3_conv5(mf_graph *g) { return conv(g, conv(g, img(g, 2, S), 2, 3, 3, 1, 1), 3, 2, 5, 1, 2); }
static mf_tensor b_residual(mf_graph *g) {
  mf_tensor x = img(g, 2, S);
  return mf_add(g, x, conv(g, mf_leaky_relu(g, conv(g, x, 2, 2, 3, 1, 1), 0.1), 2, 2, 3, 1, 1));
}
static mf_tensor b_dense(mf_graph *g) {
  mf_tensor x = img(g, 2, S);
  mf_tensor f[2] = {x, mf_leaky_relu(g, conv(g, x, 2, 3, 3, 1, 1), 0.1)};
  return conv(g, mf_concat(g, 2, f, 1), 5, 2, 3, 1, 1);
}
static mf_tensor b_wavelet(mf_graph *g) { /* two 3x3 convs at half resolution: 2 half pixels = 4 pixels */
  mf_tensor y = mf_dwt_haar(g, img(g, 1, S));
  return mf_idwt_haar(g, conv(g, conv(g, y, 4, 4, 3, 1, 1), 4, 4, 3, 1, 1));
}
static mf_tensor b_pool_up(mf_graph *g) { /* U-Net step: x + up(conv(pool(x))) */
  mf_tensor x = img(g, 2, S);
  return mf_add(g, x, mf_upsample_nearest(g, conv(g, mf_maxpool2d(g, x, 2, 2, 0), 2, 2, 3, 1, 1), 2));
}
static mf_tensor b_stride2(mf_graph *g) { return conv(g, img(g, 2, S), 2, 2, 3, 2, 1); }
static mf_tensor b_half_input(mf_graph *g) { /* like the reveal graph's z: an input at the wavelet resolution */
  mf_tensor y = mf_dwt_haar(g, img(g, 1, S));
  mf_tensor z = mf_input(g, "z", 4, (int64_t[]){1, 4, S / 2, S / 2});
  return mf_idwt_haar(g, conv(g, mf_add(g, y, z), 4, 4, 3, 1, 1));
}
static mf_tensor b_up_conv_pool(mf_graph *g) { /* conv at double resolution: a bound, not exact (true radius 1) */
  mf_tensor u = mf_upsample_nearest(g, img(g, 1, S), 2);
  return mf_avgpool2d(g, conv(g, u, 1, 1, 3, 1, 1), 2, 2, 0);
}
static mf_steg_config steg_cfg(int blocks, int growth) {
  mf_steg_config c = mf_steg_config_default();
  c.blocks = blocks;
  c.growth = growth;
  return c;
}
static mf_steg_model steg_m; /* the inverse builders point into it: keep it in place */
static mf_tensor b_steg_hide1(mf_graph *g) {
  mf_steg_config c = steg_cfg(1, 3);
  return mf_steg_build_hide(g, &c, 2 * S, 2 * S, &steg_m) < 0 ? -1 : steg_m.stego;
}
static mf_tensor b_steg_reveal1(mf_graph *g) {
  mf_steg_config c = steg_cfg(1, 3);
  return mf_steg_build_reveal(g, &c, 2 * S, 2 * S, &steg_m) < 0 ? -1 : steg_m.revealed;
}
static mf_tensor b_steg_hide2(mf_graph *g) {
  mf_steg_config c = steg_cfg(2, 3);
  return mf_steg_build_hide(g, &c, 2 * S, 2 * S, &steg_m) < 0 ? -1 : steg_m.stego;
}
static mf_tensor b_steg_reveal2(mf_graph *g) {
  mf_steg_config c = steg_cfg(2, 3);
  return mf_steg_build_reveal(g, &c, 2 * S, 2 * S, &steg_m) < 0 ? -1 : steg_m.revealed;
}
static mf_tensor b_steg_hide_small(mf_graph *g) {
  mf_steg_config c = steg_cfg(4, 16);
  return mf_steg_build_hide(g, &c, 16, 16, &steg_m) < 0 ? -1 : steg_m.stego;
}
static mf_tensor b_steg_reveal_small(mf_graph *g) {
  mf_steg_config c = steg_cfg(4, 16);
  return mf_steg_build_reveal(g, &c, 16, 16, &steg_m) < 0 ? -1 : steg_m.revealed;
}

/* refused */
static mf_tensor r_global(mf_graph *g) { return mf_global_avgpool(g, conv(g, img(g, 2, S), 2, 2, 3, 1, 1)); }
static mf_tensor r_loss(mf_graph *g) { mf_tensor x = img(g, 1, S); return mf_mse_loss(g, conv(g, x, 1, 1, 3, 1, 1), x); }
static mf_tensor r_concat_w(mf_graph *g) { mf_tensor x = img(g, 1, S), p[2] = {x, x}; return mf_concat(g, 2, p, 3); }
static mf_tensor r_slice_h(mf_graph *g) { return mf_slice(g, img(g, 1, S), 2, 2, S); }
static mf_tensor r_positional(mf_graph *g) { /* a learned [1,1,S,S] map added to the image: depends on the position */
  return mf_add(g, img(g, 1, S), mf_param(g, "pos", 4, (int64_t[]){1, 1, S, S}, MF_INIT_KAIMING, 0));
}
static mf_tensor r_groupnorm(mf_graph *g) {
  mf_tensor gm = mf_param(g, "gamma", 1, (int64_t[]){2}, MF_INIT_ONE, 0), bt = mf_param(g, "beta", 1, (int64_t[]){2}, MF_INIT_ZERO, 0);
  return mf_groupnorm(g, img(g, 2, S), gm, bt, 1, 1e-5);
}
static mf_tensor r_reshape(mf_graph *g) { return mf_reshape(g, img(g, 1, S), 4, (int64_t[]){1, 1, S / 2, 2 * S}); }
static mf_tensor r_no_image(mf_graph *g) { img(g, 1, S); return mf_mul_scalar(g, mf_param(g, "p", 4, (int64_t[]){1, 1, 4, 4}, MF_INIT_ONE, 0), 2); }

/* Perturbs one pixel (all channels, all inputs of the largest size) at a time along the row through
 * an aligned output block near the middle (and, to save time, only the pixels `expect` and expect + 1
 * beyond the block along its column); returns the farthest distance beyond the block of a pixel that
 * changed the block (f64 reference evaluation, random weights). */
static int64_t measured_radius(build_fn b, int64_t align, int64_t expect) {
  mf_graph *g = mf_graph_init(MF_F64);
  int out = b(g);
  int64_t far = -1, W = 0;
  if (out < 0) { CHECK(0, "build: %s", mf_graph_error(g)); mf_graph_free(g); return -1; }
  void **leaf = calloc((size_t)g->n, sizeof *leaf);
  uint64_t rs = 12345;
  for (int id = 0; id < g->n; id++) {
    const mf_node *n = &g->nodes[id];
    if (n->op != MF_OP_INPUT && n->op != MF_OP_PARAM && n->op != MF_OP_BUFFER) continue;
    leaf[id] = malloc(mf_node_bytes(n));
    for (int64_t i = 0; i < mf_node_numel(n); i++) {
      rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
      ((double *)leaf[id])[i] = (double)(rs >> 11) / 9007199254740992.0 - 0.5;
    }
    if (n->op == MF_OP_INPUT && n->ndim == 4 && n->ne[3] > W) W = n->ne[3];
  }
  const mf_node *on = &g->nodes[out];
  int64_t OC = on->ne[1], OH = on->ne[2], OW = on->ne[3];
  int64_t by = OH / 2 / align * align, bx = OW / 2 / align * align; /* output block [by,by+align) x [bx,bx+align) */
  size_t on_n = (size_t)mf_node_numel(on);
  double *base = malloc(on_n * sizeof *base);
  char err[256];
  mf_ref r;
  if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) < 0) { CHECK(0, "eval: %s", err); goto out; }
  memcpy(base, r.data[out], on_n * sizeof *base);
  mf_ref_free(&r);
  for (int axis = 0; axis < 2; axis++)
    for (int64_t p = 0; p < W; p++) { /* square images: H = W */
      int64_t py = axis ? by : p, px = axis ? p : bx; /* the block is in output pixels = input pixels here */
      int64_t lo = axis ? bx : by, d = p < lo ? lo - p : p - (lo + align - 1);
      if (!axis && d != expect && d != expect + 1) continue;
      double keep[64];
      int nk = 0;
      for (int id = 0; id < g->n; id++) {
        const mf_node *n = &g->nodes[id];
        if (n->op != MF_OP_INPUT || n->ndim != 4 || n->ne[3] != W) continue;
        for (int64_t c = 0; c < n->ne[1] && nk < 64; c++) {
          double *v = (double *)leaf[id] + (c * W + py) * W + px;
          keep[nk++] = *v;
          *v += 1.0;
        }
      }
      if (mf_ref_eval(g, leaf, 1.0, &r, err, sizeof err) < 0) { CHECK(0, "eval: %s", err); goto out; }
      int changed = 0;
      for (int64_t c = 0; c < OC && !changed; c++)
        for (int64_t y = by; y < by + align && !changed; y++)
          for (int64_t xx = bx; xx < bx + align && !changed; xx++) {
            size_t i = (size_t)((c * OH + y) * OW + xx);
            changed = ((double *)r.data[out])[i] != base[i];
          }
      mf_ref_free(&r);
      nk = 0; /* restore exactly: x + 1 - 1 need not be x */
      for (int id = 0; id < g->n; id++) {
        const mf_node *n = &g->nodes[id];
        if (n->op != MF_OP_INPUT || n->ndim != 4 || n->ne[3] != W) continue;
        for (int64_t c = 0; c < n->ne[1] && nk < 64; c++) ((double *)leaf[id])[(c * W + py) * W + px] = keep[nk++];
      }
      if (changed && d > far) far = d;
    }
out:
  free(base);
  for (int id = 0; id < g->n; id++) free(leaf[id]);
  free(leaf);
  mf_graph_free(g);
  return far;
}

static void known(const char *name, build_fn b, int64_t radius, int64_t align, int exact, int empirical) {
  mf_graph *g = mf_graph_init(MF_F32);
  int out = b(g);
  int64_t r[2] = {-1, -1}, a[2] = {-1, -1};
  char err[512] = "";
  if (out < 0) CHECK(0, "%s: build: %s", name, mf_graph_error(g));
  else if (mf_graph_receptive_field(g, out, r, a, err, sizeof err) < 0) CHECK(0, "%s: %s", name, err);
  else {
    CHECK(r[0] == radius && r[1] == radius, "%s: radius %lld x %lld, expected %lld", name, (long long)r[0], (long long)r[1],
          (long long)radius);
    CHECK(a[0] == align && a[1] == align, "%s: align %lld x %lld, expected %lld", name, (long long)a[0], (long long)a[1],
          (long long)align);
  }
  mf_graph_free(g);
  if (!empirical) return;
  int64_t m = measured_radius(b, align, radius);
  if (exact) CHECK(m == radius, "%s: perturbing inputs, the farthest pixel that changes the output is %lld away; radius says %lld", name,
                   (long long)m, (long long)radius);
  else CHECK(m >= 0 && m <= radius, "%s: measured %lld exceeds the bound %lld", name, (long long)m, (long long)radius);
  printf("%-34s radius %3lld align %lld  (measured %lld)\n", name, (long long)radius, (long long)align, (long long)m);
}

static void refused(const char *name, build_fn b, const char *want) {
  mf_graph *g = mf_graph_init(MF_F32);
  int out = b(g);
  int64_t r[2], a[2];
  char err[512] = "";
  if (out < 0) CHECK(0, "%s: build: %s", name, mf_graph_error(g));
  else {
    int rc = mf_graph_receptive_field(g, out, r, a, err, sizeof err);
    CHECK(rc < 0, "%s: accepted (radius %lld)", name, (long long)r[0]);
    CHECK(rc >= 0 || strstr(err, want), "%s: message '%s' lacks '%s'", name, err, want);
    if (rc < 0) printf("%-34s refused: %s\n", name, err);
  }
  mf_graph_free(g);
}

int main(void) {
  known("conv 3x3", b_conv3, 1, 1, 1, 1);
  known("conv 3x3 then 5x5", b_conv3_conv5, 3, 1, 1, 1);
  known("residual x + conv(lrelu(conv x))", b_residual, 2, 1, 1, 1);
  known("dense conv(cat(x, conv x))", b_dense, 2, 1, 1, 1);
  known("DWT, 2 convs, IDWT", b_wavelet, 4, 2, 1, 1);
  known("x + up(conv(maxpool x))", b_pool_up, 2, 2, 1, 1);
  known("conv 3x3 stride 2", b_stride2, 1, 2, 1, 0); /* output on a coarser grid: the scan assumes output = input pixels */
  known("half-size input z", b_half_input, 2, 2, 1, 1);
  known("upsample, conv, avgpool (bound)", b_up_conv_pool, 2, 1, 0, 1);
  known("steg hide, 1 block", b_steg_hide1, 10, 2, 1, 1);     /* 5 convs of a subnet at half size: 5 x 2 */
  known("steg reveal, 1 block", b_steg_reveal1, 10, 2, 1, 1);
  known("steg hide, 2 blocks", b_steg_hide2, 30, 2, 1, 1);     /* y1 of block 2 = x1 + phi(y2 of block 1) */
  known("steg reveal, 2 blocks", b_steg_reveal2, 30, 2, 1, 1);
  known("steg hide, small preset", b_steg_hide_small, 70, 2, 1, 0);   /* 4 blocks: y1 sees 35 half pixels */
  known("steg reveal, small preset", b_steg_reveal_small, 70, 2, 1, 0);
  refused("global average pooling", r_global, "global pooling");
  refused("a loss", r_loss, "op loss");
  refused("concat along W", r_concat_w, "moves pixels");
  refused("slice along H", r_slice_h, "moves pixels");
  refused("positional constant", r_positional, "absolute position");
  refused("group norm", r_groupnorm, "group norm");
  refused("reshape", r_reshape, "op reshape");
  refused("no image input", r_no_image, "does not depend");
  {
    mf_graph *g = mf_graph_init(MF_F32);
    int64_t r[2], a[2];
    char err[256] = "";
    CHECK(mf_graph_receptive_field(g, 5, r, a, err, sizeof err) < 0 && strstr(err, "not a tensor"), "bad output id: '%s'", err);
    mf_graph_free(g);
  }
  return check_finish("test_receptive");
}
