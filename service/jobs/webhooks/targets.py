"""Where a webhook may be delivered: an absolute ``http``/``https`` URL whose host resolves to
public addresses only. Loopback, private, shared, link-local, multicast, reserved and cloud
metadata addresses are refused (the first ones allowed with ``TAPELINE_WEBHOOK_ALLOW_PRIVATE``
for tests and single machines; metadata addresses never), when an endpoint is made and again
at every attempt, whose connection then goes to the very address checked (DNS can change).

Names are resolved by the system's resolver, after a hosts file when
``TAPELINE_WEBHOOK_HOSTS_FILE`` names one (for tests only: it is read at every resolution, so a
test can make a name point elsewhere between creation and delivery).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from pathlib import Path
from urllib.parse import urlsplit

Address = IPv4Address | IPv6Address

MAX_URL = 2048
# Cloud metadata services (AWS, ECS, GCP and Azure share the first; Alibaba; Oracle; AWS's
# IPv6 one): refused even where private addresses are allowed.
METADATA = frozenset(ip_address(a) for a in ("169.254.169.254", "169.254.170.2",
                                             "100.100.100.200", "192.0.0.192", "fd00:ec2::254"))
NAT64 = ip_network("64:ff9b::/96")


class Refused(ValueError):
    """The URL may not be delivered to; the message says why."""


class Unresolved(ValueError):
    """The URL's host name does not resolve (now)."""


@dataclass(frozen=True)
class Target:
    """A checked URL: its scheme, host (a name or an address, no brackets), port, and the
    path with its query."""

    scheme: str
    host: str
    port: int
    path: str

    def at(self, address: Address) -> str:
        """The URL with its host replaced by ``address`` (where the connection goes)."""
        literal = f"[{address}]" if address.version == 6 else str(address)
        return f"{self.scheme}://{literal}:{self.port}{self.path}"

    @property
    def host_header(self) -> str:
        """The ``Host`` header the URL means."""
        literal = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return literal if self.port == default else f"{literal}:{self.port}"


def parse(url: str) -> Target:
    """The URL, checked to be absolute ``http``/``https`` with a host and no credentials;
    :class:`Refused` otherwise."""
    if len(url) > MAX_URL:
        raise Refused(f"longer than {MAX_URL} characters")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise Refused("contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise Refused(f"not a valid URL ({error})") from None
    if parts.scheme not in ("http", "https"):
        raise Refused("must be an absolute http:// or https:// URL")
    if not parts.hostname:
        raise Refused("must name a host")
    if parts.username is not None or parts.password is not None:
        raise Refused("must not hold credentials (user:password@): the signature "
                      "authenticates the sender")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname,
                  port or (443 if parts.scheme == "https" else 80), path)


def refusal(address: Address, allow_private: bool) -> str | None:
    """Why ``address`` may not be delivered to (None when it may)."""
    if address in METADATA:
        return "a cloud metadata address"
    if isinstance(address, IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in NAT64:
            embedded = IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return refusal(embedded, allow_private)
    if allow_private:
        return None
    for test, kind in ((address.is_loopback, "a loopback address"),
                       (address.is_link_local, "a link-local address"),
                       (address.is_multicast, "a multicast address"),
                       (address.is_unspecified, "the unspecified address"),
                       (address.is_private, "a private address")):
        if test:
            return kind
    return None if address.is_global else "not a public address"


def _hosts(path: Path | None, name: str) -> list[Address]:
    if path is None or not path.is_file():
        return []
    found = []
    for line in path.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and name.lower() in (f.lower() for f in fields[1:]):
            found.append(ip_address(fields[0]))
    return found


def resolve(host: str, port: int, hosts_file: Path | None = None) -> list[Address]:
    """The addresses of ``host`` (an address is itself); :class:`Unresolved` when none."""
    try:
        return [ip_address(host)]
    except ValueError:
        pass
    found = _hosts(hosts_file, host)
    if found:
        return found
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise Unresolved(f"{host} does not resolve ({error})") from None
    return list(dict.fromkeys(ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos))


def addresses(target: Target, allow_private: bool, hosts_file: Path | None = None
              ) -> list[Address]:
    """Where ``target`` may be reached: its host's addresses, every one allowed;
    :class:`Refused` naming the first that is not, :class:`Unresolved` when there are none."""
    found = resolve(target.host, target.port, hosts_file)
    for address in found:
        why = refusal(address, allow_private)
        if why is not None:
            shown = target.host if target.host == str(address) else f"{target.host} ({address})"
            raise Refused(f"{shown} is {why}")
    return found
