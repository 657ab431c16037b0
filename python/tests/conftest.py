"""Shared fixtures: the data the Rust tests read, and the `eqprop` binary of this checkout."""

import os
import pathlib
import subprocess

import pytest

import eqprop

ROOT = pathlib.Path(__file__).resolve().parents[2]


def data_root() -> pathlib.Path:
    """`EQPROP_DATA_DIR` if set (CI points it at the full files), else the committed sample."""
    return pathlib.Path(os.environ.get("EQPROP_DATA_DIR") or ROOT / "tests" / "data")


@pytest.fixture(scope="session")
def data_dir() -> str:
    return str(data_root())


@pytest.fixture(scope="session")
def mnist(data_dir):
    """The first 500 MNIST training images and the test set."""
    train = eqprop.load_dataset("mnist", "train", train_limit=500, data_dir=data_dir)
    test = eqprop.load_dataset("mnist", "test", data_dir=data_dir)
    return train, test


@pytest.fixture(scope="session")
def cli():
    """Runs `target/release/eqprop` (built by `cargo test --release`) on the same data."""
    binary = ROOT / "target" / "release" / "eqprop"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: build it first (cargo build --release)")

    def run(*args: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, EQPROP_DATA_DIR=str(data_root()))
        return subprocess.run(
            [str(binary), *args], env=env, capture_output=True, text=True, check=False
        )

    return run
