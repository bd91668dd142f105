"""The ``evalctl`` command line: a thin typer layer over the library.

Start-up time matters (``evalctl --help`` should cost less than importing the
SDK), so nothing heavy is imported at module level: qianfan, the library
modules and structlog are imported inside the commands, after the SDK's
logger has been guarded (`_logging.guard_qianfan_logger`).

Every expected failure ends as one ``evalctl: error: ...`` line on stderr and
the exit code of the contract; anything else as ``evalctl: internal error``
(with the redacted traceback under ``-v``) and exit 1.
"""

from __future__ import annotations

import enum
import math
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Annotated, Any, Final, NoReturn, TextIO

import typer

from evalctl._base._defaults import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_WAIT_TIMEOUT_S,
    ENV_MAX_ATTEMPTS,
    MAX_CONCURRENCY,
)
from evalctl._cli._logging import is_terminal
from evalctl._cli._output import PROG  # the one spelling of the program's name

if TYPE_CHECKING:
    from evalctl._base._config import RetryPolicy
    from evalctl._batch._run import BatchResult
    from evalctl._cli._output import Output, TaskView

# The codes the CLI needs before the library (and so qianfan) is imported;
# the same values as `evalctl._base._errors.EXIT_*` (a test holds them together).
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
#: `evalctl emulator --host`'s default, as `evalctl.emulator`'s (a test holds them together).
EMULATOR_HOST: Final = "127.0.0.1"

