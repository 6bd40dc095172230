/* test_backend_symbol.c — mf_backend_symbol finds what the session needs in the CUDA backend's library by name (NCCL's
 * communicator, for data parallel on a device) and nothing in a backend built into libmemfit. Needs no GPU. */
#include "backend/backend.h"
#include "check.h"
#include "dist/dist.h"

#ifndef MEMFIT_EXPECT_NCCL
#define MEMFIT_EXPECT_NCCL 0
#endif

int main(void) {
  CHECK(mf_backend_symbol(&mf_backend_cpu, "mf_comm_nccl_init") == NULL, "the CPU backend is in libmemfit");
  CHECK(mf_backend_symbol(NULL, "mf_backend_cuda") == NULL, "no backend");
  char err[512];
  const mf_backend *cuda = mf_backend_get("cuda", err, sizeof err);
  if (!cuda) {
    printf("SKIP (CUDA part): %s\n", err);
  } else {
    CHECK(mf_backend_symbol(cuda, "mf_backend_cuda") == (const void *)cuda, "the table it was loaded from");
    CHECK(mf_backend_symbol(cuda, "mf_no_such_symbol") == NULL, "an unknown name");
    void *init = mf_backend_symbol(cuda, "mf_comm_nccl_init");
    printf("CUDA backend library: NCCL's communicator %s (this build %s NCCL)\n", init ? "found" : "absent",
           MEMFIT_EXPECT_NCCL ? "has" : "has no");
    CHECK((init != NULL) == (MEMFIT_EXPECT_NCCL != 0), "NCCL found exactly when built in");
    CHECK(cuda->compute_stream != NULL && cuda->device_key != NULL, "the hooks the session uses");
  }
  return check_finish("test_backend_symbol");
}
