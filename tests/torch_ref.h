/* torch_ref.h — for the parity tests against a PyTorch reference (tests/steg_parity.py, moco_parity.py): whether Debian's
 * /usr/bin/python3 with torch and numpy is there; the test says SKIP (and why) when it is not. */
#ifndef MF_TORCH_REF_H
#define MF_TORCH_REF_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static inline int torch_available(void) {
  if (access("/usr/bin/python3", X_OK) != 0) {
    printf("SKIP parity: /usr/bin/python3 is missing (install python3 and python3-torch to run it)\n");
    return 0;
  }
  if (system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") != 0) {
    printf("SKIP parity: python3 cannot import torch and numpy (apt install python3-torch python3-numpy)\n");
    return 0;
  }
  return 1;
}

#endif
