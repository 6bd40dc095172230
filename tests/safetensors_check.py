#!/usr/bin/env python3
"""safetensors_check.py — validates a safetensors file independently of memfit's C reader (stdlib only),
the way the reference `safetensors` package does, plus memfit's checksums; prints each tensor; then, when
`safetensors` or `torch` can be imported, loads the file with them too and compares the values.

usage: safetensors_check.py FILE [--expect NAME=SUM ...] [--memfit]
  --expect NAME=SUM  the tensor's values must sum to SUM (relative tolerance 1e-9)
  --memfit           require memfit's conventions: header padded to 8 bytes, memfit.crc32 present
exit status 0 when valid, 1 with a message on stderr otherwise.
"""
import json
import math
import re
import struct
import sys
import zlib

MAX_HEADER = 100 * 1024 * 1024
# dtype -> (element size, struct code or None when there is no stdlib decoding)
DTYPES = {
    "F64": (8, "d"), "F32": (4, "f"), "F16": (2, "e"), "BF16": (2, None), "I64": (8, "q"), "I32": (4, "i"),
    "I16": (2, "h"), "I8": (1, "b"), "U64": (8, "Q"), "U32": (4, "I"), "U16": (2, "H"), "U8": (1, "B"),
    "BOOL": (1, "?"), "F8_E4M3": (1, None), "F8_E5M2": (1, None),
}


class Invalid(Exception):
    pass


def no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise Invalid(f"key {k!r} appears twice in one JSON object")
        d[k] = v
    return d


def is_uint(x):
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def decode(dtype, raw):
    """The tensor's values as Python numbers (None when the dtype has no stdlib decoding)."""
    size, code = DTYPES[dtype]
    n = len(raw) // size
    if dtype == "BF16":
        return [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in struct.unpack(f"<{n}H", raw)]
    if code is None:
        return None
    return list(struct.unpack(f"<{n}{code}", raw))


