"""Local pre-binning of one party's own feature column: quantile edges (numeric) or categories
(categorical), each special code and the missing values in pre-bins of their own, and every pre-bin
holding at least ``min_bin_rows`` training rows.

Pre-bin ids (``Layout``): value pre-bins ``0 .. n_values - 1``, then the special pre-bins, then one
missing pre-bin (always last, possibly empty). The minimum-count rule, applied on the training rows
before anything is sent:

- a value pre-bin below the minimum merges into its smaller neighbour (numeric; the left one on a tie)
  until all hold enough rows; categories below it go to one ``other`` pre-bin, which merges into the
  smallest category pre-bin if it is still too small;
- special codes below the minimum are pooled (with the missing values if those are below it too) into
  one special pre-bin; if the pool is still too small it joins the missing pre-bin (when that holds
  enough rows) or value pre-bin 0;
- a feature whose values cannot fill two pre-bins is unusable (``InputError`` naming it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tandem.errors import InputError
from tandem.learn.scorecard.options import MAX_PREBINS, BinningOptions

KINDS = ("numeric", "categorical")


@dataclass(frozen=True)
class Layout:
    """What the label holder knows of one feature's pre-bins: ``n_values`` value pre-bins, ``n_special``
    special pre-bins, then the missing pre-bin (``n_prebins = n_values + n_special + 1`` ids)."""

    kind: str
    n_values: int
    n_special: int

    @property
    def n_prebins(self) -> int:
        return self.n_values + self.n_special + 1

    @property
    def missing(self) -> int:
        return self.n_prebins - 1

    def problem(self) -> str | None:
        """Why this layout cannot be a feature's (None if it can)."""
        if self.kind not in KINDS:
            return f"kind must be one of {', '.join(KINDS)}"
        if not (2 <= self.n_values and 0 <= self.n_special and self.n_prebins <= MAX_PREBINS):
            return f"needs 2 or more value pre-bins and at most {MAX_PREBINS} pre-bins in all"
        return None


def _missing(x: np.ndarray) -> np.ndarray:
    return np.asarray(pd.isna(x), dtype=bool)


def kind_of(x: np.ndarray) -> str:
    """``"numeric"`` for integer and float columns, ``"categorical"`` for strings, booleans and objects."""
    return "numeric" if np.asarray(x).dtype.kind in "iuf" else "categorical"


