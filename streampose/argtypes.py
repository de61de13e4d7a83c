"""Argument types for the command line: each checks one kind of value and says, in one line, what it needs."""

from __future__ import annotations

import argparse


def jobs(text: str) -> int:
    if not text.isdigit() or int(text) > 64:
        raise argparse.ArgumentTypeError(f"must be 0 (the backend's best) or a count up to 64, got {text!r}")
    return int(text)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value < 2**31:  # ZeroMQ options are C ints
        raise argparse.ArgumentTypeError(f"must be a positive integer below 2^31, got {text!r}")
    return value


def count(text: str) -> int:
    """0 or more."""
    if text.strip() == "0":
        return 0
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer below 2^31, got {text!r}") from None


def seconds(text: str) -> float:
    """A finite, non-negative number (inf or nan would reach timers that cannot take them)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1e6:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1e6, got {text!r}")
    return value


def publish_endpoint(text: str) -> str:
    """Where `run` publishes: an endpoint to bind, or `none`."""
    return text if text == "none" else endpoint(text, bind=True)


def rate(text: str) -> float:
    """Frames a second: a number above 0, at most 1000."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 1000:
        raise argparse.ArgumentTypeError(f"must be a rate above 0 and at most 1000 a second, got {text!r}")
    return value


def host_port(text: str) -> tuple[str, int]:
    from streampose.endpoint import EndpointError, parse_host_port

    try:
        return parse_host_port(text)
    except EndpointError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def connect_endpoint(text: str) -> str:
    """Where a reader (`listen`) connects."""
    return endpoint(text, bind=False)


def endpoint(text: str, bind: bool) -> str:
    from streampose.endpoint import EndpointError, check_endpoint

    try:
        return check_endpoint(text, bind=bind)
    except EndpointError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def crop_spec(text: str) -> str:
    from streampose.crop import parse_crop

    try:
        parse_crop(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text
