#!/usr/bin/env bash
# Alternated rounds of prism in-process (`--isolation none`), prism with render processes
# (`--isolation process`) and sharp, WebP-only and WebP+AVIF, over the same corpus on the same
# machine (see workers/resize/README.md, "Crash isolation and render deadlines").
#
# Per round the three programs run in a rotating order (each takes each position equally often
# over 3 rounds), each in its own session whose scheduler autogroup is raised to nice -20
# (needs root; otherwise they run at normal priority). Before every run the script waits
# (polling every 5 s, at most $QUIET_WAIT_S s) until no compiler runs (rustc, cc1, cc1plus,
# clang, ld), the CPUs were at least 85% idle over 1 s and the 1-minute load is at most 1.5,
# and records what it saw. sharp's WebP+AVIF runs get MALLOC_ARENA_MAX=2 ("tuned sharp", as in
# the README's figures); its WebP-only runs use the defaults.
#
# Figures per run: images/s from each program's own JSON summary; CPU-s = user + system from
# /usr/bin/time (the render processes are reaped before prism exits, so their CPU counts);
# peak RSS: for sharp /usr/bin/time's maximum RSS (one process); for prism the bench's
# `peak_rss_kb` (its own VmHWM plus the VmHWM of every render process, an upper bound of the
# combined peak), with the bench's sampled combined RSS and /usr/bin/time's (largest single
# process) kept in the TSV.
#
# Usage (from the repository root; needs the release build in $CARGO_TARGET_DIR or target/,
# and sharp in $SHARP_DIR or /tmp/sharpbench):
#   bash workers/resize/scripts/bench_isolation.sh [ROUNDS] [AVIF_ROUNDS]
#     ROUNDS       WebP-only rounds (default 6)
#     AVIF_ROUNDS  WebP+AVIF rounds (default ROUNDS/2, at least 1; 0 skips WebP+AVIF)
#   bash workers/resize/scripts/bench_isolation.sh --summarise FILE.tsv [FILE.tsv ...]
#     prints the tables again from kept results (several files are pooled)
# Environment: CORPUS (default ../shared/corpus), RESULTS (the TSV to write, default
# /tmp/bench_isolation-DATE.tsv), QUIET_WAIT_S (default 300), QUALITY (passed to prism's runs
# as `--quality`, e.g. `auto:good`; default: the fixed qualities, sharp's), REFERENCE_BIN (a
# `prism-resize` built from an earlier commit, run in-process as a fourth program "reference"
# in the same rotation; its bench may predate `--isolation` and `peak_rss_kb`, so it gets
# neither and its peak RSS is /usr/bin/time's; see the resize README for how to build one).
set -euo pipefail

