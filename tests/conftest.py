import os
import subprocess
import sys
from pathlib import Path

import pytest

from tandem.world.generate import generate_world

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    """Run ``tandem ARGS`` in a separate process, as a user would."""
    proc = subprocess.run([sys.executable, "-m", "tandem.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})
    if check and proc.returncode != 0:
        raise AssertionError(f"tandem {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def small_world(tmp_path_factory) -> Path:
    """A 6,000-person world (no ceiling): the shared input of fast tests. Treat as read-only."""
    out = tmp_path_factory.mktemp("small") / "world"
    generate_world(6000, 11, out, evaluate=False)
    return out


def _script(name: str, command: str, failure: str) -> subprocess.CompletedProcess:
    """Run one of the project's service scripts; if it fails, skip (with the reason) outside CI, fail in CI."""
    proc = subprocess.run(["bash", str(ROOT / "scripts" / name), command], capture_output=True, text=True)
    if proc.returncode != 0:
        reason = f"{failure}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else '?'}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        print(reason)
        pytest.skip(reason)
    return proc


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server started by the project's script; skipped (with the reason) only outside CI."""
    proc = _script("postgres.sh", "start", "cannot start PostgreSQL")
    url, datadir = proc.stdout.strip().splitlines()[-1].split()
    yield url
    subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), "stop", datadir], capture_output=True)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a real Chromium, installed by the project's script if missing; skipped (with the
    reason) only outside CI."""
    proc = _script("browser.sh", "install", "no browser")
    return proc.stdout.strip().splitlines()[-1]


def render(chromium: str, path: Path, screenshot: Path | None = None) -> dict:
    """Open an HTML file in a real headless Chromium: its ``title``, ``images`` (alt, decoded, natural
    width, shown width), ``body`` text and the console and page ``errors``."""
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
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return shown
