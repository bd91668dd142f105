"""Bad user input: malformed ids and options get a clear error and send nothing.

A corpus of malformed task ids goes through every entry point that takes
one (`cancel_eval_task`, `describe_eval_task`, the drop-in `call_action` on
both stop routes, the batch), and a corpus of bad options and settings
(`api=`, `retry=`, `RetryPolicy` fields, `wait_timeout`, the drop-in's SDK
keywords, environment variables, the endpoint, missing credentials, batch
limits) through the library; then the command line gets its own corpus, one
process per case (forked from the zygote, `forkserver`), two at a time.
Every case must raise the contract's error (exit code 2) with a single clear
line, and the emulator — pointed at throughout — must receive no request at all.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import forkserver
import pytest
from qianfan import get_config

import evalctl
from evalctl import ConfigurationError, InvalidTaskIdError, MissingCredentialsError, RetryPolicy
from evalctl._batch._run import cancel_eval_tasks
from evalctl.emulator import Emulator, sdk_environment

MAX_MESSAGE = 300

BAD_IDS: list[object] = [
    "",
    " ",
    "ame-",
    "ame",
    "AME-abc",
    "ame-abc ",
    " ame-abc",
    "ame-ab c",
    "ame-ab-c",
    "ame_abc",
    "ame-\u0430bc",  # Cyrillic а
    "ame-ａｂｃ",  # full-width
    "ame-abc\u200b",  # zero-width space
    "ame-abc\n",
    "ame-\x00",
    "ame-abc/../x",
    "ame-%41",
    "ame-abc;rm",
    "../../etc/passwd",
    "ame-" + "a" * 61,  # 65 characters
    None,
    0,
    -1,
    2**64,
    True,
    1.5,
    math.nan,
    b"ame-abc",
    ["ame-abc"],
    {"id": "ame-abc"},
]


def _entry_points(task_id: object) -> list[tuple[str, Callable[[], object]]]:
    return [
        ("cancel", lambda: evalctl.cancel_eval_task(task_id)),  # type: ignore[arg-type]
        ("cancel v2", lambda: evalctl.cancel_eval_task(task_id, api="v2")),  # type: ignore[arg-type]
        ("describe", lambda: evalctl.describe_eval_task(task_id)),  # type: ignore[arg-type]
        (
            "drop-in v1 stop",
            lambda: evalctl.call_action(
                "/wenxinworkshop/modelrepo/eval/cancel", "", {"id": task_id}
            ),
        ),
        (
            "drop-in v2 stop",
            lambda: evalctl.call_action("/v2/eval", "StopEvalTask", {"taskId": task_id}),
        ),
    ]


def _assert_clear(error: evalctl.EvalctlError) -> None:
    message = str(error)
    assert error.exit_code == 2
    assert message.strip(), repr(error)
    assert "\n" not in message, message
    assert len(message) <= MAX_MESSAGE, message


@pytest.mark.parametrize("task_id", BAD_IDS, ids=repr)
def test_a_malformed_id_is_refused_unsent_everywhere(task_id: object, emu: Emulator) -> None:
    """Every entry point refuses the id with InvalidTaskIdError before any request."""
    for name, call in _entry_points(task_id):
        with pytest.raises(InvalidTaskIdError) as raised:
            call()
        _assert_clear(raised.value)
        assert emu.requests == [], name
    reports: list[Any] = []
    result = cancel_eval_tasks([task_id], on_report=reports.append)
    assert (len(reports), result.exit_code) == (1, 2)
    assert isinstance(reports[0].error, InvalidTaskIdError)
    assert emu.requests == []


def test_integer_ids_are_refused_on_v2_and_when_not_positive(emu: Emulator) -> None:
    """A deprecated integer id works on v1 only, and only when positive."""
    for task_id, api in [(5, "v2"), (0, "v1"), (-3, "v1"), (2**63, "v1")]:
        with pytest.raises(InvalidTaskIdError):
            evalctl.cancel_eval_task(task_id, api=api)  # type: ignore[arg-type]
    assert emu.requests == []


@dataclass(frozen=True)
class BadOption:
    name: str
    call: Callable[[], object]
    error: type[evalctl.EvalctlError] = ConfigurationError
    env: Mapping[str, str] = field(default_factory=dict)
    config: Mapping[str, object] = field(default_factory=dict)


OK_ID = "ame-abc123"
STOP_V1 = ("/wenxinworkshop/modelrepo/eval/cancel", "")


def _cancel(**kw: Any) -> Callable[[], object]:
    return lambda: evalctl.cancel_eval_task(OK_ID, **kw)


def _policy(**kw: Any) -> Callable[[], object]:
    return lambda: evalctl.cancel_eval_task(OK_ID, retry=RetryPolicy(**kw))


def _drop_in(*args: Any, **kw: Any) -> Callable[[], object]:
    return lambda: evalctl.call_action(*args, **kw)


def _batch(**kw: Any) -> Callable[[], object]:
    return lambda: cancel_eval_tasks([OK_ID], **kw)


BAD_OPTIONS = [
    BadOption("api v3", _cancel(api="v3")),
    BadOption("api V1", _cancel(api="V1")),
    BadOption("api None", _cancel(api=None)),
    BadOption("api 1", _cancel(api=1)),
    BadOption("describe api v0", lambda: evalctl.describe_eval_task(OK_ID, api="v0")),  # type: ignore[arg-type]
    BadOption("retry a string", _cancel(retry="fast")),
    BadOption("retry a dict", _cancel(retry={"max_attempts": 3})),
    BadOption("max_attempts 0", _policy(max_attempts=0)),
    BadOption("max_attempts -1", _policy(max_attempts=-1)),
    BadOption("max_attempts 1.5", _policy(max_attempts=1.5)),
    BadOption("max_attempts True", _policy(max_attempts=True)),
    BadOption("max_attempts '3'", _policy(max_attempts="3")),
    BadOption("initial_wait -1", _policy(initial_wait=-1)),
    BadOption("initial_wait NaN", _policy(initial_wait=math.nan)),
    BadOption("max_wait infinite", _policy(max_wait=math.inf)),
    BadOption("max_wait '1'", _policy(max_wait="1")),
    BadOption("deadline 0", _policy(deadline=0)),
    BadOption("attempt_timeout 0", _policy(attempt_timeout=0)),
    BadOption("wait_timeout -1", _cancel(wait=True, wait_timeout=-1)),
    BadOption("wait_timeout NaN", _cancel(wait=True, wait_timeout=math.nan)),
    BadOption("wait_timeout infinite", _cancel(wait=True, wait_timeout=math.inf)),
    BadOption("wait_timeout '10'", _cancel(wait=True, wait_timeout="10")),
    BadOption("wait_timeout None", _cancel(wait=True, wait_timeout=None)),
    BadOption("drop-in route not a string", _drop_in(123, "", {"id": OK_ID})),
    BadOption("drop-in action None", _drop_in("/v2/eval", None, {"taskId": OK_ID})),
    BadOption("drop-in params a string", _drop_in(*STOP_V1, "id=ame-abc123")),
    BadOption("drop-in params a list", _drop_in(*STOP_V1, [OK_ID])),
    BadOption("drop-in retry_count 0", _drop_in(*STOP_V1, {"id": OK_ID}, retry_count=0)),
    BadOption(
        "drop-in request_timeout 'abc'", _drop_in(*STOP_V1, {"id": OK_ID}, request_timeout="abc")
    ),
    BadOption(
        "drop-in retry_err_codes ['x']", _drop_in(*STOP_V1, {"id": OK_ID}, retry_err_codes=["x"])
    ),
    BadOption("drop-in stop without an id", _drop_in(*STOP_V1, {}), InvalidTaskIdError),
    BadOption(
        "drop-in v2 stop with an int id",
        _drop_in("/v2/eval", "StopEvalTask", {"taskId": 5}),
        InvalidTaskIdError,
    ),
    BadOption("EVALCTL_MAX_ATTEMPTS=x", _cancel(), env={"EVALCTL_MAX_ATTEMPTS": "x"}),
    BadOption("EVALCTL_MAX_ATTEMPTS=0", _cancel(), env={"EVALCTL_MAX_ATTEMPTS": "0"}),
    BadOption("EVALCTL_DEADLINE_S=-1", _cancel(), env={"EVALCTL_DEADLINE_S": "-1"}),
    BadOption("EVALCTL_DEADLINE_S=nan", _cancel(), env={"EVALCTL_DEADLINE_S": "nan"}),
    BadOption("endpoint ftp://", _cancel(), config={"CONSOLE_API_BASE_URL": "ftp://files.example"}),
    BadOption("endpoint without a host", _cancel(), config={"CONSOLE_API_BASE_URL": "http://"}),
    BadOption("endpoint not a URL", _cancel(), config={"CONSOLE_API_BASE_URL": "console"}),
    BadOption(
        "endpoint with a password",
        _cancel(),
        config={"CONSOLE_API_BASE_URL": "ftp://user:pa55word@host"},
    ),
    BadOption(
        "no credentials",
        _cancel(),
        MissingCredentialsError,
        config={"ACCESS_KEY": None, "SECRET_KEY": None},
    ),
    BadOption(
        "blank credentials",
        _cancel(ak=" ", sk=" "),
        MissingCredentialsError,
        config={"ACCESS_KEY": "", "SECRET_KEY": ""},
    ),
    BadOption("batch concurrency 0", _batch(concurrency=0)),
    BadOption("batch concurrency 1000", _batch(concurrency=1000)),
    BadOption("batch concurrency '4'", _batch(concurrency="4")),
    BadOption("batch qps 0", _batch(qps=0)),
    BadOption("batch qps -1", _batch(qps=-1)),
    BadOption("batch qps NaN", _batch(qps=math.nan)),
    BadOption("batch resume without a journal", _batch(resume=True)),
    BadOption("batch api v3", _batch(api="v3")),
]


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch) -> Callable[[BadOption], None]:
    def apply(option: BadOption) -> None:
        for name, value in option.env.items():
            monkeypatch.setenv(name, value)
        config = get_config()
        for attr, value in option.config.items():
            monkeypatch.setattr(config, attr, value)

    return apply


@pytest.mark.parametrize("option", BAD_OPTIONS, ids=lambda o: o.name)
def test_a_bad_option_is_refused_unsent(
    option: BadOption, emu: Emulator, patched: Callable[[BadOption], None]
) -> None:
    """The contract's error (exit code 2) in one clear line; not one request."""
    patched(option)
    with pytest.raises(option.error) as raised:
        option.call()
    _assert_clear(raised.value)
    assert "pa55word" not in str(raised.value)
    assert emu.requests == []


