"""TLS to the broker (amqps://), by setting: verified server certificates, client certificates.

RabbitMQ here listens without TLS, so the test puts a TLS-terminating proxy of its own in
front of it (on 127.0.0.1), with a CA, server and client certificates made by openssl.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.processes import Worker, run_producer
from harness.services import RabbitMQ


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, signed by the CA."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make test certificates")
    d = tmp_path_factory.mktemp("certs")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
            "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"),
                      ("client", "extendedKeyUsage=clientAuth")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "1", "-extfile", f"{name}.ext",
                "-out", f"{name}.pem", cwd=d)
    return d


class TlsProxy:
    """Accepts TLS on 127.0.0.1 and forwards the plain bytes to RabbitMQ."""

    def __init__(self, certs: Path, require_client_cert: bool, node: RabbitMQ) -> None:
        self.upstream = (node.host, node.port)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certs / "server.pem", certs / "server.key")
        if require_client_cert:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(certs / "ca.pem")
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError):
            client.close()
            return
        upstream = socket.create_connection(self.upstream)
        threading.Thread(target=self._pump, args=(upstream, tls), daemon=True).start()
        self._pump(tls, upstream)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        self.running = False
        self.listener.close()


@pytest.fixture(params=[False, True], ids=["server-cert", "client-cert"])
def tls_env(request: pytest.FixtureRequest, certs: Path, rabbitmq: RabbitMQ,
            broker_env: dict[str, str]) -> Iterator[dict[str, str]]:
    proxy = TlsProxy(certs, require_client_cert=request.param, node=rabbitmq)
    env = {**broker_env, "RABBITMQ_TLS": "true", "RABBITMQ_PORT": str(proxy.port),
           "BROKER_TLS_CA_FILE": str(certs / "ca.pem"), "BROKER_CONNECT_TIMEOUT": "3"}
    if request.param:
        env |= {"BROKER_TLS_CERT_FILE": str(certs / "client.pem"),
                "BROKER_TLS_KEY_FILE": str(certs / "client.key")}
    yield env
    proxy.close()


def test_producer_and_worker_talk_over_tls(start_worker: Callable[..., Worker],
                                           tls_env: dict[str, str]) -> None:
    worker = start_worker("unique_magic_task", env=tls_env)
    out = run_producer("unique_magic_task", "1", "2", "3", env=tls_env)
    assert (out.returncode, out.stdout.strip()) == (0, "6"), out.stderr
    assert "amqps://" in worker.log
    # The batch path writes its publishes itself, many to a write: over TLS too.
    many = run_producer("unique_magic_task", "1", "2", "3", "--count", "500", env=tls_env)
    assert many.returncode == 0, many.stderr
    assert many.stdout.startswith("unique_magic_task: 500 sent, 500 succeeded, 0 failed in ")


def test_an_untrusted_server_certificate_is_refused(tls_env: dict[str, str]) -> None:
    env = {k: v for k, v in tls_env.items() if k != "BROKER_TLS_CA_FILE"}  # system CAs only
    out = run_producer("unique_magic_task", "1", "2", "3", env=env, timeout=60)
    assert out.returncode == 5
    assert "CERTIFICATE_VERIFY_FAILED" in out.stderr or "certificate verify" in out.stderr


def test_a_missing_client_certificate_is_refused_where_one_is_required(
    certs: Path, rabbitmq: RabbitMQ, broker_env: dict[str, str]
) -> None:
    proxy = TlsProxy(certs, require_client_cert=True, node=rabbitmq)
    try:
        env = {**broker_env, "RABBITMQ_TLS": "true", "RABBITMQ_PORT": str(proxy.port),
               "BROKER_TLS_CA_FILE": str(certs / "ca.pem"), "BROKER_CONNECT_TIMEOUT": "3"}
        out = run_producer("unique_magic_task", "1", "2", "3", env=env, timeout=60)
    finally:
        proxy.close()
    assert out.returncode == 5
    assert len(out.stderr.strip().splitlines()) == 1
