"""The outbound guard: what a webhook URL may be, where it may lead, and one POST to a
real server on 127.0.0.1 (allowed only by the policy the local stack uses)."""

from __future__ import annotations

import http.server
import ipaddress
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chalicelib import outbound
from chalicelib.errors import DeliveryUnreachable, EndpointRefused

PUBLIC = outbound.OutboundPolicy()
LOCAL = outbound.OutboundPolicy(
    allow_http=True, allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),)
)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.com/in", "scheme must be https"),
        ("ftp://hooks.example.com/in", "scheme must be https"),
        ("hooks.example.com/in", "scheme must be https"),
        ("https://user:pw@hooks.example.com/in", "credentials"),
        ("https://hooks.example.com/in#part", "fragment"),
        ("https:///in", "no host"),
        ("https://hooks.example.com:0/in", "port"),
        ("https://hooks.example.com:99999/in", "port"),
        ("https://hooks.example.com/" + "a" * 2048, "longer than 2048"),
        ("https://127.0.0.1/in", "not a public address"),
        ("https://10.1.2.3/in", "not a public address"),
        ("https://172.16.0.1/in", "not a public address"),
        ("https://192.168.1.1/in", "not a public address"),
        ("https://169.254.169.254/latest/meta-data/", "not a public address"),
        ("https://100.64.0.1/in", "not a public address"),
        ("https://0.0.0.0/in", "not a public address"),
        ("https://224.0.0.1/in", "not a public address"),
        ("https://[::1]/in", "not a public address"),
        ("https://[::ffff:127.0.0.1]/in", "not a public address"),
        ("https://[::ffff:169.254.169.254]/in", "not a public address"),
        ("https://[fd00::1]/in", "not a public address"),
        ("https://[fe80::1]/in", "not a public address"),
    ],
)
def test_a_url_of_the_wrong_form_or_address_is_refused(url: str, why: str) -> None:
    with pytest.raises(EndpointRefused, match=why):
        outbound.parse_endpoint(url, PUBLIC)


def test_a_public_https_url_is_taken_apart() -> None:
    endpoint = outbound.parse_endpoint("https://Hooks.Example.COM:8443/in/v1?x=1&y=2", PUBLIC)
    assert (endpoint.scheme, endpoint.host, endpoint.port) == ("https", "hooks.example.com", 8443)
    assert endpoint.target == "/in/v1?x=1&y=2"
    assert endpoint.host_header == "hooks.example.com:8443"
    assert outbound.parse_endpoint("https://bücher.example/", PUBLIC).host == (
        "xn--bcher-kva.example"
    )
    assert outbound.parse_endpoint("https://93.184.215.14", PUBLIC).target == "/"


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "127.1", "017700000001"])
def test_numeric_forms_of_loopback_are_refused_when_resolved(host: str) -> None:
    """Not IP literals to `ipaddress`, but the system resolver reads them as 127.0.0.1."""
    endpoint = outbound.parse_endpoint(f"https://{host}/in", PUBLIC)
    with pytest.raises(EndpointRefused, match=r"resolves to 127\.0\.0\.1"):
        outbound.resolve_endpoint(endpoint, PUBLIC, outbound.system_resolver)


def test_a_name_with_any_private_address_is_refused() -> None:
    endpoint = outbound.parse_endpoint("https://hooks.example.com/in", PUBLIC)

    def resolver(host: str, port: int) -> list[str]:
        assert (host, port) == ("hooks.example.com", 443)
        return ["93.184.215.14", "10.0.0.5"]

    with pytest.raises(EndpointRefused, match=r"resolves to 10\.0\.0\.5"):
        outbound.resolve_endpoint(endpoint, PUBLIC, resolver)
    assert outbound.resolve_endpoint(endpoint, PUBLIC, lambda h, p: ["93.184.215.14"]) == (
        "93.184.215.14"
    )


