"""CLI: the `evalctl` command line, a thin layer over the public API.

May import: `_batch`, `_client`, `_base`, `evalctl.emulator` (for `evalctl demo`/`emulator`).
"""
