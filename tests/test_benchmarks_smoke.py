"""Each benchmark script starts, runs at a tiny size, and prints its figure lines.

The benchmarks themselves are not tests (`make bench` runs them); this only
guards against a script rotting: it must exit 0 and print every figure it
promises in the ``<figure>: ... ratio Z ...`` form that `run_all.py` collects.
Each script runs as ``python SCRIPT``, in a process forked from a zygote that
has imported the SDK (`forkserver`); what the scripts start themselves
(`bench_startup`'s console scripts, `bench_batch`'s processes) starts afresh.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import forkserver
import pytest

BENCHMARKS: Final = Path(__file__).resolve().parent.parent / "benchmarks"

#: A figure line: a name, values, the ratio, then a verdict or "(info)".
RATIO_LINE: Final = re.compile(
    r"^(?P<figure>[^:#][^:]*): .*\bratio (?P<ratio>\d+\.\d{3})\b.*(?:\) (?:OK|MISS)|\(info\))$"
)
THROUGHPUT_LINE: Final = re.compile(r"^(?P<figure>emulator throughput [^:]+): \d+ req/s$")

_OVERHEAD = ("call_action detail median", "call_action detail p95")
_CANCEL = ("cancel path median", "cancel path p95")

#: script → (arguments after --quick, the figures it must print, in order).
SCRIPTS: Final[dict[str, tuple[list[str], list[str]]]] = {
    "bench_overhead.py": (
        ["--n", "10"],
        [
            *_OVERHEAD,
            "call_action detail client CPU median",
            *(f"{name}, INFO logs rendered" for name in _OVERHEAD),
            "call_action detail client CPU median, INFO logs rendered",
            "pooled drop-in call_action detail median",
            "pooled drop-in client CPU per request",
            "one qianfan.request event",
        ],
    ),
    "bench_cancel.py": (
        ["--n", "10"],
        [
            *_CANCEL,
            "cancel path client CPU median",
            *(f"{name}, INFO logs rendered" for name in _CANCEL),
            "cancel path client CPU median, INFO logs rendered",
        ],
    ),
    "bench_startup.py": (
        ["--n", "1"],
        ["start-up evalctl --help median", "start-up evalctl --version median"],
    ),
    "bench_memory.py": (
        ["--n", "50"],
        ["peak RSS dry-run 50 vs 5 ids", "dry-run elapsed"],
    ),
    "bench_redact.py": (
        ["--n", "60"],
        ["redact 60 planted values", "redact 60 planted values, escaped spellings"],
    ),
    "bench_list.py": (
        ["--n", "250"],
        ["list_eval_tasks paging", "alist_eval_tasks paging"],
    ),
}

#: Scripts whose figure names belong to another part of the project: script →
#: (arguments after --quick, the prefix of every figure name, how many at least).
OTHER_SCRIPTS: Final[dict[str, tuple[list[str], str, int]]] = {
    "bench_batch.py": (["--n", "20"], "batch ", 2),
}


class _Runs:
    """Every benchmark started at once (they mostly wait on I/O), collected on demand."""

    def __init__(self, scripts: dict[str, list[str]]) -> None:
        env = {k: v for k, v in os.environ.items() if k != "EVALCTL_TESTING"}
        self._children = {
            script: forkserver.Popen(
                [sys.executable, str(BENCHMARKS / script), "--quick", *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for script, args in scripts.items()
        }

    def result(self, script: str) -> subprocess.CompletedProcess[str]:
        child = self._children[script]
        stdout, stderr = child.communicate(timeout=120)
        return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)

    def close(self) -> None:
        for child in self._children.values():
            if child.poll() is None:
                child.kill()
            child.communicate()


@pytest.fixture(scope="module")
def runs() -> Iterator[_Runs]:
    """All the benchmark scripts, running in parallel at their quick sizes."""
    started = _Runs(
        {
            "bench_emulator.py": [],
            **{script: args for script, (args, _) in SCRIPTS.items()},
            **{script: args for script, (args, _, _) in OTHER_SCRIPTS.items()},
        }
    )
    try:
        yield started
    finally:
        started.close()


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_benchmark_prints_a_header_then_each_figure_with_its_ratio(
    runs: _Runs, script: str
) -> None:
    """A benchmark exits 0 at its quick size and prints every figure line with a ratio."""
    _, expected = SCRIPTS[script]

    done = runs.result(script)

    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"# {script.removesuffix('.py')}: "), lines[0]
    figures = [match for line in lines if (match := RATIO_LINE.match(line))]
    shown = [match["figure"].split(" (")[0] for match in figures]
    assert expected == shown, done.stdout
    assert all(float(match["ratio"]) > 0 for match in figures), done.stdout


@pytest.mark.parametrize("script", sorted(OTHER_SCRIPTS))
def test_other_benchmark_prints_its_figures_with_their_ratios(runs: _Runs, script: str) -> None:
    """A benchmark owned elsewhere exits 0 at a tiny size and prints ratio figure lines."""
    _, prefix, at_least = OTHER_SCRIPTS[script]

    done = runs.result(script)

    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"# {script.removesuffix('.py')}: "), lines[0]
    figures = [match for line in lines if (match := RATIO_LINE.match(line))]
    assert len(figures) >= at_least, done.stdout
    assert all(match["figure"].startswith(prefix) for match in figures), done.stdout
    assert all(float(match["ratio"]) > 0 for match in figures), done.stdout


def test_emulator_benchmark_prints_its_throughput_figures(runs: _Runs) -> None:
    """bench_emulator.py exits 0 at its quick size and prints throughput figures in req/s."""
    done = runs.result("bench_emulator.py")

    assert done.returncode == 0, done.stderr[-2000:]
    figures = [line for line in done.stdout.splitlines() if THROUGHPUT_LINE.match(line)]
    assert figures, done.stdout
