#!/usr/bin/env python3
"""Prints the Markdown tables of docs/life.md from the lives tools/life_seeds.sh ran.

Usage: python3 tools/life_table.py RUNS_DIR ENV SEED...

Reads RUNS_DIR/ENV-VARIANT-SEED/{matrix.csv,summary.json} for the variants dreams,
dreams-ungated, fine-tune, real and joint. Per seed and variant: each earlier world's one-step
error right after it was learned and after the last world (and their ratio), the control in every
world after the last one (CartPole: mean length over the test episodes; Pendulum: mean return), the
gate's shares, the learning work and the slowest decision (the ungated life's beside them in
brackets, where it was run).
"""

import csv
import json
import sys
from pathlib import Path

VARIANTS = ["dreams", "fine-tune", "real", "joint", "dreams-ungated"]


def load(runs, env, variant, seed):
    d = Path(runs) / f"{env}-{variant}-{seed}"
    with open(d / "matrix.csv") as f:
        rows = list(csv.DictReader(f))
    with open(d / "summary.json") as f:
        summary = json.load(f)
    return rows, summary


def control(row, cartpole):
    return float(row["mean_length"] if cartpole else row["mean_return"])


def main():
    runs, env, seeds = sys.argv[1], sys.argv[2], sys.argv[3:]
    cartpole = env.lower().startswith("cartpole")
    target = "mean length >= 475" if cartpole else "mean return >= -250"
    met = (lambda c: c >= 475) if cartpole else (lambda c: c >= -250)
    print(f"### {env}: the error matrix after the last world ({target})\n")
    print("| seed | strategy | earlier worlds: error right after learned -> after the last (ratio) "
          "| control after the last world, per world | worst ratio | every target met |")
    print("|---|---|---|---|---|---|")
    worst = {}
    for seed in seeds:
        for variant in VARIANTS:
            try:
                rows, summary = load(runs, env, variant, seed)
            except FileNotFoundError:
                continue
            last = max(int(r["stage"]) for r in rows)
            final = {int(r["world"]): r for r in rows if int(r["stage"]) == last}
            cells, ratios = [], []
            if variant != "joint":
                for w in sorted(final)[:-1]:
                    learned = next(r for r in rows if int(r["stage"]) == w and int(r["world"]) == w)
                    a, b = float(learned["one_step_error"]), float(final[w]["one_step_error"])
                    ratios.append(b / a)
                    cells.append(f"w{w}: {a:.4f} -> {b:.4f} ({b / a:.2f}x)")
            else:
                cells = [f"w{w}: {float(final[w]['one_step_error']):.4f}" for w in sorted(final)]
            controls = [control(final[w], cartpole) for w in sorted(final)]
            ok = all(met(c) for c in controls) and all(r <= 1.5 for r in ratios)
            worst.setdefault(variant, []).append(max(ratios) if ratios else float("nan"))
            print(f"| {seed} | {variant} | {'; '.join(cells)} | "
                  f"{', '.join(f'{c:.1f}' for c in controls)} | "
                  f"{max(ratios):.2f}x | {'yes' if ok else 'no'} |" if ratios else
                  f"| {seed} | {variant} | {'; '.join(cells)} | "
                  f"{', '.join(f'{c:.1f}' for c in controls)} | - | "
                  f"{'yes' if ok else 'no'} |")
    print(f"\n### {env}: the surprise gate\n")
    ungated_runs = [Path(runs) / f"{env}-dreams-ungated-{seed}" / "summary.json" for seed in seeds]
    brackets = " (ungated)" if any(p.exists() for p in ungated_runs) else ""
    print("| seed | learned in the first 500 steps of each world | in the last 500 | "
          f"share of all steps | EqProp updates{brackets} | final error, mean over worlds{brackets} "
          "| slowest decision: p99 / max (ms) |")
    print("|---|---|---|---|---|---|---|")
    for seed in seeds:
        try:
            rows, s = load(runs, env, "dreams", seed)
        except FileNotFoundError:
            continue
        try:
            urows, u = load(runs, env, "dreams-ungated", seed)
        except FileNotFoundError:
            urows, u = None, None
        first = ", ".join(f"{100 * st['learned_first_500']:.0f}%" for st in s["stages"])
        lastw = ", ".join(f"{100 * st['learned_last_500']:.1f}%" for st in s["stages"])
        last = max(int(r["stage"]) for r in rows)

        def mean_final(rs):
            errs = [float(r["one_step_error"]) for r in rs if int(r["stage"]) == last]
            return sum(errs) / len(errs)

        p99 = max(float(r["p99_decision_ms"]) for r in rows)
        mx = max(float(r["max_decision_ms"]) for r in rows)
        work, error = ("", "")
        if u:
            work = f" ({u['updates']}, {s['updates'] / u['updates']:.2f}x)"
            error = f" ({mean_final(urows):.4f})"
        print(f"| {seed} | {first} | {lastw} | {100 * s['learned_share']:.1f}% | "
              f"{s['updates']}{work} | {mean_final(rows):.4f}{error} | {p99:.2f} / {mx:.2f} |")


if __name__ == "__main__":
    main()
