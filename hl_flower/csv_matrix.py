"""A numeric matrix from a text file, as spreadsheets, editors and numpy or
pandas write one.

Read what is unambiguous:

- UTF-8 with or without a byte-order mark (Excel's "CSV UTF-8"), UTF-16
  with one (Excel's "Unicode text"); Windows (CRLF), Unix and old Mac line ends;
- values separated by semicolons, tabs, commas or runs of spaces
  (``np.savetxt``), the first of these that every line has; quoted values;
- decimal commas (``0,25``) where the separator is not a comma, as
  spreadsheets in many locales write them;
- a header row of names, and with it a first column of row names (R's
  ``write.csv``, with or without a top-left cell) or of the row numbers
  pandas' ``DataFrame.to_csv`` writes (under an empty top-left cell);
- an empty last column (a separator at the end of every row);
- blank lines and lines starting with ``#``.

Everything else is refused with :class:`MatrixTextError`, whose message
says in words where and what the problem is.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DELIMITERS = ";\t,"  # a semicolon or tab never sits inside a number
DECIMAL_COMMA = re.compile(r"^[+-]?\d*,\d+(?:[eE][+-]?\d+)?$")


class MatrixTextError(ValueError):
    """The file is not a matrix this reader can take; the message says why."""


def read_matrix_text(path: Path) -> np.ndarray:
    """The file's numbers as a float64 array of shape (rows, columns).

    Raises MatrixTextError if the file is not text, is empty, has rows of
    different lengths or holds a cell that is not a number (naming the
    file's line and column).
    """
    table = _table(_text(path))
    if not table.rows:
        raise MatrixTextError("holds no values")
    table = table.without_labels().without_empty_last_column()
    first = len(table.rows[0])
    for line, row in zip(table.lines, table.rows, strict=True):
        if len(row) != first:
            raise MatrixTextError(f"has rows of different lengths (line {table.lines[0]} "
                                  f"has {first} values, line {line} has {len(row)})")
    return np.array([[_number(cell, line, column + table.first_column)
                      for column, cell in enumerate(row, 1)]
                     for line, row in zip(table.lines, table.rows, strict=True)],
                    dtype=np.float64)


@dataclass(frozen=True)
class _Table:
    rows: list[list[str]]
    lines: list[int]  # the file's line number of each row
    first_column: int = 0  # columns dropped on the left (row names)

    def without_labels(self) -> _Table:
        """Drop a header row of names and, with it, a first column of row
        names (or of row numbers under an empty top-left cell)."""
        header, body = self.rows[0], self.rows[1:]
        corner_empty = header[0] == "" and all(header[1:])
        names = [cell for cell in header if cell]
        all_names = bool(names) and not any(map(_is_number, names))
        if not body or not (corner_empty or all_names):
            return self
        names_first = all(row and not _is_number(row[0]) for row in body)
        # R's write.csv leaves the corner out: its header is one cell shorter
        if corner_empty or (names_first and len(body[0]) - len(header) in (0, 1)):
            return _Table([row[1:] for row in body], self.lines[1:], 1)
        return _Table(body, self.lines[1:])

    def without_empty_last_column(self) -> _Table:
        if all(row and row[-1] == "" for row in self.rows):
            return _Table([row[:-1] for row in self.rows], self.lines, self.first_column)
        return self


def _text(path: Path) -> str:
    data = path.read_bytes()
    encoding = "utf-16" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        raise MatrixTextError("is not a text file in UTF-8 or UTF-16; save it as "
                              "CSV (UTF-8)") from None


def _table(text: str) -> _Table:
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), 1)
                if line.strip() and not line.lstrip().startswith("#")]
    lines = [line for _, line in numbered]
    numbers = [n for n, _ in numbered]
    delimiter = next((d for d in DELIMITERS if lines and all(d in line for line in lines)),
                     None)
    if delimiter is None:  # values separated by spaces (np.savetxt's default)
        return _Table([line.split() for line in lines], numbers)
    rows = [[cell.strip() for cell in row] for row in csv.reader(lines, delimiter=delimiter)]
    if delimiter != ",":
        rows = [[cell.replace(",", ".") if DECIMAL_COMMA.match(cell) else cell
                 for cell in row] for row in rows]
    return _Table(rows, numbers)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _number(cell: str, line: int, column: int) -> float:
    if cell == "":
        raise MatrixTextError(f"has an empty cell on line {line}, column {column}")
    try:
        return float(cell)
    except ValueError:
        raise MatrixTextError(f"holds {cell!r} on line {line}, column {column}, which "
                              "is not a number") from None
