"""The deploy's fingerprint: what a host's stamp must match for a role to be skipped.

A deploy skips a role on a host when the kit's files and every host's inventory variables are
exactly those of the last deploy that finished the role there, and the host still holds what
that deploy put in place (roles/redis_ha/files/in_place.py checks that part on the host).
"""

import hashlib
import json
import os

# Variables that describe this run of ansible-playbook, not the cluster.
_RUN_VARIABLES = frozenset(
    {
        "ansible_check_mode",
        "ansible_config_file",
        "ansible_diff_mode",
        "ansible_facts",
        "ansible_forks",
        "ansible_inventory_sources",
        "ansible_playbook_python",
        "ansible_run_tags",
        "ansible_skip_tags",
        "ansible_verbosity",
        "ansible_version",
        "inventory_dir",
        "inventory_file",
        "playbook_dir",
        "omit",
        "redis_ha_full_deploy",
    }
)
# A variable whose name ends so and which names a file on the controller counts by the file's
# content: a renewed certificate has the same path.
_FILE_SUFFIXES = ("_src", "_template")
_SKIPPED_DIRS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", "build", "dist"})


def _file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def _value(name, value):
    if isinstance(value, str) and name.endswith(_FILE_SUFFIXES) and os.path.isfile(value):
        return {"path": value, "sha256": _file_sha256(value)}
    return value


def _raw_variables(hostvars, host):
    """The host's variables as written, templates untouched (Ansible's HostVars.raw_get)."""
    raw_get = getattr(hostvars, "raw_get", None)
    return raw_get(host) if raw_get else hostvars[host]


def _host_variables(hostvars, host):
    """Each variable as JSON text; one that cannot be resolved with this host's variables alone
    (it reads ``hostvars``, say) counts by its text as written."""
    host_vars = hostvars[host]
    resolved = {}
    for name in sorted(host_vars.keys()):
        if name in _RUN_VARIABLES:
            continue
        try:
            resolved[name] = json.dumps(_value(name, host_vars[name]), sort_keys=True, default=str)
        except Exception:  # noqa: BLE001 - whatever templating raises, the text is what counts
            try:
                resolved[name] = "as written: " + json.dumps(
                    _raw_variables(hostvars, host)[name], sort_keys=True, default=str
                )
            except Exception as error:  # noqa: BLE001 - a value needing facts counts by its error
                resolved[name] = "unresolved: %s" % type(error).__name__
    return resolved


def redis_ha_inventory_digest(hosts, hostvars):
    """SHA-256 of every host's inventory variables (secrets included, never shown)."""
    digest = hashlib.sha256()
    for host in sorted(hosts):
        digest.update(json.dumps([host, _host_variables(hostvars, host)], sort_keys=True).encode())
    return digest.hexdigest()


def redis_ha_tree_digest(paths):
    """SHA-256 of the files under the given directories (the kit's roles, playbooks, client)."""
    digest = hashlib.sha256()
    for top in sorted(set(paths)):
        if not os.path.isdir(top):
            continue
        for root, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS and not d.endswith(".egg-info"))
            for name in sorted(files):
                if name.endswith((".pyc", ".retry")):
                    continue
                path = os.path.join(root, name)
                digest.update(os.path.relpath(path, top).encode() + b"\0" + _file_sha256(path).encode())
    return digest.hexdigest()


def _in_place(stdout):
    try:
        return set(json.loads(stdout or "{}").get("in_place", []))
    except ValueError:
        return set()


def redis_ha_parts_in_place(checks, host, groups, together, always_latest):
    """The parts of the kit the deploy may skip on host, from every host's in_place.py check.

    checks: {host: the check's output}. A part whose package is kept at the latest version is
    never skipped; a part in together ({part: [groups]}) only where every host of those groups
    has it in place. "node" is added when every part the host's groups call for is there, on a
    cluster node or a monitoring host, so the play that prepares them (discover.yml) can leave it out too.
    """
    mine = _in_place(checks.get(host))
    parts = []
    for part in sorted(mine):
        if part in always_latest:
            continue
        holders = {member for group in together.get(part, []) for member in groups.get(group, [])}
        if any(part not in _in_place(checks.get(member)) for member in holders):
            continue
        parts.append(part)
    in_redis, in_sentinel = host in groups.get("redis", []), host in groups.get("sentinel", [])
    wanted = set()
    if in_redis:
        wanted |= {"redis", "backup"}
    if in_sentinel:
        wanted.add("sentinel")
    if in_redis or in_sentinel:
        wanted.add("redis_exporter")
    if host in groups.get("monitoring", []):
        wanted |= {"alertmanager", "monitoring"}
    if wanted and wanted <= set(parts):
        parts.append("node")
    return parts


class FilterModule:
    def filters(self):
        return {
            "redis_ha_inventory_digest": redis_ha_inventory_digest,
            "redis_ha_parts_in_place": redis_ha_parts_in_place,
            "redis_ha_tree_digest": redis_ha_tree_digest,
        }