app = typer.Typer(
    name=PROG,
    no_args_is_help=True,
    rich_markup_mode=None,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class RateLimitFallback(enum.StrEnum):
    """What `--rate-limit-fallback` accepts."""

    fail = "fail"
    local = "local"


class Api(enum.StrEnum):
    """The console API generation to talk to."""

    v1 = "v1"
    v2 = "v2"


class ListType(enum.StrEnum):
    """Which evaluation type a listing covers."""

    auto = "auto"
    manual = "manual"
    all = "all"


@dataclass
class _Globals:
    """What the root options said (they may also be given after the command)."""

    verbosity: int = 0
    quiet: bool = False


_globals = _Globals()


def _click_exception() -> type[Exception]:
    """click's `ClickException`, whether typer vendors click or depends on it."""
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == "ClickException":
            return cls
    return Exception  # pragma: no cover - every click has it


_CLICK_EXCEPTION: Final = _click_exception()


class CliError(Exception):
    """An expected failure of the command line itself (bad input): one line, an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --- shared options -----------------------------------------------------------

Verbose = Annotated[
    int,
    typer.Option(
        "--verbose",
        "-v",
        count=True,
        show_default=False,
        help="More log detail on stderr: -v every request with its log id, -vv debug.",
    ),
]
Quiet = Annotated[
    bool, typer.Option("--quiet", "-q", help="Only errors on stderr (no warnings, no summary).")
]
Json = Annotated[
    bool, typer.Option("--json", help="One JSON object per task per line on stdout, nothing else.")
]
ApiOption = Annotated[
    Api,
    typer.Option("--api", help="Console API generation: v1 routes or v2 /v2/eval actions."),
]
IdsArgument = Annotated[
    list[str] | None,
    typer.Argument(metavar="ID", help="Task ids (ame-...).", show_default=False),
]
FromFile = Annotated[
    str | None,
    typer.Option(
        "--from-file",
        "-f",
        metavar="PATH|-",
        help="Read ids from a file, one a line ('-': stdin); blank lines and # comments"
        " are ignored.",
    ),
]


# How help shows an option's value when it has no metavar, instead of typer's `<str>`...
_VALUE_NAMES: Final = {"<str>": "TEXT", "<int>": "N", "<float>": "X"}


def _argument_type_shown(self: typer.core.TyperArgument, ctx: Any) -> None:
    """An argument's help row without its Python type (`ID`, not `ID <list[str]>`)."""


def _option_type_shown(self: typer.core.TyperOption, ctx: Any) -> str:
    """An option's value as a person reads it: its metavar, `v1|v2` for a choice, `TEXT`..."""
    if self.metavar is not None:
        return str(self.metavar)
    shown = self.display_type(ctx)
    shown = _VALUE_NAMES.get(shown, shown.removeprefix("<").removesuffix(">"))
    return shown + ("..." if self.nargs != 1 else "")


# typer (plain help) prints Python annotations (`<list[str]>`, `<v1|v2>`) next to names.
typer.core.TyperArgument.display_type_rich = _argument_type_shown  # type: ignore[method-assign,assignment]
typer.core.TyperOption.display_type_rich = _option_type_shown  # type: ignore[method-assign]


# The filters `list` and `cancel --select` share.
TypeFilter = Annotated[
    ListType,
    typer.Option("--type", help="Evaluation type to list: auto, manual, or all (both)."),
]
KeyFilter = Annotated[
    str | None,
    typer.Option(
        "--filter",
        metavar="TEXT",
        help="Server-side filter: part of the task name or id, or a model version id.",
    ),
]
NameGlob = Annotated[
    str | None,
    typer.Option(
        "--name",
        metavar="GLOB",
        help="Keep tasks whose whole name matches this shell glob (case-sensitive),"
        " e.g. 'nightly-2026-11-*'.",
    ),
]
StateFilter = Annotated[
    list[str] | None,
    typer.Option(
        "--state",
        metavar="STATE,...",
        help="Keep tasks in these states (v2 names: Queued, Running, Stopping, Stopped,"
        " Successed, Failed, ...); comma-separated or repeated.",
        show_default=False,
    ),
]
LimitOption = Annotated[
    int | None,
    typer.Option("--limit", min=1, metavar="N", help="At most N tasks.", show_default=False),
]
#: `cancel --select` refuses a larger selection unless --max says otherwise.
DEFAULT_SELECT_MAX: Final = 100


@dataclass(frozen=True)
class _Selection:
    """The list filters of `list` and `cancel --select`, as given."""

    eval_type: str
    key_filter: str | None
    name: str | None
    states: tuple[str, ...] | None
    limit: int | None

    @classmethod
    def of(
        cls,
        eval_type: ListType,
        key_filter: str | None,
        name: str | None,
        states: list[str] | None,
        limit: int | None,
    ) -> _Selection:
        split = None
        if states is not None:
            split = tuple(part.strip() for value in states for part in value.split(","))
            if any(not part for part in split):
                raise CliError("--state: empty state name (use e.g. --state Running,Queued)")
        return cls(eval_type.value, key_filter, name, split, limit)


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            shown = version(PROG)
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            shown = "unknown (not installed)"
        typer.echo(f"{PROG} {shown}")
        raise typer.Exit(0)


def _positive(value: float | None) -> float | None:
    """Parameter check: a finite number > 0 (or absent)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"'{value:g}' (must be a number above 0)")
    return value


def _qps(what: str) -> Any:
    """The `--qps` option of a command, `what` saying what it limits."""
    return typer.Option(
        "--qps",
        callback=_positive,
        metavar="Q",
        help=f"{what} [default: unlimited].",
        show_default=False,
    )


def _max_attempts(per: str) -> Any:
    """The `--max-attempts` option, attempts per `per` (request, page)."""
    return typer.Option(
        "--max-attempts",
        min=1,
        metavar="N",
        help=f"Attempts per {per}, the first included"
        f" [default: {ENV_MAX_ATTEMPTS} or {DEFAULT_MAX_ATTEMPTS}].",
        show_default=False,
    )


@app.callback()
def _root(
    verbose: Verbose = 0,
    quiet: Quiet = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_version_callback,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Stop Qianfan model-evaluation tasks safely.

    A task that includes human (manual) evaluation is never stopped; transient
    failures are retried with backoff; every request is logged with the
    server's log id. New here? Run `evalctl demo`.

    Credentials and endpoint come from QIANFAN_ACCESS_KEY, QIANFAN_SECRET_KEY and
    QIANFAN_CONSOLE_API_BASE_URL. Results go to stdout, logs to stderr
    (EVALCTL_LOG_FORMAT=json for JSON lines).

    \b
    Exit codes (with several tasks, the highest of theirs):
      0    every task cancelled, already stopped, not running, or dry run
      1    anything else (timeout, server error, ...)
      2    usage error or invalid id: nothing sent
      3    refused: the task includes manual evaluation
      4    task not found
      5    retries exhausted
      6    the server rejected the stop
      7    the pre-check could not decide: nothing stopped
      8    a stop may have been sent but could not be confirmed (--resume verifies)
      130  interrupted
    """
    _globals.verbosity = verbose
    _globals.quiet = quiet


# --- commands -------------------------------------------------------------------


@app.command()
def cancel(
    ids: IdsArgument = None,
    from_file: FromFile = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Run the pre-check only; send no stop.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until each stopped task reads Stopped.")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            min=0,
            metavar="S",
            help=f"Seconds to wait for Stopped with --wait [default: {DEFAULT_WAIT_TIMEOUT_S:g}].",
            show_default=False,
        ),
    ] = None,
    json_output: Json = False,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            min=1,
            max=MAX_CONCURRENCY,
            metavar="N",
            help="Tasks in flight at once.",
        ),
    ] = DEFAULT_CONCURRENCY,
    qps: Annotated[float | None, _qps("Requests per second for the whole batch")] = None,
    rate_limit_url: Annotated[
        str | None,
        typer.Option(
            "--rate-limit-url",
            metavar="URL",
            envvar="EVALCTL_RATE_LIMIT_URL",
            show_envvar=False,
            # Says "Redis", not the scheme: the CLI tests look for qianfan's "redis" notice.
            help="Share the batch's rate through the Redis at this URL with every evalctl"
            " using it [env: EVALCTL_RATE_LIMIT_URL].",
            show_default=False,
        ),
    ] = None,
    rate_limit_key: Annotated[
        str | None,
        typer.Option(
            "--rate-limit-key",
            metavar="KEY",
            help="The shared limit's Redis key [default: the endpoint and a hash of the"
            " access key].",
            show_default=False,
        ),
    ] = None,
    rate_limit_fallback: Annotated[
        RateLimitFallback,
        typer.Option(
            "--rate-limit-fallback",
            help="When Redis fails: fail the requests, or go on with a per-process limit.",
        ),
    ] = RateLimitFallback.fail,
    journal: Annotated[
        str | None,
        typer.Option(
            "--journal", metavar="PATH", help="Record each finished task in this file (JSON lines)."
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Skip the tasks the --journal already records as done."),
    ] = False,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="If any id is malformed, send nothing at all (exit 2)."),
    ] = False,
    max_attempts: Annotated[int | None, _max_attempts("request")] = None,
    api: ApiOption = Api.v1,
    select: Annotated[
        bool,
        typer.Option(
            "--select",
            help="Choose the tasks by the list filters (--type, --filter, --name, --state,"
            " --limit) instead of ids: prints the plan and stops nothing without --yes.",
        ),
    ] = False,
    eval_type: Annotated[
        ListType | None,
        typer.Option(
            "--type",
            help="With --select: evaluation type to list: auto, manual, or all (both)"
            " [default: auto].",
            show_default=False,
        ),
    ] = None,
    key_filter: KeyFilter = None,
    name: NameGlob = None,
    state: StateFilter = None,
    limit: LimitOption = None,
    yes: Annotated[
        bool,
        typer.Option("--yes", help="With --select: act on the plan (no confirmation asked)."),
    ] = False,
    max_tasks: Annotated[
        int | None,
        typer.Option(
            "--max",
            min=1,
            metavar="N",
            help="With --select: refuse (exit 2, nothing sent) when more than N tasks match"
            f" the filters [default: {DEFAULT_SELECT_MAX}].",
            show_default=False,
        ),
    ] = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Cancel (stop) evaluation tasks, refusing any that include manual evaluation.

    Each task is pre-checked (its detail is read) before anything is sent to the
    stop route. One line per task on stdout as it finishes; a summary on stderr.

    With --select, the tasks are chosen by the list filters: the plan (what
    would be stopped, what is skipped and why) is printed and nothing is
    stopped unless --yes is given, or the number of tasks is typed at the
    prompt on a terminal. Every selected task is still pre-checked on its own.
    """
    _check_select_options(
        select,
        ids=bool(ids),
        from_file=from_file is not None,
        strict=strict,
        filters={
            "--type": eval_type is not None,
            "--filter": key_filter is not None,
            "--name": name is not None,
            "--state": state is not None,
            "--limit": limit is not None,
            "--yes": yes,
            "--max": max_tasks is not None,
        },
    )
    if select:
        _cancel_selected(
            _Selection.of(eval_type or ListType.auto, key_filter, name, state, limit),
            yes=yes,
            max_tasks=DEFAULT_SELECT_MAX if max_tasks is None else max_tasks,
            dry_run=dry_run,
            wait=wait,
            timeout=timeout,
            json_output=json_output,
            concurrency=concurrency,
            qps=qps,
            journal=journal,
            resume=resume,
            max_attempts=max_attempts,
            api=api.value,
            verbose=verbose,
            quiet=quiet,
        )
    if not ids and from_file is None:
        raise CliError("no task ids: give ID... or --from-file PATH")
    if resume and journal is None:
        raise CliError("--resume needs --journal PATH")
    source = _open_ids(from_file)
    output = _start(verbose, quiet, json_output)
    policy = _prepare_library(max_attempts)
    # Progress only for a person watching a terminal, never in machine output.
    show_progress = not json_output and not _globals.quiet and is_terminal(sys.stderr)
    try:
        result = _cancel_batch(
            _task_ids(ids or (), source, from_file),
            output,
            dry_run=dry_run,
            wait=wait,
            timeout=timeout,
            policy=policy,
            api=api.value,
            concurrency=concurrency,
            qps=qps,
            journal=journal,
            resume=resume,
            strict=strict,
            progress=show_progress,
            rate_limit={
                "rate_limit_url": rate_limit_url or None,
                "rate_limit_key": rate_limit_key,
                "rate_limit_fallback": rate_limit_fallback.value,
            },
        )
    except OSError as exc:  # the batch stopped: the journal could not be written
        if journal is None:
            raise
        raise CliError(f"cannot write --journal {journal!r}: {exc}", EXIT_ERROR) from None
    if result.total == 0 and not result.interrupted and not result.skipped:
        raise CliError(f"no task ids in {_shown_source(from_file)}")
    # Every id has had its own line; the summary only adds to that for several ids.
    if result.total > 1 or result.duplicates or result.interrupted or result.skipped:
        output.summary(result)
    raise typer.Exit(EXIT_INTERRUPTED if result.interrupted else result.exit_code)


@app.command()
def status(
    ids: IdsArgument = None,
    from_file: FromFile = None,
    json_output: Json = False,
    api: ApiOption = Api.v1,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Show each task's state and modes, and whether a stop would be allowed.

    Sends no stop. Exits 0 when every task was read; otherwise with the
    highest code, as `cancel` would (4 not found, 2 invalid id, ...).
    """
    if not ids and from_file is None:
        raise CliError("no task ids: give ID... or --from-file PATH")
    source = _open_ids(from_file)
    output = _start(verbose, quiet, json_output)
    policy = _prepare_library(None)

    from evalctl._base._errors import EXIT_OK, EvalctlError
    from evalctl._client._facade import environment_options, task_status

    options = environment_options(api=api.value, retry=policy)
    exit_code = EXIT_OK
    read = 0
    for task_id in _task_ids(ids or (), source, from_file):
        read += 1
        try:
            status = task_status(task_id, options)
        except EvalctlError as error:
            output.status_error(str(task_id), error)
            exit_code = max(exit_code, error.exit_code)
            continue
        output.status(status.task, status.verdict, status.allowed, status.reason)
    if read == 0:
        raise CliError(f"no task ids in {_shown_source(from_file)}")
    raise typer.Exit(exit_code)


