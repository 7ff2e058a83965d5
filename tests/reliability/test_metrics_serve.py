"""`queuectl metrics --serve` (SPEC 8) facing the network: a bad address is one `Error:` line
(exit 2; a port in use, exit 1); by default it listens on 127.0.0.1 only; garbage requests and
slow or silent clients neither stop it nor hold up another scrape, and the threads they took go
away with them. The server is a real process, always stopped at the end."""

from __future__ import annotations

import errno
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from queuectl import JobSpec, Queue
from queuectl.cli import cli
from support import stop_process, wait_until

from .test_cli_fuzz import check_contract

SCRAPE_TIMEOUT_S = 5.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("listen", [
    "0", "-1", "70000", "65536", "abc", "", " ", ":", "127.0.0.1:", "127.0.0.1:abc",
    "127.0.0.1:-5", "[::1]", "9464:", "\udcff:9464", "a" * 300 + ":9464", "bad\udc80host:1",
    "1e3", "9" * 5000,
])  # fmt: skip
def test_a_bad_address_is_one_error_line_and_exit_2(db_path, listen):
    result = CliRunner().invoke(cli, ["--db", db_path, "metrics", "--serve", listen])
    check_contract(result, ("metrics", "--serve", listen))
    assert result.exit_code == 2, result.stderr


def test_a_port_in_use_is_exit_1(db_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["--db", db_path, "metrics", "--serve", str(port)])
    check_contract(result, ("metrics", "--serve", port))
    assert result.exit_code == 1
    assert "cannot listen" in result.stderr


class Server:
    def __init__(self, db: str, tmp_path: Path, listen: str) -> None:
        self.log = tmp_path / "serve.log"
        env = {**os.environ, "QUEUECTL_DB": db, "PYTHONUNBUFFERED": "1"}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "queuectl", "metrics", "--serve", listen],
                env=env, stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        self.port = int(listen.rpartition(":")[2])
        wait_until(lambda: "serving" in self.log.read_text() or self.proc.poll() is not None,
                   30, "the server to start")  # fmt: skip
        assert self.proc.poll() is None, self.log.read_text()

    def scrape(self) -> str:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:
            assert response.status == 200
            return response.read().decode()

    def threads(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
        raise AssertionError("no thread count")


@pytest.fixture
def server(db_path, tmp_path):
    queue = Queue(db_path)
    queue.enqueue_many([JobSpec(command="true", queue=q) for q in ("default", "emails")])
    queue.close()
    started = Server(db_path, tmp_path, str(free_port()))
    yield started
    stop_process(started.proc)


def test_only_slash_metrics_serves_the_metrics(server):
    """QA: every path answered 200 with the metrics (SPEC 8: it serves /metrics)."""
    import urllib.error

    assert "queuectl_jobs" in server.scrape()
    assert "queuectl_jobs" in urllib.request.urlopen(
        f"http://127.0.0.1:{server.port}/metrics?from=scraper", timeout=SCRAPE_TIMEOUT_S
    ).read().decode()  # fmt: skip (a query is not another path)
    for path in ("/", "/nope", "/metrics/x", "/metricsx"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}",
                                   timeout=SCRAPE_TIMEOUT_S)  # fmt: skip
        assert refused.value.code == 404, path
        assert refused.value.read() == b"Not found: the metrics are at /metrics\n"


def test_a_scrape_can_ask_for_some_metrics_by_name(server):
    """QA: `/metrics?name[]=queuectl_jobs` (the library's filter, which Prometheus' federation
    and scrapers of a few series use) answered nothing at all."""

    def samples(query: str) -> set[str]:
        url = f"http://127.0.0.1:{server.port}/metrics?{query}"
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:
            text = response.read().decode()
        return {line.split("{")[0].split()[0] for line in text.splitlines()
                if line and not line.startswith("#")}  # fmt: skip

    assert samples("name[]=queuectl_jobs") == {"queuectl_jobs"}
    assert samples("name[]=queuectl_runs_total&name[]=queuectl_database_up") == {
        "queuectl_runs_total", "queuectl_database_up"}  # fmt: skip
    assert samples("name[]=queuectl_run_duration_seconds_count") == {
        "queuectl_run_duration_seconds_count"}  # fmt: skip
    assert samples("name[]=queuectl_no_such_metric") == set()
    assert "queuectl_worker_threads" in samples("")  # no filter: every metric


