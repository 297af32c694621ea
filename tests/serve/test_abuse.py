"""Bad clients cannot hurt the server: clients that disconnect mid-body or send broken
chunked encoding, a thousand requests for models that do not exist, large JSON bodies,
hundreds of stalled connections, more connections than the cap. Throughout, requests from a
well-behaved client are answered correctly; afterwards the server log holds no traceback,
its memory and /metrics are bounded, and each event is counted in its own metric.

One server (127.0.0.1 only) with short timeouts serves the whole module; every loop is
bounded in count and in time.
"""

from __future__ import annotations

import re
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from .conftest import Models, Server, assert_served, predict

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
MAX_CONNECTIONS = 300
MAX_JSON_MB = 8
X = np.random.default_rng(0).random((3, 4), dtype=np.float32)


@pytest.fixture(scope="module")
def server(models: Models, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("abuse") / "server.log"
    srv = Server([str(models.mlp), "--model-name", "mlp", "--no-access-log",
                  "--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT),
                  "--max-connections", str(MAX_CONNECTIONS),
                  "--max-json-bytes", str(MAX_JSON_MB * 1024 * 1024)], log)
    yield srv
    srv.stop()


def host_port(server: Server) -> tuple[str, int]:
    m = re.match(r"http://([\d.]+):(\d+)", server.url)
    assert m
    return m.group(1), int(m.group(2))


def served_correctly(server: Server, models: Models) -> None:
    r = requests.post(f"{server.url}/v1/models/mlp:predict", json={"instances": X.tolist()},
                      timeout=30)
    assert r.status_code == 200, r.text
    assert_served(r.json()["predictions"], predict(models.mlp, X))


def metric(server: Server, name: str, labels: str = "") -> float:
    text = requests.get(f"{server.url}/metrics", timeout=30).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (not labels or labels in line) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def rss_mb(server: Server, field: str = "VmRSS") -> float:
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1)) / 1024


def assert_clean_log(server: Server) -> None:
    log = server.log()
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-3000:]


def raw(server: Server, data: bytes, close: bool = True) -> socket.socket:
    sock = socket.create_connection(host_port(server), timeout=10)
    sock.sendall(data)
    if close:
        sock.close()
    return sock


