"""Human-readable labels of a scorecard feature's final bins, for reports and stability tables.

Final bins come in ``Layout`` order (``prebin``): value bins, then one bin per special code group, then
the missing bin. Only the party that owns a feature knows its edges: the label holder labels its own
features by their intervals or categories and a passive party's only by bin index.
"""

from __future__ import annotations

import math

from tandem.errors import InputError

MAX_LABEL = 60  # characters of a categorical bin's label before its category list is cut short


def number(v: float) -> str:
    """A bin edge as text: whole numbers without a decimal point, others to 6 significant digits."""
    v = float(v)
    if math.isfinite(v) and v == round(v) and abs(v) < 1e15:
        return str(int(round(v)))
    return f"{v:.6g}"


def interval_labels(edges, unit: str = "") -> list[str]:
    """One label per interval of ascending inner ``edges``: ``< e0``, ``[e0, e1)``, .., ``>= e_last``."""
    e = [number(v) + unit for v in edges]
    if not e:
        return ["all values"]
    return [f"< {e[0]}"] + [f"[{lo}, {hi})" for lo, hi in zip(e, e[1:])] + [f">= {e[-1]}"]


def _categories(cats: list) -> str:
    text = ", ".join(str(c) for c in cats)
    if len(text) <= MAX_LABEL:
        return text
    shown: list[str] = []
    for c in cats:
        if len(", ".join(shown + [str(c)])) > MAX_LABEL - 12:
            break
        shown.append(str(c))
    return f"{', '.join(shown)}, … (+{len(cats) - len(shown)})"


def bin_labels(entry: dict, own: bool) -> list[str]:
    """One label per final bin of a model part's feature ``entry`` (``model.active_model``): intervals or
    categories, ``special <codes>`` and ``missing`` for a feature the label holder owns (``own``); ``bin k``
    for any other, whatever the entry holds."""
    try:
        n_bins = len(entry["counts"])
        if not own:
            return [f"bin {b}" for b in range(n_bins)]
        kind, _n_values, n_special = entry["prebins"]["layout"]
        specials = entry["prebins"]["specials"]
        edges = entry["edges"]
    except (KeyError, TypeError, ValueError):
        raise InputError(f"feature '{entry.get('name', '?')}' of the model has no bins to label") from None
    n_value_bins = n_bins - int(n_special) - 1
    values = interval_labels(edges) if kind == "numeric" else [_categories(list(c)) for c in edges]
    if len(values) != n_value_bins or len(specials) != int(n_special):
        raise InputError(f"feature '{entry['name']}' of the model: its edges do not fit its {n_bins} bins")
    special = [f"special {', '.join(number(c) if kind == 'numeric' else str(c) for c in g)}" for g in specials]
    return values + special + ["missing"]
