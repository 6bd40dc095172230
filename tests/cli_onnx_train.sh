#!/usr/bin/env bash
# cli_onnx_train.sh — `memfit train onnx`: a small CNN exported by Debian's python3-torch trained on labelled
# images (generated IDX files and a folder of class sub-folders of PNGs) through the common trainer: the loss
# falls, memory measured == planned, OUT/model.onnx holds the trained weights (re-imported by memfit, equal to
# the last checkpoint's), a stopped and resumed run ends with the same file, --budget, mse, and clear errors.
# Usage: cli_onnx_train.sh MEMFIT
set -u
M=$(realpath "${1:?usage: cli_onnx_train.sh path/to/memfit}")
export MEMFIT_CALIBRATION=1e10,5e9,5e9,1e10 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
tmp=${KEEP_TMP:-$(mktemp -d)}; [ -n "${KEEP_TMP:-}" ] || trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok() { if eval "$2"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1"; sed 's/^/    /' "$tmp/out" "$tmp/err" | tail -8; fi; }
run() { "$M" "$@" >"$tmp/out" 2>"$tmp/err"; echo $? >"$tmp/rc"; }
rc() { cat "$tmp/rc"; }

if "$M" plan --list-unsupported /dev/null 2>&1 | grep -q "without ONNX support"; then
  echo "cli_onnx_train: SKIP (memfit built without ONNX support)"; exit 0
fi
PY=/usr/bin/python3
if ! "$PY" -c "import torch, numpy" 2>/dev/null; then echo "cli_onnx_train: SKIP (no python3-torch to export models)"; exit 0; fi

# the data: 16x16 gray images of 4 classes (stripes either way, a checkerboard, a square; noise elsewhere) as IDX files and
# as a folder of class sub-folders of PNGs; the models: a CNN for them with a dynamic batch (and two heads: one
# of 4 classes, one of 3) and an autoencoder
cat >"$tmp/nets.py" <<'EOF'
# the modules the test exports (make.py) and loads back (torch_load.py)
import torch
class Net(torch.nn.Module):
    def __init__(s, k):
        super().__init__()
        s.c1 = torch.nn.Conv2d(1, 8, 3, padding=1, bias=False); s.bn1 = torch.nn.BatchNorm2d(8)
        s.c2 = torch.nn.Conv2d(8, 16, 3, padding=1); s.bn2 = torch.nn.BatchNorm2d(16); s.fc = torch.nn.Linear(16, k)
    def forward(s, x):
        h = torch.nn.functional.max_pool2d(torch.relu(s.bn1(s.c1(x))), 2)
        h = torch.relu(s.bn2(s.c2(h)))
        return s.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(h, 1), 1))
class AE(torch.nn.Module):
    def __init__(s):
        super().__init__(); s.e = torch.nn.Conv2d(1, 4, 3, padding=1); s.d = torch.nn.Conv2d(4, 1, 3, padding=1)
    def forward(s, x): return torch.sigmoid(s.d(torch.relu(s.e(x))))
class Two(torch.nn.Module):
    def forward(s, x, y): return x + y
class OwnCE(torch.nn.Module):  # a model that computes its own loss: F.cross_entropy (SoftmaxCrossEntropyLoss)
    def __init__(s, net): super().__init__(); s.net = net
    def forward(s, x, labels): return torch.nn.functional.cross_entropy(s.net(x), labels)
class OwnNLL(OwnCE):  # F.nll_loss after F.log_softmax (LogSoftmax, NegativeLogLikelihoodLoss)
    def forward(s, x, labels): return torch.nn.functional.nll_loss(torch.log_softmax(s.net(x), 1), labels)
class OwnAE(torch.nn.Module):  # an autoencoder's own mean squared error: no labels
    def __init__(s): super().__init__(); s.ae = AE()
    def forward(s, x): return ((s.ae(x) - x) ** 2).mean()
