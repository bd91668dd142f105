"""A hostile console: echoes the request's Authorization value and the judge app's keys back.

A small threaded HTTP server on 127.0.0.1 for the secret scan. It answers
the v1 and v2 detail and stop routes; what each task's detail and stop get
is planned per task id (`HostileServer.plan`), so retries of one task see
the same answer, in any order of tasks. Every answer it makes carries the
secrets of the request it answers — the Authorization value, its
signature, the signing key derived from the secret key, the AK, the SK, the
app keys — in one spelling (`HostileServer.spelling`): in error messages,
log ids, error codes, response headers, detail fields and HTML pages.

It verifies no signature (it is not the console), records what it was sent,
and is bounded: at most `MAX_REQUESTS` answers, bodies up to 1 MiB, socket
timeouts of a few seconds.
"""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

from secret_scan import signing_key

from evalctl._base import _api

MAX_REQUESTS: Final = 2000
_MAX_BODY: Final = 1 << 20


def _every_char_u(value: str) -> str:
    return "".join(f"\\u{ord(ch):04x}" for ch in value)


def _lower_hex(value: str) -> str:
    out = []
    for ch in value:
        encoded = quote(ch, safe="")
        out.append(encoded.lower() if encoded.startswith("%") else encoded)
    return "".join(out)


#: name → how the server spells each secret it echoes.
SPELLINGS: Final[dict[str, Callable[[str], str]]] = {
    "raw": lambda v: v,
    "json": lambda v: json.dumps(v)[1:-1],
    "json-slash": lambda v: json.dumps(v)[1:-1].replace("/", "\\/"),
    "json-u-every-char": _every_char_u,
    "json-in-json": lambda v: json.dumps(json.dumps({"appSk": v}))[1:-1],
    "percent": lambda v: quote(v, safe=""),
    "percent-lower": _lower_hex,
    "percent-plus": lambda v: quote_plus(v, safe=""),
    "percent-twice": lambda v: quote(quote(v, safe=""), safe=""),
    "html": html.escape,
    "xml-references": lambda v: "".join(f"&#x{ord(ch):x};" for ch in v),
    "yaml": lambda v: f"\napp_sk: {v}\n",
    "query": lambda v: f"appSk={quote(v, safe='')}&x=1",
}


@dataclass(frozen=True)
class Plan:
    """What one task's requests get: a detail answer kind and a stop answer kind."""

    detail: str = "detail"
    stop: str = "stop-ok"
    #: How this task's answers spell the secrets (None: the server's `spelling`).
    spelling: str | None = None


@dataclass
class Received:
    """One request, as the server saw it."""

    path: str
    action: str
    task_id: str | None
    authorization: str


