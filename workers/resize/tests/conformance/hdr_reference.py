#!/usr/bin/env python3
"""Independent HDR → SDR reference for the `hdr` conformance group.

Reads an AVIF's code values with libavif's `avifdec --depth 16` (not with prism's decoder) and
tone-maps them with colour-science's own transfer functions and colour-space matrices, following
the steps prism's engine documents (workers/resize/README.md, "HDR"):

1. PQ: SMPTE ST 2084 EOTF to cd/m² (`colour.models.eotf_ST2084`). HLG: the BT.2100 EOTF for a
   1000 cd/m² display (`colour.models.eotf_BT2100_HLG`: inverse OETF, then the OOTF with
   γ = 1.2 on the BT.2020 luminance of scene light).
2. ITU-R BT.2390 EETF in the PQ domain, normalised by the content peak (MaxCLL from the `clli`
   box, else the `mdcv` mastering peak, else 1000 cd/m²; only values in 100..10000 are trusted;
   HLG: 1000), to an SDR peak of 203 cd/m² (BT.2408 reference white); evaluated on max(R, G, B)
   and applied to the three channels as one ratio.
3. Source primaries → sRGB in linear light (`colour.matrix_RGB_to_RGB`, Bradford), then
   out-of-gamut colours mixed toward grey of the same luminance: just enough to lift negative
   channels to 0, then just enough to bring channels over 1 down to 1.
4. sRGB OETF (`colour.cctf_encoding`), 8 bits; downscaled with Pillow's Lanczos to at most
   `--max-width` pixels wide.

Usage: hdr_reference.py IN.avif OUT.png [--max-width 512] [--avifdec avifdec]
Needs: numpy, Pillow, colour-science (tested with 0.4.7), avifdec (Debian `libavif-bin`).
"""

import argparse
import os
import struct
import subprocess
import sys
import tempfile
import zlib

import colour
import numpy as np
from PIL import Image

SDR_PEAK = 203.0
DEFAULT_PEAK = 1000.0

PRIMARIES = {
    1: "sRGB",  # BT.709 primaries
    9: "ITU-R BT.2020",
    12: "Display P3",
}


