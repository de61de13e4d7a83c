"""ZeroMQ CURVE for the keypoint stream: encryption, and only known readers let in.

`streampose keys DIR` (`generate`) writes ZeroMQ certificate files:

    DIR/server.key  DIR/server.key_secret     the publisher's keypair; readers need server.key
    DIR/client.key  DIR/client.key_secret     a reader's keypair (more with --name)
    DIR/authorized/client.key                 public keys of the readers the publisher admits

`Publisher(curve_keys=DIR)` serves with server.key_secret and admits only the public keys in
DIR/authorized (checked by a ZAP authenticator thread); `Subscriber(curve_keys=DIR)` connects with
client.key_secret and trusts only server.key. On another machine a reader needs server.key and its own
keypair; the publisher needs the reader's public key in authorized/. Secret files are mode 0600.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

SERVER = "server"
AUTHORIZED = "authorized"


class CurveError(ValueError):
    """Missing or unreadable key files; the message says which and how to make them."""


def generate(directory: str | os.PathLike[str], name: str = "client") -> list[Path]:
    """Create the server keypair (kept if present) and a reader keypair `name`, authorized; the files written."""
    d = Path(directory)
    if name == SERVER or not name.isidentifier():
        raise CurveError(f"reader name {name!r}: use letters, digits and _ (and not {SERVER!r})")
    if (d / f"{name}.key_secret").exists():
        raise CurveError(f"{d / name}.key_secret exists already; choose another --name or remove it")
    (d / AUTHORIZED).mkdir(parents=True, exist_ok=True)
    written = []
    for who in ([] if (d / f"{SERVER}.key_secret").exists() else [SERVER]) + [name]:
        public, secret = zmq.auth.create_certificates(d, who)
        os.chmod(secret, 0o600)
        written += [Path(public), Path(secret)]
    shutil.copy(d / f"{name}.key", d / AUTHORIZED / f"{name}.key")
    written.append(d / AUTHORIZED / f"{name}.key")
    return written


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise CurveError(f"{path}: no such key file; create keys with `streampose keys {path.parent}`")
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as e:
        raise CurveError(f"{path}: not a ZeroMQ key file ({e}); create keys with `streampose keys`") from None
    if secret and not secret_key:
        raise CurveError(f"{path}: holds no secret key; create keys with `streampose keys {path.parent}`")
    return public, secret_key


def serve(sockets: zmq.Socket[bytes] | Sequence[zmq.Socket[bytes]], directory: str | os.PathLike[str]
          ) -> ThreadAuthenticator:
    """Make `sockets` (not yet bound; one, or several of one context, as a proxy's two sides) CURVE servers
    admitting the peers in DIR/authorized; the authenticator runs until stopped, and needs a context of its own
    (one per context)."""
    group = [sockets] if isinstance(sockets, zmq.Socket) else list(sockets)
    d = Path(directory)
    public, secret = _load(d / f"{SERVER}.key_secret", secret=True)
    if not (d / AUTHORIZED).is_dir() or not any((d / AUTHORIZED).glob("*.key")):
        raise CurveError(f"{d / AUTHORIZED}: no reader keys, so nobody could read; add one with `streampose keys {d}`")
    auth = ThreadAuthenticator(group[0].context)
    auth.start()
    auth.configure_curve(domain="*", location=str(d / AUTHORIZED))
    for socket in group:
        socket.curve_secretkey, socket.curve_publickey, socket.curve_server = secret, public, True
    return auth


def connect(socket: zmq.Socket[bytes], keys: str | os.PathLike[str]) -> None:
    """Make `socket` (not yet connected) a CURVE client trusting `server.key`: `keys` is the folder (its
    keypair `client`) or a reader's secret file in it, such as `DIR/cam2.key_secret`."""
    p = Path(keys)
    secret_file = p if p.suffix == ".key_secret" else p / "client.key_secret"
    public, secret = _load(secret_file, secret=True)
    server, _ = _load(secret_file.parent / f"{SERVER}.key", secret=False)
    socket.curve_secretkey, socket.curve_publickey, socket.curve_serverkey = secret, public, server
