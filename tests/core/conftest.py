"""The axes of the core suite: flavour (sync | async) × api (v1 | v2) (see `core.axes`)."""

from __future__ import annotations

from core.axes import api, client, flavour

__all__ = ["api", "client", "flavour"]
