"""The drill backend for real hosts: Ansible over SSH, with the environment's inventory.

Breaking and restoring go through ``ansible/drill.yml`` (one host, ``drill_step=break|restore``);
a rolling restart is ``ansible/upgrade.yml`` with forced restarts; a total loss is
``ansible/backup.yml``, ``ansible/drill.yml`` (the wipe, kind total-loss) and ``ansible/restore.yml``.
Which host is which comes from ``ansible-inventory --list``; how apps reach the cluster from
``.deploy/<env>/redis-ha.env``, which ``make deploy`` wrote. Parsing both is pure (``parse_env_file``,
``hosts_by_address``, ``prometheus_url_from``, ``alert_receiver_url_from``, ``app_host_from``); only
``HostsBackend`` and ``AppHostTraffic`` run commands.

``AppHostTraffic`` runs the drill's traffic on an app host instead of this machine
(``--traffic-on app``): ``ansible/drill.yml drill_step=traffic-start`` starts ``redis-ha drill
traffic`` there from the app's virtualenv and returns once jobs flow; ``drill_step=traffic-stop``
drains it, fetches its records as one archive and deletes them on the host; the archive is
unpacked into the results directory (``records.unpack_records``), where the report reads them as
if the traffic had run here.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Protocol

from redis_ha.config import Address, format_address
from redis_ha.drill.kinds import Plan
from redis_ha.drill.orchestrator import TRAFFIC_STOP_MARGIN_S, DrillOptions, say, traffic_arguments
from redis_ha.drill.records import CONTROLLER, unpack_records

logger = logging.getLogger(__name__)

PLAYBOOK_TIMEOUT_S = 900.0
DEFAULT_PROMETHEUS_PORT = 9090
APP_GROUP = "app"
RECORDS_ARCHIVE = "app-records.tgz"
TRAFFIC_RUNTIME_MARGIN_S = 120.0
"""The app host stops the traffic's unit this long after its own --duration and drain, whatever happens."""


def find_repo_root(hint: str | None = None) -> Path:
    """The redis-ha-kit checkout: ``hint``, else the first parent of the cwd holding ansible/site.yml."""
    candidates = [Path(hint)] if hint else [Path.cwd(), *Path.cwd().parents]
    for path in candidates:
        if (path / "ansible" / "site.yml").is_file():
            return path.resolve()
    raise SystemExit("redis-ha drill run: run it from the redis-ha-kit checkout (no ansible/site.yml found)")


def parse_env_file(text: str) -> dict[str, str]:
    """``KEY='value'`` lines of a rendered redis-ha.env (shell syntax, comments ignored). Pure."""
    env = {}
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        words = shlex.split(raw) if raw else [""]
        env[key.strip()] = words[0] if words else ""
    return env


def _address(hostvars: dict[str, Any], host: str) -> str:
    vars_ = hostvars.get(host, {})
    value = vars_.get("redis_ha_address") or vars_.get("ansible_host") or host
    return str(value)


def hosts_by_address(inventory: dict[str, Any], groups: tuple[str, ...] = ("redis", "sentinel")) -> dict[str, str]:
    """Address -> inventory host for the hosts of ``groups`` (``ansible-inventory --list`` output). Pure.

    An address is ``redis_ha_address`` if the inventory sets it (and it is not a template), else
    ``ansible_host``, else the host name: what the nodes announce to Sentinel.
    """
    hostvars = inventory.get("_meta", {}).get("hostvars", {})
    found = {}
    for group in groups:
        for host in inventory.get(group, {}).get("hosts", []):
            address = _address(hostvars, host)
            found[address if "{{" not in address else str(hostvars.get(host, {}).get("ansible_host", host))] = host
    return found


def prometheus_url_from(inventory: dict[str, Any]) -> tuple[str | None, str]:
    """The first monitoring host's Prometheus URL, or None and why. Pure."""
    hosts = inventory.get("monitoring", {}).get("hosts", [])
    if not hosts:
        return None, "no monitoring host configured (inventory group 'monitoring' is empty)"
    hostvars = inventory.get("_meta", {}).get("hostvars", {})
    host = hosts[0]
    address = str(hostvars.get(host, {}).get("ansible_host", host))
    port = hostvars.get(host, {}).get("monitoring_prometheus_port", DEFAULT_PROMETHEUS_PORT)
    return f"http://{address}:{port}", f"Prometheus on {host}"


