"""Keys pasted with a smart quote, a BOM, a line break or a space: exit 2, one line, nothing sent.

Through the console script (environment variables) and the library (the
`ak`/`sk` arguments), against the emulator, which must receive no request
at all. The line names the variable and what is wrong, never the key; no
traceback frame of the library's error holds either key. The console script
runs in processes forked from a zygote that has imported the SDK (`forkserver`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import forkserver
import pytest
from secret_scan import Needles, leaking_locals, shown

import evalctl
from evalctl.emulator import Emulator, pointed_at, sdk_environment

AK = "AKbk6Wz1Qm9Lt4Rx"
SK = "SKbk2Hp7Vc5Nd8Gf"
EVALCTL = Path(sys.executable).with_name("evalctl")
_HINT = (
    " a key is printable ASCII without spaces (was it pasted with a quote, a BOM or a line break?)"
)

#: (name, QIANFAN_ACCESS_KEY, QIANFAN_SECRET_KEY, the one line expected on stderr)
CLI_CASES = [
    (
        "smart quotes around the AK",
        f"\u201c{AK}\u201d",
        SK,
        "evalctl: error: QIANFAN_ACCESS_KEY contains a smart quote (U+201C) at its start;" + _HINT,
    ),
    (
        "a BOM before the SK",
        AK,
        f"\ufeff{SK}",
        "evalctl: error: QIANFAN_SECRET_KEY contains a byte-order mark (BOM) (U+FEFF) at its start;"
        + _HINT,
    ),
    (
        "CR LF after the AK",
        f"{AK}\r\n",
        SK,
        "evalctl: error: QIANFAN_ACCESS_KEY contains a carriage return (U+000D)"
        " at position 17 of 18;" + _HINT,
    ),
    (
        "LF after the SK",
        AK,
        f"{SK}\n",
        "evalctl: error: QIANFAN_SECRET_KEY contains a line break (U+000A) at its end;" + _HINT,
    ),
    (
        "a trailing space after the AK",
        f"{AK} ",
        SK,
        "evalctl: error: QIANFAN_ACCESS_KEY contains a space (U+0020) at its end;" + _HINT,
    ),
    (
        "a space inside the SK",
        AK,
        f"{SK[:8]} {SK[8:]}",
        "evalctl: error: QIANFAN_SECRET_KEY contains a space (U+0020) at position 9 of 17;" + _HINT,
    ),
    (
        "only the AK set",
        AK,
        None,
        "evalctl: error: no secret key: set QIANFAN_SECRET_KEY (or pass the sk argument);"
        " the access key is set (QIANFAN_ACCESS_KEY)",
    ),
    (
        "only the SK set",
        None,
        SK,
        "evalctl: error: no access key: set QIANFAN_ACCESS_KEY (or pass the ak argument);"
        " the secret key is set (QIANFAN_SECRET_KEY)",
    ),
]


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[Emulator]:
    """One emulator with the right keys for the module, qianfan pointed at it."""
    with Emulator(ak=AK, sk=SK) as started, pointed_at(started):
        yield started


def _cli(
    emulator: Emulator, ak: str | None, sk: str | None, home: Path
) -> subprocess.CompletedProcess[str]:
    home.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("QIANFAN_", "EVALCTL_"))},
        **sdk_environment(emulator),
        "HOME": str(home),
        "EVALCTL_TESTING": "1",
    }
    for name, value in (("QIANFAN_ACCESS_KEY", ak), ("QIANFAN_SECRET_KEY", sk)):
        if value is None:
            env.pop(name)
        else:
            env[name] = value
    return forkserver.run(
        [str(EVALCTL), "cancel", "ame-badkeys1", "ame-badkeys2"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )


def test_a_bad_or_missing_key_in_the_environment_is_one_line_exit_2_nothing_sent(
    tmp_path: Path,
) -> None:
    """Each case: exit 2, exactly the expected line, empty stdout, no request at the emulator."""
    with Emulator(ak=AK, sk=SK) as emulator:
        emulator.add_task("ame-badkeys1")
        emulator.add_task("ame-badkeys2")
        with ThreadPoolExecutor(max_workers=2) as pool:
            runs = list(
                pool.map(
                    lambda c: _cli(emulator, c[1], c[2], tmp_path / f"case{CLI_CASES.index(c)}"),
                    CLI_CASES,
                )
            )
        received = emulator.requests

    assert [
        (c[0], r.returncode, r.stderr, r.stdout) for c, r in zip(CLI_CASES, runs, strict=True)
    ] == [(c[0], 2, c[3] + "\n", "") for c in CLI_CASES]
    assert received == []
    needles = Needles((AK, SK), SK)
    assert needles.leaks({c[0]: r.stderr for c, r in zip(CLI_CASES, runs, strict=True)}) == {}


@pytest.mark.parametrize(
    ("ak", "sk", "named"),
    [
        (f"{AK}\u2019", SK, "the ak argument contains a smart quote (U+2019) at its end"),
        (
            AK,
            f"\ufeff{SK}",
            "the sk argument contains a byte-order mark (BOM) (U+FEFF) at its start",
        ),
        (f"{AK}\r", SK, "the ak argument contains a carriage return (U+000D) at its end"),
        (AK, f" {SK}", "the sk argument contains a space (U+0020) at its start"),
    ],
    ids=["smart quote", "BOM", "CR", "leading space"],
)
@pytest.mark.parametrize("api", ["v1", "v2"])
def test_a_bad_key_argument_is_a_configuration_error_before_anything_is_sent(
    shared_emulator: Emulator, ak: str, sk: str, named: str, api: str
) -> None:
    """`cancel_eval_task(ak=…, sk=…)`: an error naming the argument; no frame holds a key."""
    emulator = shared_emulator
    emulator.clear_requests()
    task = emulator.add_task()
    with pytest.raises(evalctl.ConfigurationError) as raised:
        evalctl.cancel_eval_task(task, api=api, ak=ak, sk=sk)  # type: ignore[arg-type]

    assert emulator.requests == []
    assert str(raised.value).startswith(named)
    needles = Needles((AK, SK), SK)
    error = raised.value
    # The test's own frame holds the keys it passed: start at the library's first frame.
    tb = error.__traceback__
    while tb is not None and "/evalctl/" not in tb.tb_frame.f_code.co_filename:
        tb = tb.tb_next
    error = error.with_traceback(tb)
    assert leaking_locals(error, needles) == set()
    assert needles.leaks({"shown": "\n".join(shown(error))}) == {}
