"""Wire: the one send function: sign, stop guard, HTTP, read the reply.

May import: `_safety`, `_base`.
"""
