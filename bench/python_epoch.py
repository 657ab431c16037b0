"""Per-epoch time of the Python package against the `eqprop` CLI: same preset, same data, same
machine, rounds interleaved (CLI, Python, CLI, Python, ...).

    python3 bench/python_epoch.py [--rounds 5] [--epochs 5] [--train-limit 10000] [--preset best]

Each side trains a fresh network for `--epochs` epochs per round; an epoch's time is the
`seconds` it records (the engine's clock around the training epoch: the Python side's progress
bar and callbacks run inside it). Prints the median epoch time of each side and their ratio,
and checks that both sides recorded the same test errors.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import tempfile
import time

import eqprop

ROOT = pathlib.Path(__file__).resolve().parents[1]


def cli_round(binary, args, out):
    flags = ["--preset", args.preset, "--epochs", str(args.epochs), "--out", str(out), "--force"]
    if args.train_limit:
        flags += ["--train-limit", str(args.train_limit)]
    started = time.perf_counter()
    subprocess.run([str(binary), "train", *flags], check=True, capture_output=True)
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return records, wall


def python_round(args, train, test):
    net = eqprop.Network(args.preset, epochs=args.epochs)
    started = time.perf_counter()
    records = net.fit(train, validation=test)
    return records, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-limit", type=int, default=10000)
    parser.add_argument("--preset", default="best")
    args = parser.parse_args()
    binary = ROOT / "target" / "release" / "eqprop"
    train = eqprop.load_dataset("mnist", "train", train_limit=args.train_limit)
    test = eqprop.load_dataset("mnist", "test")
    cli_epochs, py_epochs, cli_walls, py_walls = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            cli, cli_wall = cli_round(binary, args, pathlib.Path(tmp) / "cli")
            py, py_wall = python_round(args, train, test)
            assert [c["test_error"] for c in cli] == [p["test_error"] for p in py], "results differ"
            cli_epochs += [c["seconds"] for c in cli]
            py_epochs += [p["seconds"] for p in py]
            cli_walls.append(cli_wall)
            py_walls.append(py_wall)
            print(f"round {r + 1}: epoch medians CLI {statistics.median(c['seconds'] for c in cli):.4f} s, "
                  f"Python {statistics.median(p['seconds'] for p in py):.4f} s", flush=True)
    cli_median, py_median = statistics.median(cli_epochs), statistics.median(py_epochs)
    print(f"{args.preset}, {args.train_limit} images, {args.rounds} rounds x {args.epochs} epochs, "
          f"threads {os.environ.get('RAYON_NUM_THREADS', 'default')}")
    print(f"epoch seconds, median: CLI {cli_median:.4f}, Python {py_median:.4f}: "
          f"Python/CLI {py_median / cli_median:.3f}")
    print(f"whole run (process or fit call, evaluations included), median: "
          f"CLI {statistics.median(cli_walls):.3f} s, Python {statistics.median(py_walls):.3f} s")
    print("test errors: identical in every round")


if __name__ == "__main__":
    main()
