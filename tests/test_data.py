"""The data module: IDX reader/writer, the three datasets, and the helpers."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from analogdp.data import (
    FASHION_MNIST_DIR,
    IDX_FILE_NAMES,
    DataError,
    Dataset,
    fashion_mnist_available,
    load_dataset,
    load_training_images,
    one_hot,
    read_idx,
    resample_images,
    write_idx,
)

RNG = np.random.default_rng(1234)
LABELS = RNG.integers(0, 10, size=50, dtype=np.uint8)
IMAGES = RNG.integers(0, 256, size=(7, 5, 3), dtype=np.uint8)


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """A valid IDX file written by hand (independently of write_idx)."""
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(
        n.to_bytes(4, "big") for n in array.shape
    )
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_bytes(tmp_path: Path, content: bytes, name: str = "bad-idx1-ubyte") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


# --------------------------------------------------------------------------------------------
# IDX reader and writer


@pytest.mark.parametrize("array", [LABELS, IMAGES], ids=["labels-1d", "images-3d"])
@pytest.mark.parametrize("suffix", ["", ".gz"], ids=["raw", "gz"])
def test_idx_round_trip(tmp_path, array, suffix):
    path = tmp_path / f"data-idx{array.ndim}-ubyte{suffix}"
    write_idx(path, array)
    if suffix:
        assert path.read_bytes()[:2] == b"\x1f\x8b"
        assert gzip.decompress(path.read_bytes()) == idx_bytes(array)
    else:
        assert path.read_bytes() == idx_bytes(array)
    loaded = read_idx(path)
    assert loaded.dtype == np.uint8
    assert loaded.shape == array.shape
    np.testing.assert_array_equal(loaded, array)
    loaded[...] = 0  # callers may modify what they read


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip_other_types(tmp_path, dtype):
    array = (RNG.standard_normal((4, 6)) * 100).astype(dtype)
    path = tmp_path / "values.idx"
    write_idx(path, array)
    loaded = read_idx(path)
    assert loaded.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(loaded, array)


def test_idx_reader_detects_gzip_by_content_not_name(tmp_path):
    path = write_bytes(tmp_path, gzip.compress(idx_bytes(LABELS)), "labels-without-gz-suffix")
    np.testing.assert_array_equal(read_idx(path), LABELS)


def test_idx_writer_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="cannot store dtype"):
        write_idx(tmp_path / "x.idx", np.zeros(3, dtype=np.complex128))


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "absent-idx1-ubyte"
    with pytest.raises(DataError, match="no such file") as error:
        read_idx(path)
    assert str(path) in str(error.value)


def test_rejects_wrong_magic(tmp_path):
    content = bytearray(idx_bytes(LABELS))
    content[0] = 0x12
    path = write_bytes(tmp_path, bytes(content))
    with pytest.raises(DataError) as error:
        read_idx(path)
    message = str(error.value)
    assert str(path) in message
    assert "wrong magic number 0x12000801" in message
    assert "not an IDX file" in message


def test_rejects_non_idx_text_file(tmp_path):
    path = write_bytes(tmp_path, b"<html>404 Not Found</html>", "train-images-idx3-ubyte")
    with pytest.raises(DataError, match="wrong magic number"):
        read_idx(path)


@pytest.mark.parametrize("type_code", [0x00, 0x07, 0x0A, 0x0F, 0xFF])
def test_rejects_unknown_type_code(tmp_path, type_code):
    content = bytearray(idx_bytes(LABELS))
    content[2] = type_code
    path = write_bytes(tmp_path, bytes(content))
    with pytest.raises(DataError) as error:
        read_idx(path)
    assert f"unknown IDX type code 0x{type_code:02X}" in str(error.value)
    assert "0x08" in str(error.value)  # lists the known codes
    assert str(path) in str(error.value)


def test_rejects_zero_dimensions(tmp_path):
    path = write_bytes(tmp_path, bytes([0, 0, 0x08, 0]))
    with pytest.raises(DataError, match="0 dimensions"):
        read_idx(path)


def test_rejects_header_declaring_more_items_than_present(tmp_path):
    content = bytearray(idx_bytes(LABELS))
    content[4:8] = (len(LABELS) + 10).to_bytes(4, "big")
    path = write_bytes(tmp_path, bytes(content))
    with pytest.raises(DataError) as error:
        read_idx(path)
    message = str(error.value)
    assert "truncated" in message
    assert f"shape ({len(LABELS) + 10},)" in message
    assert f"({len(LABELS) + 10} bytes of data)" in message
    assert f"only {len(LABELS)} bytes follow the header" in message


def test_rejects_extra_bytes_after_the_data(tmp_path):
    path = write_bytes(tmp_path, idx_bytes(IMAGES) + b"\x00\x01\x02")
    with pytest.raises(DataError) as error:
        read_idx(path)
    message = str(error.value)
    assert "3 unexpected extra bytes" in message
    assert f"({IMAGES.size} bytes)" in message
    assert str(path) in message


def test_rejects_wrong_dimension_count(tmp_path):
    """A 3-D header on 1-D data: the dimension sizes eat the payload, sizes no longer agree."""
    content = bytearray(idx_bytes(LABELS))
    content[3] = 3
    path = write_bytes(tmp_path, bytes(content))
    with pytest.raises(DataError, match="shape"):
        read_idx(path)


# Images: a 16-byte header (magic + 3 sizes), then 105 bytes of pixels.
@pytest.mark.parametrize("cut", [0, 1, 3, 4, 7, 8, 15])
def test_rejects_truncation_inside_the_header(tmp_path, cut):
    path = write_bytes(tmp_path, idx_bytes(IMAGES)[:cut])
    with pytest.raises(DataError) as error:
        read_idx(path)
    message = str(error.value)
    assert "truncated inside the header" in message
    assert f"{cut} bytes" in message
    assert str(path) in message
    if cut >= 4:
        assert "3 dimensions need a 16-byte header" in message


@pytest.mark.parametrize("cut", [16, 17, 60, 16 + IMAGES.size - 1])
def test_rejects_truncation_inside_the_data(tmp_path, cut):
    path = write_bytes(tmp_path, idx_bytes(IMAGES)[:cut])
    with pytest.raises(DataError) as error:
        read_idx(path)
    message = str(error.value)
    assert "truncated" in message
    assert f"({IMAGES.size} bytes of data)" in message
    assert f"only {cut - 16} bytes follow the header" in message


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_rejects_truncated_gzip_file(tmp_path, fraction):
    compressed = gzip.compress(idx_bytes(IMAGES))
    path = write_bytes(tmp_path, compressed[: int(len(compressed) * fraction)], "x-idx3-ubyte.gz")
    with pytest.raises(DataError) as error:
        read_idx(path)
    assert "truncated or corrupt gzip" in str(error.value)
    assert str(path) in str(error.value)


def test_rejects_gzip_of_truncated_idx(tmp_path):
    """A complete gzip stream whose content is a cut IDX file is reported as a truncated IDX."""
    path = write_bytes(tmp_path, gzip.compress(idx_bytes(IMAGES)[:50]), "x-idx3-ubyte.gz")
    with pytest.raises(DataError, match="only 34 bytes follow the header"):
        read_idx(path)


# --------------------------------------------------------------------------------------------
# digits


def test_digits_shapes_and_ranges():
    data = load_dataset("digits")
    assert isinstance(data, Dataset)
    assert data.name == "digits"
    assert data.n_features == 64
    assert data.n_classes == 10
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (1294, 144, 359)
    for x, y in [(data.x_train, data.y_train), (data.x_val, data.y_val), (data.x_test, data.y_test)]:
        assert x.dtype == np.float64
        assert x.shape == (len(y), 64)
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert np.issubdtype(y.dtype, np.integer)
        assert y.min() >= 0 and y.max() <= 9
    assert data.x_train.max() == 1.0  # 16 maps to 1
    assert "load_digits" in data.source
    assert data.summary().startswith("digits: 1294 train / 144 validation / 359 test, 64 features")


def test_digits_splits_partition_the_whole_set():
    from sklearn.datasets import load_digits

    data = load_dataset("digits", seed=3)
    everything = np.concatenate([data.x_train, data.x_val, data.x_test]) * 16
    original = load_digits().data
    order = lambda rows: rows[np.lexsort(rows.T)]  # noqa: E731
    np.testing.assert_array_equal(order(everything), order(original))


def test_digits_split_is_deterministic_per_seed_and_differs_across_seeds():
    first, again, other = (load_dataset("digits", seed=s) for s in (7, 7, 8))
    for split in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(first, split), getattr(again, split))
    assert not np.array_equal(first.y_test, other.y_test)
    assert not np.array_equal(first.y_val, other.y_val)


def test_float32_and_validation_fraction_options():
    data = load_dataset("digits", dtype=np.float32, validation_fraction=0.0)
    assert data.x_train.dtype == np.float32
    assert data.x_val.shape == (0, 64)
    assert len(data.y_train) == 1797 - 359
    with pytest.raises(DataError, match="validation_fraction"):
        load_dataset("digits", validation_fraction=1.0)
    with pytest.raises(DataError, match="floating"):
        load_dataset("digits", dtype=np.int32)


def test_unknown_dataset_name():
    with pytest.raises(DataError, match="unknown dataset 'cifar10'; choose one of digits"):
        load_dataset("cifar10")


# --------------------------------------------------------------------------------------------
# Fashion-MNIST (part of the required set-up) and MNIST


@pytest.fixture(scope="module")
def fashion_mnist() -> Dataset:
    if not fashion_mnist_available():
        pytest.fail(
            f"Fashion-MNIST not found in {FASHION_MNIST_DIR}: install the Debian package "
            "dataset-fashion-mnist (sudo apt-get install dataset-fashion-mnist, or run make setup)",
            pytrace=False,
        )
    return load_dataset("fashion-mnist")


def test_fashion_mnist_loads_with_the_standard_split(fashion_mnist):
    data = fashion_mnist
    assert data.n_features == 784
    assert data.n_classes == 10
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (54_000, 6_000, 10_000)
    assert data.x_train.shape == (54_000, 784)
    assert data.x_test.shape == (10_000, 784)
    assert data.x_train.dtype == np.float64
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0
    assert set(np.unique(data.y_test)) == set(range(10))
    assert np.bincount(data.y_test).tolist() == [1000] * 10  # the official balanced test set
    assert str(FASHION_MNIST_DIR) in data.source


def test_fashion_mnist_validation_split_depends_on_seed(fashion_mnist):
    other = load_dataset("fashion-mnist", seed=1, dtype=np.float32)
    assert other.x_train.dtype == np.float32
    assert not np.array_equal(other.y_val, fashion_mnist.y_val)
    np.testing.assert_array_equal(other.y_test, fashion_mnist.y_test)
    same = load_dataset("fashion-mnist", seed=0, dtype=np.float32)
    np.testing.assert_array_equal(same.y_val, fashion_mnist.y_val)
    np.testing.assert_allclose(same.x_val, fashion_mnist.x_val, atol=1e-7)


def test_fashion_mnist_available():
    assert fashion_mnist_available()  # the required set-up
    assert not fashion_mnist_available("/nonexistent/fashion")


def make_idx_directory(directory: Path, n_train: int = 40, n_test: int = 10) -> None:
    """Four small IDX files with the standard names, a mix of raw and gzip."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 4, 4), dtype=np.uint8),
        "train_labels": np.arange(n_train, dtype=np.uint8) % 10,
        "test_images": rng.integers(0, 256, (n_test, 4, 4), dtype=np.uint8),
        "test_labels": np.arange(n_test, dtype=np.uint8) % 10,
    }
    arrays["train_images"][0, 0, 0] = 255
    for i, (role, array) in enumerate(arrays.items()):
        suffix = ".gz" if i % 2 else ""
        write_idx(directory / (IDX_FILE_NAMES[role] + suffix), array)


