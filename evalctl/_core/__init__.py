"""Core: operations as generators (every decision, no I/O), their drivers, options and pacing.

May import: `_wire`, `_safety`, `_base`.
"""
