#!/usr/bin/env python3
"""Where the hard sigmoid's clamp blocks EqProp's learning signal, for a trained checkpoint.

Relaxes training images free and nudged (``eqprop.Network.relax``) and reports, at the output,
how often the target's unit sits at 0 and stays there in the nudged phase (the nudge cannot
move it, so the example teaches nothing through it), and for every layer the share of states
at 0, at 1, and moved by the nudge.

    python3 tools/clamp_probe.py runs/fashion/checkpoint.safetensors --dataset fashion-mnist
"""

import argparse

import numpy as np

import eqprop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--images", type=int, default=2000, help="first N training images")
    ap.add_argument("--beta", type=float, default=0.5)
    args = ap.parse_args()

    net = eqprop.load(args.checkpoint)
    data = eqprop.load_dataset(args.dataset, "train", train_limit=args.images, data_dir=args.data_dir)
    y = np.asarray(data.labels)
    n, rows = len(y), np.arange(len(y))
    flat = lambda states: [np.asarray(s).reshape(n, -1) for s in states]
    free = flat(net.relax(data.images).states)
    nudged = flat(net.relax(data.images, y, beta=args.beta).states)

    out_free, out_nudged = free[-1], nudged[-1]
    wrong = out_free.argmax(1) != y
    target = np.zeros_like(out_free)
    target[rows, y] = 1.0
    at_bound = (out_free == 0) | (out_free == 1)
    stuck = (out_free == out_nudged) & at_bound & (out_free != target)
    print(f"{n} training images, beta {args.beta}: train error {100 * wrong.mean():.2f}%")
    true_free, true_nudged = out_free[rows, y], out_nudged[rows, y]
    print(f"  target's output at 0, free: {100 * (true_free == 0).mean():.2f}% of all, "
          f"{100 * (true_free[wrong] == 0).mean():.2f}% of the misclassified")
    print(f"  ... and still at 0 nudged: {100 * ((true_free == 0) & (true_nudged == 0)).mean():.2f}% "
          f"of all, {100 * ((true_free == 0) & (true_nudged == 0))[wrong].mean():.2f}% of the misclassified")
    print(f"  misclassified examples with any output stuck away from its target: "
          f"{100 * stuck[wrong].any(1).mean():.2f}%")
    for k, (a, b) in enumerate(zip(free[1:], nudged[1:]), start=1):
        print(f"  layer {k}: {100 * (a == 0).mean():.1f}% at 0, {100 * (a == 1).mean():.1f}% at 1, "
              f"{100 * (a != b).mean():.1f}% moved by the nudge")


if __name__ == "__main__":
    main()
