#!/usr/bin/env python3
"""Reference frames for workers/resize/tests/animation.rs, decoded by Pillow (independently of
the engine's decoders; the WPT APNGs' frames by APNG Disassembler): for each animated fixture in workers/resize/tests/fixtures/animation/,
every displayed frame composited on the canvas by Pillow, resized with Pillow's Lanczos to the
test width, stacked top to bottom in one RGBA PNG (`refs/<fixture>.w<width>.png`), and
`refs/refs.json` with the frame count, per-frame durations in ms (as stored) and loop count.

Run: ~/.cache/prism-venv/bin/python scripts/make_animation_refs.py
"""
import json
import os

from PIL import Image

HERE = os.path.join(os.path.dirname(__file__), "..", "workers", "resize", "tests", "fixtures", "animation")
# fixture -> the width the test renders.
FIXTURES = {
    "rotating-squares.gif": 40,
    "animated-loop-3.gif": 160,
    "animated-loop-3.webp": 160,
    "rotating-squares.webp": 40,
    "wpt-fcTL-dispose-in-region-none.png": 64,
    "wpt-fcTL-dispose-in-region-background.png": 64,
    "wpt-fcTL-dispose-in-region-previous.png": 64,
    "wpt-fcTL-blend-source-transparent.png": 64,
}


def main():
    out = os.path.join(HERE, "refs")
    os.makedirs(out, exist_ok=True)
    meta = {}
    for name, width in FIXTURES.items():
        im = Image.open(os.path.join(HERE, name))
        frames, durations = [], []
        apngdis = sorted(
            f for f in os.listdir(os.path.join(HERE, "apngdis")) if f.startswith(name + ".anim_")
        )
        for i in range(im.n_frames):
            im.seek(i)
            im.load()
            # An APNG's default image that is not part of the animation is not shown.
            if name.endswith(".png") and i == 0 and im.info.get("default_image"):
                continue
            frames.append(im.convert("RGBA"))
            durations.append(int(round(im.info.get("duration") or 0)))
        if apngdis:
            # Pillow gets dispose-to-previous inside a region wrong (it keeps the disposed
            # frame); the WPT APNGs' frames come from APNG Disassembler instead (committed by
            # image-rs beside the files, apngdis/).
            assert len(apngdis) == len(frames), name
            frames = [Image.open(os.path.join(HERE, "apngdis", f)).convert("RGBA") for f in apngdis]
        w, h = frames[0].size
        height = max(1, round(h * width / w))
        strip = Image.new("RGBA", (width, height * len(frames)))
        for k, f in enumerate(frames):
            strip.paste(f.resize((width, height), Image.LANCZOS), (0, k * height))
        strip.save(os.path.join(out, f"{name}.w{width}.png"), optimize=True)
        loop = im.info.get("loop", 1 if name.endswith(".png") else None)
        if name.endswith(".gif"):
            # Pillow reports the NETSCAPE repeat count (absent: play once); WebP counts plays.
            loop = 1 if loop is None else (0 if loop == 0 else loop + 1)
        meta[name] = {
            "width": width,
            "height": height,
            "frames": len(frames),
            "durations_ms": durations,
            "loop_count": loop,
        }
    with open(os.path.join(out, "refs.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
