"""`import evalctl` keeps qianfan's import-time redis notice out of the user's output — only that.

Run in fresh interpreters: the notice fires once per process, when qianfan is
first imported (this test process filtered it long ago, in conftest).
"""

from __future__ import annotations

import logging
import subprocess
import sys

from evalctl._client import _sdknotice

# As in a project without redis-py (the SDK's usual case; the test extra
# installs it for the shared rate limit, which would silence the SDK).
SCRIPT = """\
import sys
sys.modules["redis"] = None
import logging
logging.basicConfig(level=logging.INFO, format="%(name)s|%(message)s")
{import_evalctl}
import qianfan
logging.getLogger("qianfan").warning("a warning of the SDK")
logging.getLogger("app").info("the app's own info")
root = logging.getLogger()
print(len(root.filters), len(root.handlers), root.level, len(logging.getLogger("qianfan").filters))
"""


def run(import_evalctl: bool) -> subprocess.CompletedProcess[str]:
    source = SCRIPT.format(import_evalctl="import evalctl" if import_evalctl else "")
    return subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, timeout=60, check=False
    )


def test_import_evalctl_drops_the_redis_notice_and_nothing_else() -> None:
    """No notice; the SDK's other warnings and the app's own records still print; root untouched."""
    done = run(import_evalctl=True)

    assert done.returncode == 0, done.stderr
    assert "no redis" not in done.stderr.lower()
    assert "qianfan|a warning of the SDK" in done.stderr
    assert "app|the app's own info" in done.stderr
    assert done.stdout == f"0 1 {logging.INFO} 1\n"


def test_without_evalctl_the_sdk_prints_the_notice() -> None:
    """The control: the same script without `import evalctl` shows the notice."""
    done = run(import_evalctl=False)

    assert done.returncode == 0, done.stderr
    assert "no redis installed" in done.stderr.lower()  # "No" since 0.4.12
    assert done.stdout == f"0 1 {logging.INFO} 0\n"


def record(name: str, message: str, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_the_filter_drops_exactly_the_sdks_notice() -> None:
    """The notice on `qianfan` is dropped; the same words elsewhere, or other records, are not."""
    notice = "No redis installed, RedisRateLimiter unavailable."
    keep = _sdknotice.RedisNoticeFilter().filter

    assert keep(record("qianfan", notice)) is False
    assert keep(record("qianfan", "no redis installed, RedisRateLimiter unavailable")) is False
    assert keep(record("app", notice)) is True
    assert keep(record("qianfan", "console api request failed")) is True


def test_installing_twice_adds_one_filter() -> None:
    """`import evalctl` and the plugin both install it; the logger holds it once."""
    _sdknotice.install()
    _sdknotice.install()

    filters = logging.getLogger("qianfan").filters
    assert sum(isinstance(f, _sdknotice.RedisNoticeFilter) for f in filters) == 1
