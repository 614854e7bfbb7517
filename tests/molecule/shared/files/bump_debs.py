"""Repack .debs as a newer release, for a real package upgrade in the lab (bump_packages.yml).

    bump_debs.py ORIG_DIR REPO_DIR

Every .deb in ORIG_DIR (one source package's binaries, one version) is rebuilt into REPO_DIR with
the version <version>+rhk1; an exact-version relation between them ("redis-tools (= 5:7.0.15-1)")
moves along, so apt upgrades them together. Files and maintainer scripts stay as they were. REPO_DIR
is then indexed for apt (Packages). Prints the new version as its last line.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SUFFIX = "+rhk1"


def field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], check=True, capture_output=True, text=True).stdout.strip()


def main(orig: Path, repo: Path) -> str:
    debs = sorted(orig.glob("*.deb"))
    versions = {field(deb, "Version") for deb in debs}
    if len(debs) == 0 or len(versions) != 1:
        sys.exit(f"bump_debs: expected .debs of one version in {orig}, found {len(debs)} of {sorted(versions)}")
    old = versions.pop()
    new = old + SUFFIX
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as scratch:
        for deb in debs:
            tree = Path(scratch) / deb.stem
            subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True)
            control = tree / "DEBIAN" / "control"
            text = re.sub(r"(?m)^Version: .*$", f"Version: {new}", control.read_text())
            control.write_text(text.replace(f"(= {old})", f"(= {new})"))
            subprocess.run(["dpkg-deb", "-b", str(tree), str(repo)], check=True, capture_output=True)
    index = subprocess.run(
        ["dpkg-scanpackages", "--multiversion", ".", "/dev/null"],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    (repo / "Packages").write_text(index)
    built = sorted(p.name for p in repo.glob("*.deb"))
    print(f"bump_debs: {old} -> {new}: {', '.join(built)}")
    return new


if __name__ == "__main__":
    print(main(Path(sys.argv[1]), Path(sys.argv[2])))
