"""``mtp serve`` with TLS: a client that trusts the server's certificate is served, a
plaintext client and a client that trusts another CA are not. No cluster: the health service
answers without one, and the token is checked before any call reaches the scheduler."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TOKEN = "tls-test-token-0123456789"


def _self_signed(tmp: Path, name: str) -> tuple[bytes, bytes]:
    """A certificate for localhost / 127.0.0.1, signed by its own key (PEM cert, PEM key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM,
                              serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def test_tls_serves_clients_that_trust_the_certificate_only(tmp_path: Path) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from mtp.api.server import ServerConfig, start_server
    from mtp.client import ApiInputError, Client
    from mtp.v1 import training_pb2, training_pb2_grpc

    cert, key = _self_signed(tmp_path, "mtp-test")
    other, _ = _self_signed(tmp_path, "someone-else")
    server = start_server(ServerConfig(port=0, token=TOKEN, tls_cert=cert, tls_key=key,
                                       storage=str(tmp_path)))
    target = f"127.0.0.1:{server.port}"
    try:
        with grpc.secure_channel(target, grpc.ssl_channel_credentials(cert)) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=30)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            # over TLS the token is still required
            with pytest.raises(grpc.RpcError) as no_token:
                training_pb2_grpc.TrainingServiceStub(channel).GetTask(
                    training_pb2.GetTaskRequest(id="t-0000000000"), timeout=30)
            assert no_token.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with Client(target, token="wrong-token-of-someone-else", tls_ca=cert) as api, \
                pytest.raises(ApiInputError) as wrong:
            api.get("t-0000000000")
        assert wrong.value.code == grpc.StatusCode.UNAUTHENTICATED
        for creds in (None, grpc.ssl_channel_credentials(other)):
            channel = (grpc.insecure_channel(target) if creds is None
                       else grpc.secure_channel(target, creds))
            with channel, pytest.raises(grpc.RpcError) as refused:
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                          timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(grace_s=1.0)
