import json
import os


envvars:
    "PATH",


from clue.config import (
    all_data_tasks,
    audited_methods,
    data_params,
    method_variant,
    model_params,
    model_source,
    paper_pair,
    pretrained_path,
    retain_sets,
    run_seeds,
    tables_dir,
    tune_pairs,
)
from clue.localizers import LOCALIZERS
from clue.losses import FORGET_LOSSES
from clue.names import matched_method, tuned_from

# Scheduling: among the jobs ready to run, Snakemake starts those of highest summed priority first.
# Jobs at the head of long chains go first: tuning (every training waits for its selection),
# circuits and the gate/CNF/solve/mask chain the masks wait for, localizers; then trainings before
# evaluations, so that a run does not end with one core idle beside a late pair's training and
# evaluation (docs/performance.md). The base model's evaluation (two threads, priority 0) runs
# when both cores are free and nothing else is ready.
PRIORITY = dict(tune=55, circuit=50, logic=40, localize=30, unlearn=20, evaluate=10)
MODEL = config["model"]["name"]
# Where this config's tables and figures go: results/ for the embedded config.yaml, results/<name>/
# for another (config key run_name, else the last --configfile's stem), so that a second config
# never overwrites the first one's table1.csv; TAG names their logs and benchmarks the same way.
TABLES, TAG = tables_dir(config, workflow.overwrite_configfiles, os.path.join(workflow.basedir, "config.yaml"))
FORGET = config["tasks"]["forget"]
RETAIN = config["tasks"]["retain"]
GENERAL = config["tasks"]["general"] + config["tasks"]["general_lm_eval"]
METHODS = config["methods"]
TRAINED = [m for m in METHODS if m != "origin"]  # the methods with an unlearned checkpoint
AUDITED = audited_methods(config)  # the checkpoints the knowledge-recovery audit covers
SEEDS = run_seeds(config)
# The {run} path segment after results/{model}/: "" for Table 1's artifacts; "seed{s}/" for each
# further seed of `seeds` (unlearning and evaluation again); "sparsity{s}/" for the circuits found
# again at target sparsity s, and CLUE from them (Figure 4); "after-{forget}__{retain}/" for the
# circuits found again on that pair's CLUE checkpoint and solved again (Table 3).
REPEATS = [""] + [f"seed{s}/" for s in SEEDS[1:]]
# With a tune grid (config `tune`), every training of Table 1 reads its method's learning rate and
# epochs from the tune stage's choice for its forget set (tuned_choice).
TUNING = bool(config["tune"]["grid"])
TUNE_PAIRS = {f: "__".join(pair) for f, pair in tune_pairs(config).items()}  # forget set -> its tuning pair
# the methods tuned (a random-mask control is not: it trains with its matched method's choice)
TUNE_METHODS = [m for m in (config["tune"]["methods"] or TRAINED) if not matched_method(m)] if TUNING else []
SEED_RUN = r"(seed-?[0-9]+/)?"
CIRCUIT_RUN = r"(sparsity[0-9.]+/|after-[a-z0-9_]+__[a-z0-9_]+/|cseed[0-9]+/)?"
MODES = ["noising", "denoising"]  # the two circuit interventions (paper section 4.1)
# the forget and retain tasks of Table 1's pairs: whose circuits CLUE's logic reads
TABLE1_TASKS = list(dict.fromkeys(FORGET + [t for r in RETAIN for t in r.split("+")]))
# Methods that fine-tune every parameter with their forget loss (no localization): every
# registered forget loss. Localizers are the registered ones (clue/localizers).
FULL_FINETUNE = tuple(FORGET_LOSSES)

# Jobs call the `clue` CLI: the one of the job's conda env when --software-deployment-method
# conda activates one, else the one installed beside the Python that runs snakemake (a venv
# need not be activated).
os.environ.update(PATH=os.pathsep.join([os.path.dirname(sys.executable), os.getenv("PATH")]))


wildcard_constraints:
    model=r"[A-Za-z0-9._-]+",
    task=r"[A-Za-z0-9_]+",
    forget=r"[A-Za-z0-9_]+",
    retain=r"[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*",  # several tasks joined by +: one retain set (Figure 3)
    method=r"[A-Za-z0-9_]+",
    run=r"(seed-?[0-9]+/|sparsity[0-9.]+/|after-[a-z0-9_]+__[a-z0-9_]+/|cseed[0-9]+/)?",


