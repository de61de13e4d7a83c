"""Endpoints are checked before libzmq sees them: it binds `tcp://127.0.0.1:99999` as port 34463 without a word."""

from __future__ import annotations

import pytest

from streampose.endpoint import EndpointError, check_endpoint


@pytest.mark.parametrize(("endpoint", "bind", "problem"), [
    ("tcp://127.0.0.1:99999", True, "port 99999 is not a number from 1 to 65535; `*` binds any free port"),
    ("tcp://127.0.0.1:99999", False, "port 99999 is not a number from 1 to 65535"),
    ("tcp://127.0.0.1:65536", True, "port 65536"),
    ("tcp://127.0.0.1:0", True, "port 0"),
    ("tcp://127.0.0.1:-1", True, "port -1"),
    ("tcp://127.0.0.1:5o55", True, "port 5o55"),
    ("tcp://127.0.0.1:", True, "port (none)"),
    ("tcp://127.0.0.1", True, "has no port"),
    ("tcp://:5555", True, "has no host"),
    ("tcp://local host:5555", False, "'local host' is not a host name"),
    ("tcp://::1:5555", True, "in brackets"),
    ("tcp://[::g]:5555", False, "not an IPv6 address"),
    ("tcp://[::1]", False, "expected [IPV6]:PORT"),
    ("tcp://*:5555", False, "is for publishing"),
    ("tcp://127.0.0.1:*", False, "is for publishing"),
    ("ws://127.0.0.1:70000/poses", True, "port 70000"),
    ("tpc://127.0.0.1:5555", True, "not a ZeroMQ endpoint"),
    ("127.0.0.1:5555", False, "not a ZeroMQ endpoint"),
    ("ipc://", True, "no address"),
])
def test_malformed_endpoints_are_refused_with_the_reason(endpoint: str, bind: bool, problem: str) -> None:
    with pytest.raises(EndpointError) as e:
        check_endpoint(endpoint, bind=bind)
    assert problem in str(e.value) and repr(endpoint) in str(e.value)


@pytest.mark.parametrize(("endpoint", "bind"), [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.0.0.1:5555", False), ("tcp://localhost:1", False),
    ("tcp://host-2.example.org:65535", False), ("TCP://127.0.0.1:5555", False), ("tcp://*:*", True),
    ("tcp://0.0.0.0:5555", True), ("tcp://eth0:5555", True), ("tcp://[::1]:5555", False), ("tcp://[::]:*", True),
    ("tcp://[fe80::1%eth0]:5555", False), ("tcp://192.168.1.2;10.0.0.1:5555", False), ("ipc:///tmp/poses", True),
    ("ipc://*", True), ("inproc://poses", False), ("ws://127.0.0.1:8080/poses", False),
    ("epgm://eth0;239.192.1.1:5555", True),
])
def test_well_formed_endpoints_pass_unchanged(endpoint: str, bind: bool) -> None:
    assert check_endpoint(endpoint, bind=bind) == endpoint


def test_publisher_and_subscriber_refuse_a_port_out_of_range() -> None:
    from streampose.publish import Publisher, PublishError
    from streampose.subscriber import Subscriber

    with pytest.raises(PublishError, match=r"cannot publish on tcp://127\.0\.0\.1:99999: .*port 99999"):
        Publisher("tcp://127.0.0.1:99999")
    with pytest.raises(ValueError, match="port 99999"):
        Subscriber("tcp://127.0.0.1:99999")
