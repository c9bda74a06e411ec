"""The ``clue`` command: one subcommand per Snakemake rule, so a user can rerun or inspect any
stage by hand with the same code the workflow runs."""

import argparse
import importlib
import os
import sys

# subcommand -> (module that implements it, one-line help). Modules are imported lazily so
# ``clue --help`` stays fast and a stage's heavy imports (torch, lm-eval) load only when used.
STAGES = {
    "data": ("clue.data", "write a task's train/test/pairs splits (toy generator or a real dataset)"),
    "base-model": ("clue.base_model", "train the toy Llama from scratch, or record a pretrained model"),
    "circuit": ("clue.circuits.discover", "edge pruning with a noising or denoising intervention"),
    "gates": ("clue.logic.gates", "type node-level edges AND / OR / ADDER from the two circuits"),
    "cnf": ("clue.logic.cnf", "Tseitin CNF (Eq. 4) and the weighted MaxSAT instance"),
    "solve": ("clue.logic.solve", "solve the CNF and sort neurons into forget / conflict / retain"),
    "membership": ("clue.logic.membership", "Table 2's set-membership ablation: categories by circuit overlap, no logic"),
    "explain": ("clue.logic.explain", "show the clauses that make a neuron a conflict neuron"),
    "masks": ("clue.masks", "neuron categories to forget and conflict axis masks (safetensors)"),
    "localize": ("clue.localizers", "baseline localizers (WAGLE, DEPN, PCGU, MEMIT-style tracing) -> masks"),
    "unlearn": ("clue.unlearn", "masked two-stage unlearning (or a baseline method)"),
    "evaluate": ("clue.evaluate", "lm-eval simple_evaluate on a checkpoint: FE, RU, GU"),
    "table1": ("clue.reports.table1", "collect eval JSONs into results/table1.csv and table1.md"),
    "table2": ("clue.reports.table2", "Table 2: CLUE's ablations on one pair, as changes from CLUE's row"),
    "table3": ("clue.reports.table3", "Table 3: forget and conflict neurons before and after unlearning"),
    "sweep-figure": ("clue.reports.sweeps", "Figures 3, 4 and 6: the retain-set, circuit-sparsity and forget-ratio sweeps"),
    "fig7": ("clue.reports.fig7", "Figure 7: the composition by matrix type of each localization, per retain set"),
    "circuits-table": ("clue.reports.circuits", "every circuit's kind and faithfulness (validation, held-out) and its task's gate types"),
    "stability": ("clue.reports.stability", "Jaccard overlap of CLUE's neuron categories across circuit seeds"),
    "tune": ("clue.tune", "score a method's grid of learning rates and epochs on validation questions"),
    "tune-select": ("clue.reports.tuning", "apply the config's rule to every method's grid: the settings Table 1 uses"),
    "attack": ("clue.attack", "relearning and 4-bit quantization attacks on a checkpoint: FE before and after"),
    "robust": ("clue.reports.robust", "the robust-FE table: FE as trained, after relearning and after quantization"),
    "audit": ("clue.audit", "knowledge recovery (KRS) and relearning audit of unlearned checkpoints"),
    "audit-table": ("clue.reports.audit_table", "collect audit JSONs into results/audit.csv and KRS figures"),
}


def build_parser(only):
    parser = argparse.ArgumentParser(prog="clue", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="STAGE")
    sub.required = True
    for name, (module, help_text) in STAGES.items():
        if name != only:
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def quiet_logs():
    """A job's stderr goes to its log file: no progress-bar frames there (tqdm, the Hugging Face
    hub and datasets read these), only on a terminal."""
    if not sys.stderr.isatty():
        for var in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
            os.environ.setdefault(var, "1")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_logs()
    # Only import the chosen stage's module: each has heavy dependencies.
    only = next((a for a in argv if a in STAGES), None)
    args = build_parser(only).parse_args(argv)
    from clue.errors import ClueError

    try:
        return importlib.import_module(args._module).main(args) or 0
    except ClueError as err:
        print(f"clue {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
