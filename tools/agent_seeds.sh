#!/usr/bin/env bash
# Runs `eqprop agent` at several seeds, with the learned EqProp world model and, on the same
# evaluation episodes, the planner with the true simulator and the random policy; prints a
# Markdown table row per seed (every figure of docs/agent.md's seed table comes from here).
#
#   tools/agent_seeds.sh cartpole-v1 0 1 2 3 4 5 6 7 8 9
#   tools/agent_seeds.sh pendulum-v1 0 1 2 3 4
#
# Extra flags for the EqProp runs go in EQPROP_AGENT_FLAGS (e.g. "--kinematic-prior").
set -euo pipefail
env_id=${1:?usage: tools/agent_seeds.sh ENV SEED...}
shift
bin=${EQPROP_BIN:-./target/release/eqprop}
out=${EQPROP_AGENT_OUT:-runs/agent-seeds}
[ -x "$bin" ] || { echo "error: $bin not found: run cargo build --release" >&2; exit 2; }
summary() { # the summary line's mean length / return, one-step error, median decision
    grep "evaluation episodes" | sed -E 's/.*mean length ([0-9.]+), mean return (-?[0-9.]+), one-step error ([0-9.na/]+), .*median decision ([0-9.]+) ms/\1 \2 \3 \4/'
}
echo "| seed | eqprop: mean length | mean return | one-step error | per component | in the evaluation's own units | median decision (ms) | true simulator: mean return | random: mean return |"
echo "|---|---|---|---|---|---|---|---|---|"
for seed in "$@"; do
    log=$("$bin" agent --env "$env_id" --seed "$seed" --no-gif --out "$out/$env_id-$seed" ${EQPROP_AGENT_FLAGS:-})
    read -r length ret err ms <<<"$(summary <<<"$log")"
    parts=$(grep "per component" <<<"$log" | sed 's/.*: //')
    own=$(grep "own std of change" <<<"$log" | sed -E 's/.*\(pooled ([0-9.]+)\)/\1/')
    read -r _ t_ret _ _ <<<"$("$bin" agent --env "$env_id" --seed "$seed" --model true --no-gif --out "$out/$env_id-$seed-true" | summary)"
    read -r _ r_ret _ _ <<<"$("$bin" agent --env "$env_id" --seed "$seed" --model random --no-gif --out "$out/$env_id-$seed-random" | summary)"
    echo "| $seed | $length | $ret | $err | $parts | $own | $ms | $t_ret | $r_ret |"
done