@app.command("list")
def list_tasks(
    eval_type: TypeFilter = ListType.auto,
    key_filter: KeyFilter = None,
    name: NameGlob = None,
    state: StateFilter = None,
    limit: LimitOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object per task per line on stdout.")
    ] = False,
    qps: Annotated[float | None, _qps("Pages per second at most")] = None,
    max_attempts: Annotated[int | None, _max_attempts("page")] = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """List evaluation tasks (v2 DescribeEvalTasks, page by page). Sends no stop.

    --filter is matched by the server; --name and --state are applied here.
    A table on a terminal, one tab-separated line per task (id, type, state,
    name) otherwise, one JSON object per task with --json.
    """
    selection = _Selection.of(eval_type, key_filter, name, state, limit)
    _start(verbose, quiet, json_output)
    tasks, _ = _list_selection(selection, max_attempts, qps)

    from evalctl._cli import _listing

    printer = _listing.Printer()
    if json_output:
        count = _listing.print_json_lines(tasks, printer)
    elif is_terminal(sys.stdout):
        count = _listing.print_table(tasks, printer)
    else:
        count = _listing.print_plain_lines(tasks, printer)
    if count == 0 and not json_output and not _globals.quiet:
        _listing.hint("no tasks match")
    raise typer.Exit(0)


