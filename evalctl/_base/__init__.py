"""Base: the API facts, ids, the task model, errors, settings, credentials, redaction, events.

May import: nothing else of evalctl.
"""
