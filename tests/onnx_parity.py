#!/usr/bin/python3
"""onnx_parity.py — one training step of ONNX models exported by PyTorch, in memfit and in PyTorch, from the
same weights and batch: the loss, every parameter's gradient, the weights after one SGD and one Adam update and
batch norm's running statistics. Run by tests/cli_onnx_train.sh.

Usage: /usr/bin/python3 tests/onnx_parity.py MEMFIT TMPDIR [--rtol 1e-4]

Models: a small CNN (conv, batch norm, ReLU, max-pool, global average pool, linear; cross-entropy) and a small
transformer block (LayerNorm, two-head attention through MatMul and Softmax, a GELU MLP; MSE against a target).
memfit computes in f32; the reference is PyTorch in float64 from the same f32 values. Each tensor is compared
norm-wise, ||memfit - torch|| <= rtol ||torch|| (for the updated weights: their change in the step). The bound:
every value memfit computes is a sum of at most n = 256 products (the longest reduction of these models: batch
norm over N*H*W = 4*8*8, and the weight gradients over the same), so its rounding error is at most
gamma_n = n u / (1 - n u) ~ 1.5e-5 of the sum of the absolute products (u = 2^-24); rtol 1e-4 leaves a
factor of ~6 for the cancellation in batch norm's and softmax's backward. Exit 0 when everything matches, 1
when something does not, 2 when a file or the run failed.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")

_ST = {"F32": np.float32, "F64": np.float64, "I32": np.int32}


def st_write(path, tensors):
    """a plain safetensors file of numpy arrays (f32)"""
    header, off, blobs = {}, 0, []
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, dtype=np.float32)
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def st_read(path):
    with open(path, "rb") as f:
        data = f.read()
    (hl,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + hl])
    base = 8 + hl
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[name] = np.frombuffer(data[base + a:base + b], dtype=_ST[v["dtype"]]).reshape(v["shape"])
    return out


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.c2 = torch.nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = torch.nn.BatchNorm2d(16)
        self.fc = torch.nn.Linear(16, 5)

    def forward(self, x):  # x [N,3,8,8]
        h = torch.relu(self.bn1(self.c1(x)))                  # [N,8,8,8]
        h = torch.nn.functional.max_pool2d(h, 2)              # [N,8,4,4]
        h = torch.relu(self.bn2(self.c2(h)))                  # [N,16,4,4]
        h = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(h, 1), 1)  # [N,16]
        return self.fc(h)                                     # [N,5] logits


class Block(torch.nn.Module):
    """a pre-norm transformer block: x + attn(ln1(x)), then + mlp(ln2(.)), with GELU (erf form)"""

    def __init__(self, d=16, heads=2, hidden=32):
        super().__init__()
        self.h, self.dk = heads, d // heads
        self.ln1 = torch.nn.LayerNorm(d)
        self.q = torch.nn.Linear(d, d)
        self.k = torch.nn.Linear(d, d)
        self.v = torch.nn.Linear(d, d)
        self.o = torch.nn.Linear(d, d)
        self.ln2 = torch.nn.LayerNorm(d)
        self.f1 = torch.nn.Linear(d, hidden)
        self.f2 = torch.nn.Linear(hidden, d)

    def forward(self, x):  # x [N,T,D]
        n, t, d = x.shape
        y = self.ln1(x)

        def split(z):  # [N,T,D] -> [N,H,T,dk]
            return z.reshape(n, t, self.h, self.dk).transpose(1, 2)
        q, k, v = split(self.q(y)), split(self.k(y)), split(self.v(y))
        a = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) / (self.dk ** 0.5), dim=-1)  # [N,H,T,T]
        z = torch.matmul(a, v).transpose(1, 2).reshape(n, t, d)                             # [N,T,D]
        x = x + self.o(z)
        return x + self.f2(torch.nn.functional.gelu(self.f1(self.ln2(x))))                  # [N,T,D]


def export(model, x, path):
    model.eval()  # as docs/onnx.md says: BatchNormalization keeps its statistics as initializers
    torch.onnx.export(model, x, path, input_names=["x"], output_names=["y"], opset_version=13,
                      training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})


def torch_step(model, x, tgt, loss_kind, optim, lr):
    """float64 reference: loss, gradients, parameters and buffers after one update (training mode)"""
    m = model.double()
    m.train()
    outs = {}  # each biased layer's output: the terms its bias's gradient sums

    def keep(name):
        def hook(mod, inp, out):
            out.retain_grad()
            outs[name] = (out, 1 if isinstance(mod, torch.nn.Conv2d) else out.dim() - 1)
        return hook
    hooks = [mod.register_forward_hook(keep(n)) for n, mod in m.named_modules()
             if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)) and mod.bias is not None]
    xd = torch.tensor(x, dtype=torch.float64)
    out = m(xd)
    for h in hooks:
        h.remove()
    if loss_kind == "cross-entropy":
        loss = torch.nn.functional.cross_entropy(out, torch.tensor(tgt, dtype=torch.int64))
    else:
        loss = torch.nn.functional.mse_loss(out, torch.tensor(tgt, dtype=torch.float64))
    loss.backward()
    res = {"loss": np.array([loss.item()])}
    for name, p in m.named_parameters():
        res["grad." + name] = p.grad.detach().numpy().copy()
    # a bias's gradient sums the output's gradient over the positions: its rounding error is bounded by gamma_n times
    # the sum of their magnitudes, which matters when the sum cancels (a bias before batch norm, a key's bias under
    # softmax: zero in exact arithmetic)
    scale = {}
    for name, (o, axis) in outs.items():
        g = o.grad.detach().abs()
        dims = [d for d in range(g.dim()) if d != axis]
        scale["grad." + name + ".bias"] = float(torch.linalg.norm(g.sum(dim=dims)))
    res["__scale__"] = scale
    opt = torch.optim.SGD(m.parameters(), lr=lr) if optim == "sgd" else torch.optim.Adam(m.parameters(), lr=lr, eps=1e-8)
    opt.step()
    for name, p in m.named_parameters():
        res["param." + name] = p.detach().numpy().copy()
    for name, b in m.named_buffers():
        if b.dtype.is_floating_point:
            res["buffer." + name] = b.detach().numpy().copy()
    return res


def rel(a, b):
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    nb = float(np.linalg.norm(b))
    return float(np.linalg.norm(a - b)) / nb if nb > 0 else float(np.linalg.norm(a))


def run_case(memfit, tmp, name, make, x, tgt, loss_kind, optim, lr, rtol):
    torch.manual_seed(1)
    model = make()
    with torch.no_grad():  # batch norm's statistics away from 0 and 1, so their update is tested
        for nm, b in model.named_buffers():
            if nm.endswith("running_mean"):
                b.uniform_(-0.5, 0.5)
            elif nm.endswith("running_var"):
                b.uniform_(0.5, 2.0)
    path = os.path.join(tmp, name + ".onnx")
    export(model, torch.tensor(x), path)
    w0 = {("param." + k): p.detach().numpy().astype(np.float64).copy() for k, p in model.named_parameters()}
    feed = {"x": x, ("labels" if loss_kind == "cross-entropy" else "target"): np.asarray(tgt, dtype=np.float32)}
    fpath, dpath = os.path.join(tmp, name + "-feed.safetensors"), os.path.join(tmp, name + "-%s-dump.safetensors" % optim)
    st_write(fpath, feed)
    shape = "x".join(str(d) for d in x.shape)
    cmd = [memfit, "plan", path, "--input", "x=" + shape, "--loss", loss_kind, "--run", "1", "--feed", fpath, "--dump", dpath,
           "--optim", optim, "--lr", repr(lr), "--threads", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print("onnx_parity: %s: memfit failed (%d):\n%s%s" % (name, r.returncode, r.stdout[-1500:], r.stderr[-1500:]))
        return None
    mf = st_read(dpath)
    # memfit loaded the file's initializers bit for bit (the weights torch exported)
    init = {k: v.detach().numpy() for k, v in list(model.named_parameters()) + list(model.named_buffers()) if v.dtype.is_floating_point}
    for k, v in init.items():
        if "init." + k not in mf or not np.array_equal(mf["init." + k], v.astype(np.float32)):
            print("onnx_parity: %s: memfit's loaded '%s' differs from torch's weights" % (name, k))
            return None
    ref = torch_step(model, x, tgt, loss_kind, optim, lr)
    scale = ref.pop("__scale__")
    rows, missing, skipped = [], [], []
    for key, b in ref.items():
        if key not in mf:
            missing.append(key)
            continue
        a = mf[key]
        if a.size != b.size:
            print("onnx_parity: %s: %s has %d values in memfit, %d in torch" % (name, key, a.size, b.size))
            return None
        gkey = key if key.startswith("grad.") or "." not in key else "grad." + key.split(".", 1)[1]  # its gradient
        sc = scale.get(gkey, 0.0)
        zero = sc > 0 and float(np.linalg.norm(ref[gkey])) <= rtol * sc  # a gradient that is 0 in exact arithmetic
        if key.startswith("param."):  # the step's change of the weights
            if zero and optim == "adam":  # Adam divides the rounding noise by its own size: nothing to compare
                skipped.append(key[6:])
                continue
            d = a.astype(np.float64) - w0[key]
            rows.append((rel(d, b - w0[key]) if not zero else float(np.linalg.norm(d - (b - w0[key]))) / (lr * sc),
                         "delta." + key[6:]))
        elif key.startswith("grad.") and sc > 0:  # relative to the larger of the result and its terms' magnitudes
            nb = max(float(np.linalg.norm(b)), sc)
            rows.append((float(np.linalg.norm(a.astype(np.float64) - b)) / nb, key))
        else:
            rows.append((rel(a, b), key))
    if missing:
        print("onnx_parity: %s: memfit's dump lacks %s" % (name, ", ".join(missing)))
        return None
    bad = [r for r in rows if not r[0] <= rtol]
    worst = max(rows)
    ngrad = sum(1 for r in rows if r[1].startswith("grad."))
    print("onnx_parity: %-12s %-4s loss memfit %.9g torch %.9g (rel %.2e); %d gradients, %d updated weights, %d buffers; worst rel "
          "%.2e (%s)%s" % (name, optim, mf["loss"][0], ref["loss"][0], rel(mf["loss"], ref["loss"]), ngrad,
                           sum(1 for r in rows if r[1].startswith("delta.")), sum(1 for r in rows if r[1].startswith("buffer.")),
                           worst[0], worst[1], "" if not bad else "  FAIL: " + ", ".join("%s %.2e" % (n, v) for v, n in bad)))
    if skipped:
        print("    (Adam's update of %s not compared: its gradient is 0 in exact arithmetic, memfit's and torch's are "
              "rounding noise)" % ", ".join(skipped))
    return not bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("memfit")
    ap.add_argument("tmp")
    ap.add_argument("--rtol", type=float, default=1e-4)
    args = ap.parse_args()
    rng = np.random.default_rng(7)
    x_img = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)       # [N,3,8,8]
    labels = rng.integers(0, 5, size=4).astype(np.float32)             # [N]
    x_seq = rng.standard_normal((2, 8, 16)).astype(np.float32)         # [N,T,D]
    target = rng.standard_normal((2, 8, 16)).astype(np.float32)        # [N,T,D]
    ok, failed = 0, 0
    for optim, lr in (("sgd", 0.1), ("adam", 1e-3)):
        for name, make, x, tgt, loss in (("cnn", SmallCNN, x_img, labels, "cross-entropy"),
                                         ("transformer", Block, x_seq, target, "mse")):
            r = run_case(args.memfit, args.tmp, name, make, x, tgt, loss, optim, lr, args.rtol)
            if r is None:
                return 2
            ok += r
            failed += not r
    print("onnx_parity: %d of %d cases within rtol %.0e" % (ok, ok + failed, args.rtol))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
