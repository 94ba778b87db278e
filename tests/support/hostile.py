"""A sandbox for running octopipe on a pipeline folder written by an adversary.

Each test builds a hostile pipeline inside ``Sandbox.pipeline`` (starting from a small valid
one), runs the real command line in a child process with a private HOME and working folder,
and then asks the sandbox what leaked:

- ``outside/secret.txt`` (next to, not inside, the pipeline) holds a canary string; it must
  not appear in anything octopipe printed or wrote (run folder, logs, outputs);
- a canary HTTP server on 127.0.0.1 counts every request; nothing may reach it;
- pipeline code that runs writes ``marker``; it must not exist unless the user asked for
  that code by name.

Every command runs under a hard time limit, so a hang is a test failure, not a stuck suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CONFIG = """\
pipeline:
  name: hostile
  steps:
    - name: score
      scope: expression
      expressions:
        doubled: "value * 2"
    - name: judge
      prompt_template: judge.jinja2

processing:
  strategy: direct
  items:
    source: items.yaml
    key: items
    name_field: name
  chunk_size: 10

prompts:
  template_dir: templates

schemas:
  schema_dir: schemas
  files:
    judge: judge.json

validation:
  judge:
    required: [verdict]
"""

ITEMS = """\
items:
  - {name: a, value: 1}
  - {name: b, value: 2}
  - {name: c, value: 3}
"""

TEMPLATE = "Judge the value {{ value }} (doubled: {{ doubled }}). Answer JSON with a verdict.\n"

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {"verdict": {"type": "string"}},
    "required": ["verdict"],
}


@dataclass
class Result:
    args: tuple[str, ...]
    code: int
    out: str
    err: str
    seconds: float

    @property
    def text(self) -> str:
        return self.out + self.err

    def __str__(self) -> str:
        return f"octopipe {' '.join(self.args)} -> {self.code} in {self.seconds:.1f}s\n{self.text}"


class CanaryServer:
    """An HTTP server on loopback that records every request made to it."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                body = json.dumps({"type": "object"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Sandbox:
    root: Path
    canary_server: CanaryServer
    canary: str = field(default_factory=lambda: f"CANARY-{uuid.uuid4().hex}")

    def __post_init__(self) -> None:
        self.pipeline = self.root / "pipeline"
        self.outside = self.root / "outside"
        self.secret = self.outside / "secret.txt"
        self.marker = self.root / "marker"
        self.work = self.root / "work"
        self.home = self.root / "home"
        self.runs = self.work / "runs"
        for folder in (
            self.pipeline / "templates",
            self.pipeline / "schemas",
            self.outside,
            self.work,
            self.home,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        self.secret.write_text(f"{self.canary}\n")
        self.write("config.yaml", CONFIG)
        self.write("items.yaml", ITEMS)
        self.write("templates/judge.jinja2", TEMPLATE)
        self.write("schemas/judge.json", json.dumps(SCHEMA, indent=2))

    # --- building the hostile folder ---------------------------------------------------------

    def write(self, relative: str, text: str) -> Path:
        path = self.pipeline / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def edit_config(self, old: str, new: str) -> None:
        config = self.pipeline / "config.yaml"
        text = config.read_text()
        assert old in text, f"{old!r} not in the config"
        config.write_text(text.replace(old, new, 1))

    def link(self, relative: str, target: Path) -> Path:
        path = self.pipeline / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)
        return path

    def code_that_marks(self) -> str:
        """Python source that, if it ever runs, leaves the marker file behind."""
        return f"open({str(self.marker)!r}, 'w').write('ran')\n"

    # --- running -----------------------------------------------------------------------------

    def octopipe(
        self,
        *args: object,
        timeout: float = 60,
        env: dict[str, str] | None = None,
        input: str | None = None,
    ) -> Result:
        """Run the real CLI in a child process, in ``work/`` with HOME in the sandbox."""
        child_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OCTOPIPE_", "OPENAI", "ANTHROPIC", "GEMINI", "GOOGLE"))
        }
        child_env.update({"HOME": str(self.home), "NO_COLOR": "1", "COLUMNS": "160"})
        child_env.update(env or {})
        argv = tuple(str(a) for a in args)
        started = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "octopipe", *argv],
                cwd=self.work,
                env=child_env,
                capture_output=True,
                text=True,
                timeout=timeout,
                input=input if input is not None else "",
            )
        except subprocess.TimeoutExpired as expired:
            raise AssertionError(
                f"octopipe {' '.join(argv)} did not finish within {timeout}s "
                f"(out: {expired.stdout!r}, err: {expired.stderr!r})"
            ) from None
        return Result(argv, done.returncode, done.stdout, done.stderr, time.monotonic() - started)

    # --- what leaked -------------------------------------------------------------------------

    def files_written(self) -> Iterator[Path]:
        for base in (self.work, self.home):
            for path in base.rglob("*"):
                if path.is_file() and not path.is_symlink():
                    yield path

    def leaks(self, *results: Result) -> list[str]:
        """Every place the canary, a fetch or pipeline code showed up."""
        found = [
            f"printed by `octopipe {' '.join(r.args)}`" for r in results if self.canary in r.text
        ]
        needle = self.canary.encode()
        for path in self.files_written():
            data = path.read_bytes()
            if needle in data:
                found.append(f"written into {path.relative_to(self.root)}")
            elif path.suffix in (".db", ".db-wal") and _in_compressed_blobs(path, needle):
                found.append(f"written (compressed) into {path.relative_to(self.root)}")
        found += [f"fetched {hit}" for hit in self.canary_server.hits]
        if self.marker.exists():
            found.append("pipeline code ran")
        return found

    def assert_contained(self, *results: Result) -> None:
        leaks = self.leaks(*results)
        assert not leaks, "\n".join(leaks + [str(r) for r in results])


def _in_compressed_blobs(path: Path, needle: bytes) -> bool:
    """Search zlib streams inside a ledger file (blobs of 1 KiB or more are stored compressed;
    shorter ones are plain TEXT, which the caller's raw-bytes search already sees)."""
    import zlib

    data = path.read_bytes()
    start = 0
    while (start := data.find(b"\x78", start)) >= 0:
        if data[start + 1 : start + 2] in (b"\x01", b"\x5e", b"\x9c", b"\xda"):
            try:
                if needle in zlib.decompressobj().decompress(data[start : start + (1 << 20)]):
                    return True
            except zlib.error:
                pass
        start += 1
    return False
