# onnx_torch.py — for bench/onnx_models.sh: exports a torchvision model (random weights, nothing downloaded) to
# ONNX in eval mode, or (--measure, in a fresh process) measures PyTorch's own peak for one training step on this
# CPU: forward, cross-entropy, backward, AdamW step; the process's peak RSS minus its RSS before the model was built.
# Usage: onnx_torch.py MODEL OUT.onnx BATCH  |  onnx_torch.py --measure MODEL BATCH
import os, resource, sys, warnings
warnings.filterwarnings("ignore")
import torch, torchvision

def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

torch.manual_seed(0)
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
if sys.argv[1] == "--measure":
    name, batch = sys.argv[2], int(sys.argv[3])
    b0 = rss_kib()
    model = getattr(torchvision.models, name)()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    xb, yb = torch.randn(batch, 3, 224, 224), torch.randint(0, 1000, (batch,))
    b1 = rss_kib()
    loss = torch.nn.functional.cross_entropy(model(xb), yb)
    loss.backward()
    opt.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"torch_peak_minus_baseline_bytes {(peak - b0) * 1024}")
    print(f"torch_step_peak_minus_model_bytes {(peak - b1) * 1024}")
    sys.exit(0)
name, out, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
m = getattr(torchvision.models, name)()
m.eval()  # Dropout exports as the identity, BatchNormalization with its running statistics as initializers
torch.onnx.export(m, torch.randn(batch, 3, 224, 224), out, input_names=["input"], output_names=["logits"], opset_version=13,
                  training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
print(f"params {sum(p.numel() for p in m.parameters())}")
