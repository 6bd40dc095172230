#!/usr/bin/python3
"""steg_torch.py — the steganography network of docs/design.md 3.1 (src/models/steg.c) in PyTorch, op for op:
a training-step benchmark against memfit (mode `bench`), a float64 reference for the parity test (mode
`parity`) and a self-check of the twin itself (mode `selftest`).

Parameter names: torch `blk.{i}.{phi|rho|eta}.conv{k}.{weight|bias}` is memfit `blk{i}.{phi|rho|eta}.conv{k}.{w|b}`
(block i 0-based, conv k 1..5); see memfit_name(). Layout is the same in both ([out,in,3,3] and [out]).

Usage:
  /usr/bin/python3 bench/steg_torch.py bench --blocks 6 --growth 80 --size 64 --batch 1 --steps 10 --threads 2
  /usr/bin/python3 bench/steg_torch.py parity IN.safetensors OUT.safetensors
  /usr/bin/python3 bench/steg_torch.py selftest

Parity protocol: IN holds every parameter under its memfit name plus `cover`, `secret` ([B,3,H,W]) and
optionally `z` ([B,12,H/2,W/2], zeros when absent); its `__metadata__` may give blocks, growth, clamp,
slope, w_guide, w_rec, w_low (otherwise shapes and HiNet defaults decide). OUT gets, in float64,
`loss`, `loss_guide`, `loss_rec`, `loss_low` (shape [1]), `stego`, `revealed` and `grad.<name>` for every
parameter.
"""
import argparse
import json
import math
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn

WAVE_CH = 12  # channels of one branch after the Haar DWT of an RGB image


# ---- Haar wavelet, exactly as docs/design.md 3.1 / mf_dwt_haar ----
# a=x[2i,2j], b=x[2i+1,2j], c=x[2i,2j+1], d=x[2i+1,2j+1] (row, column);
# LL=(a+b+c+d)/2, HL=(-a-b+c+d)/2, LH=(-a+b-c+d)/2, HH=(a-b-c+d)/2; channels [LL(C),HL(C),LH(C),HH(C)].
def dwt(x):  # [N,C,H,W] -> [N,4C,H/2,W/2]
    a = x[:, :, 0::2, 0::2]
    b = x[:, :, 1::2, 0::2]
    c = x[:, :, 0::2, 1::2]
    d = x[:, :, 1::2, 1::2]
    return torch.cat([(a + b + c + d) / 2, (-a - b + c + d) / 2, (-a + b - c + d) / 2, (a - b - c + d) / 2], 1)


def idwt(y):  # [N,4C,h,w] -> [N,C,2h,2w]
    n, c4, h, w = y.shape
    c = c4 // 4
    ll, hl, lh, hh = y[:, :c], y[:, c:2 * c], y[:, 2 * c:3 * c], y[:, 3 * c:]
    x = y.new_zeros((n, c, 2 * h, 2 * w))
    x[:, :, 0::2, 0::2] = (ll - hl - lh + hh) / 2  # a
    x[:, :, 1::2, 0::2] = (ll - hl + lh - hh) / 2  # b
    x[:, :, 0::2, 1::2] = (ll + hl - lh - hh) / 2  # c
    x[:, :, 1::2, 1::2] = (ll + hl + lh + hh) / 2  # d
    return x


class DenseBlock(nn.Module):
    """c_k = lrelu(conv_k(cat(x, c_1..c_{k-1}))), k=1..4; out = conv5(cat(x, c_1..c_4)); 3x3, pad 1, bias."""

    def __init__(self, growth, slope=0.01):
        super().__init__()
        self.slope = slope
        for k in range(5):
            cin = WAVE_CH + k * growth
            cout = growth if k < 4 else WAVE_CH
            setattr(self, "conv%d" % (k + 1), nn.Conv2d(cin, cout, 3, 1, 1, bias=True))
        # memfit: conv1..4 weights MF_INIT_KAIMING (normal, std sqrt(2/fan_in)), biases zero;
        # conv5 weight and bias zero, so every block starts as the identity.
        for k in range(1, 6):
            conv = getattr(self, "conv%d" % k)
            if k < 5:
                nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in", nonlinearity="relu")
            else:
                nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x):  # [B,12,h,w] -> [B,12,h,w]
        feats = [x]
        for k in range(1, 5):
            inp = x if k == 1 else torch.cat(feats, 1)  # [B,12+(k-1)g,h,w]
            feats.append(nn.functional.leaky_relu(getattr(self, "conv%d" % k)(inp), self.slope))  # [B,g,h,w]
        return self.conv5(torch.cat(feats, 1))  # [B,12,h,w]


