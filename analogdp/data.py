"""Datasets for training and evaluating the networks (DESIGN §5).

Three sources, none of them downloaded at run time:

- ``digits``: scikit-learn's bundled 8x8 digits (1,797 images), always present, so every
  command works on a fresh machine;
- ``fashion-mnist``: the four IDX files installed by the Debian package
  ``dataset-fashion-mnist`` under /usr/share/datasets/fashion-mnist (or a directory the user
  names);
- ``mnist``: the four standard IDX files from a directory the user names.

Pixels are scaled to [0, 1] and flattened to (n, features). 10 % of the training set is held
out for validation, as the dual-propagation papers do; the split depends only on the seed, so
two runs with the same seed see the same examples. Nothing is cached on disk.

The IDX reader checks everything a truncated download or a wrong file can get wrong (magic
number, type code, dimensions, payload size) and says which file is bad and how, because a
numpy reshape error deep inside training tells the user nothing.
"""

from __future__ import annotations

import gzip
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATASETS = ("digits", "fashion-mnist", "mnist")

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

# The standard IDX file names shared by MNIST and Fashion-MNIST; each may also end in ".gz".
IDX_FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# IDX type code -> big-endian numpy dtype (the format stores every number big-endian).
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

GZIP_MAGIC = b"\x1f\x8b"
DIGITS_TEST_FRACTION = 0.2
N_CLASSES = 10


class DataError(ValueError):
    """The requested data is missing, malformed or inconsistent; the message says how to fix it."""


# --------------------------------------------------------------------------------------------
# IDX files


def _read_file_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when the content (not the name) is gzip."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"IDX file {path}: no such file") from None
    except OSError as error:
        raise DataError(f"IDX file {path}: cannot be read ({error.strerror or error})") from None
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as error:
        raise DataError(
            f"IDX file {path}: truncated or corrupt gzip stream ({error}); "
            "the file is incomplete, get it again"
        ) from None


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed) into a native-endian, writable array.

    Raises DataError naming the file when the magic number, the type code, the header or the
    payload size is wrong; a payload that is too short means the file was truncated.
    """
    path = Path(path)
    content = _read_file_bytes(path)

    def fail(what: str) -> DataError:
        return DataError(f"IDX file {path}: {what}")

    if len(content) < 4:
        raise fail(
            f"truncated inside the header: {len(content)} bytes, "
            "but the 4-byte magic number alone needs 4"
        )
    if content[0] != 0 or content[1] != 0:
        raise fail(
            f"wrong magic number 0x{content[:4].hex()}: an IDX file starts with two zero bytes "
            "(0x0000), so this is not an IDX file"
        )
    type_code, ndim = content[2], content[3]
    if type_code not in IDX_DTYPES:
        known = ", ".join(f"0x{code:02X}" for code in IDX_DTYPES)
        raise fail(f"unknown IDX type code 0x{type_code:02X} in the magic number (known: {known})")
    if ndim == 0:
        raise fail("the magic number declares 0 dimensions; an IDX array needs at least one")
    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise fail(
            f"truncated inside the header: {ndim} dimensions need a {header_size}-byte header, "
            f"but the file has only {len(content)} bytes"
        )
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_DTYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize
    actual = len(content) - header_size
    if actual < expected:
        raise fail(
            f"truncated: the header declares shape {shape} of {dtype.name} "
            f"({expected} bytes of data), but only {actual} bytes follow the header"
        )
    if actual > expected:
        raise fail(
            f"{actual - expected} unexpected extra bytes after the data: the header declares "
            f"shape {shape} of {dtype.name} ({expected} bytes), but {actual} bytes follow the header"
        )
    array = np.frombuffer(content, dtype=dtype, count=math.prod(shape), offset=header_size)
    return array.reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write an array as an IDX file, gzip-compressed when the name ends in ".gz"."""
    path = Path(path)
    array = np.asarray(array)
    type_code = next(
        (
            code
            for code, dtype in IDX_DTYPES.items()
            if (dtype.kind, dtype.itemsize) == (array.dtype.kind, array.dtype.itemsize)
        ),
        None,
    )
    if type_code is None:
        supported = ", ".join(dtype.newbyteorder("=").name for dtype in IDX_DTYPES.values())
        raise ValueError(f"IDX cannot store dtype {array.dtype}; supported: {supported}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX stores arrays of 1 to 255 dimensions, got {array.ndim}")
    if max(array.shape) >= 2**32:
        raise ValueError(f"IDX dimension sizes must fit in 32 bits, got shape {array.shape}")
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(
        size.to_bytes(4, "big") for size in array.shape
    )
    content = header + array.astype(IDX_DTYPES[type_code]).tobytes()
    if path.name.endswith(".gz"):
        content = gzip.compress(content, mtime=0)
    path.write_bytes(content)


