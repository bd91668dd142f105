"""Small helpers shared by the test modules (importable as `helpers`)."""

from __future__ import annotations

from typing import Any


def events(captured: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The captured structlog events called `name`, in order."""
    return [event for event in captured if event["event"] == name]
