#!/usr/bin/env bash
# One command on a GPU machine (builds nothing there): the CUDA backend's correctness tests
# against the CPU path, then `eqprop bench --device cuda` (relax() grid against PyTorch's eager
# loop on the same GPU, one training epoch on 60,000 images). Stage the binaries first with
# tools/cuda-device-prepare.sh and carry .device/. The table lands in ${OUT:-.device}/cuda-bench.md.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.device}"
# cudarc opens libnvrtc / libcublas by name: put the toolkit's (or PyTorch's wheels') on the path.
dirs=$(find /usr/local/cuda*/ /opt /usr/lib -name 'libnvrtc.so*' -o -name 'libcublas.so*' 2>/dev/null |
    grep -v /stubs/ | xargs -r -n1 dirname | sort -u | tr '\n' ':')
export LD_LIBRARY_PATH="${dirs}${LD_LIBRARY_PATH:-}"
export EQPROP_DATA_DIR="$PWD/.device/data"
# A GPU machine: a CUDA test that cannot find the GPU fails instead of skipping.
export EQPROP_REQUIRE_GPU=1
nvidia-smi -L
status=0
echo "== correctness: CUDA against CPU"
.device/cuda-tests --test-threads 1 --nocapture 2>&1 | tee "$out/cuda-tests.log" || status=1
echo "== the engine suite on every engine (CPU and CUDA)"
.device/engine-tests every_engine --nocapture 2>&1 | tee "$out/engine-tests.log" || status=1
echo "== eqprop train --device cuda (1 epoch of the paper preset)"
.device/eqprop train --device cuda --preset paper --epochs 1 --out /tmp/eqprop-cuda-run 2>&1 |
    tail -4 || status=1
echo "== benchmark"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem --format=csv
.device/eqprop bench --device cuda --preset paper --threads "$(nproc)" \
    --report "$out/cuda-bench.md" "$@" 2>&1 | tee "$out/bench.log" || status=1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem --format=csv
exit $status
