"""Alertmanager's configuration from the inventory, and everything wrong with the inventory's part.

Pure functions: the alertmanager role's preflight passes its variables to
``redis_ha_alertmanager_problems`` (every problem at once, each naming the fix), and its template
renders ``redis_ha_alertmanager_config`` as YAML. Webhook secrets never enter the config: it points
at one file per secret (``credentials_file``, ``password_file``) that the role writes, root-only.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

NULL_RECEIVER = "none"
"""The receiver that notifies nobody (alerts stay in the UI); always defined."""
SECRET_SUFFIXES = {"webhook_bearer_token": ".token", "webhook_basic_auth_password": ".password"}
RECEIVER_KEYS = frozenset(
    {"name", "webhook_url", "webhook_basic_auth_username", "send_resolved", "configs", *SECRET_SUFFIXES}
)
ROUTE_KEYS = frozenset({"receiver", "matchers", "continue", "group_by", "group_wait", "group_interval", "repeat_interval"})
INTERVAL_NAMES = ("group_wait", "group_interval", "repeat_interval")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
_MATCHER = re.compile(r'^\s*[A-Za-z_][A-Za-z0-9_]*\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*$')
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _url_problem(url: Any) -> str | None:
    """Why ``url`` is no webhook URL Alertmanager can post to, or None."""
    if not isinstance(url, str) or not url:
        return "is empty"
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return f"is {url!r}: use an http:// or https:// URL with a host"
    if parsed.username or parsed.password:
        return "carries a user or password in the URL: use webhook_basic_auth_username/_password (kept in a file)"
    return None


def _receiver_problems(index: int, receiver: Any) -> list[str]:
    where = f"alertmanager_receivers[{index}]"
    if not isinstance(receiver, Mapping):
        return [f"{where} is {receiver!r}: give a dict with name and webhook_url (or configs)."]
    name = receiver.get("name")
    if isinstance(name, str) and name:
        where = f"receiver {name!r}"
    problems = []
    unknown = sorted(set(receiver) - RECEIVER_KEYS)
    if unknown:
        problems.append(f"{where} has unknown key(s) {', '.join(unknown)}: use {', '.join(sorted(RECEIVER_KEYS))}.")
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(f"{where} has name {name!r}: use letters, digits, '-' and '_' (it names its secret files).")
    elif name == NULL_RECEIVER:
        problems.append(f"receiver name {NULL_RECEIVER!r} is the built-in receiver that notifies nobody: rename yours.")
    has_webhook = "webhook_url" in receiver
    if has_webhook:
        why = _url_problem(receiver["webhook_url"])
        if why:
            problems.append(f"{where}: webhook_url {why}.")
    configs = receiver.get("configs", {})
    if not isinstance(configs, Mapping) or not all(str(k).endswith("_configs") for k in configs):
        problems.append(
            f"{where}: configs must map Alertmanager receiver keys (email_configs, slack_configs, ...) to lists."
        )
    elif not has_webhook and not configs:
        problems.append(f"{where} notifies nobody: set webhook_url or configs (email_configs, slack_configs, ...).")
    if not has_webhook and any(key.startswith("webhook_") for key in receiver):
        problems.append(f"{where} has webhook credentials but no webhook_url: add the URL or remove them.")
    if "webhook_bearer_token" in receiver and (
        "webhook_basic_auth_username" in receiver or "webhook_basic_auth_password" in receiver
    ):
        problems.append(f"{where} sets both a bearer token and basic auth: keep one.")
    if ("webhook_basic_auth_username" in receiver) != ("webhook_basic_auth_password" in receiver):
        problems.append(f"{where}: set webhook_basic_auth_username and webhook_basic_auth_password together.")
    for key in SECRET_SUFFIXES:
        if key in receiver and (not isinstance(receiver[key], str) or not receiver[key]):
            problems.append(f"{where}: {key} is empty: set it from the vault or remove it.")
    return problems


def _route_problems(index: int, route: Any, known: set[str]) -> list[str]:
    where = f"alertmanager_routes[{index}]"
    if not isinstance(route, Mapping):
        return [f"{where} is {route!r}: give a dict with receiver and matchers."]
    problems = []
    unknown = sorted(set(route) - ROUTE_KEYS)
    if unknown:
        problems.append(f"{where} has unknown key(s) {', '.join(unknown)}: use {', '.join(sorted(ROUTE_KEYS))}.")
    receiver = route.get("receiver")
    if receiver not in known:
        problems.append(
            f"{where} sends to receiver {receiver!r}, which alertmanager_receivers does not define "
            f"(known: {', '.join(sorted(known))})."
        )
    matchers = route.get("matchers", [])
    if not isinstance(matchers, list) or not matchers:
        problems.append(f'{where} has no matchers: give a list such as [\'severity="critical"\'].')
    else:
        problems += [
            f"{where}: matcher {m!r} is not label=\"value\" (operators =, !=, =~, !~; the value in double quotes)."
            for m in matchers
            if not isinstance(m, str) or not _MATCHER.match(m)
        ]
    problems += _grouping_problems(route, where)
    return problems


def _grouping_problems(settings: Mapping[str, Any], where: str) -> list[str]:
    problems = [
        f"{where}: {name} is {settings[name]!r}: use a duration such as 30s, 5m or 4h."
        for name in INTERVAL_NAMES
        if name in settings and not _DURATION.match(str(settings[name]))
    ]
    group_by = settings.get("group_by", [])
    if not isinstance(group_by, list) or not all(
        isinstance(label, str) and (label == "..." or _LABEL.match(label)) for label in group_by
    ):
        problems.append(f"{where}: group_by is {group_by!r}: give a list of label names (or ['...']).")
    return problems


def alertmanager_problems(settings: Mapping[str, Any]) -> list[str]:
    """Everything wrong with the alertmanager role's variables, one sentence each.

    ``settings``: receivers, routes, default_receiver, group_by, group_wait, group_interval,
    repeat_interval, port, cluster_port, address, host.
    """
    problems = []
    receivers = settings.get("receivers")
    routes = settings.get("routes")
    if not isinstance(receivers, list):
        problems.append(f"alertmanager_receivers is {receivers!r}: give a list (or [] for none).")
        receivers = []
    if not isinstance(routes, list):
        problems.append(f"alertmanager_routes is {routes!r}: give a list (or [] for none).")
        routes = []
    for index, receiver in enumerate(receivers):
        problems += _receiver_problems(index, receiver)
    names = [r.get("name") for r in receivers if isinstance(r, Mapping)]
    duplicates = sorted({str(n) for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(f"receiver name(s) {', '.join(duplicates)} are used twice: each receiver needs its own name.")
    known = {str(n) for n in names} | {NULL_RECEIVER}
    if settings.get("default_receiver") not in known:
        problems.append(
            f"alertmanager_default_receiver is {settings.get('default_receiver')!r}, which alertmanager_receivers "
            f"does not define (known: {', '.join(sorted(known))})."
        )
    for index, route in enumerate(routes):
        problems += _route_problems(index, route, known)
    problems += _grouping_problems(settings, "alertmanager")
    for name in ("port", "cluster_port"):
        value = settings.get(name)
        if not isinstance(value, int) or not 1 <= value <= 65535:
            problems.append(f"alertmanager_{name} is {value!r}: use a port between 1 and 65535.")
    if settings.get("port") == settings.get("cluster_port"):
        problems.append("alertmanager_port and alertmanager_cluster_port are the same: give each its own port.")
    if settings.get("address") in ("0.0.0.0", "::", "127.0.0.1", "localhost", "", None):
        problems.append(
            f"redis_ha_address is {settings.get('address')!r} on {settings.get('host')}: Alertmanager must "
            "listen on the private address only; set redis_ha_address to it."
        )
    return problems


def secret_files(receivers: list[Mapping[str, Any]], directory: str) -> list[dict[str, str]]:
    """The webhook secrets to write: [{path, key, receiver}], one file per secret (values left out)."""
    return [
        {"path": f"{directory}/{r['name']}{suffix}", "key": key, "receiver": str(r["name"])}
        for r in receivers
        for key, suffix in SECRET_SUFFIXES.items()
        if key in r
    ]


def _webhook(receiver: Mapping[str, Any], directory: str) -> dict[str, Any]:
    config: dict[str, Any] = {"url": receiver["webhook_url"], "send_resolved": bool(receiver.get("send_resolved", True))}
    name = receiver["name"]
    if "webhook_bearer_token" in receiver:
        config["http_config"] = {
            "authorization": {"type": "Bearer", "credentials_file": f"{directory}/{name}.token"}
        }
    elif "webhook_basic_auth_username" in receiver:
        config["http_config"] = {
            "basic_auth": {
                "username": receiver["webhook_basic_auth_username"],
                "password_file": f"{directory}/{name}.password",
            }
        }
    return config


def alertmanager_config(settings: Mapping[str, Any], secrets_dir: str) -> dict[str, Any]:
    """alertmanager.yml as a dict, from the settings ``alertmanager_problems`` accepted."""
    receivers: list[dict[str, Any]] = [{"name": NULL_RECEIVER}]
    for receiver in settings["receivers"]:
        rendered: dict[str, Any] = {"name": receiver["name"]}
        if "webhook_url" in receiver:
            rendered["webhook_configs"] = [_webhook(receiver, secrets_dir)]
        rendered.update(receiver.get("configs", {}))
        receivers.append(rendered)
    route: dict[str, Any] = {
        "receiver": settings["default_receiver"],
        "group_by": list(settings["group_by"]),
        **{name: str(settings[name]) for name in INTERVAL_NAMES},
    }
    if settings["routes"]:
        route["routes"] = [{key: value for key, value in r.items() if key in ROUTE_KEYS} for r in settings["routes"]]
    return {"route": route, "receivers": receivers}


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {
            "redis_ha_alertmanager_problems": alertmanager_problems,
            "redis_ha_alertmanager_config": alertmanager_config,
            "redis_ha_alertmanager_secret_files": secret_files,
        }
