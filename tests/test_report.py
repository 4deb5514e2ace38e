"""The HTML model report in a real browser (headless Chromium): it loads without errors, every chart
decodes and is laid out, and the tables a risk analyst reads are there."""

import numpy as np
from helpers import render

from tandem.report.model_report import write_model_report


def test_the_model_report_renders_in_a_real_browser(tmp_path, chromium):
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.1).astype(int)
    score = np.clip(0.1 + 0.3 * y + rng.normal(0, 0.15, 2000), 0.001, 0.999)
    path = write_model_report(tmp_path / "report.html", title="Federated model m1 (bank + market)",
                              metrics={"AUC": 0.81, "KS": 0.47, "rows (test)": 2000},
                              y=y, score=score, importance=[("bank", "income", 12.5), ("market", "(not shared)", 4.0)])
    shown = render(chromium, path, screenshot=tmp_path / "report.png")
    assert shown["title"] == "Federated model m1 (bank + market)"
    images, body, errors = shown["images"], shown["body"], shown["errors"]
    assert len(images) == 6
    for alt, complete, natural_width, shown_width in images:
        assert complete and natural_width > 200 and shown_width > 100, alt      # decoded and laid out
    for text in ("AUC", "0.81", "Lift", "income", "(not shared)"):
        assert text in body
    assert not errors
    assert (tmp_path / "report.png").stat().st_size > 20_000
