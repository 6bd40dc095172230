# onnx_torch.py — exports a torchvision model (random weights, nothing downloaded) to ONNX in eval mode, and
# measures PyTorch's own peak for one training step of it (forward, cross-entropy, backward, Adam step) on
# this CPU: the process's peak RSS minus its RSS before the model was built. Used by bench/onnx_models.sh.
# Usage: onnx_torch.py MODEL OUT.onnx BATCH [--no-measure]
import resource, sys, warnings
warnings.filterwarnings("ignore")
import torch, torchvision

name, out, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.manual_seed(0)
torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "2")))

def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

base = rss_kib()
m = getattr(torchvision.models, name)()
params = sum(p.numel() for p in m.parameters())
m.eval()  # Dropout exports as the identity, BatchNormalization with its running statistics as initializers
x = torch.randn(batch, 3, 224, 224)
torch.onnx.export(m, x, out, input_names=["input"], output_names=["logits"], opset_version=13,
                  training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
print(f"params {params}")
if "--no-measure" in sys.argv:
    sys.exit(0)
# the training step, in a fresh state: what memfit plans is parameters, gradients, Adam's two moments and the
# step's activations. ru_maxrss already holds the export's peak, so the step runs in a child process.
import os
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    del m
    import gc; gc.collect()
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
    os.write(w, f"{b0} {b1} {peak}".encode())
    os._exit(0)
os.close(w)
b0, b1, peak = map(int, os.read(r, 100).split())
os.waitpid(pid, 0)
print(f"torch_peak_minus_baseline_bytes {(peak - b0) * 1024}")
print(f"torch_step_peak_minus_model_bytes {(peak - b1) * 1024}")
