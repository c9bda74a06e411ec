"""The README and the docs say what works: the README stays short, every snakemake command in it
can be pasted (its targets before --configfile, which takes every word after it as a config file,
and they are where that config writes its tables), and every script the docs name exists."""

import re
import shlex
from pathlib import Path

import yaml

from clue.config import tables_dir

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)


def snakemake_commands(markdown):
    """Every snakemake command of a Markdown text as a list of words: the lines of its fenced code
    blocks, then its inline code spans (which may wrap across lines). A comment after a command,
    and commands chained with && or ; before it, are left out."""
    lines = []
    for block in FENCE.findall(markdown):
        lines += block.replace("\\\n", " ").splitlines()
    lines += [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", FENCE.sub("", markdown))]
    commands = []
    for line in lines:
        for part in re.split(r"&&|;", line.split(" #")[0]):
            if "snakemake" not in part:
                continue
            words = shlex.split(part)
            starts = [i for i, word in enumerate(words) if Path(word).name == "snakemake"]
            if starts:
                commands.append(words[starts[0]:])
    return commands


def config_files(words):
    """The words that --configfile takes: every one after it up to the next option."""
    if "--configfile" not in words:
        return []
    after = words[words.index("--configfile") + 1:]
    return after[:next((i for i, word in enumerate(after) if word.startswith("-")), len(after))]


def misplaced_targets(words):
    """The words after --configfile that are not config files: targets snakemake would read as
    config files (a 27-line traceback ending in FileNotFoundError)."""
    return [word for word in config_files(words) if not word.endswith((".yaml", ".yml"))]


def test_snakemake_commands_are_read_from_blocks_and_spans_and_misplaced_targets_found():
    markdown = ("Run `snakemake --cores all --configfile my.yaml\nresults/my/table1.csv` here.\n\n"
                "```bash\npip install -e . && .venv/bin/snakemake --cores all paper --configfile a.yaml b.yml "
                "--config x=1   # tables in results/b/\nsnakemake --report report.html\n```\n")
    commands = snakemake_commands(markdown)
    assert commands == [
        [".venv/bin/snakemake", "--cores", "all", "paper", "--configfile", "a.yaml", "b.yml", "--config", "x=1"],
        ["snakemake", "--report", "report.html"],
        ["snakemake", "--cores", "all", "--configfile", "my.yaml", "results/my/table1.csv"],
    ]
    assert [misplaced_targets(c) for c in commands] == [[], [], ["results/my/table1.csv"]]
    assert config_files(commands[0]) == ["a.yaml", "b.yml"]


def test_readme_is_at_most_250_lines():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move details to docs/"


def test_readme_commands_put_their_targets_before_configfile():
    commands = [words for words in snakemake_commands(README.read_text()) if "--configfile" in words]
    # your own model (run, report), SmolLM2, the paper target, SLURM
    assert len(commands) >= 5, commands
    bad = {" ".join(words): misplaced_targets(words) for words in commands if misplaced_targets(words)}
    assert not bad, f"targets after --configfile (put them before it): {bad}"


def test_readme_targets_are_where_their_config_writes_its_tables():
    checked = []
    for words in snakemake_commands(README.read_text()):
        files = config_files(words)
        if not files:
            continue
        config = {}
        for name in files:  # a config the README asks the reader to write has no run_name
            if (ROOT / name).exists():
                config.update(yaml.safe_load((ROOT / name).read_text()) or {})
        expected, _ = tables_dir(config, [str(ROOT / name) for name in files], ROOT / "config.yaml")
        for word in words[:words.index("--configfile")]:
            if re.fullmatch(r"results/(.+/)?(table1|audit)\.(csv|md)", word):
                assert str(Path(word).parent) == expected, f"{' '.join(words)}: {word} is not in {expected}/"
                checked.append(word)
    assert "results/my-model/table1.csv" in checked, checked


def test_every_script_the_docs_and_code_name_exists():
    texts = [README, ROOT / "Snakefile", *(ROOT / "docs").glob("*.md"), *(ROOT / "rules").glob("*.smk"),
             *(ROOT / "workflow").rglob("*.py"), *(ROOT / "bench").glob("*.py"), *(ROOT / "tools").glob("*.py")]
    named = {name for path in texts for name in re.findall(r"\b(?:bench|tools)/\w+\.py", path.read_text())}
    # the data tool behind clue.tasks.world_facts, named in that module and in docs/real-model.md
    assert "tools/select_world_facts.py" in named
    missing = sorted(name for name in named if not (ROOT / name).exists())
    assert not missing, f"named but missing: {missing}"
