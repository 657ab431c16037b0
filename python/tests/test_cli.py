"""The Python package and the `eqprop` command line are one engine: the same run gives the same
numbers bit for bit, and each reads the checkpoints the other writes."""

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np

import eqprop
from conftest import data_root


def cli_metrics(cli, out, *flags):
    done = cli("train", "--out", str(out), *flags)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_same_preset_and_seed_give_the_cli_numbers_bit_for_bit(cli, data_dir, tmp_path):
    ours = eqprop.Network("best", epochs=2)
    train = eqprop.load_dataset("mnist", "train", train_limit=600, data_dir=data_dir)
    test = eqprop.load_dataset("mnist", "test", data_dir=data_dir)
    history = ours.fit(train, validation=test, progress=False)
    theirs = cli_metrics(cli, tmp_path / "cli", "--epochs", "2", "--train-limit", "600")
    for a, b in zip(history, theirs):
        for key in ("train_error", "test_error", "mean_free_energy", "learning_rates"):
            assert a[key] == b[key], (key, a[key], b[key])


def test_a_python_checkpoint_is_read_by_eqprop_eval(cli, mnist, tmp_path):
    train, test = mnist
    net = eqprop.Network("best", epochs=1)
    net.fit(train, progress=False)
    path = tmp_path / "python.safetensors"
    net.save(path)
    printed = cli("eval", "--checkpoint", str(path))
    assert printed.returncode == 0, printed.stderr
    error = float(re.search(r"test error ([0-9.]+)%", printed.stdout).group(1))
    assert error == round(net.evaluate(test)["error"], 2)


def test_a_cli_checkpoint_is_read_and_continued_by_python(cli, data_dir, tmp_path):
    out = tmp_path / "cli"
    first = cli_metrics(cli, out, "--epochs", "1", "--train-limit", "500")
    net = eqprop.load(out / "checkpoint.safetensors", epochs=2)
    assert net.epochs_done == 1 and net.hyperparams["train_limit"] == 500
    test = eqprop.load_dataset("mnist", "test", data_dir=data_dir)
    assert net.evaluate(test)["error"] == first[0]["test_error"]
    # Python trains the second epoch into the CLI's run folder; the CLI's own two-epoch run
    # agrees bit for bit.
    train = eqprop.load_dataset("mnist", "train", train_limit=500, data_dir=data_dir)
    history = net.fit(train, validation=test, run_dir=out, progress=False)
    both = cli_metrics(cli, tmp_path / "cli2", "--epochs", "2", "--train-limit", "500")
    assert history[0]["test_error"] == both[1]["test_error"]
    assert history[0]["train_error"] == both[1]["train_error"]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2


def test_conv_checkpoints_round_trip(cli, data_dir, tmp_path):
    arch = "1x28x28,conv4k5+pool,10"
    train = eqprop.load_dataset("mnist", "train", train_limit=200, data_dir=data_dir)
    test = eqprop.load_dataset("mnist", "test", data_dir=data_dir)
    net = eqprop.Network(arch=arch, lr=[0.1, 0.02], epochs=1)
    assert net.kind == "conv"
    net.fit(train, validation=test, progress=False)
    path = tmp_path / "conv.safetensors"
    net.save(path)
    again = eqprop.load(path)
    assert again.kind == "conv" and again.hyperparams == net.hyperparams
    assert np.array_equal(again.outputs(test.images[:50]), net.outputs(test.images[:50]))
    printed = cli("eval", "--checkpoint", str(path))
    assert printed.returncode == 0, printed.stderr
    error = float(re.search(r"test error ([0-9.]+)%", printed.stdout).group(1))
    assert error == round(net.evaluate(test)["error"], 2)


def test_the_readme_script_prints_the_cli_test_error(cli, tmp_path):
    """python/examples/train.py is the README's Python script word for word, and it prints
    the test error `eqprop train --train-limit 10000` records, bit for bit."""
    root = pathlib.Path(__file__).resolve().parents[2]
    script = root / "python" / "examples" / "train.py"
    readme = (root / "README.md").read_text()
    marker = "<!-- example: python/examples/train.py -->\n```python\n"
    block = readme[readme.index(marker) + len(marker):]
    assert block[: block.index("```")] == script.read_text()
    env = dict(os.environ, EQPROP_DATA_DIR=str(data_root()))
    ran = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, check=True
    )
    printed = re.search(r"^test error (.+)%$", ran.stdout, re.M).group(1)
    theirs = cli_metrics(cli, tmp_path / "cli", "--train-limit", "10000")
    assert float(printed) == theirs[-1]["test_error"] and len(theirs) == 30
    assert printed == repr(theirs[-1]["test_error"])
