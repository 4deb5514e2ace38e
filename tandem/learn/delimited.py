"""Delimited text files (CSV, TSV, ``;``, ``|``; optionally gzip) read into an Arrow table.

The delimiter is sniffed from the first ``SNIFF_BYTES`` of the file (``csv.Sniffer`` among
``DELIMITERS``, ``,`` when it cannot tell) unless one is given. The header and the first rows of
that sample decide the columns: a header that ends with empty names the rows do not fill (``a,b,``
over ``1,2``) loses them, rows that end with empty fields the header does not name (``a,b`` over
``1,2,``) get unnamed columns, which ``tandem.learn.party_file`` drops when they are empty.

The table itself is parsed by ``pyarrow.csv`` (C++, all cores). Rows with more or fewer fields
than the header ("shifted rows") are left out by its ``invalid_row_handler``, which costs nothing
while there are none; only then is the file scanned again with Python's ``csv`` module for the
rows' line numbers (``line_numbers``; also used when a rule names rows of a clean file).

Measured 2026-12-04 on the 2-core development machine (AMD EPYC, shared with other jobs; best of
5): a 1M-row file of an id, 12 float columns and a 0/1 label (122 MB) takes 0.55 s in
``read_party_file`` against 0.34 s for plain ``pandas.read_csv`` (1.6x; the C engine, which does
not make the 1M id strings); 1M rows of an id, 8 floats and a label 0.41 s against 0.23 s (1.8x).
The same 122 MB file with 6 shifted rows takes 2.0 s: the line scan costs about 1.5 s per 1M rows.
pandas' C engine is not used: reading the id column as text (which keeps leading zeros, ``007``)
makes it slower than Arrow here (0.64 s against 0.25 s for the 8-float file's parse).
"""

from __future__ import annotations

import csv
import gzip
import io
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from tandem.errors import InputError

SNIFF_BYTES = 64 * 1024
DELIMITERS = ",\t;|"
MAX_SHIFTED_SHARE = 0.05  # more shifted rows than this share of the file is an error, not a warning
SHOWN_LINES = 5  # line numbers an error or warning names
# the texts that mean a missing value, in both parsers: pandas' default list
NULL_VALUES = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>"]
NULL_VALUES += ["N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]
_SEP_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


def parse_sep(sep: str | None) -> str | None:
    """``--sep``'s value as one character (``tab`` or ``\\t`` for a tab); ``None`` or ``""``: sniff."""
    if not sep:
        return None
    value = _SEP_NAMES.get(sep.lower(), sep)
    if len(value) != 1 or value in '"\r\n':
        raise InputError(f"--sep must be one character (or 'tab'), got {sep!r}")
    return value


def sep_name(sep: str) -> str:
    return "tab" if sep == "\t" else repr(sep)


def shown(numbers: list[int], word: str = "line") -> str:
    """``(lines 5, 9, 12, 40, 41, ...)``: the first ``SHOWN_LINES`` numbers."""
    more = ", ..." if len(numbers) > SHOWN_LINES else ""
    plural = "s" if len(numbers) > 1 else ""
    return f"({word}{plural} {', '.join(str(n) for n in numbers[:SHOWN_LINES])}{more})"


def n_rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


@dataclass
class Delimited:
    """``table``: the kept rows; ``unnamed``: the columns whose header cell was empty (named
    ``Unnamed: i``, i the 0-based position, as pandas names them); ``rows_left_out``: the shifted
    rows left out, ``left_out_lines`` their line numbers (1-based, the header is line 1; empty when
    unknown)."""

    table: pa.Table
    path: Path
    sep: str
    n_fields: int
    unnamed: set[str] = field(default_factory=set)
    rows_left_out: int = 0
    left_out_lines: list[int] = field(default_factory=list)
    _kept_lines: np.ndarray | None = None

    def line_numbers(self, rows: np.ndarray) -> list[int] | None:
        """The file's line numbers of kept rows ``rows`` (positions in ``table``); ``None`` where
        Python's csv module splits the file otherwise than Arrow did (line numbers unknown)."""
        if self._kept_lines is None:
            scanned = _scan(self.path, self.sep, self.n_fields)
            if scanned is None or len(scanned[0]) != self.table.num_rows:
                return None
            self._kept_lines = scanned[0]
        return self._kept_lines[rows].tolist()


def _open_text(path: Path) -> IO[str]:
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="replace", newline="")
    return open(path, encoding="utf-8-sig", errors="replace", newline="")


def _sample(path: Path) -> tuple[str, bool]:
    """The first ``SNIFF_BYTES`` of text (cut after its last newline when the file goes on), and
    whether the file goes on."""
    with _open_text(path) as fh:
        text = fh.read(SNIFF_BYTES)
        more = bool(fh.read(1))
    if more and "\n" in text:
        text = text[: text.rfind("\n") + 1]
    return text, more


