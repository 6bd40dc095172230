/* onnx.h — internals of the ONNX importer: the opened model (protobuf-c's ModelProto, generated at build
 * time from Debian's onnx.proto), reading initializer data, and the table of ops the importer maps. */
#ifndef MF_ONNX_H
#define MF_ONNX_H

#include "memfit.h"
#include <stdbool.h>

/* 1 when data input i (as mf_onnx_input_name counts them) holds integers (int32/int64: class labels, token ids),
 * 0 for any other element type, -1 when i is out of range. */
int onnx_input_is_integer(const mf_onnx *m, int i);

#ifdef MEMFIT_HAVE_ONNX
#include <onnx.pb-c.h> /* generated at build time from Debian's onnx.proto (CMakeLists.txt) */

/* ONNX element types (TensorProto.DataType) the importer reads */
enum { ONNX_FLOAT = 1, ONNX_UINT8 = 2, ONNX_INT8 = 3, ONNX_UINT16 = 4, ONNX_INT16 = 5, ONNX_INT32 = 6, ONNX_INT64 = 7,
       ONNX_STRING = 8, ONNX_BOOL = 9, ONNX_FLOAT16 = 10, ONNX_DOUBLE = 11, ONNX_UINT32 = 12, ONNX_UINT64 = 13,
       ONNX_BFLOAT16 = 16 };

#define ONNX_MAX_RANK 8

struct mf_onnx {
  Onnx__ModelProto *model;
  Onnx__GraphProto *graph;
  char path[1024];              /* the file ("<memory>" for mf_onnx_open_memory) */
  char dir[1024];               /* where external data is looked for ("" : none allowed) */
  int64_t opset;
  int n_in;                     /* graph inputs that are not initializers */
  int in_idx[MF_ONNX_MAX_IO];   /* their index in graph->input */
};

/* Elements of a tensor proto from its dims (-1 on a negative dim or overflow past 2^40). */
int64_t onnx_tensor_numel(const Onnx__TensorProto *t);
/* Size of one element of an ONNX type (0: a type the importer does not read). */
size_t onnx_elem_size(int et);
const char *onnx_elem_name(int et);
/* Reads a tensor's n values as doubles (any numeric type, raw, typed or external data); -1 with err. */
int onnx_tensor_read(const mf_onnx *m, const Onnx__TensorProto *t, double *out, int64_t n, char *err, size_t errlen);
/* Checks that a tensor's data holds its dims' elements (inline or external); -1 with err naming it. */
int onnx_tensor_check(const mf_onnx *m, const Onnx__TensorProto *t, const char *what, char *err, size_t errlen);
/* The attribute `name` of a node, or NULL. */
const Onnx__AttributeProto *onnx_attr(const Onnx__NodeProto *n, const char *name);
/* Why the importer cannot map an op type at all (NULL: it has a mapping). */
const char *onnx_op_unsupported(const Onnx__NodeProto *n);
#endif

#endif
