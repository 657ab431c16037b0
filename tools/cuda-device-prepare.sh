#!/usr/bin/env bash
# Stages what tools/cuda-device-check.sh needs on a GPU machine that has no Rust: the eqprop
# binary and the CUDA test binary (built here with --features cuda) and the MNIST files, in
# .device/ (ignored by git; carry it to the GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${EQPROP_DATA_DIR:-$(cd .. && pwd)/shared/data}"
cargo build --release --features cuda
tests=$(cargo test --release --features cuda --test cuda --no-run 2>&1 |
    sed -n 's/.*Executable tests\/cuda.rs (\(.*\))/\1/p')
rm -rf .device && mkdir -p .device/data
cp target/release/eqprop .device/eqprop
cp "$tests" .device/cuda-tests
cp -r "$data/mnist" .device/data/mnist
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
du -sh .device