def _list_selection(
    selection: _Selection, max_attempts: int | None, qps: float | None
) -> tuple[Any, RetryPolicy]:
    """The lazy listing for `selection`, and the retry policy; nothing is sent yet.

    Every argument is checked first, then the credentials and the endpoint.

    Raises:
        CliError: a bad filter (exit 2).
    """
    policy = _prepare_library(max_attempts, check=False)
    from evalctl._base._errors import ConfigurationError
    from evalctl._client._listing import list_eval_tasks

    try:
        tasks = list_eval_tasks(
            eval_type=selection.eval_type,  # type: ignore[arg-type]  # a ListType value
            key_filter=selection.key_filter,
            name=selection.name,
            states=selection.states,
            limit=selection.limit,
            retry=policy,
            qps=qps,
        )
    except ConfigurationError as exc:
        raise CliError(_option_message(str(exc))) from None
    _prepare_library(max_attempts)  # credentials and endpoint, before the first page
    return tasks, policy


def _option_message(message: str) -> str:
    """A library argument error in the words of the command line's options."""
    for argument, option in (
        ("eval_type", "--type"),
        ("key_filter", "--filter"),
        ("name", "--name"),
        ("states", "--state"),
        ("limit", "--limit"),
    ):
        if message.startswith(argument + " "):
            return option + message[len(argument) :]
    if message.startswith("unknown state"):
        return "--state: " + message
    return message


