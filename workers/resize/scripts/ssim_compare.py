#!/usr/bin/env python3
"""Compare prism's and sharp's variants: bytes and SSIM against an independent reference.

For every source in CORPUS, the reference is built with Pillow alone: decode (pillow-heif for
HEIC), convert through the embedded ICC profile to sRGB with Pillow's ImageCms (littleCMS),
apply the EXIF orientation, then a Lanczos resize to each variant's exact size. Every variant
of both programs (files named `{stem}-{width}w.{webp|avif}`, the naming both benches use) is
decoded with Pillow and scored against that reference:

  * ssim_y   - SSIM of the luma (BT.601 Y), Gaussian window sigma 1.5 (Wang et al. 2004);
  * ssim_rgb - the mean of the per-channel SSIMs of R, G and B (sees chroma errors too).

Transparent images are composited over mid-gray on both sides before scoring.

Totals only count the (file, width, format) triples that BOTH programs produced, so an input
one side rejects (sharp cannot read HEIC) does not skew the comparison; it is listed apart.

Usage:
  python3 ssim_compare.py --corpus ../shared/corpus --prism /tmp/prism-out --sharp /tmp/sharp-out
          [--json report.json] [--per-file]
Needs: pillow>=11.2 (AVIF), pillow-heif, numpy, scipy (see .ci/requirements.txt).
"""

import argparse
import io
import json
import os
import re
import sys
from collections import defaultdict

import numpy as np
from PIL import Image, ImageCms, ImageOps
from scipy.ndimage import gaussian_filter

try:
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # HEIC sources are then skipped with a note
    pillow_heif = None

Image.MAX_IMAGE_PIXELS = None
SKIP = re.compile(r"^\.|\.(md|txt|json|sha256)$", re.I)
VARIANT = re.compile(r"^(?P<stem>.+)-(?P<width>\d+)w\.(?P<fmt>webp|avif)$")
SRGB = ImageCms.createProfile("sRGB")
GRAY_BG = 128.0


