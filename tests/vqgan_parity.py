#!/usr/bin/python3
"""vqgan_parity.py — one VQGAN generator step and one discriminator step in PyTorch (float64), written after
taming-transformers (VQModel, VectorQuantizer / EMAVectorQuantizer, NLayerDiscriminator, VQLPIPSWithDiscriminator
without the perceptual term), from the weights and input memfit used; compared with memfit's results. Called by
tests/test_vqgan.c.

Usage: /usr/bin/python3 tests/vqgan_parity.py IN.safetensors [--rtol 1e-4]

IN holds param.<name> (memfit's parameters and plain states with taming's names), x [B,3,S,S], memfit.gen_loss,
memfit.lambda, memfit.nll, memfit.g_loss, memfit.q_loss, memfit.ggrad.<generator param>, memfit.param1.<name> (after the
generator's Adam update and the EMA codebook update), memfit.d_loss and memfit.dgrad.<discriminator param>; the
metadata gives the model's shape and the quantiser. The generator step: loss = nll + lambda * g_loss + q_loss with
lambda = 0.8 * |grad_W nll| / (|grad_W g_loss| + 1e-4) on decoder.conv_out.weight (taming's
calculate_adaptive_weight, through torch.autograd.grad: two graphs, as taming does). The Adam update (betas 0.5,
0.9) is checked from memfit's own gradients; the discriminator step runs on memfit's updated generator, so each
step is compared on its own. Each tensor norm-wise: ||memfit - torch|| <= rtol ||torch|| + 2^-24 * 64 *
sqrt(n) * max|torch|. Exit 0 when all match, 1 when one does not, 2 on a bad file.
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


class Model:
    def __init__(self, P, meta):
        self.P = P
        self.ch = int(meta["ch"])
        self.mult = [int(v) for v in meta["mult"].split(",")]
        self.levels = int(meta["levels"])
        self.res_blocks = int(meta["res_blocks"])
        self.z = int(meta["z_channels"])
        self.embed = int(meta["embed_dim"])
        self.beta = float(meta["beta"])
        self.ema = int(meta["ema"])
        self.disc_layers = int(meta["disc_layers"])

    def gn(self, h, name):
        C = h.shape[1]
        g = 32
        while C % g:
            g //= 2
        return F.group_norm(h, g, self.P[name + ".weight"], self.P[name + ".bias"], 1e-6)

    def conv(self, h, name, stride=1, pad=1):
        return F.conv2d(h, self.P[name + ".weight"], self.P.get(name + ".bias"), stride, pad)

    def res(self, h, base, cin, cout):
        t = self.conv(F.silu(self.gn(h, base + ".norm1")), base + ".conv1")
        t = self.conv(F.silu(self.gn(t, base + ".norm2")), base + ".conv2")
        if cin != cout:
            h = self.conv(h, base + ".nin_shortcut", 1, 0)
        return h + t

    def attn(self, h, base):
        B, C, H, W = h.shape
        t = self.gn(h, base + ".norm")
        q = self.conv(t, base + ".q", 1, 0).reshape(B, C, H * W).permute(0, 2, 1)
        k = self.conv(t, base + ".k", 1, 0).reshape(B, C, H * W)
        v = self.conv(t, base + ".v", 1, 0).reshape(B, C, H * W)
        w = F.softmax(torch.bmm(q, k) * (int(C) ** (-0.5)), dim=2)
        out = torch.bmm(v, w.permute(0, 2, 1)).reshape(B, C, H, W)
        return h + self.conv(out, base + ".proj_out", 1, 0)

    def encoder(self, x):
        h = self.conv(x, "encoder.conv_in")
        cin = self.ch
        for i in range(self.levels):
            cout = self.ch * self.mult[i]
            for j in range(self.res_blocks):
                h = self.res(h, "encoder.down.%d.block.%d" % (i, j), cin, cout)
                cin = cout
                if i == self.levels - 1:
                    h = self.attn(h, "encoder.down.%d.attn.%d" % (i, j))
            if i != self.levels - 1:
                h = self.conv(F.pad(h, (0, 1, 0, 1)), "encoder.down.%d.downsample.conv" % i, 2, 0)
        h = self.res(h, "encoder.mid.block_1", cin, cin)
        h = self.attn(h, "encoder.mid.attn_1")
        h = self.res(h, "encoder.mid.block_2", cin, cin)
        return self.conv(F.silu(self.gn(h, "encoder.norm_out")), "encoder.conv_out")

    def decoder(self, z):
        cin = self.ch * self.mult[-1]
        h = self.conv(z, "decoder.conv_in")
        h = self.res(h, "decoder.mid.block_1", cin, cin)
        h = self.attn(h, "decoder.mid.attn_1")
        h = self.res(h, "decoder.mid.block_2", cin, cin)
        for i in reversed(range(self.levels)):
            cout = self.ch * self.mult[i]
            for j in range(self.res_blocks + 1):
                h = self.res(h, "decoder.up.%d.block.%d" % (i, j), cin, cout)
                cin = cout
                if i == self.levels - 1:
                    h = self.attn(h, "decoder.up.%d.attn.%d" % (i, j))
            if i != 0:
                h = self.conv(F.interpolate(h, scale_factor=2.0, mode="nearest"), "decoder.up.%d.upsample.conv" % i)
        return self.conv(F.silu(self.gn(h, "decoder.norm_out")), "decoder.conv_out")

    def quantize(self, z):
        """taming's VectorQuantizer (legacy=False: beta on the commitment term) / EMAVectorQuantizer"""
        e = self.P["quantize.embedding.weight"]
        zf = z.permute(0, 2, 3, 1).reshape(-1, self.embed)
        d = (zf ** 2).sum(1, keepdim=True) + (e ** 2).sum(1) - 2 * zf @ e.t()
        idx = torch.argmin(d, dim=1)
        zq = e[idx]
        if self.ema:
            loss = self.beta * torch.mean((zq.detach() - zf) ** 2)
        else:
            loss = self.beta * torch.mean((zq.detach() - zf) ** 2) + torch.mean((zq - zf.detach()) ** 2)
        zq = zf + (zq - zf).detach()
        B, _, H, W = z.shape
        return zq.reshape(B, H, W, self.embed).permute(0, 3, 1, 2), loss, zf, idx

    def forward(self, x):
        h = self.conv(self.encoder(x), "quant_conv", 1, 0)
        zq, qloss, zf, idx = self.quantize(h)
        return self.decoder(self.conv(zq, "post_quant_conv", 1, 0)), qloss, zf, idx

    def disc(self, x):
        P, pre = self.P, "loss.discriminator.main."
        h = F.leaky_relu(F.conv2d(x, P[pre + "0.weight"], P[pre + "0.bias"], 2, 1), 0.2)
        k = 2
        for n in range(1, self.disc_layers + 1):
            stride = 2 if n < self.disc_layers else 1
            h = F.conv2d(h, P[pre + "%d.weight" % k], None, stride, 1)
            h = F.batch_norm(h, None, None, P[pre + "%d.weight" % (k + 1)], P[pre + "%d.bias" % (k + 1)], True, 0.1, 1e-5)
            h = F.leaky_relu(h, 0.2)
            k += 3
        return F.conv2d(h, P[pre + "%d.weight" % k], P[pre + "%d.bias" % k], 1, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--rtol", type=float, default=1e-4)
    args = ap.parse_args()
    try:
        T, meta = steg_torch.safetensors_read(args.path)
    except (OSError, ValueError, KeyError) as e:
        print("vqgan_parity: %s" % e)
        return 2
    torch.set_default_dtype(torch.float64)
    tt = lambda a: torch.tensor(np.asarray(a, dtype=np.float64))  # noqa: E731
    P = {k[6:]: tt(v).requires_grad_(True) for k, v in T.items() if k.startswith("param.")}
    m = Model(P, meta)
    x = tt(T["x"])
    fails = []

    def cmp(name, got, want, scale=None):
        """scale: the largest |value| of the tensor's kind (e.g. every gradient of the step), for the f32 floor"""
        got = np.asarray(got, dtype=np.float64).ravel()
        want = want.detach().numpy().ravel() if torch.is_tensor(want) else np.asarray(want, dtype=np.float64).ravel()
        err = float(np.linalg.norm(got - want))
        ref = float(np.linalg.norm(want))
        if scale is None:
            scale = float(np.abs(want).max()) if want.size else 0
        floor = 2.0 ** -24 * 64 * math.sqrt(want.size) * scale
        ok = err <= args.rtol * ref + floor
        if not ok:
            fails.append("%s: |memfit - torch| %.3g vs |torch| %.3g" % (name, err, ref))
        return err / (args.rtol * ref + floor) if args.rtol * ref + floor > 0 else 0.0

    # ---- the generator step ----
    xrec, qloss, zf, idx = m.forward(x)
    nll = torch.mean(torch.abs(x - xrec))
    g_loss = -torch.mean(m.disc(xrec))
    W = P["decoder.conv_out.weight"]
    nll_g = torch.autograd.grad(nll, W, retain_graph=True)[0]
    g_g = torch.autograd.grad(g_loss, W, retain_graph=True)[0]
    lam = torch.clamp(torch.norm(nll_g) / (torch.norm(g_g) + 1e-4), 0.0, 1e4).detach() * float(meta["disc_weight"])
    loss = nll + lam * g_loss + float(meta["codebook_weight"]) * qloss
    gen = sorted(k[len("memfit.ggrad."):] for k in T if k.startswith("memfit.ggrad."))
    grads = torch.autograd.grad(loss, [P[k] for k in gen], allow_unused=True)
    cmp("lambda", T["memfit.lambda"], lam)
    cmp("nll", T["memfit.nll"], nll)
    cmp("g_loss", T["memfit.g_loss"], g_loss)
    cmp("q_loss", T["memfit.q_loss"], qloss)
    cmp("gen_loss (nll + g_loss + q_loss)", T["memfit.gen_loss"], nll + g_loss + qloss)
    worst = 0.0
    grads = [gt if gt is not None else torch.zeros_like(P[k]) for k, gt in zip(gen, grads)]
    gscale = max(float(gt.abs().max()) for gt in grads)
    for k, gt in zip(gen, grads):
        worst = max(worst, cmp("generator gradient " + k, T["memfit.ggrad." + k], gt, gscale))
    # Adam (betas 0.5, 0.9, eps 1e-8), first step, from memfit's gradients
    lr = float(meta["lr"])
    for k in gen:
        g = T["memfit.ggrad." + k].astype(np.float64)
        w0 = T["param." + k].astype(np.float64)
        mh, vh = g, g * g  # bias-corrected first moments
        cmp("Adam update " + k, T["memfit.param1." + k] - w0, -lr * mh / (np.sqrt(vh) + 1e-8), lr * 64)
    # the EMA codebook (taming's EMAVectorQuantizer; counts start at 0, embed_avg at the codebook)
    if m.ema:
        K = int(meta["codes"])
        dec, eps = float(meta["decay"]), float(meta["eps"])
        onehot = F.one_hot(idx, K).double()
        cs = (1 - dec) * onehot.sum(0)
        avg = dec * P["quantize.embedding.weight"].detach() + (1 - dec) * (onehot.t() @ zf.detach())
        n = cs.sum()
        sm = (cs + eps) / (n + K * eps) * n
        cmp("EMA cluster_size", T["memfit.param1.quantize.cluster_size"], cs)
        cmp("EMA embed_avg", T["memfit.param1.quantize.embed_avg"], avg)
        cmp("EMA codebook", T["memfit.param1.quantize.embedding.weight"], avg / sm.unsqueeze(1))

    # ---- the discriminator step, on memfit's updated generator ----
    P2 = {k[len("memfit.param1."):]: tt(v).requires_grad_(True) for k, v in T.items() if k.startswith("memfit.param1.")}
    m2 = Model(P2, meta)
    with torch.no_grad():
        xrec2, _, _, _ = m2.forward(x)
    real, fake = m2.disc(x), m2.disc(xrec2)
    d_loss = 0.5 * (torch.mean(F.relu(1.0 - real)) + torch.mean(F.relu(1.0 + fake)))
    dis = sorted(k[len("memfit.dgrad."):] for k in T if k.startswith("memfit.dgrad."))
    dgrads = torch.autograd.grad(d_loss, [P2[k] for k in dis])
    cmp("d_loss", T["memfit.d_loss"], d_loss)
    dscale = max(float(gt.abs().max()) for gt in dgrads)
    for k, gt in zip(dis, dgrads):
        worst = max(worst, cmp("discriminator gradient " + k, T["memfit.dgrad." + k], gt, dscale))
    print("  vqgan parity (%s codebook): lambda %.6g, %d generator and %d discriminator gradients, worst error %.3f of the allowed%s"
          % ("EMA" if m.ema else "gradient", float(lam), len(gen), len(dis), worst, "" if not fails else ", %d FAILED" % len(fails)))
    for f in fails[:20]:
        print("  FAIL " + f)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
