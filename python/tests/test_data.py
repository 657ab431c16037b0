"""Arrays in and out: zero-copy input, and bad input as Python exceptions, never a crash."""

import numpy as np
import pytest

import eqprop


def test_images_are_read_in_place(mnist):
    train, _ = mnist
    x = np.random.default_rng(0).random((40, 28, 28), dtype=np.float32)
    y = np.arange(40) % 10
    data = eqprop.Dataset(x, y)
    assert data.images is x
    assert data.pixel_address == x.ctypes.data  # the engine reads the array's own memory
    assert train.pixel_address == train.images.ctypes.data  # loaded sets too
    assert data.labels.dtype == np.uint8 and list(data.labels) == list(y)
    assert len(data) == 40 and data.image_shape == (28, 28, 1)


def test_fit_reads_the_callers_array(mnist):
    _, test = mnist
    x = np.array(test.images[:200])
    net = eqprop.Network("best", epochs=1, batch_size=20)
    data = eqprop.Dataset(x, test.labels[:200])
    net.fit(data, progress=False)
    before = net.outputs(data)
    x[:] = 0.0  # the same memory, now blank: the engine sees the change
    after = net.outputs(data)
    assert not np.array_equal(before, after)
    assert np.array_equal(after, net.outputs(np.zeros_like(x)))


def test_outputs_are_numpy_arrays(mnist):
    _, test = mnist
    net = eqprop.Network("best")
    out = net.outputs(test.images[:5])
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.flags.c_contiguous


@pytest.mark.parametrize(
    "images, error, message",
    [
        (np.zeros((4, 784), np.float64), TypeError, "float32"),
        (np.zeros((4, 784), np.uint8), TypeError, "float32"),
        ([[0.0] * 784] * 4, TypeError, "numpy array"),
        (np.zeros(784, np.float32), ValueError, "shape"),
        (np.zeros((0, 784), np.float32), ValueError, "no images"),
        (np.zeros((4, 784, 2), np.float32)[:, :, 0], ValueError, "C-contiguous"),
        (np.full((4, 784), np.nan, np.float32), ValueError, "NaN at flat index 0"),
        (np.full((4, 784), 2.0, np.float32), ValueError, r"not in \[0, 1\]"),
    ],
)
def test_bad_images_raise(images, error, message):
    with pytest.raises(error, match=message):
        eqprop.Dataset(images, np.zeros(4, np.int64))


@pytest.mark.parametrize(
    "labels, error, message",
    [
        (np.array([0, 1, 2, 10]), ValueError, "label 10 of image 3 is not in 0..=9"),
        (np.array([0, 1, -1, 2]), ValueError, "label -1 of image 2"),
        (np.array([0, 1, 2]), ValueError, "one label per image"),
        (np.zeros(4, np.float32), TypeError, "integer dtype"),
        ([0, 1, 2, 3], TypeError, "integer array"),
    ],
)
def test_bad_labels_raise(labels, error, message):
    with pytest.raises(error, match=message):
        eqprop.Dataset(np.zeros((4, 784), np.float32), labels)


def test_images_that_do_not_fit_the_network_raise(mnist):
    _, test = mnist
    net = eqprop.Network("best")
    small = np.zeros((3, 10, 10), np.float32)
    with pytest.raises(ValueError, match="784"):
        net.predict(small)
    with pytest.raises(ValueError, match="784"):
        net.fit(small, np.zeros(3, np.int64), progress=False)
    with pytest.raises(ValueError):
        net.dream([10])


def test_bad_settings_raise_the_cli_message(cli):
    cases = [
        (dict(batch_size=0), ["--batch-size", "0"]),
        (dict(lr=[0.1]), ["--lr", "0.1"]),
    ]
    for settings, flags in cases:
        with pytest.raises(ValueError) as caught:
            eqprop.Network("best", **settings)
        printed = cli("train", "--epochs", "1", *flags).stderr.strip()
        assert printed == f"error: {caught.value}", (printed, str(caught.value))


def test_a_corrupt_data_file_raises_naming_it(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (folder / name).write_bytes(b"not an IDX file")
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte"):
        eqprop.load_dataset("mnist", "test", data_dir=str(tmp_path))


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="unknown"):
        eqprop.load_dataset("kmnist", "train")
    with pytest.raises(ValueError, match="split"):
        eqprop.load_dataset("mnist", "validation")
    with pytest.raises(ValueError):
        eqprop.Network("no-such-preset")
