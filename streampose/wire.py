"""The public keypoint wire format, version 2 (docs/WIRE.md; version 1 in DESIGN.md): message dataclasses and
their encoding.

A message is two ZeroMQ frames: the topic (`pose/<stream>`, `ctl/<stream>` or, with previews on,
`img/<stream>`, UTF-8) and a map,
msgpack by default or JSON for consumers without msgpack. Version 2 sends one message per frame with a
list of `people` (id, keypoints, box, score), empty when no one was found; version 1 had one person's
fields at the top level, and is still read (as a list of one). In msgpack the keypoints travel as raw
little-endian float32 bytes (K, 3); in JSON as nested lists. Decoding validates every field, so a
malformed or hostile message raises `WireError` instead of reaching the caller half-parsed. No
pickle anywhere.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack
import numpy as np
import numpy.typing as npt

VERSION = 2
READS = (1, 2)
"""Schema versions `decode` accepts."""
FORMATS = ("msgpack", "json")
Format = Literal["msgpack", "json"]
EVENTS = ("start", "eos", "error", "stats")
POSE_PREFIX, CTL_PREFIX, IMG_PREFIX = "pose/", "ctl/", "img/"
JPEG_MAGIC = b"\xff\xd8\xff"
MAX_JOINTS = 1024
MAX_PEOPLE = 256
F32 = npt.NDArray[np.float32]
NO_KEYPOINTS: F32 = np.zeros((0, 3), np.float32)
NO_KEYPOINTS.flags.writeable = False


class WireError(ValueError):
    """A message that is not valid streampose wire format; the message says what is wrong."""


@dataclass(frozen=True)
class Person:
    """One person of a frame."""

    id: int
    """Follows the person across the stream's frames (from 0)."""
    kp: F32
    """(K, 3) float32: x, y in frame pixels, confidence 0..1."""
    box: tuple[float, float, float, float]
    """The crop the pose network saw, (x, y, w, h) in frame pixels."""
    score: float
    """Overall pose confidence (mean joint confidence)."""


@dataclass(frozen=True)
class PoseMessage:
    """The people of one frame, as published on `pose/<stream>`: exactly one message per frame (files), with
    an empty `people` where no one was found."""

    stream: str
    frame: int
    """Frame index in its stream, from 0."""
    pts: float
    """Presentation time in seconds (media time)."""
    t_capture: float
    """Wall-clock time (time.time()) when the frame was captured or decoded."""
    t_publish: float
    size: tuple[int, int]
    """Frame (width, height) in pixels."""
    joints: str
    """Joint set name, e.g. LSP14."""
    people: tuple[Person, ...] = ()
    """Most confident first."""
    v: int = VERSION
    """The schema version it was sent in."""

    @property
    def topic(self) -> str:
        return POSE_PREFIX + self.stream

    @property
    def person(self) -> Person | None:
        """The most confident person, or None."""
        return self.people[0] if self.people else None

    @property
    def kp(self) -> F32:
        """The most confident person's keypoints (K, 3), as version 1 had them; (0, 3) when no one was found."""
        return self.people[0].kp if self.people else NO_KEYPOINTS

    @property
    def box(self) -> tuple[float, float, float, float] | None:
        """The most confident person's crop, or None."""
        return self.people[0].box if self.people else None

    @property
    def score(self) -> float:
        """The most confident person's score; 0 when no one was found."""
        return self.people[0].score if self.people else 0.0


@dataclass(frozen=True)
class ControlMessage:
    """A stream event on `ctl/<stream>`: start, eos (end of stream), error, or periodic stats.
    `data` holds the event's extra fields (flattened into the map on the wire). A live stream that lost
    its connection sends an `error` with `retrying: true` (not its end), then a `start` with
    `recovered: true` once reopened."""

    stream: str
    event: str
    data: dict[str, Any] = field(default_factory=dict)
    v: int = VERSION

    @property
    def topic(self) -> str:
        return CTL_PREFIX + self.stream


@dataclass(frozen=True)
class PreviewMessage:
    """A downscaled JPEG of one frame, on `img/<stream>` (only with `streampose run --preview`): what a viewer draws
    the skeleton of the pose message with the same `frame` over. Keypoints stay in `size` pixels; scale them by
    the JPEG's own width / `size[0]`."""

    stream: str
    frame: int
    pts: float
    t_capture: float
    size: tuple[int, int]
    """The full frame's (width, height): the keypoints' pixels."""
    jpeg: bytes
    v: int = VERSION

    @property
    def topic(self) -> str:
        return IMG_PREFIX + self.stream


