"""`evalctl.guard()`: the SDK's own stop paths go through evalctl's pre-check.

Existing projects stop evaluation tasks through the SDK, not through
`evalctl.call_action`. After `guard()`, every evaluation stop issued through
the SDK's public stop paths in this process is sent by evalctl instead — the
manual-mode pre-check first, then evalctl's retries and log events — and
returns the `QfResponse` the SDK would have returned:

- `qianfan.resources.console.utils.call_action` (which is also what
  ``qianfan api raw.console`` calls): the module attribute is replaced, and so
  is every module-level name in an already imported module that is bound to
  the original function (``from qianfan.resources.console.utils import
  call_action`` done before `guard()`, as the SDK's CLI module does).
  Requests that are not evaluation stops go to the SDK's own function untouched.
- `qianfan.resources.Model.stop_evaluation_task` (the v1 stop): the class
  attribute is replaced, so every caller of the class sees it, whenever it
  imported the class.

The SDK has no async variant of either.

Below those, a backstop at the lowest public point every console request of
the SDK passes, sync and async: the SDK's console requestor signs each
request by calling `iam_sign` through its own module's namespace
(`qianfan.resources.requestor.console_requestor.iam_sign`), at every call.
While guarded, that name is a signer that refuses (raises
`UnsafeRequestError`, nothing sent) any evaluation stop reaching it — a stop
that went past the paths above: a reference to the original `call_action`
kept elsewhere than a module global (a local, closure, default argument,
container or `functools.partial` made before `guard()`), a bound
`Model.stop_evaluation_task` taken before `guard()`, a project's own function
decorated with the SDK's `console_api_request` / `async_console_api_request`.
Such a stop is refused rather than pre-checked: the backstop only sees a
request being signed, not how to send it through evalctl.

What `guard()` cannot catch: raw HTTP (or another signer), and other
processes (a ``qianfan`` CLI process is guarded only when its interpreter
called `guard()`).
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable
from types import ModuleType, TracebackType
from typing import Any, Final
from urllib.parse import urlsplit

#: ``EVALCTL_GUARD=1`` makes the pytest plugin guard the whole test session.
ENV_GUARD: Final = "EVALCTL_GUARD"

_STOP_METHOD: Final = "stop_evaluation_task"
#: The SDK's console requestor signs every request through this module global;
#: evalctl's own wire signs with baidubce and never passes it.
_SIGNER: Final = "iam_sign"

_lock = threading.RLock()


class _Installed:
    """What `guard()` replaced, to put back on `unguard()`."""

    def __init__(
        self,
        original_call_action: Any,
        wrapper: Any,
        stop_attribute: Any,
        stop_wrapper: Any,
        original_signer: Any,
        signer: Any,
    ) -> None:
        self.original_call_action = original_call_action
        self.wrapper = wrapper
        self.stop_attribute = stop_attribute
        self.stop_wrapper = stop_wrapper
        self.original_signer = original_signer
        self.signer = signer


_installed: _Installed | None = None


class Guarded:
    """What `guard()` returns; as a context manager it restores the state before it.

    ``with evalctl.guard(): ...`` unguards on exit — unless the process was
    already guarded when the block began, in which case it stays guarded.
    """

    def __init__(self, was_guarded: bool) -> None:
        self._was_guarded = was_guarded

    def __enter__(self) -> Guarded:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._was_guarded:
            unguard()

    def __repr__(self) -> str:
        return f"<evalctl guard active={is_guarded()}>"


def guard() -> Guarded:
    """Route every evaluation stop issued through the SDK in this process through evalctl.

    Idempotent (a second call changes nothing) and reversible (`unguard`).
    Also a context manager: ``with evalctl.guard(): ...``.

    Returns:
        A `Guarded` handle; as a context manager it restores the previous state.
    """
    global _installed
    with _lock:
        if _installed is not None:
            return Guarded(was_guarded=True)
        from qianfan.resources.console import model, utils
        from qianfan.resources.requestor import console_requestor

        # Possibly evalctl's own call_action already (the README's drop-in swap).
        original = utils.call_action
        wrapper = _guarded_call_action(original)
        stop_attribute = vars(model.Model)[_STOP_METHOD]
        original_signer = getattr(console_requestor, _SIGNER)
        signer = _vetoing_signer(original_signer)
        _rebind(original, wrapper)
        stop_wrapper = classmethod(_guarded_stop_evaluation_task)
        setattr(model.Model, _STOP_METHOD, stop_wrapper)
        setattr(console_requestor, _SIGNER, signer)
        _installed = _Installed(
            original, wrapper, stop_attribute, stop_wrapper, original_signer, signer
        )
        return Guarded(was_guarded=False)


def unguard() -> None:
    """Undo `guard()`: the SDK's own functions are back everywhere guard put its own.

    Idempotent: nothing happens when the process is not guarded.
    """
    global _installed
    with _lock:
        installed, _installed = _installed, None
        if installed is None:
            return
        from qianfan.resources.console import model
        from qianfan.resources.requestor import console_requestor

        # Only what still holds guard's objects: a later swap by the application stays.
        _rebind(installed.wrapper, installed.original_call_action)
        if vars(model.Model).get(_STOP_METHOD) is installed.stop_wrapper:
            setattr(model.Model, _STOP_METHOD, installed.stop_attribute)
        if getattr(console_requestor, _SIGNER, None) is installed.signer:
            setattr(console_requestor, _SIGNER, installed.original_signer)


def is_guarded() -> bool:
    """Whether `guard()` is in force in this process."""
    return _installed is not None


def guard_from_environment(environ: dict[str, str] | None = None) -> bool:
    """`guard()` when ``EVALCTL_GUARD=1`` (the pytest plugin's switch); whether it did."""
    env = os.environ if environ is None else environ
    if env.get(ENV_GUARD, "").strip() != "1":
        return False
    guard()
    return True


def _rebind(old: object, new: object) -> None:
    """Every module global bound to `old` (imported before the switch) is bound to `new`.

    evalctl's own modules are left alone: after the drop-in swap `old` is
    evalctl's `call_action`, which the guard itself calls.
    """
    for module in list(sys.modules.values()):
        if not isinstance(module, ModuleType) or _is_evalctl(module):
            continue
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for name, value in list(namespace.items()):
            if value is old:
                namespace[name] = new


def _is_evalctl(module: ModuleType) -> bool:
    name = getattr(module, "__name__", "")
    return isinstance(name, str) and (name == "evalctl" or name.startswith("evalctl."))


def _guarded_call_action(original: Callable[..., Any]) -> Callable[..., Any]:
    from evalctl._client._facade import call_action as evalctl_call_action
    from evalctl._safety._generations import stop_generation

    @functools.wraps(original)
    def call_action(*args: Any, **kwargs: Any) -> Any:
        route, action, params, rest = _call_action_arguments(args, kwargs)
        # What cannot be classified (not a string) goes to evalctl, which refuses it.
        unclassifiable = not isinstance(route, str) or not isinstance(action, str)
        if not unclassifiable and stop_generation(route, action) is None:
            return original(*args, **kwargs)
        return evalctl_call_action(route, action, params, **rest)

    return call_action


def _call_action_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str, str, Any, dict[str, Any]]:
    """The SDK's ``call_action(base_url_route, action, params, **kwargs)``, bound by name."""
    rest = dict(kwargs)
    names = ("base_url_route", "action", "params")
    if len(args) > len(names):
        raise TypeError(f"call_action() takes 3 positional arguments but {len(args)} were given")
    bound = dict(zip(names, args, strict=False))
    for name in names[len(args) :]:
        if name not in rest:
            raise TypeError(f"call_action() missing required argument: {name!r}")
        bound[name] = rest.pop(name)
    return bound["base_url_route"], bound["action"], bound["params"], rest


