"""TLS for loopback clusters: a throwaway CA with certificates, and TLS listeners beside the plain ones.

``add_tls_listeners`` is the first step of switching TLS on a running cluster: every Redis node
takes a TLS port at run time (``CONFIG SET``), every Sentinel is restarted, one at a time, with
one in its file (Sentinel has no ``CONFIG SET``); all keep their plain port and speak plain text
to each other. It returns the port map ``{plain port: TLS port}`` a client needs meanwhile.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.cluster import LoopbackCluster, _free_port

__all__ = ["add_tls_listeners", "make_certificates", "server_tls_config"]

CERTIFICATE_NAMES = ("ca.crt", "ca.key", "server.crt", "server.key", "client.crt", "client.key")


def make_certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, valid one day (openssl)."""
    paths = {name: directory / name for name in CERTIFICATE_NAMES}

    def openssl(command: str, *paths_: Path) -> None:
        """``command`` with ``{}`` replaced by ``paths_`` in turn (no path has a space)."""
        argv = ["openssl", *command.format(*paths_).split()]
        subprocess.run(argv, check=True, capture_output=True, timeout=60)

    openssl(
        "req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-CA -keyout {} -out {}", *_key_and_cert("ca", paths)
    )
    for name, extension in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        request, extfile = directory / f"{name}.csr", directory / f"{name}.ext"
        extfile.write_text(extension + "\n")
        key, cert = _key_and_cert(name, paths)
        openssl(f"req -newkey rsa:2048 -nodes -subj /CN={name} -keyout {{}} -out {{}}", key, request)
        openssl(
            "x509 -req -in {} -CA {} -CAkey {} -CAcreateserial -days 1 -extfile {} -out {}",
            request, paths["ca.crt"], paths["ca.key"], extfile, cert,
        )  # fmt: skip
    return paths


def _key_and_cert(name: str, paths: dict[str, Path]) -> tuple[Path, Path]:
    return paths[f"{name}.key"], paths[f"{name}.crt"]


def server_tls_config(certs: dict[str, Path]) -> dict[str, str]:
    """The certificate settings of a Redis node or Sentinel (clients must show a certificate too)."""
    return {
        "tls-cert-file": str(certs["server.crt"]),
        "tls-key-file": str(certs["server.key"]),
        "tls-ca-cert-file": str(certs["ca.crt"]),
    }


def add_tls_listeners(cluster: LoopbackCluster, certs: dict[str, Path]) -> dict[int, int]:
    """Give every node and Sentinel a TLS port beside its plain one; return ``{plain: TLS}``."""
    settings = server_tls_config(certs)
    port_map: dict[int, int] = {}
    for node in cluster.nodes:
        tls_port = _free_port()
        with cluster.redis_client(node) as admin:
            for key, value in settings.items():
                admin.config_set(key, value)
            admin.config_set("tls-port", tls_port)
        port_map[node.port] = tls_port
    for index, sentinel in enumerate(cluster.sentinels):
        tls_port = _free_port()
        cluster.stop_node(sentinel)
        with sentinel.config_path.open("a") as config:
            config.write("".join(f"{key} {value}\n" for key, value in settings.items()))
            config.write(f"tls-port {tls_port}\n")
        cluster.start_sentinel(index)
        port_map[sentinel.port] = tls_port
    cluster.wait_healthy()
    return port_map
