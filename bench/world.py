"""Benchmark: synthetic world generation (target: 100k persons <= 60 s on 2 cores; 1M in bounded memory).

    python bench/world.py [--sizes 100000 1000000] [--results bench/RESULTS.md]

Each size runs `tandem world` in a fresh process (ceiling included) and records wall time
and the process's peak resident memory. The section "World generation" of RESULTS.md is
replaced with the new figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

TARGET_SECONDS_100K = 60.0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run(persons: int, out: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one `tandem world` run in a child process."""
    cmd = [sys.executable, "-c",
           "import resource, sys; from tandem.cli import main; sys.argv = ['tandem'] + sys.argv[1:];\n"
           "try:\n    main()\nfinally:\n"
           "    print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)",
           "world", "--persons", str(persons), "--seed", "1", "--out", str(out), "--json"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"tandem world --persons {persons} failed:\n{proc.stderr[-2000:]}")
    peak = [int(l.split()[1]) for l in proc.stderr.splitlines() if l.startswith("PEAK_RSS_KB")][0]
    return seconds, peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            seconds, peak = run(n, Path(tmp) / f"w{n}")
            size = sum(f.stat().st_size for f in (Path(tmp) / f"w{n}").iterdir()) / 2**20
            ratio = f"{seconds / TARGET_SECONDS_100K * 100_000 / n:.2f}"
            rows.append(f"| {n:,} | {seconds:.1f} | {peak:,.0f} | {size:,.0f} | {ratio} |")
            print(rows[-1], flush=True)
    section = "\n".join([
        "## World generation",
        "",
        f"{date.today()} · `nproc` = {os.cpu_count()} · {cpu_model()} · command: `python bench/world.py "
        f"--sizes {' '.join(map(str, args.sizes))}`",
        "",
        "Whole `tandem world` run in a fresh process: generation, both DuckDB stores, truth, features and the "
        "LightGBM ceiling. Target: 100k persons in <= 60 s on 2 cores; the ratio is time / (60 s x persons / 100k). "
        "Peer: none — neither FATE nor SecretFlow ships a two-party world generator, so there is nothing to run "
        "side by side; the floor is the issue's target.",
        "",
        "| persons | seconds | peak RSS (MiB) | files (MiB) | ratio to target |",
        "| ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
    ])
    write_section(args.results, "## World generation", section)


def write_section(path: Path, heading: str, section: str) -> None:
    """Replace the section starting at ``heading`` (up to the next ``## ``) in ``path``, or append it."""
    text = path.read_text() if path.exists() else "# Benchmark results\n\nLatest figures; each section names its command.\n\n"
    if heading in text:
        start = text.index(heading)
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section.rstrip("\n") + "\n" + (text[end:] if end != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


if __name__ == "__main__":
    main()