def job_params(params):
    """A section as a job's `--params`: without `jobs`, which only groups the work into jobs, so
    regrouping (per pair to per checkpoint, say) reruns no rule that merely reads the section."""
    return json.dumps({k: v for k, v in params.items() if k != "jobs"}, sort_keys=True)


def section(name):
    """A config section as a JSON string for `--params`: a rule's params hold only the section
    it reads, so editing another section does not rerun it."""
    return job_params(config[name])


def data_dir(task):
    return f"results/{MODEL}/data/{task}"


def local_files(path):
    """A local file, or every file under a local directory but hidden ones (a download's .cache
    holds bookkeeping, not the model or data). Listed one by one: Snakemake dates a directory input
    by the directory's own mtime, which an edit of a file inside it does not change."""
    path = os.path.expanduser(path)
    if not os.path.isdir(path):
        return [path]
    found = []
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [os.path.join(root, f) for f in files if not f.startswith(".")]
    return sorted(found)


def base_model_files():
    """The files the base model stage reads, as its inputs, so that editing one reruns it and
    every stage after it: the GGUF file it converts, or every file of a local pretrained model's
    directory (a later stage loads the model from there; a rerun base stage dates them all). A hub id
    has none: its download is the hub's, as before."""
    from clue.base_model import locate_gguf

    source = model_source(config)
    if source == "gguf":
        return [str(locate_gguf(config["model"]["gguf"])[0])]
    path = pretrained_path(config)
    if source == "pretrained" and os.path.isdir(os.path.expanduser(path)):
        return local_files(path)
    return []


def data_source_files(w):
    """The local files the data stage of task w.task reads (config data.sources.<task>), as its
    inputs, so that editing one reruns that task's data and what is built from it: its data_files
    (else a local dataset directory `path`) and its corpus_files (else a local `corpus_path`). URLs
    and hub ids have none."""
    source = config["data"]["sources"].get(w.task) or {}
    names = []
    for files, dataset in (("data_files", "path"), ("corpus_files", "corpus_path")):
        value = source.get(files)
        if isinstance(value, dict):  # data_files: split -> a file or a list of files
            value = list(value.values())
        elif value is None:  # no local files: the dataset `path` may still be a local one
            local = source.get(dataset) and os.path.exists(os.path.expanduser(source[dataset]))
            value = [source[dataset]] if local else []
        for v in [value] if isinstance(value, str) else value:
            names += [v] if isinstance(v, str) else v
    return list(dict.fromkeys(f for name in names if "://" not in name for f in local_files(name)))


def run_seed(run):
    """The unlearn.seed of a {run}: its own for a repeat, else the first seed."""
    return int(run[len("seed") : -1]) if run.startswith("seed") else SEEDS[0]


def unlearn_section(run, method=None):
    """The unlearn section as a checkpoint of one run sees it: the run's seed and, for a CLUE
    variant (Table 2), its ablation or stage losses."""
    overrides = method_variant(method)[1] if method else {}
    return job_params({**config["unlearn"], "seed": run_seed(run), **overrides})


def circuit_section(run):
    """The circuit section of a run. A circuit-seed run (cseed{s}/, `stability`) is Table 1's search
    with circuit.seed s. A sparsity run has one target (for every task), an after-run
    the sparsity its circuit before unlearning was chosen at (`clue circuit --same-sparsity-as`).
    Both keep the floor as the stopping rule of Table 1's circuits (stop at the first check that
    reaches it), but keep their one candidate when it is not reached: Figure 4 measures
    faithfulness, and an unlearned model may no longer tell a forget set's clean input from its
    corruption at all."""
    c = dict(config["circuit"])
    if run.startswith("cseed"):  # the stability check: the same circuit search with another seed
        c["seed"] = int(run[len("cseed") : -1])
        return job_params(c)
    if run.startswith("sparsity"):
        c.update(target_sparsity=float(run[len("sparsity") : -1]), target_sparsity_per_task={})
    if run:  # a run's circuit is Edge Pruning's at its target (a node-level one has its own sparsity)
        c.update(if_unfaithful="most_faithful", node_level_fallback=False, attribution_fallback=False)
    return job_params(c)