def alert_receiver_url_from(inventory: dict[str, Any]) -> tuple[str | None, str]:
    """The webhook receiver whose records tell when an alert arrived, or None and why. Pure.

    It is ``drill_alert_receiver_url`` of the first monitoring host: a receiver that lists the
    notifications it got with their receive times (as the lab's does). A chat or pager service
    cannot be asked, so without it the report says the delivery time is unknown.
    """
    hosts = inventory.get("monitoring", {}).get("hosts", [])
    hostvars = inventory.get("_meta", {}).get("hostvars", {})
    url = hostvars.get(hosts[0], {}).get("drill_alert_receiver_url") if hosts else None
    if not url:
        return None, (
            "no webhook receiver records to read (set drill_alert_receiver_url on the monitoring host, "
            "or ALERT_RECEIVER_URL)"
        )
    return str(url), f"drill_alert_receiver_url of {hosts[0]}"


def app_host_from(inventory: dict[str, Any], wanted: str) -> str:
    """The inventory host to run the traffic on: the first of group ``app`` for ``app``, else ``wanted``. Pure.

    ValueError, saying what the inventory has, when there is no such app host.
    """
    hosts = [str(h) for h in inventory.get(APP_GROUP, {}).get("hosts", [])]
    if wanted == APP_GROUP:
        if not hosts:
            raise ValueError(
                f"the inventory has no app host (group '{APP_GROUP}' is empty); use --traffic-on {CONTROLLER}"
            )
        return hosts[0]
    if wanted not in hosts:
        known = ", ".join(hosts) or "-"
        raise ValueError(f"'{wanted}' is not an app host of the inventory (group '{APP_GROUP}': {known})")
    return wanted


