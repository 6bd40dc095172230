#!/usr/bin/env bash
# cli_python.sh — the Python module (python/memfit, ctypes over libmemfit.so) from the source tree with Debian's
# python3-torch: memfit.plan on torchvision's resnet18 (random weights, nothing downloaded) equals `memfit plan`
# on the same exported file, with and without --budget; memfit.fit gives the settings; errors are exceptions.
# Usage: cli_python.sh MEMFIT
set -u
M=$(realpath "${1:?usage: cli_python.sh path/to/memfit}")
root=$(cd "$(dirname "$0")/.." && pwd)
export MEMFIT_CALIBRATION=1e10,5e9,5e9,1e10 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
if [ "${MEMFIT_SANITIZED:-0}" = 1 ]; then # python3 cannot load the ASan-built library without preloading ASan
  echo "cli_python: SKIP (sanitizer build: the library needs the ASan runtime preloaded)"; exit 0
fi
if "$M" plan --list-unsupported /dev/null 2>&1 | grep -q "without ONNX support"; then
  echo "cli_python: SKIP (memfit built without ONNX support)"; exit 0
fi
PY=/usr/bin/python3
if ! "$PY" -c "import torch, torchvision" 2>/dev/null; then echo "cli_python: SKIP (no python3-torch / torchvision)"; exit 0; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export MEMFIT_LIB=$(dirname "$M")/libmemfit.so PYTHONPATH=$root/python
cat >"$tmp/t.py" <<'PYEOF'
import json, os, subprocess, sys, warnings
warnings.filterwarnings("ignore")
import torch, torchvision, memfit
memfit_bin, tmp = sys.argv[1], sys.argv[2]
passed = failed = 0
def ok(name, cond, detail=""):
    global passed, failed
    if cond: passed += 1
    else:
        failed += 1
        print("FAIL: %s %s" % (name, detail))
def cli(*args):
    r = subprocess.run([memfit_bin, "plan", *args, "--json"], capture_output=True, text=True)
    if r.returncode not in (0, 3):
        print(r.stderr)
    return r.returncode, json.loads(r.stdout) if r.stdout.strip() else None
torch.manual_seed(0)
net = torchvision.models.resnet18()  # random weights: nothing downloaded
x = torch.randn(8, 3, 224, 224)
f = os.path.join(tmp, "resnet18.onnx")
p = memfit.plan(net, x, loss="cross-entropy", keep_onnx=f)
print(p)
rc, c = cli(f, "--input", "input=8x3x224x224")
ok("the CLI plans the same file", rc == 0 and c is not None)
ok("parameters: torchvision's count", p.parameters == sum(t.numel() for t in net.parameters()) == c["parameters"],
   "%d vs %d" % (p.parameters, c["parameters"]))
ok("every arena's bytes equal memfit plan's", p.arenas == c["arenas"], "%s vs %s" % (p.arenas, c["arenas"]))
ok("the total and the peak equal memfit plan's", p.total_bytes == c["total_bytes"] and p.peak_op == c["peak_op"]
   and p.peak_in_backward == bool(c["peak_in_backward"]), "%s %s" % (p.total_bytes, p.peak_op))
ok("the peak layer is an ONNX node of resnet18", bool(p.peak_layer) and p.peak_layer in p.peak_op, p.peak_layer)
ok("the example batch is the planned input", p.inputs == {"input": (8, 3, 224, 224)}, str(p.inputs))
ok("the module is back in training mode", net.training)
# with a budget: the same choice as memfit plan --budget
for budget in ("4GiB", "300MiB"):
    q = memfit.plan_file(f, {"input": (8, 3, 224, 224)}, budget=budget)
    rc, c = cli(f, "--input", "input=8x3x224x224", "--budget", budget)
    print("budget %s: %s" % (budget, q.chosen))
    ok("--budget %s: fits as memfit plan says" % budget, q.fits == bool(c["found"]))
    ok("--budget %s: the same settings and bytes" % budget, q.chosen is not None and q.chosen.micro_batch == c["micro_batch"]
       and q.chosen.accum == c["accum"] and q.chosen.precision == c["dtype"] and q.chosen.device_bytes == c["device_bytes"],
       "%s vs %s" % (q.chosen, c))
s = memfit.fit(net, x, budget="300MiB")
print("fit 300MiB: %r" % s)
ok("fit: micro-batch x accumulation is the batch", s.micro_batch * s.accum == 8, repr(s))
ok("fit: the settings fit the budget", s.device_bytes <= 300 * 2**20, repr(s))
ok("fit under 300MiB needs more than the plain f32 step (smaller micro-batch, bf16 or recompute)",
   s.micro_batch < 8 or s.precision != "f32" or s.recompute, repr(s))
try:
    memfit.plan_file(os.path.join(tmp, "missing.onnx"), {"input": (1, 3, 8, 8)})
    ok("a missing file raises MemfitError", False)
except memfit.MemfitError as e:
    ok("a missing file raises MemfitError naming it", "missing.onnx" in str(e), str(e))
try:
    memfit.plan_file(f, {"input": (8, 3, 224, 224)}, budget="lots")
    ok("a bad budget raises ValueError", False)
except ValueError as e:
    ok("a bad budget raises ValueError naming it", "lots" in str(e), str(e))
class MLP(torch.nn.Module):  # mse and a rank-2 input
    def __init__(s):
        super().__init__(); s.a = torch.nn.Linear(32, 64); s.b = torch.nn.Linear(64, 32)
    def forward(s, v): return s.b(torch.relu(s.a(v)))
m = memfit.plan(MLP(), torch.randn(16, 32), loss="mse")
ok("an MLP with mse: parameters and a plan", m.parameters == 32 * 64 + 64 + 64 * 32 + 32 and m.total_bytes > 0, repr(m))
try:
    memfit.fit(MLP(), torch.randn(16, 32), budget=4096, loss="mse")
    ok("fit: nothing fits 4 KiB raises DoesNotFit", False)
except memfit.DoesNotFit as e:
    ok("fit: nothing fits 4 KiB raises DoesNotFit, with the smallest setting", e.plan.smallest is not None and "4.00 KiB" in str(e), str(e))
class OwnLoss(MLP):  # a module that returns its loss (F.cross_entropy: SoftmaxCrossEntropyLoss), labels as its 2nd input
    def forward(s, v, y): return torch.nn.functional.cross_entropy(MLP.forward(s, v), y)
o = memfit.plan(OwnLoss(), (torch.randn(16, 32), torch.zeros(16, dtype=torch.long)), loss="own")
ok("a module returning F.cross_entropy plans with loss='own', both inputs at batch 16",
   o.parameters == m.parameters and o.inputs == {"input0": (16, 32), "input1": (16,)} and o.total_bytes > 0, repr(o.inputs))
print("cli_python: %d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
PYEOF
"$PY" "$tmp/t.py" "$M" "$tmp"
