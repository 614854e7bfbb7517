"""Filters of the backup role: the restore's decisions, from the same code redis-ha-backup runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

# roles/backup/filter_plugins/ in the repository; plugins/filter/ in the collection (collection/build.py),
# whose roles/backup/ is two levels up.
_HERE = Path(__file__).resolve().parent
_SCRIPT = next(
    path
    for path in (
        _HERE.parent / "files" / "redis_ha_backup.py",
        _HERE.parents[1] / "roles" / "backup" / "files" / "redis_ha_backup.py",
    )
    if path.is_file()
)
_spec = importlib.util.spec_from_file_location("redis_ha_backup", _SCRIPT)
assert _spec is not None and _spec.loader is not None
_backup = importlib.util.module_from_spec(_spec)
sys.modules.setdefault(_spec.name, _backup)  # dataclasses look their module up there
_spec.loader.exec_module(_backup)


def load_refusal(record: dict[str, Any], flavor: str, version_output: str) -> str:
    """Why the target server (``redis-server --version`` output) cannot load the backup; '' when it can."""
    version = next((w.split("=", 1)[1] for w in version_output.split() if w.startswith("v=")), version_output)
    return _backup.load_refusal(int(record["rdb_version"]), record, flavor, version) or ""


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {"backup_load_refusal": load_refusal}
