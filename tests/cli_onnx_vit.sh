#!/usr/bin/env bash
# cli_onnx_vit.sh — a small ViT exported by Debian's python3-torch (torchvision's encoder block: LayerNorm,
# nn.MultiheadAttention, a GELU MLP): memfit keeps for backward no more than PyTorch saves for the same step less
# its attention probabilities (the attention is fused, the Linear weights' transposes folded into the matmuls), and
# trains it one step with measured == planned. Skips without torch or ONNX support. Usage: cli_onnx_vit.sh MEMFIT
set -u
M=$(realpath "${1:?usage: cli_onnx_vit.sh path/to/memfit}")
export MEMFIT_CALIBRATION=1e10,5e9,5e9,1e10 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok() { if eval "$2"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1"; sed 's/^/    /' "$tmp/out" "$tmp/err" | tail -6; fi; }
run() { "$M" "$@" >"$tmp/out" 2>"$tmp/err"; echo $? >"$tmp/rc"; }
rc() { cat "$tmp/rc"; }

if "$M" plan --list-unsupported /dev/null 2>&1 | grep -q "without ONNX support"; then
  echo "cli_onnx_vit: SKIP (memfit built without ONNX support)"; exit 0
fi
PY=/usr/bin/python3
if ! "$PY" -c "import torch" 2>/dev/null; then echo "cli_onnx_vit: SKIP (no python3-torch to export models)"; exit 0; fi

# The model, exported as bench/onnx_torch.py exports torchvision's (eval mode, opset 13, no constant folding), and
# the bytes PyTorch's autograd saves for backward in one training-mode forward and cross-entropy: the distinct
# storages of the saved tensors other than the parameters, the images and the labels. Printed: those bytes, and
# the attention probabilities among them (blocks x N x heads x T x T x 4 B).
cat >"$tmp/vit.py" <<'EOF'
import sys, torch, warnings
warnings.filterwarnings("ignore")
torch.manual_seed(0)
N, C, S, P, D, H, F, L, K = 8, 3, 16, 4, 32, 4, 64, 2, 10   # batch, channels, size, patch, width, heads, MLP, blocks, classes
T = (S // P) ** 2
class Block(torch.nn.Module):  # torchvision.models.vision_transformer.EncoderBlock without its dropouts
    def __init__(s):
        super().__init__()
        s.ln_1 = torch.nn.LayerNorm(D, eps=1e-6)
        s.self_attention = torch.nn.MultiheadAttention(D, H, batch_first=True)
        s.ln_2 = torch.nn.LayerNorm(D, eps=1e-6)
        s.fc1, s.fc2 = torch.nn.Linear(D, F), torch.nn.Linear(F, D)
    def forward(s, x):
        h = s.ln_1(x)
        h, _ = s.self_attention(h, h, h, need_weights=False)
        x = x + h
        return x + s.fc2(torch.nn.functional.gelu(s.fc1(s.ln_2(x))))
class ViT(torch.nn.Module):
    def __init__(s):
        super().__init__()
        s.conv_proj = torch.nn.Conv2d(C, D, P, stride=P)
        s.blocks = torch.nn.Sequential(*[Block() for _ in range(L)])
        s.ln, s.head = torch.nn.LayerNorm(D, eps=1e-6), torch.nn.Linear(D, K)
    def forward(s, x):
        x = s.conv_proj(x).flatten(2).transpose(1, 2)          # [N, T, D]
        return s.head(s.ln(s.blocks(x)).mean(1))               # [N, K]
m = ViT()
x, y = torch.randn(N, C, S, S), torch.randint(0, K, (N,))
m.eval()
torch.onnx.export(m, x, sys.argv[1], input_names=["input"], output_names=["logits"], opset_version=13,
                  training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
m.train()
skip = {p.data_ptr() for p in m.parameters()} | {x.data_ptr(), y.data_ptr()}
seen = {}
def pack(t):
    st = t.untyped_storage() if hasattr(t, "untyped_storage") else t.storage()
    if st.data_ptr() not in skip: seen[st.data_ptr()] = st.nbytes()
    return t
with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
    torch.nn.functional.cross_entropy(m(x), y)
print(sum(seen.values()), L * N * H * T * T * 4)
EOF
if ! "$PY" "$tmp/vit.py" "$tmp/vit.onnx" >"$tmp/torch" 2>"$tmp/export.err"; then
  echo "cli_onnx_vit: SKIP (the export failed:)"; tail -3 "$tmp/export.err"; exit 0
fi
read -r tsaved tprobs <"$tmp/torch"

run plan "$tmp/vit.onnx" --input input=8x3x16x16 --by-layer --json
kept=$("$PY" -c "import json; print(json.load(open('$tmp/out'))['kept_for_backward_bytes'])" 2>/dev/null)
echo "  kept for backward: memfit $kept B, PyTorch saves $tsaved B of which $tprobs B attention probabilities"
ok "memfit keeps no more than PyTorch less the probabilities ($kept <= $tsaved - $tprobs)" \
  '[ "$(rc)" = 0 ] && [ -n "$kept" ] && [ "$kept" -le $((tsaved - tprobs)) ]'
ok "no Softmax layer keeps anything (the attention is one fused op)" \
  '"$PY" -c "import json, sys; sys.exit(any(\"Softmax\" in r[\"layer\"] for r in json.load(open(\"$tmp/out\"))[\"by_layer\"]))"'

run plan "$tmp/vit.onnx" --input input=8x3x16x16 --run 1
ok "one training step: measured == planned in every arena" \
  '[ "$(rc)" = 0 ] && grep -q "^step 1: loss" $tmp/out && grep -q "measured == planned: yes, every arena" $tmp/out && ! grep -q DIFFERENT $tmp/out'

echo "cli_onnx_vit: $pass passed, $fail failed"
[ "$fail" = 0 ]
