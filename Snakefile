# CLUE: conflict-guided localization for LLM unlearning, as a Snakemake pipeline.
#   snakemake --cores all results/table1.csv
# Every box of the paper's Figure 2 is a cached artifact under results/ (docs/formats.md).

import os
import sys

from snakemake.utils import min_version, validate

min_version("8.20")

# The `clue` package lives in workflow/; make it importable even when not pip-installed.
sys.path.insert(0, os.path.join(workflow.basedir, "workflow"))

from clue.config import config_problem

# The embedded default. A config named on the command line stands alone (keys it leaves out take
# the schema's defaults), so a paper config never inherits the toy world's learning rates; several
# --configfile files still merge in order, and --config key=value extends either.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


# A bad config fails here, before any job, in one line that names the key (config_problem).
problem = config_problem(config, os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml"))
if problem:
    sys.exit(f"config error: {problem}")
validate(config, "workflow/schemas/config.schema.yaml")  # fills in the schema's defaults
problem = config_problem(config)
if problem:
    sys.exit(f"config error: {problem}")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/model.smk"
include: "rules/circuits.smk"
include: "rules/logic.smk"
include: "rules/unlearn.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/audit.smk"
include: "rules/paper.smk"
include: "rules/tune.smk"
include: "rules/stability.smk"
include: "rules/attack.smk"
include: "rules/cluster.smk"


rule all:
    default_target: True
    input:
        f"{TABLES}/table1.csv",
        f"{TABLES}/audit.csv" if AUDITED else [],
        # the tuning report (every grid point, the budget table, the trade-off figures)
        f"{TABLES}/tuning_budgets.md" if TUNING else [],
        # every circuit CLUE's logic reads, with its faithfulness on validation and held-out pairs
        f"{TABLES}/circuits.md" if CLUE_ROWS else [],
