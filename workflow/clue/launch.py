"""``clue-snakemake``: snakemake, after one check of its command line.

Snakemake's ``--configfile`` takes every word after it, so in ``snakemake --configfile my.yaml
results/my/table1.csv`` the target is read as a second config file; snakemake loads config files
before the Snakefile runs, so no check in the Snakefile can see it, and the user got a 27-line
traceback ending in ``FileNotFoundError``. This wrapper names the mistake in one line and the
command that works; any other command line goes to snakemake unchanged (docs/own-data.md).
"""

import sys
from pathlib import Path

PROGRAM = "clue-snakemake"   # the console script (pyproject.toml)
CONFIG_OPTIONS = ("--configfile", "--configfiles")
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def misread_targets(argv):
    """(index of the --configfile option, the words after its first file that snakemake would read
    as config files but name targets: not a .yaml/.yml/.json file, or under results/)."""
    for i, word in enumerate(argv):
        if word not in CONFIG_OPTIONS:
            continue
        values = []
        for value in argv[i + 1:]:
            if value.startswith("-"):
                break
            values.append(value)
        targets = [v for v in values[1:] if Path(v).suffix.lower() not in CONFIG_SUFFIXES
                   or Path(v).parts[:1] == ("results",)]
        if targets:
            return i, targets
    return None, []


def corrected(argv, option, targets):
    """``argv`` with ``targets`` moved before the --configfile option at ``option``."""
    rest = list(argv)
    for t in targets:
        del rest[rest.index(t, option + 1)]
    return rest[:option] + targets + rest[option:]


def main(argv=None, run=None):
    """Exit 2 with one line when a target follows --configfile; else ``run`` (snakemake's own main,
    which exits with snakemake's status) on the unchanged arguments."""
    argv = sys.argv[1:] if argv is None else list(argv)
    option, targets = misread_targets(argv)
    if targets:
        fixed = " ".join([PROGRAM, *corrected(argv, option, targets)])
        print(f"{PROGRAM}: {', '.join(targets)} {'was' if len(targets) == 1 else 'were'} read as "
              f"{'a config file' if len(targets) == 1 else 'config files'}; put the target before "
              f"{argv[option]}: {fixed}", file=sys.stderr)
        return 2
    if run is None:
        from snakemake.cli import main as run
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