@dataclass(frozen=True)
class Prebins:
    """A fitted pre-binning of one column. ``edges`` (n_values - 1,) float64: value pre-bin ``k`` holds
    ``edges[k-1] <= x < edges[k]`` (numeric); ``groups``: the categories of each value pre-bin
    (categorical); ``specials``: the codes of each special pre-bin; ``code_to`` / ``cat_to``: code or
    category (as text) -> pre-bin; ``missing_to``: the pre-bin of missing values; ``other``: the pre-bin
    of categories unseen in training; ``low``: a value of pre-bin 0 (for the pooled reference input)."""

    name: str
    layout: Layout
    edges: np.ndarray
    groups: tuple[tuple[str, ...], ...]
    specials: tuple[tuple[float | str, ...], ...]
    code_to: dict[str, int]
    cat_to: dict[str, int]
    missing_to: int
    other: int
    low: float | str

    @property
    def kind(self) -> str:
        return self.layout.kind

    @classmethod
    def fit(cls, name: str, x: np.ndarray, opts: BinningOptions) -> Prebins:
        """Pre-bin the training rows ``x`` (n,) of one feature (NaN / None: missing)."""
        x = np.asarray(x)
        kind, k = kind_of(x), opts.min_bin_rows
        miss = _missing(x)
        codes = _codes(kind, opts)
        is_code = {c: _is(x, c, miss, kind) for c in codes}
        own = [c for c in codes if is_code[c].sum() >= k]
        small = [c for c in codes if 0 < is_code[c].sum() < k]
        n_miss = int(miss.sum())
        small_miss = 0 < n_miss < k
        pool = sum(int(is_code[c].sum()) for c in small) + (n_miss if small_miss else 0)
        specials: list[tuple[float | str, ...]] = [(c,) for c in own]
        missing_to = -1  # -1: its own pre-bin (resolved below), -2: value pre-bin 0, >= 0: special pre-bin s
        small_to = "special"
        if small and pool >= k:
            specials.append(tuple(small))
            missing_to = len(specials) - 1 if small_miss else -1
        elif small and n_miss >= k:
            small_to = "missing"
        elif small or small_miss:
            small_to = "value0"
            missing_to = -2 if small_miss else -1
        values = ~miss & ~np.any([is_code[c] for c in codes], axis=0) if codes else ~miss
        extra = pool if small_to == "value0" else 0
        groups: tuple[tuple[str, ...], ...] = ()
        cat_to: dict[str, int] = {}
        low: float | str = 0.0
        if kind == "numeric":
            v = x[values].astype(np.float64)
            edges, other = _numeric(name, v, extra, opts), -1
            if len(v):
                low = float(v.min())
            n_values = len(edges) + 1
        else:
            v = x[values].astype(str)
            groups, other = _categories(name, v, extra, k)
            edges, n_values = np.zeros(0), len(groups)
            cat_to = {c: i for i, g in enumerate(groups) for c in g}
            low = groups[0][0]
        layout = Layout(kind, n_values, len(specials))
        code_to = {_key(c): n_values + s for s, group in enumerate(specials) for c in group}
        for c in small if small_to != "special" else []:
            code_to[_key(c)] = 0 if small_to == "value0" else layout.missing
        for c in codes:
            code_to.setdefault(_key(c), layout.missing)  # codes without training rows: read as missing
        resolved = layout.missing if missing_to == -1 else 0 if missing_to == -2 else n_values + missing_to
        if other < 0:
            other = layout.missing
        return cls(name, layout, edges, groups, tuple(specials), code_to, cat_to, resolved, other, low)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Rows ``x`` (n,) -> pre-bin ids (n,) uint8."""
        x = np.asarray(x)
        miss = _missing(x)
        out = np.full(len(x), self.missing_to, dtype=np.int64)
        done = miss.copy()
        for code, to in self.code_to.items():
            hit = ~done & _is(x, _unkey(code, self.kind), miss, self.kind)
            out[hit], done = to, done | hit
        rest = ~done
        if self.kind == "numeric":
            out[rest] = np.searchsorted(self.edges, x[rest].astype(np.float64), side="right")
        else:
            out[rest] = [self.cat_to.get(c, self.other) for c in x[rest].astype(str).tolist()]
        return out.astype(np.uint8)

    # --- what optbinning needs to fit the pooled reference on raw values -----------------------

    def user_splits(self) -> list:
        """optbinning's ``user_splits``: the edges (numeric) or the category groups (categorical)."""
        return list(self.edges) if self.kind == "numeric" else [np.array(g, dtype=object) for g in self.groups]

    def special_codes(self) -> dict[str, list] | None:
        """optbinning's ``special_codes``: one entry ``"s<i>"`` per special pre-bin, in layout order."""
        return {f"s{s}": list(g) for s, g in enumerate(self.specials)} or None

    def pooled_input(self, x: np.ndarray) -> np.ndarray:
        """``x`` with the rows this pre-binning merged away from their own kind of bin rewritten so that
        optbinning bins them as ``transform`` does: codes merged into the missing pre-bin become missing,
        codes or missing values merged into value pre-bin 0 become ``low``, missing values merged into a
        special pre-bin become its first code. Numeric -> float64, categorical -> object (text, None)."""
        ids = self.transform(x)
        x = np.asarray(x)
        miss = _missing(x)
        if self.kind == "numeric":
            out: np.ndarray = np.where(miss, np.nan, x).astype(np.float64)
        else:
            out = np.array([None if m else str(v) for v, m in zip(x.tolist(), miss.tolist())], dtype=object)
        is_special = np.zeros(len(x), dtype=bool)
        for code in self.code_to:
            is_special |= _is(x, _unkey(code, self.kind), miss, self.kind)
        moved = (miss | is_special) & (ids < self.layout.n_values)
        out[moved] = self.low
        lost = is_special & (ids == self.layout.missing)
        out[lost] = np.nan if self.kind == "numeric" else None
        for s, group in enumerate(self.specials):
            out[miss & (ids == self.layout.n_values + s)] = group[0]
        return out

    def to_json(self) -> dict:
        """The pre-binning as JSON (a model file keeps it to bin new rows as training did)."""
        return {
            "name": self.name,
            "layout": [self.kind, self.layout.n_values, self.layout.n_special],
            "edges": [float(e) for e in self.edges],
            "groups": [list(g) for g in self.groups],
            "specials": [list(g) for g in self.specials],
            "code_to": self.code_to,
            "cat_to": self.cat_to,
            "missing_to": self.missing_to,
            "other": self.other,
            "low": self.low,
        }

    @classmethod
    def from_json(cls, raw: dict) -> Prebins:
        """Inverse of ``to_json``; ``InputError`` if it is not one."""
        try:
            layout = Layout(*raw["layout"])
            out = cls(
                str(raw["name"]), layout, np.asarray(raw["edges"], dtype=np.float64),
                tuple(tuple(str(c) for c in g) for g in raw["groups"]), tuple(tuple(g) for g in raw["specials"]),
                {str(k): int(v) for k, v in raw["code_to"].items()}, {str(k): int(v) for k, v in raw["cat_to"].items()},
                int(raw["missing_to"]), int(raw["other"]), raw["low"],
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"not a pre-binning: {exc}") from None
        if layout.problem() or (layout.kind == "numeric" and len(out.edges) != layout.n_values - 1):
            raise InputError(f"pre-binning of '{out.name}' does not fit its layout")
        return out

    def final_edges(self, assign: np.ndarray) -> list:
        """The final value bins of a merge (``assign``: pre-bin -> final bin, ``Layout`` order): the kept
        edges (numeric, ascending) or each final bin's categories (categorical, in final-bin order)."""
        a = np.asarray(assign)[: self.layout.n_values]
        if self.kind == "numeric":
            return [float(e) for i, e in enumerate(self.edges) if a[i + 1] != a[i]]
        return [sorted(c for k in np.flatnonzero(a == b) for c in self.groups[k]) for b in range(int(a.max()) + 1)]