def test_a_name_that_does_not_resolve_is_unreachable() -> None:
    endpoint = outbound.parse_endpoint("https://no-such-host.invalid/in", PUBLIC)
    with pytest.raises(DeliveryUnreachable, match="does not resolve"):
        outbound.resolve_endpoint(endpoint, PUBLIC, outbound.system_resolver)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("120", 120.0),
        (" 7 ", 7.0),
        ("Fri, 04 Dec 2026 12:00:30 GMT", 30.0),
        ("Fri, 04 Dec 2026 11:00:00 GMT", 0.0),  # in the past: now
        ("soon", None),
        ("-5", None),
    ],
)
def test_retry_after_is_read_as_seconds_or_a_date(value: str | None, seconds: float | None) -> None:
    now = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)
    assert outbound.parse_retry_after(value, now) == seconds


# --- one POST, to a server of the test's own ----------------------------------------------


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records requests and answers as told."""

    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0
    body: bytes = b""
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            assert len(self.headers.get_all("Host") or []) == 1
            headers = {name.lower(): value for name, value in self.headers.items()}
            state.requests.append((self.path, headers, body))
            time.sleep(state.delay_seconds)
            self.send_response(state.status)
            for name, value in state.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def to_loopback(host: str, port: int) -> list[str]:
    """A resolver for the test's name: hooks.example.test is this machine."""
    assert host == "hooks.example.test"
    return ["127.0.0.1"]


def test_a_post_reaches_the_checked_address_with_the_name_as_host(receiver: Receiver) -> None:
    receiver.status, receiver.headers = 503, {"Retry-After": "7"}
    endpoint = outbound.parse_endpoint(f"http://hooks.example.test:{receiver.port}/in?t=1", LOCAL)
    answer = outbound.post(
        endpoint, b'{"a": 1}', {"webhook-id": "evt_1"}, LOCAL, resolve=to_loopback
    )
    assert (answer.status, answer.retry_after_seconds) == (503, 7.0)
    assert answer.elapsed_ms > 0
    ((path, headers, body),) = receiver.requests
    assert (path, body) == ("/in?t=1", b'{"a": 1}')
    assert headers["host"] == f"hooks.example.test:{receiver.port}"
    assert headers["user-agent"] == outbound.USER_AGENT
    assert headers["webhook-id"] == "evt_1"


def test_only_a_short_prefix_of_the_answer_is_kept(receiver: Receiver) -> None:
    receiver.status, receiver.body = 200, b"x" * 300 + b"y" * (200 * 1024)
    endpoint = outbound.parse_endpoint(f"http://127.0.0.1:{receiver.port}/in", LOCAL)
    answer = outbound.post(endpoint, b"{}", {}, LOCAL)
    assert answer.prefix == "x" * outbound.ANSWER_PREFIX_BYTES


def test_a_redirect_is_an_answer_not_followed(receiver: Receiver) -> None:
    receiver.status = 302
    receiver.headers = {"Location": f"http://127.0.0.1:{receiver.port}/elsewhere"}
    endpoint = outbound.parse_endpoint(f"http://127.0.0.1:{receiver.port}/in", LOCAL)
    assert outbound.post(endpoint, b"{}", {}, LOCAL).status == 302
    assert [path for path, _, _ in receiver.requests] == ["/in"]


def test_without_the_local_policy_the_receiver_is_never_called(receiver: Receiver) -> None:
    with pytest.raises(EndpointRefused):
        outbound.parse_endpoint(f"http://127.0.0.1:{receiver.port}/in", PUBLIC)
    endpoint = outbound.parse_endpoint(f"http://hooks.example.test:{receiver.port}/in", LOCAL)
    with pytest.raises(EndpointRefused, match=r"resolves to 127\.0\.0\.1"):
        outbound.post(endpoint, b"{}", {}, PUBLIC, resolve=to_loopback)
    assert receiver.requests == []


def test_a_slow_answer_times_out(receiver: Receiver) -> None:
    receiver.delay_seconds = 2.0
    endpoint = outbound.parse_endpoint(f"http://127.0.0.1:{receiver.port}/in", LOCAL)
    started = time.monotonic()
    with pytest.raises(DeliveryUnreachable, match="ReadTimeoutError"):
        outbound.post(endpoint, b"{}", {}, LOCAL, timeout_seconds=0.3)
    assert time.monotonic() - started < 1.9


