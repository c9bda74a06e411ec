"""Helpers for messages about names (tasks, methods, config keys, metrics). This module imports
no other ``clue`` module, so config, tasks and tune can all use it without an import cycle
(tests/test_imports.py checks there is none)."""

import difflib


def suggest(name, known):
    """' (did you mean X?)' for the closest of ``known`` to ``name``, or ''."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def matched_method(method):
    """The method a random-mask control is matched to, whose mask sizes and tuned setting it takes:
    CLUE for ``random``, the localizer for ``random-<localizer>``; None for any other row."""
    if method == "random":
        return "clue"
    return method.partition("-")[2] if method.startswith("random-") else None


def tuned_from(row):
    """The methods whose tuned setting a Table 1 row trains with, the first one tuned wins: a
    control its matched method's (a control is never tuned itself), a variant such as
    clue-membership its own, then its method's."""
    matched = matched_method(row)
    return [matched] if matched else list(dict.fromkeys([row, row.split("-")[0]]))
