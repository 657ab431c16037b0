"""eqprop: Equilibrium Propagation with a Rust engine, numpy in and out.

An EqProp network is a layered Hopfield-like energy system: its neurons relax to a minimum of

    E = 1/2 sum_k ||s_k||^2 - sum_k rho(s_{k-1})^T W_k rho(s_k) - sum_k b_k^T rho(s_k)

and training compares a free phase with a phase nudged toward the target, changing each weight
from local activity differences (Scellier & Bengio 2017). Everything here runs in the Rust
crate `eqprop` (the same code as the `eqprop` command line), with the GIL released::

    import eqprop
    train = eqprop.load_dataset("mnist", "train", train_limit=10000)
    test = eqprop.load_dataset("mnist", "test")
    net = eqprop.Network("best")            # 784-500-10, the CLI's default preset
    history = net.fit(train, validation=test)
    print(history[-1]["test_error"])        # the test error (%) `eqprop train` records
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, Iterable, NamedTuple, Optional, Sequence, Union

import numpy as np

from . import _eqprop
from ._eqprop import Dataset

__all__ = [
    "Dataset",
    "Network",
    "Relaxed",
    "agent",
    "continual",
    "life",
    "load",
    "load_dataset",
    "presets",
    "set_threads",
]

#: Settings beyond those the presets list (left out of the JSON when at their defaults).
_OPTIONAL_DENSE = ("train_limit", "init_gain")
_OPTIONAL_CONV = (
    "optimizer",
    "weight_decay",
    "shift",
    "shift_fill",
    "flip",
    "normalize",
    "persistent",
    "modulator",
    "train_limit",
    "generative",
)

Images = Union[np.ndarray, Dataset]
Callback = Callable[[dict], Optional[bool]]


def set_threads(threads: int) -> None:
    """Runs the engine on ``threads`` worker threads (default: one per core, or
    ``RAYON_NUM_THREADS``). Call it before any work: the workers start once per process.
    Results never depend on the count."""
    _eqprop.set_threads(int(threads))


def presets() -> list[str]:
    """Every preset name: dense (``best``, ``paper``, ``deep``, ...) then ``conv-*``."""
    return list(_eqprop.preset_names())


def load_dataset(
    name: str = "mnist",
    split: str = "train",
    train_limit: Optional[int] = None,
    data_dir: Optional[str] = None,
) -> Dataset:
    """A split (``"train"`` or ``"test"``) of ``mnist``, ``fashion-mnist`` or ``cifar10``.

    Read as ``eqprop train`` reads it: from ``data_dir``, else ``$EQPROP_DATA_DIR``, else the
    user cache, downloading missing files with their official checksums verified.
    ``train_limit`` keeps the first N training images. ``images`` are float32 in [0, 1],
    shape ``(n, rows, cols)`` (``(n, rows, cols, 3)`` for CIFAR-10); ``labels`` uint8.
    """
    return _eqprop.load_dataset(name, split, train_limit, None if data_dir is None else str(data_dir))


def _as_dataset(x: Images, y: Optional[np.ndarray] = None) -> Dataset:
    """``x`` itself if it is a Dataset, else a Dataset reading the array ``x`` in place."""
    if isinstance(x, Dataset):
        if y is not None:
            raise TypeError("pass labels either inside the Dataset or as y, not both")
        return x
    if y is None:
        y = np.zeros(len(x), dtype=np.uint8)
    return Dataset(x, np.asarray(y))


class Relaxed(NamedTuple):
    """Where a batch settled: each layer's state ``(n, units)`` and the energy of each image."""

    states: list
    energy: np.ndarray


