#!/usr/bin/env python3
"""Replays the relative surprise gate of `eqprop life` on the surprise a life recorded, at
other settings: what share of each world's first and last 500 steps it would have learned.

    python3 tools/gate_replay.py RATE SHARE SMOOTHING DIR...

DIR holds a life's steps.csv (`eqprop life --out DIR`). The surprise of a step is taken as its
scaled error squared (the gate judges 1/2 ||y - t||^2 in the same scaled units, up to a
constant factor, which a relative threshold ignores); the mood is `m += S (C - m)`, the threshold
starts at 1e-8 in every world and moves as `ln theta += RATE (learned - SHARE)`. The replay is
open-loop: a step the replay learns from does not change the errors that follow, as it would
in a life, so it bounds what a setting can do rather than predicting it.
"""
import csv
import math
import sys


def replay(path, rate, share, smoothing):
    rows = list(csv.DictReader(open(path)))
    for world in sorted({r["world"] for r in rows}, key=int):
        steps = [r for r in rows if r["world"] == world]
        threshold, mood, learned = 1e-8, None, []
        for r in steps:
            error = float(r["error"])
            surprise = 1.0 if math.isnan(error) else error * error
            mood = surprise if mood is None else mood + smoothing * (surprise - mood)
            learned.append(mood > threshold)
            threshold *= math.exp(rate * (learned[-1] - share))
        recorded = sum(float(r["learned"]) for r in steps[-500:]) / 500
        yield world, sum(learned[:500]) / 500, sum(learned[-500:]) / 500, recorded


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    rate, share, smoothing = map(float, sys.argv[1:4])
    print("| life | world | first 500 learned | last 500 learned (as lived) |")
    print("|---|---|---|---|")
    for d in sys.argv[4:]:
        for world, first, last, lived in replay(f"{d}/steps.csv", rate, share, smoothing):
            print(f"| {d} | {world} | {100 * first:.0f}% | {100 * last:.1f}% ({100 * lived:.1f}%) |")


if __name__ == "__main__":
    main()
