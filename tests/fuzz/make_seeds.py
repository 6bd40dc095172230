# make_seeds.py — writes the small seed corpus in tests/fuzz/seeds/{png,jpeg} (run with /usr/bin/python3;
# needs Pillow). The seeds cover the formats the decoders accept: every PNG colour type and depth,
# interlacing, palettes with transparency, baseline/progressive/grayscale/CMYK JPEG.
import io, os, random
from PIL import Image
here = os.path.dirname(os.path.abspath(__file__))
random.seed(1)
def img(mode, w, h):
    im = Image.new("RGB", (w, h))
    im.putdata([(x * 255 // w, y * 255 // h, (x * y) % 256) for y in range(h) for x in range(w)])
    return im.convert(mode)
out = {"png": [], "jpeg": []}
for mode in ["1", "L", "LA", "RGB", "RGBA", "P", "I;16"]:
    for inter in [0, 1]:
        b = io.BytesIO()
        im = img("L" if mode == "I;16" else mode, 13, 9)
        if mode == "I;16": im = im.convert("I").point(lambda v: v * 257).convert("I;16")
        im.save(b, "PNG", interlace=inter, transparency=0 if mode == "P" else None) if mode == "P" else im.save(b, "PNG", interlace=inter)
        out["png"].append((f"{mode.replace(';','')}_{inter}.png", b.getvalue()))
for mode in ["L", "RGB", "CMYK"]:
    for prog in [False, True]:
        b = io.BytesIO()
        img(mode, 17, 11).save(b, "JPEG", quality=80, progressive=prog)
        out["jpeg"].append((f"{mode}_{int(prog)}.jpg", b.getvalue()))
for kind, files in out.items():
    d = os.path.join(here, "seeds", kind); os.makedirs(d, exist_ok=True)
    for name, data in files:
        open(os.path.join(d, name), "wb").write(data)
print("seeds written")
