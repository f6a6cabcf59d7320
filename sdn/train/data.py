"""Data sets for the training experiments, as in-memory float32 arrays.

- `load_digits`: scikit-learn's 8×8 digits (ships with scikit-learn; docs/theory.md §6.1).
- `load_mnist1d`: MNIST-1D (Greydanus 2020), generated procedurally by the ``mnist1d``
  package, never downloaded (docs/theory.md §5, §6.4).
- `teacher_student`: labels from a random ReLU teacher network (synthetic).
- `load_npz`: MNIST or CIFAR-10 from local ``.npz``/``.npy`` files a user supplies.

Every loader returns a `Dataset` of numpy arrays: inputs float32, labels int32.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sdn._checks import check_int

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


class Dataset(NamedTuple):
    """A classification data set: inputs `x_*` of shape `(n, *features)` (float32) and
    integer labels `y_*` of shape `(n,)` (int32)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_classes(self) -> int:
        """`max label + 1` over the train and test labels."""
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input."""
        return tuple(self.x_train.shape[1:])


def _dataset(x_train, y_train, x_test, y_test) -> Dataset:
    out = Dataset(
        np.array(x_train, np.float32),
        np.array(y_train).astype(np.int32),
        np.array(x_test, np.float32),
        np.array(y_test).astype(np.int32),
    )
    for split in ("train", "test"):
        x, y = getattr(out, f"x_{split}"), getattr(out, f"y_{split}")
        if y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"x_{split} has shape {x.shape} and y_{split} has shape {y.shape}: need "
                f"x_{split} of shape (n, ...) and y_{split} of shape (n,)"
            )
    return out


def _standardize(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature standardization with the training set's mean and sd (sd 0 → 1)."""
    mean = x_train.mean(axis=0)
    sd = x_train.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    return (x_train - mean) / sd, (x_test - mean) / sd


def load_digits(test_fraction: float = 0.2, *, seed: int = 0) -> Dataset:
    """scikit-learn's digits (1797 images of 8×8 pixels, 10 classes), flattened to 64.

    A stratified split with `test_fraction` of the images held out, drawn with `seed`;
    features standardized with the training set's mean and sd. Deterministic.

    Example:
      >>> data = load_digits()
      >>> data.x_train.shape, data.x_test.shape, data.n_classes
      ((1437, 64), (360, 64), 10)
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    from sklearn.datasets import load_digits as _load
    from sklearn.model_selection import train_test_split

    x, y = _load(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x.astype(np.float64), y, test_size=test_fraction, random_state=seed, stratify=y
    )
    x_tr, x_te = _standardize(x_tr, x_te)
    return _dataset(x_tr, y_tr, x_te, y_te)


def load_mnist1d(n_train: int = 4000, n_test: int = 1000, *, seed: int = 42) -> Dataset:
    """MNIST-1D signals of length 40 (10 classes), generated offline by ``mnist1d``.

    Calls ``mnist1d.data.make_dataset`` with the package's default arguments
    (``get_dataset_args()``) except ``num_samples = n_train + n_test``, the matching
    ``train_split`` and ``seed``; nothing is downloaded or written to disk. The package
    seeds Python's and numpy's global generators; their states are restored
    afterwards. The defaults (4000/1000, seed 42) give the package's standard data set.
    Generated sets are kept in memory for reuse within the process.

    Example:
      >>> data = load_mnist1d(n_train=200, n_test=100)
      >>> data.x_train.shape, data.x_test.shape
      ((200, 40), (100, 40))
    """
    n_train = check_int("n_train", n_train)
    n_test = check_int("n_test", n_test)
    total = n_train + n_test
    if total % 10:
        raise ValueError(
            f"n_train + n_test must be a multiple of 10 (samples per class), got {total}"
        )
    x, y = _mnist1d(total, n_train, int(seed))
    return _dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


@functools.lru_cache(maxsize=4)
def _mnist1d(total: int, n_train: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """All `total` MNIST-1D samples (train first); cached in memory, never on disk."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = total
    args.train_split = n_train / total
    args.seed = seed
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    # make_dataset splits at int(total · train_split), which float rounding can move by 1.
    x = np.concatenate([d["x"], d["x_test"]])
    y = np.concatenate([d["y"], d["y_test"]])
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def teacher_student(
    n_train: int = 2000,
    n_test: int = 1000,
    *,
    dim: int = 20,
    n_classes: int = 4,
    hidden: int = 32,
    label_noise: float = 0.1,
    seed: int = 0,
) -> Dataset:
    """Gaussian inputs labelled by a random one-hidden-layer ReLU teacher.

    `x ~ N(0, I_dim)`, `y = argmax(W₂ relu(W₁ x))` with Gaussian teacher weights; a
    fraction `label_noise` of the *training* labels is replaced by uniform random
    classes (the test labels are the teacher's), so small networks can overfit.

    Example:
      >>> data = teacher_student(100, 50, dim=5, n_classes=3)
      >>> data.x_train.shape, data.y_test.shape
      ((100, 5), (50,))
    """
    n_train, n_test = check_int("n_train", n_train), check_int("n_test", n_test)
    dim, n_classes = check_int("dim", dim), check_int("n_classes", n_classes, minimum=2)
    hidden = check_int("hidden", hidden)
    if not 0.0 <= label_noise <= 1.0:
        raise ValueError(f"label_noise must be in [0, 1], got {label_noise}")
    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(dim, hidden)) / np.sqrt(dim)
    w2 = rng.normal(size=(hidden, n_classes)) / np.sqrt(hidden)
    x = rng.normal(size=(n_train + n_test, dim))
    y = np.argmax(np.maximum(x @ w1, 0.0) @ w2, axis=1)
    flip = rng.random(n_train) < label_noise
    y_train = np.where(flip, rng.integers(0, n_classes, n_train), y[:n_train])
    return _dataset(x[:n_train], y_train, x[n_train:], y[n_train:])


