#!/usr/bin/env bash
# The results a refactor must not change, as digests: `train --epochs 3`, `train --generative
# --epochs 2`, `continual --replay dreams --seed 1` and `agent --env cartpole-v1 --seed 0`, run
# with BIN in OUTDIR. Checkpoints are compared by their canonical form
# (tools/checkpoint-digest.py), summary.json without its "seconds", episodes.csv without its
# three timing columns; every other file by its bytes. Diff the output of two binaries.
# Usage: EQPROP_DATA_DIR=... tools/fingerprint.sh BIN OUTDIR   (about 8 minutes on 2 cores)
set -euo pipefail
tools=$(cd "$(dirname "$0")" && pwd)
bin=$(realpath "$1")
mkdir -p "$2" && cd "$2"
"$bin" train --epochs 3 --out train3 --force > train3.log 2>&1
"$bin" train --generative --epochs 2 --out gen2 --force > gen2.log 2>&1
"$bin" continual --replay dreams --seed 1 --out cont > cont.log 2>&1
"$bin" agent --env cartpole-v1 --seed 0 --out agent > agent.log 2>&1
python3 "$tools/checkpoint-digest.py" train3/checkpoint.safetensors gen2/checkpoint.safetensors
python3 -c 'import json,hashlib; d=json.load(open("cont/summary.json")); d.pop("seconds",None); print(hashlib.sha256(json.dumps(d,sort_keys=True).encode()).hexdigest(), "cont/summary.json (no seconds)")'
echo "$(cut -d, -f1-9 agent/episodes.csv | sha256sum | cut -c1-64) agent/episodes.csv (columns 1-9)"
find cont agent -type f ! -name summary.json ! -name episodes.csv ! -name '*.log' | sort | xargs sha256sum
