"""Where the runner may send requests: no private, loopback or link-local targets unless allow-listed (SSRF).

Also what outbound calls share: how a request that got no answer is worded
(``describe_send_error``), for http steps and webhook deliveries (both sent
through ``webhooks.sender``) alike.
"""
from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

__all__ = ["OutboundPolicy", "OutboundRefused", "SEND_ERRORS", "describe_send_error", "port_and_target"]


# What sending through ``webhooks.sender`` may raise instead of answering (bad URLs surface as ValueError).
SEND_ERRORS = (http.client.HTTPException, OSError, ValueError)


def describe_send_error(exc: BaseException, timeout: float) -> str:
    """Say why a request got no answer, as step outputs and delivery attempts record it."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g}s"
    if isinstance(exc, ssl.SSLError):  # e.g. a certificate that does not verify
        return f"SSLError: {exc}"
    return f"{exc.__class__.__name__}: {exc}"


def port_and_target(parts: SplitResult) -> tuple[int, str]:
    """The port an http(s) URL's request goes to (the scheme's own when it names none), and its target: path and query."""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return port, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


class OutboundRefused(Exception):
    """The destination is not allowed; the message names the host and why."""


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


@dataclass(frozen=True)
class OutboundPolicy:
    """Allowed exceptions (hosts and networks) to the private-address ban."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    resolver: Resolver = field(default=_resolve, compare=False)

    @classmethod
    def from_setting(cls, value: str, *, resolver: Resolver | None = None) -> OutboundPolicy:
        """Parse ``RUNBOOK_MANAGER_OUTBOUND_ALLOWLIST`` (comma-separated hosts or CIDRs)."""
        hosts, networks = set(), []
        for item in filter(None, (p.strip() for p in value.split(","))):
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(item.lower())
        return cls(frozenset(hosts), tuple(networks), resolver or _resolve)

    def check(self, url: str) -> list[str]:
        """Return the addresses ``url`` resolves to, or raise OutboundRefused."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
        except ValueError as exc:  # e.g. an unclosed IPv6 bracket
            raise OutboundRefused(f"URL {url!r} is malformed: {exc}") from exc
        if parts.scheme not in ("http", "https"):
            raise OutboundRefused(f"only http and https URLs may be called, got {url!r}")
        if not host:
            raise OutboundRefused(f"URL {url!r} names no host")
        try:
            port, _ = port_and_target(parts)
        except ValueError:
            raise OutboundRefused(f"URL {url!r} has an invalid port") from None
        try:
            addresses = self.resolver(host, port)
        except (OSError, UnicodeError) as exc:  # UnicodeError: a name IDNA cannot encode, such as one with an empty label
            raise OutboundRefused(f"cannot resolve host {host!r}: {exc}") from exc
        if host in self.hosts:
            return addresses
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%")[0])
            if self._forbidden(ip) and not any(ip in net for net in self.networks):
                raise OutboundRefused(
                    f"host {host!r} resolves to {address}, a {self._kind(ip)} address; "
                    "add it to RUNBOOK_MANAGER_OUTBOUND_ALLOWLIST to allow it"
                )
        return addresses

    @staticmethod
    def _forbidden(ip: IPAddress) -> bool:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified

    @staticmethod
    def _kind(ip: IPAddress) -> str:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # name what the mapped IPv4 address is, not "private" for the whole ::ffff:0:0/96
        for name in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
            if getattr(ip, f"is_{name}"):
                return name.replace("_", "-")
        return "forbidden"
