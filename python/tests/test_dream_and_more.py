"""Dreams, networks with convolutions, Ctrl-C, and the continual and robot experiments."""

import os
import signal
import threading

import numpy as np
import pytest

import eqprop


def test_dreams_are_images_of_the_input_shape(mnist):
    train, _ = mnist
    net = eqprop.Network("best", epochs=1)
    net.fit(train, progress=False)
    dreams = net.dream([0, 1, 2, 3], steps=50, seed=3)
    assert dreams.shape == (4, 28, 28) and dreams.dtype == np.float32
    assert dreams.min() >= 0.0 and dreams.max() <= 1.0
    assert np.array_equal(dreams, net.dream([0, 1, 2, 3], steps=50, seed=3))
    assert not np.array_equal(dreams, net.dream([0, 1, 2, 3], steps=50, seed=4))
    with pytest.raises(ValueError, match="start"):
        net.dream([0], start="somewhere")
    with pytest.raises(ValueError, match="negative"):
        net.dream([-1])


def test_a_network_with_convolutions_trains_relaxes_and_dreams(data_dir):
    train = eqprop.load_dataset("mnist", "train", train_limit=200, data_dir=data_dir)
    test = eqprop.load_dataset("mnist", "test", data_dir=data_dir)
    net = eqprop.Network("conv-mnist", arch="1x28x28,conv4k5+pool,10", lr=[0.1, 0.02], epochs=1)
    history = net.fit(train, validation=test, progress=False)
    assert history[0]["test_error"] == net.evaluate(test)["error"]
    relaxed = net.relax(test.images[:5])
    assert [s.shape for s in relaxed.states] == [(5, 784), (5, 12 * 12 * 4), (5, 10)]
    assert np.array_equal(relaxed.states[-1], net.outputs(test.images[:5]))
    dreams = net.dream([1, 2], steps=10, seed=3)
    assert dreams.shape == (2, 28, 28)
    assert np.array_equal(dreams, net.dream([1, 2], steps=10, seed=3))
    assert not np.array_equal(dreams, net.dream([1, 2], steps=10, seed=4, silenced=0.3))
    with pytest.raises(ValueError, match="not supported yet"):
        net.dream([1], temperature=0.5)
    shapes = [(w.shape, b.shape) for w, b in net.parameters()]
    assert shapes == [((25, 4), (4,)), ((12 * 12 * 4, 10), (10,))]


def test_a_network_with_convolutions_trains_for_dreaming(data_dir):
    train = eqprop.load_dataset("mnist", "train", train_limit=200, data_dir=data_dir)
    settings = dict(arch="1x28x28,conv4k5+pool,10", lr=[0.1, 0.02], epochs=1)
    generative = {"lr_scale": 0.01}
    net = eqprop.Network("conv-mnist", generative=generative, **settings)
    # The settings not named are the library's (eqprop train --generative).
    defaults = eqprop.Network("conv-mnist", generative=True, **settings).hyperparams["generative"]
    assert defaults["lr_scale"] == 0.0005 and defaults["input_stiffness"] == 0.5
    assert net.hyperparams["generative"] == {**defaults, "lr_scale": 0.01}
    none = eqprop.Network("conv-mnist", generative=False, **settings)
    assert none.hyperparams.get("generative") is None
    with pytest.raises(ValueError, match="unknown setting \"lr_scal\""):
        eqprop.Network("conv-mnist", generative={"lr_scal": 0.01}, **settings)
    net.fit(train, progress=False)
    plain = eqprop.Network("conv-mnist", **settings)
    plain.fit(train, progress=False)
    assert not np.array_equal(plain.parameters()[0][0], net.parameters()[0][0])
    dreams = net.dream([0, 5], steps=20)
    assert dreams.min() >= 0.0 and dreams.max() <= 1.0
    with pytest.raises(ValueError, match="softmax readout"):
        eqprop.Network("conv-mnist", arch="1x28x28,conv4k5+pool,softmax10", lr=[0.1, 0.02],
                       generative=generative)


def test_a_network_with_convolutions_learns_through_the_surprise_gate(data_dir):
    train = eqprop.load_dataset("mnist", "train", train_limit=200, data_dir=data_dir)
    gate = {"threshold": {"kind": "adaptive", "share": 0.3, "step": 0.1}, "gain": 1.0}
    settings = dict(arch="1x28x28,conv4k5+pool,10", lr=[0.1, 0.02], epochs=2)
    net = eqprop.Network("conv-mnist", modulator=gate, **settings)
    assert net.hyperparams["modulator"] == gate
    history = net.fit(train, progress=False)
    learned = [record["gate"]["learned_share"] for record in history]
    assert 0.0 < learned[1] < 1.0, learned
    assert history[1]["gate"]["steps_saved"] > 0.0
    plain = eqprop.Network("conv-mnist", **settings)
    plain.fit(train, progress=False)
    assert not np.array_equal(plain.parameters()[0][0], net.parameters()[0][0])


def test_ctrl_c_saves_and_raises_keyboard_interrupt(data_dir, tmp_path):
    train = eqprop.load_dataset("mnist", "train", data_dir=data_dir)
    # 2000 epochs of the 1000-image sample take about 30 s here: the Ctrl-C at 0.5 s lands
    # mid-training on any machine (50 epochs took 0.75 s, a close race).
    net = eqprop.Network("best", epochs=2000)
    # Python's own Ctrl-C handler, as at a terminal: a run started in the background by a shell
    # without job control inherits SIGINT ignored, and the signal would never arrive.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            net.fit(train, run_dir=tmp_path, progress=False)
    finally:
        timer.join()
        signal.signal(signal.SIGINT, previous)
    stopped = eqprop.load(tmp_path / "checkpoint.safetensors")
    # The checkpoint holds where training stopped: the network continues from it.
    assert stopped.epochs_done == net.epochs_done < 2000
    assert np.array_equal(stopped.parameters()[0][0], net.parameters()[0][0])


