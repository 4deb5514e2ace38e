"""Benchmark: the bank's decision service on two replicas sharing one PostgreSQL ledger, at a fixed rate,
with one replica killed (SIGKILL) and restarted mid-run; then the ledger is checked: no answered decision
lost, none booked twice.

    python bench/decide_replicas.py [--persons 20000] [--rate 500] [--seconds 20] [--path bank|federated]

``--path bank``: load generator -> the two bank replicas directly (API key; the bank-only LightGBM of
bench/baseline.py, the same policy and ledger). ``--path federated``: load generator -> two marketplace
gateways, each in front of one bank replica (mutual TLS). Requests alternate between the replicas; every
20th is also sent to the other replica at the same moment (the same request id twice). A request the
killed replica does not answer (connection cut, 502/503) is sent again to the other one, as a load
balancer would; its latency runs from its scheduled time to its answer. PostgreSQL runs with fsync on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import ssl
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from decide import _one, checkout_bodies, decide_world  # noqa: E402
from world import cpu_model, write_section  # noqa: E402

HEADING = "## Decide on two replicas (one PostgreSQL ledger)"
ROOT = Path(__file__).resolve().parent.parent


async def _load(urls: list[str], key: str, bodies: list[bytes], path: str, rate: float, per_url: int) -> dict:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    pools: list[asyncio.Queue] = []
    for _url in urls:
        pool: asyncio.Queue = asyncio.Queue()
        for _ in range(per_url):
            pool.put_nowait(None)  # opened on first use, and again after a failure
        pools.append(pool)

    async def attempt(which: int, body: bytes) -> int:
        host, port = urls[which].removeprefix("https://").split(":")
        conn = await pools[which].get()
        try:
            if conn is None:
                conn = await asyncio.wait_for(asyncio.open_connection(host, int(port), ssl=context), 5)
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            status = await asyncio.wait_for(_one(conn[0], conn[1], head, body), 10)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            if conn is not None:
                conn[1].close()
            conn, status = None, 0
        pools[which].put_nowait(conn)
        return status

    latencies, answered, lost, retries, twins = [], [], [], [0], {}
    start = time.perf_counter() + 0.2

    async def fire(i: int, body: bytes, rid: str) -> None:
        scheduled, which = start + i / rate, i % len(urls)
        while True:
            status = await attempt(which, body)
            if status == 200:
                latencies.append(time.perf_counter() - scheduled)
                answered.append(rid)
                return
            if time.perf_counter() - scheduled > 30:
                lost.append(rid)
                return
            retries[0] += 1
            which = (which + 1) % len(urls)
            await asyncio.sleep(0.01)

    async def twin(i: int, body: bytes) -> None:
        status = await attempt((i + 1) % len(urls), body)
        twins[status] = twins.get(status, 0) + 1

    tasks = []
    for i, body in enumerate(bodies):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(i, body, json.loads(body)["request_id"])))
        if i % 20 == 0:
            tasks.append(asyncio.create_task(twin(i, body)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {
        "requests": len(bodies),
        "seconds": round(elapsed, 2),
        "throughput": round(len(answered) / elapsed, 1),
        **{f"p{q}_ms": round(float(np.percentile(lat, q)), 2) for q in (50, 95, 99)},
        "retries": retries[0],
        "lost": lost,
        "answered": answered,
        "twin_statuses": twins,
    }


def _generator(conn, *args) -> None:
    conn.send(asyncio.run(_load(*args)))


def postgres() -> tuple[str, str]:
    """A throw-away PostgreSQL (scripts/postgres.sh) with fsync on: ``(url, data folder)``."""
    import sqlalchemy as sa

    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "postgres.sh"), "start"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        env={**os.environ, "TANDEM_PG_FSYNC": "on"},
    )
    url, datadir = out.stdout.strip().splitlines()[-1].split()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        if conn.execute(sa.text("SHOW fsync")).scalar() != "on":
            raise SystemExit("PostgreSQL did not start with fsync on")
    engine.dispose()
    return url, datadir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--path", choices=["bank", "federated"], default="bank")
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = parser.parse_args()
    import duckdb
    import sqlalchemy as sa
    from baseline import bank_only_setup

    from tandem.decide.local import Service, copy_store, replica_configs

    url, datadir = postgres()
    services: list = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            world, models, paths, key = decide_world(Path(tmp), args.persons)
            copy_store(world / "bank.duckdb", url)
            n = int(args.rate * args.seconds)
            if args.path == "bank":
                config, make = bank_only_setup(world, paths["bank"], models["customers"]["model_path"])
                banks = replica_configs(config, 2, store=url)
                route, bodies, warm = "/v1/checkout/installments", make(n, "run"), make(300, "warm")
                fronts = banks
            else:
                con = duckdb.connect(str(world / "market.duckdb"), read_only=True)
                users = [r[0] for r in con.execute("SELECT local_id FROM link_customers").fetchall()]
                con.close()
                banks = replica_configs(paths["bank"], 2, store=url)
                listens = [tomllib.loads(p.read_text())["decide"]["listen"] for p in banks]
                fronts = replica_configs(paths["market"], 2, peers=listens)
                route, bodies = "/v1/checkout", checkout_bodies(users, n, "run")
                warm = checkout_bodies(users, 300, "warm")
            services = [Service(p) for p in banks] + ([Service(p) for p in fronts] if fronts is not banks else [])
            for s in services:
                s.wait_ready()
            urls = ["https://" + tomllib.loads(p.read_text())["decide"]["api_listen"] for p in fronts]
            ctx = multiprocessing.get_context("spawn")
            here, there = ctx.Pipe()
            warmup = ctx.Process(target=_generator, args=(there, urls, key, warm, route, 100.0, 16))
            warmup.start()
            here.recv()
            warmup.join()
            here, there = ctx.Pipe()
            proc = ctx.Process(target=_generator, args=(there, urls, key, bodies, route, args.rate, 32))
            proc.start()
            time.sleep(args.seconds / 3)
            services[0].proc.kill()
            services[0].proc.wait(10)
            killed = time.perf_counter()
            services[0] = Service(banks[0]).wait_ready()
            restart_s = time.perf_counter() - killed
            result = here.recv()
            proc.join()
            engine = sa.create_engine(url)
            with engine.connect() as conn:
                rows, distinct = conn.execute(
                    sa.text("SELECT count(*), count(DISTINCT request_id) FROM decisions WHERE request_id LIKE '%run-%'")
                ).one()
                ids = {
                    r[0]
                    for r in conn.execute(sa.text("SELECT request_id FROM decisions WHERE request_id LIKE '%run-%'"))
                }
            engine.dispose()
    finally:
        for s in services:
            s.stop()
        subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), "stop", datadir], capture_output=True)
    missing = [rid for rid in result["answered"] if rid not in ids]
    summary = {k: v for k, v in result.items() if k not in ("answered", "lost")}
    summary |= {
        "answered": len(result["answered"]),
        "unanswered": len(result["lost"]),
        "lost": len(missing),
        "double_booked": rows - distinct,
        "rows": rows,
        "restart_s": round(restart_s, 2),
    }
    print(json.dumps(summary, indent=1))
    what = (
        "load generator -> the two bank replicas directly (bank-only LightGBM)"
        if args.path == "bank"
        else "load generator -> two marketplace gateways -> one bank replica each (federated model)"
    )
    section = "\n".join(
        [
            HEADING,
            "",
            f"{date.today()} · `nproc` = {os.cpu_count()} · {cpu_model()} · command: `python bench/decide_replicas.py "
            f"--persons {args.persons} --rate {args.rate:g} --seconds {args.seconds:g} --path {args.path}`",
            "",
            f"Two bank decision-service replicas on one PostgreSQL ledger (fsync on; `INSERT ... ON CONFLICT "
            f"(request_id) DO NOTHING`, the row read back and committed before the answer): {what}. Requests "
            "alternate between the replicas, every 20th also goes to the other replica at the same moment; "
            f"{args.seconds / 3:.1f} s in, replica 0 is killed (SIGKILL) and restarted ({summary['restart_s']} s to "
            "ready); a request it does not answer is sent again to the other replica, and its latency runs from its "
            "scheduled time to its answer. Every process (load generator, replicas, PostgreSQL) shares the "
            "machine's cores.",
            "",
            "| requests | answered | unanswered in 30 s | req/s | p50 ms | p95 ms | p99 ms | retries "
            "| answered, not booked | double-booked | rows |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {summary['requests']:,} | {summary['answered']:,} | {summary['unanswered']} | "
            f"{summary['throughput']:,.0f} | {summary['p50_ms']} | "
            f"{summary['p95_ms']} | {summary['p99_ms']} | {summary['retries']} | {summary['lost']} | "
            f"{summary['double_booked']} | {rows:,} |",
            "",
            f"Twin requests (the same request id at the other replica at once): statuses {summary['twin_statuses']}.",
            "",
        ]
    )
    write_section(args.results, HEADING, section)


if __name__ == "__main__":
    main()
