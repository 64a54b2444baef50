"""IDX reader and writer (hl_flower.idx): round trips and every malformed-file error."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from hl_flower.idx import IdxError, find_idx_file, load_idx_folder, read_idx, write_idx


def _images(count: int, side: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, side, side), dtype=np.uint8)


def _labels(count: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 10, count, dtype=np.uint8)


def _write_folder(folder: Path, train: int = 7, test: int = 3, suffix: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"train-images-idx3-ubyte{suffix}", _images(train, seed=0))
    write_idx(folder / f"train-labels-idx1-ubyte{suffix}", _labels(train, seed=1))
    write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", _images(test, seed=2))
    write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", _labels(test, seed=3))


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_write_then_read_returns_the_same_images(tmp_path: Path, name: str) -> None:
    images = _images(6, side=4)
    write_idx(tmp_path / name, images)
    back = read_idx(tmp_path / name)
    assert back.dtype == np.uint8
    assert back.shape == (6, 4, 4)
    assert np.array_equal(back, images)


@pytest.mark.parametrize("name", ["labels-idx1-ubyte", "labels-idx1-ubyte.gz"])
def test_write_then_read_returns_the_same_labels(tmp_path: Path, name: str) -> None:
    labels = _labels(11)
    write_idx(tmp_path / name, labels)
    assert np.array_equal(read_idx(tmp_path / name), labels)


def test_gz_file_is_really_gzip_compressed(tmp_path: Path) -> None:
    images = _images(3)
    write_idx(tmp_path / "a.gz", images)
    write_idx(tmp_path / "a", images)
    assert gzip.decompress((tmp_path / "a.gz").read_bytes()) == (tmp_path / "a").read_bytes()


def test_written_header_follows_the_idx_format(tmp_path: Path) -> None:
    write_idx(tmp_path / "x", np.zeros((2, 3, 4), np.uint8))
    raw = (tmp_path / "x").read_bytes()
    assert raw[:4] == bytes([0, 0, 0x08, 3])
    assert raw[4:16] == (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + (4).to_bytes(4, "big")
    assert len(raw) == 16 + 2 * 3 * 4


def test_read_big_endian_int32_file(tmp_path: Path) -> None:
    values = np.array([[1, -2], [70000, 3]], dtype=">i4")
    raw = bytes([0, 0, 0x0C, 2]) + np.array([2, 2], ">u4").tobytes() + values.tobytes()
    (tmp_path / "ints").write_bytes(raw)
    assert read_idx(tmp_path / "ints").tolist() == [[1, -2], [70000, 3]]


def test_truncated_data_raises_idx_error(tmp_path: Path) -> None:
    write_idx(tmp_path / "x", _images(4))
    raw = (tmp_path / "x").read_bytes()
    (tmp_path / "x").write_bytes(raw[:-7])
    with pytest.raises(IdxError, match="truncated"):
        read_idx(tmp_path / "x")


def test_extra_trailing_bytes_raise_idx_error(tmp_path: Path) -> None:
    write_idx(tmp_path / "x", _images(4))
    (tmp_path / "x").write_bytes((tmp_path / "x").read_bytes() + b"\x00")
    with pytest.raises(IdxError):
        read_idx(tmp_path / "x")


def test_truncated_header_raises_idx_error(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(bytes([0, 0, 0x08, 3, 0, 0, 0, 2]))
    with pytest.raises(IdxError, match="truncated header"):
        read_idx(tmp_path / "x")


def test_truncated_gzip_stream_raises_idx_error(tmp_path: Path) -> None:
    write_idx(tmp_path / "x.gz", _images(20))
    raw = (tmp_path / "x.gz").read_bytes()
    (tmp_path / "x.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(IdxError, match="gzip"):
        read_idx(tmp_path / "x.gz")


def test_gzip_with_bad_crc_raises_idx_error(tmp_path: Path) -> None:
    write_idx(tmp_path / "x.gz", _images(20))
    raw = bytearray((tmp_path / "x.gz").read_bytes())
    raw[-8] ^= 0xFF  # first byte of the CRC32 trailer
    (tmp_path / "x.gz").write_bytes(bytes(raw))
    with pytest.raises(IdxError, match="gzip"):
        read_idx(tmp_path / "x.gz")


def test_gzip_with_corrupt_deflate_data_raises_idx_error(tmp_path: Path) -> None:
    write_idx(tmp_path / "x.gz", _images(20))
    raw = bytearray((tmp_path / "x.gz").read_bytes())
    raw[10] ^= 0xFF  # first deflate byte: block type becomes the invalid 0b11
    (tmp_path / "x.gz").write_bytes(bytes(raw))
    with pytest.raises(IdxError):
        read_idx(tmp_path / "x.gz")


@pytest.mark.parametrize(
    "magic",
    [bytes([1, 0, 0x08, 1]), bytes([0, 1, 0x08, 1]), bytes([0, 0, 0x07, 1]), b"PK\x03\x04"],
    ids=["first-byte", "second-byte", "unknown-type", "zip"],
)
def test_bad_magic_raises_idx_error(tmp_path: Path, magic: bytes) -> None:
    (tmp_path / "x").write_bytes(magic + (3).to_bytes(4, "big") + bytes(3))
    with pytest.raises(IdxError, match="magic"):
        read_idx(tmp_path / "x")


def test_file_shorter_than_magic_raises_idx_error(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"\x00\x00")
    with pytest.raises(IdxError):
        read_idx(tmp_path / "x")


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_load_folder_returns_train_and_test_arrays(tmp_path: Path, suffix: str) -> None:
    _write_folder(tmp_path, train=7, test=3, suffix=suffix)
    x_train, y_train, x_test, y_test = load_idx_folder(tmp_path)
    assert np.array_equal(x_train, _images(7, seed=0))
    assert np.array_equal(y_train, _labels(7, seed=1))
    assert np.array_equal(x_test, _images(3, seed=2))
    assert np.array_equal(y_test, _labels(3, seed=3))


def test_find_idx_file_prefers_plain_and_falls_back_to_gz(tmp_path: Path) -> None:
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    assert find_idx_file(tmp_path, "train", "images").name == "train-images-idx3-ubyte.gz"
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"")
    assert find_idx_file(tmp_path, "train", "images").name == "train-images-idx3-ubyte"


@pytest.mark.parametrize("names", [
    ("train-images.idx3-ubyte", "train-labels.idx1-ubyte",  # unpacked on Windows
     "t10k-images.idx3-ubyte", "t10k-labels.idx1-ubyte"),
    ("emnist-digits-train-images-idx3-ubyte.gz", "emnist-digits-train-labels-idx1-ubyte.gz",
     "emnist-digits-test-images-idx3-ubyte.gz", "emnist-digits-test-labels-idx1-ubyte.gz"),
    ("Train-Images-IDX3-UBYTE", "train_labels_idx1_ubyte",
     "test-images-idx3-ubyte", "test-labels-idx1-ubyte"),
])
def test_folders_named_as_other_sets_ship_them_load(tmp_path: Path,
                                                    names: tuple[str, ...]) -> None:
    arrays = (_images(7, seed=0), _labels(7, seed=1), _images(3, seed=2), _labels(3, seed=3))
    for name, array in zip(names, arrays, strict=True):
        write_idx(tmp_path / name, array)
    for loaded, written in zip(load_idx_folder(tmp_path), arrays, strict=True):
        assert np.array_equal(loaded, written)


def test_a_gzip_file_without_gz_in_its_name_is_read(tmp_path: Path) -> None:
    """Browsers unpack a .gz download and keep the name, or keep the bytes
    and drop it: the content decides, not the name."""
    write_idx(tmp_path / "packed.gz", _labels(5))
    (tmp_path / "packed.gz").rename(tmp_path / "train-labels-idx1-ubyte")
    write_idx(tmp_path / "plain", _labels(5))
    (tmp_path / "plain").rename(tmp_path / "t10k-labels-idx1-ubyte.gz")
    assert np.array_equal(read_idx(tmp_path / "train-labels-idx1-ubyte"), _labels(5))
    assert np.array_equal(read_idx(tmp_path / "t10k-labels-idx1-ubyte.gz"), _labels(5))


def test_two_candidates_for_one_file_are_refused(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    write_idx(tmp_path / "test-images-idx3-ubyte", _images(3, seed=2))
    with pytest.raises(IdxError, match="both t10k-images-idx3-ubyte and "
                                       "test-images-idx3-ubyte look like the t10k images"):
        load_idx_folder(tmp_path)


def test_image_and_label_count_mismatch_raises_idx_error(tmp_path: Path) -> None:
    _write_folder(tmp_path, train=7, test=3)
    write_idx(tmp_path / "train-labels-idx1-ubyte", _labels(6))
    with pytest.raises(IdxError, match="7 train images but 6 labels"):
        load_idx_folder(tmp_path)


def test_test_split_count_mismatch_raises_idx_error(tmp_path: Path) -> None:
    _write_folder(tmp_path, train=7, test=3)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", _labels(4))
    with pytest.raises(IdxError, match="t10k"):
        load_idx_folder(tmp_path)


def test_labels_with_wrong_rank_raise_idx_error(tmp_path: Path) -> None:
    _write_folder(tmp_path, train=6, test=3)
    write_idx(tmp_path / "train-labels-idx1-ubyte", _labels(6).reshape(2, 3))
    with pytest.raises(IdxError, match="1-D"):
        load_idx_folder(tmp_path)


def test_missing_file_in_folder_raises_idx_error(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(IdxError, match="missing t10k-labels-idx1-ubyte"):
        load_idx_folder(tmp_path)


def test_missing_folder_raises_idx_error(tmp_path: Path) -> None:
    with pytest.raises(IdxError, match="does not exist"):
        load_idx_folder(tmp_path / "nowhere")
