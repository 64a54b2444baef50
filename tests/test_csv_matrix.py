"""Distance files as other tools write them: read what is unambiguous,
refuse the rest in words (hl_flower.csv_matrix through load_distance)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hl_flower.csv_matrix import MatrixTextError, read_matrix_text
from hl_flower.distance import DistanceError, load_distance

MATRIX = np.array([[0.0, 0.25, 0.5], [0.25, 0.0, 0.125], [0.5, 0.125, 0.0]])


def write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_bytes(data.encode())
    return path


@pytest.mark.parametrize(("name", "data"), [
    ("plain.csv", "0,0.25,0.5\n0.25,0,0.125\n0.5,0.125,0\n"),
    # Excel "CSV UTF-8" in a decimal-comma locale: BOM, CRLF, semicolons, "0,25"
    ("excel_eu.csv", "\ufeff0;0,25;0,5\r\n0,25;0;0,125\r\n0,5;0,125;0\r\n"),
    # Excel "Unicode text": UTF-16 with a BOM, tabs
    ("excel.txt", "0\t0.25\t0.5\r\n0.25\t0\t0.125\r\n0.5\t0.125\t0\r\n".encode("utf-16")),
    # np.savetxt's default: spaces, scientific notation
    ("savetxt.txt", "0.000000000000000000e+00 2.500000000000000000e-01 5.0e-01\n"
                    "2.5e-01 0.0e+00 1.25e-01\n5.0e-01 1.25e-01 0.0e+00\n"),
    # pandas DataFrame.to_csv(): a header of column numbers and an index column
    ("pandas.csv", ",0,1,2\n0,0.0,0.25,0.5\n1,0.25,0.0,0.125\n2,0.5,0.125,0.0\n"),
    # a labelled table: node names across the top and down the side
    ("named.csv", "node,a,b,c\na,0,0.25,0.5\nb,0.25,0,0.125\nc,0.5,0.125,0\n"),
    # R's write.csv: quoted names, no top-left cell
    ("r.csv", '"a","b","c"\n"a",0,0.25,0.5\n"b",0.25,0,0.125\n"c",0.5,0.125,0\n'),
    # column names only, quoted values, a comment, blank lines, old Mac line ends
    ("header.csv", "# distances\r\"a\",\"b\",\"c\"\r\r\"0\",\"0.25\",\"0.5\"\r"
                   "0.25,0,0.125\r0.5,0.125,0\r"),
    # a separator at the end of every row (some spreadsheet exports)
    ("trailing.csv", "0;0.25;0.5;\n0.25;0;0.125;\n0.5;0.125;0;\n"),
])
def test_files_other_tools_write_are_read(tmp_path: Path, name: str,
                                          data: str | bytes) -> None:
    path = write(tmp_path, name, data)
    np.testing.assert_array_equal(read_matrix_text(path), MATRIX)
    np.testing.assert_array_equal(load_distance(str(path), 3), MATRIX)


@pytest.mark.parametrize(("data", "expected"), [
    ("0,1,2\n1,0\n2,1,0\n", "rows of different lengths (line 1 has 3 values, line 2 has 2)"),
    ("0,1\n1,zero\n", "holds 'zero' on line 2, column 2, which is not a number"),
    ("a,b\nx,0,1\ny,1,oops\n", "holds 'oops' on line 3, column 3"),
    ("0,,1\n1,0,1\n1,1,0\n", "empty cell on line 1, column 2"),
    ("# only a comment\n\n", "holds no values"),
    (b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x00", "not a text file in UTF-8 or UTF-16"),
    ("0;1,5\n1,5;0\n", None),  # decimal commas with semicolons: read (symmetric)
])
def test_what_is_not_a_matrix_is_refused_in_words(tmp_path: Path, data: str | bytes,
                                                  expected: str | None) -> None:
    path = write(tmp_path, "bad.csv", data)
    if expected is None:
        np.testing.assert_array_equal(read_matrix_text(path), [[0, 1.5], [1.5, 0]])
        return
    with pytest.raises(MatrixTextError, match="^.*$") as raised:
        read_matrix_text(path)
    assert expected in str(raised.value)
    with pytest.raises(DistanceError) as refused:
        load_distance(str(path), 3)
    assert str(refused.value).startswith(f"--distance-file {path} is not a numeric matrix: it ")
    assert "\\x" not in str(refused.value) and "\n" not in str(refused.value)


def test_a_pickled_npy_is_refused_without_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(DistanceError, match="holds Python objects; save a float array"):
        load_distance(str(path), 2)
