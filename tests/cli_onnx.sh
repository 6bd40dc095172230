#!/usr/bin/env bash
# cli_onnx.sh — memfit plan on ONNX models exported by Debian's python3-torch (random weights): the plan,
# the parameter count PyTorch reports, JSON, budgets, --list-unsupported, and clear errors for bad files and
# options (not ONNX, truncated, an old opset, a shape the model fixes, unsupported ops). Usage: cli_onnx.sh MEMFIT
set -u
M=$(realpath "${1:?usage: cli_onnx.sh path/to/memfit}")
export MEMFIT_CALIBRATION=1e10,5e9,5e9,1e10 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok() { if eval "$2"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1"; sed 's/^/    /' "$tmp/out" "$tmp/err" | tail -6; fi; }
run() { "$M" "$@" >"$tmp/out" 2>"$tmp/err"; echo $? >"$tmp/rc"; }
rc() { cat "$tmp/rc"; }

if "$M" plan --list-unsupported /dev/null 2>&1 | grep -q "without ONNX support"; then
  echo "cli_onnx: SKIP (memfit built without ONNX support)"; exit 0
fi
PY=/usr/bin/python3
if ! "$PY" -c "import torch" 2>/dev/null; then echo "cli_onnx: SKIP (no python3-torch to export models)"; exit 0; fi

# the models: a small CNN with the ops torchvision's use (depthwise conv, batch norm, ReLU6, dropout, pools,
# flatten, linear) with a dynamic batch, the same with the batch fixed, an old opset, and unsupported ops
cat >"$tmp/export.py" <<'EOF'
import sys, torch, warnings
warnings.filterwarnings("ignore")
torch.manual_seed(0)
out = sys.argv[1]
class Net(torch.nn.Module):
    def __init__(s, act=None):
        super().__init__()
        s.c1 = torch.nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False); s.bn1 = torch.nn.BatchNorm2d(16)
        s.dw = torch.nn.Conv2d(16, 16, 3, padding=1, groups=16); s.bn2 = torch.nn.BatchNorm2d(16)
        s.pw = torch.nn.Conv2d(16, 32, 1); s.drop = torch.nn.Dropout(0.2); s.fc = torch.nn.Linear(32, 10)
        s.act = act
    def forward(s, x):
        h = torch.relu(s.bn1(s.c1(x)))
        h = torch.nn.functional.relu6(s.bn2(s.dw(h)))
        h = s.pw(h)
        if s.act is not None: h = s.act(h)
        h = torch.nn.functional.max_pool2d(h, 3, 2, 1) + torch.nn.functional.avg_pool2d(h, 3, 2, 1)
        h = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(h, 1), 1)
        return s.fc(s.drop(h))
def export(m, name, opset=13, dynamic=True):
    m.eval()  # eval mode: Dropout exports as the identity (memfit has no random dropout)
    torch.onnx.export(m, torch.randn(4, 3, 32, 32), f"{out}/{name}.onnx", input_names=["x"], output_names=["logits"],
                      opset_version=opset, training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
                      dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None)
net = Net()
export(net, "small")
export(net, "fixed", dynamic=False)
export(net, "old", opset=9)
export(Net(torch.nn.Sequential(torch.nn.ELU(), torch.nn.SELU())), "unsup")
net.train()  # Dropout in training mode: mapped to memfit's dropout (masks in training steps)
torch.onnx.export(net, torch.randn(4, 3, 32, 32), f"{out}/train.onnx", input_names=["x"], opset_version=13,
                  training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False, dynamic_axes={"x": {0: "batch"}})
class Dec(torch.nn.Module):  # the decoder / segmentation ops: reflection pad, dilation, transposed conv, bilinear, asymmetric pad
    def __init__(s):
        super().__init__()
        s.c1 = torch.nn.Conv2d(3, 8, 3); s.c2 = torch.nn.Conv2d(8, 8, 3, padding=2, dilation=2)
        s.up = torch.nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1); s.c3 = torch.nn.Conv2d(6, 4, 2)
        s.fc = torch.nn.Linear(4, 10)
    def forward(s, x):
        h = torch.relu(s.c1(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")))
        h = torch.nn.functional.silu(s.c2(h))
        h = torch.nn.functional.interpolate(s.up(h), scale_factor=2, mode="bilinear", align_corners=False)
        h = s.c3(torch.nn.functional.pad(h, (0, 1, 0, 1)))  # a 2x2 kernel keeping the size: padding on one side
        return s.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(h, 1), 1))