def _expected_files(name: str) -> str:
    return (
        f"either {name}.npz with arrays {', '.join(NPZ_KEYS)}, or the four files "
        f"{', '.join(k + '.npy' for k in NPZ_KEYS)} (optionally inside a folder {name}/)"
    )


def load_npz(
    path: str | Path,
    name: str = "mnist",
    *,
    standardize: bool = True,
    channels_last: bool = True,
) -> Dataset:
    """MNIST or CIFAR-10 (or any classification set) from local numpy files.

    Nothing is downloaded: save the arrays yourself, e.g. from ``torchvision`` or
    ``tensorflow_datasets``, as ``np.savez(f"{name}.npz", x_train=…, y_train=…,
    x_test=…, y_test=…)``. `path` is one of

    - a ``.npz`` file with the keys ``x_train, y_train, x_test, y_test``;
    - a folder holding ``{name}.npz``, or the four files ``x_train.npy``,
      ``y_train.npy``, ``x_test.npy``, ``y_test.npy``, or a subfolder ``{name}/``
      with either.

    Inputs are cast to float32 (integer pixels divided by 255), then, if `standardize`,
    standardized with the training set's mean and sd (over all pixels, per channel for
    images with channels). CIFAR-style images stored channels-first `(n, 3, 32, 32)`
    are moved to channels-last `(n, 32, 32, 3)` when `channels_last`. Labels of shape
    `(n, 1)` or one-hot `(n, k)` become `(n,)` integers.

    Raises:
      FileNotFoundError: naming the files that were looked for.
      ValueError: a file without the required keys, or mismatched shapes.

    Example:
      >>> import tempfile, os
      >>> d = tempfile.mkdtemp()
      >>> np.savez(os.path.join(d, "mnist.npz"),
      ...          x_train=np.zeros((6, 28, 28), np.uint8), y_train=np.arange(6),
      ...          x_test=np.zeros((2, 28, 28), np.uint8), y_test=np.arange(2))
      >>> load_npz(d, "mnist").x_train.shape
      (6, 28, 28)
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string such as 'mnist', got {name!r}")
    path = Path(path).expanduser()
    arrays = _read_arrays(path, name)
    x_tr, x_te = (_to_float(arrays[k]) for k in ("x_train", "x_test"))
    y_tr, y_te = (_to_labels(k, arrays[k]) for k in ("y_train", "y_test"))
    if channels_last:
        x_tr, x_te = _channels_last(x_tr), _channels_last(x_te)
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise ValueError(
            f"x_train examples have shape {x_tr.shape[1:]} but x_test examples {x_te.shape[1:]}"
        )
    if standardize:
        axes = tuple(range(x_tr.ndim - 1)) if x_tr.ndim == 4 else None
        mean = x_tr.mean(axis=axes)
        sd = x_tr.std(axis=axes)
        sd = np.where(sd > 0, sd, 1.0)
        x_tr, x_te = (x_tr - mean) / sd, (x_te - mean) / sd
    return _dataset(x_tr, y_tr, x_te, y_te)


def _read_arrays(path: Path, name: str) -> dict[str, np.ndarray]:
    candidates = [path] if path.is_file() else [path / f"{name}.npz", path, path / name]
    for c in candidates:
        if c.is_dir() and (c / f"{name}.npz").is_file() and c != path:
            c = c / f"{name}.npz"
        if c.is_file():
            with np.load(c, allow_pickle=False) as f:
                files = getattr(f, "files", None)
                if files is None:
                    raise ValueError(f"{c} is not an .npz archive: {_expected_files(name)}")
                missing = [k for k in NPZ_KEYS if k not in files]
                if missing:
                    raise ValueError(
                        f"{c} lacks the arrays {missing} (it has {sorted(files)}); expected "
                        + _expected_files(name)
                    )
                return {k: np.asarray(f[k]) for k in NPZ_KEYS}
        if c.is_dir() and all((c / f"{k}.npy").is_file() for k in NPZ_KEYS):
            return {k: np.load(c / f"{k}.npy", allow_pickle=False) for k in NPZ_KEYS}
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"no {name} data at {path}: expected {_expected_files(name)}; looked at {looked}"
    )


def _to_float(x: np.ndarray) -> np.ndarray:
    if np.issubdtype(x.dtype, np.integer):
        return x.astype(np.float32) / 255.0
    return x.astype(np.float32)


def _to_labels(key: str, y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    elif y.ndim == 2:
        y = np.argmax(y, axis=1)
    if y.ndim != 1:
        raise ValueError(f"{key} must have shape (n,), (n, 1) or one-hot (n, k), got {y.shape}")
    return y.astype(np.int32)


def _channels_last(x: np.ndarray) -> np.ndarray:
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[2] == x.shape[3] and x.shape[3] > 3:
        return np.moveaxis(x, 1, -1)
    return x
