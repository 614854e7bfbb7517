"""May a drill start? Pure decisions over the environment name, the operator's word and observed health.

Each returns ``None`` or a sentence saying why not; the CLI prints it and exits non-zero.
"""

from __future__ import annotations

from redis_ha.drill.kinds import Plan
from redis_ha.health import State

PROTECTED_ENVS = frozenset({"production"})
CONFIRM_WORD = "yes"


def confirmation_refusal(env: str, confirm: str | None) -> str | None:
    """Refuse a protected environment unless the operator said CONFIRM=yes."""
    if env in PROTECTED_ENVS and (confirm or "").strip().lower() != CONFIRM_WORD:
        return (
            f"refusing to break '{env}' without confirmation: this drill takes its master away while "
            f"real users write to it. Run it again with CONFIRM={CONFIRM_WORD} if that is what you want."
        )
    return None


def data_loss_refusal(plan: Plan, env: str, confirm: str | None) -> str | None:
    """Refuse a drill that loses data (total-loss) anywhere but the lab unless the operator said CONFIRM=yes."""
    if plan.action == "wipe" and env != "lab" and (confirm or "").strip().lower() != CONFIRM_WORD:
        return (
            f"refusing to wipe '{env}' without confirmation: {plan.kind} deletes every node's data and restores "
            "the backup it takes first, so writes acknowledged after that backup are lost. Run it again with "
            f"CONFIRM={CONFIRM_WORD} if that is what you want."
        )
    return None


def health_refusal(state: State, reason: str) -> str | None:
    """Refuse unless the cluster is healthy (one master, replicas in sync, quorum reachable)."""
    if state != "healthy":
        return (
            f"refusing to start: the cluster is {state}: {reason}. A drill starts from a healthy cluster, "
            "so that what it measures is the failover it causes and not an earlier fault."
        )
    return None


def target_refusal(plan: Plan, target_found: bool, why: str) -> str | None:
    """Refuse when the node the drill would act on cannot be chosen."""
    if plan.target != "cluster" and not target_found:
        return f"refusing to start: no {plan.target} to act on for {plan.kind} ({why})"
    return None


def refusal(env: str, confirm: str | None, state: State, reason: str) -> str | None:
    """The first reason not to start, checking the cheap, operator-side one first."""
    return confirmation_refusal(env, confirm) or health_refusal(state, reason)