def test_continual_learning_runs_and_returns_the_accuracy_matrix(data_dir, tmp_path):
    train = eqprop.load_dataset("mnist", "train", train_limit=1000, data_dir=data_dir)
    test = eqprop.load_dataset("mnist", "test", data_dir=data_dir)
    result = eqprop.continual(
        train, test, tmp_path, replay="real", epochs_per_task=1, tasks=2, replay_per_class=20
    )
    accuracy = result["accuracy"]
    assert accuracy.shape == (2, 5)
    assert accuracy[0][0] > 50.0  # the first task (0 vs 1) is learned
    assert (tmp_path / "accuracy.csv").exists() and (tmp_path / "summary.json").exists()


def test_the_robot_runs_an_episode(tmp_path):
    result = eqprop.agent("cartpole-v1", tmp_path, learn_steps=100, eval_episodes=1)
    assert result["learn_steps"] == 100 and result["eval_episodes"] == 1
    assert result["mean_length"] >= 1 and np.isfinite(result["one_step_error"])
    assert len(result["component_errors"]) == 4  # x, x_dot, theta, theta_dot: all learned
    rollout = result["rollout"]
    assert len(rollout["real"]) == len(rollout["imagined"]) == len(rollout["actions"]) + 1
    assert rollout["real"][0] == rollout["imagined"][0]  # the same start
    assert (tmp_path / "episodes.csv").exists()
    with pytest.raises(ValueError, match="env"):
        eqprop.agent("mountaincar-v0", tmp_path)


def test_the_living_agent_lives_two_worlds(tmp_path):
    result = eqprop.life(
        "cartpole-v1", tmp_path, worlds="default; masscart=2", learn_steps=100, eval_episodes=1
    )
    assert result["worlds"] == ["default", "masscart=2"]
    assert [(t["stage"], t["world"]) for t in result["tests"]] == [(1, 1), (2, 1), (2, 2)]
    assert all(np.isfinite(t["one_step_error"]) for t in result["tests"])
    assert result["switches"] == [0, 100] and result["updates"] > 0
    assert (tmp_path / "matrix.csv").exists() and (tmp_path / "steps.csv").exists()
    with pytest.raises(ValueError, match="strategy"):
        eqprop.life("cartpole-v1", tmp_path, strategy="forget")
    with pytest.raises(ValueError, match="unknown constant"):
        eqprop.life("cartpole-v1", tmp_path, worlds="default; g=3")
    with pytest.raises(ValueError, match="cap must be a finite factor"):
        eqprop.life("cartpole-v1", tmp_path, gate_cap=0.5)


def test_a_mood_gated_life_learns(tmp_path):
    result = eqprop.life(
        "cartpole-v1",
        tmp_path,
        worlds="default; masscart=2",
        learn_steps=100,
        eval_episodes=1,
        gate_smoothing=0.05,
        gate_cap=4.0,
    )
    assert result["updates"] > 0 and result["switches"] == [0, 100]
    with pytest.raises(ValueError, match="smoothing must be in"):
        eqprop.life("cartpole-v1", tmp_path, gate_smoothing=0.0)


def test_a_life_takes_the_clis_learning_and_gate_settings(tmp_path):
    settings = dict(worlds="default; masscart=2", learn_steps=60, eval_episodes=1)
    few = eqprop.life("cartpole-v1", tmp_path / "a", gate=False, updates=2, dreams=50, **settings)
    # Ungated, every one of the 120 learning steps makes its 2 updates.
    assert few["updates"] == 2 * 120 and few["learned_share"] == 1.0
    # A threshold no surprise reaches: nothing learns.
    shut = eqprop.life("cartpole-v1", tmp_path / "b", gate_threshold=1e9, **settings)
    assert shut["updates"] == 0
    eqprop.life(
        "cartpole-v1", tmp_path / "c", gate_share=0.5, gate_rate=0.05, dream_length=20, dream_explore=0.0, **settings
    )
    # A fast threshold settles within world 1; world 2 starts afresh from the initial threshold
    # (every step learns until it has climbed) unless the gate's state is shared.
    fast = dict(gate_rate=0.5, dreams=50, **settings)
    own = eqprop.life("cartpole-v1", tmp_path / "d", **fast)
    shared = eqprop.life("cartpole-v1", tmp_path / "e", gate_shared=True, **fast)
    assert own["updates"] > shared["updates"]
    with pytest.raises(ValueError, match="no share or rate"):
        eqprop.life("cartpole-v1", tmp_path, gate_threshold=0.1, gate_rate=0.05)
    for setting in (dict(gate_share=0.1), dict(gate_cap=4.0), dict(gate_shared=True)):
        with pytest.raises(ValueError, match="conflicts"):
            eqprop.life("cartpole-v1", tmp_path, gate=False, **setting)
    with pytest.raises(ValueError, match="share"):
        eqprop.life("cartpole-v1", tmp_path, gate_share=2.0)
    with pytest.raises(ValueError, match="dream-explore must be a probability"):
        eqprop.life("cartpole-v1", tmp_path, dream_explore=1.5)
