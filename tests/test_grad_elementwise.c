/* test_grad_elementwise.c — finite-difference gradient checks of the binary (with broadcasting),
 * scalar and unary ops, each with fresh random inputs. */
#include "gradcheck.h"

typedef struct { int kind; double p0, p1; } op_ctx;

static mf_tensor build_binary(mf_graph *g, const mf_tensor *in, void *c) {
  switch (((op_ctx *)c)->kind) {
  case 0: return mf_add(g, in[0], in[1]);
  case 1: return mf_sub(g, in[0], in[1]);
  case 2: return mf_mul(g, in[0], in[1]);
  default: return mf_div(g, in[0], in[1]);
  }
}
static mf_tensor build_unary(mf_graph *g, const mf_tensor *in, void *c) {
  op_ctx *o = c;
  switch (o->kind) {
  case 0: return mf_exp(g, in[0]);
  case 1: return mf_log(g, in[0]);
  case 2: return mf_sigmoid(g, in[0]);
  case 3: return mf_tanh(g, in[0]);
  case 4: return mf_relu(g, in[0]);
  case 5: return mf_leaky_relu(g, in[0], o->p0);
  case 6: return mf_silu(g, in[0]);
  case 7: return mf_clamp(g, in[0], o->p0, o->p1);
  case 8: return mf_add_scalar(g, in[0], o->p0);
  default: return mf_mul_scalar(g, in[0], o->p0);
  }
}

int main(void) {
  const char *bn[] = {"add", "sub", "mul", "div"};
  for (int k = 0; k < 4; k++) {
    op_ctx c = {k, 0, 0};
    gc_input same[2] = {{4, {2, 3, 4, 5}, GC_NORMAL}, {4, {2, 3, 4, 5}, k == 3 ? GC_POSITIVE : GC_NORMAL}};
    gc_input chan[2] = {{4, {2, 3, 4, 5}, GC_NORMAL}, {4, {1, 3, 1, 1}, k == 3 ? GC_POSITIVE : GC_NORMAL}};
    gc_input tail[2] = {{3, {2, 3, 4}, GC_NORMAL}, {1, {4}, k == 3 ? GC_POSITIVE : GC_NORMAL}};
    char nm[64];
    snprintf(nm, sizeof nm, "%s same shape", bn[k]);
    gc_check(nm, 2, same, build_binary, &c, 0, 1e-6);
    snprintf(nm, sizeof nm, "%s per-channel broadcast", bn[k]);
    gc_check(nm, 2, chan, build_binary, &c, 0, 1e-6);
    snprintf(nm, sizeof nm, "%s trailing broadcast", bn[k]);
    gc_check(nm, 2, tail, build_binary, &c, 0, 1e-6);
  }
  const char *un[] = {"exp", "log", "sigmoid", "tanh", "relu", "leaky_relu", "silu", "clamp", "add_scalar", "mul_scalar"};
  for (int k = 0; k < 10; k++) {
    op_ctx c = {k, k == 5 ? 0.01 : k == 7 ? -0.5 : 1.7, 0.6};
    gc_input in = {3, {3, 4, 5}, k == 1 ? GC_POSITIVE : (k == 4 || k == 5 || k == 7) ? GC_AWAY_FROM_ZERO : GC_NORMAL};
    gc_check(un[k], 1, &in, build_unary, &c, 0, 1e-6);
  }
  /* a bad broadcast names the op and both shapes */
  mf_graph *g = mf_graph_init(MF_F32);
  mf_tensor a = mf_input(g, "a", 2, (int64_t[]){2, 3}), b = mf_input(g, "b", 2, (int64_t[]){3, 2});
  mf_add(g, a, b);
  const char *e = mf_graph_error(g);
  CHECK(e && strstr(e, "add") && strstr(e, "[2,3]") && strstr(e, "[3,2]"), "error was: %s", e ? e : "(none)");
  mf_graph_free(g);
  return check_finish("test_grad_elementwise");
}