Message = PoseMessage | ControlMessage | PreviewMessage


def _person_map(p: Person, binary_kp: bool) -> dict[str, Any]:
    kp = np.asarray(p.kp, dtype="<f4")
    return {"id": int(p.id), "kp": kp.tobytes() if binary_kp else [[float(v) for v in row] for row in kp],
            "box": [float(v) for v in p.box], "score": float(p.score)}


def to_map(msg: Message, binary_kp: bool = True) -> dict[str, Any]:
    """The wire map of a message (always the current version); keypoints as float32 LE bytes (`binary_kp`)
    or nested lists (JSON), a preview's JPEG as bytes or base64 text (JSON)."""
    if isinstance(msg, ControlMessage):
        return {**msg.data, "v": VERSION, "stream": msg.stream, "event": msg.event}
    if isinstance(msg, PreviewMessage):
        return {"v": VERSION, "stream": msg.stream, "frame": int(msg.frame), "pts": float(msg.pts),
                "t_capture": float(msg.t_capture), "size": [int(msg.size[0]), int(msg.size[1])],
                "jpeg": msg.jpeg if binary_kp else base64.b64encode(msg.jpeg).decode()}
    return {
        "v": VERSION, "stream": msg.stream, "frame": int(msg.frame), "pts": float(msg.pts),
        "t_capture": float(msg.t_capture), "t_publish": float(msg.t_publish),
        "size": [int(msg.size[0]), int(msg.size[1])], "joints": msg.joints,
        "people": [_person_map(p, binary_kp) for p in msg.people],
    }


def encode(msg: Message, fmt: Format = "msgpack") -> list[bytes]:
    """[topic, payload] frames for `socket.send_multipart`."""
    if fmt == "msgpack":
        payload = msgpack.packb(to_map(msg, binary_kp=True), use_bin_type=True)
    elif fmt == "json":
        payload = json.dumps(to_map(msg, binary_kp=False), separators=(",", ":"), allow_nan=False).encode()
    else:
        raise ValueError(f"unknown wire format {fmt!r}; choose from {', '.join(FORMATS)}")
    return [msg.topic.encode(), payload]


def decode(parts: Sequence[bytes], max_bytes: int = 1 << 20) -> Message:
    """Parse [topic, payload] frames (msgpack or JSON, told apart by the first byte) into a message.

    Raises `WireError` for anything malformed: wrong frame count, oversized payload, unknown
    version, missing or mistyped fields, keypoints of the wrong size, or a topic that does not
    match the stream it names."""
    if len(parts) != 2:
        raise WireError(f"expected 2 frames (topic, payload), got {len(parts)}")
    topic_raw, payload = bytes(parts[0]), bytes(parts[1])
    if len(payload) > max_bytes:
        raise WireError(f"payload of {len(payload)} bytes exceeds the {max_bytes}-byte limit")
    try:
        topic = topic_raw.decode()
    except UnicodeDecodeError:
        raise WireError("topic is not UTF-8") from None
    m = _parse_payload(payload)
    if not isinstance(m, dict):
        raise WireError(f"payload is a {type(m).__name__}, not a map")
    version = m.get("v")
    if version not in READS or isinstance(version, bool):
        raise WireError(f"unsupported schema version {version!r} (this library reads {', '.join(map(str, READS))})")
    stream = _get(m, "stream", str)
    if topic.startswith(CTL_PREFIX):
        msg: Message = ControlMessage(stream=stream, event=_get(m, "event", str),
                                      data={k: v for k, v in m.items() if k not in ("v", "stream", "event")},
                                      v=version)
    elif topic.startswith(POSE_PREFIX):
        msg = _pose_from_map(m, stream, version)
    elif topic.startswith(IMG_PREFIX):
        msg = _preview_from_map(m, stream, version)
    else:
        raise WireError(f"topic {topic!r} is none of {POSE_PREFIX}<stream>, {CTL_PREFIX}<stream>, {IMG_PREFIX}<stream>")
    if msg.topic != topic:
        raise WireError(f"topic {topic!r} does not match the message's stream {stream!r}")
    return msg


