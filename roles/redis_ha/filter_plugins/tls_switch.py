"""Where a running cluster stands on its way between plain text and TLS (make tls-switch).

The inventory holds the target (``redis_ha_tls`` and the ports); each node's config files say how
it listens now. One port cannot serve both modes, so the target ports differ from the old ones:
the cluster listens on both while it moves, then closes the old ones (README, "Turning TLS on or
off"). ``tls_switch_plan`` reads every host's listeners and returns the old mode's ports still
open (what the steps connect to and move away from), whether the switch is complete, and every
reason it cannot be done, each a sentence that says what to fix. Pure.
"""

from __future__ import annotations

import re
from typing import Any

_LISTENER = re.compile(r"^\s*(port|tls-port)\s+\"?(\d+)\"?\s*$")
_SERVICES = (("redis", "redis_ha_redis_port"), ("sentinel", "redis_ha_sentinel_port"))


def config_listeners(config_text: str | None) -> dict[str, int]:
    """``port`` and ``tls-port`` of a redis.conf or sentinel.conf (0 when absent or closed)."""
    found = {"port": 0, "tls-port": 0}
    for line in str(config_text or "").splitlines():
        match = _LISTENER.match(line)
        if match:
            found[match[1]] = int(match[2])
    return found


def tls_switch_plan(
    configs: dict[str, dict[str, str | None]], tls: bool, redis_port: int | str, sentinel_port: int | str
) -> dict[str, Any]:
    """``configs``: host -> {"redis": redis.conf text, "sentinel": sentinel.conf text} for the
    services the host runs (None or empty: no file). Returns ``old`` ({"redis": port or None, "sentinel":
    port or None}: the old mode's ports some host still listens on), ``done`` (every host listens on
    the target ports only) and ``problems`` (sentences; empty when the switch may go on)."""
    tls = bool(tls)
    target = {"redis": int(redis_port), "sentinel": int(sentinel_port)}
    new_key, old_key = ("tls-port", "port") if tls else ("port", "tls-port")
    mode, old_mode = ("TLS", "plain text") if tls else ("plain text", "TLS")
    problems: list[str] = []
    old_ports: dict[str, set[int]] = {"redis": set(), "sentinel": set()}
    on_old_port: dict[str, list[str]] = {"redis": [], "sentinel": []}
    for host in sorted(configs):
        for service, variable in _SERVICES:
            if service not in configs[host]:
                continue
            text = configs[host][service]
            if not text:
                problems.append(
                    f"{host} has no {service} config yet: deploy the cluster as it is (make deploy with the old "
                    f"settings) before switching TLS, or leave {host} out until the switch is done."
                )
                continue
            listeners = config_listeners(text)
            new_open, old_open = listeners[new_key], listeners[old_key]
            if new_open not in (0, target[service]):
                problems.append(
                    f"{host}'s {service} serves {mode} on port {new_open}, not {variable} {target[service]}: the kit "
                    f"does not move a port within one mode; set {variable} back to {new_open}."
                )
            if old_open == target[service]:
                on_old_port[service].append(host)
            elif old_open:
                old_ports[service].add(old_open)
    for service, variable in _SERVICES:
        if on_old_port[service]:
            problems.append(
                f"{variable} is {target[service]}, the port {service} serves {old_mode} on (on "
                f"{', '.join(on_old_port[service])}): one port cannot serve both while the cluster moves; choose a "
                f"free port for {mode}, e.g. {target[service] + 1}."
            )
        if len(old_ports[service]) > 1:
            listed = ", ".join(str(p) for p in sorted(old_ports[service]))
            problems.append(
                f"The {service} hosts serve {old_mode} on different ports ({listed}): the kit switches a cluster "
                f"whose nodes share one {variable}; make them agree first."
            )
    old = {service: min(ports) if ports else None for service, ports in old_ports.items()}
    return {
        "old": old,
        "done": not problems and old == {"redis": None, "sentinel": None},
        "problems": problems,
        "map": {str(old[s]): target[s] for s in ("redis", "sentinel") if old[s] is not None},
    }


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {"redis_ha_tls_switch_plan": tls_switch_plan, "redis_ha_config_listeners": config_listeners}
