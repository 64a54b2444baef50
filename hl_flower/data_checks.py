"""Checks of a user's arrays: read them for what they are, or refuse them.

Images may come as any IDX element type (unsigned or signed bytes, 16- or
32-bit integers, 32- or 64-bit floats). Integers are pixel values 0..255;
floats are taken as they are when they lie in [0, 1] and as 0..255 values
when they lie in [0, 255]. Anything else (NaN or Inf, negative values,
values above 255) is refused with what was found. Labels must be integers
0..C-1 with every class present in the training set: HL gives node n the
class n % C, so a missing class or labels counted from 1 (as EMNIST counts
its letters) would silently shift every node's class.
"""

from __future__ import annotations

import numpy as np

from .data import DataError

PIXEL_MAX = 255.0


def images_in_unit_range(images: np.ndarray, where: str) -> np.ndarray:
    """``images`` as float32 in [0, 1] (shape unchanged).

    Raises DataError for non-numeric, non-finite or out-of-range values.
    """
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise DataError(f"{where}: pixels are {images.dtype}, expected integers or floats")
    if images.size == 0:
        raise DataError(f"{where}: holds no images")
    pixels = images.astype(np.float64)
    bad = ~np.isfinite(pixels).reshape(len(pixels), -1).all(axis=1)
    if bad.any():
        raise DataError(f"{where}: {int(bad.sum())} of {len(pixels)} images hold NaN or "
                        f"Inf pixels (the first is image {int(np.argmax(bad))}); "
                        "expected finite values: drop or repair them")
    low, high = float(pixels.min()), float(pixels.max())
    if low < 0 or high > PIXEL_MAX:
        raise DataError(f"{where}: pixel values run {low:g}..{high:g}, expected 0..1 "
                        "or 0..255")
    unit = np.issubdtype(images.dtype, np.floating) and high <= 1.0
    return (pixels if unit else pixels / PIXEL_MAX).astype(np.float32)


def checked_labels(train: np.ndarray, test: np.ndarray, where: str
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Both label arrays as int64, after checking they are 0..C-1 (C >= 2)
    with every class in the training set and no unknown class in the test set.

    Raises DataError naming what was found and what is expected.
    """
    for split, labels in (("training", train), ("test", test)):
        numeric = labels.astype(np.float64)
        if not np.all(np.isfinite(numeric)) or np.any(numeric != np.round(numeric)):
            raise DataError(f"{where}: {split} labels are not whole numbers; expected "
                            "integer classes 0..C-1")
    train, test = train.astype(np.int64), test.astype(np.int64)
    classes = np.unique(train)
    if len(classes) < 2:
        raise DataError(f"{where}: the training labels hold {len(classes)} class; "
                        "expected at least 2")
    if classes[0] == 1 and classes[-1] == len(classes):
        raise DataError(f"{where}: labels run 1..{len(classes)}, expected 0..{len(classes) - 1}"
                        f" (HL gives node n the class n % C): subtract 1 from every label")
    if classes[0] != 0 or classes[-1] != len(classes) - 1:
        shown = ", ".join(str(c) for c in classes[:12]) + (" ..." if len(classes) > 12 else "")
        raise DataError(f"{where}: the training labels take the values {shown}, expected "
                        f"every class 0..C-1: renumber them consecutively from 0")
    unknown = np.setdiff1d(np.unique(test), classes)
    if len(unknown):
        raise DataError(f"{where}: the test labels include {int(unknown[0])}, a class the "
                        f"training labels (0..{len(classes) - 1}) do not have")
    return train, test
