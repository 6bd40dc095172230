"""memfit — the exact memory plan of a PyTorch model's training step, from Python (ctypes over libmemfit.so).

    import memfit, torch, torchvision
    net = torchvision.models.resnet18()
    p = memfit.plan(net, torch.randn(8, 3, 224, 224), budget="4GiB", loss="cross-entropy")
    print(p)                        # bytes per arena, the peak layer, the chosen settings, whether it fits
    s = memfit.fit(net, torch.randn(64, 3, 224, 224), budget="4GiB")
    s.micro_batch, s.accum, s.precision, s.recompute   # what a training script applies

The model goes through torch.onnx.export (eval mode, opset 13, a dynamic batch axis, no constant folding, as
docs/onnx.md says) into a temporary file that memfit imports and plans (mf_onnx_plan_json). The library is
found through MEMFIT_LIB (a path to libmemfit.so), the install's library folder, a build folder of the source
tree (build*/libmemfit.so), or the system's library path.
"""
import ctypes
import ctypes.util
import glob
import json
import os
import tempfile

__all__ = ["plan", "plan_file", "fit", "Plan", "Settings", "DoesNotFit", "MemfitError", "library"]

MAX_DIMS = 5      # MF_MAX_DIMS
MAX_IO = 16       # MF_ONNX_MAX_IO
_LOSSES = {"cross-entropy": 0, "ce": 0, "mse": 1, "own": 2, "none": 3}
_DTYPES = {"f32": 0, "f16": 1, "bf16": 2}


class MemfitError(RuntimeError):
    """memfit could not import or plan the model (the message is memfit's)"""


class DoesNotFit(MemfitError):
    """nothing fits the budget; .plan holds the plan with the smallest setting (plan.smallest)"""

    def __init__(self, msg, plan):
        super().__init__(msg)
        self.plan = plan


class _Shape(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("ndim", ctypes.c_int), ("dims", ctypes.c_int64 * MAX_DIMS)]


class _PlanOpts(ctypes.Structure):
    _fields_ = [("n_inputs", ctypes.c_int), ("inputs", ctypes.POINTER(_Shape)), ("loss", ctypes.c_int),
                ("bn_eval", ctypes.c_int), ("budget", ctypes.c_int64), ("backend", ctypes.c_char_p),
                ("threads", ctypes.c_int), ("dtypes", ctypes.c_uint)]


_lib = None


def _candidates():
    env = os.environ.get("MEMFIT_LIB")
    if env:
        yield env
        return
    here = os.path.dirname(os.path.abspath(__file__))
    try:  # written by the install step: where it put the library
        from . import _install
        yield os.path.join(_install.LIBDIR, "libmemfit.so")
    except ImportError:
        pass
    root = os.path.dirname(os.path.dirname(here))  # the source tree: python/memfit -> the repository
    for d in sorted(glob.glob(os.path.join(root, "build*", "libmemfit.so")), key=os.path.getmtime, reverse=True):
        yield d
    found = ctypes.util.find_library("memfit")
    if found:
        yield found


def library():
    """the loaded libmemfit.so (a ctypes.CDLL); MemfitError when none is found"""
    global _lib
    if _lib is not None:
        return _lib
    tried = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
            continue
        lib.mf_onnx_plan_json.restype = ctypes.c_int64
        lib.mf_onnx_plan_json.argtypes = [ctypes.c_char_p, ctypes.POINTER(_PlanOpts), ctypes.c_char_p, ctypes.c_size_t,
                                          ctypes.c_char_p, ctypes.c_size_t]
        lib.mf_parse_bytes.restype = ctypes.c_int64
        lib.mf_parse_bytes.argtypes = [ctypes.c_char_p]
        _lib = lib
        return lib
    raise MemfitError("libmemfit.so not found: set MEMFIT_LIB to its path, or build memfit (cmake --build build)%s"
                      % ("; tried " + ", ".join(tried) if tried else ""))


