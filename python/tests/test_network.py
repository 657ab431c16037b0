"""fit, predict, evaluate, relax, callbacks and threads: the Python API over the Rust engine."""

import json

import numpy as np
import pytest

import eqprop


def test_fit_predict_evaluate_agree(mnist):
    train, test = mnist
    net = eqprop.Network("best", epochs=2)
    history = net.fit(train, validation=test, progress=False)
    assert [r["epoch"] for r in history] == [1, 2]
    assert net.epochs_done == 2
    last = history[-1]
    assert last["train_error"] < 60.0, last  # it learned something in two epochs of 500 images
    evaluation = net.evaluate(test)
    assert evaluation["error"] == last["test_error"]
    predicted = net.predict(test.images)
    assert predicted.shape == (len(test),) and predicted.dtype == np.int64
    error = 100.0 * np.mean(predicted != test.labels)
    assert error == pytest.approx(evaluation["error"], abs=1e-9)
    assert net.score(test) == pytest.approx(1.0 - evaluation["error"] / 100.0)
    assert net.outputs(test.images[:3]).shape == (3, 10)


def test_fit_takes_numpy_arrays_and_matches_the_dataset_path(mnist):
    train, test = mnist
    a = eqprop.Network("best", epochs=1).fit(train, validation=test, progress=False)
    x, y = np.array(train.images), train.labels.astype(np.int64)
    b = eqprop.Network("best", epochs=1).fit(
        x, y, validation=(test.images, test.labels), progress=False
    )
    for key in ("train_error", "test_error", "mean_free_energy"):
        assert a[0][key] == b[0][key]


def test_fit_without_validation_has_no_test_error(mnist):
    train, _ = mnist
    history = eqprop.Network("best", epochs=1).fit(train, progress=False)
    assert history[0]["test_error"] is None


def test_callbacks_hear_every_epoch_and_can_stop(mnist):
    train, test = mnist
    heard = []
    net = eqprop.Network("best", epochs=3)
    history = net.fit(train, validation=test, callbacks=heard.append, progress=False)
    assert heard == history and len(heard) == 3

    def stop_after_first(record):
        return record["epoch"] < 1

    net = eqprop.Network("best", epochs=3)
    history = net.fit(train, validation=test, callbacks=stop_after_first, progress=False)
    assert len(history) == 1 and net.epochs_done == 1

    def broken(record):
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        eqprop.Network("best", epochs=3).fit(train, callbacks=broken, progress=False)


def test_progress_bar_reports_the_epoch(mnist, capsys):
    train, test = mnist
    eqprop.Network("best", epochs=1).fit(train, validation=test)
    shown = capsys.readouterr()
    assert "epoch   1  train error" in shown.out  # the epoch's line, as the CLI prints it
    assert "img/s" in shown.err  # the bar


def test_relax_settles_lower_than_the_start_and_nudges_toward_the_label(mnist):
    train, test = mnist
    net = eqprop.Network("best", epochs=1)
    net.fit(train, progress=False)
    x, y = test.images[:8], test.labels[:8]
    free = net.relax(x)
    assert [s.shape for s in free.states] == [(8, 784), (8, 500), (8, 10)]
    assert np.array_equal(free.states[0], x.reshape(8, 784))
    # The zero state has energy 0; relaxation only lowers it.
    assert (free.energy < 0).all()
    assert np.array_equal(free.states[-1], net.outputs(x))
    nudged = net.relax(x, y, beta=1.0)
    target = np.eye(10, dtype=np.float32)[y]
    cost = lambda s: ((s - target) ** 2).sum(axis=1)  # noqa: E731
    assert (cost(nudged.states[-1]) <= cost(free.states[-1]) + 1e-6).all()
    with pytest.raises(TypeError, match="needs labels"):
        net.relax(x, beta=1.0)


