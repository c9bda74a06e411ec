import json
import os


envvars:
    "PATH",


from clue.config import (all_data_tasks, audited_methods, data_params, model_params, model_source, paper_pair,
                         run_seeds, variant_overrides)
from clue.localizers import LOCALIZERS
from clue.losses import FORGET_LOSSES

MODEL = config["model"]["name"]
FORGET = config["tasks"]["forget"]
RETAIN = config["tasks"]["retain"]
GENERAL = config["tasks"]["general"] + config["tasks"]["general_lm_eval"]
METHODS = config["methods"]
TRAINED = [m for m in METHODS if m != "origin"]   # the methods with an unlearned checkpoint
AUDITED = audited_methods(config)   # the checkpoints the knowledge-recovery audit covers
SEEDS = run_seeds(config)
# The {repeat} path segment of a checkpoint and its evaluation: "" for the first seed (Table 1's
# paths), "seed{s}/" for each other seed of `seeds`.
REPEATS = [""] + [f"seed{s}/" for s in SEEDS[1:]]
MODES = ["noising", "denoising"]   # the two circuit interventions (paper section 4.1)
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
    retain=r"[A-Za-z0-9_]+",
    method=r"[A-Za-z0-9_]+",
    repeat=r"(seed-?[0-9]+/)?",


def section(name):
    """A config section as a JSON string for `--params`: a rule's params hold only the section
    it reads, so editing another section does not rerun it."""
    return json.dumps(config[name], sort_keys=True)


def data_dir(task):
    return f"results/{MODEL}/data/{task}"


def repeat_seed(repeat):
    """The unlearn.seed of a {repeat} segment."""
    return SEEDS[0] if not repeat else int(repeat[len("seed"):-1])


def unlearn_section(repeat, method=None):
    """The unlearn section as a checkpoint of one repeat sees it: the repeat's seed and, for a CLUE
    variant (Table 2), its ablation or stage losses."""
    overrides = variant_overrides(method)[1] if method else {}
    return json.dumps({**config["unlearn"], "seed": repeat_seed(repeat), **overrides}, sort_keys=True)


def method_masks(model, forget, retain, method):
    """The mask a method trains inside: CLUE's forget/conflict masks (for its Table 2 variants
    too), a localizer's mask, or none (GA, NPO, PO train every parameter)."""
    method = variant_overrides(method)[0]
    if method in FULL_FINETUNE:
        return []
    return f"results/{model}/masks/{forget}__{retain}/{method}.safetensors"


def unlearn_masks(w):
    return method_masks(w.model, w.forget, w.retain, w.method)


def unlearn_loss(method):
    """What `clue unlearn --method` trains: CLUE's two stages, a forget loss on every parameter,
    or, for a localizer's row, PO inside its mask."""
    method = variant_overrides(method)[0]
    return "clue" if method == "clue" else (method if method in FULL_FINETUNE else "po")


def table1_evals(wildcards=None):
    """Every eval JSON of Table 1: each pair's Origin row once, each trained method per repeat."""
    return [f"results/{MODEL}/{repeat}eval/{f}__{r}/{m}.json"
            for f in FORGET for r in RETAIN for m in METHODS
            for repeat in (REPEATS if m != "origin" else [""])]
