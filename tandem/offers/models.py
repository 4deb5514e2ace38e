"""Which propensity model each party holds per product (a manifest per party), and a node's
``[offers]`` config section that points at it:

```toml
[offers]
models = "offers-bank.json"      # this party's part of each product's propensity model
catalog = "catalog.toml"         # optional: the offer catalog (default: tandem/offers/catalog.toml)
```
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tandem.atomic import write_atomically
from tandem.errors import InputError

FORMAT = "tandem-offers/1"


@dataclass(frozen=True)
class OffersConfig:
    models: Path
    catalog: Path | None
    content_daily: int = 100_000  # the marketplace's: distinct (product, link id) content reveals per UTC day


def load_offers_config(path: str | os.PathLike) -> OffersConfig | None:
    """The ``[offers]`` section of a node config (paths against the config's folder), or ``None``."""
    path = Path(path)
    raw = tomllib.loads(path.read_text()).get("offers")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: [offers] must be a table")
    unknown = [k for k in raw if k not in ("models", "catalog", "content_daily")]
    if unknown:
        raise InputError(f"{path}: unknown key '{unknown[0]}' in [offers] (known: models, catalog, content_daily)")
    daily = raw.get("content_daily", OffersConfig.content_daily)
    if isinstance(daily, bool) or not isinstance(daily, int) or daily < 0:
        raise InputError(f"{path}: [offers] content_daily must be an integer >= 0 (0: no quota)")

    def resolve(key: str) -> Path | None:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise InputError(f"{path}: [offers] {key} must be a path")
        return Path(value) if os.path.isabs(value) else (path.parent / value).resolve()

    models = resolve("models")
    if models is None:
        raise InputError(f'{path}: [offers] models = "FILE" is missing (written by `tandem propensity`)')
    return OffersConfig(models, resolve("catalog"), daily)


def write_manifest(path: Path, party: str, models: dict[str, str | Path], **extra) -> Path:
    """``models``: product -> this party's model file; ``extra``: more of the party's own facts (the
    label holder keeps the training settings and metrics here)."""
    body = {"format": FORMAT, "party": party, "models": {k: str(Path(v).resolve()) for k, v in models.items()}, **extra}
    return write_atomically(path, json.dumps(body, indent=1, default=str).encode())


def read_manifest(path: Path) -> dict:
    try:
        body = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable propensity manifest ({exc})") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT or not isinstance(body.get("models"), dict):
        raise InputError(f"{path}: not a {FORMAT} manifest")
    return body


def load_manifest(path: Path, products: list[str]) -> dict[str, Path]:
    """product -> model file, for every product in ``products`` (a missing one is an error)."""
    body = read_manifest(path)
    missing = [p for p in products if p not in body["models"]]
    if missing:
        raise InputError(
            f"{path}: no propensity model for product '{missing[0]}' of the catalog (train it with `tandem propensity`)"
        )
    return {p: Path(body["models"][p]) for p in products}
