"""Outbound HTTP for webhook deliveries, guarded against server-side request forgery.

A tenant names the URL; the service calls it from inside AWS. So every call:

- takes only an absolute ``https`` URL (``http`` where the stage allows it, as the local
  stack does), without credentials or fragment, of at most MAX_URL_LENGTH characters;
- resolves the name itself and refuses it unless *every* address it resolves to is on
  the public internet (``is_global``: no loopback, private, link-local (the instance
  metadata service), shared (100.64/10), multicast, reserved or unspecified address, and
  no IPv4-mapped IPv6 form of one), or inside a network the stage allows explicitly;
- connects to the address it checked, never resolving again (no DNS rebinding between
  the check and the connection), with the name kept for TLS (SNI and certificate
  verification) and the Host header;
- follows no redirect (a 3xx is an answer like any other) and gives up after a timeout.
"""

from __future__ import annotations

import email.utils
import ipaddress
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import urllib3

from chalicelib.errors import DeliveryUnreachable, EndpointRefused

MAX_URL_LENGTH = 2048
DEFAULT_TIMEOUT_SECONDS = 10.0
MAX_ANSWER_BYTES = 64 * 1024  # what is read of an answer's body; the rest is dropped
DEFAULT_PORTS = {"https": 443, "http": 80}
USER_AGENT = "media-pipeline-webhooks/1"
ANSWER_PREFIX_BYTES = 256  # what the delivery log keeps of an answer

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]


@dataclass(frozen=True)
class OutboundPolicy:
    """What a stage may call: https only and public addresses only, unless it says more."""

    allow_http: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()
    ca_file: str | None = None  # certificates to trust instead of the system's

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def schemes(self) -> tuple[str, ...]:
        return ("https", "http") if self.allow_http else ("https",)

    def permits(self, address: IPAddress) -> bool:
        return is_public(address) or any(address in n for n in self.allowed_networks)


@dataclass(frozen=True)
class Endpoint:
    """A URL that passed the form checks; `host` is lower-case ASCII (IDNA)."""

    url: str
    scheme: str
    host: str
    port: int
    target: str  # path and query, as sent in the request line

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after_seconds: float | None
    elapsed_ms: float
    prefix: str = ""  # the first ANSWER_PREFIX_BYTES of the body, for the delivery log


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def parse_endpoint(url: str, policy: OutboundPolicy) -> Endpoint:
    """`url` as an Endpoint, or EndpointRefused saying what is wrong with its form.

    An IP address written in the URL is checked here; a name is checked when it is
    resolved (`resolve_endpoint`), at every call.
    """
    if len(url) > MAX_URL_LENGTH:
        raise EndpointRefused(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in policy.schemes():
        raise EndpointRefused(f"The URL's scheme must be {' or '.join(policy.schemes())}.")
    if parts.username is not None or parts.password is not None:
        raise EndpointRefused("The URL must not carry credentials.")
    if parts.fragment:
        raise EndpointRefused("The URL must not have a fragment.")
    host = _ascii_host(parts.hostname)
    endpoint = Endpoint(
        url=url,
        scheme=parts.scheme,
        host=host,
        port=_port(parts, parts.scheme),
        target=urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, "")),
    )
    literal = _ip_literal(host)
    if literal is not None and not policy.permits(literal):
        raise EndpointRefused(f"The URL names {literal}, not a public address.")
    return endpoint


def _ascii_host(hostname: str | None) -> str:
    if not hostname:
        raise EndpointRefused("The URL has no host.")
    try:
        return hostname.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise EndpointRefused("The URL's host is not a valid domain name.") from exc


def _port(parts: urllib.parse.SplitResult, scheme: str) -> int:
    try:
        port = parts.port
    except ValueError as exc:
        raise EndpointRefused("The URL's port is not a number from 1 to 65535.") from exc
    if port == 0:
        raise EndpointRefused("The URL's port is not a number from 1 to 65535.")
    return port if port is not None else DEFAULT_PORTS[scheme]


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to for a TCP connection (as the OS resolves it)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DeliveryUnreachable(f"The name {host} does not resolve.") from exc
    return list(dict.fromkeys(str(entry[4][0]) for entry in found))


def resolve_endpoint(endpoint: Endpoint, policy: OutboundPolicy, resolve: Resolver) -> str:
    """The address to connect to: the first of the host's, if all of them are permitted."""
    addresses = [ipaddress.ip_address(a) for a in resolve(endpoint.host, endpoint.port)]
    if not addresses:
        raise DeliveryUnreachable(f"The name {endpoint.host} does not resolve.")
    refused = [a for a in addresses if not policy.permits(a)]
    if refused:
        raise EndpointRefused(f"{endpoint.host} resolves to {refused[0]}, not a public address.")
    return str(addresses[0])


def post(
    endpoint: Endpoint,
    body: bytes,
    headers: Mapping[str, str],
    policy: OutboundPolicy,
    *,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    resolve: Resolver = system_resolver,
) -> Answer:
    """POST `body` to `endpoint` once: its answer's status, or DeliveryUnreachable."""
    address = resolve_endpoint(endpoint, policy, resolve)
    started = time.monotonic()
    pool = _pool(endpoint, address, timeout_seconds, policy)
    try:
        response = pool.urlopen(
            "POST",
            endpoint.target,
            body=body,
            headers={"user-agent": USER_AGENT, **headers, "host": endpoint.host_header},
            redirect=False,
            retries=False,
            preload_content=False,
        )
        received = response.read(MAX_ANSWER_BYTES)
        response.release_conn()
    except urllib3.exceptions.HTTPError as exc:
        raise DeliveryUnreachable(f"No answer from {endpoint.host}: {type(exc).__name__}.") from exc
    finally:
        pool.close()
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    elapsed_ms = (time.monotonic() - started) * 1000
    prefix = received[:ANSWER_PREFIX_BYTES].decode("utf-8", errors="replace")
    return Answer(response.status, retry_after, elapsed_ms, prefix)


def _pool(
    endpoint: Endpoint, address: str, timeout_seconds: float, policy: OutboundPolicy
) -> urllib3.HTTPConnectionPool:
    timeout = urllib3.Timeout(total=timeout_seconds)
    if endpoint.scheme == "http":
        return urllib3.HTTPConnectionPool(address, endpoint.port, timeout=timeout, maxsize=1)
    return urllib3.HTTPSConnectionPool(
        address,
        endpoint.port,
        timeout=timeout,
        maxsize=1,
        server_hostname=endpoint.host,
        assert_hostname=endpoint.host,
        ssl_context=policy.tls_context(),
    )


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds from now: a number of seconds or an HTTP date; None if absent
    or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
