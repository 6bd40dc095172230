#!/usr/bin/python3
"""raster_parity.py — a dense, straightforward PyTorch rasteriser of 2D Gaussians (Image-GS's top-K tile
rasteriser, include/memfit.h), written for the test on small images, compared with memfit's mf_gauss_raster in
float64: the image and the gradients of sum(image * R) to pos, inv_scale, rot and feat. Called by
tests/test_grad_raster.c.

Usage: /usr/bin/python3 tests/raster_parity.py IN.safetensors [--rtol 1e-9]

IN holds pos [N,2], inv_scale [N,2], rot [N,1], feat [N,C], mask [N], R [C,H,W] and memfit's results
memfit.image, memfit.grad.{pos,inv_scale,rot,feat}; __metadata__ has width, height, top_k, max_radius,
min_radius. Each result is compared norm-wise: ||memfit - torch|| <= rtol ||torch||. Exit 0 when all match,
1 when one does not, 2 on a bad file or when torch is missing.
"""
import argparse
import json
import struct
import sys

import numpy as np

TILE = 16
EPS = 1e-4


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    types = {"F64": "<f8", "F32": "<f4", "I32": "<i4"}
    out = {}
    for name, info in header.items():
        s, e = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + hlen + s:8 + hlen + e], dtype=types[info["dtype"]]).reshape(info["shape"]).astype(np.float64)
    return out, meta


def render(torch, pos, isc, rot, feat, mask, W, H, K, rmax, rmin):
    """image [C,H,W]: every pixel against every Gaussian binned to its tile, sorted, the top K blended"""
    N = pos.shape[0]
    lo, hi = 3.0 / rmax, 3.0 / rmin
    a, b = isc[:, 0], isc[:, 1]
    a = torch.where(a.abs() < lo, torch.full_like(a, lo), torch.where(a.abs() > hi, torch.full_like(a, hi), a))
    b = torch.where(b.abs() < lo, torch.full_like(b, lo), torch.where(b.abs() > hi, torch.full_like(b, hi), b))
    c, s = torch.cos(rot[:, 0]), torch.sin(rot[:, 0])
    A = a * a * c * c + b * b * s * s
    B = (a * a - b * b) * c * s
    Cc = a * a * s * s + b * b * c * c
    cx, cy = pos[:, 0] * W, pos[:, 1] * H
    # the 3-sigma square in tiles (no gradient: which tiles a Gaussian is binned to)
    with torch.no_grad():
        r = torch.clamp(3.0 / torch.minimum(a.abs(), b.abs()), max=rmax)
        TX, TY = (W + TILE - 1) // TILE, (H + TILE - 1) // TILE
        x0, x1 = torch.floor((cx - r) / TILE), torch.floor((cx + r) / TILE)
        y0, y1 = torch.floor((cy - r) / TILE), torch.floor((cy + r) / TILE)
        drawn = (mask != 0) & (x1 >= 0) & (y1 >= 0) & (x0 < TX) & (y0 < TY)
        ty = (torch.arange(H, dtype=torch.float64) // TILE).view(1, H, 1)
        tx = (torch.arange(W, dtype=torch.float64) // TILE).view(1, 1, W)
        member = drawn.view(N, 1, 1) & (tx >= x0.view(N, 1, 1)) & (tx <= x1.view(N, 1, 1)) & \
            (ty >= y0.view(N, 1, 1)) & (ty <= y1.view(N, 1, 1))                          # [N,H,W]
    dx = torch.arange(W, dtype=torch.float64).view(1, 1, W) - cx.view(N, 1, 1)
    dy = torch.arange(H, dtype=torch.float64).view(1, H, 1) - cy.view(N, 1, 1)
    sigma = 0.5 * (A.view(N, 1, 1) * dx * dx + Cc.view(N, 1, 1) * dy * dy) + B.view(N, 1, 1) * dx * dy   # [N,H,W]
    key = torch.where(member, sigma.detach(), torch.full_like(sigma, float("inf")))
    order = torch.sort(key, dim=0, stable=True).indices[:K]                                 # smallest sigma, then id
    sel_member = torch.gather(member, 0, order)
    w = torch.exp(-torch.gather(sigma, 0, order)) * sel_member                              # [K,H,W]
    f = feat[order]                                                                           # [K,H,W,C]
    num = (w.unsqueeze(-1) * f).sum(0)                                                        # [H,W,C]
    den = w.sum(0) + EPS
    return (num / den.unsqueeze(-1)).permute(2, 0, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("--rtol", type=float, default=1e-9)
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("raster_parity: torch is missing", file=sys.stderr)
        return 2
    try:
        t, meta = read_safetensors(args.input)
        W, H, K = int(meta["width"]), int(meta["height"]), int(meta["top_k"])
        rmax, rmin = float(meta["max_radius"]), float(meta["min_radius"])
    except (OSError, ValueError, KeyError) as e:
        print("raster_parity: %s: %s" % (args.input, e), file=sys.stderr)
        return 2
    leaves = {k: torch.tensor(t[k], dtype=torch.float64, requires_grad=True) for k in ("pos", "inv_scale", "rot", "feat")}
    img = render(torch, leaves["pos"], leaves["inv_scale"], leaves["rot"], leaves["feat"], torch.tensor(t["mask"]), W, H, K, rmax, rmin)
    (img * torch.tensor(t["R"])).sum().backward()
    results = {"image": img.detach().numpy()}
    for k, v in leaves.items():
        results["grad." + k] = v.grad.numpy()
    bad = 0
    for k, ref in results.items():
        got = t["memfit." + k]
        err = np.linalg.norm(got - ref)
        scale = np.linalg.norm(ref)
        ok = err <= args.rtol * scale
        print("raster parity %-16s |memfit - torch| = %.3g, |torch| = %.3g %s" % (k, err, scale, "ok" if ok else "MISMATCH"))
        bad += not ok
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
