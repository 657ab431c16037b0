"""A hyperparameter sweep of eqprop on Ray Tune: learning rates x beta x batch size.

Each trial trains the `best` 784-500-10 network with one combination and reports its test error
after every epoch; Tune runs the trials side by side and prints the best configuration.

Here (a local Ray instance on this machine's cores, one thread per trial):

    python3 python/examples/tune_sweep.py --epochs 1 --train-limit 10000

On a Ray cluster, unchanged: install eqprop on every node (`pip install ./python`), make the
data reachable on every node (the same `--data-dir`, or let each node download it into its
cache), start Ray (`ray start --head` on one node, `ray start --address=<head>:6379` on the
others), and run the same command on the head node with `--address auto` (or with
`RAY_ADDRESS` set). Tune spreads the trials over every node's CPUs; nothing here changes.
"""

import argparse
import os

import ray
from ray import tune

import eqprop


def train_trial(config: dict) -> None:
    """One trial: train with `config`, report the test error after every epoch."""
    data = config["data_dir"]
    train = eqprop.load_dataset("mnist", "train", train_limit=config["train_limit"], data_dir=data)
    test = eqprop.load_dataset("mnist", "test", data_dir=data)
    lr = config["lr"]
    net = eqprop.Network(
        "best",
        lr=[lr, lr / 2],  # the preset's ratio between the two couplings
        beta=config["beta"],
        batch_size=config["batch_size"],
        epochs=config["epochs"],
    )

    def report(record: dict) -> None:
        tune.report({"test_error": record["test_error"], "epoch": record["epoch"]})

    net.fit(train, validation=test, callbacks=report, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", help="a Ray cluster to join (auto: RAY_ADDRESS or the local one)")
    parser.add_argument("--cpus", type=int, help="CPUs of a local Ray instance (default: all)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-limit", type=int, default=10000)
    parser.add_argument("--data-dir", default=os.environ.get("EQPROP_DATA_DIR"))
    parser.add_argument("--lr", type=float, nargs="+", default=[0.2, 0.4])
    parser.add_argument("--beta", type=float, nargs="+", default=[0.5, 1.0])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[10, 20])
    args = parser.parse_args()
    # One engine thread per trial: Tune gives each trial one CPU.
    runtime_env = {"env_vars": {"RAYON_NUM_THREADS": "1"}}
    if args.address:
        ray.init(address=args.address, runtime_env=runtime_env)
    else:
        ray.init(num_cpus=args.cpus, runtime_env=runtime_env, include_dashboard=False)
    space = {
        "lr": tune.grid_search(args.lr),
        "beta": tune.grid_search(args.beta),
        "batch_size": tune.grid_search(args.batch_size),
        "epochs": args.epochs,
        "train_limit": args.train_limit,
        "data_dir": args.data_dir,
    }
    tuner = tune.Tuner(
        tune.with_resources(train_trial, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(metric="test_error", mode="min"),
    )
    results = tuner.fit()
    errors = [r.error for r in results if r.error]
    if errors:
        raise SystemExit(f"{len(errors)} trial(s) failed: {errors[0]}")
    best = results.get_best_result()
    keys = ("lr", "beta", "batch_size")
    print(f"{len(results)} trials; best: " + ", ".join(f"{k} {best.config[k]}" for k in keys)
          + f": test error {best.metrics['test_error']:.2f}% after {best.metrics['epoch']} epoch(s)")


if __name__ == "__main__":
    main()