def _check_select_options(
    select: bool, *, ids: bool, from_file: bool, strict: bool, filters: dict[str, bool]
) -> None:
    """`--select` takes filters, not ids; the filters mean nothing without it."""
    if select:
        if ids or from_file:
            raise CliError("--select chooses tasks by filters: give no ID... and no --from-file")
        if strict:
            raise CliError("--strict is about ids; --select reads none")
        return
    given = [option for option, present in filters.items() if present]
    if given:
        raise CliError(f"{given[0]} needs --select")


def _cancel_selected(
    selection: _Selection,
    *,
    yes: bool,
    max_tasks: int,
    dry_run: bool,
    wait: bool,
    timeout: float | None,
    json_output: bool,
    concurrency: int | None,
    qps: float | None,
    journal: str | None,
    resume: bool,
    max_attempts: int | None,
    api: str,
    verbose: int,
    quiet: bool,
) -> NoReturn:
    """`cancel --select`: list, plan, then (with --yes or a typed confirmation) act.

    Tasks the list shows as stopped or finished are reported from the list;
    the ones to stop go through the batch, each with its own detail pre-check.
    """
    if resume and journal is None:
        raise CliError("--resume needs --journal PATH")
    output = _start(verbose, quiet, json_output)
    tasks, policy = _list_selection(selection, max_attempts, qps)

    from itertools import islice

    from evalctl._cli import _listing
    from evalctl._client._listing import plan_selection

    def say(message: str) -> None:
        if not _globals.quiet:
            _listing.hint(message)

    selected = list(islice(tasks, max_tasks + 1))
    if len(selected) > max_tasks:
        raise CliError(
            f"the selection has more than {max_tasks} tasks (--max {max_tasks}): narrow the"
            " filters or raise --max; nothing was stopped"
        )
    plan = plan_selection(selected)
    printer = _listing.Printer()
    count = len(plan.to_stop)
    if not yes:
        _listing.print_plan(plan, printer, json_mode=json_output)
        if count == 0:
            say("nothing to stop; nothing was sent")
            raise typer.Exit(0)
        if not _stdin_is_a_terminal():
            say(
                f"this is the plan only: nothing was stopped. To stop these {count}"
                " task(s), run the same command with --yes"
            )
            raise typer.Exit(0)
        if not _listing.confirm(count, sys.stdin, sys.stderr):
            raise CliError("not confirmed: nothing was stopped")
    _listing.print_skipped(plan.skipped, printer, json_mode=json_output)
    if count == 0:
        say(f"plan: {_listing.plan_headline(plan)}; nothing to stop")
        raise typer.Exit(0)
    show_progress = not json_output and not _globals.quiet and is_terminal(sys.stderr)
    try:
        result = _cancel_batch(
            iter([task.task_id for task in plan.to_stop]),
            output,
            dry_run=dry_run,
            wait=wait,
            timeout=timeout,
            policy=policy,
            api=api,
            concurrency=concurrency,
            qps=qps,
            journal=journal,
            resume=resume,
            progress=show_progress,
        )
    except OSError as exc:  # the batch stopped: the journal could not be written
        if journal is None:
            raise
        raise CliError(f"cannot write --journal {journal!r}: {exc}", EXIT_ERROR) from None
    say(f"plan: {_listing.plan_headline(plan)}")
    output.summary(result)
    raise typer.Exit(EXIT_INTERRUPTED if result.interrupted else result.exit_code)


