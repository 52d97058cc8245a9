#!/usr/bin/env python3
"""Generate the tiny test images under tests/fixtures/images/ (run once; the output is committed).

Every picture is a 64x48 "quadrants" image as DISPLAYED: red top-left, green top-right, blue
bottom-left, white bottom-right, so a test can check orientation and colour by sampling the
centre of each quadrant. Needs Pillow (with WebP) and numpy.
"""

import io
import os
import struct
import zlib

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "images")
W, H = 64, 48
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def quadrants(alpha=None):
    a = np.zeros((H, W, 3), np.uint8)
    a[: H // 2, : W // 2] = RED
    a[: H // 2, W // 2 :] = GREEN
    a[H // 2 :, : W // 2] = BLUE
    a[H // 2 :, W // 2 :] = WHITE
    im = Image.fromarray(a, "RGB")
    if alpha is not None:
        im.putalpha(alpha)
    return im


def path(name):
    return os.path.join(OUT, name)


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png(name, width, height, bit_depth, color_type, rows):
    raw = b"".join(b"\0" + r for r in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")
    with open(path(name), "wb") as f:
        f.write(data)


def main():
    os.makedirs(OUT, exist_ok=True)
    q = quadrants()
    q.save(path("quadrants.jpg"), quality=95)
    q.save(path("quadrants-progressive.jpg"), quality=95, progressive=True)
    q.save(path("quadrants.png"))
    q.save(path("quadrants.gif"))
    q.save(path("quadrants-lossy.webp"), quality=90)
    q.convert("L").save(path("gray.jpg"), quality=95)

    # Stored pixels for each EXIF orientation, so that the DISPLAYED image is `q`.
    inverse = {
        1: [],
        2: [Image.Transpose.FLIP_LEFT_RIGHT],
        3: [Image.Transpose.ROTATE_180],
        4: [Image.Transpose.FLIP_TOP_BOTTOM],
        5: [Image.Transpose.TRANSPOSE],
        6: [Image.Transpose.ROTATE_90],   # display = stored rotated 90 CW
        7: [Image.Transpose.TRANSVERSE],
        8: [Image.Transpose.ROTATE_270],  # display = stored rotated 90 CCW
    }
    for o, ops in inverse.items():
        stored = q
        for op in ops:
            stored = stored.transpose(op)
        exif = Image.Exif()
        exif[0x0112] = o
        stored.save(path(f"orient-{o}.jpg"), quality=95, exif=exif)

    # CMYK JPEG (Pillow writes Adobe-inverted CMYK with an APP14 marker) and CMYK TIFF, no profile.
    cmyk = Image.new("CMYK", (W, H), (0, 255, 255, 0))  # = red ink
    cmyk.save(path("cmyk-adobe.jpg"), quality=95)
    cmyk.save(path("cmyk.tif"))

    # Alpha: left half opaque quadrants, right half fully transparent.
    alpha = Image.new("L", (W, H), 255)
    alpha.paste(0, (W // 2, 0, W, H))
    qa = quadrants(alpha)
    qa.save(path("alpha.png"))
    qa.save(path("alpha.webp"), quality=90)

    # 16-bit RGB PNG (Pillow cannot write it): the quadrants with every sample scaled to 16 bits.
    a16 = (np.asarray(q, np.uint16) * 257).astype(">u2")
    write_png("rgb16.png", W, H, 16, 2, [a16[y].tobytes() for y in range(H)])
    # 8-bit gray + alpha.
    ga = np.dstack([np.full((H, W), 100, np.uint8), np.asarray(alpha)])
    write_png("gray-alpha.png", W, H, 8, 4, [ga[y].tobytes() for y in range(H)])

    # Animated GIF, 3 frames; the first is the quadrants.
    frames = [q, q.transpose(Image.Transpose.ROTATE_180), q.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    frames[0].save(path("animated.gif"), save_all=True, append_images=frames[1:], duration=100, loop=0)

    # Truncated: a noisy photo-like JPEG cut in the middle of its entropy-coded data.
    rng = np.random.default_rng(7)
    noise = Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8), "RGB")
    buf = io.BytesIO()
    noise.save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    with open(path("truncated.jpg"), "wb") as f:
        f.write(data[: len(data) // 2])

    # Zero-byte upload.
    open(path("empty.jpg"), "wb").close()

    # Bombs: tiny files whose headers declare 100000 x 100000 (10 gigapixels).
    write_png("bomb.png", 100_000, 100_000, 8, 0, [b""])  # IDAT is nonsense; never read
    sof = bytes.fromhex("FFD8") + bytes.fromhex("FFC0 0011 08") + struct.pack(">HH", 60_000, 60_000) \
        + bytes.fromhex("03 011100 021101 031101") + bytes.fromhex("FFD9")
    with open(path("bomb.jpg"), "wb") as f:
        f.write(sof)

    # An SVG that draws nothing (10 x 10, transparent).
    with open(path("blank.svg"), "wb") as f:
        f.write(b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')


if __name__ == "__main__":
    main()