export(Dec(), "dec")
print(sum(p.numel() for p in net.parameters()))
EOF
if ! "$PY" "$tmp/export.py" "$tmp" >"$tmp/params" 2>"$tmp/export.err"; then
  echo "cli_onnx: SKIP (the export failed:)"; tail -3 "$tmp/export.err"; exit 0
fi
params=$(cat "$tmp/params")

run plan "$tmp/small.onnx" --input x=8x3x32x32
ok "plan of an exported CNN exits 0" '[ "$(rc)" = 0 ]'
ok "it shows every arena and the peak" 'grep -q "activations + workspace" $tmp/out && grep -q "optimizer state" $tmp/out && grep -q "activation peak at" $tmp/out'
ok "the parameters are PyTorch's ($params)" 'grep -q "$params parameters" $tmp/out'
ok "batch norm statistics are buffers" 'grep -q "4 buffers (batch-norm statistics)" $tmp/out'
ok "the parameters arena holds them in f32" 'awk -v p=$params "/^  parameters/ {exit !(\$2 >= 4*p && \$2 < 4*p + 64*20)}" $tmp/out'

run plan "$tmp/small.onnx" --input x=8x3x32x32 --json
ok "--json parses and has the arenas" '[ "$(rc)" = 0 ] && /usr/bin/python3 -c "import json,sys; d=json.load(open(\"$tmp/out\")); assert d[\"parameters\"] == $params and d[\"arenas\"][\"activations + workspace\"] > 0"'

run plan "$tmp/small.onnx" --input x=8x3x32x32 --by-layer
ok "--by-layer: the layers keeping activations, by their ONNX node names" '[ "$(rc)" = 0 ] && grep -q "activations kept for backward" $tmp/out && grep -q "/c1/Conv" $tmp/out && grep -q "^forward peak: .* at " $tmp/out && grep -q "^backward peak: .* at .*_bwd" $tmp/out'
run plan "$tmp/small.onnx" --input x=8x3x32x32 --by-layer --json
ok "--by-layer --json: the same as fields" '[ "$(rc)" = 0 ] && /usr/bin/python3 -c "import json; d=json.load(open(\"$tmp/out\")); assert d[\"by_layer\"] and d[\"by_layer\"][0][\"kept_bytes\"] > 0 and d[\"forward_peak\"][\"layer\"] and d[\"backward_peak\"][\"bytes\"] > 0"'
run plan "$tmp/small.onnx" --input x=8x3x32x32 --run 2
ok "--run: two training steps with the file's weights, measured == planned in every arena" '[ "$(rc)" = 0 ] && grep -q "^step 2: loss" $tmp/out && grep -q "measured == planned: yes, every arena" $tmp/out && ! grep -q DIFFERENT $tmp/out'

run plan "$tmp/dec.onnx" --input x=4x3x32x32 --run 2
ok "a decoder (reflection pad, dilated conv, transposed conv, bilinear resize, one-sided pad): two steps, measured == planned" '[ "$(rc)" = 0 ] && grep -q "^step 2: loss" $tmp/out && grep -q "measured == planned: yes, every arena" $tmp/out && ! grep -q DIFFERENT $tmp/out'

run plan "$tmp/small.onnx" --input x=8x3x32x32 --loss mse
ok "--loss mse plans too" '[ "$(rc)" = 0 ] && grep -q "loss mse" $tmp/out'

run plan "$tmp/small.onnx" --input x=16x3x32x32 --budget 1GiB
ok "a roomy budget: the settings that fit" '[ "$(rc)" = 0 ] && grep -q "fits in 1.00 GiB" $tmp/out'
run plan "$tmp/small.onnx" --input x=16x3x32x32 --budget 64KiB
ok "too small a budget: exit 3 and what the smallest needs" '[ "$(rc)" = 3 ] && grep -q "NOTHING FITS" $tmp/out'

