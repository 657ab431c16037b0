#!/usr/bin/env bash
# Interleaved timing of two eqprop binaries (before and after a change): ROUNDS times, each
# binary in turn runs `eqprop bench --no-torch --rounds 1` (extra arguments go to bench, e.g.
# --epochs 6, --preset paper-2h, or --preset conv-reference for a network with convolutions);
# prints one line per run, then the medians. Dense networks report s/epoch (the medians of
# every epoch, and of every epoch after a round's first), networks with convolutions ms per
# training image.
# Usage: tools/bench-ab.sh BIN_BEFORE BIN_AFTER ROUNDS [bench arguments...]
set -euo pipefail
before=$1 after=$2 rounds=$3
shift 3
log=$(mktemp)
for _ in $(seq "$rounds"); do
    for bin in "$before" "$after"; do
        line=$("$bin" bench --no-torch --rounds 1 --settle 1 "$@" 2>&1 | grep "round 1: eqprop")
        case "$line" in
            *"ms per training image"*) value=$(echo "$line" | sed 's/.*eqprop \([0-9.]*\) ms per training image.*/\1/') ;;
            *) value=$(echo "$line" | sed 's/.*eqprop  \[\(.*\)\] s\/epoch.*/\1/') ;;
        esac
        echo "$bin $value" | tee -a "$log"
    done
done
unit="s/epoch"
grep -q "ms per training image" <<<"$line" && unit="ms/image"
python3 - "$log" "$unit" <<'PY'
import statistics, sys
runs = {}
unit = sys.argv[2]
for line in open(sys.argv[1]):
    name, rest = line.split(" ", 1)
    runs.setdefault(name, []).append([float(x) for x in rest.split(",")])
base = None
for name, rounds in runs.items():
    every = [x for r in rounds for x in r]
    later = [x for r in rounds for x in r[1:]] or every
    m, ml = statistics.median(every), statistics.median(later)
    base = base or (m, ml)
    if unit == "s/epoch":
        print(f"{name}: median {m:.4f} s/epoch ({m / base[0]:.3f}x), after each round's first "
              f"{ml:.4f} ({ml / base[1]:.3f}x), {len(every)} epochs")
    else:
        print(f"{name}: median {m:.2f} ms per training image ({m / base[0]:.3f}x), {len(every)} runs")
PY
rm -f "$log"
