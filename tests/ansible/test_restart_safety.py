"""Static checks on the restart path, for mistakes only a real run would otherwise reveal.

Ansible refuses include_role anywhere under a handler, but only when the handler runs
(a first restart on real hosts); and the order of the failover steps is what keeps
writes from being lost, so it is pinned here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.ansible.conftest import ROLE_NAMES, ROLES

INCLUDE_TASKS = ("ansible.builtin.include_tasks", "include_tasks")
INCLUDE_ROLE = ("ansible.builtin.include_role", "include_role", "ansible.builtin.import_role", "import_role")


def load(path: Path) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text()) or []


def flatten(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tasks in order, with block/rescue/always contents in place of their block."""
    out: list[dict[str, Any]] = []
    for task in tasks:
        if "block" in task:
            out.extend(flatten(task["block"]) + flatten(task.get("rescue", [])) + flatten(task.get("always", [])))
        else:
            out.append(task)
    return out


def reached_from(tasks_file: Path, seen: set[Path] | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """Every task a file runs, following include_tasks into the role's tasks/ directory."""
    seen = set() if seen is None else seen
    if tasks_file in seen:
        return []
    seen.add(tasks_file)
    found: list[tuple[Path, dict[str, Any]]] = []
    for task in flatten(load(tasks_file)):
        found.append((tasks_file, task))
        for key in INCLUDE_TASKS:
            if key in task:
                target = str(task[key]).replace("{{ role_path }}", str(tasks_file.parent.parent))
                found.extend(reached_from((tasks_file.parent / target).resolve(), seen))
    return found


def test_no_handler_reaches_include_role_which_ansible_refuses_in_handlers() -> None:
    offenders = []
    for role in ROLE_NAMES:
        handlers = ROLES / role / "handlers" / "main.yml"
        if not handlers.exists():
            continue
        for handler in flatten(load(handlers)):
            for key in INCLUDE_TASKS:
                if key in handler:
                    for path, task in reached_from(handlers.parent.parent / "tasks" / handler[key]):
                        if any(k in task for k in INCLUDE_ROLE):
                            offenders.append(f"{path.relative_to(ROLES)}: {task.get('name')}")
    assert offenders == []


def test_the_failover_task_runs_the_kit_s_one_failover_script() -> None:
    # What the script does is checked on a real cluster: tests/test_failover_script.py.
    failover = load(ROLES / "redis_ha" / "tasks" / "failover.yml")
    argvs = [str(task["ansible.builtin.command"]["argv"]) for task in failover if "ansible.builtin.command" in task]
    assert len(argvs) == 1
    assert "lookup('ansible.builtin.file', 'failover.sh')" in argvs[0]


def test_restart_fails_the_master_over_first_and_every_planned_failover_uses_the_one_failover() -> None:
    restart = load(ROLES / "redis" / "tasks" / "restart.yml")
    names = [task.get("name", "") for task in restart]
    failover = next(
        i
        for i, task in enumerate(restart)
        if task.get("ansible.builtin.include_role", {}).get("tasks_from") == "failover.yml"
    )
    assert names.index("Restart Redis") > failover
    # No other task file carries its own copy of the failover shell.
    copies = [
        path.relative_to(ROLES)
        for path in ROLES.glob("*/tasks/*.yml")
        if "SENTINEL FAILOVER" in path.read_text() and path != ROLES / "redis_ha" / "tasks" / "failover.yml"
    ]
    assert copies == []
