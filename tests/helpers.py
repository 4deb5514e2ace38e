"""What several test files share: running the CLI as a user would, reading its one-line errors,
opening a page in a real browser, and a small labelled data set."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np


def run_cli(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    """Run ``tandem ARGS`` in a separate process, as a user would."""
    proc = subprocess.run([sys.executable, "-m", "tandem.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})
    if check and proc.returncode != 0:
        raise AssertionError(f"tandem {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def one_error_line(stderr: str, *fragments: str, stdout: str = "") -> str:
    """The single ``error: ...`` line of ``stderr`` (no traceback anywhere), containing every fragment."""
    err = stderr.strip()
    assert "Traceback" not in err and "Traceback" not in stdout, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), lines[0]
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """A command that failed (non-zero exit) with one error line containing every fragment."""
    assert proc.returncode != 0, proc.stdout
    return one_error_line(proc.stderr, *fragments, stdout=proc.stdout)


def labelled_data(n: int, f: int, seed: int, logit: Callable[[np.ndarray], np.ndarray], missing: float = 0.1,
                  missing_first: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``X`` shape ``(n, f)`` standard normal with a ``missing`` share of NaN, and ``y`` shape ``(n,)`` of 0/1
    drawn with probability ``sigmoid(logit(X))``; ``missing_first`` blanks values before the labels are
    drawn (``logit`` then sees NaN as 0)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f))
    if missing_first:
        X[rng.random((n, f)) < missing] = np.nan
        y = (rng.random(n) < 1 / (1 + np.exp(-logit(np.nan_to_num(X))))).astype(float)
    else:
        y = (rng.random(n) < 1 / (1 + np.exp(-logit(X)))).astype(float)
        X[rng.random((n, f)) < missing] = np.nan
    return X, y


def render(chromium: str, path: Path, screenshot: Path | None = None, script: str | None = None) -> dict:
    """Open an HTML file in a real headless Chromium: its ``title``, ``images`` (alt, decoded, natural
    width, shown width), ``body`` text, the console and page ``errors`` and, given a JavaScript expression
    ``script``, its value as ``script``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(Path(path).as_uri())
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth, e.getBoundingClientRect().width])")
            shown = {"title": page.title(), "images": images, "body": page.inner_text("body"), "errors": errors}
            if script is not None:
                shown["script"] = page.evaluate(script)
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return shown