class _Progress:
    """A tqdm bar per epoch (running accuracy) and a line per epoch, as the CLI shows them."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None

    def batch(self, done: int, total: int, correct: int) -> None:
        from tqdm.auto import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, unit="img", leave=False, dynamic_ncols=True)
        self.bar.update(done - self.bar.n)
        if done:
            self.bar.set_postfix_str(f"acc {100.0 * correct / done:.2f}%", refresh=False)

    def epoch(self, record: dict) -> None:
        self.close()
        if self.enabled:
            from tqdm.auto import tqdm

            test = record.get("test_error")
            test = "-" if test is None else f"{test:6.2f}%"
            tqdm.write(
                f"epoch {record['epoch']:3d}  train error {record['train_error']:6.2f}%  "
                f"test error {test}  free energy {record['mean_free_energy']:.4f}  "
                f"{record['seconds']:.2f}s"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Network:
    """An EqProp network: dense layers, or an architecture with convolutions.

    ``Network("best")`` is the CLI's default 784-500-10 preset; ``Network("conv-mnist")`` the
    convolutional one. Keyword arguments change any setting of the preset by its name (the
    keys of :attr:`hyperparams`: ``lr``, ``beta``, ``batch_size``, ``t_free``, ``t_nudge``,
    ``eps``, ``epochs``, ``seed``, ``nudging``, ``schedule``, ...), as ``eqprop train``'s flags
    do. ``layers=[784, 256, 10]`` builds a dense network, ``arch="1x28x28,conv32k5+pool,10"``
    one with convolutions (give ``lr``: one rate per coupling).
    """

    def __init__(
        self,
        preset: Optional[str] = None,
        *,
        layers: Optional[Sequence[int]] = None,
        arch: Optional[str] = None,
        dataset: str = "mnist",
        **settings: Any,
    ):
        if layers is not None and arch is not None:
            raise TypeError("give layers (a dense network) or arch (with convolutions), not both")
        if preset is None:
            preset = "conv-mnist" if arch is not None else "best"
        config = json.loads(_eqprop.preset_config(preset))
        conv = "arch" in config
        if layers is not None:
            if conv:
                raise TypeError(f"layers: preset {preset!r} has an arch; use arch=...")
            settings["layers"] = [int(n) for n in layers]
        if arch is not None:
            if not conv:
                raise TypeError(f"arch: preset {preset!r} is dense; use layers=...")
            # The library sets the architecture (a flat input drops the preset's image shift).
            config = json.loads(_eqprop.preset_config(preset, arch))
        known = set(config) | set(_OPTIONAL_CONV if conv else _OPTIONAL_DENSE)
        unknown = sorted(set(settings) - known)
        if unknown:
            raise TypeError(
                f"unknown setting(s) {', '.join(unknown)}; the settings are {', '.join(sorted(known))}"
            )
        config.update(settings)
        self._model = _eqprop.Model(json.dumps(config), dataset)

    @classmethod
    def _wrap(cls, model: "_eqprop.Model") -> "Network":
        net = cls.__new__(cls)
        net._model = model
        return net

    @classmethod
    def load(cls, path: str, epochs: Optional[int] = None) -> "Network":
        """The network saved at ``path`` by :meth:`save` or ``eqprop train`` (its checkpoint),
        to continue up to ``epochs`` in all (the saved count when None)."""
        return cls._wrap(_eqprop.Model.load(str(path), epochs))

    # -- what it is ---------------------------------------------------------------------------
    @property
    def hyperparams(self) -> dict:
        """Every setting, as the checkpoint stores it."""
        return json.loads(self._model.config)

    @property
    def kind(self) -> str:
        """``"dense"`` or ``"conv"``."""
        return self._model.kind

    @property
    def epochs_done(self) -> int:
        return self._model.epochs_done

    @property
    def input_shape(self) -> tuple:
        """The shape of one input image: ``(rows, cols)`` or ``(rows, cols, channels)``."""
        hp = self.hyperparams
        if "arch" in hp:
            first = hp["arch"].split(",")[0]
            if "x" in first:
                c, h, w = (int(v) for v in first.split("x"))
                return (h, w) if c == 1 else (h, w, c)
            return (int(first),)
        units = hp["layers"][0]
        side = math.isqrt(units)
        return (side, side) if side * side == units else (units,)

    def parameters(self) -> list:
        """Each coupling's weights and biases (copies): ``[(W_1, b_1), ...]``."""
        return self._model.parameters()

    def __repr__(self) -> str:
        hp = self.hyperparams
        shape = hp.get("arch", hp.get("layers"))
        return f"Network({shape}, {self.epochs_done}/{hp['epochs']} epochs)"

    # -- training -----------------------------------------------------------------------------
    def fit(
        self,
        x: Images,
        y: Optional[np.ndarray] = None,
        *,
        epochs: Optional[int] = None,
        validation: Union[Dataset, tuple, None] = None,
        callbacks: Union[Callback, Iterable[Callback], None] = None,
        progress: bool = True,
        run_dir: Optional[str] = None,
        replace: bool = False,
    ) -> list:
        """Trains the remaining epochs (``hyperparams["epochs"]`` in all; ``epochs`` changes that
        count first, as ``eqprop train --resume --epochs`` does) on ``x`` (a Dataset, or float32
        images in [0, 1] with integer labels ``y``), each epoch evaluated on ``validation`` (a
        Dataset or ``(images, labels)``).

        Returns one record per epoch trained (``epoch``, ``train_error``, ``test_error``,
        ``mean_free_energy``, ``seconds``, ...), the records ``eqprop train`` writes to
        ``metrics.jsonl``. Each callback gets each record; one returning False stops training.
        ``progress`` shows a tqdm bar and a line per epoch. With ``run_dir`` the checkpoint and
        metrics are written there after every epoch, as ``eqprop train --out`` does. Ctrl-C
        stops after the running mini-batch, saves, and raises ``KeyboardInterrupt``. The
        arrays are read in place: do not write into them while ``fit`` runs.
        """
        train = _as_dataset(x, y)
        if epochs is not None:
            self._model.set_epochs(int(epochs))
        if validation is None:
            test, has_test = _as_dataset(train.images[:1], train.labels[:1]), False
        elif isinstance(validation, tuple):
            test, has_test = _as_dataset(*validation), True
        else:
            test, has_test = _as_dataset(validation), True
        if callable(callbacks):
            callbacks = [callbacks]
        callbacks = list(callbacks or [])
        shown = _Progress(progress)
        history = []

        def on_epoch(text: str) -> Optional[bool]:
            record = json.loads(text)
            if not has_test:
                record["test_error"] = None
            history.append(record)
            shown.epoch(record)
            answers = [callback(record) for callback in callbacks]
            return False if any(a is False for a in answers) else None

        try:
            self._model.fit(
                train,
                test,
                None if run_dir is None else str(run_dir),
                replace,
                shown.batch if progress else None,
                on_epoch,
            )
        finally:
            shown.close()
        return history

    # -- using it -----------------------------------------------------------------------------
    def outputs(self, x: Images) -> np.ndarray:
        """The output layer at the free fixed point of every image, ``(n, classes)``."""
        return self._model.predict(_as_dataset(x))

    def predict(self, x: Images) -> np.ndarray:
        """The predicted class of every image (the most active output unit), int64."""
        return self.outputs(x).argmax(axis=1).astype(np.int64)

    def evaluate(self, x: Images, y: Optional[np.ndarray] = None) -> dict:
        """``{"error": test error in %, "mean_energy": mean free energy}``, as
        ``eqprop eval`` reports them."""
        error, energy = self._model.evaluate(_as_dataset(x, y))
        return {"error": error, "mean_energy": energy}

    def score(self, x: Images, y: Optional[np.ndarray] = None) -> float:
        """Accuracy in [0, 1] (scikit-learn's convention)."""
        return 1.0 - self.evaluate(x, y)["error"] / 100.0

    def relax(self, x: Images, y: Optional[np.ndarray] = None, beta: float = 0.0) -> Relaxed:
        """Relaxes a batch as training does: the free phase from zero states, then, with
        ``beta != 0``, the phase nudged toward the labels ``y``. Returns every layer's state
        (the input first) and the energy ``E`` of each image there."""
        if beta != 0.0 and y is None and not isinstance(x, Dataset):
            raise TypeError("relax: a nudged phase (beta != 0) needs labels y")
        states, energy = self._model.settle(_as_dataset(x, y), float(beta))
        return Relaxed(list(states), energy)

    def dream(
        self,
        labels: Iterable[int],
        steps: Optional[int] = None,
        temperature: Optional[float] = None,
        silenced: Optional[float] = None,
        seed: Optional[int] = None,
        start: Optional[str] = None,
    ) -> np.ndarray:
        """Dreams: each label clamped on the output, the input relaxed freely, with ``eqprop
        dream``'s defaults for what is not given (100 steps from noise, 15% of the hidden units
        silenced, seed 0, no noise; ``start="zeros"`` starts from zero). Returns one image per
        label, shaped like the inputs. A network with convolutions relaxes by exact alternating
        sweeps: a ``temperature`` raises ValueError."""
        labels = [int(label) for label in labels]
        if any(label < 0 for label in labels):
            raise ValueError(f"labels: {min(labels)} is negative")
        images = self._model.dream(labels, steps, temperature, silenced, seed, start)
        return images.reshape((len(labels),) + self.input_shape)

    def save(self, path: str) -> None:
        """Writes the checkpoint (atomically): ``eqprop eval`` and ``--resume`` read it."""
        self._model.save(str(path))


