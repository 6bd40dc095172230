#!/usr/bin/python3
"""vqgan_torch.py — the PyTorch side of the VQGAN step benchmark (bench/vqgan.sh): the same VQGAN as memfit's
(taming-transformers written out: the model of tests/vqgan_parity.py, in float32) from the initial parameters
memfit dumped (bench_vqgan --dump), on fixed random images in [-1,1]. One step = the generator step (forward,
L1 + lambda * GAN + codebook loss, lambda from two autograd.grad calls on decoder.conv_out.weight as taming does,
backward, Adam (0.5, 0.9)) then the discriminator step (the generator's forward under no_grad, hinge loss,
backward, Adam). Prints one JSON line: images/s (median step) and peak RSS.

Usage: /usr/bin/python3 bench/vqgan_torch.py --params FILE --preset low --size 64 --batch 4 --steps 5 --threads 2
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, "..", "tests"))
import steg_torch  # noqa: E402  (safetensors_read)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import vqgan_parity  # noqa: E402  (the model)

PRESETS = {"low": (16, [1, 2, 4, 8], 16, 128), "mid": (32, [1, 2, 4, 8], 16, 256), "high": (32, [1, 2, 4, 8], 24, 512),
           "original": (64, [1, 2, 4, 8], 32, 512)}


def model_init(preset, params, lr):
    """the taming model of a preset from memfit's dumped initial parameters, with its two Adam optimizers (betas 0.5,
    0.9): (P name -> tensor, model, generator optimizer, discriminator optimizer, codes)"""
    ch, mult, z, codes = PRESETS[preset]
    T, _ = steg_torch.safetensors_read(params)
    P = {k: torch.tensor(np.asarray(v, dtype=np.float32)).requires_grad_(True) for k, v in T.items()}
    meta = {"ch": ch, "mult": ",".join(map(str, mult)), "levels": len(mult), "res_blocks": 2, "z_channels": z, "embed_dim": z,
            "beta": 0.25, "ema": 0, "disc_layers": 3}
    m = vqgan_parity.Model(P, meta)
    gen = [v for k, v in P.items() if not k.startswith("loss.discriminator.")]
    dis = [v for k, v in P.items() if k.startswith("loss.discriminator.")]
    return P, m, torch.optim.Adam(gen, lr=lr, betas=(0.5, 0.9)), torch.optim.Adam(dis, lr=lr, betas=(0.5, 0.9)), codes


def train_step(m, og, od, W, x, factor=1.0):
    """one generator step (L1 + codebook + factor x the adaptive-weight hinge GAN, lambda from the gradients at the
    decoder's last conv weight W, taming's calculate_adaptive_weight with weight 0.8) and one discriminator step on
    the updated generator (factor x hinge); returns (x_rec, lambda, d_loss)"""
    xrec, qloss, _, _ = m.forward(x)
    nll = torch.mean(torch.abs(x - xrec))
    g_loss = -torch.mean(m.disc(xrec))
    nll_g = torch.autograd.grad(nll, W, retain_graph=True)[0]
    g_g = torch.autograd.grad(g_loss, W, retain_graph=True)[0]
    lam = torch.clamp(torch.norm(nll_g) / (torch.norm(g_g) + 1e-4), 0.0, 1e4).detach() * 0.8
    og.zero_grad(set_to_none=True)
    (nll + factor * lam * g_loss + qloss).backward()
    og.step()
    with torch.no_grad():
        xr, _, _, _ = m.forward(x)
    d_loss = factor * 0.5 * (torch.mean(F.relu(1.0 - m.disc(x))) + torch.mean(F.relu(1.0 + m.disc(xr))))
    od.zero_grad(set_to_none=True)
    for p in og.param_groups[0]["params"]:  # the generator's
        p.grad = None
    d_loss.backward()
    od.step()
    return xrec, lam, d_loss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", required=True)
    ap.add_argument("--preset", default="low")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    P, m, og, od, codes = model_init(a.preset, a.params, 3.6e-5)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(a.batch, 3, a.size, a.size, generator=g) * 2 - 1
    W = P["decoder.conv_out.weight"]
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        train_step(m, og, od, W, x)
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times) if times else float("nan")
    print(json.dumps({"impl": "torch-" + torch.__version__, "images_per_s": a.batch / med,
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "step_s": med,
                      "preset": a.preset, "size": a.size, "batch": a.batch, "threads": a.threads}))


if __name__ == "__main__":
    main()