def _codes(kind: str, opts: BinningOptions) -> list[float | str]:
    """The special codes that apply to a column of this kind (numeric: the codes that are numbers)."""
    if kind == "categorical":
        return [str(c) for c in opts.special_codes]
    out: list[float | str] = []
    for c in opts.special_codes:
        try:
            out.append(float(c))
        except ValueError:
            continue
    return out


def _key(code: float | str) -> str:
    return repr(float(code)) if isinstance(code, float) else str(code)


def _unkey(key: str, kind: str) -> float | str:
    return float(key) if kind == "numeric" else key


def _is(x: np.ndarray, code: float | str, miss: np.ndarray, kind: str) -> np.ndarray:
    if kind == "numeric":
        return ~miss & (np.where(miss, np.nan, x).astype(np.float64) == float(code))
    return ~miss & (x.astype(str) == str(code))


def _unusable(name: str, k: int) -> InputError:
    return InputError(
        f"feature '{name}' cannot be binned: its values do not fill 2 bins of at least {k} training rows "
        "(one value, all missing, or too few rows); drop it"
    )


def _numeric(name: str, v: np.ndarray, extra: int, opts: BinningOptions) -> np.ndarray:
    """Quantile edges of ``v`` (the values), merged until every pre-bin holds ``min_bin_rows`` rows
    (``extra`` more rows go to pre-bin 0)."""
    k = opts.min_bin_rows
    if len(v) == 0:
        raise _unusable(name, k)
    edges = np.unique(np.quantile(v, np.linspace(0, 1, opts.max_n_prebins + 1)[1:-1]))
    # a value holding more than a quantile step of the rows (a count feature's 0) gets a pre-bin of its own:
    # without the next value up as an edge, quantiles that all fall on it would leave the tail unseparated
    heavy = [e for e in edges if (v == e).sum() >= len(v) / opts.max_n_prebins and (v > e).any()]
    edges = np.unique(np.concatenate([edges, [v[v > e].min() for e in heavy]]))
    counts = list(np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1))
    counts[0] += extra
    cuts = list(edges)
    while len(counts) > 1 and min(counts) < k:
        i = int(np.argmin(counts))
        j = 1 if i == 0 else i - 1 if i == len(counts) - 1 or counts[i - 1] <= counts[i + 1] else i + 1
        lo = min(i, j)
        counts[lo] += counts[lo + 1]
        del counts[lo + 1], cuts[lo]
    if len(counts) < 2:
        raise _unusable(name, k)
    return np.array(cuts, dtype=np.float64)


def _categories(name: str, v: np.ndarray, extra: int, k: int) -> tuple[tuple[tuple[str, ...], ...], int]:
    """Category groups of ``v`` (text): one per category with ``k`` rows or more (sorted by name), the
    rarer ones in one ``other`` group (or merged into the smallest group while below ``k``). Returns the
    groups and the pre-bin of unseen categories (the ``other`` group, or -1 if there is none)."""
    cats, counts = np.unique(v, return_counts=True)
    big = [(str(c), int(n)) for c, n in zip(cats, counts) if n >= k]
    rare = tuple(str(c) for c, n in zip(cats, counts) if n < k)
    n_rare = int(sum(n for n in counts if n < k))
    groups = [[c] for c, _ in big]
    sizes = [n for _, n in big]
    if sizes:
        sizes[0] += extra
    other = -1
    if rare and n_rare >= k:
        groups.append(list(rare))
        other = len(groups) - 1
    elif rare and groups:
        i = int(np.argmin(sizes))
        groups[i] = sorted(groups[i] + list(rare))
        other = i
    if len(groups) < 2:
        raise _unusable(name, k)
    return tuple(tuple(g) for g in groups), other
