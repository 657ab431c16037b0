#!/usr/bin/env bash
# Lives the default worlds of an environment at several seeds with every strategy (dreams, the
# ungated dreams, fine-tuning, kept real transitions, joint learning), two lives at a time, then
# prints the tables of docs/life.md (tools/life_table.py).
#
#   tools/life_seeds.sh cartpole-v1 0 1 2 3 4
#   tools/life_seeds.sh pendulum-v1 0 1 2 3 4
#
# Runs go to $EQPROP_LIFE_OUT (default runs/life), one folder per env, strategy and seed; a
# folder that already holds a summary.json is not run again. EQPROP_LIFE_VARIANTS picks the
# variants (default: all five); extra flags for every life go in EQPROP_LIFE_FLAGS.
set -euo pipefail
env_id=${1:?usage: tools/life_seeds.sh ENV SEED...}
shift
bin=${EQPROP_BIN:-./target/release/eqprop}
out=${EQPROP_LIFE_OUT:-runs/life}
[ -x "$bin" ] || { echo "error: $bin not found: run cargo build --release" >&2; exit 2; }
jobs=()
for seed in "$@"; do
    for variant in ${EQPROP_LIFE_VARIANTS:-dreams dreams-ungated fine-tune real joint}; do
        jobs+=("$seed $variant")
    done
done
run_one() {
    local seed=$1 variant=$2 flags=""
    local dir="$out/$env_id-$variant-$seed"
    [ -f "$dir/summary.json" ] && return 0
    case $variant in
        dreams-ungated) flags="--strategy dreams --no-gate" ;;
        *) flags="--strategy $variant" ;;
    esac
    mkdir -p "$dir"
    # shellcheck disable=SC2086
    "$bin" life --env "$env_id" --seed "$seed" $flags ${EQPROP_LIFE_FLAGS:-} --out "$dir" > "$dir/log.txt" 2>&1 \
        || { echo "error: $variant seed $seed failed, see $dir/log.txt" >&2; return 1; }
    echo "done: $env_id $variant seed $seed" >&2
}
export -f run_one
export bin out env_id
printf '%s\n' "${jobs[@]}" | xargs -P "${EQPROP_LIFE_JOBS:-2}" -L 1 bash -c 'run_one $0 $1'
python3 "$(dirname "$0")/life_table.py" "$out" "$env_id" "$@"
