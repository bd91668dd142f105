"""Start-up: `evalctl --help` and `evalctl --version` against `python -c "import qianfan"`.

Each command runs as a fresh subprocess; the three alternate in a rotating
order so a busy moment of the machine hits all of them. Target: median
ratio ≤ 1.2 (evalctl must import lazily what `--help` does not need). On a
miss it prints, as `#` lines, the heaviest imports of the slow command
(`python -X importtime`), which is where the time goes.

    python benchmarks/bench_startup.py [--quick] [--n N]
"""

from __future__ import annotations

import subprocess
import sys
from typing import Final

import _common

TARGET: Final = 1.2
N: Final = 15
QUICK_N: Final = 3
_SHOWN_IMPORTS: Final = 8


def main() -> None:
    args = _common.arguments(__doc__ or "", n=N, quick_n=QUICK_N, n_help="runs per command")
    _common.header(
        "bench_startup",
        f"median wall time of {args.n} fresh subprocess runs per command, rotating order",
    )
    evalctl = _common.evalctl_command()
    commands = {
        "evalctl --help": [*evalctl, "--help"],
        "evalctl --version": [*evalctl, "--version"],
        "import qianfan": [sys.executable, "-c", "import qianfan"],
    }
    names = list(commands)
    if not args.quick:
        for argv in commands.values():  # warm-up: compiled bytecode, page cache
            _common.run_wall(argv)
    walls: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(args.n):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            walls[name].append(_common.run_wall(commands[name]))
    baseline = _common.median(walls["import qianfan"])
    for name in ("evalctl --help", "evalctl --version"):
        ours = _common.median(walls[name])
        _common.ratio_line(
            f"start-up {name} median",
            ours,
            baseline,
            target=TARGET,
            theirs_label="import qianfan",
        )
        if ours / baseline > TARGET:
            explain(commands[name])


def explain(argv: list[str]) -> None:
    """Print the heaviest top-level imports of `argv` (a Python console script)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, check=False
    )
    top: list[tuple[int, str]] = []
    imports_qianfan = False
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.removeprefix("import time:").split("|", 2)
        if not cumulative.strip().isdigit():
            continue  # the column titles
        imports_qianfan = imports_qianfan or name.strip().split(".")[0] == "qianfan"
        if not name.startswith("  "):  # top level: one space of indent
            top.append((int(cumulative), name.strip()))
    top.sort(reverse=True)
    shown = ", ".join(f"{module} {micros / 1000:.0f} ms" for micros, module in top[:_SHOWN_IMPORTS])
    print(f"#   heaviest imports of `{' '.join(argv[-1:])}`: {shown}", flush=True)
    print(f"#   imports qianfan at start-up: {'yes' if imports_qianfan else 'no'}", flush=True)


if __name__ == "__main__":
    main()
