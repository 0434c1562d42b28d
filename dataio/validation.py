"""Reading source files into string tables, with errors that name the file, line and fix.

Every loader reads through these helpers, so a bad file always raises ``DatasetError`` saying which
file, which lines and what was expected, never a raw pandas traceback.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dataio.dataset import DatasetError


def no_quotes() -> dict[str, Any]:
    """``read_table`` options for files whose quotes are data (ml-100k titles)."""
    return {"quoting": csv.QUOTE_NONE}


def read_table(path: Path, expected: str, **options: Any) -> pd.DataFrame:
    """``pd.read_csv`` of strings, turning every read failure into a ``DatasetError``."""
    if not path.is_file():
        raise DatasetError(f"missing file {path}; expected {expected}")
    encoding = options.pop("encoding", "utf-8")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding, **options)
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{path} is not valid {encoding} text ({exc.reason} at byte {exc.start}); "
            f"save it as UTF-8. Expected {expected}"
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise DatasetError(f"{path} is empty; expected {expected}") from exc
    except pd.errors.ParserError as exc:
        reason = str(exc).strip().splitlines()[-1]
        raise DatasetError(f"{path} could not be parsed ({reason}); expected {expected}") from exc
    if table.empty:
        raise DatasetError(f"{path} has no data rows; expected {expected}")
    return table


def require_columns(table: pd.DataFrame, columns: tuple[str, ...], path: Path, expected: str):
    """DatasetError naming the missing columns (and the found ones) of a table with a header."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        found = ", ".join(str(c) for c in table.columns)
        raise DatasetError(
            f"{path}: missing column(s) {', '.join(missing)} (found: {found}); expected {expected}"
        )


def require_columns_count(table: pd.DataFrame, count: int, path: Path, expected: str) -> None:
    """DatasetError when a header-less table does not have exactly ``count`` columns."""
    if table.shape[1] != count:
        raise DatasetError(
            f"{path}: found {table.shape[1]} columns, not {count}; expected {expected}"
        )


def _bad_rows(path: Path, column: str, values: pd.Series, bad: np.ndarray, first_line: int) -> str:
    lines = np.flatnonzero(bad)[:3]
    shown = ", ".join(f"line {i + first_line}: {values.iat[i]!r}" for i in lines)
    return f"{path}: {int(bad.sum())} bad {column} value(s) ({shown})"


def id_column(values: pd.Series, path: Path, column: str, *, first_line: int) -> pd.Series:
    """Stripped string ids; DatasetError naming the lines with an empty id."""
    ids = values.fillna("").astype(str).str.strip()
    empty = (ids == "").to_numpy()
    if empty.any():
        raise DatasetError(
            _bad_rows(path, column, ids, empty, first_line) + "; ids must be non-empty"
        )
    return ids


def int_column(values: pd.Series, path: Path, column: str, *, first_line: int) -> np.ndarray:
    """int64 values; DatasetError naming the lines that are not integers."""
    text = values.fillna("").astype(str).str.strip()
    bad = ~text.str.fullmatch(r"[+-]?\d{1,18}").to_numpy()
    if bad.any():
        raise DatasetError(_bad_rows(path, column, text, bad, first_line) + "; expected integers")
    return text.astype(np.int64).to_numpy()


def float_column(values: pd.Series, path: Path, column: str, *, first_line: int) -> np.ndarray:
    """float64 values (NaN where empty); DatasetError naming the lines that are not numbers."""
    text = values.fillna("").astype(str).str.strip()
    numbers = pd.to_numeric(text.where(text != ""), errors="coerce")
    bad = (numbers.isna() & (text != "")).to_numpy()
    if bad.any():
        raise DatasetError(_bad_rows(path, column, text, bad, first_line) + "; expected numbers")
    return numbers.to_numpy(dtype=np.float64)