def load(path: str, epochs: Optional[int] = None) -> Network:
    """:meth:`Network.load`."""
    return Network.load(path, epochs)


def continual(
    train: Dataset,
    test: Dataset,
    out: str,
    *,
    protocol: str = "split-mnist",
    scenario: str = "class",
    replay: str = "dreams",
    epochs_per_task: int = 5,
    tasks: int = 5,
    replay_per_class: int = 1000,
    network: Optional[Network] = None,
) -> dict:
    """Split-MNIST task after task, as ``eqprop continual`` runs it (its files in ``out``).

    ``network`` supplies the settings (the protocol's preset when None). Returns the accuracy
    matrix (``accuracy[stage][task]``, %), its final average, the forgetting and the seconds.
    """
    hyperparams = None if network is None else network._model.config
    summary = _eqprop.continual(
        train, test, str(out), protocol, scenario, replay, epochs_per_task, tasks,
        replay_per_class, hyperparams,
    )
    result = json.loads(summary)
    result["accuracy"] = np.asarray(result["accuracy"])
    return result


def agent(
    env: str,
    out: str,
    *,
    seed: int = 0,
    model: str = "eqprop",
    learn_steps: Optional[int] = None,
    eval_episodes: Optional[int] = None,
    gif: bool = False,
) -> dict:
    """The robot, as ``eqprop agent`` runs it: on ``cartpole-v1`` or ``pendulum-v1`` it learns
    an EqProp world model online and plans with it (``model="true"``: the real simulator,
    ``"random"``: random actions). Returns the summary (mean length and return of the
    evaluation episodes, the one-step error pooled and per component, decision latency), every
    episode, and the imagined-against-real rollout after learning (``None`` without a world
    model)."""
    return json.loads(
        _eqprop.agent(env, str(out), seed, model, learn_steps, eval_episodes, gif)
    )


