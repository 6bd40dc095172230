# vqgan_perceptual.py — the perceptual term's reference for tests/test_vqgan.c (--perceptual): exports a small
# two-output feature network to ONNX, and recomputes the term and its gradient to decoder.conv_out.bias in float64.
# Usage: vqgan_perceptual.py export OUT.onnx | vqgan_perceptual.py check OUT.onnx DATA.bin (exit 0 when within bounds)
import struct
import sys

import numpy as np
import torch


class Features(torch.nn.Module):
    """conv 3->4 3x3 + ReLU (output 1), then conv 4->5 3x3 stride 2 (output 2): both outputs are compared."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(1234)
        self.c1 = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = torch.nn.Conv2d(4, 5, 3, stride=2, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.rand(p.shape, generator=g) * 0.8 - 0.4)

    def forward(self, x):
        h = torch.relu(self.c1(x))
        return h, self.c2(h)


def export(path):
    m = Features().eval()
    torch.onnx.export(m, torch.zeros(2, 3, 16, 16), path, input_names=["img"], output_names=["relu1", "conv2"],
                      dynamic_axes={"img": {0: "n", 2: "h", 3: "w"}}, opset_version=13)


def term(m, a, b):
    fa, fb = m(a), m(b)
    return sum(((ya - yb) ** 2).mean() for ya, yb in zip(fa, fb))


def check(path, data):
    raw = open(data, "rb").read()
    n, c, s = struct.unpack("<3i", raw[:12])
    k = n * c * s * s
    off = 12
    xrec = np.frombuffer(raw, "<f4", k, off).astype(np.float64).reshape(n, c, s, s)
    off += 4 * k
    x = np.frombuffer(raw, "<f4", k, off).astype(np.float64).reshape(n, c, s, s)
    off += 4 * k
    loss_mf = struct.unpack("<d", raw[off:off + 8])[0]
    gb_mf = np.frombuffer(raw, "<f8", c, off + 8)
    m = Features().double()
    xr = torch.tensor(xrec, requires_grad=True)
    a, b = xr * 0.5 + 0.5, torch.tensor(x) * 0.5 + 0.5
    loss = term(m, a, b)
    loss.backward()
    g = xr.grad.numpy()
    gb = g.sum(axis=(0, 2, 3))  # xrec = conv(h) + bias[c]: d/d bias[c] sums d/d xrec over channel c
    # bounds: memfit evaluates in f32. Each feature of the 2-conv network sums at most 27 + 36 + 2 products, so its
    # error is below gamma = 70 u (u = 2^-24) times the same network run on |weights| and |inputs| (mag); the term's
    # error follows from |(ya-yb)^2 - (ya'-yb')^2| <= 2|ya-yb| e + e^2 with e the two features' errors.
    u = 2.0 ** -24
    ma = Features().double()
    with torch.no_grad():
        for p, q in zip(ma.parameters(), m.parameters()):
            p.copy_(q.abs())
        bound = 0.0
        for (ya, yb), (mga, mgb) in zip(zip(m(a), m(b)), zip(ma(a.abs()), ma(b.abs()))):
            e = 70 * u * (mga + mgb) * 4  # x4: the [0,1] mapping and the subtraction before the convolutions
            bound += float(((2 * (ya - yb).abs() * e + e * e)).mean())
    gbound = 1e-3 * np.abs(g).sum(axis=(0, 2, 3)) + 1e-12  # per-term relative error 1e-3 over the channel's sum
    ok = abs(loss_mf - float(loss)) <= bound + 1e-30 and np.all(np.abs(gb_mf - gb) <= gbound)
    print("perceptual term: memfit %.9g, torch f64 %.9g (bound %.3g); d/d conv_out.bias memfit %s torch %s (bounds %s)"
          % (loss_mf, float(loss), bound, np.array2string(gb_mf, precision=6), np.array2string(gb, precision=6),
             " ".join("%.3g" % v for v in gbound)))
    return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1] == "export":
        export(sys.argv[2])
        sys.exit(0)
    sys.exit(check(sys.argv[2], sys.argv[3]))
