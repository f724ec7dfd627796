"""CPU per certificate of the ``POST /generate-cert`` fast path, in one process, no HTTP.

What the server does per EC certificate (token check, ownership, key, signing, the ledger
row through group commit, the reply) without sockets, uvicorn or a second worker, which
add most of the variance when the machine is shared. It drives the app's direct endpoint
handler from ``concurrency`` tasks on one event loop, as a worker's loop does, and prints
the process's CPU time (the loop and the committer thread) per certificate.

Run it with each build's interpreter to compare them; it uses only what both know:

    /tmp/base/.venv/bin/python benchmarks/hotpath.py
    .venv/bin/python benchmarks/hotpath.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from datetime import UTC, datetime

from starlette.datastructures import Headers


async def _drive(handler: object, headers: Headers, body: bytes, count: int, tasks: int) -> int:
    done = 0

    async def one_client() -> None:
        nonlocal done
        while done < count:
            done += 1
            reply = await handler(headers, body)  # type: ignore[operator]
            if reply.status != 201:
                raise SystemExit(f"status {reply.status}: {reply.body}")

    await asyncio.gather(*(one_client() for _ in range(tasks)))
    return done


def main() -> int:
    """Issue ``--count`` certificates after a warm-up; print CPU µs per certificate."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nodecert-hotpath-") as home:
        os.environ.update(
            NODECERT_HOME=home,
            NODECERT_LOG_LEVEL="WARNING",
            NODECERT_MAX_ACTIVE_PER_NODE="0",
            NODECERT_QUOTA_PER_MINUTE="100000000",
            NODECERT_QUOTA_BURST="100000000",
        )
        from nodecert.bootstrap import build_service, settings_from_environment
        from nodecert.http.app import create_app

        service = build_service(settings_from_environment())
        service.authority.nodes.put_node("n1", "alice", at=datetime.now(UTC))
        assert service.dev_issuer is not None
        token = service.dev_issuer.mint("alice")
        app = create_app(service)
        handler = app.direct[("POST", "/generate-cert")].handler  # type: ignore[attr-defined]
        headers = Headers({"authorization": f"Bearer {token}"})
        body = json.dumps({"nodeId": "n1", "keyType": "ec-p256"}).encode()
        asyncio.run(_drive(handler, headers, body, 200, args.concurrency))
        figures = []
        for _ in range(args.repeat):
            cpu, wall = time.process_time(), time.perf_counter()
            n = asyncio.run(_drive(handler, headers, body, args.count, args.concurrency))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            figures.append(cpu / n * 1e6)
            print(f"{cpu / n * 1e6:6.0f} µs CPU/cert  {n / wall:6.0f} cert/s", flush=True)
        figures.sort()
        print(f"median {figures[len(figures) // 2]:.0f} µs CPU/cert (min {figures[0]:.0f})")
        service.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