EOF
cat >"$tmp/make.py" <<'EOF'
import os, struct, sys, warnings, zlib
import numpy as np, torch
warnings.filterwarnings("ignore")
out = sys.argv[1]
rng = np.random.default_rng(3)
n = 512
labels = rng.integers(0, 4, size=n).astype(np.uint8)
img = (rng.random((n, 16, 16)) * 80).astype(np.uint8)
rr, cc = np.mgrid[0:16, 0:16]
pattern = [(rr // 2) % 2 == 0, (cc // 2) % 2 == 0, ((rr // 2) + (cc // 2)) % 2 == 0, (rr >= 4) & (rr < 12) & (cc >= 4) & (cc < 12)]
for i, y in enumerate(labels):  # horizontal stripes, vertical stripes, a checkerboard, a square
    img[i][pattern[y]] = 150 + rng.integers(0, 100)
with open(f"{out}/data-images-idx3-ubyte", "wb") as f:
    f.write(struct.pack(">IIII", 0x803, n, 16, 16)); f.write(img.tobytes())
with open(f"{out}/data-labels-idx1-ubyte", "wb") as f:
    f.write(struct.pack(">II", 0x801, n)); f.write(labels.tobytes())
def png(path, a):  # 8-bit gray PNG
    raw = b"".join(b"\0" + a[r].tobytes() for r in range(a.shape[0]))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", a.shape[1], a.shape[0], 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
for i in range(96):
    d = f"{out}/folder/class{labels[i]}"
    os.makedirs(d, exist_ok=True)
    png(f"{d}/{i:03d}.png", img[i])
os.makedirs(f"{out}/unlabelled", exist_ok=True)
png(f"{out}/unlabelled/a.png", img[0]); png(f"{out}/unlabelled/b.png", img[1])
sys.path.insert(0, out)
from nets import *
torch.manual_seed(0)
def export(m, name, args, names, fixed=False):
    m.eval()
    torch.onnx.export(m, args, f"{out}/{name}.onnx", input_names=names, output_names=["y"], opset_version=13,
                      training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
                      dynamic_axes=None if fixed else {**{k: {0: "batch"} for k in names}, "y": {0: "batch"}})
x = torch.randn(2, 1, 16, 16)
net4 = Net(4)
export(net4, "cnn", x, ["x"]); export(Net(3), "cnn3", x, ["x"]); export(AE(), "ae", x, ["x"])
export(Net(4), "fixed", torch.randn(8, 1, 16, 16), ["x"], fixed=True); export(Two(), "two", (x, x), ["a", "b"])
lab = torch.zeros(2, dtype=torch.long)  # the same network as cnn.onnx, with its loss inside; the labels input first
export(OwnCE(net4), "own", (x, lab), ["x", "labels"]); export(OwnNLL(net4), "own_nll", (x, lab), ["x", "labels"])
export(OwnAE(), "own_ae", x, ["x"])
EOF
if ! "$PY" "$tmp/make.py" "$tmp" 2>"$tmp/make.err"; then echo "cli_onnx_train: SKIP (the export failed:)"; tail -3 "$tmp/make.err"; exit 0; fi
D=$tmp/data-images-idx3-ubyte
common=(--threads 1 --workers 1 --log-every 0 --val-split 0.1)

run train onnx --help
ok "--help lists the workload's settings" '[ "$(rc)" = 0 ] && grep -q -- "--model FILE.onnx" $tmp/out && grep -q "model.onnx" $tmp/out'

# ---- a run on the IDX data: the loss falls, memory measured == planned, the model written as ONNX ----
run train onnx --model "$tmp/cnn.onnx" --data "$D" --batch 16 --steps 40 --epoch-steps 20 --lr 1e-2 --out "$tmp/a" \
  --loss-log "$tmp/a.loss" --json "${common[@]}"
ok "train onnx on IDX data runs to the end" '[ "$(rc)" = 0 ] && [ -f $tmp/a/model.onnx ] && [ -f $tmp/a/checkpoint.safetensors ]'
ok "the header names the model, its input and the data" 'grep -q "memfit train onnx: .*cnn.onnx (ONNX opset 13).*input .x. \[16,1,16,16\]" $tmp/out && grep -q "4 classes" $tmp/out'
ok "validation reports loss and top-1" 'grep -q "validation loss .*top-1" $tmp/out'
first=$(head -5 "$tmp/a.loss" | awk '{s += $2} END {print s / NR}')
last=$(tail -5 "$tmp/a.loss" | awk '{s += $2} END {print s / NR}')
echo "cli_onnx_train: loss of the first 5 updates $first, of the last 5 $last"
ok "the loss falls to under half (first 5 updates $first, last 5 $last)" 'awk -v a="$first" -v b="$last" "BEGIN {exit !(b < a / 2)}"'
ok "memory measured == planned in every arena (the --json record)" \
  'tail -1 $tmp/out | "$PY" -c "import json,sys; r = json.loads(sys.stdin.read()); a = r[\"arenas\"]; sys.exit(not a or any(v[\"planned\"] != v[\"measured\"] for v in a.values()))"'

# ---- the written model: memfit re-imports it, and its weights are the last checkpoint's, bit for bit ----
run plan "$tmp/a/model.onnx" --input x=4x1x16x16 --run 1 --dump "$tmp/re.safetensors" --threads 1
ok "memfit re-imports OUT/model.onnx and trains a step of it" '[ "$(rc)" = 0 ] && grep -q "measured == planned: yes" $tmp/out'
cat >"$tmp/cmp.py" <<'EOF'
import json, struct, sys
import numpy as np
def read(p):
    d = open(p, "rb").read(); (n,) = struct.unpack("<Q", d[:8]); h = json.loads(d[8:8 + n]); out = {}
    for k, v in h.items():
        if k != "__metadata__" and v["dtype"] == "F32":
            a, b = v["data_offsets"]; out[k] = np.frombuffer(d[8 + n + a:8 + n + b], dtype=np.float32)
    return out
re, ck = read(sys.argv[1]), read(sys.argv[2])
init = {k[5:]: v for k, v in re.items() if k.startswith("init.")}
want = {k.split(".", 1)[1]: v for k, v in ck.items() if k.startswith("param.") or k.startswith("buffer.")}
bad = [k for k in want if k not in init or not np.array_equal(init[k], want[k])]
print("compared %d tensors; differing or missing: %s" % (len(want), bad or "none"))
sys.exit(1 if bad or not want else 0)
EOF
ok "OUT/model.onnx holds the trained parameters and batch-norm statistics of the last checkpoint" \
  '"$PY" $tmp/cmp.py $tmp/re.safetensors $tmp/a/checkpoint.safetensors >$tmp/out 2>&1'
cat >"$tmp/torch_load.py" <<'EOF'
# OUT/model.onnx in ONNX's and PyTorch's own tools: onnx.checker accepts it, its initializers load into the module it was
# exported from (every tensor of the state dict, by name), and that module classifies the training images as well as
# memfit's validation said
import struct, sys, warnings
import numpy as np, onnx, onnx.numpy_helper, torch
warnings.filterwarnings("ignore")
sys.path.insert(0, sys.argv[2])
from nets import Net
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)
# a tensor torch's exporter had shared by value through an Identity is written as "NAME:memfit" (docs/onnx.md)
init = {t.name[:-7] if t.name.endswith(":memfit") else t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
net = Net(4)
want = [k for k in net.state_dict() if not k.endswith("num_batches_tracked")]
missing = [k for k in want if k not in init]
net.load_state_dict({k: torch.from_numpy(init[k].copy()) for k in want if k in init}, strict=False)
d = open(sys.argv[3], "rb").read(); l = open(sys.argv[4], "rb").read()
n, h, w = struct.unpack(">III", d[4:16])
x = torch.from_numpy(np.frombuffer(d[16:], np.uint8).reshape(n, 1, h, w).astype(np.float32) / 255)
y = torch.from_numpy(np.frombuffer(l[8:], np.uint8).astype(np.int64))
net.eval()
with torch.no_grad():
    acc = (net(x).argmax(1) == y).float().mean().item()
print("onnx.checker: ok; %d of %d state-dict tensors loaded (missing: %s); PyTorch top-1 on the %d training images %.3f"
      % (len(want) - len(missing), len(want), missing or "none", n, acc))
sys.exit(1 if missing or acc < 0.9 else 0)  # 0.78 with the running statistics left at 0 and 1
EOF
if "$PY" -c "import onnx" 2>/dev/null; then
  ok "OUT/model.onnx passes onnx.checker and loads into the PyTorch module, which classifies the images" \
    '"$PY" $tmp/torch_load.py $tmp/a/model.onnx $tmp $D ${D/images-idx3/labels-idx1} >$tmp/out 2>&1'
  cat "$tmp/out"
else
  echo "cli_onnx_train: (no python3-onnx: onnx.checker and the PyTorch load of OUT/model.onnx skipped; scripts/deps.sh installs it)"
fi

# ---- stopped and resumed: the same losses and the same model file as the uninterrupted run ----
run train onnx --model "$tmp/cnn.onnx" --data "$D" --batch 16 --steps 40 --epoch-steps 20 --lr 1e-2 --out "$tmp/b" \
  --loss-log "$tmp/b.loss" --stop-after 25 "${common[@]}"
ok "--stop-after 25 stops with a checkpoint" '[ "$(rc)" = 0 ] && grep -q "resume with --resume" $tmp/out'
run train onnx --model "$tmp/cnn.onnx" --data "$D" --batch 16 --steps 40 --epoch-steps 20 --lr 1e-2 --out "$tmp/b" \
  --loss-log "$tmp/b.loss" --resume "$tmp/b/checkpoint.safetensors" "${common[@]}"
ok "--resume continues to the end" '[ "$(rc)" = 0 ]'
ok "the resumed run's model.onnx is byte-identical to the uninterrupted run's" 'cmp -s $tmp/a/model.onnx $tmp/b/model.onnx'
ok "the resumed run's losses are the uninterrupted run's" 'diff <(tail -15 $tmp/a.loss) <(tail -15 $tmp/b.loss) >/dev/null'
run train onnx --model "$tmp/cnn.onnx" --data "$D" --batch 16 --steps 40 --aug flip-crop --out "$tmp/b" --resume "$tmp/b/checkpoint.safetensors" "${common[@]}"
ok "--resume with another --aug: refused, naming it" '[ "$(rc)" != 0 ] && grep -q -- "--aug" $tmp/err'
run train onnx --model "$tmp/cnn.onnx" --data "$D" --batch 16 --steps 1 --size 20 --out "$tmp/b2" "${common[@]}"
ok "--size the model does not take: the axis and both sizes" '[ "$(rc)" = 1 ] && grep -q "at axis 2 (20, the model fixes 16)" $tmp/err'

# ---- a folder of class sub-folders, --budget, mse ----
run train onnx --model "$tmp/cnn.onnx" --data "$tmp/folder" --batch 8 --steps 3 --out "$tmp/c" "${common[@]}"
ok "a folder of class sub-folders of PNGs" '[ "$(rc)" = 0 ] && grep -q "4 classes" $tmp/out && [ -f $tmp/c/model.onnx ]'
run train onnx --model "$tmp/cnn.onnx" --data "$D" --batch 32 --steps 2 --budget 600KiB --out "$tmp/d" "${common[@]}"
ok "--budget: the search chooses the micro-batch that fits" '[ "$(rc)" = 0 ] && grep -q "budget .*: chose" $tmp/out'
run train onnx --model "$tmp/cnn.onnx" --data "$D" --batch 8 --steps 2 --loss mse --out "$tmp/e" "${common[@]}"
ok "--loss mse against one-hot labels" '[ "$(rc)" = 0 ] && grep -q "one-hot labels" $tmp/out'
run train onnx --model "$tmp/ae.onnx" --data "$tmp/unlabelled" --batch 2 --steps 2 --loss mse --val-split 0 --out "$tmp/f" --threads 1 --log-every 0
ok "--loss mse on an autoencoder: unlabelled images are their own target" '[ "$(rc)" = 0 ] && grep -q "against the input images" $tmp/out'

# ---- memfit plan onnx: the same model through the workload's settings ----
run plan onnx --model "$tmp/cnn.onnx" --batch 16 --threads 1
ok "memfit plan onnx --model: the plan of a training step" '[ "$(rc)" = 0 ] && grep -q "activations + workspace" $tmp/out && grep -q "loader staging" $tmp/out'
run plan onnx --model "$tmp/cnn.onnx" --batch 64 --budget 600KiB --threads 1
ok "memfit plan onnx --budget: a smaller micro-batch" '[ "$(rc)" = 0 ] && grep -Eq "micro-batch (1|2|4|8|16|32) x" $tmp/out'
run plan onnx --batch 16
ok "memfit plan onnx without --model: usage error" '[ "$(rc)" = 2 ] && grep -q -- "--model FILE.onnx is required" $tmp/err'

# ---- errors ----
run train onnx --data "$D"
ok "no --model: usage error naming it" '[ "$(rc)" = 2 ] && grep -q -- "--model FILE.onnx is required" $tmp/err'
run train onnx --model "$tmp/cnn.onnx"
ok "no --data: usage error naming it" '[ "$(rc)" = 2 ] && grep -q -- "--data DIR|IDX is required" $tmp/err'
run train onnx --model "$tmp/missing.onnx" --data "$D"
ok "a missing model file: named" '[ "$(rc)" = 2 ] && grep -q "missing.onnx: cannot open" $tmp/err'
run train onnx --model "$tmp/two.onnx" --data "$D"
ok "two data inputs: asks which one the images feed" '[ "$(rc)" = 2 ] && grep -q -- "--input NAME" $tmp/err'
run train onnx --model "$tmp/fixed.onnx" --data "$D" --batch 16 --micro-batch 4
ok "a fixed batch axis and another micro-batch: said" '[ "$(rc)" != 0 ] && grep -q "fixes the batch to 8" $tmp/err'
run train onnx --model "$tmp/cnn3.onnx" --data "$D" --batch 8 --steps 1 --out "$tmp/g" "${common[@]}"
ok "more classes in the data than the model's outputs: said" '[ "$(rc)" = 1 ] && grep -q "has 4 classes; the model.s output \[N,3\]" $tmp/err'
run train onnx --model "$tmp/cnn.onnx" --data "$tmp/unlabelled" --batch 2 --steps 1 --val-split 0 --out "$tmp/h" --threads 1
ok "unlabelled images with cross-entropy: said" '[ "$(rc)" = 1 ] && grep -q "not inside a class folder" $tmp/err'
run train onnx --model "$tmp/cnn.onnx" --data "$D" --batch 8 --steps 1 --loss own --out "$tmp/i" "${common[@]}"
ok "--loss own on a model whose output is not one number: said" '[ "$(rc)" = 1 ] && grep -q "first output is its loss" $tmp/err'
run train onnx --model "$tmp/two.onnx" --data "$D" --input a --loss own --steps 1 --out "$tmp/i" "${common[@]}"
ok "--loss own with a second input that is not integer labels: named" '[ "$(rc)" = 2 ] && grep -q "input .b. is not the images" $tmp/err'
run train onnx --model "$tmp/own.onnx" --data "$D" --loss nll
ok "an unknown loss: usage error listing own" '[ "$(rc)" = 2 ] && grep -q "not cross-entropy, mse or own" $tmp/err'

# ---- --loss own: the model computes its loss (F.cross_entropy, F.nll_loss of F.log_softmax, an autoencoder's mse) ----
# own.onnx and own_nll.onnx are cnn.onnx's network and weights with the loss inside, so the same run must give run a's losses
for k in own own_nll; do
  run train onnx --model "$tmp/$k.onnx" --data "$D" --loss own --batch 16 --steps 40 --epoch-steps 20 --lr 1e-2 --out "$tmp/$k" \
    --loss-log "$tmp/$k.loss" --json "${common[@]}"
  ok "--loss own ($k.onnx): trains, its labels input fed the class labels" '[ "$(rc)" = 0 ] && grep -q "its labels input fed the class labels" $tmp/out && [ -f $tmp/$k/model.onnx ]'
  ok "--loss own ($k.onnx): memory measured == planned in every arena" \
    'tail -1 $tmp/out | "$PY" -c "import json,sys; r = json.loads(sys.stdin.read()); a = r[\"arenas\"]; sys.exit(not a or any(v[\"planned\"] != v[\"measured\"] for v in a.values()))"'
  # the same ops in the same order as cnn.onnx + --loss cross-entropy: the losses agree to f32 rounding (printed with 6 digits)
  ok "--loss own ($k.onnx): the 40 losses are cross-entropy's on cnn.onnx (run a) to 1e-5 relative" \
    'awk "NR == FNR { a[\$1] = \$2; next } (\$1 in a) { n++; d = a[\$1] - \$2; if (d < 0) d = -d; if (d > 1e-5 * a[\$1] + 1e-6) bad++ } END { exit !(n == 40 && !bad) }" $tmp/a.loss $tmp/$k.loss'
done
run train onnx --model "$tmp/own_ae.onnx" --data "$tmp/unlabelled" --loss own --batch 2 --steps 2 --val-split 0 --out "$tmp/j" --threads 1 --log-every 0
ok "--loss own without a labels input: unlabelled images, the model's own mse" '[ "$(rc)" = 0 ] && grep -q "own loss output (from the images alone)" $tmp/out'

echo "cli_onnx_train: $pass passed, $fail failed"
[ "$fail" = 0 ]