def read_png16(path):
    """A minimal PNG reader for avifdec's 16-bit RGB/RGBA output (no interlace): returns an
    (h, w, c) float array of code values in 0..1. Pillow reduces 16-bit RGB to 8 bits."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    w, h, depth, ctype, _, _, interlace = header
    assert interlace == 0
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
    bpp = channels * depth // 8
    raw = zlib.decompress(idat)
    stride = w * bpp
    out = np.zeros((h, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=y * (stride + 1) + 1).astype(np.int32)
        cur = np.zeros(stride, dtype=np.int32)
        if f == 0:
            cur = line
        elif f == 2:
            cur = (line + prev) & 0xFF
        else:
            for x in range(stride):
                a = cur[x - bpp] if x >= bpp else 0
                b = prev[x]
                c = prev[x - bpp] if x >= bpp else 0
                if f == 1:
                    p = a
                elif f == 3:
                    p = (a + b) // 2
                else:
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[x] = (line[x] + p) & 0xFF
        out[y] = cur
        prev = cur
    if depth == 16:
        px = out.view(">u2").astype(np.float64) / 65535.0
    else:
        px = out.astype(np.float64) / 255.0
    return px.reshape(h, w, channels)


def boxes(data):
    """(type, payload) of the ISO-BMFF boxes directly inside `data`."""
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            (size,) = struct.unpack(">Q", data[pos + 8 : pos + 16])
            header = 16
        elif size == 0:
            size = len(data) - pos
        if size < header or pos + size > len(data):
            return
        yield kind, data[pos + header : pos + size]
        pos += size


def nclx_and_light(path):
    """(primaries, transfer) from the `colr` nclx box and (MaxCLL, mastering peak) from the
    `clli` and `mdcv` item properties (meta/iprp/ipco); None where absent."""
    data = open(path, "rb").read()
    nclx, clli, mdcv = None, None, None
    for kind, meta in boxes(data):
        if kind != b"meta":
            continue
        for kind, iprp in boxes(meta[4:]):  # meta is a full box
            if kind != b"iprp":
                continue
            for kind, ipco in boxes(iprp):
                if kind != b"ipco":
                    continue
                for kind, prop in boxes(ipco):
                    if kind == b"colr" and prop[:4] == b"nclx" and nclx is None:
                        nclx = struct.unpack(">HH", prop[4:8])
                    elif kind == b"clli" and clli is None:
                        clli = struct.unpack(">H", prop[:2])[0]
                    elif kind == b"mdcv" and mdcv is None:
                        mdcv = struct.unpack(">I", prop[16:20])[0] / 10000.0
    return nclx, clli, mdcv


def content_peak(transfer, clli, mdcv):
    if transfer == 18:
        return 1000.0
    for v in (clli, mdcv):
        if v is not None and 100.0 <= v <= 10000.0:
            return float(v)
    return DEFAULT_PEAK


def bt2390_eetf(nits, source_peak, target_peak):
    """ITU-R BT.2390 EETF (black 0 on both sides), in cd/m²."""
    if target_peak >= source_peak:
        return np.minimum(nits, source_peak)
    inv = colour.models.eotf_inverse_ST2084
    src = inv(source_peak)
    max_lum = inv(target_peak) / src
    ks = 1.5 * max_lum - 0.5
    e1 = np.minimum(inv(nits) / src, 1.0)
    t = (e1 - ks) / (1.0 - ks)
    spline = (
        (2 * t**3 - 3 * t**2 + 1) * ks
        + (t**3 - 2 * t**2 + t) * (1 - ks)
        + (-2 * t**3 + 3 * t**2) * max_lum
    )
    e2 = np.where(e1 < ks, e1, spline)
    return colour.models.eotf_ST2084(e2 * src)


def tone_map(signal, primaries, transfer, peak):
    """Non-linear R'G'B' (h, w, 3) in 0..1 → 8-bit sRGB."""
    if transfer == 16:
        display = colour.models.eotf_ST2084(signal)
    elif transfer == 18:
        display = colour.models.eotf_BT2100_HLG(signal, L_B=0, L_W=1000)
    else:
        raise SystemExit(f"transfer {transfer} is not PQ (16) or HLG (18)")
    m = display.max(axis=-1, keepdims=True)
    mapped = bt2390_eetf(m, peak, min(SDR_PEAK, peak))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(m > 0, mapped / m, 0.0)
    relative = display * ratio / SDR_PEAK

    space = colour.RGB_COLOURSPACES[PRIMARIES.get(primaries, "ITU-R BT.2020")]
    srgb = colour.RGB_COLOURSPACES["sRGB"]
    matrix = colour.matrix_RGB_to_RGB(space, srgb, chromatic_adaptation_transform="Bradford")
    lin = np.einsum("ij,hwj->hwi", matrix, relative)

    weights = srgb.matrix_RGB_to_XYZ[1]
    y = (lin * weights).sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = lin.min(axis=-1, keepdims=True)
        t = np.where(lo < 0, y / (y - lo), 1.0)
        lin = y + t * (lin - y)
        hi = lin.max(axis=-1, keepdims=True)
        t = np.where(hi > 1, (1 - y) / (hi - y), 1.0)
        lin = y + t * (lin - y)
    lin = np.where(y <= 0, 0.0, np.where(y >= 1, 1.0, lin))
    lin = np.clip(lin, 0.0, 1.0)
    encoded = colour.cctf_encoding(lin, function="sRGB")
    return np.clip(np.round(encoded * 255.0), 0, 255).astype(np.uint8)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--max-width", type=int, default=512)
    ap.add_argument("--avifdec", default="avifdec")
    args = ap.parse_args()

    nclx, clli, mdcv = nclx_and_light(args.input)
    if nclx is None:
        raise SystemExit("no nclx colour box")
    primaries, transfer = nclx
    peak = content_peak(transfer, clli, mdcv)
    with tempfile.TemporaryDirectory() as tmp:
        png = os.path.join(tmp, "codes.png")
        subprocess.run(
            [args.avifdec, "--depth", "16", args.input, png],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        px = read_png16(png)
    alpha = px[..., 3] if px.shape[-1] == 4 else None
    rgb = tone_map(px[..., :3], primaries, transfer, peak)
    img = Image.fromarray(rgb, "RGB")
    if alpha is not None:
        img.putalpha(Image.fromarray(np.round(alpha * 255).astype(np.uint8), "L"))
    if img.width > args.max_width:
        h = max(1, round(img.height * args.max_width / img.width))
        img = img.resize((args.max_width, h), Image.Resampling.LANCZOS)
    img.save(args.output, optimize=True)
    print(
        f"{os.path.basename(args.input)}: primaries {primaries}, transfer {transfer}, "
        f"MaxCLL {clli}, mastering peak {mdcv}, tone-mapped from {peak:g} cd/m²",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
