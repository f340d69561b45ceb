"""Issue 13 defect 2: ten slow or idle connections took the API down.

Real sockets against the API's real server: while ten connections trickle
header lines, trickle a body or sit idle, other clients are served; strict
HTTP framing (two Content-Lengths, chunked bodies).
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from api.app import create_app
from api.wsgi_server import WSGIService


@pytest.fixture
def served(api_cloud):
    server = WSGIService(create_app(api_cloud.conf, api_cloud.transport), "127.0.0.1", 0,
                         threads=4, header_timeout=3, idle_timeout=30)
    server.start()
    yield api_cloud, server.port
    server.stop()


def _request(port: int, raw: bytes, timeout: float = 10) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return int(head.split(b" ")[1]), body


def _get(port: int, path: str, token: str | None = None) -> int:
    headers = "X-Auth-Token: %s\r\n" % token if token else ""
    return _request(port, ("GET %s HTTP/1.1\r\nHost: t\r\n%sConnection: close\r\n\r\n"
                           % (path, headers)).encode())[0]


def test_slow_and_idle_connections_do_not_starve_others(served):
    cloud, port = served
    stop = threading.Event()
    slow: list[socket.socket] = []

    def trickle(sock: socket.socket, data: bytes) -> None:
        for byte in data:
            if stop.is_set():
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return  # the server closed it: what a deadline does
            stop.wait(0.3)

    threads = []
    for n in range(10):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        slow.append(sock)
        if n < 4:  # header lines, a byte at a time
            data = b"GET /compute/v2.1/servers HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * 200
        elif n < 7:  # a body that never ends
            data = (b"POST /identity/v3/auth/tokens HTTP/1.1\r\nHost: t\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
                    + b"{" * 200)
        else:  # idle
            continue
        t = threading.Thread(target=trickle, args=(sock, data), daemon=True)
        t.start()
        threads.append(t)
    try:
        # Others are served, more requests than the server has workers.
        for _ in range(12):
            assert _get(port, "/identity/v3") == 200
            assert _get(port, "/compute/v2.1/servers", cloud.tokens["member"]) == 200
        # A client whose headers take longer than the deadline is dropped.
        header_trickler = slow[0]
        header_trickler.settimeout(20)
        deadline = time.monotonic() + 20
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                closed = header_trickler.recv(1024) == b""
            except (ConnectionResetError, TimeoutError):
                closed = True
        assert closed
    finally:
        stop.set()
        for sock in slow:
            sock.close()
        for t in threads:
            t.join(5)


def test_two_different_content_lengths_are_a_400(served):
    cloud, port = served
    body = json.dumps({"auth": {}}).encode()
    status, _ = _request(port, b"POST /identity/v3/auth/tokens HTTP/1.1\r\nHost: t\r\n"
                         b"Content-Type: application/json\r\nContent-Length: %d\r\n"
                         b"Content-Length: 5\r\nConnection: close\r\n\r\n%s"
                         % (len(body), body))
    assert status == 400


def test_chunked_json_body_is_read(served):
    cloud, port = served
    body = json.dumps({"auth": {"identity": {"methods": ["password"], "password": {
        "user": {"name": "member", "domain": {"name": "Default"},
                 "password": "secret-member"}}},
        "scope": {"project": {"name": "p1", "domain": {"name": "Default"}}}}}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 50]), body[i:i + 50])
                      for i in range(0, len(body), 50)) + b"0\r\n\r\n"
    status, reply = _request(port, b"POST /identity/v3/auth/tokens HTTP/1.1\r\nHost: t\r\n"
                             b"Content-Type: application/json\r\n"
                             b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                             + chunks)
    assert status == 201, reply
    assert json.loads(reply)["token"]["project"]["name"] == "p1"
