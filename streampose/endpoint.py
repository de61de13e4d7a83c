"""ZeroMQ endpoints as users type them, checked before libzmq sees them.

libzmq takes some malformed endpoints without a word: `tcp://127.0.0.1:99999` binds port 34463 (99999 mod
65536), so a run reports success on a port nobody listens to. Every command and class that binds or
connects (`run --publish`, `listen`, `Publisher`, `Subscriber`) checks its endpoint here first.
"""

from __future__ import annotations

import ipaddress
import re

TRANSPORTS = ("tcp", "ipc", "inproc", "ws", "wss", "pgm", "epgm")
"""ZeroMQ's transports; tcp (and ws, pgm) take HOST:PORT, ipc a file path, inproc a name within one process."""
EXAMPLE = "tcp://127.0.0.1:5555"
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
"""A host name, IPv4 address or (for binding) a network interface name such as eth0."""


class EndpointError(ValueError):
    """An endpoint that is not one ZeroMQ can bind or connect as meant; the message says what is wrong."""


def check_endpoint(endpoint: str, bind: bool) -> str:
    """`endpoint` unchanged when it is well formed for binding (`bind`, a publisher) or connecting (a reader):
    a known transport and, for tcp, ws and pgm, a host and a port from 1 to 65535 (binding also takes `*` for
    every interface or for any free port). Raises EndpointError naming the problem otherwise."""
    scheme, sep, address = endpoint.partition("://")
    if not sep or scheme.lower() not in TRANSPORTS:
        raise EndpointError(f"{endpoint!r} is not a ZeroMQ endpoint: expected TRANSPORT://ADDRESS with TRANSPORT one "
                            f"of {', '.join(TRANSPORTS)}, e.g. {EXAMPLE}")
    scheme = scheme.lower()
    if not address.strip():
        raise EndpointError(f"{endpoint!r} has no address after {scheme}://, e.g. {EXAMPLE}")
    if scheme in ("ipc", "inproc"):
        return endpoint
    if scheme in ("ws", "wss"):
        address = address.partition("/")[0]  # ws://HOST:PORT/PATH
    # tcp://SOURCE;HOST:PORT (connect) and pgm://INTERFACE;GROUP:PORT: the part after the `;` is where it goes
    host, port = _split(address.rpartition(";")[2], endpoint)
    _check_host(host, endpoint, bind)
    _check_port(port, endpoint, bind)
    return endpoint


def _split(address: str, endpoint: str) -> tuple[str, str]:
    if address.startswith("["):  # [IPv6]:PORT
        host, bracket, rest = address.partition("]")
        if not bracket or not rest.startswith(":"):
            raise EndpointError(f"{endpoint!r}: expected [IPV6]:PORT, e.g. tcp://[::1]:5555")
        return host + "]", rest[1:]
    host, colon, port = address.rpartition(":")
    if not colon:
        raise EndpointError(f"{endpoint!r} has no port: expected HOST:PORT, e.g. {EXAMPLE}")
    return host, port


def _check_host(host: str, endpoint: str, bind: bool) -> None:
    if host == "*":
        if not bind:
            raise EndpointError(f"{endpoint!r}: `*` (every interface) is for publishing; connect to a host, "
                                f"e.g. {EXAMPLE}")
        return
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1].partition("%")[0])
        except ValueError:
            raise EndpointError(f"{endpoint!r}: {host} is not an IPv6 address") from None
        return
    if ":" in host:
        raise EndpointError(f"{endpoint!r}: put an IPv6 address in brackets, e.g. tcp://[::1]:5555")
    if not _NAME.fullmatch(host):
        raise EndpointError(f"{endpoint!r}: {host!r} is not a host name or address" if host
                            else f"{endpoint!r} has no host: expected HOST:PORT, e.g. {EXAMPLE}")


def _check_port(port: str, endpoint: str, bind: bool) -> None:
    if port in ("*", "!"):
        if not bind:
            raise EndpointError(f"{endpoint!r}: a port of `{port}` (any free one) is for publishing; connect to the "
                                "port the publisher reports")
        return
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        hint = "; `*` binds any free port" if bind else ""
        raise EndpointError(f"{endpoint!r}: port {port or '(none)'} is not a number from 1 to 65535{hint}")


VIEW_HOST, VIEW_PORT = "127.0.0.1", 8765
"""Where `streampose view` serves its page by default: loopback only."""


def parse_host_port(text: str, host: str = VIEW_HOST) -> tuple[str, int]:
    """`PORT`, `HOST:PORT` or `[IPV6]:PORT` for a web server (port 0: any free one); `host` where none is given.
    Raises EndpointError naming the problem."""
    name, sep, port = text.strip().rpartition(":")
    if sep:
        host = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise EndpointError(f"{text!r}: expected PORT or HOST:PORT with a port from 0 to 65535, e.g. 8765 or "
                            f"{VIEW_HOST}:{VIEW_PORT}")
    if not host or not (_NAME.fullmatch(host) or _is_ip(host)):
        raise EndpointError(f"{text!r}: {host!r} is not a host name or address")
    return host, int(port)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
