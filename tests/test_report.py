"""The HTML model report in a real browser (headless Chromium): it loads without errors, every chart
decodes and is laid out, and the tables a risk analyst reads are there."""

import numpy as np

from tandem.report.model_report import write_model_report


def test_the_model_report_renders_in_a_real_browser(tmp_path, chromium):
    from playwright.sync_api import sync_playwright

    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.1).astype(int)
    score = np.clip(0.1 + 0.3 * y + rng.normal(0, 0.15, 2000), 0.001, 0.999)
    path = write_model_report(tmp_path / "report.html", title="Federated model m1 (bank + market)",
                              metrics={"AUC": 0.81, "KS": 0.47, "rows (test)": 2000},
                              y=y, score=score, importance=[("bank", "income", 12.5), ("market", "(not shared)", 4.0)])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri())
            assert page.title() == "Federated model m1 (bank + market)"
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth, e.getBoundingClientRect().width])")
            body = page.inner_text("body")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert len(images) == 6
    for alt, complete, natural_width, shown_width in images:
        assert complete and natural_width > 200 and shown_width > 100, alt      # decoded and laid out
    for text in ("AUC", "0.81", "Lift", "income", "(not shared)"):
        assert text in body
    assert not errors
    assert (tmp_path / "report.png").stat().st_size > 20_000
