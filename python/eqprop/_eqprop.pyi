"""Type stubs of the native module `eqprop._eqprop` (the Rust engine's bindings)."""

from os import PathLike
from typing import Callable, Optional, Union

import numpy as np
import numpy.typing as npt

_Path = Union[str, PathLike[str]]

class Dataset:
    """Labelled images, read in place: float32 images in [0, 1] of shape (n, pixels),
    (n, rows, cols) or (n, rows, cols, channels); integer labels in 0..=9."""

    def __init__(self, images: npt.NDArray[np.float32], labels: npt.NDArray[np.integer]) -> None: ...
    def __len__(self) -> int: ...
    @property
    def images(self) -> npt.NDArray[np.float32]: ...
    @property
    def labels(self) -> npt.NDArray[np.uint8]: ...
    @property
    def image_shape(self) -> tuple[int, int, int]: ...
    @property
    def pixel_address(self) -> int: ...

class Model:
    def __init__(self, config: str, dataset: str = "mnist") -> None: ...
    @staticmethod
    def load(path: _Path, epochs: Optional[int] = None) -> Model: ...
    @property
    def config(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def dataset(self) -> str: ...
    @property
    def epochs_done(self) -> int: ...
    def fit(
        self,
        train: Dataset,
        test: Dataset,
        run_dir: Optional[_Path] = None,
        replace: bool = False,
        on_batch: Optional[Callable[[int, int, int], object]] = None,
        on_epoch: Optional[Callable[[str], Optional[bool]]] = None,
    ) -> tuple[list[str], bool]: ...
    def set_epochs(self, epochs: int) -> None: ...
    def evaluate(self, data: Dataset) -> tuple[float, float]: ...
    def predict(self, data: Dataset) -> npt.NDArray[np.float32]: ...
    def settle(
        self, data: Dataset, beta: float
    ) -> tuple[list[npt.NDArray[np.float32]], npt.NDArray[np.float32]]: ...
    def dream(
        self,
        labels: list[int],
        steps: Optional[int] = None,
        temperature: Optional[float] = None,
        silenced: Optional[float] = None,
        seed: Optional[int] = None,
        start: Optional[str] = None,
    ) -> npt.NDArray[np.float32]: ...
    def save(self, path: _Path) -> None: ...
    def parameters(self) -> list[tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]: ...

def load_dataset(
    name: str, split: str, train_limit: Optional[int] = None, data_dir: Optional[_Path] = None
) -> Dataset: ...
def preset_config(name: str, arch: Optional[str] = None) -> str: ...
def preset_names() -> list[str]: ...
def set_threads(threads: int) -> None: ...
def continual(
    train: Dataset,
    test: Dataset,
    out: _Path,
    protocol: str = "split-mnist",
    scenario: str = "class",
    replay: str = "dreams",
    epochs_per_task: int = 5,
    tasks: int = 5,
    replay_per_class: int = 1000,
    hyperparams: Optional[str] = None,
) -> str: ...
def agent(
    env: str,
    out: _Path,
    seed: int = 0,
    model: str = "eqprop",
    learn_steps: Optional[int] = None,
    eval_episodes: Optional[int] = None,
    gif: bool = False,
) -> str: ...
def life(
    env: str,
    out: _Path,
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
) -> str: ...