# --- the command line ---------------------------------------------------------------------

EVALCTL = Path(sys.executable).with_name("evalctl")
CLI_BAD_IDS = [
    "",
    "ame-",
    "AME-x",
    "ame-\u0430bc",
    "ame-x\u200b",
    "ame-a b",
    "../etc",
    "ame-" + "a" * 61,
]


@dataclass(frozen=True)
class CliCase:
    name: str
    args: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    #: Error lines expected on stderr (one per bad id; one otherwise).
    errors: int = 1


CLI_CASES = [
    CliCase("cancel, bad ids", ("cancel", *CLI_BAD_IDS), errors=len(CLI_BAD_IDS)),
    CliCase("status, bad ids", ("status", *CLI_BAD_IDS[:3]), errors=3),
    CliCase("cancel, no ids", ("cancel",)),
    CliCase("--qps 0", ("cancel", "--qps", "0", OK_ID)),
    CliCase("--qps -1", ("cancel", "--qps", "-1", OK_ID)),
    CliCase("--concurrency 0", ("cancel", "--concurrency", "0", OK_ID)),
    CliCase("--timeout abc", ("cancel", "--timeout", "abc", OK_ID)),
    CliCase("--max-attempts 0", ("cancel", "--max-attempts", "0", OK_ID)),
    CliCase("--api v3", ("cancel", "--api", "v3", OK_ID)),
    CliCase("--from-file missing", ("cancel", "--from-file", "no-such-file.txt")),
    CliCase("--from-file a directory", ("cancel", "--from-file", ".")),
    CliCase("--resume without --journal", ("cancel", "--resume", OK_ID)),
    CliCase("an unknown option", ("cancel", "--frobnicate", OK_ID)),
    CliCase("EVALCTL_LOG_FORMAT=xml", ("cancel", OK_ID), env={"EVALCTL_LOG_FORMAT": "xml"}),
    CliCase("EVALCTL_MAX_ATTEMPTS=x", ("cancel", OK_ID), env={"EVALCTL_MAX_ATTEMPTS": "x"}),
    CliCase(
        "QIANFAN_CONSOLE_API_BASE_URL=ftp://",
        ("cancel", OK_ID),
        env={"QIANFAN_CONSOLE_API_BASE_URL": "ftp://files.example"},
    ),
    CliCase(
        "missing credentials",
        ("cancel", OK_ID),
        env={"QIANFAN_ACCESS_KEY": "", "QIANFAN_SECRET_KEY": ""},
    ),
]


