#!/bin/sh
# Generates the TIFF conformance inputs (run in a folder holding G31D.TIF, cielab-dagams.tiff
# and Landscape_1.jpg from sharp's test/fixtures); needs libtiff-tools, Pillow, numpy, tifffile.
set -eu
PY=${PY:-python3}
# A 1024x512 crop of the Kofax test page (text, a reversed bar, line art), bilevel, uncompressed.
$PY -c "
from PIL import Image
Image.open('G31D.TIF').crop((1280, 2400, 2304, 2912)).save('crop.tif')  # mode 1, BlackIsZero
"
tiffcp -c none -p contig crop.tif crop-none.tif
tiffcp -c g4 crop-none.tif kofax.g4.tif
tiffcp -c g3:2d:fill crop-none.tif kofax.g3-2d-fill.tif
tiffcp -c g3:2d -f lsb2msb crop-none.tif kofax.g3-2d-lsb.tif
tiffcp -c g3:1d:fill crop-none.tif kofax.g3-1d-fill.tif
tiffcp -c packbits crop-none.tif kofax.packbits.tif
$PY -c "
from PIL import Image
Image.open('crop-none.tif').save('kofax.rle.tif', compression='tiff_ccitt')
"
# The landscape photo at 300x225 dithered to 1 bit (Floyd-Steinberg), Group 4 in 128x128 tiles.
$PY -c "
from PIL import Image
Image.open('Landscape_1.jpg').resize((300, 225), Image.LANCZOS).convert('1').save('dither.tif')
"
tiffcp -c g4 -t -w 128 -l 128 dither.tif landscape.dither.g4-tiles.tif
# 8-bit CIELab (a*, b* signed), Pillow's LAB mode through LittleCMS, 128x96, LZW.
$PY -c "
from PIL import Image, ImageCms
im = Image.open('Landscape_1.jpg').convert('RGB').resize((128, 96), Image.LANCZOS)
lab = ImageCms.profileToProfile(im, ImageCms.createProfile('sRGB'), ImageCms.createProfile('LAB'), outputMode='LAB')
lab.save('lab8-raw.tif')
"
tiffcp -c lzw lab8-raw.tif landscape.cielab8.tif
# 16-bit CIELab: sharp's cielab-dagams.tiff (400x266) averaged 3x3 to 133x88, Deflate with the
# horizontal predictor.
tiffcp -c none cielab-dagams.tiff dagams-none.tif
$PY -c "
import numpy as np, tifffile
a = tifffile.imread('dagams-none.tif')
assert a.dtype == np.uint16 and a.shape[2] == 3, (a.dtype, a.shape)
v = a.astype(np.int64)
v[..., 1:] = a[..., 1:].view(np.int16)  # a*, b* are two's complement
h, w = (v.shape[0] // 3) * 3, (v.shape[1] // 3) * 3
m = v[:h, :w].reshape(h // 3, 3, w // 3, 3, 3).mean(axis=(1, 3)).round().astype(np.int64)
out = np.empty(m.shape, np.uint16)
out[..., 0] = m[..., 0]
out[..., 1:] = m[..., 1:].astype(np.int16).view(np.uint16)
tifffile.imwrite('lab16-raw.tif', out, photometric='cielab')
"
tiffcp -c zip:2 lab16-raw.tif dagams.cielab16.tif
# 8-bit ICCLab (a*, b* offset 128) with an unassociated alpha ramp, 96x72, uncompressed.
$PY -c "
import numpy as np, tifffile
from PIL import Image, ImageCms
im = Image.open('Landscape_1.jpg').convert('RGB').resize((96, 72), Image.LANCZOS)
lab = ImageCms.profileToProfile(im, ImageCms.createProfile('sRGB'), ImageCms.createProfile('LAB'), outputMode='LAB')
a = np.array(lab)  # Pillow's LAB: L 0..255, a and b offset by 128 (the ICCLab encoding)
alpha = np.tile(np.linspace(255, 40, 96).round().astype(np.uint8), (72, 1))
px = np.dstack([a, alpha])
tifffile.imwrite('landscape.icclab8-alpha.tif', px, photometric='icclab', extrasamples=[2])
"
