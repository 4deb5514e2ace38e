"""Benchmark: PSI N x N and SecureBoost on Give Me Some Credit over the network lab (tandem/netlab.py) under
the lan, wan and slow profiles, each beside a plain-loopback run of the same benchmark in the same run.

    sudo python bench/wan.py [--psi-n 1000000] [--trees 50] [--profiles lan,wan,slow]
                             [--goss-profiles lan,wan,slow] [--results bench/RESULTS.md]

Needs root and the lab's tools (`bash scripts/netlab.sh install`). Both parties are `tandem node` processes;
in a profile both run inside one network namespace of the lab, each behind a delay proxy, with each
direction shaped to the profile's bandwidth. Bytes per direction are the sums of `bytes` of the nodes'
audit logs (each node's `out` entries); the pure transfer time is the larger direction's bytes over the
profile's bandwidth (the least a link of that rate needs to carry them, latency aside).

Acceptance (issue 16): PSI at most its loopback time plus 1.5x the pure transfer time; over wan,
SecureBoost without GOSS at most 1.3x its loopback seconds per tree.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from psi import make_stores, run_tandem  # noqa: E402
from secureboost import BANK, LABEL, load_gmsc  # noqa: E402
from world import cpu_model, write_section  # noqa: E402

from tandem.audit import read_audit  # noqa: E402
from tandem.devcluster import NodeProcess, node_configs  # noqa: E402
from tandem.learn.options import TrainingOptions  # noqa: E402
from tandem.netlab import PROFILES, Lab  # noqa: E402

HEADER = "## Over the network (lab)"
LOOPBACK = "loopback"
PSI_RATIO_LIMIT = 1.5  # PSI <= loopback + 1.5 x pure transfer time
TREE_RATIO_LIMIT = 1.3  # wan seconds per tree <= 1.3 x loopback (no GOSS)
FULL_N, FULL_TREES = 1_000_000, 50
NO_GOSS, GOSS = "no GOSS", "GOSS 0.2 / 0.1"
TIMEOUT_S = 300  # the nodes' timeout_s: far above any wait the slow profile makes


# the messages of a training session that link its ids (PSI) and those that grow its trees; the rest are
# set-up (request, key, shared rows) and the prediction of the test rows
LINK_MESSAGES = {"KeyStart", "KeyDone", "Blinded", "Reblinded"}
TREE_MESSAGES = {"EncryptedGradients", "EncryptedHistograms", "SplitRequest", "SplitDecisions", "PassivePartitions"}


def audit_bytes(state_dirs: dict[str, Path]) -> dict[str, dict[str, int]]:
    """Bytes each node sent, per message name: node -> message -> bytes (its audit log's ``out`` entries)."""
    out: dict[str, dict[str, int]] = {}
    for node, folder in state_dirs.items():
        entries, _ = read_audit(folder / "audit.jsonl")
        sent: dict[str, int] = {}
        for e in entries:
            if e.get("direction") == "out":
                sent[e.get("message", "?")] = sent.get(e.get("message", "?"), 0) + int(e.get("bytes", 0))
        out[node] = sent
    return out


def rate_bytes_per_s(profile: str) -> float:
    return PROFILES[profile].mbit * 1e6 / 8


def in_lab(profile: str, fn, *args):
    """``fn(*args, lab=...)`` inside a fresh lab of ``profile`` (``loopback``: no lab); the lab is closed after."""
    if profile == LOOPBACK:
        return fn(*args, lab=None)
    with Lab(profile) as lab:
        return fn(*args, lab=lab)


# --- PSI -----------------------------------------------------------------------------------------------


def psi_run(base: Path, folder: Path, lab=None) -> dict:
    """One N x N link of copies of ``base``'s stores in ``folder``: wall time and bytes per direction."""
    folder.mkdir()
    for party in ("bank", "market"):
        shutil.copyfile(base / f"{party}.duckdb", folder / f"{party}.duckdb")
    r = run_tandem(folder, "auto", lab=lab)
    sent = audit_bytes({p: folder / "nodes" / f"state-{p}" for p in ("bank", "market")})
    return {
        "wall": r["wall"],
        "matched": r["matched"],
        "backend": r["backend"],
        "bytes": {p: sum(v.values()) for p, v in sent.items()},
    }


# --- SecureBoost ---------------------------------------------------------------------------------------


def train_run(files: dict[str, Path], options: TrainingOptions, workdir: Path, lab=None) -> dict:
    """The bank (label holder) trains with the market as node processes, as `tandem train` does, optionally
    in ``lab``; seconds per tree, and bytes per direction of the trees' messages (``bytes``), of the linking
    of the ids (``link_bytes``) and of the whole session (``all_bytes``)."""
    configs = node_configs(workdir / "nodes", {p: f"{p}.duckdb" for p in files}, {p: "bank" for p in files}, TIMEOUT_S)
    if lab is not None:
        lab.wire(configs)
    start = lab.node if lab is not None else NodeProcess
    data = {p: ["--data", str(f.resolve()), "--id", "id"] for p, f in files.items()}
    market = start("market", ["--config", str(configs["market"]), "--once", *data["market"]])
    if not market.ready.wait(120) or market.proc.poll() is not None:
        raise SystemExit(f"market node did not start: {market.error()}")
    started = time.perf_counter()
    bank = start(
        "bank",
        ["--config", str(configs["bank"]), "--train", "market", *options.cli_args(), *data["bank"], "--label", LABEL],
    )
    codes = bank.wait(24 * 3600), market.wait(TIMEOUT_S + 60)
    wall = time.perf_counter() - started
    if codes != (0, 0):
        raise SystemExit(f"training failed: bank: {bank.error()} / market: {market.error()}")
    result = bank.result()
    sent = audit_bytes({p: workdir / "nodes" / f"state-{p}" for p in files})

    def part(names: set[str]) -> dict[str, int]:
        return {p: sum(b for m, b in v.items() if m in names) for p, v in sent.items()}

    return {
        "seconds_per_tree": result["seconds_per_tree"],
        "train_seconds": result["train_seconds"],
        "wall": wall,
        "auc": result.get("metrics", {}).get("auc"),
        "bytes": part(TREE_MESSAGES),
        "link_bytes": part(LINK_MESSAGES),
        "all_bytes": {p: sum(v.values()) for p, v in sent.items()},
        "messages": sent,
    }


def gmsc_files(folder: Path) -> dict[str, Path]:
    data = load_gmsc()
    market_cols = [c for c in data.columns if c not in BANK + [LABEL, "id"]]
    data[["id"] + BANK + [LABEL]].to_csv(folder / "bank.csv", index=False)
    data[["id"] + market_cols].to_csv(folder / "market.csv", index=False)
    return {"bank": folder / "bank.csv", "market": folder / "market.csv"}


# --- the section ---------------------------------------------------------------------------------------


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f}"


