#!/usr/bin/python3
"""moco_torch.py — MoCo v2 (docs/design.md 3.2, src/models/moco.c) in PyTorch: the reference side of the
MoCo benchmarks. Mode `bench` times training steps on fixed random inputs (the speed / peak-RSS comparison of
bench/moco.sh); mode `fit` trains the same recipe on Fashion-MNIST for a wall-clock time and reports the kNN
accuracy (k 200, T 0.1, cosine) of the query backbone on the 10,000 test images, the "same recipe in PyTorch
given the same wall time" of issue 12.

The network: ResNet-18/34 with torchvision's parameter names (BasicBlock, conv1/bn1/layerL.B.conv1...,
downsample.0/1), a width multiplier on every stage's channels (64, 128, 256, 512 x width), the small-image stem
(3x3 conv stride 1, no max-pool) when --small-stem, the MoCo v2 MLP head fc.0 (D -> hidden) ReLU fc.2
(hidden -> dim), L2-normalised q and k, logits [N, 1+K] = [q.k, q queue^T] / T, cross-entropy with label 0; the
key encoder is a momentum copy (m) of the query encoder, updated after each optimizer step; the queue [K, dim]
takes all keys of each step at its position, wrapping around (any batch).

Usage:
  /usr/bin/python3 bench/moco_torch.py bench --batch 64 --size 32 --queue 4096 --steps 10 --threads 2
  /usr/bin/python3 bench/moco_torch.py fit --data DIR_OF_IDX --seconds 3600 --threads 2 [--width 0.25 ...]
Each mode prints one JSON line.
"""
import argparse
import gzip
import json
import math
import os
import resource
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class ResNet(nn.Module):
    """[N, C, H, W] -> [N, 512*width] pooled features."""

    def __init__(self, depth=18, width=1.0, in_ch=3, small_stem=True):
        super().__init__()
        blocks = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}[depth]
        ch = [max(1, int(round(c * width))) for c in (64, 128, 256, 512)]
        self.small_stem = small_stem
        self.conv1 = nn.Conv2d(in_ch, ch[0], 3, 1, 1, bias=False) if small_stem else nn.Conv2d(in_ch, ch[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(ch[0])
        cin = ch[0]
        for li, (n, c) in enumerate(zip(blocks, ch)):
            layer = []
            for b in range(n):
                layer.append(BasicBlock(cin, c, 2 if (b == 0 and li > 0) else 1))
                cin = c
            setattr(self, "layer%d" % (li + 1), nn.Sequential(*layer))
        self.out_dim = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        if not self.small_stem:
            x = F.max_pool2d(x, 3, 2, 1)
        for i in range(1, 5):
            x = getattr(self, "layer%d" % i)(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class Encoder(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.backbone = ResNet(a.depth, a.width, a.channels, a.size <= 64)
        d = self.backbone.out_dim
        self.fc = nn.Sequential(nn.Linear(d, a.hidden), nn.ReLU(), nn.Linear(a.hidden, a.dim))

    def forward(self, x):
        return F.normalize(self.fc(self.backbone(x)), dim=1)


class MoCo(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.m, self.T = a.momentum, a.temperature
        self.encoder_q = Encoder(a)
        self.encoder_k = Encoder(a)
        for pq, pk in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            pk.data.copy_(pq.data)
            pk.requires_grad = False
        self.register_buffer("queue", F.normalize(torch.randn(a.queue, a.dim), dim=1))
        self.pos = 0

    def loss(self, xq, xk):
        q = self.encoder_q(xq)
        with torch.no_grad():
            k = self.encoder_k(xk)
        pos = (q * k).sum(1, keepdim=True)
        neg = q @ self.queue.t()
        logits = torch.cat([pos, neg], 1) / self.T
        return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long)), k

    @torch.no_grad()
    def after_step(self, keys):
        for pq, pk in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            pk.data.mul_(self.m).add_(pq.data, alpha=1 - self.m)
        K = self.queue.shape[0]
        for r in keys:  # rows in order, wrapping around: any batch
            self.queue[self.pos] = r
            self.pos = (self.pos + 1) % K


def peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def add_model_args(p):
    p.add_argument("--depth", type=int, default=18)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--queue", type=int, default=4096)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--momentum", type=float, default=0.999)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.06)
    p.add_argument("--crop-min", type=float, default=0.2, help="smallest crop area share (memfit's --crop-min)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)


def make_opt(model, a):
    return torch.optim.SGD(model.encoder_q.parameters(), lr=a.lr, momentum=0.9, weight_decay=5e-4)


def bench(a):
    torch.manual_seed(a.seed)
    model = MoCo(a)
    opt = make_opt(model, a)
    xq = torch.rand(a.batch, a.channels, a.size, a.size)
    xk = torch.rand(a.batch, a.channels, a.size, a.size)
    times = []
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.dtype == "bf16")
    for i in range(a.steps + 1):
        t0 = time.perf_counter()
        with amp:
            loss, k = model.loss(xq, xk)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        model.after_step(k)
        if i:  # the first step warms up
            times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    print(json.dumps({"impl": "torch-" + torch.__version__, "images_per_s": a.batch / med, "peak_rss_bytes": peak_rss(),
                      "loss": float(loss.detach())}))


# ---- Fashion-MNIST (IDX, optionally gzipped) ----
def idx_read(path):
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    nd = magic & 0xFF
    dims = struct.unpack(">" + "I" * nd, data[4:4 + 4 * nd])
    t = torch.frombuffer(bytearray(data[4 + 4 * nd:]), dtype=torch.uint8)
    return t.reshape(dims)


def idx_find(d, stem):
    for name in (stem, stem + ".gz"):
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    raise SystemExit("moco_torch.py: %s(.gz) not found in %s" % (stem, d))


def augment(x, a, g):
    """x [N,1,28,28] in [0,1] -> one random view [N,C,S,S]: random resized crop (area crop_min-1, aspect 3/4-4/3),
    brightness/contrast jitter 0.4 with p 0.8, horizontal flip p 0.5 (the recipe of bench/moco.sh)."""
    n = x.shape[0]
    out = torch.empty(n, 1, a.size, a.size)
    H = x.shape[2]
    for i in range(n):
        for _ in range(10):
            area = H * H * (a.crop_min + (1 - a.crop_min) * torch.rand(1, generator=g).item())
            ar = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * torch.rand(1, generator=g).item())
            w = int(round(math.sqrt(area * ar)))
            h = int(round(math.sqrt(area / ar)))
            if 0 < w <= H and 0 < h <= H:
                break
        else:
            w = h = H
        top = int(torch.randint(0, H - h + 1, (1,), generator=g))
        left = int(torch.randint(0, H - w + 1, (1,), generator=g))
        crop = x[i:i + 1, :, top:top + h, left:left + w]
        out[i] = F.interpolate(crop, size=(a.size, a.size), mode="bilinear", align_corners=False, antialias=True)[0]
    if True:
        apply = (torch.rand(n, 1, 1, 1, generator=g) < 0.8).float()
        b = 1 + (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * 0.4
        c = 1 + (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * 0.4
        j = out * b
        m = j.mean(dim=(1, 2, 3), keepdim=True)
        j = ((j - m) * c + m).clamp(0, 1)
        out = apply * j + (1 - apply) * out
    flip = torch.rand(n, generator=g) < 0.5
    out[flip] = out[flip].flip(3)
    return out.expand(n, a.channels, a.size, a.size).contiguous()


@torch.no_grad()
def features(backbone, x, a, bs=500):
    backbone.eval()
    fs = []
    for i in range(0, x.shape[0], bs):
        xb = x[i:i + bs].float().unsqueeze(1) / 255
        if a.size != xb.shape[2]:
            xb = F.interpolate(xb, size=(a.size, a.size), mode="bilinear", align_corners=False, antialias=True)
        fs.append(F.normalize(backbone(xb.expand(-1, a.channels, -1, -1)), dim=1))
    backbone.train()
    return torch.cat(fs)


@torch.no_grad()
def knn_accuracy(bank, bank_y, q, q_y, k=200, T=0.1, classes=10, bs=500):
    correct = 0
    for i in range(0, q.shape[0], bs):
        sim = q[i:i + bs] @ bank.t()
        w, idx = sim.topk(k, dim=1)
        w = (w / T).exp()
        scores = torch.zeros(sim.shape[0], classes).scatter_add_(1, bank_y[idx], w)
        correct += (scores.argmax(1) == q_y[i:i + bs]).sum().item()
    return correct / q.shape[0]


def fit(a):
    torch.manual_seed(a.seed)
    g = torch.Generator().manual_seed(a.seed)
    tr_x = idx_read(idx_find(a.data, "train-images-idx3-ubyte"))
    tr_y = idx_read(idx_find(a.data, "train-labels-idx1-ubyte")).long()
    te_x = idx_read(idx_find(a.data, "t10k-images-idx3-ubyte"))
    te_y = idx_read(idx_find(a.data, "t10k-labels-idx1-ubyte")).long()
    model = MoCo(a)
    opt = make_opt(model, a)
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.dtype == "bf16")
    t0 = time.time()
    steps = 0
    images = 0
    n = tr_x.shape[0]
    while time.time() - t0 < a.seconds:
        perm = torch.randperm(n, generator=g)
        for i in range(0, n - a.batch + 1, a.batch):
            if time.time() - t0 >= a.seconds:
                break
            # memfit's schedules: linear warmup over --warmup updates, then cosine over the run (measured in
            # time here) or constant
            if steps < a.warmup:
                lr = a.lr * (steps + 1) / a.warmup
            elif a.schedule == "cosine":
                lr = a.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (time.time() - t0) / a.seconds)))
            else:
                lr = a.lr
            for grp in opt.param_groups:
                grp["lr"] = lr
            x = tr_x[perm[i:i + a.batch]].float().unsqueeze(1) / 255
            xq, xk = augment(x, a, g), augment(x, a, g)
            with amp:
                loss, k = model.loss(xq, xk)
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()
            model.after_step(k)
            steps += 1
            images += a.batch
    train_s = time.time() - t0
    bank = features(model.encoder_q.backbone, tr_x, a)
    q = features(model.encoder_q.backbone, te_x, a)
    acc = knn_accuracy(bank, tr_y, q, te_y)
    print(json.dumps({"impl": "torch-" + torch.__version__, "dtype": a.dtype, "steps": steps, "images": images, "train_seconds": train_s,
                      "epochs": images / n, "knn_top1": acc, "last_loss": float(loss), "peak_rss_bytes": peak_rss()}))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    b = sub.add_parser("bench")
    add_model_args(b)
    b.add_argument("--steps", type=int, default=10)
    f = sub.add_parser("fit")
    add_model_args(f)
    for x in (b, f):
        x.add_argument("--dtype", choices=["f32", "bf16"], default="f32",
                       help="bf16: the forward passes under torch.autocast('cpu', torch.bfloat16), the counterpart of memfit's bf16")
    f.add_argument("--data", required=True, help="folder with the Fashion-MNIST IDX files (.gz or not)")
    f.add_argument("--seconds", type=float, default=3600)
    f.add_argument("--schedule", choices=["cosine", "constant"], default="cosine")
    f.add_argument("--warmup", type=int, default=0, help="updates of linear lr warmup (memfit's --warmup)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    bench(a) if a.mode == "bench" else fit(a)


if __name__ == "__main__":
    main()