summarise() {
  python3 - "$@" <<'PY'
import csv, statistics as st, sys

rows = []
for i, path in enumerate(sys.argv[1:]):
    with open(path) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            # Every file numbers its rounds from 1: keep pooled rounds apart.
            r["round"] = str(i * 1000 + int(r["round"]))
            rows.append(r)
progs = ["none", "process", "sharp"]

def med(xs):
    return st.median(xs) if xs else float("nan")

def rng(xs, fmt):
    return f"{fmt.format(min(xs))}-{fmt.format(max(xs))}" if xs else "-"

for mode in ["webp-only", "webp+avif"]:
    rs = [r for r in rows if r["mode"] == mode]
    if not rs:
        continue
    rounds = sorted({int(r["round"]) for r in rs})
    by = {(int(r["round"]), r["prog"]): r for r in rs}
    print(f"\n== {mode}: {len(rounds)} rounds " + ("(sharp with MALLOC_ARENA_MAX=2)" if mode == "webp+avif" else "(sharp defaults)"))
    print(f"{'round':>5} | {'images/s none / process / sharp':>33} | {'CPU-s none / process / sharp':>30} | {'peak RSS MiB none / process / sharp':>36} | {'proc/none':>9} | {'none/sharp':>10} | {'proc/sharp':>10} | load1 before (none/process/sharp)")
    ips = {p: [] for p in progs}
    cpu = {p: [] for p in progs}
    rss = {p: [] for p in progs}
    ratios = {"process/none": [], "none/sharp": [], "process/sharp": []}
    for n in rounds:
        got = {p: by.get((n, p)) for p in progs}
        if not all(got.values()):
            print(f"{n:>5} | incomplete round, skipped")
            continue
        f = {p: float(got[p]["images_per_s"]) for p in progs}
        c = {p: float(got[p]["cpu_s"]) for p in progs}
        m = {p: int(got[p]["peak_rss_kb"]) / 1024 for p in progs}
        for p in progs:
            ips[p].append(f[p]); cpu[p].append(c[p]); rss[p].append(m[p])
        r = {"process/none": f["process"] / f["none"], "none/sharp": f["none"] / f["sharp"],
             "process/sharp": f["process"] / f["sharp"]}
        for k, v in r.items():
            ratios[k].append(v)
        loads = "/".join(got[p]["load1"] for p in progs)
        print(f"{n:>5} | {f['none']:>9.3f} / {f['process']:>9.3f} / {f['sharp']:>7.3f} | {c['none']:>8.2f} / {c['process']:>8.2f} / {c['sharp']:>8.2f} | {m['none']:>10.0f} / {m['process']:>10.0f} / {m['sharp']:>10.0f} | {r['process/none']:>9.3f} | {r['none/sharp']:>10.3f} | {r['process/sharp']:>10.3f} | {loads}")
    if not ips["none"]:
        continue
    print(f"{'med':>5} | {med(ips['none']):>9.3f} / {med(ips['process']):>9.3f} / {med(ips['sharp']):>7.3f} | {med(cpu['none']):>8.2f} / {med(cpu['process']):>8.2f} / {med(cpu['sharp']):>8.2f} | {med(rss['none']):>10.0f} / {med(rss['process']):>10.0f} / {med(rss['sharp']):>10.0f} | {med(ratios['process/none']):>9.3f} | {med(ratios['none/sharp']):>10.3f} | {med(ratios['process/sharp']):>10.3f}")
    print("ranges: images/s " + ", ".join(f"{p} {rng(ips[p], '{:.3f}')}" for p in progs)
          + "; CPU-s " + ", ".join(f"{p} {rng(cpu[p], '{:.2f}')}" for p in progs)
          + "; peak RSS MiB " + ", ".join(f"{p} {rng(rss[p], '{:.0f}')}" for p in progs))
    walls = {p: [float(r["wall_s"]) for r in rs if r["prog"] == p] for p in progs}
    print("wall s (own summary), median (range): " + ", ".join(f"{p} {med(walls[p]):.2f} ({rng(walls[p], '{:.2f}')})" for p in progs))
    mi = {p: med(ips[p]) for p in progs}
    print(f"process vs none: images/s {mi['process'] / mi['none']:.3f} (ratio of medians; per round median {med(ratios['process/none']):.3f}, {rng(ratios['process/none'], '{:.3f}')}); "
          f"CPU-s {med(cpu['process']) / med(cpu['none']):.3f}")
    for p in ["none", "process"]:
        k = f"{p}/sharp"
        print(f"prism {p} vs sharp: images/s {mi[p] / mi['sharp']:.3f}x (ratio of medians; per round median {med(ratios[k]):.3f}x, {rng(ratios[k], '{:.3f}')}); "
              f"peak RSS {med(rss[p]) / med(rss['sharp']):.3f}x of sharp's (medians; worst round pair {max(rss[p]) / min(rss['sharp']):.3f}x)")
    ref = {int(r["round"]): r for r in rs if r["prog"] == "reference"}
    pairs = [(n, float(ref[n]["images_per_s"])) for n in rounds
             if n in ref and all(by.get((n, p)) for p in progs)]
    if pairs:
        rips = [v for _, v in pairs]
        per = {p: [float(by[(n, p)]["images_per_s"]) for n, _ in pairs] for p in progs}
        rr = {p: [a / b for a, b in zip(per[p], rips)] for p in ["none", "process"]}
        rs_ = [b / a for a, b in zip(per["sharp"], rips)]
        rrss = [int(ref[n]["peak_rss_kb"]) / 1024 for n, _ in pairs]
        rcpu = med([float(ref[n]["cpu_s"]) for n, _ in pairs])
        print(f"reference (REFERENCE_BIN, in-process), {len(pairs)} rounds: "
              f"images/s {med(rips):.3f} ({rng(rips, '{:.3f}')}); CPU-s {rcpu:.2f}; "
              f"peak RSS {med(rrss):.0f} MiB (/usr/bin/time)")
        print(f"reference vs sharp: images/s {med(rips) / med(per['sharp']):.3f}x (ratio of "
              f"medians; per round median {med(rs_):.3f}x, {rng(rs_, '{:.3f}')})")
        for p in ["process", "none"]:
            print(f"{p} vs reference: images/s {med(per[p]) / med(rips):.3f} (ratio of medians; "
                  f"per round median {med(rr[p]):.3f}, {rng(rr[p], '{:.3f}')})")
    sampled = [int(r["sampled_kb"]) / 1024 for r in rs if r["prog"] == "process"]
    single = [int(r["time_maxrss_kb"]) / 1024 for r in rs if r["prog"] == "process"]
    kids = sorted({r["render_processes"] for r in rs if r["prog"] == "process"})
    if sampled:
        print(f"process peak RSS detail: sum of VmHWM {rng(rss['process'], '{:.0f}')} MiB; sampled combined RSS {rng(sampled, '{:.0f}')} MiB; "
              f"largest single process (time) {rng(single, '{:.0f}')} MiB; render processes {','.join(kids)}")
PY
}

