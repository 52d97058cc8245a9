#!/usr/bin/env python3
"""Fit a memory trend to soak.sh's RSS samples, and count prism's errors.

    python3 loadtest/rss_trend.py target/artifacts/soak-rss.csv [target/artifacts/soak-metrics.txt]

Least squares over the steady part (after a 2-minute warm-up: ramp, thread pools, allocator
arenas), and separately over its second half. Caches that fill up (SQLite's page cache is
bounded per connection and grows with the database) make RSS rise early and flatten; a leak
keeps the same slope to the end. So the verdict is on the second half: an upward trend is a
fitted growth over it above 2% of the mean RSS with a slope whose 95% interval excludes zero.
Exits 1 on an upward trend or on any prism_errors_total.
"""
import sys

WARMUP_SECS = 120


def fit(samples):
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mr = sum(r for _, r in samples) / n
    sxx = sum((t - mt) ** 2 for t, _ in samples)
    slope = sum((t - mt) * (r - mr) for t, r in samples) / sxx  # KiB per second
    resid = [r - (mr + slope * (t - mt)) for t, r in samples]
    se = (sum(e * e for e in resid) / (n - 2) / sxx) ** 0.5
    span = samples[-1][0] - samples[0][0]
    return slope, se, mr, span


def describe(label, samples):
    slope, se, mean, span = fit(samples)
    growth = slope * span
    print(f"{label}: {len(samples)} samples over {span:.0f} s: {slope * 60:+.1f} KiB/min "
          f"(±{1.96 * se * 60:.1f} at 95%), {growth / 1024:+.2f} MiB ({100 * growth / mean:+.2f}% of the mean)")
    return growth > 0.02 * mean and slope - 1.96 * se > 0


def main():
    rows = [tuple(map(float, l.split(","))) for l in open(sys.argv[1]).read().split()[1:]]
    steady = [(t, r) for t, r in rows if t >= WARMUP_SECS]
    if len(steady) < 20:
        sys.exit(f"too few samples after warm-up: {len(steady)}")
    rss = [r for _, r in steady]
    print(f"RSS KiB: start {rows[0][1]:.0f}, after warm-up {steady[0][1]:.0f}, min {min(rss):.0f}, "
          f"mean {sum(rss) / len(rss):.0f}, max {max(rss):.0f}, end {rows[-1][1]:.0f}")
    describe("trend, whole steady part", steady)
    upward = describe("trend, second half", steady[len(steady) // 2:])
    errors = 0.0
    if len(sys.argv) > 2:
        errors = sum(float(l.rsplit(" ", 1)[1]) for l in open(sys.argv[2]) if l.startswith("prism_errors_total"))
        print(f"prism_errors_total at the end: {errors:.0f}")
    print("memory: UPWARD TREND" if upward else "memory: no upward trend")
    sys.exit(1 if upward or errors > 0 else 0)


if __name__ == "__main__":
    main()
