#!/usr/bin/env bash
# Interleaved epoch timing of two eqprop binaries (before and after a change): ROUNDS times,
# each binary in turn trains a fresh network with `eqprop bench --no-torch --rounds 1` (extra
# arguments go to bench, e.g. --epochs 6 or --preset paper-2h); prints one line of s/epoch per
# run, then the medians (of every epoch, and of every epoch after a round's first).
# Usage: tools/bench-ab.sh BIN_BEFORE BIN_AFTER ROUNDS [bench arguments...]
set -euo pipefail
before=$1 after=$2 rounds=$3
shift 3
log=$(mktemp)
for _ in $(seq "$rounds"); do
    for bin in "$before" "$after"; do
        line=$("$bin" bench --no-torch --rounds 1 --settle 1 "$@" 2>&1 | grep "round 1: eqprop")
        echo "$bin $(echo "$line" | sed 's/.*eqprop  \[\(.*\)\] s\/epoch.*/\1/')" | tee -a "$log"
    done
done
python3 - "$log" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, rest = line.split(" ", 1)
    runs.setdefault(name, []).append([float(x) for x in rest.split(",")])
base = None
for name, rounds in runs.items():
    every = [x for r in rounds for x in r]
    later = [x for r in rounds for x in r[1:]] or every
    m, ml = statistics.median(every), statistics.median(later)
    base = base or (m, ml)
    print(f"{name}: median {m:.4f} s/epoch ({m / base[0]:.3f}x), after each round's first "
          f"{ml:.4f} ({ml / base[1]:.3f}x), {len(every)} epochs")
PY
rm -f "$log"