if [ "${1:-}" = "--summarise" ]; then
  shift
  summarise "$@"
  exit 0
fi

rounds=${1:-6}
avif_rounds=${2:-$(( rounds / 2 > 0 ? rounds / 2 : 1 ))}
corpus=$(cd "${CORPUS:-../shared/corpus}" && pwd)
bin=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/release/prism-resize
sharp_dir=${SHARP_DIR:-/tmp/sharpbench}
script=$(cd ../shared/bench && pwd)/sharp-baseline.mjs
results=${RESULTS:-/tmp/bench_isolation-$(date +%Y%m%dT%H%M%S).tsv}
quiet_wait=${QUIET_WAIT_S:-300}
[ -x "$bin" ] || { echo "no release build at $bin" >&2; exit 2; }
[ -d "$sharp_dir/node_modules/sharp" ] || { echo "no sharp in $sharp_dir" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

prio() { setsid -w bash -c 'echo -20 > /proc/$$/autogroup 2>/dev/null; exec "$@"' prio "$@"; }

# CPU idle percentage over 1 s (idle + iowait over all CPUs).
idle_pct() {
  local a b
  read -r -a a < <(grep '^cpu ' /proc/stat)
  sleep 1
  read -r -a b < <(grep '^cpu ' /proc/stat)
  local t=0 i
  for i in 1 2 3 4 5 6 7 8; do t=$(( t + b[i] - a[i] )); done
  echo $(( 100 * (b[4] - a[4] + b[5] - a[5]) / (t > 0 ? t : 1) ))
}

# Wait until the machine is quiet (or $quiet_wait s have passed); sets load1, idle, waited, quiet.
wait_quiet() {
  local start=$SECONDS
  while :; do
    idle=$(idle_pct)
    load1=$(cut -d' ' -f1 /proc/loadavg)
    local compilers
    compilers=$(ps -eo comm= | grep -Ecx 'rustc|cc1|cc1plus|clang|clang-[0-9]+|ld|ld\.lld|ld\.bfd|collect2' || true)
    if [ "$compilers" -eq 0 ] && [ "$idle" -ge 85 ] && awk -v l="$load1" 'BEGIN { exit !(l <= 1.5) }'; then
      quiet=yes
      break
    fi
    if (( SECONDS - start >= quiet_wait )); then
      quiet="no(compilers=$compilers)"
      break
    fi
    sleep 5
  done
  waited=$(( SECONDS - start ))
}

json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

printf 'round\tmode\tprog\tload1\tidle_pct\twaited_s\tquiet\timages\timages_per_s\twall_s\tcpu_s\tpeak_rss_kb\tsampled_kb\ttime_maxrss_kb\trender_processes\n' > "$results"

run_one() { # ROUND MODE PROG
  local n=$1 mode=$2 prog=$3 fmts=webp,avif sharp_flag="" env=()
  if [ "$mode" = webp-only ]; then fmts=webp; sharp_flag=--webp-only; else env=(MALLOC_ARENA_MAX=2); fi
  rm -rf "$work/out"
  wait_quiet
  if [ "$prog" = sharp ]; then
    # shellcheck disable=SC2086
    (cd "$sharp_dir" && prio env "${env[@]}" /usr/bin/time -f "%e %U %S %M" -o "$work/time.txt" \
      node "$script" "$corpus" "$work/out" $sharp_flag --quiet > "$work/out.json")
  elif [ "$prog" = reference ]; then
    prio /usr/bin/time -f "%e %U %S %M" -o "$work/time.txt" \
      "$REFERENCE_BIN" bench --corpus "$corpus" --out "$work/out" --formats "$fmts" \
      > "$work/out.json" 2> "$work/err.txt"
  else
    prio /usr/bin/time -f "%e %U %S %M" -o "$work/time.txt" \
      "$bin" bench --corpus "$corpus" --out "$work/out" --formats "$fmts" --isolation "$prog" \
      ${QUALITY:+--quality "$QUALITY"} > "$work/out.json" 2> "$work/err.txt"
  fi
  local elapsed user sys maxrss
  read -r elapsed user sys maxrss < <(tail -1 "$work/time.txt")
  local cpu images ips wall peak sampled kids
  cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
  images=$(json_field "$work/out.json" images)
  ips=$(json_field "$work/out.json" images_per_s)
  wall=$(json_field "$work/out.json" wall_s)
  if [ "$prog" = sharp ] || [ "$prog" = reference ]; then
    peak=$maxrss sampled=$maxrss kids=0
  else
    peak=$(json_field "$work/out.json" peak_rss_kb)
    sampled=$(json_field "$work/out.json" peak_rss_sampled_kb)
    kids=$(json_field "$work/out.json" render_processes)
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$mode" "$prog" "$load1" "$idle" \
    "$waited" "$quiet" "$images" "$ips" "$wall" "$cpu" "$peak" "$sampled" "$maxrss" "$kids" >> "$results"
  printf '%-9s round %d %-7s load1=%s idle=%s%% waited=%ss quiet=%s images=%s images/s=%s wall=%ss cpu=%ss peak_rss=%dMiB (sampled %dMiB, time %dMiB, %s children)\n' \
    "$mode" "$n" "$prog" "$load1" "$idle" "$waited" "$quiet" "$images" "$ips" "$wall" "$cpu" \
    $(( peak / 1024 )) $(( sampled / 1024 )) $(( maxrss / 1024 )) "$kids"
}

order=(none process sharp)
if [ -n "${REFERENCE_BIN:-}" ]; then
  if [ ! -x "$REFERENCE_BIN" ]; then
    echo "REFERENCE_BIN is not an executable: $REFERENCE_BIN" >&2
    exit 2
  fi
  order+=(reference)
fi
for n in $(seq "$rounds"); do
  # Rotate the order each round (none/process/sharp, process/sharp/none, sharp/none/process;
  # with a reference, four positions the same way).
  k=$(( (n - 1) % ${#order[@]} ))
  this=("${order[@]:k}" "${order[@]:0:k}")
  for prog in "${this[@]}"; do run_one "$n" webp-only "$prog"; done
  if [ "$n" -le "$avif_rounds" ]; then
    for prog in "${this[@]}"; do run_one "$n" webp+avif "$prog"; done
  fi
done
echo "results: $results"
summarise "$results"
