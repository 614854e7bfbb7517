"""REDIS_PORT_MAP on a real cluster half way from plain text to TLS.

Every Redis node and Sentinel listens on both ports, and the Sentinels still monitor and name the
plain ones, as while the kit switches a running cluster to TLS. A TLS client with the port map
reaches the master on its TLS port and follows a failover there; without the map it cannot
connect at all (it would speak TLS to a plain port), which is what the map is for.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis_ha

from tests.support.cluster import LoopbackCluster, Node
from tests.support.tls import add_tls_listeners, make_certificates

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def half_switched(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LoopbackCluster, dict[int, int], dict[str, Path]]]:
    """A cluster whose nodes and Sentinels listen on a TLS port beside their plain one."""
    certs = make_certificates(tmp_path_factory.mktemp("certs"))
    with LoopbackCluster(replicas=1, sentinels=3) as cluster:
        yield cluster, add_tls_listeners(cluster, certs), certs


def _tls_client(cluster: LoopbackCluster, certs: dict[str, Path], port_map: dict[int, int] | None) -> redis_ha.HARedis:
    return redis_ha.connect(
        env=cluster.env(),
        tls=True,
        tls_ca_file=str(certs["ca.crt"]),
        tls_cert_file=str(certs["client.crt"]),
        tls_key_file=str(certs["client.key"]),
        port_map=port_map,
        retry_deadline_s=3 if port_map is None else 30,
    )


def _app_ports_on(cluster: LoopbackCluster, node: Node) -> set[int]:
    """The local ports the app user's connections to ``node`` arrived on (CLIENT LIST laddr)."""
    with cluster.redis_client(node) as admin:
        return {int(c["laddr"].rsplit(":", 1)[1]) for c in admin.client_list() if c.get("user") == cluster.app_user}


def test_a_tls_client_with_the_port_map_reaches_the_master_and_follows_a_failover_on_tls_ports(
    half_switched: tuple[LoopbackCluster, dict[int, int], dict[str, Path]],
) -> None:
    cluster, port_map, certs = half_switched
    client = _tls_client(cluster, certs, port_map)
    try:
        client.set("port-map:before", "1")
        first = cluster.master_node()
        assert _app_ports_on(cluster, first) == {port_map[first.port]}

        old = cluster.sentinel_failover()
        new = cluster.wait_for_master_change(old)
        deadline = time.monotonic() + 30
        written = 0
        while time.monotonic() < deadline and written < 50:  # bounded: 50 writes or 30 s
            client.set(f"port-map:after:{written}", "1")
            written += 1
            time.sleep(0.05)
        assert written == 50
        second = cluster.node_for(new)
        assert client.get("port-map:before") == b"1"
        assert _app_ports_on(cluster, second) == {port_map[second.port]}
    finally:
        client.close()


def test_without_the_port_map_a_tls_client_cannot_reach_a_cluster_that_names_plain_ports(
    half_switched: tuple[LoopbackCluster, dict[int, int], dict[str, Path]],
) -> None:
    cluster, _, certs = half_switched
    client = _tls_client(cluster, certs, None)
    try:
        with pytest.raises(redis_ha.RedisUnavailable):
            client.set("port-map:unmapped", "1")
    finally:
        client.close()