def test_hyperparameters_by_name(mnist):
    net = eqprop.Network("best", lr=[0.2, 0.1], beta=0.5, batch_size=20, seed=7, epochs=1)
    hp = net.hyperparams
    assert (hp["lr"], hp["beta"], hp["batch_size"], hp["seed"]) == ([0.2, 0.1], 0.5, 20, 7)
    net = eqprop.Network(layers=[784, 64, 10], lr=[0.1, 0.05])
    assert net.hyperparams["layers"] == [784, 64, 10]
    assert "conv-mnist" in eqprop.presets() and "best" in eqprop.presets()
    shapes = [(w.shape, b.shape) for w, b in net.parameters()]
    assert shapes == [((784, 64), (64,)), ((64, 10), (10,))]
    with pytest.raises(TypeError, match="unknown setting"):
        eqprop.Network("best", learning_rate=0.1)
    conv = eqprop.Network("conv-mnist", shift=1, momentum=0.5, persistent=True)
    hp = conv.hyperparams
    assert (hp["shift"], hp["momentum"], hp["persistent"]) == (1, 0.5, True)
    with pytest.raises(ValueError, match="shift"):
        eqprop.Network("conv-mnist", shift=28)
    adam = eqprop.Network("conv-mnist", optimizer="adam", lr=[1e-4, 1e-4, 1e-4])
    assert adam.hyperparams["optimizer"] == "adam"
    with pytest.raises(ValueError, match="momentum"):
        eqprop.Network("conv-mnist", optimizer="adam", momentum=0.9)
    # Laborieux et al.'s CIFAR-10 pipeline is the preset's, and any conv network may take it.
    cifar = eqprop.Network("conv-cifar10").hyperparams
    assert (cifar["shift"], cifar["shift_fill"], cifar["flip"]) == (4, "edge", True)
    assert cifar["normalize"]["std"] == pytest.approx([0.6069, 0.5982, 0.603])
    standard = {"mean": [0.5], "std": [0.25]}
    mirrored = eqprop.Network("conv-mnist", flip=True, shift_fill="edge", normalize=standard)
    hp = mirrored.hyperparams
    assert (hp["flip"], hp["shift_fill"], hp["normalize"]) == (True, "edge", standard)
    with pytest.raises(ValueError, match="normalize"):
        eqprop.Network("conv-mnist", normalize={"mean": [0.5, 0.5], "std": [1.0, 1.0]})
    decayed = eqprop.Network("conv-mnist", weight_decay=3e-4)
    assert decayed.hyperparams["weight_decay"] == pytest.approx(3e-4)
    with pytest.raises(ValueError, match="weight_decay"):
        eqprop.Network("conv-mnist", weight_decay=-1.0)
    # A flat input takes no image shift: the preset's is dropped, one asked for is refused.
    flat = eqprop.Network("conv-mnist", arch="784,16,10:-1..2", lr=[0.1, 0.05])
    assert flat.hyperparams["arch"] == "784,16,10:-1..2" and "shift" not in flat.hyperparams
    assert flat.input_shape == (784,)
    with pytest.raises(ValueError, match="shift"):
        eqprop.Network("conv-mnist", arch="784,16,10", lr=[0.1, 0.05], shift=1)
    with pytest.raises(ValueError, match="arch"):
        eqprop.Network("conv-mnist", arch="784,,10", lr=[0.1, 0.05])


def test_set_threads_is_refused_once_the_workers_run(mnist):
    train, _ = mnist
    eqprop.Network("best", epochs=1).fit(train, progress=False)
    with pytest.raises(ValueError, match="threads"):
        eqprop.set_threads(1)


def test_history_records_are_the_cli_metrics_lines(mnist, tmp_path):
    train, test = mnist
    net = eqprop.Network("best", epochs=1)
    history = net.fit(train, validation=test, run_dir=tmp_path, progress=False)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == history
    assert (tmp_path / "checkpoint.safetensors").exists()


def test_the_gil_is_released_while_the_engine_trains(mnist):
    """Another Python thread runs while `fit` works (it would stall if the GIL were held)."""
    import threading

    train, test = mnist
    done = threading.Event()
    count = [0]

    def spin():
        while not done.is_set():
            count[0] += 1

    worker = threading.Thread(target=spin)
    net = eqprop.Network("best", epochs=5)
    worker.start()
    try:
        net.fit(train, validation=test, progress=False)
    finally:
        done.set()
        worker.join()
    assert count[0] > 10_000, count[0]


def test_fit_with_more_epochs_continues_like_one_longer_run(mnist):
    train, test = mnist
    net = eqprop.Network("best", epochs=1)
    first = net.fit(train, validation=test, progress=False)
    more = net.fit(train, validation=test, epochs=3, progress=False)
    assert [r["epoch"] for r in first + more] == [1, 2, 3]
    # `best` keeps its learning rates constant: one 3-epoch run is the same run, bit for bit.
    whole = eqprop.Network("best", epochs=3).fit(train, validation=test, progress=False)
    for key in ("train_error", "test_error", "mean_free_energy"):
        assert [r[key] for r in first + more] == [r[key] for r in whole]
    assert net.fit(train, epochs=3, progress=False) == []  # nothing left to train
    with pytest.raises(ValueError, match="epochs"):
        net.fit(train, epochs=2, progress=False)
    conv = eqprop.Network("conv-mnist", arch="1x28x28,conv4k5+pool,10", lr=[0.1, 0.02])
    with pytest.raises(ValueError, match="epochs"):
        conv.fit(train, epochs=0, progress=False)
