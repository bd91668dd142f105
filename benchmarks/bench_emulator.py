"""Emulator throughput: driven by the real qianfan SDK, and by raw clients for its ceiling.

The SDK opens a new `requests.Session` — a new TCP connection — per
`call_action`, and costs a few milliseconds of client CPU per call; on a small
machine the SDK, not the emulator, is the limit. The raw clients replay
requests signed exactly like the SDK's to show what the server itself
sustains: one new connection per request (the SDK's traffic shape) and
keep-alive.

By default client and emulator share this process (and its GIL), as in the
test suite; ``--server-process`` runs the emulator in a child process
(``evalctl.emulator.run_foreground``) so the figures belong to the server.

    python benchmarks/bench_emulator.py [--n N] [--quick] [--server-process]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, Final

N: Final = 2000
QUICK_N: Final = 50
THREADS: Final = (1, 4)
DETAIL: Final = "/wenxinworkshop/modelrepo/eval/detail"
TASK_ID: Final = "ame-demoauto01"  # seeded by `seed_demo` in either mode


@dataclass(frozen=True)
class Endpoint:
    """Where the emulator listens, and the (fake) keys it accepts."""

    host: str
    port: int
    ak: str
    sk: str

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


class _NoRedisWarning(logging.Filter):
    """Drops the SDK's import-time warning that redis is not installed."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "redis" not in str(record.msg).lower()


@contextmanager
def in_process() -> Iterator[Endpoint]:
    from evalctl.emulator import Emulator, seed_demo

    with Emulator() as emulator:
        seed_demo(emulator)
        yield Endpoint(emulator.host, emulator.port, emulator.ak, emulator.sk)


@contextmanager
def child_process() -> Iterator[Endpoint]:
    from evalctl.emulator import DEFAULT_AK, DEFAULT_SK

    code = "from evalctl.emulator import run_foreground; run_foreground(demo=True)"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        found = re.search(r"http://([\d.]+):(\d+)", process.stdout.readline())
        if found is None:
            raise RuntimeError("the emulator process did not print its address")
        yield Endpoint(found.group(1), int(found.group(2)), DEFAULT_AK, DEFAULT_SK)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)


def signed_headers(endpoint: Endpoint, route: str, action: str) -> dict[str, str]:
    """The headers the SDK sends, signed the way it signs them."""
    from baidubce.auth.bce_credentials import BceCredentials  # type: ignore[import-untyped]
    from baidubce.auth.bce_v1_signer import sign  # type: ignore[import-untyped]
    from baidubce.utils import get_canonical_time  # type: ignore[import-untyped]

    stamp = time.time()
    headers = {
        "Content-Type": "application/json",
        "Host": f"{endpoint.host}:{endpoint.port}",
        "request-source": "evalctl-bench",
        "x-bce-date": get_canonical_time(stamp).decode(),
    }
    authorization = sign(
        BceCredentials(endpoint.ak, endpoint.sk),
        b"POST",
        route.encode(),
        {name.encode(): value for name, value in headers.items()},
        {b"Action": action},
        timestamp=stamp,
        expiration_in_seconds=1800,
        headers_to_sign={name.lower().encode() for name in headers},
    )
    return {**headers, "Authorization": authorization.decode()}


def raw_request(endpoint: Endpoint) -> bytes:
    body = json.dumps({"id": TASK_ID}).encode()
    headers = {**signed_headers(endpoint, DETAIL, ""), "Content-Length": str(len(body))}
    head = f"POST {DETAIL}?Action= HTTP/1.1\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (head + "\r\n").encode() + body


def read_response(stream: BinaryIO) -> int:
    status = int(stream.readline().split()[1])
    length = 0
    while (line := stream.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    stream.read(length)
    return status


def rate(n: int, threads: int, one: Callable[[], None]) -> float:
    """Requests per second for `n` calls of `one` spread over `threads` threads."""
    errors: list[BaseException] = []

    def guarded(_: int) -> None:
        try:
            one()
        except Exception as error:  # noqa: BLE001 (counted and reported, not fatal)
            errors.append(error)

    started = time.perf_counter()
    if threads == 1:
        for index in range(n):
            guarded(index)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(guarded, range(n)))
    elapsed = time.perf_counter() - started
    if errors:
        print(f"  ({len(errors)} of {n} requests failed, e.g. {errors[0]!r})")
    return n / elapsed


def report(label: str, threads: int, per_second: float) -> None:
    noun = "thread" if threads == 1 else "threads"
    print(f"emulator throughput ({label}, {threads} {noun}): {per_second:.0f} req/s", flush=True)


def bench_sdk(endpoint: Endpoint, n: int) -> None:
    from qianfan.resources.console.utils import call_action

    from evalctl.emulator import pointed_at

    def one() -> None:
        call_action(DETAIL, "", {"id": TASK_ID})

    with pointed_at(endpoint):
        for _ in range(10):
            one()
        for threads in THREADS:
            report("sdk client", threads, rate(n, threads, one))


def bench_raw(endpoint: Endpoint, n: int) -> None:
    import requests

    request = raw_request(endpoint)

    def new_connection() -> None:
        with socket.create_connection((endpoint.host, endpoint.port)) as sock:
            sock.sendall(request)
            with sock.makefile("rb") as stream:
                read_response(stream)

    for threads in THREADS:
        report("raw socket, new connection per request", threads, rate(n, threads, new_connection))

    session = requests.Session()
    url = endpoint.base_url + DETAIL

    def keep_alive_session() -> None:
        headers = signed_headers(endpoint, DETAIL, "")
        session.post(url, params={"Action": ""}, json={"id": TASK_ID}, headers=headers).json()

    report("requests.Session keep-alive, signed per request", 1, rate(n, 1, keep_alive_session))
    session.close()

    local = threading.local()

    def keep_alive_socket() -> None:
        if not hasattr(local, "sock"):
            local.sock = socket.create_connection((endpoint.host, endpoint.port))
            local.stream = local.sock.makefile("rb")
        local.sock.sendall(request)
        read_response(local.stream)

    report("raw socket keep-alive", 1, rate(n, 1, keep_alive_socket))
    local.stream.close()
    local.sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=N, help=f"requests per figure (default {N})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_N} requests per figure")
    parser.add_argument(
        "--server-process", action="store_true", help="run the emulator in a child process"
    )
    args: Any = parser.parse_args(argv)
    n = QUICK_N if args.quick else args.n
    logging.getLogger("qianfan").addFilter(_NoRedisWarning())
    for handler in logging.getLogger("qianfan").handlers:
        handler.addFilter(_NoRedisWarning())
    where = "a child process" if args.server_process else "this process (shared GIL)"
    print(f"emulator benchmark: {n} detail requests per figure, emulator in {where}", flush=True)
    server = child_process() if args.server_process else in_process()
    with server as endpoint:
        bench_sdk(endpoint, n)
        bench_raw(endpoint, n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
