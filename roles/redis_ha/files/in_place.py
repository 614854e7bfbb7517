"""What a deploy already put in place on this host, so the next deploy can skip it.

Run by Ansible on the host, as `python3 -c <this file> ACTION STATE_DIR ...`:
  check DIGEST   prints {"in_place": [...], "removed": [...]}: the parts whose stamp holds (written
                 for DIGEST; each file it recorded has the same content, each unit it named is
                 active, each path it named, such as a pending-restart marker, is absent), and the
                 stamps that did not and were removed, so a run that stops half-way is never taken
                 for one that finished.
  keep DIGEST    the same without removing anything (check mode).
  forget         removes every stamp: a playbook that changes the cluster outside site.yml
                 (upgrade, retire, reseed, restore) runs it first, so the next deploy checks all.
  record PART DIGEST
                 reads {"files": [...], "units": [...], "absent": [...]} on stdin and writes the
                 part's stamp with the files' current SHA-256 (root-only, written atomically).
A stamp says nothing about files the daemons rewrite themselves (redis.conf, sentinel.conf):
the deploy that recorded it checked them, and a failover changes them on purpose.
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile


def _sha256(path):
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


def _holds(stamp):
    if any(_sha256(path) != digest for path, digest in stamp.get("files", {}).items()):
        return False
    if any(os.path.exists(path) for path in stamp.get("absent", [])):
        return False
    units = stamp.get("units", [])
    if units:
        # One state per unit: the exit code alone says only that some unit is active.
        states = subprocess.run(
            ["systemctl", "is-active", *units], check=False, capture_output=True, text=True
        ).stdout.split()
        if states != ["active"] * len(units):
            return False
    return True


def _stamps(state_dir):
    """(part, path) of each stamp in ``state_dir``, by part name; none when it does not exist."""
    try:
        names = sorted(os.listdir(state_dir))
    except OSError:
        names = []
    for name in names:
        if name.endswith(".json"):
            yield name[: -len(".json")], os.path.join(state_dir, name)


def check(state_dir, digest, remove):
    in_place, removed = [], []
    for part, path in _stamps(state_dir):
        try:
            with open(path, encoding="utf-8") as handle:
                stamp = json.load(handle)
        except (OSError, ValueError):
            stamp = None
        if isinstance(stamp, dict) and stamp.get("digest") == digest and _holds(stamp):
            in_place.append(part)
        elif remove:
            os.unlink(path)
            removed.append(part)
    print(json.dumps({"in_place": in_place, "removed": removed}))


def record(state_dir, part, digest):
    wanted = json.load(sys.stdin)
    stamp = {
        "digest": digest,
        "files": {path: _sha256(path) for path in wanted.get("files", [])},
        "units": list(wanted.get("units", [])),
        "absent": list(wanted.get("absent", [])),
    }
    missing = [path for path, sha in stamp["files"].items() if sha is None]
    if missing:
        sys.exit("cannot record %s: missing %s" % (part, ", ".join(missing)))
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    path = os.path.join(state_dir, part + ".json")
    old = None
    try:
        with open(path, encoding="utf-8") as handle:
            old = json.load(handle)
    except (OSError, ValueError):
        pass
    if old == stamp:
        print("unchanged")
        return
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix="." + part)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(stamp, handle, sort_keys=True)
    os.replace(tmp, path)
    print("recorded")


def forget(state_dir):
    removed = []
    for part, path in _stamps(state_dir):
        os.unlink(path)
        removed.append(part)
    print(json.dumps({"removed": removed}))


def main(argv):
    action, state_dir = argv[0], argv[1]
    if action in ("check", "keep"):
        check(state_dir, argv[2], remove=action == "check")
    elif action == "record":
        record(state_dir, argv[2], argv[3])
    elif action == "forget":
        forget(state_dir)
    else:
        sys.exit("unknown action %r (check DIGEST, keep DIGEST, record PART DIGEST, forget)" % action)


if __name__ == "__main__":
    main(sys.argv[1:])
