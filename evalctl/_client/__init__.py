"""Client: the public single-task API, listing, and the drop-in for qianfan projects.

May import: `_core`, `_wire`, `_safety`, `_base`.
"""