def check(path, memfit):
    with open(path, "rb") as fh:
        buf = fh.read()
    if len(buf) < 8:
        raise Invalid(f"file has {len(buf)} bytes, fewer than the 8-byte header length")
    (n,) = struct.unpack("<Q", buf[:8])
    if n > MAX_HEADER:
        raise Invalid(f"header length {n} is larger than 100 MiB")
    if 8 + n > len(buf):
        raise Invalid(f"header length {n} but only {len(buf) - 8} bytes follow")
    hdr_bytes = buf[8:8 + n]
    try:
        hdr_text = hdr_bytes.decode("utf-8", errors="strict")
    except UnicodeDecodeError as e:
        raise Invalid(f"header is not UTF-8: {e}")
    if not hdr_text.startswith("{"):
        raise Invalid("header does not start with '{'")
    try:
        header = json.loads(hdr_text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as e:
        raise Invalid(f"header is not JSON: {e}")
    if not isinstance(header, dict):
        raise Invalid("header is not a JSON object")
    data = buf[8 + n:]
    meta = header.pop("__metadata__", None)
    if meta is not None:
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise Invalid("__metadata__ must map strings to strings")
    meta = meta or {}
    tensors = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise Invalid(f"tensor {name!r}: entry must have exactly dtype, shape, data_offsets")
        dt, shape, off = info["dtype"], info["shape"], info["data_offsets"]
        if dt not in DTYPES:
            raise Invalid(f"tensor {name!r}: unknown dtype {dt!r}")
        if not isinstance(shape, list) or not all(is_uint(s) for s in shape):
            raise Invalid(f"tensor {name!r}: bad shape {shape!r}")
        if not isinstance(off, list) or len(off) != 2 or not all(is_uint(o) for o in off):
            raise Invalid(f"tensor {name!r}: bad data_offsets {off!r}")
        nbytes = math.prod(shape) * DTYPES[dt][0]
        if off[1] < off[0] or off[1] - off[0] != nbytes:
            raise Invalid(f"tensor {name!r}: {dt} {shape} needs {nbytes} bytes, data_offsets {off}")
        tensors.append((name, dt, shape, off[0], off[1]))
    # like the reference: sorted by offset, tensors must tile the data section exactly
    pos = 0
    for name, dt, shape, b, e in sorted(tensors, key=lambda t: (t[3], t[4])):
        if b != pos:
            raise Invalid(f"tensor {name!r} begins at {b}, expected {pos} (gap or overlap)")
        pos = e
    if pos != len(data):
        raise Invalid(f"tensors end at byte {pos} but the data section has {len(data)} bytes")
    if "memfit.crc32" in meta:
        if zlib.crc32(data) != int(meta["memfit.crc32"], 16):
            raise Invalid("memfit.crc32 does not match the data section")
    if "memfit.header_crc32" in meta:
        m = re.search(rb'"memfit\.header_crc32":"([0-9a-f]{8})"', hdr_bytes)
        if not m:
            raise Invalid("memfit.header_crc32 not found in the raw header")
        zeroed = hdr_bytes[:m.start(1)] + b"00000000" + hdr_bytes[m.end(1):]
        if zlib.crc32(buf[:8] + zeroed) != int(m.group(1), 16):
            raise Invalid("memfit.header_crc32 does not match the header")
    if memfit:
        body = hdr_text.rstrip(" ")
        if n % 8 != 0 or not body.endswith("}") or len(hdr_text) - len(body) >= 8:
            raise Invalid("header is not padded with fewer than 8 spaces to a multiple of 8 bytes")
        if "memfit.crc32" not in meta or "memfit.header_crc32" not in meta:
            raise Invalid("memfit checksums missing")
    return tensors, meta, data


def other_loaders(path, tensors, data, sums):
    """Loads with safetensors and/or torch when importable; returns the names of the loaders used."""
    used = []
    try:
        from safetensors.numpy import load_file  # type: ignore
        loaded = load_file(path)
        for name, dt, shape, b, e in tensors:
            arr = loaded[name]
            if list(arr.shape) != shape:
                raise Invalid(f"safetensors: {name!r} has shape {list(arr.shape)}, expected {shape}")
            if sums.get(name) is not None and not close(float(arr.astype("float64").sum()), sums[name]):
                raise Invalid(f"safetensors: {name!r} sums to {arr.sum()}, stdlib decoding gave {sums[name]}")
        used.append("safetensors")
    except ImportError:
        pass
    try:
        import torch  # type: ignore
    except ImportError:
        return used
    tdt = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}
    for name, dt, shape, b, e in tensors:
        if dt not in tdt:
            continue
        if e == b:
            t = torch.empty(shape, dtype=tdt[dt])
        else:
            t = torch.frombuffer(bytearray(data[b:e]), dtype=tdt[dt]).reshape(shape)
        if list(t.shape) != shape:
            raise Invalid(f"torch: {name!r} has shape {list(t.shape)}, expected {shape}")
        s = float(t.to(torch.float64).sum())
        if sums.get(name) is not None and not close(s, sums[name]):
            raise Invalid(f"torch: {name!r} sums to {s!r}, stdlib decoding gave {sums[name]!r}")
    used.append(f"torch {torch.__version__}")
    return used


def close(a, b):
    return a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)


def main(argv):
    args, expect, memfit = [], {}, False
    it = iter(argv)
    for a in it:
        if a == "--expect":
            kv = next(it, None)
            if kv is None or "=" not in kv:
                print("--expect needs NAME=SUM", file=sys.stderr)
                return 2
            k, v = kv.rsplit("=", 1)
            expect[k] = float(v)
        elif a == "--memfit":
            memfit = True
        else:
            args.append(a)
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    path = args[0]
    try:
        tensors, meta, data = check(path, memfit)
        sums = {}
        for name, dt, shape, b, e in tensors:
            vals = decode(dt, data[b:e])
            sums[name] = None if vals is None else math.fsum(float(v) for v in vals)
            s = "" if sums[name] is None else f" sum={sums[name]!r}"
            print(f"{name}\t{dt}\t{shape}\tbytes {b}..{e}{s}")
        for k, v in meta.items():
            print(f"meta {k} = {v!r}")
        for name, want in expect.items():
            if name not in sums:
                raise Invalid(f"no tensor {name!r}")
            if sums[name] is None or not close(sums[name], want):
                raise Invalid(f"tensor {name!r} sums to {sums[name]!r}, expected {want!r}")
        used = other_loaders(path, tensors, data, sums)
    except Invalid as e:
        print(f"{path}: INVALID: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{path}: {e}", file=sys.stderr)
        return 1
    print(f"{path}: OK, {len(tensors)} tensors, {len(data)} data bytes"
          + (f"; also loaded with {', '.join(used)}" if used else "; safetensors/torch not available"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
