"""The task registry: every task the config may name, toy (generated here) or real (loaded with
``datasets``). Unknown names fail before any job runs, listing the known ones."""

from clue.errors import ClueError
from clue.names import suggest
from clue.tasks.real import REAL_TASKS
from clue.tasks.toy import TOY_TASKS
from clue.tasks.world import WORLD_TASKS

# Tasks generated here (no download): the toy world, and real-world tasks for a pretrained model.
GENERATED_TASKS = {**TOY_TASKS, **WORLD_TASKS}

# Real tasks and their role, from their registry (clue.tasks.real imports `datasets` only when
# a task is loaded).
REAL_TASK_ROLES = {name: spec.role for name, spec in REAL_TASKS.items()}


def known_tasks():
    return sorted(TOY_TASKS) + sorted(WORLD_TASKS) + sorted(REAL_TASK_ROLES)


def task_role(name):
    if name in GENERATED_TASKS:
        return GENERATED_TASKS[name].role
    if name in REAL_TASK_ROLES:
        return REAL_TASK_ROLES[name]
    raise ClueError(f"unknown task {name!r}; known tasks: {', '.join(known_tasks())}")


def fact_keys(name, seed):
    """The facts a generated knowledge task teaches and asks (a set of keys two tasks share when
    they ask the same fact), or None for a task without a fact table (rule tasks, real tasks)."""
    task = GENERATED_TASKS.get(name)
    return task.fact_keys(seed) if hasattr(task, "fact_keys") else None


def check_task(name, key):
    """Raise a ClueError naming the config key if ``name`` is not a registered task."""
    if name not in GENERATED_TASKS and name not in REAL_TASK_ROLES:
        raise ClueError(f"config key {key}: unknown task {name!r}{suggest(name, known_tasks())}; "
                        f"known tasks: {', '.join(known_tasks())}")
