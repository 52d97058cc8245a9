#!/usr/bin/env python3
"""The fewest bytes any per-variant quality choice could reach under the `auto:good` bars.

Input: sharp's scores (`score_variants` CSV: label,file,format,width,bytes,score) and a grid of
trial encodes of the same variants (`webp_oracle` / `avif_oracle` CSV:
stem,width,config,q,bytes,score). For each encoder configuration, every variant may take any
quality (bytes and score interpolated linearly between measured qualities). Bars, as in the
issue: every variant's score >= sharp's - 2, and the mean score >= sharp's mean. Minimising
total bytes under them is a knapsack-like problem; a Lagrangian sweep (each variant picks the
point minimising bytes - lam * score, lam raised until the mean bar holds) solves it up to one
variant's step. Also printed: the bytes at "every variant >= sharp's own score" (no trading
between variants), which is the configuration's efficiency alone; and both for the best of
every configuration, chosen per variant.

usage: quality_oracle.py SHARP_CSV ORACLE_CSV FORMAT
"""
import csv
import sys
from collections import defaultdict


def curves(rows):
    """(stem, width) -> sorted [(q, bytes, score)], made monotone in score."""
    pts = defaultdict(list)
    for r in rows:
        pts[(r["stem"], int(r["width"]))].append(
            (float(r["q"]), int(r["bytes"]), float(r["score"])))
    out = {}
    for k, v in pts.items():
        v.sort()
        fine = []
        for (q0, b0, s0), (q1, b1, s1) in zip(v, v[1:]):
            for i in range(10):
                t = i / 10
                fine.append((q0 + t * (q1 - q0), b0 + t * (b1 - b0), s0 + t * (s1 - s0)))
        fine.append(v[-1])
        out[k] = fine
    return out


def solve(sharp, cur):
    keys = [k for k in sharp if k in cur]
    target_mean = sum(sharp[k][1] for k in keys) / len(keys)
    sharp_bytes = sum(sharp[k][0] for k in keys)

    def pick(lam):
        total_b, total_s, infeasible = 0, 0.0, 0
        for k in keys:
            floor = sharp[k][1] - 2
            ok = [p for p in cur[k] if p[2] >= floor]
            if not ok:
                infeasible += 1
                ok = [max(cur[k], key=lambda p: p[2])]
            best = min(ok, key=lambda p: p[1] - lam * p[2])
            total_b += best[1]
            total_s += best[2]
        return total_b, total_s / len(keys), infeasible

    lo, hi = 0.0, 1e7
    if pick(lo)[1] >= target_mean:
        hi = lo
    for _ in range(60):
        mid = (lo + hi) / 2
        if pick(mid)[1] >= target_mean:
            hi = mid
        else:
            lo = mid
    b, m, inf = pick(hi)
    # No trading: each variant at least sharp's own score.
    eq_b, eq_inf = 0, 0
    for k in keys:
        ok = [p for p in cur[k] if p[2] >= sharp[k][1]]
        if not ok:
            eq_inf += 1
            ok = [max(cur[k], key=lambda p: p[2])]
        eq_b += min(p[1] for p in ok)
    return len(keys), b / sharp_bytes, m, target_mean, inf, eq_b / sharp_bytes, eq_inf


def main():
    sharp_csv, oracle_csv, fmt = sys.argv[1:4]
    sharp = {}
    with open(sharp_csv) as f:
        for r in csv.DictReader(f):
            if r["format"] == fmt:
                sharp[(r["file"], int(r["width"]))] = (int(r["bytes"]), float(r["score"]))
    by_cfg = defaultdict(list)
    with open(oracle_csv) as f:
        for r in csv.DictReader(f):
            if r["score"] != "nan":
                by_cfg[r["config"]].append(r)
    print("config | variants | bytes/sharp (bars) | mean (sharp) | infeasible | "
          "bytes/sharp (each >= sharp)")
    runs = sorted((cfg, curves(rows)) for cfg, rows in by_cfg.items())
    # Any configuration per variant: every measured point of every configuration.
    best = {}
    for _, cur in runs:
        for k, pts in cur.items():
            best.setdefault(k, []).extend(pts)
    for cfg, cur in runs + [("any (per variant)", best)]:
        n, ratio, mean, tmean, inf, eq, eq_inf = solve(sharp, cur)
        print(f"{cfg} | {n} | {ratio:.3f} | {mean:.2f} ({tmean:.2f}) | {inf} | "
              f"{eq:.3f} ({eq_inf} unreachable)")


if __name__ == "__main__":
    main()