@app.command()
def emulator(
    host: Annotated[
        str, typer.Option("--host", metavar="ADDR", help="Address to bind.")
    ] = EMULATOR_HOST,
    port: Annotated[
        int,
        typer.Option("--port", min=0, max=65535, metavar="N", help="Port to bind (0: a free one)."),
    ] = 0,
    demo: Annotated[
        bool,
        typer.Option("--demo", help="Seed the demo tasks (automatic, manual, stopped, done)."),
    ] = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Run the local Qianfan console emulator in the foreground (Ctrl-C stops it).

    It prints the export lines that point qianfan and evalctl at it; its keys are fake.
    """
    _start(verbose, quiet, False)
    from evalctl.emulator import run_foreground

    try:
        run_foreground(host=host, port=port, demo=demo)
    except BrokenPipeError:  # stdout closed early (`| head`): not a failure, and no message
        from evalctl._cli._output import _silence

        _silence(sys.stdout)
        raise typer.Exit(0) from None
    except OSError as exc:  # the address is busy, not ours, or does not resolve
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise CliError(
            f"cannot serve on {host}:{port}: {reason[:1].lower()}{reason[1:]}", EXIT_ERROR
        ) from None


@app.command()
def demo(verbose: Verbose = 0, quiet: Quiet = False) -> None:
    """See evalctl work: cancel demo tasks on an in-process emulator, no account needed.

    The automatic task is cancelled, the manual one refused (by design), the
    stopped one reported as already stopped. Exits 0 when that is what happened.
    """
    output = _start(verbose, quiet, False, inline_errors=True, indent="  ")
    from evalctl.emulator import DEMO_TASKS, Emulator, pointed_at, seed_demo

    policy = _prepare_library(None, check=False)
    from evalctl._cli._logging import redactor

    expected = {
        "auto": "cancelled",
        "manual": "manual_evaluation",
        "stopped": "already_stopped",
        "done": "not_running",
    }
    seen: dict[str, str] = {}

    def remember(view: TaskView) -> None:
        seen[view.task_id] = view.label

    with Emulator() as server, pointed_at(server):
        redactor.add(server.ak, server.sk)
        roles = seed_demo(server)
        output.line(
            f"evalctl demo: a local Qianfan console emulator is running at {server.base_url}"
            " (fake keys, no account needed). Its tasks:"
        )
        for task in DEMO_TASKS:
            output.line(f"  {task.task_id:<17} {task.eval_mode:<12} {task.state:<9} {task.name}")
        output.line()
        output.line(
            "`evalctl cancel` on them (each task's detail is read first;"
            " a stop is sent only when it is allowed):"
        )
        _cancel_batch(
            (roles[role] for role in expected),
            output,
            policy=policy,
            concurrency=1,  # one at a time: the lines come out in the order above
            on_view=remember,
        )
    output.line()
    as_expected = all(seen.get(roles[role]) == label for role, label in expected.items())
    if as_expected:
        output.line(
            f"Refusing {roles['manual']} is the point: evalctl never stops a task that includes"
            " human evaluation (`evalctl cancel` exits 3 for it; the demo exits 0)."
        )
    else:
        output.error("the demo did not end as expected; see the lines above")
    output.line(
        "To use the real cloud: export QIANFAN_ACCESS_KEY=<your AK> QIANFAN_SECRET_KEY=<your SK>"
    )
    output.line(
        "  (QIANFAN_CONSOLE_API_BASE_URL only for another endpoint), then: evalctl cancel <ame-id>"
    )
    raise typer.Exit(0 if as_expected else EXIT_ERROR)


# --- the steps the commands share ---------------------------------------------------


def _start(
    verbose: int, quiet: bool, json_mode: bool, *, inline_errors: bool = False, indent: str = ""
) -> Output:
    """Merge root and command options, configure logging; returns the output."""
    from evalctl._cli import _logging
    from evalctl._cli._output import Output

    _globals.verbosity += verbose
    _globals.quiet = _globals.quiet or quiet
    verbosity = -1 if _globals.quiet else _globals.verbosity
    try:
        fmt = _logging.log_format()
    except _logging.LogFormatError as exc:
        raise CliError(str(exc)) from None
    _logging.configure(verbosity, fmt)
    return Output(
        json_mode=json_mode, quiet=_globals.quiet, inline_errors=inline_errors, indent=indent
    )


def _prepare_library(max_attempts: int | None, *, check: bool = True) -> RetryPolicy:
    """Import the library (and so qianfan), tame its logger, build the retry policy.

    With `check`, also verify the credentials and the endpoint the way every
    request will, so that bad settings stop the command before anything is sent.

    Raises:
        ConfigurationError, MissingCredentialsError: exit 2.
    """
    from qianfan import get_config

    from evalctl._base._config import RetryPolicy
    from evalctl._base._errors import ConfigurationError
    from evalctl._cli import _logging

    # After the import: the SDK resets its logger's level and adds its handler then.
    _logging.tame_qianfan_logger(_globals.verbosity)
    config = get_config()
    _logging.redactor.add(
        *(getattr(config, name, None) for name in ("ACCESS_KEY", "SECRET_KEY", "AK", "SK"))
    )
    policy = RetryPolicy.from_env()
    if max_attempts is not None:
        try:
            policy = replace(policy, max_attempts=max_attempts)
        except ConfigurationError as exc:
            raise CliError(f"--max-attempts: {exc}") from None
    if check:
        from evalctl._base._errors import MissingCredentialsError
        from evalctl._client._facade import environment_options

        try:
            environment_options(retry=policy)
        except MissingCredentialsError as exc:
            if len(exc.missing) == 1:  # the library's message names the one that is missing
                raise CliError(str(exc)) from None
            raise CliError(
                "no credentials: export QIANFAN_ACCESS_KEY and QIANFAN_SECRET_KEY"
                " (or try `evalctl demo`, which needs none)"
            ) from None
    return policy


def _cancel_batch(
    task_ids: Iterable[str | int],
    output: Output,
    *,
    policy: RetryPolicy,
    dry_run: bool = False,
    wait: bool = False,
    timeout: float | None = None,
    api: str = "v1",
    concurrency: int | None = None,
    qps: float | None = None,
    journal: str | None = None,
    resume: bool = False,
    strict: bool = False,
    on_view: Callable[[TaskView], None] | None = None,
    progress: bool = False,
    rate_limit: dict[str, Any] | None = None,
) -> BatchResult:
    """`cancel_eval_tasks` with each report printed as it arrives (cancel and demo).

    With `progress`, a progress bar runs on stderr meanwhile (lines print above it).
    """
    from contextlib import nullcontext

    from evalctl._batch._run import TaskReport, cancel_eval_tasks
    from evalctl._cli._output import TaskView

    def on_report(report: TaskReport) -> None:
        view = TaskView.of(report)
        output.task(view)
        if on_view is not None:
            on_view(view)

    options: dict[str, Any] = dict(rate_limit or {})
    if timeout is not None:
        options["wait_timeout"] = timeout
    if concurrency is not None:
        options["concurrency"] = concurrency
    total = len(task_ids) if isinstance(task_ids, Sized) else None
    bar = _progress_bar(total, dry_run) if progress else None
    with bar or nullcontext():
        if bar is not None:
            options["on_progress"] = bar.advance
        return cancel_eval_tasks(
            task_ids,
            dry_run=dry_run,
            wait=wait,
            retry=policy,
            api=api,  # type: ignore[arg-type]  # an Api value: "v1" or "v2"
            qps=qps,
            journal=journal,
            resume=resume,
            strict=strict,
            on_report=on_report,
            **options,
        )


def _progress_bar(total: int | None, dry_run: bool) -> Any:
    """A rich progress bar on stderr: done/total, rate, failures so far."""
    from evalctl._cli._progress import BatchProgressBar

    return BatchProgressBar(total, dry_run=dry_run)


def _open_ids(from_file: str | None) -> TextIO | None:
    """Open `--from-file` now, so that an unreadable one fails before anything is sent."""
    if from_file is None:
        return None
    if from_file == "-":
        return sys.stdin
    try:
        return open(from_file, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read --from-file {from_file!r}: {exc.strerror or exc}") from None


class _KnownIds:
    """Ids known up front (arguments, a regular file): their number is known too.

    Being sized tells the batch so: the progress shows the total from the
    first frame, and after an early stop every id is still reported.
    """

    def __init__(self, ids: Iterator[str | int], count: int) -> None:
        self._ids = ids
        self._count = count

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str | int]:
        return self._ids


def _task_ids(
    ids: Sequence[str], source: TextIO | None, source_name: str | None
) -> Iterator[str | int] | _KnownIds:
    """The ids of the arguments, then those of the file, one at a time.

    Sized (`_KnownIds`) unless the file is open-ended (a pipe, a terminal):
    a regular file is counted in a first pass, before anything is sent.
    """
    streamed = _streamed_ids(ids, source, source_name)
    if source is None:
        return _KnownIds(streamed, len(ids))
    count = _count_ids(source, source_name)
    return streamed if count is None else _KnownIds(streamed, len(ids) + count)


def _count_ids(source: TextIO, source_name: str | None) -> int | None:
    """How many id lines a regular file holds (then rewound); None for other files."""
    import os
    import stat

    try:
        if not stat.S_ISREG(os.fstat(source.fileno()).st_mode) or not source.seekable():
            return None
        start = source.tell()
        count = sum(1 for line in source if line.split("#", 1)[0].strip())
        source.seek(start)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        if source is not sys.stdin:
            source.close()
        raise CliError(f"cannot read {_shown_source(source_name)}: {exc}") from None
    return count


def _streamed_ids(
    ids: Sequence[str], source: TextIO | None, source_name: str | None
) -> Iterator[str | int]:
    for raw in ids:
        yield _as_id(raw)
    if source is None:
        return
    line_number = 0
    try:
        for line_number, line in enumerate(source, 1):  # noqa: B007 - used in the error
            text = line.split("#", 1)[0].strip()
            if text:
                yield _as_id(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(
            f"cannot read {_shown_source(source_name)} after line {line_number}: {exc}"
        ) from None
    finally:
        if source is not sys.stdin:
            source.close()


def _stdin_is_a_terminal() -> bool:
    """Whether a person can answer a prompt on stdin.

    Not rich's `is_terminal`, which is about output (FORCE_COLOR must not turn a
    pipe into a prompt): the CLI's one hand-written isatty check.
    """
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stdin
        return False


def _as_id(raw: str) -> str | int:
    """An argument as a task id: all ASCII digits is the deprecated integer form."""
    return int(raw) if raw.isascii() and raw.isdigit() else raw


def _shown_source(from_file: str | None) -> str:
    if from_file == "-":
        return "stdin"
    return f"--from-file {from_file!r}" if from_file else "the arguments"


# --- entry point ------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The console script: run the command line and exit with its code."""
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line on `argv` (default: `sys.argv[1:]`); returns the exit code."""
    from evalctl._cli import _logging

    _logging.guard_qianfan_logger()
    _show_warnings_as_lines()
    try:
        command = typer.main.get_command(app)
        value = command.main(
            args=list(sys.argv[1:] if argv is None else argv),
            prog_name=PROG,
            standalone_mode=False,
        )
    except _CLICK_EXCEPTION as exc:  # the parser's usage errors
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `evalctl`: help, as click does
            sys.stderr.write(_click_message(exc).rstrip() + "\n")
        else:
            _print_error(_usage_message(exc))
        return int(getattr(exc, "exit_code", EXIT_USAGE))
    except typer.Abort:
        _print_error("aborted")
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        _print_error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the one place that turns any failure into a line
        return _failed(exc)
    return value if isinstance(value, int) else 0


def _failed(exc: Exception) -> int:
    """Print an exception as one line; returns its exit code."""
    if isinstance(exc, CliError):
        _print_error(str(exc))
        return exc.exit_code
    errors = sys.modules.get("evalctl._base._errors")
    if errors is not None and isinstance(exc, errors.EvalctlError):
        _print_error(str(exc))
        return int(exc.exit_code)
    from evalctl._cli._logging import redact_text, write_stderr

    if _globals.verbosity > 0:
        import traceback

        write_stderr(redact_text("".join(traceback.format_exception(exc)).rstrip()))
    detail = "" if _globals.verbosity > 0 else " (run with -v for details)"
    write_stderr(f"{PROG}: internal error: {type(exc).__name__}: {redact_text(str(exc))}{detail}")
    return EXIT_ERROR


def _usage_message(exc: Exception) -> str:
    """A parser error as one line, pointing at the right --help."""
    message = _numeric(exc) or _readable(" ".join(_click_message(exc).split()))
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None) or PROG
    return f"{message} (see '{path} --help')"


def _readable(message: str) -> str:
    """typer's wording of a bad choice as a person would say it.

    "Value error, 'v3' is not one of 'v1', 'v2'." becomes "'v3' (choose v1 or v2)".
    """
    import re

    choice = re.search(r"Value error, (.+?) is not one of ((?:'[^']*'(?:, )?)+)\.?$", message)
    if choice is None:
        return message.replace("Value error, ", "")
    names = re.findall(r"'([^']*)'", choice.group(2))
    listed = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else "".join(names)
    return f"{message[: choice.start()]}{choice.group(1)} (choose {listed})"


#: The parser's number checks (pydantic error types) → what the value must be.
_MUST_BE: Final = {
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
}


def _numeric(exc: Exception) -> str | None:
    """A bad number as "Invalid value for '--x': '0' (must be at least 1)", or None.

    typer checks numbers with pydantic and words the result for a developer
    ("Input should be greater than or equal to 1"); its cause says exactly
    what was given and what was expected.
    """
    errors = getattr(exc.__cause__, "errors", None)
    hint = getattr(exc, "param_hint", None) or getattr(getattr(exc, "param", None), "opts", None)
    if not callable(errors) or not hint:
        return None
    try:
        (error,) = errors()
        bounds = {name: f"{bound:g}" for name, bound in error.get("ctx", {}).items()}
        must = _MUST_BE[error["type"]].format(**bounds)
        given = error["input"]
    except (KeyError, ValueError, TypeError, IndexError):
        return None
    option = hint if isinstance(hint, str) else "/".join(hint)
    if not option.startswith("'"):
        option = f"'{option}'"
    return f"Invalid value for {option}: {given!r} ({must})"


def _click_message(exc: Exception) -> str:
    format_message = getattr(exc, "format_message", None)
    return str(format_message() if callable(format_message) else exc)


def _print_error(message: str) -> None:
    from evalctl._cli._logging import redact_text, write_stderr

    write_stderr(f"{PROG}: error: {redact_text(message)}")


def _show_warnings_as_lines() -> None:
    """Warnings (the deprecated integer id) as one ``evalctl: warning:`` line each, once."""
    # "always" here, de-duplicated in _show_warning: the C implementation of
    # "once" keys its registry per module, and the same warning may be raised
    # from several (the batch's reader, `status`, the library).
    warnings.filterwarnings("always", category=DeprecationWarning, module=r"evalctl(\.|$)")
    warnings.filterwarnings(
        "always", message=r"integer evaluation id", category=DeprecationWarning
    )
    warnings.showwarning = _show_warning


_shown_warnings: set[str] = set()


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    text = " ".join(str(message).split()) or category.__name__
    if _globals.quiet or text in _shown_warnings:
        return
    _shown_warnings.add(text)
    from evalctl._cli._logging import redact_text, write_stderr

    write_stderr(f"{PROG}: warning: {redact_text(text)}")