# --------------------------------------------------------------------------------------------
# Datasets


@dataclass
class Dataset:
    """A train/validation/test split: x is (n, features) in [0, 1], y holds integer labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    source: str

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    def summary(self) -> str:
        """One line for logs and reports: sizes of the three splits and where the data came from."""
        return (
            f"{self.name}: {len(self.y_train)} train / {len(self.y_val)} validation / "
            f"{len(self.y_test)} test, {self.n_features} features, {self.n_classes} classes "
            f"({self.source})"
        )


def one_hot(y: np.ndarray, n_classes: int, dtype=np.float64) -> np.ndarray:
    """Targets for the losses: row i is the unit vector of class y[i]."""
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got shape {y.shape} of {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got {y.min()}..{y.max()}")
    targets = np.zeros((y.size, n_classes), dtype=dtype)
    targets[np.arange(y.size), y] = 1
    return targets


def resample_images(x: np.ndarray, side_in: int, side_out: int) -> np.ndarray:
    """Bilinearly resample flattened square images, e.g. 8x8 digits to the 784 inputs of a
    28x28 crossbar, so the same network size can be exercised on the always-present data."""
    from scipy import ndimage

    x = np.asarray(x)
    if side_in < 1 or side_out < 1:
        raise ValueError(f"image sides must be positive, got {side_in} and {side_out}")
    if x.ndim != 2 or x.shape[1] != side_in * side_in:
        raise ValueError(
            f"expected flattened {side_in}x{side_in} images of shape (n, {side_in * side_in}), "
            f"got {x.shape}"
        )
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    images = x.reshape(-1, side_in, side_in)
    factor = side_out / side_in
    resampled = ndimage.zoom(images, (1.0, factor, factor), order=1, grid_mode=False)
    np.clip(resampled, 0.0, 1.0, out=resampled)
    return resampled.reshape(len(x), side_out * side_out)


def fashion_mnist_available(data_dir: str | Path | None = None) -> bool:
    """Whether the four Fashion-MNIST IDX files exist (their content is checked on loading)."""
    directory = Path(data_dir) if data_dir is not None else FASHION_MNIST_DIR
    return directory.is_dir() and not _missing_idx_files(directory)


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    seed: int = 0,
    validation_fraction: float = 0.1,
    dtype=np.float64,
) -> Dataset:
    """Load a dataset by name ("digits", "fashion-mnist" or "mnist").

    ``data_dir`` holds the four IDX files; Fashion-MNIST defaults to the Debian package's
    directory, MNIST requires it, digits ignores it (it is bundled with scikit-learn). The
    validation split (and, for digits, which has no official test set, a 20 % test split) is
    drawn from ``seed``.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if not 0.0 <= validation_fraction < 1.0:
        raise DataError(f"validation_fraction must lie in [0, 1), got {validation_fraction!r}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise DataError(f"dtype must be a floating type, got {dtype}")
    rng = np.random.default_rng(seed)
    if name == "digits":
        return _load_digits(rng, validation_fraction, dtype)
    directory, how_to_get = _idx_directory(name, data_dir)
    return _load_idx_dataset(name, directory, how_to_get, rng, validation_fraction, dtype)


def load_training_images(name: str, data_dir: str | Path | None = None
                         ) -> tuple[np.ndarray, np.ndarray, str]:
    """The training images (uint8, (n, rows, cols)) and labels of an IDX dataset in file order,
    after every check :func:`load_dataset` makes (all four files are read, the test pair too);
    for simulations that present raw examples one at a time. Returns (images, labels, source)."""
    if name not in ("fashion-mnist", "mnist"):
        raise DataError(f"load_training_images reads IDX datasets (fashion-mnist, mnist), not {name!r}")
    directory, how_to_get = _idx_directory(name, data_dir)
    images, labels, _, _ = _read_idx_dataset(name, directory, how_to_get)
    return images, labels, f"IDX files in {directory}"


def _idx_directory(name: str, data_dir: str | Path | None) -> tuple[Path, str]:
    """Where an IDX dataset's files are, and what to tell a user who lacks them."""
    if name == "fashion-mnist":
        how_to_get = (
            "install the Debian package (sudo apt-get install dataset-fashion-mnist), "
            "or pass --data-dir DIR with the four Fashion-MNIST IDX files"
        )
        return (Path(data_dir) if data_dir is not None else FASHION_MNIST_DIR), how_to_get
    how_to_get = "pass --data-dir DIR (data_dir= in Python) with the four MNIST IDX files"
    if data_dir is None:
        raise DataError(
            f"MNIST is not bundled and not downloaded: {how_to_get} "
            f"({', '.join(IDX_FILE_NAMES.values())}, raw or .gz)"
        )
    return Path(data_dir), how_to_get


def _split(indices: np.ndarray, fraction: float, rng: np.random.Generator):
    """Randomly hold out round(fraction * n) of ``indices``; both parts keep the original order."""
    held_out_count = int(round(fraction * len(indices)))
    permuted = rng.permutation(indices)
    return np.sort(permuted[held_out_count:]), np.sort(permuted[:held_out_count])


def _load_digits(rng: np.random.Generator, validation_fraction: float, dtype: np.dtype) -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(dtype)  # pixel values are 0..16
    y = digits.target.astype(np.int64)
    rest, test = _split(np.arange(len(y)), DIGITS_TEST_FRACTION, rng)
    train, val = _split(rest, validation_fraction, rng)
    return Dataset(
        name="digits",
        x_train=x[train], y_train=y[train],
        x_val=x[val], y_val=y[val],
        x_test=x[test], y_test=y[test],
        n_classes=N_CLASSES,
        source="scikit-learn bundled digits (sklearn.datasets.load_digits, 8x8 pixels)",
    )


def _find_idx_file(directory: Path, base_name: str) -> Path | None:
    """The raw file if present (it loads faster), else the gzip one, else None."""
    for candidate in (directory / base_name, directory / f"{base_name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _missing_idx_files(directory: Path) -> list[str]:
    return [name for name in IDX_FILE_NAMES.values() if _find_idx_file(directory, name) is None]


def _check_idx_directory(name: str, directory: Path, how_to_get: str) -> None:
    if directory.exists() and not directory.is_dir():
        raise DataError(f"{name}: {directory} is a file, not a directory; {how_to_get}")
    if not directory.is_dir():
        raise DataError(f"{name}: data directory {directory} does not exist; {how_to_get}")
    missing = _missing_idx_files(directory)
    if missing:
        raise DataError(
            f"{name}: {directory} lacks {', '.join(missing)} (looked for each name raw and "
            f"with .gz); {how_to_get}"
        )


def _read_idx_dataset(name: str, directory: Path, how_to_get: str):
    """The four IDX files of a dataset, each checked: (train images, train labels, test images,
    test labels)."""
    _check_idx_directory(name, directory, how_to_get)
    paths = {role: _find_idx_file(directory, base) for role, base in IDX_FILE_NAMES.items()}
    train_images, train_labels = _read_image_label_pair(paths["train_images"], paths["train_labels"])
    test_images, test_labels = _read_image_label_pair(paths["test_images"], paths["test_labels"])
    if train_images.shape[1:] != test_images.shape[1:]:
        raise DataError(
            f"{name}: training images are {train_images.shape[1:]} but test images are "
            f"{test_images.shape[1:]} ({paths['train_images']}, {paths['test_images']})"
        )
    return train_images, train_labels, test_images, test_labels


def _load_idx_dataset(
    name: str,
    directory: Path,
    how_to_get: str,
    rng: np.random.Generator,
    validation_fraction: float,
    dtype: np.dtype,
) -> Dataset:
    train_images, train_labels, test_images, test_labels = _read_idx_dataset(name, directory, how_to_get)
    train, val = _split(np.arange(len(train_labels)), validation_fraction, rng)
    return Dataset(
        name=name,
        x_train=_scaled_pixels(train_images[train], dtype), y_train=train_labels[train],
        x_val=_scaled_pixels(train_images[val], dtype), y_val=train_labels[val],
        x_test=_scaled_pixels(test_images, dtype), y_test=test_labels,
        n_classes=N_CLASSES,
        source=f"IDX files in {directory}",
    )


def _read_image_label_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check one images/labels pair: 3-D ubyte images, as many 1-D labels, 0..9."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"IDX file {images_path}: expected 3-D unsigned-byte images (n, rows, cols), "
            f"got shape {images.shape} of {images.dtype}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(
            f"IDX file {labels_path}: expected 1-D unsigned-byte labels, "
            f"got shape {labels.shape} of {labels.dtype}"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    if labels.size and labels.max() >= N_CLASSES:
        raise DataError(f"IDX file {labels_path}: label {labels.max()} outside 0..{N_CLASSES - 1}")
    return images, labels.astype(np.int64)


def _scaled_pixels(images: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Flatten 8-bit images to (n, features) and scale 0..255 to [0, 1]."""
    return np.divide(images.reshape(len(images), -1), 255.0, dtype=dtype)
