"""Print the requirements a wheelhouse lacks for THIS interpreter, one per line (none: complete).

Runs on the app host with the virtualenv's Python: `python missing_requirements.py WHEELHOUSE ROOT`.
Walks the Requires-Dist of ROOT (a project name) and everything it pulls in, evaluating each
environment marker here, where the app will run: the controller's pip cannot, since it evaluates
markers such as python_full_version < "3.11.3" against its own Python.
"""

from __future__ import annotations

import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename


def main(wheelhouse: Path, root: str) -> int:
    wheels: dict[str, list[tuple[str, Path]]] = {}
    for path in sorted(wheelhouse.glob("*.whl")):
        name, version, _build, _tags = parse_wheel_filename(path.name)
        wheels.setdefault(canonicalize_name(name), []).append((str(version), path))

    def requires(path: Path) -> list[str]:
        with zipfile.ZipFile(path) as zf:
            meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            return Parser().parsestr(zf.read(meta).decode()).get_all("Requires-Dist") or []

    missing: set[str] = set()
    seen: set[str] = set()
    todo = [(Requirement(root), frozenset[str]())]
    while todo:
        req, extras = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
            continue
        key = canonicalize_name(req.name)
        candidates = [(v, p) for v, p in wheels.get(key, []) if req.specifier.contains(v, prereleases=True)]
        if not candidates:
            missing.add(f"{req.name}{req.specifier}")
            continue
        if key in seen:
            continue
        seen.add(key)
        _version, path = candidates[-1]
        todo.extend((Requirement(line), frozenset(req.extras)) for line in requires(path))
    print("\n".join(sorted(missing)))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2]))