def sniff(sample: str) -> str:
    """The sample's delimiter among ``DELIMITERS``; ``,`` when ``csv.Sniffer`` cannot tell."""
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def _header(path: Path, sample: str, cut: bool, sep: str) -> list[str]:
    """The column names: the header's cells, fitted to the field count most of the sampled rows have
    where the difference is empty cells at the end (of the header or of the rows)."""
    try:
        records = [r for r in csv.reader(io.StringIO(sample), delimiter=sep) if r]
    except csv.Error as exc:
        raise InputError(f"{path}: cannot read the header ({exc})") from None
    if not records:
        raise InputError(f"{path}: the file is empty")
    names = [name.strip() for name in records[0]]
    rows = records[1:-1] if cut else records[1:]
    if rows:
        n = Counter(len(r) for r in rows).most_common(1)[0][0]
        if n < len(names) and not any(names[n:]):
            names = names[:n]
        elif n > len(names) and not any(cell.strip() for r in rows if len(r) == n for cell in r[len(names) :]):
            names += [""] * (n - len(names))
    return names


def read_delimited(path: Path, sep: str | None, string_columns: list[str], warn: Callable[[str], None]) -> Delimited:
    """Parse ``path``; ``string_columns`` are read as text whatever they look like (the id column).

    Shifted rows are left out with one ``warn`` line, or refused (``InputError``) when they are more
    than ``MAX_SHIFTED_SHARE`` of the rows."""
    sample, cut = _sample(path)
    sep = sep or sniff(sample)
    header = _header(path, sample, cut, sep)
    names = [name or f"Unnamed: {i}" for i, name in enumerate(header)]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise InputError(f"{path}: columns {seen[name] + 1} and {i + 1} are both named {name!r}")
        seen[name] = i
    unnamed = {n for n, h in zip(names, header) if not h}
    quoted_newlines, scanned = False, None
    table, bad = _parse(path, sep, names, string_columns, quoted_newlines)
    if bad:
        scanned = _scan(path, sep, len(names))
        if scanned is None or len(scanned[0]) != table.num_rows:
            # a quoted field with a newline in it looks like two shifted rows to the fast parse
            quoted_newlines = True
            table, bad = _parse(path, sep, names, string_columns, quoted_newlines)
    dates = [f.name for f in table.schema if pa.types.is_temporal(f.type)]
    if dates:  # Arrow parses dates and times; read them as the text they are, as pandas does
        table, bad = _parse(path, sep, names, string_columns + dates, quoted_newlines)
    out = Delimited(table, path, sep, len(names), unnamed)
    if bad:
        if scanned is not None and len(scanned[0]) == table.num_rows:
            out._kept_lines, out.left_out_lines = scanned
        counts = sorted(set(bad))
        fields = str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
        where = f" {shown(out.left_out_lines)}" if out.left_out_lines else ""
        verb = "has" if len(bad) == 1 else "have"
        message = f"{path}: {n_rows(len(bad))} {verb} {fields} fields, the header {len(names)}"
        total = table.num_rows + len(bad)
        if len(bad) > MAX_SHIFTED_SHARE * total:
            raise InputError(
                f"{message}: more than {MAX_SHIFTED_SHARE:.0%} of {total} rows; check the delimiter "
                f"(read as {sep_name(sep)}; --sep sets it){where}"
            )
        warn(f"{message}: left out{where}")
        out.rows_left_out = len(bad)
    return out


def _parse(
    path: Path, sep: str, names: list[str], string_columns: list[str], newlines_in_values: bool
) -> tuple[pa.Table, list[int]]:
    """The table of the rows with ``len(names)`` fields, and the field counts of the others."""
    bad: list[int] = []

    def left_out(row) -> str:
        bad.append(row.actual_columns)
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pacsv.ParseOptions(
                delimiter=sep, newlines_in_values=newlines_in_values, invalid_row_handler=left_out
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in string_columns if c in names},
                null_values=NULL_VALUES,
                strings_can_be_null=True,
            ),
        )
    except (pa.ArrowException, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        hint = "; save it as UTF-8" if "UTF8" in first else ""
        raise InputError(f"{path}: cannot read ({first}{hint})") from None
    return table, bad


def _scan(path: Path, sep: str, n_fields: int) -> tuple[np.ndarray, list[int]] | None:
    """Line numbers (1-based, header = 1) of the data rows with ``n_fields`` fields and of the
    others, blank lines skipped; ``None`` when the csv module cannot read the file."""
    kept, bad = array("q"), []
    try:
        with _open_text(path) as fh:
            reader = csv.reader(fh, delimiter=sep)
            last, header = 0, True
            for record in reader:
                start, last = last + 1, reader.line_num
                if not record:
                    continue
                if header:
                    header = False
                elif len(record) == n_fields:
                    kept.append(start)
                else:
                    bad.append(start)
    except (csv.Error, OSError):
        return None
    return np.frombuffer(kept, dtype=np.int64), bad
