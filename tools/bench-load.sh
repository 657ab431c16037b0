#!/usr/bin/env bash
# Epoch time of `eqprop train` (default preset, 2 threads) on an idle machine and next to CPU-bound
# processes, for one or more eqprop binaries, interleaved round by round.
#
#   tools/bench-load.sh [--rounds R] [--busy N] [--epochs E] BINARY [BINARY...]
#
# Each round trains E epochs with every binary idle, then starts N busy loops (`sh -c 'while :;
# do :; done'`, as many as the machine has cores by default), trains E epochs with every binary
# again and stops the loops. The figure of a run is the median of its epochs' seconds (from
# metrics.jsonl); the table gives each binary's median over the rounds and its loaded/idle ratio.
# Needs the MNIST files (EQPROP_DATA_DIR or the download cache); uses the first 10,000 images.
set -euo pipefail

rounds=3
busy=$(nproc)
epochs=3
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) rounds=$2; shift 2 ;;
        --busy) busy=$2; shift 2 ;;
        --epochs) epochs=$2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) break ;;
    esac
done
[[ $# -ge 1 ]] || { echo "usage: $0 [--rounds R] [--busy N] [--epochs E] BINARY [BINARY...]" >&2; exit 2; }
bins=("$@")
work=$(mktemp -d)
loops=()
stop_loops() { for p in "${loops[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done; loops=(); }
trap 'stop_loops; rm -rf "$work"' EXIT

# Median epoch seconds of one training run of binary $1.
epoch_seconds() {
    local out="$work/run"
    rm -rf "$out"
    "$1" train --train-limit 10000 --epochs "$epochs" --threads 2 --out "$out" >/dev/null 2>&1
    python3 - "$out/metrics.jsonl" <<'EOF'
import json, statistics, sys
print(statistics.median(json.loads(l)["seconds"] for l in open(sys.argv[1])))
EOF
}

declare -A idle loaded
for ((r = 1; r <= rounds; r++)); do
    for b in "${bins[@]}"; do
        s=$(epoch_seconds "$b"); idle[$b]+="$s "
        echo "round $r idle   $(basename "$b"): $s s/epoch" >&2
    done
    for ((i = 0; i < busy; i++)); do sh -c 'while :; do :; done' & loops+=($!); done
    sleep 1
    for b in "${bins[@]}"; do
        s=$(epoch_seconds "$b"); loaded[$b]+="$s "
        echo "round $r loaded $(basename "$b"): $s s/epoch ($busy busy loops)" >&2
    done
    stop_loops
    sleep 1
done

echo "| binary | idle s/epoch (median) | with $busy busy loops (median) | loaded / idle |"
echo "|---|---|---|---|"
for b in "${bins[@]}"; do
    python3 - "$b" "${idle[$b]}" "${loaded[$b]}" <<'EOF'
import statistics, sys
name, idle, loaded = sys.argv[1], list(map(float, sys.argv[2].split())), list(map(float, sys.argv[3].split()))
i, l = statistics.median(idle), statistics.median(loaded)
print(f"| {name} | {i:.3f} ({' '.join(f'{x:.3f}' for x in idle)}) | {l:.3f} ({' '.join(f'{x:.3f}' for x in loaded)}) | {l / i:.1f}x |")
EOF
done