def test_a_closed_port_is_unreachable(receiver: Receiver) -> None:
    endpoint = outbound.parse_endpoint("http://127.0.0.1:9/in", LOCAL)  # discard: not served
    with pytest.raises(DeliveryUnreachable, match=r"NewConnectionError|ConnectTimeoutError"):
        outbound.post(endpoint, b"{}", {}, LOCAL, timeout_seconds=2)


# --- https: the checked address, the URL's name for TLS ------------------------------------


@dataclass(frozen=True)
class Certificates:
    ca_file: str
    server_chain: str
    server_key: str


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str, issuer: str, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
    )


def make_certificates(directory: Path, server_name: str, ca_name: str = "test CA") -> Certificates:
    """A CA of the test's own and a server certificate it signed for `server_name`."""
    ca_key, server_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = (
        _certificate(ca_name, ca_name, ca_key, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        _certificate(server_name, ca_name, server_key, ca_key)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(server_name)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = Certificates(
        str(directory / f"{ca_name}.pem"),
        str(directory / "server.pem"),
        str(directory / "server.key"),
    )
    Path(paths.ca_file).write_bytes(ca.public_bytes(pem))
    Path(paths.server_chain).write_bytes(server.public_bytes(pem))
    Path(paths.server_key).write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@pytest.fixture
def tls_receiver(receiver: Receiver, tmp_path: Path) -> Iterator[tuple[Receiver, Certificates]]:
    """A TLS front for the receiver: a second server on 127.0.0.1 that terminates TLS with
    a certificate for hooks.example.test and passes the request on."""
    certificates = make_certificates(tmp_path, "hooks.example.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.server_chain, certificates.server_key)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver.requests.append((self.path, {"host": self.headers["Host"]}, body))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.port = server.server_address[1]
    yield receiver, certificates
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def tls_policy(ca_file: str) -> outbound.OutboundPolicy:
    return outbound.OutboundPolicy(
        allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),), ca_file=ca_file
    )


def test_https_verifies_the_urls_name_on_the_pinned_address(
    tls_receiver: tuple[Receiver, Certificates],
) -> None:
    receiver, certificates = tls_receiver
    policy = tls_policy(certificates.ca_file)
    endpoint = outbound.parse_endpoint(f"https://hooks.example.test:{receiver.port}/in", policy)
    answer = outbound.post(endpoint, b"{}", {}, policy, resolve=to_loopback)
    assert answer.status == 204
    assert [(path, headers["host"]) for path, headers, _ in receiver.requests] == [
        ("/in", f"hooks.example.test:{receiver.port}")
    ]


def test_https_refuses_a_certificate_for_another_name(
    tls_receiver: tuple[Receiver, Certificates],
) -> None:
    receiver, certificates = tls_receiver
    policy = tls_policy(certificates.ca_file)
    endpoint = outbound.parse_endpoint(f"https://other.example.test:{receiver.port}/in", policy)
    with pytest.raises(DeliveryUnreachable, match="SSLError"):
        outbound.post(endpoint, b"{}", {}, policy, resolve=lambda host, port: ["127.0.0.1"])
    assert receiver.requests == []


def test_https_refuses_a_certificate_from_an_untrusted_ca(
    tls_receiver: tuple[Receiver, Certificates], tmp_path: Path
) -> None:
    receiver, _ = tls_receiver
    stranger = make_certificates(tmp_path, "hooks.example.test", ca_name="another CA")
    policy = tls_policy(stranger.ca_file)
    endpoint = outbound.parse_endpoint(f"https://hooks.example.test:{receiver.port}/in", policy)
    with pytest.raises(DeliveryUnreachable, match="SSLError"):
        outbound.post(endpoint, b"{}", {}, policy, resolve=to_loopback)
    assert receiver.requests == []
