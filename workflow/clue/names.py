"""Helpers for messages about names (tasks, methods, config keys, metrics). This module imports
no other ``clue`` module, so config, tasks and tune can all use it without an import cycle
(tests/test_imports.py checks there is none)."""

import difflib


def suggest(name, known):
    """' (did you mean X?)' for the closest of ``known`` to ``name``, or ''."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""
