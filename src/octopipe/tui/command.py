"""``octopipe tui``: the dashboard in the terminal, ``--dump`` without one, ``--serve`` in a
browser. Textual is imported only when a screen is drawn (``--dump`` never imports it)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from octopipe.engine.paths import default_runs_dir
from octopipe.errors import EXIT_OK, UsageError

SERVE_HOST = "127.0.0.1"


@click.command()
@click.option(
    "--runs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The runs folder (default: $OCTOPIPE_RUNS_DIR or ./runs).",
)
@click.option(
    "--pipelines-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the launcher (N) and the pipelines list (L) look for pipeline folders "
    "(default: the working folder and its pipelines/).",
)
@click.option("--read-only", is_flag=True, help="Look, never change: every action is refused.")
@click.option("--dump", is_flag=True, help="Print what the dashboard shows and exit (no terminal).")
@click.option(
    "--run", "run_name", metavar="RUN", help="With --dump: one run's detail; else open it."
)
@click.option("--json", "as_json", is_flag=True, help="With --dump: JSON.")
@click.option("--archived", is_flag=True, help="With --dump: archived runs too.")
@click.option("--serve", is_flag=True, help=f"Serve the TUI to a browser on {SERVE_HOST}.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
def tui(
    runs_dir: Path | None,
    pipelines_dir: Path | None,
    read_only: bool,
    dump: bool,
    run_name: str | None,
    as_json: bool,
    archived: bool,
    serve: bool,
    port: int,
) -> int:
    """See and steer every run: dashboard, run detail, unit inspector, launcher, actions.

    Keys: ? for help on every screen. `--dump` prints the same figures for scripts;
    `--serve` serves the app to a browser on 127.0.0.1 (reach it through an SSH tunnel).
    """
    from octopipe.tui.port import ReadOnlyControl, RunControl, RunQueries

    base = runs_dir or default_runs_dir()
    if (as_json or archived) and not dump:
        raise UsageError("--json and --archived go with --dump")
    if dump and serve:
        raise UsageError("--dump and --serve exclude each other")
    queries = RunQueries(base, pipelines_dir)
    if dump:
        from octopipe.tui.dump import dump as print_dump

        if run_name:
            queries.paths(run_name)  # RunNotFound before anything prints
        print_dump(queries, sys.stdout, run=run_name, as_json=as_json, include_archived=archived)
        return EXIT_OK
    _need("textual", "textual-serve" if serve else "textual")
    if serve:
        _need("textual_serve", "textual-serve")
        return _serve(base, pipelines_dir, read_only, run_name, port)
    control = ReadOnlyControl(base) if read_only else RunControl(base)
    from octopipe.tui.app import build_app

    if run_name:
        queries.paths(run_name)
    build_app(queries, control, read_only=read_only, start_run=run_name).run()
    return EXIT_OK


def _need(module: str, package: str) -> None:
    """A clear message instead of an ImportError when the optional extra is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise UsageError(
            f"the terminal UI needs {package}, which is not installed: "
            "pip install 'octopipe[tui]' (--dump works without it)"
        )


def _serve(
    base: Path, pipelines_dir: Path | None, read_only: bool, run_name: str | None, port: int
) -> int:
    from textual_serve.server import Server

    words = [sys.executable, "-m", "octopipe", "tui", "--runs-dir", str(base.resolve())]
    if pipelines_dir is not None:
        words += ["--pipelines-dir", str(pipelines_dir.resolve())]
    if read_only:
        words.append("--read-only")
    if run_name:
        words += ["--run", run_name]
    click.echo(
        f"serving the octopipe TUI on http://{SERVE_HOST}:{port} (only this machine; from "
        f"elsewhere: ssh -L {port}:{SERVE_HOST}:{port} HOST); Ctrl+C stops"
    )
    Server(shlex.join(words), host=SERVE_HOST, port=port, title="octopipe").serve()
    return EXIT_OK
