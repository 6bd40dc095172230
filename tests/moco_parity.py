#!/usr/bin/python3
"""moco_parity.py — two MoCo v2 steps in PyTorch (float64) from the weights, inputs and queue memfit used,
compared with memfit's results; called by tests/test_moco.c.

Usage: /usr/bin/python3 tests/moco_parity.py IN.safetensors [--rtol 1e-4]

IN holds param.<name> (memfit's ResNet-18 query encoder "encoder_q.*" with torchvision names and its v2
head fc.0 / fc.2), queue0 [K,D], xq0, xk0, xq1, xk1 [B,C,H,W], metadata temperature, momentum, lr (plain
SGD), bn_splits, queue_pos; and memfit's memfit.loss{0,1}, memfit.grad{0,1}.<param>, memfit.ema.<key
param> (after the two updates) and memfit.queue (after them). The reference follows facebookresearch/moco:
the momentum update before each forward, split batch norm (SplitBatchNorm: statistics over the samples
n % S == s), keys enqueued after the step -- but wrapping around, as memfit's queue does, since the batch
(8) does not divide the queue (20). Each tensor is compared norm-wise: ||memfit - torch|| <=
rtol ||torch|| + a floor for near-zero tensors: 2^-24 * 64 * sqrt(n) * max|torch values of its kind| (f32
rounding of sums up to 64 terms deep). Exit 0 when all match, 1 when one does not, 2 on a bad file.
"""
import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import steg_torch  # noqa: E402  (safetensors_read)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def resnet18(x, P, bufs, splits, pre):
    """torchvision ResNet-18 with the small stem (3x3 stride 1, no max-pool), split batch norm."""
    def bn(h, name):
        C = h.shape[1]
        rm, rv = bufs.get(pre + name, (torch.zeros(C, dtype=h.dtype), torch.ones(C, dtype=h.dtype)))
        rms, rvs = rm.repeat(splits), rv.repeat(splits)
        shape = h.shape
        y = F.batch_norm(h.reshape(-1, C * splits, *shape[2:]), rms, rvs, P[name + ".weight"].repeat(splits),
                         P[name + ".bias"].repeat(splits), True, 0.1, 1e-5)
        bufs[pre + name] = (rms.view(splits, C).mean(0), rvs.view(splits, C).mean(0))
        return y.reshape(shape)

    def conv(h, name, stride, pad):
        return F.conv2d(h, P[name + ".weight"], None, stride, pad)

    h = F.relu(bn(conv(x, "conv1", 1, 1), "bn1"))
    for L in range(4):
        for i in range(2):
            p = "layer%d.%d" % (L + 1, i)
            stride = 2 if (i == 0 and L > 0) else 1
            y = F.relu(bn(conv(h, p + ".conv1", stride, 1), p + ".bn1"))
            y = bn(conv(y, p + ".conv2", 1, 1), p + ".bn2")
            idn = h
            if (p + ".downsample.0.weight") in P:
                idn = bn(conv(h, p + ".downsample.0", stride, 0), p + ".downsample.1")
            h = F.relu(y + idn)
    f = h.mean(dim=(2, 3))
    z = F.relu(F.linear(f, P["fc.0.weight"], P["fc.0.bias"]))
    return F.normalize(F.linear(z, P["fc.2.weight"], P["fc.2.bias"]), dim=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("--rtol", type=float, default=1e-4)
    args = ap.parse_args()
    try:
        t, meta = steg_torch.safetensors_read(args.input)
        T, m, lr = float(meta["temperature"]), float(meta["momentum"]), float(meta["lr"])
        S, pos_memfit = int(meta["bn_splits"]), int(meta["queue_pos"])
        P = {k[len("param.encoder_q."):]: torch.tensor(v, dtype=torch.float64, requires_grad=True)
             for k, v in t.items() if k.startswith("param.encoder_q.")}
        queue = torch.tensor(t["queue0"], dtype=torch.float64)
    except (OSError, ValueError, KeyError) as e:
        print("moco_parity: %s: %s" % (args.input, e))
        return 2
    Kp = {k: v.detach().clone() for k, v in P.items()}
    K = queue.shape[0]
    ptr, bufs, ref = 0, {}, {}
    for step in range(2):
        with torch.no_grad():  # the reference's _momentum_update_key_encoder, before the forward
            for k in Kp:
                Kp[k] = Kp[k] * m + P[k].detach() * (1 - m)
        xq = torch.tensor(t["xq%d" % step], dtype=torch.float64)
        xk = torch.tensor(t["xk%d" % step], dtype=torch.float64)
        q = resnet18(xq, P, bufs, S, "q.")
        with torch.no_grad():
            k = resnet18(xk, Kp, bufs, S, "k.")
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.t()], dim=1) / T
        loss = F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long))
        names = sorted(P)
        grads = torch.autograd.grad(loss, [P[n] for n in names])
        ref["loss%d" % step] = loss.detach().numpy().reshape(1)
        for n, gr in zip(names, grads):
            ref["grad%d.encoder_q.%s" % (step, n)] = gr.numpy()
        with torch.no_grad():
            for n, gr in zip(names, grads):
                P[n] -= lr * gr
            for r in range(k.shape[0]):  # enqueue with wrap-around (the reference asserts K % B == 0)
                queue[ptr] = k[r]
                ptr = (ptr + 1) % K
    with torch.no_grad():  # memfit's average after update 2 = the reference's before a third forward
        for n in Kp:
            ref["ema.encoder_k.%s" % n] = (Kp[n] * m + P[n].detach() * (1 - m)).numpy()
    ref["queue"] = queue.numpy()
    if pos_memfit != ptr:
        print("moco_parity: FAIL queue position memfit %d, reference %d" % (pos_memfit, ptr))
        return 1
    kinds = {}
    for name, v in ref.items():
        kind = name.split(".")[0]
        kinds[kind] = max(kinds.get(kind, 0.0), float(np.max(np.abs(v))))
    rows, bad, n_grad = [], 0, 0
    for name, b in ref.items():
        key = "memfit." + name
        if key not in t:
            print("moco_parity: memfit gave no '%s'" % key)
            return 2
        a = np.asarray(t[key], dtype=np.float64).reshape(-1)
        b = np.asarray(b, dtype=np.float64).reshape(-1)
        if a.shape != b.shape:
            print("moco_parity: %s: %d values, torch has %d" % (name, a.size, b.size))
            return 2
        n_grad += name.startswith("grad")
        nb = float(np.linalg.norm(b))
        diff = float(np.linalg.norm(a - b))
        floor = 2.0 ** -24 * 64 * math.sqrt(a.size) * kinds[name.split(".")[0]]
        ok = diff <= args.rtol * nb + floor
        bad += not ok
        rows.append((diff / (nb + floor), name, ok, nb))
    if n_grad != 2 * len(P):
        print("moco_parity: %d gradients compared, expected %d" % (n_grad, 2 * len(P)))
        return 2
    rows.sort(reverse=True)
    for rel, name, ok, nb in rows[:6]:
        print("  %-4s %-44s rel %.3e  (|torch| %.4g)" % ("ok" if ok else "FAIL", name, rel, nb))
    print("moco_parity: loss memfit %.9g / %.9g torch %.9g / %.9g; %d tensors (%d gradients, %d EMA, queue), worst rel "
          "%.3e, %d over %.0e" % (t["memfit.loss0"][0], t["memfit.loss1"][0], ref["loss0"][0], ref["loss1"][0], len(rows),
                                  n_grad, len([r for r in rows if r[1].startswith("ema")]), rows[0][0], bad, args.rtol))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