def psi_rows(psi: dict[str, dict]) -> tuple[list[str], dict[str, bool]]:
    loop = psi[LOOPBACK]["wall"]
    rows, checks = [], {}
    for profile, r in psi.items():
        b = r["bytes"]
        if profile == LOOPBACK:
            rows.append(
                f"| loopback (no lab) | {r['wall']:.1f} | {_mb(b['bank'])} | {_mb(b['market'])} | | | 1.00 | | "
                f"{r['matched']:,} |"
            )
            continue
        pure = max(b.values()) / rate_bytes_per_s(profile)
        limit = loop + PSI_RATIO_LIMIT * pure
        checks[profile] = r["wall"] <= limit
        rows.append(
            f"| {profile} ({PROFILES[profile].mbit:g} Mbit, {PROFILES[profile].delay_s * 1e3:g} ms) | "
            f"{r['wall']:.1f} | {_mb(b['bank'])} | {_mb(b['market'])} | {pure:.1f} | {r['wall'] / pure:.2f} | "
            f"{r['wall'] / loop:.2f} | {limit:.1f}: {'pass' if checks[profile] else 'FAIL'} | {r['matched']:,} |"
        )
    return rows, checks


def train_rows(runs: dict[tuple[str, str], dict], trees: int) -> tuple[list[str], dict[str, bool]]:
    rows, checks = [], {}
    for (profile, variant), r in runs.items():
        loop = runs.get((LOOPBACK, variant))
        b = r["bytes"]
        ratio_loop = r["seconds_per_tree"] / loop["seconds_per_tree"] if loop else float("nan")
        if profile == LOOPBACK:
            pure_cell, ratio_pure = "", ""
        else:
            pure = max(b.values()) / trees / rate_bytes_per_s(profile)
            pure_cell, ratio_pure = f"{pure:.2f}", f"{r['seconds_per_tree'] / pure:.2f}"
        check = ""
        if profile == "wan" and variant == NO_GOSS:
            checks["wan"] = ratio_loop <= TREE_RATIO_LIMIT
            check = f"<= {TREE_RATIO_LIMIT}x: {'pass' if checks['wan'] else 'FAIL'}"
        name = "loopback (no lab)" if profile == LOOPBACK else profile
        rows.append(
            f"| {name} | {variant} | {r['seconds_per_tree']:.2f} | {_mb(b['bank'] / trees)} | "
            f"{_mb(b['market'] / trees)} | {pure_cell} | {ratio_pure} | {ratio_loop:.2f} | {check} | "
            f"{r['train_seconds']:.1f} |"
        )
    return rows, checks


