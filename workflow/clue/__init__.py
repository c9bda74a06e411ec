"""CLUE: conflict-guided localization for LLM unlearning.

Each pipeline stage is a module with ``add_arguments(parser)`` and ``main(args)``; the ``clue``
command-line interface (``clue.cli``) exposes one subcommand per Snakemake rule.
"""

__version__ = "0.1.0"
