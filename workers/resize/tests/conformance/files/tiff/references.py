"""Independent references for the TIFF conformance inputs (see SOURCES.md).

usage: python refs.py FILES_DIR EXPECTED_DIR
Bilevel and 8-bit CIELab: Pillow (libtiff decoding, LittleCMS for Lab -> sRGB, perceptual).
16-bit CIELab and ICCLab: tifffile for the raw samples, colour-science for L*a*b* (D50) -> XYZ
-> sRGB (Bradford adaptation to D65). Every reference is at most 512 px wide (Lanczos).
"""
import sys
from pathlib import Path

import colour
import numpy as np
import tifffile
from PIL import Image, ImageCms

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)


def fit(im):
    if im.width > 512:
        im = im.resize((512, round(im.height * 512 / im.width)), Image.LANCZOS)
    return im


def lab_to_srgb8(lab):
    """float L*a*b* (D50) -> 8-bit sRGB, colour-science."""
    xyz = colour.Lab_to_XYZ(lab, colour.CCS_ILLUMINANTS["CIE 1931 2 Degree Standard Observer"]["D50"])
    rgb = colour.XYZ_to_sRGB(
        xyz,
        illuminant=colour.CCS_ILLUMINANTS["CIE 1931 2 Degree Standard Observer"]["D50"],
        chromatic_adaptation_transform="Bradford",
    )
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


for name in ["G31D_MULTI.TIF"] + sorted(p.name for p in src.glob("kofax.*.tif")) + [
    "landscape.dither.g4-tiles.tif"
]:
    im = Image.open(src / name)  # first page
    fit(im.convert("L")).save(dst / (Path(name).stem + ".png"))

im = Image.open(src / "landscape.cielab8.tif")
assert im.mode == "LAB", im.mode
rgb = ImageCms.profileToProfile(
    im, ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"),
    renderingIntent=ImageCms.Intent.PERCEPTUAL, outputMode="RGB",
)
fit(rgb).save(dst / "landscape.cielab8.png")

raw = tifffile.imread(src / "dagams.cielab16.tif")
assert raw.dtype == np.uint16 and raw.shape[2] == 3
lab = np.dstack([raw[..., 0] / 65535 * 100, raw[..., 1:].view(np.int16) / 256])
fit(Image.fromarray(lab_to_srgb8(lab))).save(dst / "dagams.cielab16.png")

raw = tifffile.imread(src / "landscape.icclab8-alpha.tif")
assert raw.dtype == np.uint8 and raw.shape[2] == 4
lab = np.dstack([raw[..., 0] / 255 * 100, raw[..., 1:3].astype(float) - 128])
rgba = np.dstack([lab_to_srgb8(lab), raw[..., 3]])
fit(Image.fromarray(rgba, "RGBA")).save(dst / "landscape.icclab8-alpha.png")