def life(
    env: str,
    out: str,
    *,
    seed: int = 0,
    strategy: str = "dreams",
    worlds: Optional[str] = None,
    learn_steps: Optional[int] = None,
    eval_episodes: Optional[int] = None,
    gate: bool = True,
    gif: bool = False,
    gate_smoothing: Optional[float] = None,
    gate_cap: Optional[float] = None,
    updates: Optional[int] = None,
    dreams: Optional[int] = None,
    dream_length: Optional[int] = None,
    dream_explore: Optional[float] = None,
    gate_threshold: Optional[float] = None,
    gate_share: Optional[float] = None,
    gate_rate: Optional[float] = None,
    gate_shared: bool = False,
) -> dict:
    """The living agent, as ``eqprop life`` runs it: one world model learns the ``worlds``
    (default: three per environment; ``"default; g=6,m=0.6; l=0.7"`` on Pendulum) one after
    another online, keeping the old ones by ``strategy`` (``"dreams"``, ``"fine-tune"``,
    ``"real"``, ``"joint"``), the surprise gate deciding when to learn (``gate=False``: every
    step). The other settings are the options of the same names of ``eqprop life``:
    ``updates`` per learning step, ``dreams`` kept per world, ``dream_length``,
    ``dream_explore`` (the share of random actions in a dream), and the gate's
    ``gate_threshold`` (fixed), ``gate_share``, ``gate_rate``, ``gate_smoothing``,
    ``gate_cap`` and ``gate_shared`` (one gate state for every world instead of one per
    world). ``learn_steps`` and ``eval_episodes`` count per world. Returns every test (after each
    stage, each world learned so far: mean length, mean return, one-step error), the world
    specs, the learning steps at which each stage began, the share of steps that learned and the
    EqProp updates made."""
    return json.loads(
        _eqprop.life(
            env,
            str(out),
            seed,
            strategy,
            worlds,
            learn_steps,
            eval_episodes,
            gate,
            gif,
            gate_smoothing,
            gate_cap,
            updates,
            dreams,
            dream_length,
            dream_explore,
            gate_threshold,
            gate_share,
            gate_rate,
            gate_shared,
        )
    )
