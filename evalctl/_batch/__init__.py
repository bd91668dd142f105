"""Batch: many tasks at once, paced, with a crash-safe journal.

May import: `_client`, `_core`, `_wire`, `_safety`, `_base`.
"""