def reference(path):
    """Oriented sRGB RGBA float array (H, W, 4) of the source, alpha in 0..1."""
    im = Image.open(path)
    im.seek(0)
    im.load()
    icc = im.info.get("icc_profile")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(arr / 257.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode == "P" or im.mode == "PA":
        im = im.convert("RGBA")
    alpha = None
    if im.mode in ("RGBA", "LA", "La", "RGBa"):
        alpha = im.getchannel("A")
    if icc:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            base = im.convert({"LA": "L", "RGBA": "RGB"}.get(im.mode, im.mode))
            im = ImageCms.profileToProfile(
                base, src, SRGB, renderingIntent=ImageCms.Intent.PERCEPTUAL, outputMode="RGB"
            )
        except Exception as exc:  # a profile Pillow cannot use: score against untagged pixels
            print(f"  note: {os.path.basename(path)}: ICC not applied ({exc})", file=sys.stderr)
            im = im.convert("RGB")
    else:
        im = im.convert("RGB")
    if alpha is not None:
        im = im.convert("RGBA")
        im.putalpha(alpha)
    else:
        im = im.convert("RGBA")
    # The container orientation of HEIF is applied by the decoder; EXIF for the rest.
    if not path.lower().endswith((".heic", ".heif", ".avif")):
        exif_source = Image.open(path)
        orientation = exif_source.getexif().get(0x0112, 1)
        im = apply_orientation(im, orientation)
    return im


def apply_orientation(im, o):
    ops = {
        2: [Image.Transpose.FLIP_LEFT_RIGHT],
        3: [Image.Transpose.ROTATE_180],
        4: [Image.Transpose.FLIP_TOP_BOTTOM],
        5: [Image.Transpose.TRANSPOSE],
        6: [Image.Transpose.ROTATE_270],
        7: [Image.Transpose.TRANSVERSE],
        8: [Image.Transpose.ROTATE_90],
    }.get(o, [])
    for op in ops:
        im = im.transpose(op)
    return im


def flatten(im):
    """RGBA image -> float RGB array composited over mid-gray."""
    a = np.asarray(im.convert("RGBA"), dtype=np.float64)
    alpha = a[..., 3:4] / 255.0
    return a[..., :3] * alpha + GRAY_BG * (1.0 - alpha)


def ssim(x, y):
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = gaussian_filter(x, 1.5), gaussian_filter(y, 1.5)
    sxx = gaussian_filter(x * x, 1.5) - mx * mx
    syy = gaussian_filter(y * y, 1.5) - my * my
    sxy = gaussian_filter(x * y, 1.5) - mx * my
    m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(m.mean())


def luma(rgb):
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def score(ref_rgba, variant_path):
    v = Image.open(variant_path)
    v.load()
    r = ref_rgba.resize(v.size, Image.Resampling.LANCZOS)
    a, b = flatten(r), flatten(v)
    return ssim(luma(a), luma(b)), float(np.mean([ssim(a[..., c], b[..., c]) for c in range(3)]))


def variants(folder):
    out = {}
    for name in os.listdir(folder):
        m = VARIANT.match(name)
        if m:
            out[(m["stem"], int(m["width"]), m["fmt"])] = os.path.join(folder, name)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--prism", required=True, help="prism-resize bench --out folder")
    ap.add_argument("--sharp", required=True, help="sharp-baseline.mjs OUT_DIR")
    ap.add_argument("--json", help="write the per-variant rows here")
    ap.add_argument("--per-file", action="store_true", help="print one row per variant")
    args = ap.parse_args()

    sides = {"prism": variants(args.prism), "sharp": variants(args.sharp)}
    sources = {
        os.path.splitext(n)[0]: os.path.join(args.corpus, n)
        for n in sorted(os.listdir(args.corpus))
        if not SKIP.search(n) and os.path.isfile(os.path.join(args.corpus, n))
    }
    rows = []
    only = defaultdict(list)
    for stem, path in sources.items():
        keys = {k for s in sides.values() for k in s if k[0] == stem}
        if not keys:
            continue
        try:
            ref = reference(path)
        except Exception as exc:
            print(f"  skip {os.path.basename(path)}: reference decode failed ({exc})", file=sys.stderr)
            continue
        for key in sorted(keys):
            present = [name for name, s in sides.items() if key in s]
            if len(present) < 2:
                only[present[0]].append("%s-%dw.%s" % key)
                continue
            row = {"file": os.path.basename(path), "width": key[1], "format": key[2]}
            for name, s in sides.items():
                y, rgb = score(ref, s[key])
                row[name] = {"bytes": os.path.getsize(s[key]), "ssim_y": y, "ssim_rgb": rgb}
            rows.append(row)
            if args.per_file:
                print(
                    f"{row['file'][:44]:44} {key[1]:5} {key[2]:4}  "
                    f"prism {row['prism']['bytes']:8} {row['prism']['ssim_y']:.4f}  "
                    f"sharp {row['sharp']['bytes']:8} {row['sharp']['ssim_y']:.4f}"
                )

    print()
    print(f"{'format':6} {'variants':>8} | {'prism bytes':>12} {'sharp bytes':>12} {'ratio':>6} | "
          f"{'prism SSIM-Y':>12} {'sharp SSIM-Y':>12} | {'prism SSIM-RGB':>14} {'sharp SSIM-RGB':>14}")
    summary = {}
    for fmt in ("webp", "avif"):
        sel = [r for r in rows if r["format"] == fmt]
        if not sel:
            continue
        pb = sum(r["prism"]["bytes"] for r in sel)
        sb = sum(r["sharp"]["bytes"] for r in sel)
        agg = {
            side: {
                "bytes": sum(r[side]["bytes"] for r in sel),
                "ssim_y": float(np.mean([r[side]["ssim_y"] for r in sel])),
                "ssim_rgb": float(np.mean([r[side]["ssim_rgb"] for r in sel])),
            }
            for side in ("prism", "sharp")
        }
        summary[fmt] = {"variants": len(sel), **agg, "bytes_ratio": pb / sb}
        print(f"{fmt:6} {len(sel):8} | {pb:12} {sb:12} {pb / sb:6.3f} | "
              f"{agg['prism']['ssim_y']:12.4f} {agg['sharp']['ssim_y']:12.4f} | "
              f"{agg['prism']['ssim_rgb']:14.4f} {agg['sharp']['ssim_rgb']:14.4f}")
    for side, names in only.items():
        print(f"only {side}: {len(names)} variants ({', '.join(sorted(set(n.rsplit('-', 1)[0] for n in names)))})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "rows": rows, "only": only}, f, indent=1)


if __name__ == "__main__":
    main()