def circuit_seed_run(seed):
    """The {run} of circuit seed s (the stability target): Table 1's own for circuit.seed, else cseed{s}/."""
    return "" if seed == config["circuit"]["seed"] else f"cseed{seed}/"


def circuits_before(w, modes=MODES):
    """An after-run's circuits before unlearning, whose chosen sparsities it finds its own at."""
    if not w.run.startswith("after-"):
        return []
    return [f"results/{w.model}/circuits/{w.task}/{m}.json" for m in modes]


def same_sparsity_flag(w, input):
    return f" --same-sparsity-as {' '.join(input.before)}" if input.before else ""


def circuit_model(w):
    """The model a circuit is found in: the base model, or for an after-run the pair's CLUE checkpoint."""
    if w.run.startswith("after-"):
        return f"results/{w.model}/unlearned/{w.run[len('after-'):-1]}/clue"
    return f"results/{w.model}/base"


def method_masks(model, forget, retain, method, run=""):
    """The mask a method trains inside: CLUE's forget/conflict masks (for its Table 2 variants
    too; a sparsity run's own), its random-mask control's (one a run seed), a localizer's mask (at
    its ratio), or none (GA, NPO, PO train every parameter)."""
    base, _, mask = method_variant(method)
    if base in FULL_FINETUNE:
        return []
    if base == "random":  # CLUE's random-mask control, drawn with the run's seed
        return f"results/{model}/masks/{forget}__{retain}/random-s{run_seed(run)}.safetensors"
    if mask.startswith("random-"):  # a localizer's random-mask control, drawn with the run's seed
        return f"results/{model}/masks/{forget}__{retain}/{mask}-s{run_seed(run)}.safetensors"
    prefix = run if run.startswith("sparsity") and mask == "clue" else ""
    return f"results/{model}/{prefix}masks/{forget}__{retain}/{mask}.safetensors"


def unlearn_masks(w):
    return method_masks(w.model, w.forget, w.retain, w.method, w.run)


def unlearn_loss(method):
    """What `clue unlearn --method` trains: CLUE's two stages, a forget loss on every parameter,
    or, for a localizer's row, PO inside its mask."""
    method = method_variant(method)[0]
    return "clue" if method in ("clue", "random") else (method if method in FULL_FINETUNE else "po")


def table1_evals():
    """Every eval JSON of Table 1: each pair's Origin row once, each trained method per repeat."""
    return [
        f"results/{MODEL}/{repeat}eval/{f}__{r}/{m}.json"
        for f in FORGET
        for r in RETAIN
        for m in METHODS
        for repeat in (REPEATS if m != "origin" else [""])
    ]


def sparsity_run(s):
    """The {run} of Figure 4's circuits at target sparsity s."""
    return f"sparsity{s:g}/"


def retain_dirs(w):
    """The data directories of a retain set (one task, or several joined by +)."""
    return [data_dir(t) for t in w.retain.split("+")]


def retain_gates(w):
    """The gates of each task of the retain set: a retain set of several tasks keeps one retain
    circuit per task in the CNF."""
    return [f"results/{w.model}/{w.run}gates/{t}.json" for t in w.retain.split("+")]


def tune_data(w):
    """The data directories the tune stage scores: the tuning pair's tasks and the general tasks."""
    tasks = [w.forget, *w.retain.split("+"), *config["tasks"]["general"]]
    return [data_dir(t) for t in dict.fromkeys(tasks)]


def tuned_method(row):
    """The tuned method whose choice a Table 1 row trains with (clue.names.tuned_from); None when
    not tuned."""
    return next((m for m in tuned_from(row) if m in TUNE_METHODS), None)


def tuned_choice(w):
    """The tune stage's choice files (one a method) that the trainings of forget set w.forget read:
    w.method's, or every trained row's for a job of the whole pair (none without a grid)."""
    if not TUNING:
        return []
    rows = [w.method] if "method" in w.keys() else TRAINED
    methods = dict.fromkeys(m for m in map(tuned_method, rows) if m)
    return [f"results/{MODEL}/tune/{TUNE_PAIRS[w.forget]}/selected/{m}.json" for m in methods]