@dataclass
class HostileServer:
    """The server; `start()`/`close()` or use as a context manager."""

    ak: str
    sk: str
    app_ak: str
    app_sk: str
    spelling: str = "raw"
    plans: dict[str, Plan] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------

    def start(self) -> HostileServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="hostile-server", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # --- planning and records -------------------------------------------------------

    def plan(
        self,
        task_id: str,
        detail: str = "detail",
        stop: str = "stop-ok",
        spelling: str | None = None,
    ) -> str:
        """Plan the answers for `task_id`; returns it."""
        self.plans[task_id] = Plan(detail, stop, spelling)
        return task_id

    def authorizations(self) -> list[str]:
        with self._lock:
            return [r.authorization for r in self.received]

    def forget(self) -> None:
        with self._lock:
            self.received.clear()
        self.plans.clear()

    # --- answers --------------------------------------------------------------------

    def secrets_of(self, authorization: str) -> list[str]:
        """What an answer to a request signed with `authorization` echoes."""
        secrets = [self.ak, self.sk, self.app_ak, self.app_sk]
        if authorization:
            secrets += [
                authorization,
                authorization.rsplit("/", 1)[-1],
                signing_key(authorization, self.sk),
            ]
        return secrets

    def echo(self, authorization: str, spelling: str) -> str:
        spell = SPELLINGS[spelling]
        return "denied: " + " | ".join(spell(s) for s in self.secrets_of(authorization))

    def answer(
        self, path: str, action: str, body: dict[str, Any], authorization: str
    ) -> tuple[int, list[tuple[str, str]], bytes, str]:
        """(status, headers, body, content type) for one request."""
        v1 = path.startswith("/wenxinworkshop/")
        is_stop = path == _api.V1_CANCEL_ROUTE or action == _api.V2_STOP_ACTION
        raw_id = body.get("id" if v1 else "taskId")
        task_id = raw_id if isinstance(raw_id, str) else None
        with self._lock:
            self.received.append(Received(path, action, task_id, authorization))
        plan = self.plans.get(task_id or "", Plan())
        kind = plan.stop if is_stop else plan.detail
        spelling = plan.spelling or self.spelling
        echo = self.echo(authorization, spelling)
        spelled_auth = SPELLINGS[spelling](authorization)
        id_key = "log_id" if v1 else "requestId"
        headers = [
            ("X-Bce-Request-Id", _header(spelled_auth)),
            ("X-Bce-Error-Message", _header(echo)),
        ]
        if kind in _MODES:
            detail = self._detail(v1, task_id, echo, _MODES[kind])
            return 200, headers, _json({id_key: spelled_auth, "result": detail}), "json"
        if kind == "stop-ok":
            result: object = {"result": True, "errorMessage": ""} if v1 else {}
            return 200, headers, _json({id_key: spelled_auth, "result": result}), "json"
        if kind == "stop-refused" and v1:
            result = {"result": False, "errorMessage": echo}
            return 200, headers, _json({"log_id": spelled_auth, "result": result}), "json"
        if kind == "envelope":
            return (
                200,
                headers,
                _json(
                    {id_key: spelled_auth, "error_code": _api.CODE_INVALID_PARAM, "error_msg": echo}
                ),
                "json",
            )
        if kind.startswith("bce-") or kind == "stop-refused":
            status = 400 if kind == "stop-refused" else int(kind.removeprefix("bce-"))
            code = (
                _api.V2_INVALID_OPERATION_CODE
                if kind == "stop-refused"
                else f"Denied{spelled_auth}"
            )
            payload = {"requestId": spelled_auth, "code": code, "message": echo}
            return status, headers, _json(payload), "json"
        if kind.startswith("html-"):
            page = f"<html><head><title>{echo}</title></head><body><h1>{echo}</h1></body></html>"
            return int(kind.removeprefix("html-")), headers, page.encode(), "html"
        if kind == "not-json":
            return 200, headers, echo.encode(), "text"
        raise AssertionError(f"unknown answer kind {kind!r}")

    def _detail(self, v1: bool, task_id: str | None, echo: str, modes: str) -> dict[str, Any]:
        """A running task with the judge app's keys, whose texts echo the secrets."""
        conf = {
            "evalMode": modes,
            "appId": 7,
            "appAk": self.app_ak,
            "appSk": self.app_sk,
            "note": echo,
        }
        if v1:
            return {
                "evaluationId": 4242,
                "evaluationIdStr": task_id,
                "name": echo,
                "description": echo,
                "state": _api.V1_DOING,
                "evalStandardConf": conf,
            }
        return {
            "taskId": task_id,
            "taskName": echo,
            "description": echo,
            "evalType": _api.V2_EVAL_TYPE_AUTO,
            "state": _api.V2_RUNNING,
            "evalMode": modes,
            "evalStandardConf": conf,
        }


def _json(payload: object) -> bytes:
    return json.dumps(payload).encode()


def _header(value: str) -> str:
    # Header values go out as Latin-1; what cannot be written is replaced, the rest kept.
    return value.encode("latin-1", "replace").decode("latin-1").replace("\n", " ")[:4000]


#: Detail answer kinds: the modes the detail reports (rule,model may be stopped;
#: manual must not be; the third cannot be decided).
_MODES: Final = {
    "detail": "rule,model",
    "detail-manual": "model,manual",
    "detail-undecidable": "rule,model,judge",
}
_TYPES: Final = {"json": "application/json", "html": "text/html", "text": "text/plain"}


def _handler(server: HostileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as two writes: without this, each answer waits
        # for the client's delayed ACK (40 ms), as the emulator's would not.
        disable_nagle_algorithm = True
        timeout = 5

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(min(length, _MAX_BODY))
            if len(server.received) >= MAX_REQUESTS:
                self.send_error(503, "hostile server: request budget spent")
                return
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            parts = urlsplit(self.path)
            action = parse_qs(parts.query).get("Action", [""])[0]
            status, headers, content, kind = server.answer(
                parts.path,
                action,
                body if isinstance(body, dict) else {},
                self.headers.get("Authorization", ""),
            )
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Type", _TYPES[kind])
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the scan captures logging

    return Handler


@contextmanager
def hostile(ak: str, sk: str, app_ak: str, app_sk: str) -> Iterator[HostileServer]:
    """A started hostile server."""
    with HostileServer(ak, sk, app_ak, app_sk) as server:
        yield server
