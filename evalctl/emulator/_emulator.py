"""`Emulator`: the Qianfan console on loopback, for tests, demos and benchmarks."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Self

from evalctl._base import _api
from evalctl.emulator._auth import Verifier
from evalctl.emulator._console import Console, RawBody
from evalctl.emulator._defaults import (
    DEFAULT_AK,
    DEFAULT_APP_AK,
    DEFAULT_APP_ID,
    DEFAULT_APP_SK,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_RETRY_AFTER,
    DEFAULT_SK,
    DEFAULT_SLOW_S,
    DEFAULT_STOP_DELAY_S,
)
from evalctl.emulator._faults import TRANSIENT_FAULTS, Fault, FaultPlan
from evalctl.emulator._records import RecordedRequest, RequestLog, split_route
from evalctl.emulator._replies import IdSource
from evalctl.emulator._routes import AppSecrets, Routes
from evalctl.emulator._server import HttpServer
from evalctl.emulator._state import TaskSnapshot, TaskStore, snapshot


class Emulator:
    """A real HTTP server on loopback that stands in for the Qianfan console API.

    It verifies BCE v1 signatures against its own AK/SK, serves the v1
    detail/cancel/create routes and the v2 ``/v2/eval`` actions with the real
    response shapes, refuses to stop manual or finished tasks the way the
    cloud does, moves stopped tasks Doing → Stopping → Stopped after
    `stop_delay_s`, and injects faults on demand (see `inject`).

    Use it as a context manager (or `start()`/`close()`); point the SDK at it
    with `evalctl.emulator.pointed_at`, or use the `qianfan_emulator` fixture.

    Args:
        ak: the access key it accepts.
        sk: the secret key it verifies signatures with (never shown in repr).
        qps_limit: requests per sliding second beyond which it answers code 18.
        latency_s: seconds added to every answer.
        stop_delay_s: how long a stopped task reads `Stopping` before `Stopped`.
        slow_s: how long the `slow` fault holds an answer by default.
        fault_rate: probability in [0, 1] that a request gets a random fault.
        fault_kinds: the kinds random faults are drawn from (default: transient ones).
        seed: seeds the random faults, for reproducible soak runs.
        host: the address to bind; loopback by default.
        port: the port to bind; 0 picks a free one.
        sign_expiry_check: reject expired (or far-future) signatures.
        app_ak: the fake judge-app AK served in `evalStandardConf` of `model` tasks.
        app_sk: the fake judge-app SK served alongside it.
    """

    def __init__(
        self,
        ak: str = DEFAULT_AK,
        sk: str = DEFAULT_SK,
        *,
        qps_limit: float | None = None,
        latency_s: float = 0.0,
        stop_delay_s: float = DEFAULT_STOP_DELAY_S,
        slow_s: float = DEFAULT_SLOW_S,
        fault_rate: float = 0.0,
        fault_kinds: Iterable[str] = TRANSIENT_FAULTS,
        seed: int | None = None,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        sign_expiry_check: bool = True,
        app_ak: str = DEFAULT_APP_AK,
        app_sk: str = DEFAULT_APP_SK,
    ) -> None:
        if not ak or not sk:
            raise ValueError("ak and sk must be non-empty")
        self._ak = ak
        self._sk = sk
        self._address = (host, port)
        self._store = TaskStore(stop_delay_s=stop_delay_s)
        self._faults = FaultPlan(rate=fault_rate, kinds=fault_kinds, seed=seed, slow_s=slow_s)
        self._log = RequestLog()
        ids = IdSource()
        self._console = Console(
            verifier=Verifier(ak, sk, check_expiry=sign_expiry_check),
            routes=Routes(self._store, ids, AppSecrets(app_ak, app_sk, DEFAULT_APP_ID)),
            faults=self._faults,
            log=self._log,
            ids=ids,
            qps_limit=qps_limit,
            latency_s=latency_s,
        )
        self._lifecycle = threading.Lock()
        self._server: HttpServer | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve in background threads; returns self.

        Raises:
            RuntimeError: already started, or closed (an emulator runs once).
            OSError: the address cannot be bound.
        """
        with self._lifecycle:
            if self._server is not None or self._closed:
                raise RuntimeError("an Emulator can be started only once")
            self._server = HttpServer(self._address, self._console)
            self._server.start()
        return self

    def close(self) -> None:
        """Stop accepting, cut slow answers short, close connections, join threads.

        Idempotent. Afterwards the port refuses connections.
        """
        with self._lifecycle:
            server, self._server = self._server, None
            self._closed = True
        if server is not None:
            server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def running(self) -> bool:
        """Whether it is serving."""
        return self._server is not None

    @property
    def host(self) -> str:
        """The bound address."""
        return self._bound()[0]

    @property
    def port(self) -> int:
        """The bound port."""
        return self._bound()[1]

    @property
    def base_url(self) -> str:
        """What ``QIANFAN_CONSOLE_API_BASE_URL`` should be, e.g. ``http://127.0.0.1:8765``."""
        host, port = self._bound()
        return f"http://{host}:{port}"

    @property
    def ak(self) -> str:
        """The access key it accepts."""
        return self._ak

    @property
    def sk(self) -> str:
        """The secret key it verifies with (a fake one; never shown in repr)."""
        return self._sk

    def __repr__(self) -> str:
        where = self.base_url if self.running else "not running"
        return f"<Emulator {where} ak={self._ak!r} tasks={len(self._store.all())}>"

    # -- tasks -------------------------------------------------------------

    def add_task(
        self,
        task_id: str | None = None,
        eval_mode: str = _api.MODE_RULE,
        state: str = _api.V1_DOING,
        *,
        name: str | None = None,
        description: str = "",
        detail_overrides: Mapping[str, Any] | None = None,
        describe_overrides: Mapping[str, Any] | None = None,
        list_overrides: Mapping[str, Any] | None = None,
    ) -> str:
        """Seed one task and return its id.

        Args:
            task_id: the id; None generates ``ame-`` + 12 lowercase letters/digits.
            eval_mode: stored verbatim (malformed modes are welcome).
            state: a v1 or v2 state name (v2 names are mapped to v1);
                unknown names are stored as given.
            name: the task name; defaults to ``eval-<id>``.
            description: the task description.
            detail_overrides: replaces keys of the v1 detail ``result``; a
                None value removes the key. For hostile-response tests.
            describe_overrides: the same for the v2 DescribeEvalTask ``result``.
            list_overrides: the same for the task's item in DescribeEvalTasks'
                ``evalTaskList`` (e.g. ``{"evalType": "auto"}`` on a manual task:
                a list that mislabels it; the route filters on what it shows).

        Raises:
            ValueError: the id is empty or taken.
        """
        task = self._store.add(
            task_id,
            eval_mode,
            state,
            name=name,
            description=description,
            detail_overrides=detail_overrides,
            describe_overrides=describe_overrides,
            list_overrides=list_overrides,
        )
        return task.task_id

    def task(self, task_id: str) -> TaskSnapshot:
        """The task as it is now (lazy Stopping → Stopped applied).

        Raises:
            KeyError: no such task.
        """
        task = self._store.get(task_id)
        if task is None:
            raise KeyError(task_id)
        return snapshot(task)

    def tasks(self) -> list[TaskSnapshot]:
        """Every task, oldest first."""
        return [snapshot(task) for task in self._store.all()]

    def set_state(self, task_id: str, state: str) -> None:
        """Force a task's state (v1 or v2 name); a forced `Stopping` never settles.

        Raises:
            KeyError: no such task.
        """
        self._store.set_state(task_id, state)

    def reset(self) -> None:
        """Forget tasks, injected faults and records (settings stay)."""
        self._store.clear()
        self._faults.clear()
        self._console.clear_raw()
        self._log.clear()

    # -- faults and limits -------------------------------------------------

    def inject(
        self,
        fault: str | Fault,
        times: int = 1,
        route: str | None = None,
        *,
        retry_after: int | float | str = DEFAULT_RETRY_AFTER,
        delay_s: float | None = None,
    ) -> None:
        """Make the next `times` matching requests fail with `fault`.

        Faults queue FIFO: a request takes the oldest one whose `route`
        matches. Only requests that pass authentication, reach a known route
        and fit under the QPS limit take faults; the others leave the queue
        alone. Which faults still apply the request: see
        `evalctl.emulator.Fault` (only ``slow`` applies a stop;
        ``missing_fields`` applies reads).

        Args:
            fault: a `Fault` or its string value.
            times: how many requests it hits.
            route: narrows it: a v1 route, ``/v2/eval`` (any action) or
                ``/v2/eval?Action=<name>``; None matches every route.
            retry_after: the ``Retry-After`` header of ``http_429``.
            delay_s: how long ``slow`` holds the answer (default `slow_s`).

        Raises:
            ValueError: unknown fault or route, or `times` < 1.
        """
        self._faults.inject(fault, times, route, str(retry_after), delay_s)

    def serve_raw(
        self,
        body: RawBody,
        *,
        status: int = 200,
        content_type: str = "application/json",
        headers: Iterable[tuple[str, str]] = (),
        route: str | None = None,
        times: int = 1,
    ) -> None:
        """Test hook: answer the next `times` matching requests with exactly these bytes.

        Not one of the contract's fault kinds (`Fault` keeps those): it lets
        hostile-server tests send what no fault does — a top-level JSON array,
        NaN, non-UTF-8 bytes, deep nesting — or echo the request's headers back
        (pass a callable: it gets the headers, names lower-cased, and returns
        the body). The request is recorded with ``fault="raw"``, never applied,
        and takes precedence over injected faults; `reset` forgets queued answers.

        Args:
            body: the bytes to send, or a callable making them from the request headers.
            status: the HTTP status.
            content_type: the ``Content-Type`` header.
            headers: more response headers.
            route: narrows it, as for `inject`.
            times: how many requests get it.

        Raises:
            ValueError: bad status, route or `times`.
        """
        self._console.serve_raw(
            body,
            status=status,
            content_type=content_type,
            headers=tuple(headers),
            route=route,
            times=times,
        )

    @property
    def connections_opened(self) -> int:
        """TCP connections accepted since start (a client reusing its connection opens few)."""
        server = self._server
        return server.connections_opened if server is not None else 0

    @property
    def faults_pending(self) -> int:
        """Injected fault occurrences not yet consumed."""
        return self._faults.pending()

    def set_fault_rate(
        self, rate: float, kinds: Iterable[str] | None = None, seed: int | None = None
    ) -> None:
        """Change the random-fault probability (and the kinds, and reseed, if given)."""
        self._faults.set_rate(rate, kinds, seed)

    def set_qps_limit(self, limit: float | None) -> None:
        """Change the QPS limit; None lifts it."""
        self._console.set_qps_limit(limit)

    def set_latency(self, latency_s: float) -> None:
        """Change the latency added to every answer."""
        self._console.latency_s = latency_s

    def set_stop_delay(self, stop_delay_s: float) -> None:
        """Change how long tasks stopped from now on read `Stopping` before `Stopped`."""
        self._store.set_stop_delay(stop_delay_s)

    # -- records -----------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, ordered by arrival (a copy)."""
        return self._log.snapshot()

    def requests_to(self, route: str, action: str | None = None) -> list[RecordedRequest]:
        """The requests to one route (``/v2/eval?Action=X`` works as shorthand)."""
        path, wanted = split_route(route, action)
        return [
            record
            for record in self._log.snapshot()
            if record.route == path and (wanted is None or record.action == wanted)
        ]

    def stop_requests(self, task_id: str | None = None) -> list[RecordedRequest]:
        """Every request to a stop route (v1 cancel, v2 StopEvalTask), for one task or all.

        Unlike `TaskSnapshot.stop_requests` this includes requests that failed
        authentication or were swallowed by a fault or the QPS limit.
        """
        return [
            record
            for record in self._log.snapshot()
            if record.is_stop and (task_id is None or record.task_id == task_id)
        ]

    def clear_requests(self) -> None:
        """Forget the records."""
        self._log.clear()

    def _bound(self) -> tuple[str, int]:
        server = self._server
        if server is None:
            raise RuntimeError("the Emulator is not running; use start() or `with`")
        return server.server_name, server.server_port