@dataclass(frozen=True)
class CliRan:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli_emulator() -> Iterator[Emulator]:
    with Emulator(stop_delay_s=0.0) as emulator:
        yield emulator


def _run(case: CliCase, emulator: Emulator, home: Path) -> CliRan:
    home.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("QIANFAN_", "EVALCTL_"))},
        **sdk_environment(emulator),
        "HOME": str(home),
        "EVALCTL_TESTING": "1",
        "NO_COLOR": "1",
        **case.env,
    }
    done = forkserver.run(
        [str(EVALCTL), *case.args],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    return CliRan(done.returncode, done.stdout, done.stderr)


def test_the_command_line_refuses_bad_input_with_exit_2_and_sends_nothing(
    cli_emulator: Emulator, tmp_path: Path
) -> None:
    """Each case: exit code 2, nothing on stdout, one clear `evalctl: error:` line each."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        ran = list(
            pool.map(
                lambda i: _run(CLI_CASES[i], cli_emulator, tmp_path / f"case{i}"),
                range(len(CLI_CASES)),
            )
        )

    for case, result in zip(CLI_CASES, ran, strict=True):
        lines = result.stderr.splitlines()
        errors = [line for line in lines if line.startswith("evalctl: error: ")]
        assert (case.name, 2, "") == (case.name, result.code, result.stdout)
        assert (case.name, case.errors) == (case.name, len(errors)), result.stderr
        for line in lines:  # the errors, and a batch's one-line summary
            assert line.startswith("evalctl: "), (case.name, line)
            assert line.isprintable(), (case.name, line)
            assert len(line) <= MAX_MESSAGE, (case.name, line)
    assert cli_emulator.requests == []


@pytest.mark.parametrize("api_name", ["v1", "v2"])
def test_keys_the_server_does_not_know_are_an_authentication_error(
    api_name: str, emu: Emulator
) -> None:
    """An unknown access key (BCE: 401 "NotFound") is bad credentials, not a missing task."""
    task_id = emu.add_task()
    for ak, sk in [("unknown-access-key", emu.sk), (emu.ak, "wrong-secret-key")]:
        with pytest.raises(evalctl.AuthenticationError) as raised:
            evalctl.cancel_eval_task(task_id, api=api_name, ak=ak, sk=sk)
        assert raised.value.exit_code == 1
        assert "QIANFAN_ACCESS_KEY" in str(raised.value)
    assert [r.signature_valid for r in emu.requests] == [False, False]
    assert emu.stop_requests() == []
