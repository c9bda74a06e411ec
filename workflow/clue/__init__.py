"""CLUE: conflict-guided localization for LLM unlearning.

Each pipeline stage is a module with ``add_arguments(parser)`` and ``main(args)``; the ``clue``
command-line interface (``clue.cli``) exposes one subcommand per Snakemake rule.
"""

__version__ = "0.1.0"


def import_submodules(package, path):
    """Import every module of a package (its ``__name__`` and ``__path__``): the loss and localizer
    modules register themselves when imported, so a new one needs no import line."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")
