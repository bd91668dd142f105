"""Nothing but the wire reaches the network: one module imports an HTTP client."""

from __future__ import annotations

import ast
from pathlib import Path

import evalctl

PACKAGE = Path(evalctl.__file__).parent
CLIENTS = ("requests", "aiohttp", "urllib3", "httpx", "http.client", "urllib.request", "socket")
ALLOWED = {PACKAGE / "_wire" / "_transport.py"}  # and the emulator: it is the server side


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _is_client(module: str) -> bool:
    return any(module == c or module.startswith(c + ".") for c in CLIENTS)


def test_only_the_wire_imports_an_http_client() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(m for m in _imports(path) if _is_client(m))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path not in ALLOWED and "emulator" not in path.relative_to(PACKAGE).parts
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}
    assert any(_is_client(m) for m in _imports(PACKAGE / "_wire" / "_transport.py"))
