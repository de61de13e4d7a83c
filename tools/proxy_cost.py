"""What a `streampose proxy` hop costs on this machine: latency and throughput of pose messages sent straight
from a publisher to a reader, and through the proxy, in one run.

    python tools/proxy_cost.py                 # -> docs/bench/proxy.json

Messages are real wire-format v2 poses (two people, msgpack) over loopback TCP. Latency: 2,000 messages at
500 a second, from `send` to the reader's decoded message (t_publish to receive), p50 and p99. Throughput:
20,000 messages sent as fast as the publisher queues them with a reader draining them; messages the reader got
per second (a high-water mark of 20,000 on every socket, so none is dropped).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import numpy as np

from streampose.proxy import Proxy
from streampose.publish import Publisher
from streampose.subscriber import Subscriber
from streampose.wire import ControlMessage, Person, PoseMessage

ROOT = Path(__file__).resolve().parent.parent
HWM = 20000
Route = Callable[[], AbstractContextManager[tuple[Publisher, Subscriber]]]


def pose(frame: int) -> PoseMessage:
    people = tuple(Person(i, np.full((14, 3), 0.5, np.float32), (10.0, 20.0, 200.0, 200.0), 0.8) for i in range(2))
    return PoseMessage("s0", frame, frame / 30, time.time(), time.time(), (1920, 1080), "LSP14", people)


@contextmanager
def straight() -> Iterator[tuple[Publisher, Subscriber]]:
    with Publisher("tcp://127.0.0.1:*", hwm=HWM) as pub, Subscriber(pub.endpoint, control=True) as sub:
        yield pub, sub


@contextmanager
def proxied() -> Iterator[tuple[Publisher, Subscriber]]:
    with Proxy("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", hwm=HWM) as proxy, \
            Publisher(proxy.frontend, hwm=HWM, connect=True) as pub, Subscriber(proxy.backend, control=True) as sub:
        yield pub, sub


def sync(pub: Publisher, sub: Subscriber) -> None:
    while True:
        pub.send(ControlMessage("sync", "stats"))
        if sub.recv(timeout=0.05) is not None:
            break
    while sub.recv(timeout=0.1) is not None:
        pass


def latency(route: Route) -> dict[str, float]:
    lags = []
    with route() as (pub, sub):
        sync(pub, sub)
        for i in range(2000):
            pub.send(pose(i))
            msg = sub.recv(timeout=1)
            assert isinstance(msg, PoseMessage)
            lags.append(time.time() - msg.t_publish)
            time.sleep(0.002)
    return {"p50_ms": round(float(np.percentile(lags, 50)) * 1e3, 3),
            "p99_ms": round(float(np.percentile(lags, 99)) * 1e3, 3)}


def throughput(route: Route, n: int = 20000) -> float:
    with route() as (pub, sub):
        sync(pub, sub)
        t0, got = time.perf_counter(), 0
        for i in range(n):
            pub.send(pose(i))
            while sub.recv(timeout=0) is not None:
                got += 1
        while got < n and sub.recv(timeout=1) is not None:
            got += 1
        return got / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=ROOT / "docs" / "bench" / "proxy.json")
    args = ap.parse_args(argv)
    result: dict[str, object] = {"date": time.strftime("%Y-%m-%d %H:%M:%S")}
    for name, route in (("straight", straight), ("proxy", proxied)):
        result[name] = {**latency(route), "messages_per_s": round(throughput(route))}
        print(name, result[name], flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