def test_disconnects_and_bad_chunks_are_normal_events(server: Server, models: Models) -> None:
    before = metric(server, "tfless_client_disconnects_total")
    head = (b"POST /v1/models/mlp:predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\n")
    for i in range(40):  # the body is cut off: the client goes away mid-upload
        sock = raw(server, head + b"Content-Length: 5000\r\n\r\n" + b'{"instances": [[' * 20,
                   close=False)
        time.sleep(0.01)
        sock.close()
        if i % 10 == 0:
            served_correctly(server, models)
    for _ in range(20):  # a chunk size that is not hex, then a chunk cut short
        raw(server, head + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n")
        raw(server, head + b"Transfer-Encoding: chunked\r\n\r\n100\r\n" + b"[" * 10)
    served_correctly(server, models)
    deadline = time.monotonic() + 10
    while metric(server, "tfless_client_disconnects_total") < before + 40 and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(server, "tfless_client_disconnects_total") >= before + 40
    assert metric(server, "tfless_requests_total", 'status="500"') == 0
    assert_clean_log(server)


def test_unknown_model_names_do_not_grow_metrics(server: Server, models: Models) -> None:
    names = [secrets.token_hex(20) for _ in range(1000)]
    with requests.Session() as session:
        for i, name in enumerate(names):
            url = f"{server.url}/v1/models/{name}" + (":predict" if i % 2 else "")
            r = session.post(url, json={"instances": [[1, 2, 3, 4]]}, timeout=30) if i % 2 \
                else session.get(url, timeout=30)
            assert r.status_code == 404, r.text
    text = requests.get(f"{server.url}/metrics", timeout=30).text
    assert len(text) < 64 * 1024, len(text)
    assert '__unknown__' in text and not any(n in text for n in names[:50])
    served_correctly(server, models)
    assert_clean_log(server)


def _json_body(rows: int) -> bytes:
    values = np.random.default_rng(1).random((rows, 4))
    return ('{"instances": [' + ",".join(
        "[" + ",".join(f"{v:.9f}" for v in row) + "]" for row in values) + "]}").encode()


def test_large_json_memory_is_bounded_and_returned(server: Server, models: Models) -> None:
    body = _json_body(130_000)  # ~6.5 MB, under the JSON limit
    assert 5 < len(body) / 1024**2 < MAX_JSON_MB
    served_correctly(server, models)

    def send() -> None:
        r = requests.post(f"{server.url}/v1/models/mlp:predict", data=body, timeout=120,
                          headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text[:500]
        assert len(r.json()["predictions"]) == 130_000

    base = rss_mb(server)
    after = []
    for _ in range(8):
        send()
        after.append(rss_mb(server))
    peak = rss_mb(server, "VmHWM")
    # parsing costs a small multiple of the body (Python floats), never hundreds of MB per MB
    assert peak - base < 40 * len(body) / 1024**2, (base, peak)
    # the runtime keeps buffers for the largest batch it has seen and each worker thread's
    # allocator arena settles at its own high-water mark (which thread gets which request
    # varies, seen here up to 16.5 MB apart on a loaded machine); after that, memory does not
    # grow: keeping even one body per request would add 4 bodies (26 MB) over the last four
    body_mb = len(body) / 1024**2
    assert max(after[4:]) - max(after[:4]) < 3 * body_mb and after[-1] - base < 100, (base, after)
    over = b" " * (MAX_JSON_MB * 1024 * 1024 + 1)
    r = requests.post(f"{server.url}/v1/models/mlp:predict", data=over, timeout=60)
    assert r.status_code == 413 and "--max-json-bytes" in r.json()["error"]
    served_correctly(server, models)
    assert_clean_log(server)


def test_stalled_connections_are_closed(server: Server, models: Models) -> None:
    before = metric(server, "tfless_connections_timed_out_total")
    socks = []
    for i in range(200):  # silent, or headers that never finish, or a body that never comes
        data = [b"", b"GET /v1/models/mlp HTTP/1.1\r\nHost:",
                b"POST /v1/models/mlp:predict HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"][i % 3]
        socks.append(raw(server, data, close=False))
    served_correctly(server, models)  # others are served while they hang around
    deadline = time.monotonic() + HEADER_TIMEOUT + BODY_TIMEOUT + 20
    open_socks = list(socks)
    while open_socks and time.monotonic() < deadline:
        still = []
        for sock in open_socks:
            sock.settimeout(0.01)
            try:
                if sock.recv(65536) == b"":
                    continue  # closed by the server
                still.append(sock)  # an answer (408) arrived; the close follows
            except TimeoutError:
                still.append(sock)
            except OSError:
                continue  # reset by the server
        open_socks = still
        time.sleep(0.2)
    left = len(open_socks)
    for sock in socks:
        sock.close()
    assert left == 0, f"{left} of 200 stalled connections still open"
    assert metric(server, "tfless_connections_timed_out_total") >= before + 100
    served_correctly(server, models)
    assert_clean_log(server)


def test_connection_cap(server: Server, models: Models) -> None:
    socks = [raw(server, b"", close=False) for _ in range(MAX_CONNECTIONS + 50)]
    refused = 0
    for sock in socks[MAX_CONNECTIONS:]:
        sock.settimeout(5)
        try:
            refused += sock.recv(1) == b""
        except OSError:
            refused += 1
    for sock in socks:
        sock.close()
    assert refused >= 40, refused
    assert metric(server, "tfless_connections_refused_total") >= 40
    time.sleep(0.5)
    served_correctly(server, models)
    assert rss_mb(server) < 1024
    assert_clean_log(server)
