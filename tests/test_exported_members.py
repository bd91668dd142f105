"""The package's public surface: what the contract promises is there, and stays light."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import evalctl

#: The names ../shared/CONTRACT.md promises under `import evalctl`.
CONTRACT_NAMES = {
    "call_action",
    "acall_action",
    "cancel_eval_task",
    "acancel_eval_task",
    "describe_eval_task",
    "RetryPolicy",
    "CancelResult",
    "EvalTask",
    "EvalctlError",
    "InvalidTaskIdError",
    "ManualEvaluationError",
    "PrecheckError",
    "TaskNotFoundError",
    "CancelRejectedError",
    "RetryExhaustedError",
    # Round 2 additions.
    "guard",
    "unguard",
    "list_eval_tasks",
    "alist_eval_tasks",
}


def test_every_contract_name_is_exported() -> None:
    """Internal tooling imports these by name: none may go missing from `__all__`."""
    assert CONTRACT_NAMES - set(evalctl.__all__) == set()


def test_every_exported_name_resolves_and_all_is_sorted() -> None:
    """`__all__` lists only names that exist, once each, in order."""
    assert evalctl.__all__ == sorted(set(evalctl.__all__))
    for name in evalctl.__all__:
        assert getattr(evalctl, name) is not None, name


def test_version_matches_the_package_metadata() -> None:
    """`evalctl.__version__` is the installed distribution's version, not a second copy."""
    assert evalctl.__version__ == version("evalctl")


def test_every_error_is_a_qianfan_error_with_an_exit_code() -> None:
    """`except QianfanError` keeps working, and the CLI finds each error's exit code on it."""
    from qianfan.errors import QianfanError

    errors = [getattr(evalctl, n) for n in evalctl.__all__ if n.endswith("Error")]
    assert errors
    for error in errors:
        assert issubclass(error, QianfanError), error
        assert isinstance(error.exit_code, int), error


def test_importing_the_package_does_not_import_the_sdk() -> None:
    """`import evalctl` stays cheap (the CLI's --help relies on it); the SDK loads on use."""
    code = "import sys, evalctl; print('qianfan' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"
