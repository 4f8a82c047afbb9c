"""Real ``lakevec serve`` processes: busy port, logging, shutdown, workers, ``--server`` mode."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from click.testing import CliRunner

from lakevec.cli import main
from lakevec.errors import PortInUseError, ServiceError, UsageProblem
from lakevec.replay.evidence import ReplayRunRow
from lakevec.service.client import ServiceClient
from lakevec.service.run import serve
from lakevec.service.settings import ServerSettings
from tests.test_service_support import (  # noqa: F401 — fixtures
    TOKEN,
    corpus_rows,
    free_port,
    reindex,
    root_fixture,
    rows_of,
    serve_command,
    start_server,
    stop_server,
    wait_for,
)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another process (here: a plain socket) is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_port_in_use_fails_before_loading_anything(tmp_path: Path, busy_port: int) -> None:
    # No index exists: had serve() loaded it first, this would be IndexMissingError.
    settings = ServerSettings(index_dir=tmp_path / "no-index", evidence_path=tmp_path / "e",
                              port=busy_port)
    with pytest.raises(PortInUseError, match=f"{busy_port}.*already in use.*--port N"):
        serve(settings)


def test_serve_cli_port_in_use_is_exit_1_in_one_line(tmp_path: Path, busy_port: int) -> None:
    proc = subprocess.run(
        serve_command(tmp_path, "--port", str(busy_port)),
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert "already in use" in lines[0] and "--port" in lines[0]
    assert "no index" not in lines[0]  # the index was never looked at


def test_serve_logs_listening_access_and_swaps(root: Path) -> None:
    """At --log-level info: where it listens, one access line per request, each swap."""
    proc, url, log = start_server(root, "--poll-interval", "0.05", log_level="info")
    try:
        assert httpx.get(url + "/stats", timeout=10).status_code == 200
        reindex(root, corpus_rows(30, gen=2))

        def logged(text: str) -> bool:
            return text in log.read_text(encoding="utf-8", errors="replace")

        wait_for(lambda: logged("v000001 → v000002"), 30, "the swap log line")
        wait_for(lambda: logged('"GET /stats HTTP/1.1" 200'), 30, "the access line")
        assert logged(f"listening on {url}")
        assert httpx.get(url + "/healthz", timeout=10).json()["index_version"] == 2
    finally:
        stop_server(proc)
    text = log.read_text(encoding="utf-8", errors="replace")
    swap = next(line for line in text.splitlines() if "v000001 → v000002" in line)
    assert swap.startswith("INFO") and "version 2" in swap and " ms" in swap


def test_workers_share_the_pre_bound_port(root: Path) -> None:
    proc, url, _ = start_server(root, "--workers", "2")
    try:
        body = httpx.post(url + "/vectors/search", json={"query": "gateway"}, timeout=30).json()
        assert body["index_version"] == 1 and body["results"]
    finally:
        stop_server(proc)


def slow_chat(received: threading.Event, release: threading.Event) -> type[BaseHTTPRequestHandler]:
    """A chat gateway whose answer waits until the test releases it."""

    class SlowChat(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            received.set()
            release.wait(30)
            body = json.dumps({"choices": [{"message": {"content": "slow answer"}}]}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return SlowChat


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def test_graceful_shutdown_loses_no_evidence_row(root: Path) -> None:
    received, release = threading.Event(), threading.Event()
    chat = ThreadingHTTPServer(("127.0.0.1", 0), slow_chat(received, release))
    threading.Thread(target=chat.serve_forever, daemon=True).start()
    gateway = f"http://127.0.0.1:{chat.server_address[1]}"
    proc, url, _ = start_server(root, "--gateway", gateway)
    port = urlsplit(url).port
    assert port is not None
    evidence = root / "data" / "_kb" / "replay_runs.jsonl"
    ok_ids: list[str] = []
    failures: list[str] = []
    slow: dict[str, Any] = {}
    stop = threading.Event()

    def dry_runs() -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            while not stop.is_set():
                try:
                    resp = c.post("/replay", json={"task": "Audit the gateway", "dry_run": True})
                except httpx.HTTPError:
                    return  # the listener closed: later requests are refused, never half-run
                if resp.status_code == 200:
                    ok_ids.append(resp.json()["recorded_run_id"])
                else:
                    failures.append(resp.text)

    def slow_run() -> None:  # in flight across the SIGTERM, until the test releases the gateway
        with httpx.Client(base_url=url, timeout=60) as c:
            resp = c.post("/replay", json={"task": "A slow replay", "local_only": True})
            slow["status"] = resp.status_code
            slow["id"] = resp.json()["recorded_run_id"]

    try:
        workers = [threading.Thread(target=dry_runs) for _ in range(3)]
        workers.append(threading.Thread(target=slow_run))
        for t in workers:
            t.start()
        assert received.wait(30), "the slow replay never reached the gateway"
        wait_for(lambda: len(ok_ids) >= 3, 30, "dry runs to be answered")
        proc.send_signal(signal.SIGTERM)
        # Draining: the listener is closed while the slow replay is still running.
        wait_for(lambda: refuses_connections(port), 30, "the listener to close")
        assert "status" not in slow
        release.set()
        # uvicorn drains, then re-raises the signal so the parent sees why it stopped.
        assert proc.wait(30) in (0, -signal.SIGTERM)
        stop.set()
        for t in workers:
            t.join(30)
    finally:
        release.set()
        stop.set()
        stop_server(proc)
        chat.shutdown()
        chat.server_close()
    assert failures == []
    assert slow.get("status") == 200, "the in-flight replay was cut off"
    logged = evidence.read_text(encoding="utf-8")
    assert logged.endswith("\n")
    rows = [json.loads(line) for line in logged.splitlines()]
    for row in rows:
        ReplayRunRow.model_validate(row)
    logged_ids = [r["recorded_run_id"] for r in rows]
    assert slow["id"] in logged_ids
    # Every answered request has its row (ids can repeat within one millisecond).
    assert len(rows) >= len(ok_ids) + 1
    assert set(ok_ids) <= set(logged_ids)


@pytest.fixture
def served(root: Path) -> Iterator[tuple[Path, str]]:
    proc, url, _ = start_server(root, token=TOKEN)
    try:
        yield root, url
    finally:
        stop_server(proc)


def test_cli_server_mode(served: tuple[Path, str]) -> None:
    root, url = served
    runner = CliRunner()
    env = {"LAKEVEC_TOKEN": TOKEN}
    for kind in ("hybrid", "hnsw", "bm25"):
        local = runner.invoke(main, ["--root", str(root), "search", "gateway audit", "-k", "4",
                                     "--json", "--model", "hash:64", "--retriever", kind])
        remote = runner.invoke(main, ["--root", str(root), "search", "gateway audit", "-k", "4",
                                      "--json", "--server", url, "--retriever", kind], env=env)
        assert local.exit_code == 0, local.output
        assert remote.exit_code == 0, remote.output
        assert [r["id"] for r in json.loads(remote.output)] == [
            r["id"] for r in json.loads(local.output)], kind
    # Without --retriever both sides use the same default.
    local = runner.invoke(main, ["--root", str(root), "search", "gateway audit", "--json",
                                 "--model", "hash:64"])
    remote = runner.invoke(main, ["search", "gateway audit", "--json", "--server", url], env=env)
    assert json.loads(remote.output) == json.loads(local.output)
    text = runner.invoke(main, ["search", "gateway", "--server", url], env=env)
    assert text.exit_code == 0 and "gen0 playbook" in text.output

    res = runner.invoke(main, ["--root", str(root), "replay", "--task", "Audit the gateway",
                               "--dry-run", "--json", "--server", url], env=env)
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    rows = rows_of(root / "data" / "_kb" / "replay_runs.jsonl")
    assert [r["recorded_run_id"] for r in rows] == [result["recorded_run_id"]]
    res = runner.invoke(main, ["replay", "--task", "Audit", "--dry-run", "--server", url],
                        env=env)
    assert res.exit_code == 0 and "[replay] run_id=" in res.output

    # errors: wrong token → exit 1; bad input → exit 2; local-only options → exit 2
    res = runner.invoke(main, ["search", "x", "--server", url],
                        env={"LAKEVEC_TOKEN": "wrong-token-wrong-token"})
    assert res.exit_code == 1 and "LAKEVEC_TOKEN" in res.output
    res = runner.invoke(main, ["replay", "--task", "x" * 40_000, "--dry-run", "--server", url],
                        env=env)
    assert res.exit_code == 2
    res = runner.invoke(main, ["search", "x", "--server", url, "--index", "/tmp/x"], env=env)
    assert res.exit_code == 2 and "--index" in res.output
    res = runner.invoke(main, ["replay", "--task", "x", "--server", url, "--evidence", "e.jsonl"],
                        env=env)
    assert res.exit_code == 2 and "--evidence" in res.output
    res = runner.invoke(main, ["replay", "--task", "x", "--server", url,
                               "--retriever", "jaccard"], env=env)
    assert res.exit_code == 2


def test_client_unreachable_server() -> None:
    port = free_port()
    with ServiceClient(f"http://127.0.0.1:{port}", token=None) as client, \
            pytest.raises(ServiceError, match="cannot reach"):
        client.healthz()
    with pytest.raises(UsageProblem):
        ServiceClient("ftp://x")
    with pytest.raises(UsageProblem, match="not served"):
        ServiceClient(f"http://127.0.0.1:{port}").search("x", retriever="jaccard")
    res = CliRunner().invoke(main, ["search", "x", "--server", f"http://127.0.0.1:{port}"])
    assert res.exit_code == 1 and "lakevec serve" in res.output