run plan --list-unsupported "$tmp/small.onnx"
ok "--list-unsupported: none in the CNN" '[ "$(rc)" = 0 ] && grep -q "every node maps" $tmp/out'
run plan --list-unsupported "$tmp/unsup.onnx"
ok "--list-unsupported lists both ops with node names and indices" '[ "$(rc)" = 1 ] && grep -Eq "^node [0-9]+ .*\(Elu\)" $tmp/out && grep -Eq "^node [0-9]+ .*\(Selu\)" $tmp/out && grep -q "2 unsupported nodes" $tmp/out'
run plan "$tmp/unsup.onnx" --input x=8x3x32x32
ok "planning it names the first unsupported node and points to the list" '[ "$(rc)" = 1 ] && grep -Eq "node [0-9]+ .*\(Elu\): unsupported op" $tmp/err && grep -q "list-unsupported" $tmp/err'

run plan "$tmp/fixed.onnx" --input x=8x3x32x32
ok "a batch the model fixes: the conflict, the axis and the fix" '[ "$(rc)" = 1 ] && grep -q "conflicts with the model" $tmp/err && grep -q "axis 0 (8, the model fixes 4)" $tmp/err && grep -q "dynamic_axes" $tmp/err'
run plan "$tmp/fixed.onnx"
ok "no --input: the model's own fixed shape" '[ "$(rc)" = 0 ] && grep -q "x\[4x3x32x32\]" $tmp/out'
run plan "$tmp/small.onnx"
ok "no --input for a dynamic batch: says to give it" '[ "$(rc)" = 1 ] && grep -q -- "--input x=" $tmp/err'
run plan "$tmp/small.onnx" --input y=8x3x32x32
ok "an input the model lacks: named with the model's" '[ "$(rc)" = 1 ] && grep -q "no input .y. (its inputs: .x.)" $tmp/err'

run plan "$tmp/train.onnx" --input x=8x3x32x32
ok "Dropout exported in training mode: mapped (a refusal, if any, is not about Dropout)" '! grep -q "Dropout" $tmp/err'

run plan "$tmp/old.onnx" --input x=8x3x32x32
ok "opset 9: outside 11-17, and how to export" '[ "$(rc)" = 1 ] && grep -q "opset 9 is outside" $tmp/err && grep -q "opset_version" $tmp/err'

echo "not a model" >"$tmp/text.onnx"
run plan "$tmp/text.onnx" --input x=8x3x32x32
ok "a text file: not an ONNX model" '[ "$(rc)" = 1 ] && grep -q "text.onnx: not an ONNX model" $tmp/err'
head -c 3000 "$tmp/small.onnx" >"$tmp/trunc.onnx"
run plan "$tmp/trunc.onnx" --input x=8x3x32x32
ok "a truncated file: a clear error, no crash" '[ "$(rc)" = 1 ] && grep -q "trunc.onnx" $tmp/err'
run plan "$tmp/missing.onnx" --input x=8x3x32x32
ok "a missing file" '[ "$(rc)" = 1 ] && grep -q "missing.onnx: cannot open" $tmp/err'

run plan "$tmp/small.onnx" --input x=8x3xx32
ok "a bad shape: usage error" '[ "$(rc)" = 2 ] && grep -q "positive sizes joined by" $tmp/err'
run plan "$tmp/small.onnx" --input 8x3x32x32
ok "no NAME=: usage error" '[ "$(rc)" = 2 ] && grep -q "NAME=SHAPE" $tmp/err'
run plan "$tmp/small.onnx" --input x=8x3x32x32 --loss hinge
ok "an unknown loss: usage error" '[ "$(rc)" = 2 ] && grep -q "not cross-entropy, mse or own" $tmp/err'
run plan "$tmp/small.onnx" --inputs x=8x3x32x32
ok "an unknown option: usage error" '[ "$(rc)" = 2 ]'
run plan "$tmp/small.onnx" --help
ok "--help shows the ONNX usage" '[ "$(rc)" = 0 ] && grep -q "list-unsupported" $tmp/out'

echo "cli_onnx: $pass passed, $fail failed"
[ "$fail" = 0 ]
