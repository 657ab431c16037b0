#!/usr/bin/env bash
# Stages what tools/cuda-device-check.sh needs on a GPU machine that has no Rust: the eqprop
# binary, the CUDA test binary and the engine suite (tests/run.rs), built here with --features
# cuda, and the MNIST files, in .device/ (ignored by git; carry it to the GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${EQPROP_DATA_DIR:-$(cd .. && pwd)/shared/data}"
cargo build --release --features cuda
built=$(cargo test --release --features cuda --test cuda --test run --no-run 2>&1)
tests=$(echo "$built" | sed -n 's/.*Executable tests\/cuda.rs (\(.*\))/\1/p')
engine_tests=$(echo "$built" | sed -n 's/.*Executable tests\/run.rs (\(.*\))/\1/p')
rm -rf .device && mkdir -p .device/data
cp target/release/eqprop .device/eqprop
cp "$tests" .device/cuda-tests
cp "$engine_tests" .device/engine-tests
cp -r "$data/mnist" .device/data/mnist
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
du -sh .device