def _parse_payload(payload: bytes) -> Any:
    if payload[:1] in (b"{", b"["):
        try:
            parsed = json.loads(payload)
            # \u escapes can spell lone surrogates, which are not text: refuse what no UTF-8 encoder takes
            json.dumps(parsed, ensure_ascii=False).encode()
            return parsed
        except (ValueError, RecursionError) as e:  # UnicodeEncodeError is a ValueError
            raise WireError(f"payload is not valid JSON ({e})") from None
    try:
        return msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, TypeError) as e:
        raise WireError(f"payload is not valid msgpack ({type(e).__name__}: {e})") from None


def _get(m: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in m:
        raise WireError(f"field {key!r} is missing")
    value = m[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise WireError(f"field {key!r} has type {type(value).__name__}")
    return value


def _number(m: Mapping[str, Any], key: str) -> float:
    value = float(_get(m, key, (int, float)))
    if not math.isfinite(value):
        raise WireError(f"field {key!r} is not finite")
    return value


def _numbers(m: Mapping[str, Any], key: str, n: int) -> list[float]:
    values = _get(m, key, (list, tuple))
    if len(values) != n or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise WireError(f"field {key!r} must be {n} numbers")
    return [float(v) for v in values]


def _pose_from_map(m: Mapping[str, Any], stream: str, version: int) -> PoseMessage:
    frame = _get(m, "frame", int)
    if frame < 0:
        raise WireError("field 'frame' is negative")
    size = _numbers(m, "size", 2)
    people: tuple[Person, ...]
    if version == 1:
        people = (_person_from_map(m, 0),)
    else:
        raw = _get(m, "people", (list, tuple))
        if len(raw) > MAX_PEOPLE:
            raise WireError(f"field 'people' holds {len(raw)} people, more than {MAX_PEOPLE}")
        people = tuple(_person_from_map(_map(p), None) for p in raw)
    return PoseMessage(
        stream=stream, frame=frame, pts=_number(m, "pts"), t_capture=_number(m, "t_capture"),
        t_publish=_number(m, "t_publish"), size=(int(size[0]), int(size[1])), joints=_get(m, "joints", str),
        people=people, v=version,
    )


def _preview_from_map(m: Mapping[str, Any], stream: str, version: int) -> PreviewMessage:
    frame = _get(m, "frame", int)
    if frame < 0:
        raise WireError("field 'frame' is negative")
    raw = _get(m, "jpeg", (bytes, str))
    if isinstance(raw, str):
        try:
            raw = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise WireError("field 'jpeg' is not base64") from None
    if not raw.startswith(JPEG_MAGIC):
        raise WireError("field 'jpeg' does not hold a JPEG image")
    size = _numbers(m, "size", 2)
    return PreviewMessage(stream=stream, frame=frame, pts=_number(m, "pts"), t_capture=_number(m, "t_capture"),
                          size=(int(size[0]), int(size[1])), jpeg=raw, v=version)


def _map(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise WireError(f"an entry of 'people' is a {type(value).__name__}, not a map")
    return value


def _person_from_map(m: Mapping[str, Any], person: int | None) -> Person:
    """A person's fields (a v2 entry of `people`, or a v1 message's top level, whose person is 0)."""
    if person is None:
        person = _get(m, "id", int)
        if person < 0:
            raise WireError("field 'id' is negative")
    raw = _get(m, "kp", (bytes, list))
    if isinstance(raw, bytes):
        if len(raw) % 12 or not 0 < len(raw) // 12 <= MAX_JOINTS:
            raise WireError(f"field 'kp' holds {len(raw)} bytes, not (K, 3) float32 with 1 <= K <= {MAX_JOINTS}")
        kp = np.frombuffer(raw, dtype="<f4").reshape(-1, 3).astype(np.float32)
    else:
        if not 0 < len(raw) <= MAX_JOINTS:
            raise WireError(f"field 'kp' must hold 1..{MAX_JOINTS} joints")
        try:
            kp = np.asarray(raw, dtype=np.float32)
        except (ValueError, TypeError):
            raise WireError("field 'kp' must be a list of [x, y, confidence] numbers") from None
        if kp.shape != (len(raw), 3):
            raise WireError(f"field 'kp' must be (K, 3), got shape {kp.shape}")
    box = _numbers(m, "box", 4)
    return Person(id=person, kp=kp, box=(box[0], box[1], box[2], box[3]), score=_number(m, "score"))
