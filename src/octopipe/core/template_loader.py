"""Jinja's loader for a pipeline's prompt templates, contained in the pipeline folder.

A template's ``include``/``import``/``extends`` goes through :class:`ContainedTemplateLoader`,
which resolves links with ``containment.resolve_inside`` before opening anything: a template
whose real path is outside the folder is refused (``RenderError``), at validate and at render.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import jinja2
from jinja2.loaders import split_template_path

from octopipe.core.containment import Escape, real_root, resolve_inside
from octopipe.core.limits import check_file_size
from octopipe.errors import ConfigError, RenderError


class ContainedTemplateLoader(jinja2.BaseLoader):
    """Loads templates from ``template_dir``, refusing any whose real path is outside ``root``.

    Names are split as Jinja's ``FileSystemLoader`` splits them (``..`` is refused); the real
    path is checked before the file is opened, and files past the size limit are refused.
    """

    def __init__(self, template_dir: Path, root: Path | None = None) -> None:
        self.template_dir = Path(os.path.abspath(template_dir))
        self.root = real_root(root if root is not None else template_dir)

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        path = self.template_dir.joinpath(*split_template_path(template))
        try:
            real = resolve_inside(self.root, path, repr(template))
        except Escape as exc:
            raise RenderError(
                template, f"{exc.reason}; templates read only files inside it"
            ) from None
        if not real.is_file():
            raise jinja2.TemplateNotFound(template)
        try:
            check_file_size(real, template)
        except ConfigError as exc:
            raise RenderError(template, exc.problems[0].message) from None
        try:
            source = real.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RenderError(template, f"cannot read: {exc}") from None
        mtime = real.stat().st_mtime
        return source, os.path.normpath(path), lambda: real.stat().st_mtime == mtime
