#!/usr/bin/env python3
"""Bytes against SSIMULACRA 2 for sharp, prism at fixed quality and prism `"quality": "auto"`.

Reads the CSVs `examples/score_variants.rs` prints (one per program run: label, file, format,
width, bytes, score; every program scored against the same reference), prints per format and
run the total bytes (and the ratio to sharp's), the mean score, the variants under sharp's
same variant minus 2, and writes the frontier plot (PNG).

    python3 workers/resize/scripts/quality_frontier.py --sharp sh.csv --out frontier.png \
        pr-fixed.csv pr-auto-eco.csv pr-auto-good.csv pr-auto-high.csv
"""
import argparse
import csv
import sys


def load(path):
    rows = {}
    label = None
    with open(path) as f:
        for r in csv.DictReader(f):
            label = r["label"]
            rows[(r["file"], r["format"], int(r["width"]))] = (int(r["bytes"]), float(r["score"]))
    return label, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sharp", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("runs", nargs="+")
    a = ap.parse_args()
    _, sharp = load(a.sharp)
    runs = [load(p) for p in a.runs]
    points = {}  # format -> [(label, bytes_ratio, mean)]
    print("| run | format | variants | bytes | bytes / sharp | mean SSIMULACRA 2 (sharp) | "
          "variants < sharp - 2 | min (run - sharp) |")
    print("|---|---|---|---|---|---|---|---|")
    for fmt in ("webp", "avif"):
        keys = sorted(k for k in sharp if k[1] == fmt)
        for label, rows in [("sharp", sharp)] + runs:
            common = [k for k in keys if k in rows]
            if not common:
                continue
            b = sum(rows[k][0] for k in common)
            sb = sum(sharp[k][0] for k in common)
            mean = sum(rows[k][1] for k in common) / len(common)
            smean = sum(sharp[k][1] for k in common) / len(common)
            under = sum(1 for k in common if rows[k][1] < sharp[k][1] - 2)
            worst = min(rows[k][1] - sharp[k][1] for k in common)
            print(f"| {label} | {fmt} | {len(common)} | {b} | {b / sb:.3f} | {mean:.2f} ({smean:.2f}) "
                  f"| {under} | {worst:+.2f} |")
            points.setdefault(fmt, []).append((label, b / 1024, mean))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, fmt in zip(axes, ("webp", "avif")):
        pts = points.get(fmt, [])
        for label, kb, mean in pts:
            marker = "s" if label == "sh" or label == "sharp" else ("o" if "fixed" in label else "^")
            ax.scatter([kb], [mean], marker=marker, s=60)
            ax.annotate(label, (kb, mean), textcoords="offset points", xytext=(5, 5), fontsize=8)
        auto = sorted([(kb, m) for l, kb, m in pts if "auto" in l])
        if auto:
            ax.plot([p[0] for p in auto], [p[1] for p in auto], "--", color="grey", linewidth=1)
        ax.set_title(f"{fmt}: total bytes vs mean SSIMULACRA 2")
        ax.set_xlabel("total bytes of the corpus's variants (KiB)")
        ax.set_ylabel("mean SSIMULACRA 2 (same reference for all)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(a.out, dpi=90)
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
