#!/usr/bin/python3
"""steg_parity.py — compares memfit's steganography-model loss and gradients with the PyTorch twin
(bench/steg_torch.py) in float64; called by tests/test_steg_model.c.

Usage: /usr/bin/python3 tests/steg_parity.py IN.safetensors [--out OUT.safetensors] [--rtol 1e-4]

IN is written by the C test: parameters under their memfit names, cover, secret, z, config in
__metadata__, and memfit's results as `memfit.loss` (and optionally `memfit.loss_guide`, `.loss_rec`,
`.loss_low`) and `memfit.grad.<param>`. Each is compared norm-wise: ||memfit - torch|| <= rtol ||torch||.
Exit 0 when all match, 1 when one does not, 2 on a bad file.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import steg_torch  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("--out", help="also write torch's results here (safetensors)")
    ap.add_argument("--rtol", type=float, default=1e-4)
    args = ap.parse_args()
    try:
        tensors, meta = steg_torch.safetensors_read(args.input)
        ref = steg_torch.parity_run(tensors, meta)
    except (OSError, ValueError, KeyError) as e:
        print("steg_parity: %s: %s" % (args.input, e))
        return 2
    if args.out:
        steg_torch.safetensors_write(args.out, ref)
    rows, bad = [], 0
    for key in sorted(k for k in tensors if k.startswith("memfit.")):
        name = key[len("memfit."):]
        if name not in ref:
            print("steg_parity: %s has no torch counterpart '%s'" % (key, name))
            return 2
        a = np.asarray(tensors[key], dtype=np.float64).reshape(-1)
        b = np.asarray(ref[name], dtype=np.float64).reshape(-1)
        if a.shape != b.shape:
            print("steg_parity: %s: %d values, torch has %d" % (name, a.size, b.size))
            return 2
        nb = float(np.linalg.norm(b))
        rel = float(np.linalg.norm(a - b)) / nb if nb > 0 else float(np.linalg.norm(a))
        ok = rel <= args.rtol
        bad += not ok
        rows.append((rel, name, ok, nb))
    ngrad = sum(1 for r in rows if r[1].startswith("grad."))
    want = sum(1 for k in ref if k.startswith("grad."))
    if ngrad != want:
        print("steg_parity: memfit gave %d gradients, the model has %d parameters" % (ngrad, want))
        return 2
    rows.sort(reverse=True)
    for rel, name, ok, nb in rows[:8]:
        print("  %-4s %-28s rel %.3e  (|torch| %.4g)" % ("ok" if ok else "FAIL", name, rel, nb))
    print("steg_parity: loss memfit %.9g torch %.9g; %d tensors compared, worst rel %.3e, %d over %.0e" %
          (float(np.asarray(tensors["memfit.loss"]).reshape(-1)[0]), float(ref["loss"][0]), len(rows),
           rows[0][0] if rows else 0.0, bad, args.rtol))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
