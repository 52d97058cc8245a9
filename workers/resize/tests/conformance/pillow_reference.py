#!/usr/bin/env python3
"""An independent reference rendering of one image: Pillow and LittleCMS, nothing of prism.

Decode with Pillow (its own AVIF, TIFF and PNG readers; pillow-heif for HEIC), apply the EXIF
orientation, convert through the embedded ICC profile to sRGB with LittleCMS (perceptual intent),
take untagged RGB and gray as sRGB, convert CIELab through LittleCMS's Lab profile, and CMYK
without a profile through `--cmyk-profile` when given. Downscale with Lanczos to at most
`--max-width` pixels (the conformance test resizes the reference again to each variant's size)
and write an 8-bit RGB or RGBA PNG.

Usage: python pillow_reference.py IN OUT.png [--cmyk-profile ICC] [--max-width 256]
"""

import argparse
import io

from PIL import Image, ImageCms, ImageOps

try:
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # HEIC inputs then fail to open, loudly
    pass


def to_srgb(im: Image.Image, cmyk_profile: str | None) -> Image.Image:
    srgb = ImageCms.createProfile("sRGB")
    alpha = im.getchannel("A") if "A" in im.getbands() else None
    icc = im.info.get("icc_profile")
    if im.mode == "LAB":
        src = ImageCms.createProfile("LAB")
        out = ImageCms.profileToProfile(im, src, srgb, renderingIntent=0, outputMode="RGB")
    elif im.mode == "CMYK":
        if icc:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        elif cmyk_profile:
            src = ImageCms.ImageCmsProfile(cmyk_profile)
        else:
            raise SystemExit("CMYK without a profile: pass --cmyk-profile")
        out = ImageCms.profileToProfile(im, src, srgb, renderingIntent=0, outputMode="RGB")
    else:
        base = im.convert("RGB") if im.mode not in ("RGB",) else im
        if icc:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            if src.profile.xcolor_space.strip() == "GRAY":
                gray = im.convert("L")
                out = ImageCms.profileToProfile(gray, src, srgb, renderingIntent=0, outputMode="RGB")
            elif src.profile.xcolor_space.strip() == "RGB":
                out = ImageCms.profileToProfile(base, src, srgb, renderingIntent=0, outputMode="RGB")
            else:  # a profile that does not match the pixels is ignored, as browsers do
                out = base
        else:
            out = base
    if alpha is not None:
        out = out.convert("RGBA")
        out.putalpha(alpha)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--cmyk-profile")
    p.add_argument("--max-width", type=int, default=256)
    a = p.parse_args()
    im = Image.open(a.input)
    im.load()
    im = ImageOps.exif_transpose(im)
    # Palette and 16-bit modes: widen to something LittleCMS takes, keeping alpha.
    if im.mode == "P":
        im = im.convert("RGBA")
    elif im.mode in ("I;16", "I;16B", "I;16L", "I"):
        im = im.point(lambda v: v / 257).convert("L") if im.mode != "I" else im.convert("L")
    elif im.mode == "LA":
        im = im.convert("RGBA")
    elif im.mode == "1":
        im = im.convert("L")
    out = to_srgb(im, a.cmyk_profile)
    if out.width > a.max_width:
        h = max(1, round(out.height * a.max_width / out.width))
        out = out.resize((a.max_width, h), Image.LANCZOS)
    out.save(a.output, "PNG")


if __name__ == "__main__":
    main()