class Coupling(nn.Module):
    """y1 = x1 + phi(x2); s = clamp*(2*sigmoid(rho(y1)) - 1); y2 = x2*exp(s) + eta(y1)."""

    def __init__(self, growth, clamp=2.0, slope=0.01):
        super().__init__()
        self.clamp = clamp
        self.phi = DenseBlock(growth, slope)
        self.rho = DenseBlock(growth, slope)
        self.eta = DenseBlock(growth, slope)

    def scale(self, y1):  # written as 2*clamp*sigmoid - clamp, as in steg.c
        return torch.sigmoid(self.rho(y1)) * (2.0 * self.clamp) + (-self.clamp)

    def forward(self, x1, x2):
        y1 = x1 + self.phi(x2)
        s = self.scale(y1)
        e = self.eta(y1)
        return y1, x2 * torch.exp(s) + e

    def inverse(self, y1, y2):  # x2 = (y2 - eta(y1))*exp(-s); x1 = y1 - phi(x2)
        s = self.scale(y1)
        e = self.eta(y1)
        x2 = (y2 - e) * torch.exp(s * -1.0)
        return y1 - self.phi(x2), x2


class StegNet(nn.Module):
    def __init__(self, blocks, growth, clamp=2.0, slope=0.01):
        super().__init__()
        self.blk = nn.ModuleList([Coupling(growth, clamp, slope) for _ in range(blocks)])

    def hide(self, x1, x2):
        for b in self.blk:
            x1, x2 = b(x1, x2)
        return x1, x2

    def reveal(self, y1, y2):
        for b in reversed(self.blk):
            y1, y2 = b.inverse(y1, y2)
        return y1, y2

    def losses(self, cover, secret, z, w=(1.0, 5.0, 1.0), stego_q=None):
        """The training graph of mf_steg_build: hide, stego, reveal on (y1, z), three sum losses.
        stego_q: the 8-bit stego (stego_bits 8): the reveal pass reads its values, its gradient passes
        to the clipped stego (straight-through over the rounding; the clip keeps its gradient, 0 past 0
        or 1); the hiding losses stay on the float stego."""
        x1, x2 = dwt(cover), dwt(secret)  # [B,12,H/2,W/2]
        cover_ll = x1[:, 0:3]
        y1, y2 = self.hide(x1, x2)
        stego = idwt(y1)  # [B,3,H,W]
        stego_float, y1s = stego, y1
        if stego_q is not None:
            clipped = stego.clamp(0.0, 1.0)
            stego = stego_q + (clipped - clipped.detach())
            y1s = dwt(stego)
        _, rx2 = self.reveal(y1s, z)
        revealed = idwt(rx2)  # [B,3,H,W]
        guide = ((stego_float - cover) ** 2).sum()  # the hiding losses on the float stego
        low = ((y1[:, 0:3] - cover_ll) ** 2).sum()  # LL(stego) == y1[:, 0:3]
        rec = ((revealed - secret) ** 2).sum()
        total = guide * w[0] + rec * w[1] + low * w[2]
        return dict(loss=total, loss_guide=guide, loss_rec=rec, loss_low=low, stego=stego, revealed=revealed)


def memfit_name(torch_name):
    """blk.3.phi.conv2.weight -> blk3.phi.conv2.w"""
    p = torch_name.split(".")
    assert p[0] == "blk" and len(p) == 5, torch_name
    return "blk%s.%s.%s.%s" % (p[1], p[2], p[3], {"weight": "w", "bias": "b"}[p[4]])


def subnet_param_count(growth):
    return sum((growth if k < 4 else WAVE_CH) * ((WAVE_CH + k * growth) * 9 + 1) for k in range(5))


# ---- safetensors, by hand: u64 LE header length, JSON header, raw little-endian data ----
_DT = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I32": np.int32, "U8": np.uint8, "I64": np.int64}


