"""evalctl uses no private qianfan name: the SDK can change them in any release.

An AST scan of every module under `evalctl/`: no `_name` imported from a
qianfan module (nor a private qianfan submodule), and no `_name` attribute
read on anything that came from qianfan — a module, a class, or an object
built or returned by one (one assignment deep, which is how such code reads).
"""

from __future__ import annotations

import ast
from pathlib import Path

import evalctl

PACKAGE = Path(evalctl.__file__).parent


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_qianfan(module: str | None) -> bool:
    return module is not None and (module == "qianfan" or module.startswith("qianfan."))


def _root(node: ast.AST) -> str | None:
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def violations(source: str, filename: str) -> list[str]:
    tree = ast.parse(source, filename)
    found: list[str] = []
    tainted: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and _is_qianfan(node.module):
            assert node.module is not None
            for part in node.module.split("."):
                if _private(part):
                    found.append(f"{filename}:{node.lineno} imports from {node.module}")
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{filename}:{node.lineno} imports {alias.name}")
                tainted.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _is_qianfan(alias.name):
                    if any(_private(part) for part in alias.name.split(".")):
                        found.append(f"{filename}:{node.lineno} imports {alias.name}")
                    tainted.add(alias.asname or alias.name.split(".")[0])
    # Objects made from qianfan names (config = get_config(), r = QfRequest(...)).
    for node in ast.walk(tree):
        is_assign = isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None
        if is_assign and _root(node.value) in tainted:  # type: ignore[union-attr]
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]  # type: ignore[union-attr]
            tainted.update(t.id for t in targets if isinstance(t, ast.Name))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) and _root(node) in tainted:
            found.append(f"{filename}:{node.lineno} reads .{node.attr} of {_root(node)}")
    return found


def test_no_module_of_evalctl_uses_a_private_qianfan_name() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 20  # the scan sees the package
    found = [v for path in modules for v in violations(path.read_text(), str(path))]
    assert found == []


def test_the_scan_catches_each_kind_of_private_use() -> None:
    """The scanner itself: every way of reaching a private name is reported."""
    source = "\n".join(
        [
            "from qianfan.resources.console.utils import _get_console_v2_query",
            "from qianfan.resources.requestor.console_requestor import ConsoleAPIRequestor",
            "import qianfan._private_module",
            "from qianfan import get_config",
            "import qianfan.resources as res",
            "config = get_config()",
            "config._hidden",
            "res.typing._thing",
            "ConsoleAPIRequestor(x=1)._sign(None, 'a', 'b')",
            "requests_session._not_qianfan",  # not from qianfan: allowed
            "get_config().__class__",  # dunder: allowed
        ]
    )

    found = violations(source, "sample.py")

    assert sorted(line.split(" ", 1)[1] for line in found) == sorted(
        [
            "imports _get_console_v2_query",
            "imports qianfan._private_module",
            "reads ._hidden of config",
            "reads ._thing of res",
            "reads ._sign of ConsoleAPIRequestor",
        ]
    )


def test_the_wire_does_not_use_the_sdk_requestor() -> None:
    """Signing and sending are evalctl's own: no SDK requestor or HTTP client in the wire,
    and no evalctl class derives from the SDK's requestor (the guard may patch it)."""
    wire = PACKAGE / "_wire" / "_transport.py"
    for node in ast.walk(ast.parse(wire.read_text(), str(wire))):
        if isinstance(node, ast.ImportFrom) and node.module:
            assert not node.module.startswith("qianfan.resources.requestor"), node.module
            assert node.module != "qianfan.resources.http_client", node.module
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(base) for base in node.bases]
                assert not any("Requestor" in base for base in bases), (path, node.name)
