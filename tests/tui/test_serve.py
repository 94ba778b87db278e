"""``octopipe tui --serve``: the app served to a browser on 127.0.0.1 (textual-serve)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str, deadline_s: float) -> tuple[int, str]:
    end = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, response.read().decode()
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def test_serve_answers_on_loopback_with_the_app_page_and_stops(tmp_path: Path) -> None:
    port = free_port()
    runs = tmp_path / "runs"
    runs.mkdir()
    argv = ["tui", "--serve", "--port", str(port), "--runs-dir", str(runs)]
    server = subprocess.Popen(
        [sys.executable, "-m", "octopipe", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        status, page = fetch(f"http://127.0.0.1:{port}/", deadline_s=20)
        assert status == 200
        assert "<div>octopipe</div>" in page  # textual-serve shows the title it is given
        # the page opens a websocket to this server, which runs `octopipe tui` per browser
        assert f"ws://127.0.0.1:{port}/ws" in page
    finally:
        server.send_signal(signal.SIGINT)
        try:
            out, _ = server.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            out, _ = server.communicate()
    assert f"serving the octopipe TUI on http://127.0.0.1:{port}" in out
    assert server.returncode is not None
    with socket.socket() as s:  # stopped: nothing listens on the port any more
        assert s.connect_ex(("127.0.0.1", port)) != 0