def _bytes(budget):
    if budget is None:
        return 0
    if isinstance(budget, int):
        if budget <= 0:
            raise ValueError("budget: %d bytes is not above 0" % budget)
        return budget
    v = library().mf_parse_bytes(str(budget).encode())
    if v <= 0:
        raise ValueError("budget: '%s' is not a size such as 4GiB, 6000MiB or 1.5GB" % budget)
    return v


class Settings:
    """settings a training script applies: micro_batch x accum = the batch, precision ('f32', 'bf16', 'f16'),
    recompute (True when activations are recomputed in backward: torch.utils.checkpoint), the bytes they plan"""

    def __init__(self, d):
        self.micro_batch = d["micro_batch"]
        self.accum = d["accum"]
        self.precision = d["dtype"]
        self.recompute = d["recompute_segments"] > 0 or bool(d["invertible"])
        self.recompute_segments = d["recompute_segments"]
        self.segments = d["segments"]
        self.optimizer_offload = bool(d["optimizer_offload"])
        self.device_bytes = d["device_bytes"]
        self.arenas = dict(d["arenas"])
        self.step_seconds = d["step_seconds"]
        self.peak = d["peak"]
        self.description = d["settings"]

    def __repr__(self):
        return "Settings(micro_batch=%d, accum=%d, precision=%r, recompute=%r, device_bytes=%d)" % (
            self.micro_batch, self.accum, self.precision, self.recompute, self.device_bytes)


