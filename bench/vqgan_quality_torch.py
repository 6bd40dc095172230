#!/usr/bin/python3
"""vqgan_quality_torch.py — the PyTorch side of the VQGAN quality benchmark (bench/vqgan_quality.sh): trains the
same VQGAN as `memfit train vqgan` (the model of tests/vqgan_parity.py, float32) from the initial parameters memfit
dumped (bench_vqgan --dump), on the same PNG folder memfit reads (memfit's generated images, written by bench_vqgan
--write-generated), with the same recipe, until --seconds of wall time have passed since this script started; then
writes the parameters as a model file in memfit's names ("param.NAME"), which bench_vqgan --eval measures with the
same code as memfit's model.

The recipe (as memfit's trainer does it): every epoch a new order of the images, batches of --batch without
replacement (the last short batch dropped), a random --size x --size crop of each image and a horizontal flip with
probability 0.5, values to [-1, 1]. One update = the generator step (forward, L1 + factor * lambda * GAN +
codebook loss with beta 0.25 on the commitment term, lambda = 0.8 clamp(|grad_W L1| / (|grad_W GAN| + 1e-4), 0,
1e4) on decoder.conv_out.weight from two autograd.grad calls as taming does, backward, Adam) then the
discriminator step (the updated generator's forward under no_grad, factor * hinge loss, backward, Adam); factor 0
before --disc-start updates, 1 from there; both Adams with betas (0.5, 0.9), constant --lr. The wall-time check
comes after each update, as memfit finishes the update in progress when its SIGTERM arrives.

Prints progress lines on stderr and one JSON line on stdout (updates, images, seconds, images/s, peak RSS).
Usage: /usr/bin/python3 bench/vqgan_quality_torch.py --params INIT.safetensors --data DIR --out MODEL.safetensors
       --seconds 3600 [--preset low --size 64 --batch 8 --lr 1e-4 --disc-start 500 --threads 1 --seed 1]
"""
import time

T_START = time.time()  # the wall time counts from here, before torch is imported (memfit's counts from exec)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, "..", "tests"))
import steg_torch  # noqa: E402  (safetensors_read, safetensors_write)
import torch  # noqa: E402
import vqgan_torch  # noqa: E402  (the presets, the model and its training step, as the speed benchmark has them)
from PIL import Image  # noqa: E402

PRESETS = vqgan_torch.PRESETS


def load_folder(path):
    """every PNG/JPEG of the folder, sorted by name: uint8 [N, H, W, 3]"""
    names = sorted(f for f in os.listdir(path) if f.lower().endswith((".png", ".jpg", ".jpeg")))
    if not names:
        raise SystemExit("vqgan_quality_torch: %s holds no PNG or JPEG image" % path)
    return np.stack([np.asarray(Image.open(os.path.join(path, f)).convert("RGB")) for f in names])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--preset", default="low")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--disc-start", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--log-every", type=float, default=60)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    P, m, og, od, codes = vqgan_torch.model_init(a.preset, a.params, a.lr)
    W = P["decoder.conv_out.weight"]
    imgs = load_folder(a.data)  # [N, H, W, 3] uint8
    N, H, Wd, _ = imgs.shape
    if H < a.size or Wd < a.size:
        raise SystemExit("vqgan_quality_torch: the images are %dx%d, smaller than --size %d" % (Wd, H, a.size))
    per_epoch = N // a.batch
    print("PyTorch %s: VQGAN preset %s, %d images %dx%d, %d px crops, batch %d, lr %g, GAN from update %d, %d thread(s), %g s"
          % (torch.__version__, a.preset, N, Wd, H, a.size, a.batch, a.lr, a.disc_start, a.threads, a.seconds), file=sys.stderr)
    updates, images, order, pos = 0, 0, None, per_epoch
    t_train = time.time()
    last_log = t_train
    rec_sum, rec_n = 0.0, 0
    while time.time() - T_START < a.seconds:
        if pos == per_epoch:
            order, pos = rng.permutation(N), 0
        idx = order[pos * a.batch:(pos + 1) * a.batch]
        pos += 1
        xb = np.empty((a.batch, a.size, a.size, 3), dtype=np.uint8)
        for j, i in enumerate(idx):  # a random crop and a horizontal flip with probability 0.5
            y0, x0 = rng.integers(0, H - a.size + 1), rng.integers(0, Wd - a.size + 1)
            c = imgs[i, y0:y0 + a.size, x0:x0 + a.size]
            xb[j] = c[:, ::-1] if rng.random() < 0.5 else c
        x = torch.from_numpy(xb).permute(0, 3, 1, 2).float().div(255.0).mul(2).sub(1).contiguous()
        factor = 1.0 if updates >= a.disc_start else 0.0
        xrec, lam, d_loss = vqgan_torch.train_step(m, og, od, W, x, factor)  # the generator, then the discriminator
        updates += 1
        images += a.batch
        with torch.no_grad():
            rec_sum += float(10 * torch.log10(1.0 / torch.mean((0.5 * (xrec - x)) ** 2)))
            rec_n += 1
        now = time.time()
        if now - last_log >= a.log_every:
            print("  [torch] update %d  %.0f s  rec %.2f dB  lambda %.3g  d_loss %.4f  %.3f images/s"
                  % (updates, now - T_START, rec_sum / rec_n, float(lam), float(d_loss), images / (now - t_train)),
                  file=sys.stderr, flush=True)
            last_log, rec_sum, rec_n = now, 0.0, 0
    secs = time.time() - T_START
    steg_torch.safetensors_write(a.out, {"param." + k: v.detach().numpy().astype(np.float32) for k, v in P.items()})
    print(json.dumps({"impl": "torch-" + torch.__version__, "updates": updates, "images": images, "seconds": round(secs, 1),
                      "train_seconds": round(time.time() - t_train, 1), "images_per_s": images / max(time.time() - t_train, 1e-9),
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


if __name__ == "__main__":
    main()
