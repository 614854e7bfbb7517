"""REDIS_PORT_MAP on a real cluster half way from plain text to TLS.

Every Redis node and Sentinel listens on both ports, and the Sentinels still monitor and name the
plain ones, as while the kit switches a running cluster to TLS. A TLS client with the port map
reaches the master on its TLS port and follows a failover there; without the map it cannot
connect at all (it would speak TLS to a plain port), which is what the map is for.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis_ha

from tests.support.cluster import LoopbackCluster, Node, _free_port

pytestmark = pytest.mark.timeout(120)


def _make_certificates(directory: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate (openssl)."""
    paths = {
        name: directory / name for name in ("ca.crt", "ca.key", "server.crt", "server.key", "client.crt", "client.key")
    }

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=redis-ha-kit test CA",
        "-keyout",
        str(paths["ca.key"]),
        "-out",
        str(paths["ca.crt"]),
    )
    for name, extension in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        csr = directory / f"{name}.csr"
        extfile = directory / f"{name}.ext"
        extfile.write_text(extension + "\n")
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            str(paths[f"{name}.key"]),
            "-out",
            str(csr),
        )
        openssl(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(paths["ca.crt"]),
            "-CAkey",
            str(paths["ca.key"]),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            str(extfile),
            "-out",
            str(paths[f"{name}.crt"]),
        )
    return paths


@pytest.fixture(scope="module")
def half_switched(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LoopbackCluster, dict[int, int], dict[str, Path]]]:
    """A cluster whose nodes and Sentinels listen on a TLS port beside their plain one."""
    certs = _make_certificates(tmp_path_factory.mktemp("certs"))
    tls_settings = {
        "tls-cert-file": str(certs["server.crt"]),
        "tls-key-file": str(certs["server.key"]),
        "tls-ca-cert-file": str(certs["ca.crt"]),
    }
    with LoopbackCluster(replicas=1, sentinels=3) as cluster:
        port_map: dict[int, int] = {}
        for node in cluster.nodes:
            tls_port = _free_port()
            with cluster.redis_client(node) as admin:
                for key, value in tls_settings.items():
                    admin.config_set(key, value)
                admin.config_set("tls-port", tls_port)  # a Redis node takes its TLS listener at run time
            port_map[node.port] = tls_port
        for index, sentinel in enumerate(cluster.sentinels):
            # Sentinel has no CONFIG SET: one at a time, restarted with the listener in its file.
            tls_port = _free_port()
            cluster.stop_node(sentinel)
            with sentinel.config_path.open("a") as config:
                config.write("".join(f"{key} {value}\n" for key, value in tls_settings.items()))
                config.write(f"tls-port {tls_port}\n")
            cluster.start_sentinel(index)
            port_map[sentinel.port] = tls_port
        cluster.wait_healthy()
        yield cluster, port_map, certs


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