def _human(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return ("%d %s" if unit == "B" else "%.2f %s") % (n, unit)
        n /= 1024.0


class Plan:
    """memfit's plan of one f32 training step at the example's batch (arenas: bytes by kind, total_bytes,
    peak_layer / peak_op and whether the peak is in backward) and, with a budget, the settings chosen (chosen,
    a Settings, or None), fits, and the smallest any setting needs (smallest)"""

    def __init__(self, d):
        self.json = d
        self.model = d["model"]
        self.opset = d["opset"]
        self.parameters = d["parameters"]
        self.inputs = {k: tuple(v) for k, v in d["inputs"].items()}
        self.loss = d["loss"]
        self.arenas = dict(d["arenas"])
        self.total_bytes = d["total_bytes"]
        self.peak_op = d["peak_op"]
        self.peak_layer = d["peak_layer"]
        self.peak_in_backward = bool(d["peak_in_backward"])
        self.budget_bytes = d.get("budget_bytes")
        self.fits = bool(d["fits"]) if "fits" in d else None
        self.chosen = Settings(d["chosen"]) if d.get("chosen") else None
        self.smallest = Settings(d["smallest"]) if d.get("smallest") else None

    def __repr__(self):
        lines = ["memfit plan: %d parameters, inputs %s, loss %s: %s in all (peak at %s, %s)" % (
            self.parameters, ", ".join("%s%s" % (k, list(v)) for k, v in self.inputs.items()), self.loss,
            _human(self.total_bytes), self.peak_op, "backward" if self.peak_in_backward else "forward")]
        for k, v in self.arenas.items():
            if v:
                lines.append("  %-26s %s" % (k, _human(v)))
        if self.budget_bytes:
            if self.chosen:
                lines.append("budget %s: fits with %s (%s)" % (_human(self.budget_bytes), self.chosen.description,
                                                                _human(self.chosen.device_bytes)))
            else:
                lines.append("budget %s: NOTHING FITS; the smallest setting needs %s (%s)" % (
                    _human(self.budget_bytes), _human(self.smallest.device_bytes), self.smallest.description))
        return "\n".join(lines)


def plan_file(path, inputs, budget=None, loss="cross-entropy", bn_eval=False, backend="cpu", threads=0,
              precisions=None):
    """the plan of an ONNX file; inputs maps input names to shapes (the first axis of the first is the batch)"""
    if loss not in _LOSSES:
        raise ValueError("loss: '%s' is not one of %s" % (loss, ", ".join(sorted(_LOSSES))))
    if len(inputs) > MAX_IO:
        raise ValueError("more than %d inputs" % MAX_IO)
    lib = library()
    shapes = (_Shape * max(1, len(inputs)))()
    names = []
    for i, (name, shape) in enumerate(inputs.items()):
        shape = [int(d) for d in shape]
        if not 1 <= len(shape) <= MAX_DIMS:
            raise ValueError("input '%s': %d dimensions; memfit takes 1 to %d" % (name, len(shape), MAX_DIMS))
        names.append(name.encode())
        shapes[i].name = names[-1]
        shapes[i].ndim = len(shape)
        for k, d in enumerate(shape):
            shapes[i].dims[k] = d
    dtypes = 0
    for p in precisions or ():
        if p not in _DTYPES:
            raise ValueError("precision '%s' is not f32, bf16 or f16" % p)
        dtypes |= 1 << _DTYPES[p]
    o = _PlanOpts(len(inputs), shapes, _LOSSES[loss], int(bool(bn_eval)), _bytes(budget), backend.encode(), int(threads), dtypes)
    err = ctypes.create_string_buffer(2048)
    n = lib.mf_onnx_plan_json(os.fsencode(path), ctypes.byref(o), None, 0, err, len(err))
    if n < 0:
        raise MemfitError(err.value.decode(errors="replace"))
    buf = ctypes.create_string_buffer(int(n) + 1)
    n = lib.mf_onnx_plan_json(os.fsencode(path), ctypes.byref(o), buf, len(buf), err, len(err))
    if n < 0:
        raise MemfitError(err.value.decode(errors="replace"))
    return Plan(json.loads(buf.value.decode()))


def _export(module, example_inputs, path, input_names, opset):
    import torch  # only needed here: plan_file works without torch
    ex = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    names = list(input_names) if input_names else (["input"] if len(ex) == 1 else ["input%d" % i for i in range(len(ex))])
    if len(names) != len(ex):
        raise ValueError("input_names: %d names for %d example inputs" % (len(names), len(ex)))
    was_training = module.training
    module.eval()  # BatchNormalization as one node with its statistics, Dropout as the identity (docs/onnx.md)
    try:
        with torch.no_grad():
            out = module(*ex)
        n_out = len(out) if isinstance(out, (tuple, list)) else 1
        out_names = ["output"] if n_out == 1 else ["output%d" % i for i in range(n_out)]
        dyn = {n: {0: "batch"} for n in names + out_names}
        torch.onnx.export(module, ex, path, input_names=names, output_names=out_names, opset_version=opset,
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False, dynamic_axes=dyn)
    finally:
        module.train(was_training)
    return {n: tuple(t.shape) for n, t in zip(names, ex)}


def plan(module, example_inputs, budget=None, loss="cross-entropy", input_names=None, opset=13, bn_eval=False,
         backend="cpu", threads=0, precisions=None, keep_onnx=None):
    """exports module (a torch.nn.Module) with example_inputs (a tensor or a tuple; their first axis is the
    batch) through torch.onnx and returns memfit's Plan of one training step with the given loss
    ('cross-entropy': logits [N,K] against labels, 'mse', 'own': the model returns its loss); with budget
    ('4GiB' or bytes) also the fastest settings that fit. keep_onnx: a path to keep the exported file at."""
    with tempfile.TemporaryDirectory(prefix="memfit-") as tmp:
        path = keep_onnx or os.path.join(tmp, "model.onnx")
        shapes = _export(module, example_inputs, path, input_names, opset)
        return plan_file(path, shapes, budget=budget, loss=loss, bn_eval=bn_eval, backend=backend, threads=threads,
                         precisions=precisions)


def fit(module, example_inputs, budget="4GiB", **kw):
    """the Settings that train module on batches like example_inputs (its first axis: the whole batch) within
    budget; raises DoesNotFit (with .plan) when nothing does"""
    p = plan(module, example_inputs, budget=budget, **kw)
    if not p.chosen:
        raise DoesNotFit("nothing fits %s; the smallest setting needs %s (%s)" % (
            _human(p.budget_bytes), _human(p.smallest.device_bytes), p.smallest.description), p)
    return p.chosen
