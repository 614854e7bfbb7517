"""A deploy ends with the app's .env (0600 in a 0700 directory) and the connection settings printed.

The playbook here is not ansible/'s: the role finds the kit's templates/ from its own path.
"""

from __future__ import annotations

import stat
from pathlib import Path

from tests.ansible.conftest import GOOD_PASSWORDS, PLAYBOOKS, cluster_hosts, run_playbook, write_inventory


def test_deploy_outputs_are_private_and_say_how_to_connect(tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path / "staging", cluster_hosts(), GOOD_PASSWORDS)
    deploy_dir = tmp_path / "deploy" / "staging"
    result = run_playbook(
        PLAYBOOKS / "outputs.yml",
        inventory,
        {"redis_ha_deploy_dir": str(deploy_dir)},
    )
    assert result.ok, result.output
    assert "REDIS_SENTINELS=10.1.0.11:26379,10.1.0.12:26379,10.1.0.13:26379" in result.output
    assert "REDIS_MASTER_NAME=mymaster" in result.output
    assert f"{deploy_dir}/redis-ha.env" in result.output
    for password in GOOD_PASSWORDS.values():
        assert password not in result.output
    assert stat.S_IMODE(deploy_dir.stat().st_mode) == 0o700
    env_file = deploy_dir / "redis-ha.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert "# Environment: staging." in env_file.read_text()
    assert (deploy_dir / "prometheus-scrape.yml").exists()