def test_mnist_from_data_dir(tmp_path):
    make_idx_directory(tmp_path)
    data = load_dataset("mnist", data_dir=tmp_path)
    assert data.name == "mnist"
    assert data.n_features == 16
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (36, 4, 10)
    assert data.x_train.max() == 1.0 and data.x_train.min() >= 0.0
    assert str(tmp_path) in data.source
    assert fashion_mnist_available(tmp_path)
    assert load_dataset("fashion-mnist", data_dir=tmp_path).n_features == 16


def test_training_images_in_file_order_with_the_same_checks(tmp_path):
    make_idx_directory(tmp_path)
    images, labels, source = load_training_images("mnist", tmp_path)
    assert images.shape == (40, 4, 4) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, np.arange(40) % 10)
    np.testing.assert_array_equal(images, read_idx(tmp_path / IDX_FILE_NAMES["train_images"]))
    assert str(tmp_path) in source
    with pytest.raises(DataError, match="digits"):
        load_training_images("digits")
    raw = tmp_path / IDX_FILE_NAMES["train_images"]
    raw.write_bytes(raw.read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated"):
        load_training_images("mnist", tmp_path)


def test_mnist_without_data_dir_says_how_to_get_it():
    with pytest.raises(DataError) as error:
        load_dataset("mnist")
    message = str(error.value)
    assert "--data-dir" in message
    assert "train-images-idx3-ubyte" in message


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_missing_directory_is_named(tmp_path, name):
    missing = tmp_path / "no-such-dir"
    with pytest.raises(DataError) as error:
        load_dataset(name, data_dir=missing)
    message = str(error.value)
    assert str(missing) in message
    assert "does not exist" in message
    assert "--data-dir" in message
    if name == "fashion-mnist":
        assert "apt-get install dataset-fashion-mnist" in message


def test_missing_files_are_named(tmp_path):
    make_idx_directory(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as error:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(error.value)
    assert "lacks t10k-labels-idx1-ubyte" in message
    assert "train-images" not in message.split("lacks")[1].split("(")[0]


def test_inconsistent_image_and_label_counts(tmp_path):
    make_idx_directory(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(39, dtype=np.uint8))
    with pytest.raises(DataError, match="40 images but .* 39 labels"):
        load_dataset("mnist", data_dir=tmp_path)


def test_labels_out_of_range(tmp_path):
    make_idx_directory(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(10, 12, dtype=np.uint8))
    with pytest.raises(DataError, match="label 12 outside 0..9"):
        load_dataset("mnist", data_dir=tmp_path)


def test_images_and_labels_files_swapped(tmp_path):
    make_idx_directory(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros(40, dtype=np.uint8))
    with pytest.raises(DataError, match="expected 3-D unsigned-byte images"):
        load_dataset("mnist", data_dir=tmp_path)


# --------------------------------------------------------------------------------------------
# helpers


def test_one_hot():
    targets = one_hot(np.array([2, 0, 9]), 10)
    assert targets.shape == (3, 10)
    np.testing.assert_array_equal(targets.argmax(axis=1), [2, 0, 9])
    np.testing.assert_array_equal(targets.sum(axis=1), 1.0)
    assert one_hot(np.array([1]), 3, dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        one_hot(np.array([10]), 10)
    with pytest.raises(ValueError, match="1-D integer"):
        one_hot(np.array([0.5]), 10)


def test_resample_digits_to_784_inputs():
    data = load_dataset("digits")
    x = resample_images(data.x_train, 8, 28)
    assert x.shape == (len(data.y_train), 784)
    assert x.dtype == np.float64
    assert x.min() >= 0.0 and x.max() <= 1.0
    images, resampled = data.x_train.reshape(-1, 8, 8), x.reshape(-1, 28, 28)
    corners = ([0, 0, -1, -1], [0, -1, 0, -1])  # the grids are aligned at the corners
    np.testing.assert_allclose(resampled[:, *corners], images[:, *corners], atol=1e-12)


def test_resample_is_exact_on_a_linear_ramp():
    """Bilinear interpolation reproduces a linear function exactly (corner-aligned grids)."""
    rows, cols = np.mgrid[0:8, 0:8]
    ramp = ((rows + 2 * cols) / 21.0).reshape(1, 64)
    out_rows, out_cols = np.mgrid[0:28, 0:28] * (7 / 27)
    expected = ((out_rows + 2 * out_cols) / 21.0).reshape(1, 784)
    np.testing.assert_allclose(resample_images(ramp, 8, 28), expected, atol=1e-12)


def test_resample_keeps_constant_images_and_identity():
    constant = np.full((2, 16), 0.75)
    np.testing.assert_allclose(resample_images(constant, 4, 9), 0.75)
    x = RNG.random((3, 25))
    np.testing.assert_allclose(resample_images(x, 5, 5), x)
    assert resample_images(np.ones((1, 784), dtype=np.float32), 28, 14).dtype == np.float32
    with pytest.raises(ValueError, match=r"\(n, 64\)"):
        resample_images(np.zeros((2, 63)), 8, 28)