def safetensors_read(path):
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError("%s: too short for a safetensors file (%d bytes)" % (path, len(raw)))
    (hlen,) = struct.unpack("<Q", raw[:8])
    if 8 + hlen > len(raw):
        raise ValueError("%s: header length %d runs past the end of the file (%d bytes)" % (path, hlen, len(raw)))
    header = json.loads(raw[8:8 + hlen].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if info["dtype"] == "BF16":
            s, e = info["data_offsets"]
            u16 = np.frombuffer(raw[base + s:base + e], dtype="<u2").astype(np.uint32) << 16
            out[name] = u16.view(np.float32).reshape(info["shape"]).astype(np.float64)
            continue
        dt = np.dtype(_DT[info["dtype"]]).newbyteorder("<")
        s, e = info["data_offsets"]
        arr = np.frombuffer(raw[base + s:base + e], dtype=dt).reshape(info["shape"])
        out[name] = arr.copy()
    return out, meta


def safetensors_write(path, tensors, meta=None):
    names = {np.dtype(v): k for k, v in _DT.items()}
    header, blobs, off = {}, [], 0
    if meta:
        header["__metadata__"] = {str(k): str(v) for k, v in meta.items()}
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        b = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": names[arr.dtype], "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)  # align the data to 8 bytes, as the safetensors package does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def infer_config(tensors, meta):
    """blocks/growth/clamp/slope/weights from the metadata, else from the parameter shapes and HiNet defaults."""
    blocks = int(meta.get("blocks", 0)) or 1 + max(int(n.split(".")[0][3:]) for n in tensors if n.startswith("blk"))
    growth = int(meta.get("growth", 0)) or int(tensors["blk0.phi.conv1.w"].shape[0])
    return dict(blocks=blocks, growth=growth, clamp=float(meta.get("clamp", 2.0)), slope=float(meta.get("slope", 0.01)),
                stego_bits=int(meta.get("stego_bits", 0)),
                w=(float(meta.get("w_guide", 1.0)), float(meta.get("w_rec", 5.0)), float(meta.get("w_low", 1.0))))


def quantised_stego(net, cover, secret, tensors, rtol=1e-4):
    """The 8-bit stego for a stego_bits 8 parity run: memfit's own (`memfit.stego`), after checking that
    it is round(clip(stego, 0, 1) * 255) / 255 of this float64 stego everywhere except where the value
    sits within rtol * 255 * max|stego| of a rounding boundary (there memfit's float32 stego may round the
    other way; both are right). Using memfit's values keeps such a pixel from failing the loss check."""
    if "memfit.stego" not in tensors:
        raise ValueError("stego_bits 8 needs memfit's 8-bit stego as memfit.stego")
    q = torch.from_numpy(np.asarray(tensors["memfit.stego"], dtype=np.float64))
    with torch.no_grad():
        x1, x2 = dwt(cover), dwt(secret)
        s = idwt(self_hide(net, x1, x2)) * 255.0
    v = s.clamp(0.0, 255.0)
    want = torch.round(v) / 255.0
    near = (torch.abs(v - torch.floor(v) - 0.5) <= rtol * 255.0 * float(s.abs().max()) + 1e-9)
    grid = torch.abs(q * 255.0 - torch.round(q * 255.0)).max().item()
    off = ((torch.abs(q - want) > 0.5 / 255.0 / 255.0) & ~near).sum().item()
    if grid > 1e-3 or off:
        raise ValueError("memfit.stego is not the 8-bit stego: %d values differ from round(clip(stego)*255)/255 "
                         "away from rounding boundaries; largest distance from the 1/255 grid %.3g" % (off, grid / 255.0))
    return q


def self_hide(net, x1, x2):
    return net.hide(x1, x2)[0]


