"""Safety: every rule of "may this task be stopped" (read, assess, decide) and the stop guard.

No I/O. May import: `_base`.
"""
