"""The task registry: every task the config may name, toy (generated here) or real (loaded with
``datasets``). Unknown names fail before any job runs, listing the known ones."""

from clue.errors import ClueError
from clue.tasks.real import REAL_TASKS
from clue.tasks.toy import TOY_TASKS

# Real tasks and their role, from their registry (clue.tasks.real imports `datasets` only when
# a task is loaded).
REAL_TASK_ROLES = {name: spec.role for name, spec in REAL_TASKS.items()}


def known_tasks():
    return sorted(TOY_TASKS) + sorted(REAL_TASK_ROLES)


def task_role(name):
    if name in TOY_TASKS:
        return TOY_TASKS[name].role
    if name in REAL_TASK_ROLES:
        return REAL_TASK_ROLES[name]
    raise ClueError(f"unknown task {name!r}; known tasks: {', '.join(known_tasks())}")


def check_task(name, key):
    """Raise a ClueError naming the config key if ``name`` is not a registered task."""
    if name not in TOY_TASKS and name not in REAL_TASK_ROLES:
        raise ClueError(f"config key {key}: unknown task {name!r}; known tasks: {', '.join(known_tasks())}")