def parity_run(tensors, meta):
    """One forward/backward in float64 from memfit's weights and inputs; returns the OUT dictionary."""
    cfg = infer_config(tensors, meta)
    net = StegNet(cfg["blocks"], cfg["growth"], cfg["clamp"], cfg["slope"]).double()
    missing = []
    with torch.no_grad():
        for tn, p in net.named_parameters():
            mn = memfit_name(tn)
            if mn not in tensors:
                missing.append(mn)
                continue
            src = torch.from_numpy(np.asarray(tensors[mn], dtype=np.float64))
            if tuple(src.shape) != tuple(p.shape):
                raise ValueError("parameter %s: shape %s in the file, the model needs %s" %
                                 (mn, list(src.shape), list(p.shape)))
            p.copy_(src)
    if missing:
        raise ValueError("parameters missing from the file: %s%s" % (", ".join(missing[:5]), " ..." if len(missing) > 5 else ""))
    cover = torch.from_numpy(np.asarray(tensors["cover"], dtype=np.float64))
    secret = torch.from_numpy(np.asarray(tensors["secret"], dtype=np.float64))
    if "z" in tensors:
        z = torch.from_numpy(np.asarray(tensors["z"], dtype=np.float64))
    else:
        n, _, h, w = cover.shape
        z = torch.zeros((n, WAVE_CH, h // 2, w // 2), dtype=torch.float64)
    stego_q = None
    if cfg["stego_bits"] == 8:
        stego_q = quantised_stego(net, cover, secret, tensors)
    r = net.losses(cover, secret, z, cfg["w"], stego_q)
    net.zero_grad()
    r["loss"].backward()
    out = {k: r[k].detach().reshape(1).numpy() for k in ("loss", "loss_guide", "loss_rec", "loss_low")}
    out["stego"] = r["stego"].detach().numpy()
    out["revealed"] = r["revealed"].detach().numpy()
    for tn, p in net.named_parameters():
        out["grad." + memfit_name(tn)] = p.grad.detach().numpy()
    return out


def mode_parity(args):
    tensors, meta = safetensors_read(args.input)
    out = parity_run(tensors, meta)
    safetensors_write(args.output, out, {"impl": "torch", "torch": torch.__version__})
    print("parity: loss %.10g (guide %.6g rec %.6g low %.6g), %d gradients -> %s" %
          (out["loss"][0], out["loss_guide"][0], out["loss_rec"][0], out["loss_low"][0],
           sum(1 for k in out if k.startswith("grad.")), args.output))


def mode_bench_cuda(args):
    """GPU side of scripts/gpu-check.sh: the same step under torch.autocast (bf16 or f16 compute,
    f32 weights and AdamW), peak = torch.cuda.max_memory_allocated plus the context's share."""
    if not torch.cuda.is_available():
        sys.exit("steg_torch.py: --device cuda but torch sees no CUDA device")
    amp = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": None}
    if args.dtype not in amp:
        sys.exit("steg_torch.py: --dtype %s is not supported on cuda; use bf16, f16 or f32" % args.dtype)
    dev = torch.device("cuda")
    torch.cuda.init()
    free0, total = torch.cuda.mem_get_info()  # after the context exists: what the context took
    torch.manual_seed(args.seed)
    net = StegNet(args.blocks, args.growth, args.clamp).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=10 ** -4.5, betas=(0.5, 0.999), eps=1e-8,
                            weight_decay=args.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if args.dtype == "f16" else None
    b, s = args.batch, args.size
    cover = torch.rand(b, 3, s, s, device=dev)
    secret = torch.rand(b, 3, s, s, device=dev)
    z = torch.zeros(b, WAVE_CH, s // 2, s // 2, device=dev)

    def step():
        opt.zero_grad(set_to_none=False)
        if amp[args.dtype] is None:
            loss = net.losses(cover, secret, z)["loss"]
        else:
            with torch.autocast("cuda", dtype=amp[args.dtype]):
                loss = net.losses(cover, secret, z)["loss"]
        if scaler:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        return loss

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated()
    print(json.dumps({"impl": "torch-cuda-" + args.dtype, "images_per_s": b * args.steps / dt,
                      "peak_device_bytes": peak, "context_bytes": total - free0,
                      "reserved_bytes": torch.cuda.max_memory_reserved(),
                      "step_s": dt / args.steps, "blocks": args.blocks, "growth": args.growth, "size": s,
                      "batch": b, "steps": args.steps, "loss": float(loss),
                      "params": sum(p.numel() for p in net.parameters()),
                      "device": torch.cuda.get_device_name(0)}))


def mode_bench(args):
    if args.device == "cuda":
        return mode_bench_cuda(args)
    if args.dtype != "f32":
        sys.exit("steg_torch.py: --dtype %s is not supported; use f32" % args.dtype)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    net = StegNet(args.blocks, args.growth, args.clamp)
    opt = torch.optim.AdamW(net.parameters(), lr=10 ** -4.5, betas=(0.5, 0.999), eps=1e-8,
                            weight_decay=args.weight_decay)
    b, s = args.batch, args.size
    cover = torch.rand(b, 3, s, s)
    secret = torch.rand(b, 3, s, s)
    z = torch.zeros(b, WAVE_CH, s // 2, s // 2)

    def step():
        opt.zero_grad(set_to_none=False)
        loss = net.losses(cover, secret, z)["loss"]
        loss.backward()
        opt.step()
        return float(loss.detach())

    for _ in range(args.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    dt = time.perf_counter() - t0
    print(json.dumps({"impl": "torch", "images_per_s": b * args.steps / dt,
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "step_s": dt / args.steps, "blocks": args.blocks, "growth": args.growth, "size": s,
                      "batch": b, "threads": args.threads, "steps": args.steps, "loss": loss,
                      "params": sum(p.numel() for p in net.parameters()), "torch": torch.__version__}))


def randomize(net, std=0.05, seed=1):
    """Non-zero weights everywhere (conv5 included), so the blocks are not the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * std)


def mode_selftest(_args):
    torch.manual_seed(0)
    ok = True

    def check(cond, what):
        nonlocal ok
        print(("ok   " if cond else "FAIL ") + what)
        ok = ok and bool(cond)

    # wavelet: exact inverse, the formula of docs/design.md 3.1 on one 2x2 patch, orthonormal (keeps sums of squares)
    x = torch.randn(2, 3, 6, 8, dtype=torch.float64)
    check(torch.allclose(idwt(dwt(x)), x, atol=1e-13), "idwt(dwt(x)) == x")
    p = torch.tensor([[[[1.0, 3.0], [2.0, 5.0]]]], dtype=torch.float64)  # a=1 c=3 b=2 d=5
    check(dwt(p).flatten().tolist() == [5.5, 2.5, 1.5, 0.5], "dwt of one 2x2 patch per docs/design.md 3.1")
    check(abs(float((dwt(x) ** 2).sum() - (x ** 2).sum())) < 1e-10, "dwt keeps the sum of squares")

    # parameter counts of the presets (docs/design.md 3.1: hinet ~4.05M, seed-16gb ~46M, seed-4gb ~7.5M)
    for name, nb, g, want in (("hinet", 16, 32, 4.05e6), ("seed-16gb", 10, 160, 46e6), ("seed-4gb", 6, 80, 7.5e6)):
        n = sum(p.numel() for p in StegNet(nb, g).parameters()) if g < 100 else nb * 3 * subnet_param_count(g)
        check(n == nb * 3 * subnet_param_count(g) and abs(n - want) / want < 0.02,
              "%s: %d parameters (design says about %.3gM)" % (name, n, want / 1e6))

    # zero-initialised last convs: the network is the identity, stego == cover, reveal gives z's branch
    net = StegNet(3, 8).double()
    cover, secret = torch.rand(2, 3, 8, 8, dtype=torch.float64), torch.rand(2, 3, 8, 8, dtype=torch.float64)
    z = torch.zeros(2, WAVE_CH, 4, 4, dtype=torch.float64)
    r = net.losses(cover, secret, z)
    check(float(r["loss_guide"]) < 1e-24 and float(r["loss_low"]) < 1e-24, "fresh network: stego == cover")

    # random weights: reveal(hide(x)) == x, and hide(reveal(y)) == y
    randomize(net)
    x1, x2 = dwt(cover), dwt(secret)
    y1, y2 = net.hide(x1, x2)
    check(float((y1 - x1).abs().max()) > 1e-3, "random weights change the cover branch")
    r1, r2 = net.reveal(y1, y2)
    err = max(float((r1 - x1).abs().max()), float((r2 - x2).abs().max()))
    check(err < 1e-10, "reveal(hide(x)) == x (max error %.2e)" % err)
    h1, h2 = net.hide(*net.reveal(y1, z))
    err = max(float((h1 - y1).abs().max()), float((h2 - z).abs().max()))
    check(err < 1e-10, "hide(reveal(y1, z)) == (y1, z) (max error %.2e)" % err)

    # gradients of the whole training loss (hide + reveal) against finite differences
    small = StegNet(1, 2).double()
    randomize(small, 0.1, seed=2)  # small weights keep the loss O(100): FD noise stays low
    cv, sc = torch.rand(1, 3, 4, 4, dtype=torch.float64), torch.rand(1, 3, 4, 4, dtype=torch.float64)
    zz = torch.randn(1, WAVE_CH, 2, 2, dtype=torch.float64) * 0.1
    params = list(small.parameters())

    def f(*ps):
        with torch.no_grad():
            for p, v in zip(params, ps):
                p.copy_(v)
        return small.losses(cv, sc, zz)["loss"]

    small.zero_grad()
    f(*[p.detach().clone() for p in params]).backward()
    worst = 0.0
    for p in params:
        flat = p.data.view(-1)
        for i in range(0, flat.numel(), max(1, flat.numel() // 4)):
            old = float(flat[i])
            with torch.no_grad():
                flat[i] = old + 1e-5
                lp = float(small.losses(cv, sc, zz)["loss"])
                flat[i] = old - 1e-5
                lm = float(small.losses(cv, sc, zz)["loss"])
                flat[i] = old
            fd = (lp - lm) / 2e-5
            worst = max(worst, abs(fd - float(p.grad.view(-1)[i])) / (abs(fd) + 1e-3))
    check(worst < 1e-5, "autograd matches finite differences (worst relative error %.2e)" % worst)

    # the parity protocol round trip: write IN as memfit would, run parity, compare with direct autograd
    import os
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        tens = {memfit_name(n): p.detach().numpy().astype(np.float32) for n, p in net.named_parameters()}
        tens.update(cover=cover.numpy().astype(np.float32), secret=secret.numpy().astype(np.float32))
        fin, fout = os.path.join(d, "in.safetensors"), os.path.join(d, "out.safetensors")
        safetensors_write(fin, tens, {"blocks": 3, "growth": 8})
        back, meta = safetensors_read(fin)
        check(all(np.array_equal(back[k], tens[k]) for k in tens) and meta["growth"] == "8", "safetensors round trip")
        out = parity_run(back, meta)
        safetensors_write(fout, out)
        out2, _ = safetensors_read(fout)
        ref = StegNet(3, 8).double()
        with torch.no_grad():
            for n, p in ref.named_parameters():
                p.copy_(torch.from_numpy(tens[memfit_name(n)].astype(np.float64)))
        rr = ref.losses(torch.from_numpy(tens["cover"].astype(np.float64)),
                        torch.from_numpy(tens["secret"].astype(np.float64)), z)
        rr["loss"].backward()
        same = all(np.allclose(out2["grad." + memfit_name(n)], p.grad.numpy(), rtol=0, atol=0)
                   for n, p in ref.named_parameters())
        check(same and out2["loss"][0] == float(rr["loss"]), "parity output equals direct autograd")
    print("selftest: %s" % ("all passed" if ok else "FAILED"))
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["bench", "parity", "selftest"])
    ap.add_argument("input", nargs="?", help="parity: safetensors file written by memfit")
    ap.add_argument("output", nargs="?", help="parity: safetensors file to write")
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--growth", type=int, default=80)
    ap.add_argument("--size", type=int, default=64, help="image height and width (even)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="f32")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="bench: cuda runs under torch.autocast(--dtype)")
    ap.add_argument("--clamp", type=float, default=2.0)
    ap.add_argument("--weight-decay", type=float, default=1e-5, help="AdamW weight decay (HiNet: 1e-5)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.mode == "bench":
        if args.size % 2 or args.size < 2:
            sys.exit("steg_torch.py: --size %d: the Haar wavelet needs an even size of 2 or more" % args.size)
        mode_bench(args)
    elif args.mode == "parity":
        if not args.input or not args.output:
            sys.exit("steg_torch.py parity: give the input and output safetensors files")
        mode_parity(args)
    else:
        sys.exit(mode_selftest(args))


if __name__ == "__main__":
    main()
