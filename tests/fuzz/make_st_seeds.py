# make_st_seeds.py — writes the seed corpora of the safetensors, checkpoint-metadata and parser fuzzers
# (tests/fuzz/seeds/{safetensors,checkpoint,parse}); plain Python 3, no packages needed.
import json, os, struct
here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")

def st(tensors, meta=None):
    """tensors: list of (name, dtype, shape, bytes); returns a safetensors file without memfit.crc32
    (checksummed seeds would make nearly every mutation a checksum error)."""
    hdr, data = {}, b""
    for name, dt, shape, raw in tensors:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if meta is not None:
        hdr["__metadata__"] = meta
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data

f32 = lambda *v: struct.pack("<%df" % len(v), *v)
seeds = {
    "plain.safetensors": st([("w", "F32", [2, 2], f32(1, 2, 3, 4)), ("b", "F32", [2], f32(0.5, -0.5))]),
    "dtypes.safetensors": st([("a", "F64", [1], struct.pack("<d", 1.0)), ("h", "F16", [2], b"\x00\x3c\x00\xc0"),
                              ("bf", "BF16", [2], b"\x80\x3f\x00\x40"), ("i", "I64", [1], struct.pack("<q", 7)),
                              ("u", "U8", [3], b"abc"), ("e", "F32", [0], b""), ("s", "F32", [], f32(2))],
                             {"format": "x", "k": "v\u00e9\\n\"q\""}),
    "steg.safetensors": st([("param.blk0.phi.conv1.w", "F32", [1, 12, 3, 3], f32(*[0.01] * 108)),
                            ("param.blk1.phi.conv1.w", "F32", [1, 12, 3, 3], f32(*[0.02] * 108))],
                           {"format": "memfit-steg-model-1", "steg.preset": "small"}),
    "empty.safetensors": st([], {}),
}
os.makedirs(os.path.join(here, "safetensors"), exist_ok=True)
for n, b in seeds.items():
    open(os.path.join(here, "safetensors", n), "wb").write(b)

os.makedirs(os.path.join(here, "checkpoint"), exist_ok=True)
ck = {"valid": "step=3\nmicro=1\nloss_scale=1\nclean_steps=0\nskipped=0\nrng=12345\n",
      "edited": "step=nan\nmicro=-1\nrng=abc\nclean_steps=1e300\nloss_scale=0\n",
      "format": "format=memfit-checkpoint-1\noptimizer=adamw\nstep=18446744073709551615\n"}
for n, t in ck.items():
    open(os.path.join(here, "checkpoint", n), "w").write(t)

os.makedirs(os.path.join(here, "parse"), exist_ok=True)
for i, t in enumerate(["4GiB", "1.5GB", "512KiB", "nan", "1e400", "7.5EiB", "-3", "0x1p62", "12", "3.25"]):
    open(os.path.join(here, "parse", "s%d" % i), "w").write(t)