def _guarded_stop_evaluation_task(_cls: type[Any], /, eval_id: Any, **kwargs: Any) -> Any:
    """`Model.stop_evaluation_task(eval_id, **kwargs)`: the v1 stop, sent by evalctl."""
    from evalctl._base._api import V1_CANCEL_ROUTE
    from evalctl._client._facade import call_action as evalctl_call_action

    return evalctl_call_action(V1_CANCEL_ROUTE, "", {"id": eval_id}, **kwargs)


def _vetoing_signer(original: Callable[..., Any]) -> Callable[..., Any]:
    """The SDK's request signer, refusing any evaluation stop that reaches it."""
    from evalctl._base._errors import UnsafeRequestError
    from evalctl._safety._generations import stop_generation

    @functools.wraps(original)
    def iam_sign(ak: Any, sk: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        url = getattr(request, "url", None)
        query = getattr(request, "query", None)
        if not isinstance(url, str) or not isinstance(query, dict):
            raise UnsafeRequestError("a request the guard cannot read reached the SDK")
        # The path with any query spelled into the URL itself (stop_generation reads it).
        parts = urlsplit(url)
        route = parts.path + (f"?{parts.query}" if parts.query else "")
        actions = [str(v) for k, v in query.items() if str(k).lower() == "action"]
        if any(stop_generation(route, action) is not None for action in actions or [""]):
            raise UnsafeRequestError(
                "an evaluation stop reached the SDK's own sender under evalctl.guard(), "
                "past its pre-check; send it with Model.stop_evaluation_task or call_action",
                _task_of(getattr(request, "json_body", None)),
            )
        return original(ak, sk, request, *args, **kwargs)

    return iam_sign


def _task_of(body: object) -> str | None:
    if isinstance(body, dict):
        for key in ("id", "taskId"):
            value = body.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool):
                return str(value)[:64]
    return None
