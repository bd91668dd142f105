"""The package's layout is its architecture: layer folders, imports only downwards.

    _cli ──► _batch ──► _client ──► _core ──► _wire ──► _safety ──► _base
    (the CLI skips the layers below the public API; the emulator needs only `_base`)

An AST scan of every module, imports inside functions and `TYPE_CHECKING`
blocks included: each folder imports only the folders its `__init__`
docstring names on its "May import:" line, and that line is the table here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import evalctl

PACKAGE = Path(evalctl.__file__).parent

#: folder → the folders its modules may import (besides their own).
MAY_IMPORT: dict[str, frozenset[str]] = {
    "_base": frozenset(),
    "_safety": frozenset({"_base"}),
    "_wire": frozenset({"_safety", "_base"}),
    "_core": frozenset({"_wire", "_safety", "_base"}),
    "_client": frozenset({"_core", "_wire", "_safety", "_base"}),
    "_batch": frozenset({"_client", "_core", "_wire", "_safety", "_base"}),
    "_cli": frozenset({"_batch", "_client", "_base", "emulator"}),
    "emulator": frozenset({"_base"}),
}
#: Modules above the layers: the public names, `python -m evalctl`, the testing
#: mode, and the emulator's pytest plugin (it turns the guard on for a session).
TOP = {"evalctl", "evalctl.__main__", "evalctl.testing", "evalctl.emulator.pytest_plugin"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(tree: ast.AST, module: str) -> set[str]:
    """Every evalctl module `tree` imports, as dotted names (submodules of `from` included)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "evalctl")
        elif isinstance(node, ast.ImportFrom):
            # Absolute imports only, so that this scan reads every one the same way.
            assert node.level == 0, f"{module}: relative import at line {node.lineno}"
            target = node.module or ""
            if target.split(".")[0] != "evalctl":
                continue
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names if a.name.startswith("_"))
    return found


def _folder(module: str) -> str | None:
    """The layer folder of a dotted evalctl module name; None for the top package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in MAY_IMPORT else None


def _modules() -> dict[str, ast.AST]:
    return {
        _module_name(path): ast.parse(path.read_text(encoding="utf-8"), str(path))
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def test_every_import_goes_to_the_same_folder_or_one_it_may_import() -> None:
    """No module imports upwards, sideways into a folder not on its list, or the top package."""
    violations = []
    checked = 0
    for module, tree in _modules().items():
        if module in TOP:
            continue
        folder = _folder(module)
        assert folder is not None, f"{module} lives outside every layer folder"
        for target in sorted(_imported(tree, module)):
            checked += 1
            other = _folder(target)
            if other is None:
                violations.append(f"{module} imports the top package ({target})")
            elif other != folder and other not in MAY_IMPORT[folder]:
                violations.append(f"{module} ({folder}) imports {target} ({other})")
    assert violations == []
    assert checked > 150  # the scan saw the package's imports, not an empty tree


def test_no_private_module_lives_outside_the_layer_folders() -> None:
    """Opening `evalctl/` shows the architecture: the public surface, then one folder per layer."""
    top_level = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top_level == ["__init__.py", "__main__.py", "testing.py"]
    folders = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert folders == sorted(MAY_IMPORT)


@pytest.mark.parametrize("folder", sorted(MAY_IMPORT))
def test_each_folder_says_what_it_is_and_what_it_may_import(folder: str) -> None:
    """The `__init__` docstring's "May import:" line is exactly this test's table."""
    tree = ast.parse((PACKAGE / folder / "__init__.py").read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree)
    assert doc is not None
    assert doc.splitlines()[0].strip()
    line = re.search(r"May import: ([^\n]*(?:\n[^\n]+)*)", doc)
    assert line is not None, f"{folder}/__init__.py names no 'May import:'"
    named = set(re.findall(r"`(_[a-z]+|emulator)`", line.group(1).split(";")[0]))
    named |= {"emulator"} & set(re.findall(r"`evalctl\.(emulator)`", line.group(1)))
    assert named == MAY_IMPORT[folder]


def test_the_scan_sees_an_upward_import() -> None:
    """Control: the scan reports a wire module that imports the core, and the top package."""
    tree = ast.parse(
        "def f():\n    from evalctl._core import _runner\n    import evalctl\n"
    )
    imported = _imported(tree, "evalctl._wire._transport")
    assert {_folder(t) for t in imported} == {"_core", None}
