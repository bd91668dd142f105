"""Behaviour tests of the core library, run for sync | async × v1 | v2 from one suite."""
