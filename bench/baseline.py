"""The single-party baseline of the decision benchmark: the bank's own decision service scoring a
LightGBM on bank-only features (no marketplace, no bits), with the same policy and ledger.

The service loads this file as a scorer plugin (``[decide] scorers``): importing it registers the format."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import numpy as np
import pandas as pd

from tandem.decide.scorers import register

FORMAT = "tandem-lightgbm/1"


class LightGbmScorer:
    """The ``ActiveScorer`` interface over a LightGBM booster (no passive splits)."""

    n_bits, parties = 0, []

    def __init__(self, model: dict):
        import lightgbm as lgb

        self.version, self.names = model["model_id"], list(model["features"])
        self.booster = lgb.Booster(model_str=model["booster"])

    def score(self, x: np.ndarray, bits: np.ndarray) -> tuple[float, dict[str, float]]:
        contrib = self.booster.predict(np.asarray(x, dtype=np.float64).reshape(1, -1), pred_contrib=True)[0]
        raw = float(contrib.sum())
        return float(1 / (1 + np.exp(-raw))), dict(zip(self.names, contrib[:-1].tolist(), strict=True))


def train_bank_only(bank_file: Path, out: Path, trees: int = 40) -> dict:
    """A LightGBM on the bank's exported features (label ``default``); saved as this JSON format."""
    import lightgbm as lgb

    frame = pd.read_parquet(bank_file)
    names = [c for c in frame.columns if c not in ("link_id", "default")]
    booster = lgb.train({"objective": "binary", "num_leaves": 15, "learning_rate": 0.15, "verbose": -1,
                         "num_threads": 1}, lgb.Dataset(frame[names].to_numpy(float), frame["default"].to_numpy()),
                        num_boost_round=trees)
    model = {"format": FORMAT, "model_id": secrets.token_hex(8), "role": "active", "features": names,
             "booster": booster.model_to_string()}
    out.write_text(json.dumps(model))
    return model


def bank_only_setup(world: Path, bank_config: Path, federated_model: str | Path):
    """A bank-only config beside ``bank_config`` (same store, new ports, LightGBM model) and a maker
    of request bodies for it: ``bodies(n, tag) -> [bytes]``."""
    import duckdb

    from tandem.transport.ports import free_port

    model = train_bank_only(world / "train" / "bank.parquet", world / "nodes" / "bank-only-model.json")
    text = bank_config.read_text()
    section = text[text.index("[decide]"):]
    lines = [ln for ln in section.splitlines() if not ln.startswith(("listen", "api_listen", "customers_model",
                                                                       "sellers_model", "peer"))]
    lines += [f'scorers = ["{Path(__file__).resolve()}"]']
    lines += [f'listen = "127.0.0.1:{free_port()}"', f'api_listen = "127.0.0.1:{free_port()}"',
              f'customers_model = "{(world / "nodes" / "bank-only-model.json").resolve()}"']
    path = bank_config.with_name("decide-bank-only.toml")
    path.write_text(text[:text.index("[decide]")] + "\n".join(lines) + "\n")
    con = duckdb.connect(str(world / "bank.duckdb"), read_only=True)
    links = [r[0] for r in con.execute("SELECT link_id FROM link_customers").fetchall()]
    con.close()

    def bodies(n: int, tag: str) -> list[bytes]:
        rng = np.random.default_rng(0)
        return [json.dumps({"request_id": f"base-{tag}-{i:07d}", "link_id": links[i % len(links)],
                            "model_version": model["model_id"], "marketplace_bits": "",
                            "order": {"amount": float(round(rng.uniform(1000, 60000), 2)), "currency": "RUB"}}).encode()
                for i in range(n)]
    return path, bodies


register(FORMAT, LightGbmScorer)
