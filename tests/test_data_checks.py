"""A user's data is read for what it is or refused with what was found:
IDX files of every element type, labels counted from 1, gaps in the labels,
NaN pixels, values out of range. Each refusal is one line, exit code 2, and
nothing is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from hl_flower.data import DataError
from hl_flower.data_checks import checked_labels, images_in_unit_range
from hl_flower.idx import write_idx
from hl_flower.image_sets import load_dataset

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--nodes", "4", "--main-samples", "100", "--other-samples", "100",
         "--episodes", "1", "--max-steps", "5"]


def digits_idx(folder: Path, images_dtype: type = np.uint8, scale: float = 255 / 16,
               label_offset: int = 0, nan_every: int = 0) -> Path:
    """scikit-learn's digits as an IDX folder, in the element type asked for."""
    digits = load_digits()
    images = digits.images * scale
    if nan_every:
        images[::nan_every, 3, 3] = np.nan
    labels = digits.target + label_offset
    split = 1400
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", slice(0, split)), ("t10k", slice(split, None))):
        write_idx(folder / f"{name}-images-idx3-ubyte", images[part], images_dtype)
        write_idx(folder / f"{name}-labels-idx1-ubyte", labels[part])
    return folder


def sim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "sim.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def refused(tmp_path: Path, folder: Path, expected: str) -> None:
    done = sim("--dataset", f"idx:{folder}", *SMALL, "--out", str(tmp_path / "runs"))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], lines
    assert "Traceback" not in done.stderr and not (tmp_path / "runs").exists()


def test_labels_counted_from_one_are_refused_with_the_fix(tmp_path: Path) -> None:
    refused(tmp_path, digits_idx(tmp_path / "from1", label_offset=1),
            "labels run 1..10, expected 0..9")


def test_nan_pixels_are_refused_before_any_run(tmp_path: Path) -> None:
    folder = digits_idx(tmp_path / "nan", np.float32, scale=1 / 16, nan_every=50)
    refused(tmp_path, folder, "28 of 1400 images hold NaN or Inf pixels")


@pytest.mark.parametrize(("dtype", "scale"), [
    (np.uint8, 255 / 16), (np.int8, 127 / 16), (np.int16, 255 / 16), (np.int32, 255 / 16),
    (np.float32, 1 / 16), (np.float64, 1 / 16), (np.float32, 255 / 16)])
def test_every_idx_element_type_is_read_for_what_it_is(tmp_path: Path, dtype: type,
                                                       scale: float) -> None:
    folder = digits_idx(tmp_path / "d", dtype, scale=scale)
    dataset = load_dataset(f"idx:{folder}")
    expected = load_digits().images[:1400] * scale
    if not (np.issubdtype(dtype, np.floating) and scale <= 1 / 16):
        expected = np.asarray(expected, dtype) / 255.0  # integers and 0..255 floats
    assert dataset.x_train.shape == (1400, 8, 8, 1) and dataset.x_train.dtype == np.float32
    assert np.allclose(dataset.x_train[..., 0], expected, atol=1e-6)
    assert 0.0 <= dataset.x_train.min() and dataset.x_train.max() <= 1.0
    assert dataset.num_classes == 10


@pytest.mark.parametrize(("pixels", "message"), [
    (np.array([[[-1.0, 0.5]]]), "run -1..0.5"),
    (np.array([[[0.0, 300.0]]]), "run 0..300"),
    (np.array([[[np.inf, 0.5]]]), "NaN or Inf"),
    (np.array([["a", "b"]]), "expected integers or floats"),
])
def test_images_out_of_range_are_refused(pixels: np.ndarray, message: str) -> None:
    with pytest.raises(DataError, match=message.replace(".", r"\.")):
        images_in_unit_range(pixels, "x")


@pytest.mark.parametrize(("train", "test", "message"), [
    ([0, 2, 2, 0], [0], "take the values 0, 2"),
    ([1, 1, 1], [1], "hold 1 class"),
    ([0, 1, 1], [2], "include 2, a class the training labels"),
    ([0.0, 1.5], [0.0], "not whole numbers"),
    ([-1, 0, 1], [0], "take the values -1, 0, 1"),
])
def test_labels_that_are_not_0_to_c_minus_1_are_refused(train: list, test: list,
                                                        message: str) -> None:
    with pytest.raises(DataError, match=message):
        checked_labels(np.array(train), np.array(test), "x")


def test_whole_float_labels_are_read_as_classes() -> None:
    train, test = checked_labels(np.array([0.0, 1.0, 2.0]), np.array([2.0]), "x")
    assert train.dtype == np.int64 and train.tolist() == [0, 1, 2] and test.tolist() == [2]
