"""Atomic writes and checked reads. A stage writes to a temporary path next to the target and
renames it into place, so an interrupted or failed stage never leaves a half-written artifact."""

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from clue.errors import ClueError


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary file path beside ``path``; rename it to ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary directory beside ``path``; replace ``path`` with it on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_json(path, obj):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_jsonl(path, records):
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            for r in records:
                f.write(json.dumps(r, sort_keys=True) + "\n")


def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ClueError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise ClueError(f"{path}: not valid JSON ({e})") from None


def read_jsonl(path, required=()):
    """Read JSON lines; every record must have the ``required`` fields (named in the error)."""
    records = []
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        raise ClueError(f"{path}: file not found") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ClueError(f"{path}:{lineno}: not valid JSON ({e})") from None
        missing = [k for k in required if k not in rec]
        if missing:
            raise ClueError(f"{path}:{lineno}: record is missing field(s) {', '.join(missing)}")
        records.append(rec)
    return records


def json_params(text, section):
    """A stage's ``--params``: its config section as a JSON object string."""
    try:
        params = json.loads(text) if text else {}
    except json.JSONDecodeError as e:
        raise ClueError(f"--params is not valid JSON ({e})") from None
    if not isinstance(params, dict):
        raise ClueError(f"--params must be a JSON object (the {section} config section)")
    return params


def with_defaults(params, defaults, section, *, strict):
    """A stage's config section merged over its ``defaults``. Unknown keys fail when ``strict``;
    otherwise they are warned about and dropped (a section may carry keys meant for the workflow)."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(defaults))
    if unknown and strict:
        raise ClueError(f"unknown {section} config key(s): {', '.join(unknown)} (known: {', '.join(sorted(defaults))})")
    if unknown:
        import sys

        print(f"clue {section}: warning: ignoring unknown {section} parameter(s) {', '.join(unknown)} "
              f"(known: {', '.join(defaults)})", file=sys.stderr)
    return {k: params.get(k, v) for k, v in defaults.items()}


def seeded_sample(records, n, rng, path):
    """At most ``n`` of ``records``, in file order: a sample drawn with ``rng`` (a ``random.Random``),
    not the head of the file, which may be sorted by topic. ``path`` names the file in errors."""
    if not records:
        raise ClueError(f"{path}: no records")
    if len(records) <= n:
        return records
    idx = sorted(rng.sample(range(len(records)), n))
    return [records[i] for i in idx]


def record_facts(record):
    """The facts a forget record states or asks: its ``facts`` list, or its one ``fact``."""
    return record.get("facts") or ([record["fact"]] if record.get("fact") is not None else [])


def sample_covering(records, n, rng, path, key="unlearn.max_forget_examples"):
    """At most ``n`` of ``records``, in file order, that together state every fact the records
    state (:func:`record_facts`): a forget set's training must cover every fact its test asks
    about, whatever the cap. In a seeded shuffle, each record that states a fact not yet covered
    is taken; the rest of the sample is filled from the same shuffle. Records without facts are
    sampled as :func:`seeded_sample` does. ClueError naming ``key`` when ``n`` is too small."""
    if not records:
        raise ClueError(f"{path}: no records")
    if not any(record_facts(r) for r in records):
        return seeded_sample(records, n, rng, path)
    if len(records) <= n:
        return records
    order = list(range(len(records)))
    rng.shuffle(order)
    covered, chosen = set(), []
    for i in order:
        new = set(record_facts(records[i])) - covered
        if new:
            covered |= new
            chosen.append(i)
    if len(chosen) > n:
        raise ClueError(f"config key {key}: {n} examples of {path} cannot cover its {len(covered)} facts (at least "
                        f"{len(chosen)} records are needed); a fact left out would be tested but never trained: "
                        f"raise {key} to {len(chosen)} or more")
    taken = set(chosen)
    chosen += [i for i in order if i not in taken][:n - len(chosen)]
    return [records[i] for i in sorted(chosen)]


def save_figure(fig, path, fmt="svg"):
    """Save a matplotlib figure atomically and reproducibly: no creation date in the file, and a
    fixed salt for the ids matplotlib hashes into an SVG, so the same drawing gives the same bytes."""
    import matplotlib

    # svg.fonttype none: labels stay text, so a reader can search a drawing for a neuron
    with matplotlib.rc_context({"svg.hashsalt": "clue", "svg.fonttype": "none"}), atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, bbox_inches="tight", metadata={"Date": None})