def full_run_estimate(psi: dict, runs: dict, n: int, trees: int, profiles: list[str]) -> str:
    """What the issue's full settings (PSI 1M x 1M, 50 trees, GOSS on every profile) would take on this machine:
    PSI scaled linearly in N; each training run as its fixed part (wall - training loop) + 50 x its seconds per
    tree; a GOSS run not measured here as its profile's no-GOSS run x loopback's GOSS / no-GOSS ratio."""
    psi_s = sum(r["wall"] for r in psi.values()) * FULL_N / n if psi else 0.0

    def full(r: dict) -> float:
        return r["wall"] - r["train_seconds"] + FULL_TREES * r["seconds_per_tree"]

    train_s, guessed = 0.0, []
    ratio = (full(runs[LOOPBACK, GOSS]) / full(runs[LOOPBACK, NO_GOSS])) if (LOOPBACK, GOSS) in runs else 0.5
    for profile in [LOOPBACK, *profiles]:
        for variant in (NO_GOSS, GOSS):
            if (profile, variant) in runs:
                train_s += full(runs[profile, variant])
            elif (profile, NO_GOSS) in runs:
                train_s += full(runs[profile, NO_GOSS]) * ratio
                guessed.append(profile)
    return (
        f"The issue's full settings (`--psi-n {FULL_N:,} --trees {FULL_TREES}`, GOSS on every profile) would take "
        f"about {psi_s / 60:.0f} min of PSI and {train_s / 60:.0f} min of training on this machine (PSI scaled "
        "linearly in N, each training run as its start-up and linking plus 50 x its seconds per tree"
        + (
            f"; GOSS over {', '.join(guessed)} not measured, estimated from loopback's GOSS / no-GOSS ratio"
            if guessed
            else ""
        )
        + ")."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--psi-n", type=int, default=1_000_000, help="persons per side of the PSI (0: skip PSI)")
    parser.add_argument("--trees", type=int, default=50, help="trees per SecureBoost run (0: skip SecureBoost)")
    parser.add_argument("--profiles", default="lan,wan,slow", help="lab profiles, comma-separated")
    parser.add_argument("--goss-profiles", default=None, help="profiles that also train with GOSS (default: all)")
    parser.add_argument(
        "--secretflow",
        type=Path,
        default=Path(__file__).with_name("secretflow_published.md"),
        help="the SecretFlow figures quoted beside the tables",
    )
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = parser.parse_args()
    profiles = [p for p in args.profiles.split(",") if p]
    goss_profiles = profiles if args.goss_profiles is None else [p for p in args.goss_profiles.split(",") if p]
    for p in profiles + goss_profiles:
        if p not in PROFILES:
            raise SystemExit(f"unknown profile '{p}'; use {', '.join(PROFILES)}")
    began = datetime.now(UTC)
    psi: dict[str, dict] = {}
    runs: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.psi_n:
            base = tmp / "psi-base"
            base.mkdir()
            make_stores(base, args.psi_n)
            for profile in [LOOPBACK, *profiles]:
                psi[profile] = in_lab(profile, psi_run, base, tmp / f"psi-{profile}")
                print(json.dumps({"psi": profile, **psi[profile]}), flush=True)
        if args.trees:
            files = gmsc_files(tmp)
            plain = TrainingOptions(
                trees=args.trees, max_depth=5, learning_rate=0.1, bins=32, test_fraction=0.2, seed=42
            )
            goss = replace(plain, goss=True)
            plan = [(LOOPBACK, NO_GOSS)] + ([(LOOPBACK, GOSS)] if goss_profiles else [])
            plan += [(p, NO_GOSS) for p in profiles] + [(p, GOSS) for p in profiles if p in goss_profiles]
            for i, (profile, variant) in enumerate(plan):
                options = plain if variant == NO_GOSS else goss
                runs[profile, variant] = in_lab(profile, train_run, files, options, tmp / f"train-{i}")
                print(
                    json.dumps(
                        {
                            "train": profile,
                            "variant": variant,
                            **{k: v for k, v in runs[profile, variant].items() if k != "messages"},
                        }
                    ),
                    flush=True,
                )
    expected = args.psi_n // 2
    wrong = [p for p, r in psi.items() if r["matched"] != expected]
    if wrong:
        raise SystemExit(f"wrong intersection size over {', '.join(wrong)} (expected {expected})")
    write_section(args.results, HEADER, section(args, began, profiles, goss_profiles, psi, runs))


def section(args, began, profiles, goss_profiles, psi, runs) -> str:
    command = f"sudo python bench/wan.py --psi-n {args.psi_n} --trees {args.trees} --profiles {','.join(profiles)}" + (
        f" --goss-profiles {','.join(goss_profiles)}" if args.goss_profiles is not None else ""
    )
    lines = [
        HEADER,
        "",
        f"{began:%Y-%m-%d %H:%M} UTC · `nproc` = {os.cpu_count()} · {cpu_model()} · command: `{command}`",
        "",
        "Both parties are `tandem node` processes. A profile's run has both inside one network namespace of "
        "the lab (tandem/netlab.py): each node behind a delay proxy adding the profile's one-way delay, each "
        "direction shaped by a `tbf` to the profile's rate (lan 1 Gbit / 0.25 ms, wan 100 Mbit / 10 ms, slow "
        "10 Mbit / 50 ms one way; the proxy adds ~1 ms each way of its own). Loopback: the same nodes on plain "
        "127.0.0.1 without the lab, in the same run, as the reference. Bytes per direction: the sums of `bytes` "
        "in each node's audit log (what the node sent). Pure transfer time: the larger direction's bytes over "
        "the profile's bandwidth. Both nodes share this machine's 2 cores, as on loopback.",
    ]
    checks: dict[str, bool] = {}
    if psi:
        rows, checks_psi = psi_rows(psi)
        checks.update({f"PSI {p}": ok for p, ok in checks_psi.items()})
        lines += [
            "",
            f"PSI {args.psi_n:,} x {args.psi_n:,} phone numbers, 50% overlap, backend auto "
            f"({psi[LOOPBACK]['backend']}); wall time from the bank node's start to its exit.",
            "",
            "| link | seconds | MB bank -> market | MB market -> bank | pure transfer (s) | ratio to pure "
            "transfer | ratio to loopback | check: <= loopback + 1.5 x pure (s) | matched |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
            *rows,
        ]
    if runs:
        rows, checks_tree = train_rows(runs, args.trees)
        checks.update({f"SecureBoost {p} (no GOSS, per tree)": ok for p, ok in checks_tree.items()})
        lines += [
            "",
            f"SecureBoost on Give Me Some Credit (bank: {len(BANK)} features + label; market: the other 5), "
            f"{args.trees} trees, depth 5, 32 bins, learning rate 0.1, OU 2048; seconds per tree as the bank "
            "node reports it (its training loop only: the linking of the 150k ids, the set-up and the "
            "prediction of the test rows are not in it). Bytes per tree: the trees' own messages (encrypted "
            "gradients, encrypted histograms, split requests and decisions, passive partitions) over the "
            "number of trees; the session's linking and set-up bytes are given below the table.",
            "",
            "| link | run | seconds per tree | MB per tree bank -> market | MB per tree market -> bank | "
            "pure transfer per tree (s) | ratio to pure transfer | ratio to loopback (same run) | check | "
            "training seconds |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
            *rows,
        ]
        r = runs[LOOPBACK, NO_GOSS]
        rest = {p: r["all_bytes"][p] - r["bytes"][p] - r["link_bytes"][p] for p in r["bytes"]}
        lines += [
            "",
            f"Outside the trees (loopback, no GOSS): the linking of the ids moved {_mb(r['link_bytes']['bank'])} "
            f"MB bank -> market and {_mb(r['link_bytes']['market'])} MB market -> bank; set-up and the test "
            f"rows' prediction {_mb(rest['bank'])} / {_mb(rest['market'])} MB. Command wall time per run "
            "(start of the bank node to its exit, s): "
            + ", ".join(f"{p} {v}: {x['wall']:.0f}" for (p, v), x in runs.items())
            + ".",
        ]
    lines += [
        "",
        "Acceptance checks (issue 16): "
        + ("; ".join(f"{k}: {'pass' if ok else 'FAIL'}" for k, ok in checks.items()) or "none run")
        + ".",
    ]
    if psi and runs:
        lines += ["", full_run_estimate(psi, runs, args.psi_n, args.trees, profiles)]
    if args.secretflow.is_file():
        lines += ["", args.secretflow.read_text().strip()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
