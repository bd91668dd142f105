"""Every default and limit of the emulator, in one block, so signatures never repeat them."""

from __future__ import annotations

from typing import Final

# Fake credentials. They open nothing but the emulator, so printing them is fine.
DEFAULT_AK: Final = "emulator-ak"
DEFAULT_SK: Final = "emulator-sk"

# Fake judge-model app credentials served inside `evalStandardConf` of tasks
# that include the `model` mode. Tests assert they never leak, so they are
# recognisable (SECRET) and per-emulator configurable.
DEFAULT_APP_AK: Final = "emu-app-ak-SECRET-3f9c2a71"
DEFAULT_APP_SK: Final = "emu-app-sk-SECRET-b8e4d056"
DEFAULT_APP_ID: Final = 1207

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 0  # 0: let the OS pick a free port

# How long a stopped task stays `Stopping` before it reads as `Stopped`.
DEFAULT_STOP_DELAY_S: Final = 0.2
# How long the `slow` fault holds a response: longer than any sane test timeout.
DEFAULT_SLOW_S: Final = 5.0
# The `Retry-After` value of an injected HTTP 429.
DEFAULT_RETRY_AFTER: Final = "1"

# BCE accepts signatures dated at most this far in the future.
MAX_CLOCK_SKEW_S: Final = 15 * 60

# The QPS limit counts requests over this sliding window.
QPS_WINDOW_S: Final = 1.0

# v2 DescribeEvalTasks paging.
DEFAULT_PAGE_SIZE: Final = 10
MAX_PAGE_SIZE: Final = 100

# HTTP plumbing.
IDLE_TIMEOUT_S: Final = 15.0  # a keep-alive connection idle this long is closed
MAX_BODY_BYTES: Final = 1 << 20
ACCEPT_BACKLOG: Final = 128  # batch tests open many connections at once
JOIN_TIMEOUT_S: Final = 5.0  # per thread, on close
SERVER_HEADER: Final = "QianfanConsoleEmulator/1.0"
FOREGROUND_WAKE_S: Final = 0.5  # how often `run_foreground` looks up from its wait
