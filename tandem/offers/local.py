"""Offers on one machine (the demo and the tests): the ``[offers]`` section of each node's decision
service config, pointing at the propensity manifests ``tandem propensity`` wrote."""

from __future__ import annotations

from pathlib import Path


def add_offers_sections(configs: dict[str, Path], manifests: dict[str, Path], catalog: Path | None = None) -> None:
    """Append (or replace) ``[offers]`` in each party's decide config (``configs``: party -> path)."""
    for party, path in configs.items():
        text = path.read_text()
        if "\n[offers]\n" in text:
            text = text[: text.index("\n[offers]\n")] + "\n"
        lines = ["", "[offers]", f'models = "{Path(manifests[party]).resolve()}"']
        if catalog is not None:
            lines.append(f'catalog = "{Path(catalog).resolve()}"')
        path.write_text(text.rstrip() + "\n" + "\n".join(lines) + "\n")
