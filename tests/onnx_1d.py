#!/usr/bin/python3
"""onnx_1d.py — 1-D convolutions and pools, nearest resizes of any geometry and bicubic ones, exported by PyTorch and run by memfit
(memfit plan MODEL.onnx --run 1 --feed --dump): the forward output, one training step (loss, every gradient, the
updated weights) against PyTorch in float64, the 1-D weights kept as [OC,IC/g,K] parameters under their ONNX names,
and measured == planned (memfit's --run exits 1 otherwise). Run by tests/cli_onnx_1d.sh.

Usage: /usr/bin/python3 tests/onnx_1d.py MEMFIT TMPDIR [--rtol 1e-4]

The forward output is compared norm-wise through an MSE loss against PyTorch's output as the target: memfit's
loss is mean((y_memfit - y_torch)^2), so ||y_memfit - y_torch|| / ||y_torch|| = sqrt(loss / mean(y_torch^2)). The
bound 1e-4 is the one tests/onnx_parity.py derives: every value here is a sum of at most a few hundred products
(gamma_n ~ n 2^-24 of the sum of their magnitudes, n <= 256 gives 1.5e-5), with room for cancellation.
"""
import argparse
import os
import subprocess
import sys
import warnings

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import onnx_parity  # noqa: E402  (export, st_write, st_read, run_case)

warnings.filterwarnings("ignore")


class Net1d(torch.nn.Module):
    """Conv1d (stride, padding), MaxPool1d (padding), a grouped dilated Conv1d, AvgPool1d, ConvTranspose1d (stride,
    output_padding), AdaptiveAvgPool1d(1) (GlobalAveragePool), Linear"""

    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv1d(3, 8, 5, stride=2, padding=2)
        self.pool = torch.nn.MaxPool1d(3, stride=2, padding=1)
        self.c2 = torch.nn.Conv1d(8, 8, 3, padding=2, dilation=2, groups=2)
        self.avg = torch.nn.AvgPool1d(2)
        self.up = torch.nn.ConvTranspose1d(8, 6, 4, stride=2, padding=1, output_padding=1)
        self.c3 = torch.nn.Conv1d(6, 4, 1, bias=False)
        self.fc = torch.nn.Linear(4, 5)

    def forward(self, x):  # x [N,3,32]
        h = self.pool(F.relu(self.c1(x)))       # [N,8,16] -> [N,8,8]
        h = self.avg(F.relu(self.c2(h)))        # [N,8,8] -> [N,8,4]
        h = torch.tanh(self.c3(self.up(h)))     # [N,6,9] -> [N,4,9]
        return self.fc(F.adaptive_avg_pool1d(h, 1).flatten(1))  # [N,4,1] -> [N,5]


class Nearest(torch.nn.Module):
    """F.interpolate(mode='nearest') with size= (up on H, down on W) and with a non-integer scale_factor"""

    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(2, 3, 3, padding=1)
        self.c2 = torch.nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):  # x [N,2,6,10]
        h = F.interpolate(torch.tanh(self.c1(x)), size=(9, 7), mode="nearest")   # [N,3,9,7]
        return F.interpolate(self.c2(h), scale_factor=1.5, mode="nearest")       # [N,2,13,10]


class Bicubic(torch.nn.Module):
    """F.interpolate(mode='bicubic') (a = -0.75): a non-integer scale_factor without align_corners, a size= with it (with
    align_corners and a scale_factor whose output size is not an integer, PyTorch divides by out-1 and ONNX's reference
    by in*scale-1, which memfit follows: docs/onnx.md)"""

    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(2, 3, 3, padding=1)
        self.c2 = torch.nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):  # x [N,2,6,10]
        h = F.interpolate(torch.tanh(self.c1(x)), scale_factor=1.5, mode="bicubic", align_corners=False)  # [N,3,9,15]
        return F.interpolate(self.c2(h), size=(13, 10), mode="bicubic", align_corners=True)              # [N,2,13,10]


def forward_check(memfit, tmp, name, make, x, rtol):
    """memfit's forward output against PyTorch's (float64) through an MSE loss with PyTorch's output as the target"""
    torch.manual_seed(1)
    model = make()
    path = os.path.join(tmp, name + ".onnx")
    onnx_parity.export(model, torch.tensor(x), path)
    with torch.no_grad():
        y = model.double()(torch.tensor(x, dtype=torch.float64)).numpy()
    fpath, dpath = os.path.join(tmp, name + "-fwd.safetensors"), os.path.join(tmp, name + "-fwd-dump.safetensors")
    onnx_parity.st_write(fpath, {"x": x, "target": y.astype(np.float32)})
    cmd = [memfit, "plan", path, "--input", "x=" + "x".join(str(d) for d in x.shape), "--loss", "mse", "--run", "1", "--feed",
           fpath, "--dump", dpath, "--threads", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or "measured == planned: yes" not in r.stdout:
        print("onnx_1d: %s: memfit failed (%d):\n%s%s" % (name, r.returncode, r.stdout[-1500:], r.stderr[-1500:]))
        return None
    mf = onnx_parity.st_read(dpath)
    err = float(np.sqrt(max(float(mf["loss"][0]), 0.0) / float(np.mean(y * y))))
    # the 1-D weights are parameters of their ONNX shape [OC,IC/g,K] (and so are their gradients)
    shapes_ok = True
    for k, p in model.named_parameters():
        for pre in ("init.", "grad."):
            if pre + k not in mf or tuple(mf[pre + k].shape) != tuple(p.shape):
                print("onnx_1d: %s: memfit's %s%s has shape %s, torch's %s" % (name, pre, k, mf[pre + k].shape if pre + k in mf else
                                                                             None, tuple(p.shape)))
                shapes_ok = False
    print("onnx_1d: %-8s forward output [%s] against PyTorch: rel %.2e (rtol %.0e); %d parameters of torch's shapes%s" %
          (name, ",".join(str(d) for d in y.shape), err, rtol, sum(1 for _ in model.parameters()), "" if shapes_ok else "  FAIL"))
    return err <= rtol and shapes_ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("memfit")
    ap.add_argument("tmp")
    ap.add_argument("--rtol", type=float, default=1e-4)
    args = ap.parse_args()
    rng = np.random.default_rng(11)
    x1 = rng.standard_normal((4, 3, 32)).astype(np.float32)      # [N,C,L]
    t1 = rng.standard_normal((4, 5)).astype(np.float32)          # [N,5]
    x2 = rng.standard_normal((2, 2, 6, 10)).astype(np.float32)   # [N,C,H,W]
    t2 = rng.standard_normal((2, 2, 13, 10)).astype(np.float32)  # [N,2,13,10]
    ok, failed = 0, 0
    for name, make, x, t in (("conv1d", Net1d, x1, t1), ("nearest", Nearest, x2, t2), ("bicubic", Bicubic, x2, t2)):
        r = forward_check(args.memfit, args.tmp, name, make, x, args.rtol)
        if r is None:
            return 2
        ok += r
        failed += not r
        for optim, lr in (("sgd", 0.1), ("adam", 1e-3)):
            r = onnx_parity.run_case(args.memfit, args.tmp, name, make, x, t, "mse", optim, lr, args.rtol)
            if r is None:
                return 2
            ok += r
            failed += not r
    print("onnx_1d: %d of %d checks within rtol %.0e" % (ok, ok + failed, args.rtol))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
