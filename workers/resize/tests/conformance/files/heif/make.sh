#!/bin/sh
# Rebuilds the `heif` conformance group: inputs from the AOM av1-avif test files, inputs made
# with avifenc (libavif 0.11.1, Debian libavif-bin), and references made with Pillow.
# Usage: make.sh AOM_REPO_CHECKOUT   (run from this folder; needs avifenc and Python + Pillow)
set -eu
AOM=$1; T=$AOM/testFiles; PY=${PYTHON:-python3}; EXP=../../expected/heif
for f in kimono.crop kimono.mirror-vertical.rotate270.crop kimono.rotate90 kimono.rotate270 \
         kimono.mirror-horizontal kimono.mirror-vertical kimono.mirror-vertical.rotate270 \
         fox.profile1.10bpc.yuv444 \
         fox.profile2.12bpc.yuv422.odd-height fox.profile0.10bpc.yuv420.monochrome; do
  cp "$T/Link-U/$f.avif" .
done
for f in Ronda_rotate90 bbb_alpha_inverted Monochrome; do cp "$T/Microsoft/$f.avif" .; done
W=/tmp/heif-make; mkdir -p $W
$PY - "$T" "$EXP" "$W" <<'PY'
import sys
from PIL import Image, ImageOps
T, EXP, W = sys.argv[1:4]
def ref(im, name, width=192):
    im = im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB")
    h = round(im.height * width / im.width)
    im.resize((width, h), Image.LANCZOS).save(f"{EXP}/{name}.png", optimize=True)
# Link-U: the displayed image of every kimono file is kimono.png (crops: kimono.crop.png).
ref(Image.open(f"{T}/Link-U/kimono.png"), "kimono")
ref(Image.open(f"{T}/Link-U/kimono.crop.png"), "kimono.crop")
for f in ["fox", "fox.odd-height"]:
    ref(Image.open(f"{T}/Link-U/{f}.png"), f)
# Monochrome files and Microsoft's: Pillow's own AVIF decoder (libavif), irot/imir through
# EXIF transpose (Pillow reports them as an orientation).
for d, f in [("Link-U", "fox.profile0.10bpc.yuv420.monochrome"), ("Microsoft", "Ronda_rotate90"),
             ("Microsoft", "bbb_alpha_inverted"), ("Microsoft", "Monochrome")]:
    ref(ImageOps.exif_transpose(Image.open(f"{T}/{d}/{f}.avif")), f)
# The source of the avifenc files: bbb_alpha_inverted (Big Buck Bunny title, with alpha),
# 480x272, and kimono.png at 360x512.
bbb = Image.open(f"{T}/Microsoft/bbb_alpha_inverted.avif").resize((480, 272), Image.LANCZOS)
bbb.save(f"{W}/bbb.png")
kim = Image.open(f"{T}/Link-U/kimono.png").convert("RGB").resize((360, 512), Image.LANCZOS)
kim.save(f"{W}/kimono.png")
# Their references: the same crop (x, y, w, h), then rotate (anticlockwise), then mirror.
R = {1: Image.Transpose.ROTATE_90, 2: Image.Transpose.ROTATE_180, 3: Image.Transpose.ROTATE_270}
def made(src, name, crop=None, irot=0, imir=None):
    im = src
    if crop: x, y, w, h = crop; im = im.crop((x, y, x + w, y + h))
    if irot: im = im.transpose(R[irot])
    if imir is not None:
        im = im.transpose(Image.Transpose.FLIP_TOP_BOTTOM if imir == 0 else Image.Transpose.FLIP_LEFT_RIGHT)
    ref(im, name)
made(bbb, "bbb.alpha.crop.irot1.imir0", (20, 10, 400, 240), 1, 0)
made(bbb, "bbb.alpha.irot3", None, 3)
made(bbb, "bbb.alpha.grid2x2.crop.irot1.imir1", (16, 8, 448, 256), 1, 1)
made(kim, "kimono.grid2x2.irot3.imir0", None, 3, 0)
made(kim, "kimono.exif6.irot3", None, 3)
PY
ENC="avifenc -s 8 --min 8 --max 16 --minalpha 0 --maxalpha 8"
$ENC --crop 20,10,400,240 --irot 1 --imir 0 $W/bbb.png bbb.alpha.crop.irot1.imir0.avif
$ENC --irot 3 $W/bbb.png bbb.alpha.irot3.avif
$ENC --grid 2x2 --crop 16,8,448,256 --irot 1 --imir 1 $W/bbb.png bbb.alpha.grid2x2.crop.irot1.imir1.avif
$ENC --grid 2x2 --irot 3 --imir 0 $W/kimono.png kimono.grid2x2.irot3.imir0.avif
# An Exif block saying "rotate 90° clockwise" (orientation 6): informative in HEIF.
$PY -c "from PIL import Image; e = Image.Exif(); e[0x0112] = 6; open('$W/exif6.bin', 'wb').write(e.tobytes())"
# avifenc turns Exif orientation 6 into irot 3 and keeps the Exif: the first file is
# consistent (displayed turned once), the second has its irot angle set to 0 (displayed as
# coded, the Exif orientation notwithstanding; its reference is kimono.png).
$ENC --exif $W/exif6.bin --irot 3 $W/kimono.png kimono.exif6.irot3.avif
$ENC --exif $W/exif6.bin $W/kimono.png kimono.exif6.irot0.avif
$PY -c "
b = bytearray(open('kimono.exif6.irot0.avif', 'rb').read()); i = b.index(b'irot') + 4
assert b[i] == 3; b[i] = 0; open('kimono.exif6.irot0.avif', 'wb').write(b)"
