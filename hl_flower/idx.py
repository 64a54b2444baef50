"""Reader and writer for IDX files, the format MNIST and Fashion-MNIST ship in."""

from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path

import numpy as np

# Third byte of the magic number -> element type (big-endian where it matters).
_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxError(ValueError):
    """An IDX file is malformed; the message names the file and the problem."""


GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file into an array; gzip-compressed or not, whatever its
    name says (browsers unpack ``.gz`` downloads and keep the name)."""
    raw = path.read_bytes()
    if raw.startswith(GZIP_MAGIC):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise IdxError(f"{path}: not a valid gzip file ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise IdxError(f"{path}: not an IDX file (bad magic number)")
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    header_end = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header_end:
        raise IdxError(f"{path}: truncated header")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header_end != expected:
        raise IdxError(f"{path}: holds {len(raw) - header_end} data bytes, "
                       f"its header promises {expected} (truncated or corrupt)")
    return np.frombuffer(raw, dtype, offset=header_end).reshape(shape)


def write_idx(path: Path, array: np.ndarray, dtype: np.typing.DTypeLike = np.uint8) -> None:
    """Write ``array`` as an IDX file of element type ``dtype`` (unsigned
    bytes by default; any type the format has), gzip-compressed if ``.gz``."""
    codes = {t.newbyteorder("="): code for code, t in _IDX_TYPES.items()}
    element = np.dtype(dtype).newbyteorder("=")
    if element not in codes:
        raise IdxError(f"IDX files hold no {element} elements")
    code = codes[element]
    array = np.ascontiguousarray(array, dtype=_IDX_TYPES[code])
    header = bytes([0, 0, code, array.ndim])
    header += np.asarray(array.shape, ">u4").tobytes()
    payload = header + array.tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


def write_idx_folder(folder: Path, x_train: np.ndarray, y_train: np.ndarray,
                     x_test: np.ndarray, y_test: np.ndarray, suffix: str = "") -> None:
    """Write an MNIST-style folder (the four files :func:`load_idx_folder`
    reads; ``suffix=".gz"`` compresses them), so ``--dataset idx:<folder>``
    can use any set built offline."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, images, labels in (("train", x_train, y_train), ("t10k", x_test, y_test)):
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labels)


SPLIT_NAMES = {"train": ("train",), "t10k": ("t10k", "test")}


def find_idx_file(folder: Path, split: str, kind: str) -> Path:
    """The folder's file of ``kind`` (images or labels) for ``split`` (train
    or t10k), under the names MNIST-style sets ship with:
    ``train-images-idx3-ubyte``, ``train-images.idx3-ubyte`` (as unpacked on
    Windows), ``t10k-`` or ``test-``, a prefix such as ``emnist-letters-``,
    ``.gz`` or not. IdxError if there is none, or more than one."""
    splits = "|".join(SPLIT_NAMES[split])
    pattern = re.compile(rf"(?:^|[-_.])(?:{splits})[-_.]{kind}[-_.]idx\d[-_.]ubyte(?:\.gz)?$")
    found = sorted(p for p in folder.iterdir() if p.is_file() and pattern.search(p.name.lower()))
    stem = f"{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
    if not found:
        raise IdxError(f"{folder}: missing {stem} (or {stem}.gz, or the same "
                       "name with '.' before idx)")
    bases = sorted({p.name.removesuffix(".gz") for p in found})
    if len(bases) > 1:
        raise IdxError(f"{folder}: both {bases[0]} and {bases[1]} look like the "
                       f"{split} {kind}; keep one")
    return min(found, key=lambda p: p.suffix == ".gz")  # unpacked copy first


def load_idx_folder(folder: Path) -> tuple[np.ndarray, ...]:
    """Load train/test images and labels from an MNIST-style IDX folder."""
    if not folder.is_dir():
        raise IdxError(f"idx folder {folder} does not exist")
    arrays = []
    for split in ("train", "t10k"):
        images = read_idx(find_idx_file(folder, split, "images"))
        labels = read_idx(find_idx_file(folder, split, "labels"))
        if images.ndim != 3 or labels.ndim != 1:
            raise IdxError(f"{folder}: {split} images must be 3-D and labels "
                           f"1-D, got {images.ndim}-D and {labels.ndim}-D")
        if len(images) != len(labels):
            raise IdxError(f"{folder}: {len(images)} {split} images but "
                           f"{len(labels)} labels; the counts must agree")
        arrays += [images, labels]
    return tuple(arrays)
