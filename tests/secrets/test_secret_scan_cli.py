"""The secret scan, through the `evalctl` console script against a hostile server.

Each run's stdout (human and `--json`), stderr (console and JSON logs, up to
`-vv`, which includes the SDK's own debug lines) and the batch journal must
hold no 10-character window of a sentinel key or app key, no signature or
signing key of any request, no unmasked ``bce-auth-v1/`` value — whatever
the server echoed, in whichever spelling. The runs are processes forked from
a zygote that has imported the SDK (`forkserver`).
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import forkserver
import pytest
from secret_hostile import SPELLINGS, HostileServer
from secret_scan import Needles

from evalctl.emulator import sdk_environment

AK = "AKcl5Rq2Wn8Lz3Tx"
SK = "SKcl9Gv4Hm1Pd6Yb"
APP_AK = "APcl3Kx7Qs0Lw5Ne"
APP_SK = "APcl8Tf2Vb6Hr1Mc"
EVALCTL = Path(sys.executable).with_name("evalctl")
_IDS = itertools.count(1)
#: (detail answer, stop answer) of each task a run cancels; the first teaches the app keys.
#: Then one whose detail gets HTTP 403. The spellings rotate: the runs meet all of them.
KINDS = [
    ("detail", "stop-ok"),
    ("envelope", "stop-ok"),
    ("bce-400", "stop-ok"),
    ("bce-503", "stop-ok"),
    ("html-502", "stop-ok"),
    ("not-json", "stop-ok"),
    ("detail", "stop-refused"),
    ("detail", "bce-500"),
    ("detail", "not-json"),
]
RUNS = [
    ("cancel --json -vv, v1", ["cancel", "--json", "-vv"], {}),
    ("cancel -v, JSON logs, v2", ["cancel", "-v", "--api", "v2"], {"EVALCTL_LOG_FORMAT": "json"}),
    ("status --json -vv, v1", ["status", "--json", "-vv"], {}),
    ("cancel, quiet defaults, v2", ["cancel", "--api", "v2"], {}),
]


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    with HostileServer(AK, SK, APP_AK, APP_SK) as started:
        yield started


def _run(server: HostileServer, index: int, home: Path) -> dict[str, str]:
    """One CLI run over one task per answer kind, the spellings rotated; its outputs."""
    name, args, extra_env = RUNS[index]
    names = list(SPELLINGS)
    ids = [
        server.plan(f"ame-cli{next(_IDS)}", detail, stop, names[(i + 10 * index) % len(names)])
        # Refused keys end a batch (every further request would fail alike): last.
        for i, (detail, stop) in enumerate([*KINDS, ("bce-403", "stop-ok")])
    ]
    home.mkdir()
    journal = home / "journal.jsonl"
    journalled = ["--journal", str(journal)] if args[0] == "cancel" else []
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("QIANFAN_", "EVALCTL_"))},
        **sdk_environment(server),
        "HOME": str(home),
        "EVALCTL_TESTING": "1",
        "NO_COLOR": "1",
        **extra_env,
    }
    done = forkserver.run(
        [str(EVALCTL), *args, *journalled, "--concurrency", "1", "--max-attempts", "2", *ids]
        if args[0] == "cancel"
        else [str(EVALCTL), *args, *ids],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=90,
        check=False,
    )
    assert done.returncode not in (0, 2), (name, done.returncode, done.stderr[-1500:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return {
        f"{name}: stdout": done.stdout,
        f"{name}: stderr": done.stderr,
        f"{name}: journal": journal.read_text(encoding="utf-8") if journal.exists() else "",
    }


def test_no_secret_leaves_the_command_line_whatever_the_server_echoes(
    server: HostileServer, tmp_path: Path
) -> None:
    """stdout, stderr and the journal of every run hold no secret in any spelling."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        outputs = list(pool.map(lambda i: _run(server, i, tmp_path / f"run{i}"), range(len(RUNS))))
    sources = {name: text for output in outputs for name, text in output.items()}

    needles = Needles((AK, SK, APP_AK, APP_SK), SK)
    needles.learn(server.authorizations())
    assert len(server.received) >= len(RUNS) * (len(KINDS) + 1)  # every task met the server
    assert len(RUNS) * (len(KINDS) + 1) >= len(SPELLINGS)
    assert any("sdk.log" in text for name, text in sources.items() if "-vv" in name)
    leaks = needles.leaks(sources)
    assert leaks == {}, "\n".join(f"{name}: {hits[:3]!r}" for name, hits in leaks.items())


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_the_scan_sees_through_every_spelling_the_server_uses(spelling: str) -> None:
    """The detector itself: each spelling of a key, a signature and a signing key is caught."""
    authorization = f"bce-auth-v1/{AK}/2026-12-01T10:00:00Z/1800/host/{'5e' * 32}"
    needles = Needles((AK, SK, APP_AK, APP_SK), SK)
    needles.learn([authorization])
    spell = SPELLINGS[spelling]
    digest_only = Needles((), SK)
    digest_only.learn([authorization])

    for secret in (APP_SK, authorization):
        assert needles.leaks({"text": f"x {spell(secret)} y"}) != {}, secret
    assert digest_only.leaks({"text": f"sig {'5e' * 32}"}) != {}
    assert needles.leaks({"text": "x bce-auth-v1/*** y *** z"}) == {}