def head(port: int, path: str) -> bytes:
    """The whole answer to ``HEAD path``, as sent (the connection closes after it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=SCRAPE_TIMEOUT_S) as connection:
        connection.sendall(f"HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                           .encode())  # fmt: skip
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def test_a_head_is_answered_as_a_get_without_its_body(server):
    """QA: `curl -I` (uptime checks ask with HEAD) got 405 from the library's app, with a body."""
    answer = head(server.port, "/metrics")
    status, _, rest = answer.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert status.split()[1] == b"200", answer
    assert b"Content-Type: text/plain; version=" in headers
    assert body == b""
    length = re.search(rb"Content-Length: (\d+)", headers)  # the GET's (QA: it read 0)
    # (Within a few bytes of the next GET's: the oldest job's age has grown meanwhile.)
    assert length and abs(int(length[1]) - len(server.scrape().encode())) < 64, headers
    missing = head(server.port, "/nope")
    assert missing.split()[1] == b"404" and missing.endswith(b"\r\n\r\n"), missing


def listening_addresses(port: int) -> set[str]:
    """The local addresses (hex, as the kernel lists them) of the TCP sockets listening on
    ``port``, IPv4 and IPv6."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_by_default_it_listens_on_loopback_only(server):
    assert "queuectl_jobs" in server.scrape()
    assert f"http://127.0.0.1:{server.port}/metrics" in server.log.read_text()
    assert listening_addresses(server.port) == {"0100007F"}  # 127.0.0.1, and nothing else


GARBAGE = [
    b"\x00\xff\xfe garbage\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),  # a TLS hello
    b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\n" + b"X-Junk: " + b"j" * 70_000 + b"\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % n for n in range(200)) + b"\r\n",
    b"POST /metrics HTTP/1.1\r\nContent-Length: 99999999\r\n\r\nabc",
    b"GET /metrics?name[]=%ff%00 HTTP/1.1\r\nHost: \xff\r\n\r\n",
    b"DELETE / HTTP/9.9\r\n\r\n",
    b"\r\n\r\n\r\n",
]


def test_garbage_requests_do_not_stop_it(server):
    for request in GARBAGE:
        with socket.create_connection(("127.0.0.1", server.port), timeout=SCRAPE_TIMEOUT_S) as s:
            try:
                s.sendall(request)
                s.shutdown(socket.SHUT_WR)
                while s.recv(65536):  # whatever it answers, it answers and closes
                    pass
            except OSError as exc:
                # Refusing to read a huge request is fine too: the server answered and closed
                # with the request unread, and the connection was reset, before our sendall
                # ended (EPIPE, ECONNRESET) or our shutdown came (ENOTCONN: seen once in CI).
                if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                    raise
        assert server.proc.poll() is None, server.log.read_text()
    assert "queuectl_jobs" in server.scrape()
    assert "Traceback" not in server.log.read_text()


def test_slow_and_silent_clients_do_not_hold_up_a_scrape(server):
    """Fifty clients connect and say nothing, ten send one byte of a request line each few
    moments; a scrape answers meanwhile, and once they leave their threads are gone."""
    baseline = server.threads()
    # A connect timeout under the kernel's 1 s SYN retry: each connection is taken at once (the
    # listen backlog holds the burst), none waits for a dropped SYN to be sent again.
    def connect() -> socket.socket:
        return socket.create_connection(("127.0.0.1", server.port), timeout=0.9)

    silent, slow = [], []
    try:
        silent += [connect() for _ in range(50)]
        slow += [connect() for _ in range(10)]
        for round_ in range(3):
            for client in slow:
                client.sendall(b"GET /metrics HTTP/1.1\r\n"[round_ : round_ + 1])
            text = server.scrape()
            assert 'queuectl_jobs{queue="emails",state="pending"} 1.0' in text
        assert server.threads() <= baseline + 60 + 5
    finally:
        for client in silent + slow:
            client.close()
    wait_until(lambda: server.threads() <= baseline + 2, 30,
               lambda: f"threads to go: {server.threads()} (was {baseline})")  # fmt: skip
    assert "queuectl_jobs" in server.scrape()


def test_sigterm_stops_it_cleanly(server):
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0
    assert "Traceback" not in server.log.read_text()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
