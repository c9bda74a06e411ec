import json
import os


envvars:
    "PATH",


from clue.config import all_data_tasks, audited_methods, data_params, model_params, model_source
from clue.localizers import LOCALIZERS
from clue.losses import FORGET_LOSSES

MODEL = config["model"]["name"]
FORGET = config["tasks"]["forget"]
RETAIN = config["tasks"]["retain"]
GENERAL = config["tasks"]["general"] + config["tasks"]["general_lm_eval"]
METHODS = config["methods"]
TRAINED = [m for m in METHODS if m != "origin"]   # the methods with an unlearned checkpoint
AUDITED = audited_methods(config)   # the checkpoints the knowledge-recovery audit covers
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


def section(name):
    """A config section as a JSON string for `--params`: a rule's params hold only the section
    it reads, so editing another section does not rerun it."""
    return json.dumps(config[name], sort_keys=True)


def data_dir(task):
    return f"results/{MODEL}/data/{task}"


def method_masks(model, forget, retain, method):
    """The mask a method trains inside: CLUE's forget/conflict masks, a localizer's mask, or none
    (GA, NPO, PO train every parameter)."""
    if method in FULL_FINETUNE:
        return []
    return f"results/{model}/masks/{forget}__{retain}/{method}.safetensors"


def unlearn_masks(w):
    return method_masks(w.model, w.forget, w.retain, w.method)


def unlearn_loss(method):
    """What `clue unlearn --method` trains: CLUE's two stages, a forget loss on every parameter,
    or, for a localizer's row, PO inside its mask."""
    return "clue" if method == "clue" else (method if method in FULL_FINETUNE else "po")
