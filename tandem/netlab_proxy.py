"""The network lab's delay proxy (test tooling): a TCP forwarder that adds one-way latency and loss.

    python -m tandem.netlab_proxy --listen P --to Q --delay 0.010 [--loss 0.01] [--seed 7]

Listens on ``127.0.0.1:P``; each accepted connection is forwarded to ``127.0.0.1:Q``. Every chunk read
in either direction is delivered ``delay`` seconds after it arrived (arrival time + delay, kept in
order; a chunk is never delivered before the one read ahead of it). ``loss`` is a chance per packet: a chunk
of ``k`` packets (``SEGMENT_BYTES`` each, rounded up) is held a further ``LOSS_HOLD_S`` (``--loss-hold``)
with probability ``1 - (1 - loss) ** k``, as a TCP retransmission timeout would hold it, and the chunks
behind it wait for it, as TCP's in-order delivery makes them: this is how a lost packet shows above TCP
(the 64 KiB chunks of a bulk transfer hold ~45 packets each: a chance per chunk would be 45 times too
rare). The proxy prints ``listening`` on stdout once it accepts connections, then ``lost``
for each held chunk, and runs until killed. It runs inside a lab network namespace (``tandem.netlab``),
on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys

LOSS_HOLD_S = 0.2  # the extra hold of a "lost" chunk: Linux's minimum TCP retransmission timeout
SEGMENT_BYTES = 1448  # a TCP segment's payload on a 1500-byte MTU path
READ_BYTES = 64 * 1024


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    delay: float,
    loss: float,
    hold: float,
    rng: random.Random,
) -> None:
    """Copy ``reader`` to ``writer``, each chunk due at its arrival + ``delay`` (+ ``hold`` if "lost")."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:  # the sender closed its side: pass the close on, after the data before it
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    last_due = 0.0
    try:
        while True:
            data = await reader.read(READ_BYTES)
            due = loop.time() + delay
            packets = -(-len(data) // SEGMENT_BYTES)
            if data and loss > 0 and rng.random() < 1 - (1 - loss) ** packets:
                due += hold
                print("lost", flush=True)  # the lab counts these
            last_due = max(last_due, due)  # never ahead of an earlier (held) chunk
            queue.put_nowait((last_due, data))
            if not data:
                break
        await sender
    except (ConnectionError, OSError):
        writer.close()  # the other direction's reader then sees the end too
    finally:
        sender.cancel()


async def _serve(listen: int, target: int, delay: float, loss: float, hold: float, seed: int) -> None:
    rng = random.Random(seed)

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(
                _pump(client_r, server_w, delay, loss, hold, rng),
                _pump(server_r, client_w, delay, loss, hold, rng),
            )
        finally:
            for w in (client_w, server_w):
                w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tandem.netlab_proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, required=True, help="port to accept on (127.0.0.1)")
    parser.add_argument("--to", type=int, required=True, help="port to forward to (127.0.0.1)")
    parser.add_argument("--delay", type=float, default=0.0, help="one-way delay, seconds")
    parser.add_argument("--loss", type=float, default=0.0, help="chance a packet is lost (its chunk held), 0..1")
    parser.add_argument("--loss-hold", type=float, default=LOSS_HOLD_S, help="extra hold of a lost chunk, s")
    parser.add_argument("--seed", type=int, default=0, help="seed of the loss draws")
    args = parser.parse_args(argv)
    if args.delay < 0 or not 0 <= args.loss <= 1 or args.loss_hold < 0:
        parser.error("--delay and --loss-hold must be >= 0 and --loss in 0..1")
    try:
        asyncio.run(_serve(args.listen, args.to, args.delay, args.loss, args.loss_hold, args.seed))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