class HostsBackend:
    name = "hosts"

    def __init__(self, env: str, root: Path) -> None:
        self.env = env
        self.root = root
        self.inventory_dir = root / "ansible" / "inventories" / env
        if not self.inventory_dir.is_dir():
            known = ", ".join(sorted(p.name for p in self.inventory_dir.parent.iterdir() if p.is_dir()))
            raise SystemExit(f"redis-ha drill: no inventory for ENV={env} (known: {known})")
        self.env_file = root / ".deploy" / env / "redis-ha.env"
        self._inventory: dict[str, Any] | None = None
        self.bin = Path(sys.executable).parent

    # Inventory and settings.

    def _ansible_env(self) -> dict[str, str]:
        return {**os.environ, "ANSIBLE_CONFIG": str(self.root / "ansible" / "ansible.cfg")}

    def _vault_args(self) -> list[str]:
        args = []
        if os.environ.get("VAULT_PASSWORD_FILE"):
            args += ["--vault-password-file", os.environ["VAULT_PASSWORD_FILE"]]
        if os.environ.get("ASK_VAULT"):
            args.append("--ask-vault-pass")
        return args

    @property
    def inventory(self) -> dict[str, Any]:
        if self._inventory is None:
            result = subprocess.run(
                [str(self.bin / "ansible-inventory"), "-i", str(self.inventory_dir), "--list", *self._vault_args()],
                capture_output=True, text=True, check=True, env=self._ansible_env(), cwd=self.root,
            )  # fmt: skip
            self._inventory = json.loads(result.stdout)
        return self._inventory

    def client_env(self) -> dict[str, str]:
        try:
            return parse_env_file(self.env_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SystemExit(
                f"redis-ha drill: {self.env_file} is missing; deploy first (make deploy ENV={self.env})"
            ) from None

    def prometheus_url(self) -> tuple[str | None, str]:
        override = os.environ.get("PROMETHEUS_URL")
        if override:
            return override, "PROMETHEUS_URL"
        return prometheus_url_from(self.inventory)

    def alert_receiver_url(self) -> tuple[str | None, str]:
        override = os.environ.get("ALERT_RECEIVER_URL")
        if override:
            return override, "ALERT_RECEIVER_URL"
        return alert_receiver_url_from(self.inventory)

    def host_for(self, target: Address) -> str:
        hosts = hosts_by_address(self.inventory)
        if target[0] not in hosts:
            raise RuntimeError(f"{format_address(target)} is not an address of any redis/sentinel host in {self.env}")
        return hosts[target[0]]

    # Acting.

    def playbook(self, playbook: str, limit: str, extra: dict[str, Any]) -> None:
        argv = [str(self.bin / "ansible-playbook"), "-i", str(self.inventory_dir), *self._vault_args()]
        argv += [str(self.root / "ansible" / playbook)]
        if limit:
            argv += ["-e", f"drill_target={limit}"]
        for key, value in extra.items():
            # Strings as key=value (readable in the log), anything else as JSON (lists stay lists).
            argv += ["-e", f"{key}={value}" if isinstance(value, str) else json.dumps({key: value})]
        print(f"drill: running {' '.join(shlex.quote(a) for a in argv[1:])}", flush=True)
        subprocess.run(argv, check=True, env=self._ansible_env(), cwd=self.root, timeout=PLAYBOOK_TIMEOUT_S)

    def backup(self) -> str:
        self.playbook("backup.yml", "", {})
        return "ran ansible/backup.yml (an in-sync replica took the backup)"

    def break_(self, plan: Plan, target: Address | None) -> str:
        if plan.action == "wipe":
            extra = {"drill_step": "break", "drill_kind": "total-loss", "drill_confirm_wipe": "yes"}
            self.playbook("drill.yml", "redis", extra)
            return (
                "ran ansible/drill.yml (total-loss) on group redis:"
                " every Redis node stopped and its RDB and AOF removed"
            )
        if plan.action == "rolling-restart":
            self.playbook("upgrade.yml", "", {"redis_force_restart": "true", "sentinel_force_restart": "true"})
            return "ran ansible/upgrade.yml with forced restarts of every redis-server and Sentinel"
        assert target is not None
        host = self.host_for(target)
        self.playbook("drill.yml", host, {"drill_step": "break", "drill_kind": plan.kind})
        return f"{plan.description} on {host} ({format_address(target)})"

    def restore(self, plan: Plan, target: Address | None) -> str:
        if plan.action == "wipe":
            self.playbook("restore.yml", "", {"restore_from": "latest", "restore_confirm": "yes"})
            return "ran ansible/restore.yml with the latest backup"
        hosts = "redis:sentinel" if target is None else self.host_for(target)
        self.playbook("drill.yml", hosts, {"drill_step": "restore", "drill_kind": plan.kind})
        return f"ran ansible/drill.yml drill_step=restore on {hosts}"


class PlaybookRunner(Protocol):
    def playbook(self, playbook: str, limit: str, extra: dict[str, Any]) -> None: ...


class AppHostTraffic:
    """The drill's traffic on an app host of the inventory, over SSH with ``ansible/drill.yml``."""

    def __init__(self, backend: PlaybookRunner, host: str, options: DrillOptions) -> None:
        self.backend = backend
        self.where = host
        self.options = options
        self.queue: str | None = None

    def start(self, queue: str, max_s: float) -> None:
        self.queue = queue
        options = self.options
        say(f"starting the traffic on {self.where} ({options.rate:g} jobs/s, queue {queue})")
        try:
            self.backend.playbook(
                "drill.yml",
                self.where,
                {
                    "drill_step": "traffic-start",
                    "drill_traffic_id": queue,
                    "drill_traffic_args": traffic_arguments(options, max_s),
                    "drill_traffic_max_s": round(max_s + options.drain_timeout_s + TRAFFIC_RUNTIME_MARGIN_S),
                    "drill_traffic_ready_timeout_s": round(options.ready_timeout_s),
                },
            )
        except subprocess.SubprocessError as exc:
            raise RuntimeError(
                f"the traffic did not start on {self.where} ({_short(exc)}); see the output above"
            ) from None
        say(f"traffic flowing on {self.where}")

    def stop(self) -> None:
        if self.queue is None:
            return
        out = self.options.out_dir
        archive = (out / RECORDS_ARCHIVE).resolve()
        archive.unlink(missing_ok=True)
        try:
            self.backend.playbook(
                "drill.yml",
                self.where,
                {
                    "drill_step": "traffic-stop",
                    "drill_traffic_id": self.queue,
                    "drill_traffic_stop_timeout_s": round(self.options.drain_timeout_s + TRAFFIC_STOP_MARGIN_S),
                    "drill_traffic_fetch_to": str(archive),
                },
            )
        except subprocess.SubprocessError as exc:
            raise RuntimeError(
                f"stopping the traffic on {self.where} failed ({_short(exc)}); see the output above"
            ) from None
        if not archive.exists():
            raise RuntimeError(f"no records came back from {self.where} (its traffic directory was missing)")
        names = unpack_records(archive, out)
        archive.unlink()
        say(f"collected the traffic's records from {self.where}: {', '.join(names)}")


def _short(exc: BaseException) -> str:
    """A failed Ansible run in a few words (its full command line is long and already printed)."""
    if isinstance(exc, subprocess.CalledProcessError):
        return f"ansible-playbook exited with code {exc.returncode}"
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"ansible-playbook ran longer than {exc.timeout:g} s"
    return type(exc).__name__
