"""An insight query: group keys of one party, measures of the other, filters on either side.

    [[query]]
    name = "Average check by income band"
    group_by = ["bank.income_band"]
    measures = ["mean(market.avg_check)"]            # count is always released
    where = ["bank.segment in ['affluent', 'premium']", "market.orders >= 2"]
    epsilon = 1.0                                     # privacy budget this query spends
    min_group_size = 50
    # as_of = "2019-01-01"; [query.params] duty_free_eur = 200; [query.clamp] "market.avg_check" = [0, 20000]

``clamp`` is each number measure's declared per-customer range ``[lo, hi]``: the catalogue's range
unless the query narrows it, and always written out in the canonical form. Values are clamped to it,
it sets the noise, and the group holder refuses figures its own group sizes and these bounds rule out.

Measures: ``count``, ``sum(F)``, ``mean(F)``, ``share(FLAG)`` (share of records with the flag) and
``share(PART, WHOLE)`` (sum of PART over sum of WHOLE). A record with no value in a measure's field
is left out of the query. Both nodes validate the same canonical form (``to_json``), so both
derive the same slots, noise scales and threshold from it.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import NoReturn

from tandem.errors import InputError
from tandem.insight import catalog
from tandem.insight.catalog import Field
from tandem.parties import PARTIES

FIXED_POINT = 100  # a measure value travels as round(value * 100), clamped to its bounds
MAX_GROUPS = 2000
MAX_BOUND = 1e9
FILTER_OPS = ("==", "!=", "<", "<=", ">", ">=", "in", "not in")
_MEASURE = re.compile(r"^\s*(count|sum|mean|share)\s*(?:\(\s*([^(),\s]+)\s*(?:,\s*([^(),\s]+)\s*)?\))?\s*$")
_FILTER = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(==|!=|<=|>=|<|>|not\s+in|in)\s*(.+?)\s*$")
_KEYS = {"name", "group_by", "measures", "where", "epsilon", "min_group_size", "as_of", "params", "clamp", "noise"}


@dataclass(frozen=True)
class Measure:
    """``kind`` with its fields (qualified names): none for count, one for sum/mean/share, two for a ratio share."""

    kind: str
    fields: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return self.kind if not self.fields else f"{self.kind}({', '.join(self.fields)})"


@dataclass(frozen=True)
class Filter:
    field: str
    op: str
    value: str | float | tuple

    @property
    def label(self) -> str:
        return f"{self.field} {self.op} {self.value!r}"


@dataclass(frozen=True)
class Query:
    name: str
    group_by: tuple[str, ...]
    measures: tuple[Measure, ...]
    where: tuple[Filter, ...] = ()
    epsilon: float = 1.0
    min_group_size: int = 50
    as_of: str = ""  # ISO day the fields are taken at; "" until the initiator sets it (``at``)
    params: dict[str, float] = field(default_factory=dict)
    clamp: dict[str, tuple[float, float]] = field(default_factory=dict)
    noise: bool = True

    def at(self, day: date) -> Query:
        """This query taken at ``day``, unless it names its own ``as_of``."""
        return self if self.as_of else replace(self, as_of=day.isoformat())

    @property
    def group_party(self) -> str:
        return catalog.FIELDS[self.group_by[0]].party

    @property
    def measure_party(self) -> str:
        return next(p for p in PARTIES if p != self.group_party)

    @property
    def slots(self) -> tuple[str, ...]:
        """What each released figure sums: "count", then each measure field once, in order of appearance."""
        out = ["count"]
        for m in self.measures:
            out += [f for f in m.fields if f not in out]
        return tuple(out)

    @property
    def group_fields(self) -> list[Field]:
        return [catalog.FIELDS[g] for g in self.group_by]

    @property
    def n_groups(self) -> int:
        return math.prod(len(f.labels) for f in self.group_fields)

    def group_labels(self, index: int) -> tuple[str, ...]:
        """The labels of group ``index`` (mixed radix over the group keys, the last key fastest)."""
        out = []
        for f in reversed(self.group_fields):
            index, k = divmod(index, len(f.labels))
            out.append(f.labels[k])
        return tuple(reversed(out))

    def bounds(self, name: str) -> tuple[float, float]:
        return self.clamp.get(name, catalog.FIELDS[name].bounds)

    def slot_bounds(self) -> list[tuple[int, int]]:
        """Per slot, the declared per-row range ``[lo, hi]`` of a counted customer, in fixed-point units:
        ``(1, 1)`` for the count, a field's clamping bounds times ``FIXED_POINT``. A customer left out adds 0
        to every slot. The group holder checks the figures against these (``tandem.protocols.insight``)."""
        out = [(1, 1)]
        for s in self.slots[1:]:
            lo, hi = self.bounds(s)
            out.append((round(lo * FIXED_POINT), round(hi * FIXED_POINT)))
        return out

    def sensitivities(self) -> list[int]:
        """Per slot, the most one customer adds to it, in fixed-point units: 1 for the count, the upper
        clamping bound of a field (bounds start at 0)."""
        return [1] + [round(self.bounds(s)[1] * FIXED_POINT) for s in self.slots[1:]]

    def to_json(self) -> str:
        body = {
            "name": self.name,
            "group_by": list(self.group_by),
            "measures": [m.label for m in self.measures],
            "where": [_filter_text(f) for f in self.where],
            "epsilon": self.epsilon,
            "min_group_size": self.min_group_size,
            "as_of": self.as_of,
            "params": dict(sorted(self.params.items())),
            "clamp": {k: list(v) for k, v in sorted(self.clamp.items())},
            "noise": self.noise,
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Query:
        """The canonical form back; ``InputError`` if it is not a valid query."""
        try:
            body = json.loads(text)
        except json.JSONDecodeError:
            raise InputError("query: not valid JSON") from None
        if not isinstance(body, dict):
            raise InputError("query: not an object")
        return parse_query(body, "query")


def _filter_text(f: Filter) -> str:
    value = list(f.value) if isinstance(f.value, tuple) else f.value
    return f"{f.field} {f.op} {json.dumps(value)}"


def parse_query(raw: dict, where: str, defaults: dict | None = None) -> Query:
    """Check one query table (TOML or JSON) against the catalogue; every error names ``where`` and the key."""
    raw = {**(defaults or {}), **raw}
    unknown = set(raw) - _KEYS
    if unknown:
        raise InputError(f"{where}: unknown key '{sorted(unknown)[0]}' (known: {', '.join(sorted(_KEYS))})")

    def fail(msg: str) -> NoReturn:
        raise InputError(f"{where}: {msg}")

    groups = raw.get("group_by")
    groups = [groups] if isinstance(groups, str) else groups
    if not isinstance(groups, list) or not groups or not all(isinstance(g, str) for g in groups):
        fail('group_by must name one or more group keys, e.g. "bank.income_band"')
    group_fields = [_field(g, where, "group_by") for g in groups]
    for f in group_fields:
        if f.kind != "group":
            fail(f"group_by: {f.qualified} is a {f.kind}, not a group key")
    if len({f.party for f in group_fields}) > 1:
        fail("group_by: all group keys must belong to one party")
    if len(set(f.qualified for f in group_fields)) != len(group_fields):
        fail("group_by names a key twice")
    group_party = group_fields[0].party
    measure_party = next(p for p in PARTIES if p != group_party)
    if math.prod(len(f.labels) for f in group_fields) > MAX_GROUPS:
        fail(f"group_by: more than {MAX_GROUPS} groups")

    measures_raw = raw.get("measures", ["count"])
    measures_raw = [measures_raw] if isinstance(measures_raw, str) else measures_raw
    if not isinstance(measures_raw, list) or not measures_raw or not all(isinstance(m, str) for m in measures_raw):
        fail('measures must be a list such as ["count", "mean(market.avg_check)"]')
    measures = []
    for text in measures_raw:
        m = _MEASURE.match(text)
        if not m:
            fail(f"measures: cannot read '{text}' (use count, sum(F), mean(F), share(FLAG) or share(PART, WHOLE))")
        kind, names = m.group(1), [n for n in m.group(2, 3) if n]
        if (kind == "count") != (not names) or (names[1:] and kind != "share"):
            fail(f"measures: '{text}': count takes no field, sum and mean one, share one or two")
        fields = [_field(n, where, "measures") for n in names]
        for f in fields:
            if f.party != measure_party:
                fail(
                    f"measures: {f.qualified} belongs to the {f.party}, which holds the group keys; "
                    f"measures must come from the {measure_party}"
                )
            if f.kind == "group":
                fail(f"measures: {f.qualified} is a group key, not a number")
        if kind == "share" and len(fields) == 1 and fields[0].kind != "flag":
            fail(f"measures: share({fields[0].qualified}) needs a flag; for a number use share(PART, WHOLE)")
        measure = Measure(kind, tuple(f.qualified for f in fields))
        if measure not in measures:
            measures.append(measure)

    where_raw = raw.get("where", [])
    where_raw = [where_raw] if isinstance(where_raw, str) else where_raw
    if not isinstance(where_raw, list) or not all(isinstance(w, str) for w in where_raw):
        fail("where must be a list of conditions such as \"bank.segment == 'premium'\"")
    filters = tuple(_filter(text, where) for text in where_raw)

    epsilon = raw.get("epsilon", 1.0)
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0 < epsilon <= 100:
        fail("epsilon must be a number in (0, 100]")
    k = raw.get("min_group_size", 50)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        fail("min_group_size must be a positive integer")
    as_of = raw.get("as_of") or ""
    try:
        as_of = date.fromisoformat(str(as_of)).isoformat() if as_of else ""
    except ValueError:
        fail(f"as_of must be a date like 2019-01-01, got '{as_of}'")
    params = dict(raw.get("params") or {})
    for name, value in params.items():
        if name not in catalog.PARAMS:
            fail(f"params: unknown parameter '{name}' (known: {', '.join(catalog.PARAMS)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < MAX_BOUND:
            fail(f"params: {name} must be a positive number")
    params = {n: float(params.get(n, d)) for n, (d, _doc) in catalog.PARAMS.items()}
    clamp = {}
    for name, value in (raw.get("clamp") or {}).items():
        f = _field(name, where, "clamp")
        if f.kind != "number" or f.qualified not in {n for m in measures for n in m.fields}:
            fail(f"clamp: {f.qualified} is not a number field among the measures")
        if not (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            and 0 <= value[0] < value[1] <= MAX_BOUND
        ):
            fail(f"clamp: {f.qualified} needs [low, high] with 0 <= low < high <= {MAX_BOUND:g}")
        clamp[f.qualified] = (float(value[0]), float(value[1]))
    for name in sorted({n for m in measures for n in m.fields}):  # every number's bound declared in the query
        if catalog.FIELDS[name].kind == "number" and name not in clamp:
            lo, hi = catalog.FIELDS[name].bounds
            clamp[name] = (float(lo), float(hi))
    noise = raw.get("noise", True)
    if not isinstance(noise, bool):
        fail("noise must be true or false")
    name = raw.get("name") or ", ".join(m.label for m in measures) + " by " + ", ".join(
        f.qualified for f in group_fields
    )
    if not isinstance(name, str):
        fail("name must be a string")
    return Query(
        name,
        tuple(f.qualified for f in group_fields),
        tuple(measures),
        filters,
        float(epsilon),
        k,
        as_of,
        params,
        clamp,
        noise,
    )


def _field(name: str, where: str, key: str) -> Field:
    try:
        return catalog.resolve(name)
    except KeyError as exc:
        raise InputError(f"{where}: {key}: {exc.args[0]}") from None


def _filter(text: str, where: str) -> Filter:
    m = _FILTER.match(text)
    if not m:
        raise InputError(
            f"{where}: where: cannot read '{text}' (use FIELD OP VALUE, OP one of {', '.join(FILTER_OPS)})"
        )
    f = _field(m.group(1), where, "where")
    op = " ".join(m.group(2).split())
    value = _literal(m.group(3))
    if f.kind == "group":
        values = value if isinstance(value, list) else [value]
        if op in ("in", "not in") and not isinstance(value, list):
            raise InputError(f"{where}: where: '{text}': {op} needs a list such as ['a', 'b']")
        if op not in ("==", "!=", "in", "not in"):
            raise InputError(f"{where}: where: '{text}': a group key takes ==, !=, in or not in")
        bad = [v for v in values if v not in f.labels]
        if bad:
            raise InputError(f"{where}: where: {f.qualified} has no label {bad[0]!r} (labels: {', '.join(f.labels)})")
        return Filter(f.qualified, op, tuple(values) if op in ("in", "not in") else values[0])
    if op in ("in", "not in") or isinstance(value, (list, str, bool)) or not isinstance(value, (int, float)):
        raise InputError(f"{where}: where: '{text}': {f.qualified} is a {f.kind}; compare it with a number")
    return Filter(f.qualified, op, float(value))


def _literal(text: str):
    """A TOML literal (number, quoted string, list), or a bare word taken as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip().strip("'\"")


def load_queries(path: str | Path) -> list[Query]:
    """Queries from a TOML file (``[[query]]`` tables, or one ``[query]``) or a JSON list of canonical queries."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read query file ({exc.strerror})") from None
    if path.suffix == ".json":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise InputError(f"{path}: expected a list of queries")
        return [parse_query(q, f"{path} query {i + 1}") for i, q in enumerate(items)]
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    unknown = set(raw) - {"query", "defaults"}
    if unknown:
        raise InputError(f"{path}: unknown table [{sorted(unknown)[0]}] (use [[query]] and optionally [defaults])")
    items = raw.get("query", [])
    items = [items] if isinstance(items, dict) else items
    if not items:
        raise InputError(f"{path}: no [[query]] table")
    defaults = raw.get("defaults", {})
    return [parse_query(q, f"{path} query {i + 1}", defaults) for i, q in enumerate(items)]


def save_queries(queries: list[Query]) -> bytes:
    """The canonical JSON list ``load_queries`` reads back (how the local runner hands queries to a node)."""
    return ("[" + ",".join(q.to_json() for q in queries) + "]").encode()
