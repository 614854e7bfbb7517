"""A password rotated in its file reaches the client's next connection: no restart, no error."""

from __future__ import annotations

import os
import time
from pathlib import Path

import redis_ha
from redis_ha.config import Secret

from tests.support.cluster import LoopbackCluster
from tests.support.writer import background_writes

WRITES_MAX = 5000
"""Bound of the writer loop (about 10 ms apart)."""


def write_secret(path: Path, value: str) -> None:
    """Replace the file as a deploy does (a new inode, so even an equal size and mtime is seen)."""
    temporary = path.with_suffix(".new")
    temporary.write_text(value + "\n")
    temporary.chmod(0o600)
    os.replace(temporary, path)


def test_a_secret_read_from_a_file_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "password"
    write_secret(path, "first-Pw-0123456789")
    secret = Secret("first-Pw-0123456789", path)
    assert secret.reveal() == "first-Pw-0123456789"
    write_secret(path, "second-Pw-0123456789")
    assert secret.reveal() == "second-Pw-0123456789"
    path.unlink()
    assert secret.reveal() == "second-Pw-0123456789", "a missing file keeps the last good password"
    assert "second" not in repr(secret)


def test_a_password_rotated_in_its_file_reaches_new_connections_without_an_error(
    cluster: LoopbackCluster, tmp_path: Path
) -> None:
    env = cluster.env()
    redis_file, sentinel_file = tmp_path / "redis-password", tmp_path / "sentinel-password"
    write_secret(redis_file, env.pop("REDIS_PASSWORD"))
    write_secret(sentinel_file, env.pop("REDIS_SENTINEL_PASSWORD"))
    env |= {"REDIS_PASSWORD_FILE": str(redis_file), "REDIS_SENTINEL_PASSWORD_FILE": str(sentinel_file)}
    with redis_ha.connect(env=env) as client, background_writes(client, "rotation", max_writes=WRITES_MAX) as writer:
        time.sleep(0.5)
        new_app, new_sentinel_app = "app-rotated-Pw-0123456789", "sentinel-app-rotated-Pw-0123456789"
        # The deploy's first run: old and new accepted everywhere, then the file moves to the new one.
        for node in cluster.nodes:
            with cluster.redis_client(node) as admin:
                admin.execute_command("ACL", "SETUSER", cluster.app_user, f">{new_app}")
        for index in range(len(cluster.sentinels)):
            with cluster.sentinel_client(index) as admin:
                admin.execute_command("ACL", "SETUSER", cluster.sentinel_app_user, f">{new_sentinel_app}")
        write_secret(redis_file, new_app)
        write_secret(sentinel_file, new_sentinel_app)
        # The second run: the old password is gone. Logged-in connections stay; drop them to prove
        # that the client's new ones log in with the password the file holds now.
        for node in cluster.nodes:
            with cluster.redis_client(node) as admin:
                admin.execute_command("ACL", "SETUSER", cluster.app_user, f"<{cluster.app_password}")
                admin.client_kill_filter(user=cluster.app_user)
        for index in range(len(cluster.sentinels)):
            with cluster.sentinel_client(index) as admin:
                admin.execute_command("ACL", "SETUSER", cluster.sentinel_app_user, f"<{cluster.sentinel_app_password}")
                admin.client_kill_filter(user=cluster.sentinel_app_user)
        before = writer.writes
        time.sleep(1.5)
        assert writer.writes > before + 20, "writes stopped after the old password was dropped"
        # A client made now, from the same environment, needs the new password too.
        with redis_ha.connect(env=env) as fresh:
            assert fresh.get("rotation:0") is not None
    assert writer.errors == []
