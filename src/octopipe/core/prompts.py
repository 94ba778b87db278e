"""Render prompt templates: Jinja2, sandboxed and strict.

A :class:`PromptRenderer` is built once per LLM step: it loads and compiles the step's
template once, and builds the part of the context that is the same for every unit. Then
:meth:`PromptRenderer.render` turns one unit's fields into a prompt.

Guarantees:

- **Sandboxed.** ``ImmutableSandboxedEnvironment``: no access to underscore or internal
  attributes (``''.__class__``), no calls to unsafe callables, no mutation of the unit's
  lists and dicts (their nested values are shared between units), ``range`` capped, and
  ``*``/``**`` refuse results past :data:`MAX_SEQUENCE_LENGTH` elements or
  :data:`MAX_POWER_BITS` bits, so a template cannot exhaust memory.
- **Strict.** ``StrictUndefined``: a missing variable is an error, never an empty string.
- **Contained.** Templates load from ``template_dir`` only; ``{% include '../x' %}`` fails,
  and so does any template (included, imported, extended) whose real path, after following
  links, is outside ``root`` (the pipeline folder; see ``core/containment.py``).
- **Verbatim.** No autoescape; the trailing newline is kept.
- **One error type.** Every failure, at load or render time, is a ``RenderError`` with the
  template's name, a message (naming the undefined variable, the refused attribute, ...) and
  the template line where one is known. The caller fails that unit alone.

Context, later entries winning (Octobatch's, plus a defined precedence): every top-level
config key, then ``config`` (the whole config mapping), then ``prompts.global_context``, then
the unit's fields.

Pure: reads template files, writes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import jinja2
from jinja2 import meta, nodes
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from octopipe.core.containment import ContainedTemplateLoader
from octopipe.errors import RenderError

MAX_SEQUENCE_LENGTH = 10_000_000
"""Largest string/list a template may build with ``*``."""
MAX_POWER_BITS = 100_000
"""Largest integer (in bits) a template may build with ``**``."""


class _PromptEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            _check_power(left, right)
        else:
            _check_repetition(left, right)
            _check_repetition(right, left)
        return super().call_binop(context, operator, left, right)


def _check_power(base: Any, exponent: Any) -> None:
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and exponent > 0
        and abs(base) > 1
        and base.bit_length() * exponent > MAX_POWER_BITS
    ):
        raise SecurityError(f"{base} ** {exponent} is too large (limit {MAX_POWER_BITS:,} bits)")


def _check_repetition(sequence: Any, times: Any) -> None:
    if (
        isinstance(sequence, str | list | tuple)
        and isinstance(times, int)
        and len(sequence) * times > MAX_SEQUENCE_LENGTH
    ):
        raise SecurityError(
            f"{type(sequence).__name__} * {times} would have {len(sequence) * times:,} "
            f"elements (limit {MAX_SEQUENCE_LENGTH:,})"
        )


def _environment(template_dir: Path, root: Path | None = None) -> _PromptEnvironment:
    return _PromptEnvironment(
        loader=ContainedTemplateLoader(template_dir, root),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        auto_reload=False,
    )


class PromptRenderer:
    """Renders one template for many units. Build once per step; ``render`` per unit."""

    def __init__(
        self,
        template_dir: Path,
        template_name: str,
        *,
        config: Mapping[str, Any],
        global_context: Mapping[str, Any],
        root: Path | None = None,
    ) -> None:
        self.template_name = template_name
        self._template_dir = Path(template_dir)
        self._env = _environment(self._template_dir, root)
        base: dict[str, Any] = dict(config)
        base["config"] = config
        base.update(global_context)
        self._base = base
        try:
            # The config and global context are the template's globals: Jinja layers the unit's
            # fields over them per render (fields win), with no merge of ours per unit.
            self._template = self._env.get_template(template_name, globals=base)
        except Exception as exc:
            raise _as_render_error(exc, template_name, self._template_dir) from exc

    def render(self, fields: Mapping[str, Any]) -> str:
        """The prompt for one unit; any failure is a ``RenderError``."""
        try:
            return self._template.render(fields)
        except Exception as exc:
            raise _as_render_error(exc, self.template_name, self._template_dir) from exc


def template_variables(
    template_dir: Path, template_name: str, root: Path | None = None
) -> frozenset[str]:
    """Names the template (and the templates it includes or imports) reads from its context.

    Jinja's own globals (``range``, ``namespace``, ...) are left out, and so are names any of
    these templates assigns (``set``, ``for``, macro parameters), so that a variable set before
    an ``include`` is not reported: the result never names a variable the template defines.
    Raises ``RenderError`` when a template is missing, outside ``root`` or has a syntax error.
    """
    env = _environment(Path(template_dir), root)
    read: set[str] = set()
    assigned: set[str] = set()
    for _, tree in _walk_templates(env, template_name, Path(template_dir)):
        read |= meta.find_undeclared_variables(tree)
        assigned |= {
            node.name for node in tree.find_all(nodes.Name) if node.ctx in ("store", "param")
        }
    return frozenset(read - assigned - set(env.globals))


def template_syntax_error(
    template_dir: Path, template_name: str, root: Path | None = None
) -> RenderError | None:
    """The first load or syntax error of the template or of those it includes, else None."""
    env = _environment(Path(template_dir), root)
    try:
        for _ in _walk_templates(env, template_name, Path(template_dir)):
            pass
    except RenderError as exc:
        return exc
    return None


def _walk_templates(
    env: jinja2.Environment, template_name: str, template_dir: Path
) -> Iterator[tuple[str, nodes.Template]]:
    """Parse and compile the template and, recursively, those it names literally."""
    pending = [template_name]
    done: set[str] = set()
    while pending:
        name = pending.pop()
        if name in done:
            continue
        done.add(name)
        try:
            source, filename, _ = cast(jinja2.BaseLoader, env.loader).get_source(env, name)
            tree = env.parse(source, name, filename)
            env.compile(tree, name, filename)
        except Exception as exc:
            raise _as_render_error(exc, name, template_dir) from exc
        yield name, tree
        pending.extend(ref for ref in meta.find_referenced_templates(tree) if ref is not None)


# --- errors ------------------------------------------------------------------------------------


def _as_render_error(exc: Exception, template_name: str, template_dir: Path) -> RenderError:
    if isinstance(exc, RenderError):
        return exc
    root = os.path.abspath(template_dir)
    if isinstance(exc, jinja2.TemplateSyntaxError):
        name = _relative_name(exc.filename, root) or exc.name or template_name
        return RenderError(name, f"syntax error: {exc.message}", exc.lineno)
    if isinstance(exc, jinja2.TemplateNotFound):
        missing = ", ".join(repr(name) for name in getattr(exc, "templates", [exc.name]))
        name, line = _innermost_template_line(exc.__traceback__, root, template_name)
        return RenderError(
            name,
            f"template {missing} not found under {template_dir} (templates must stay inside it)",
            line,
        )
    name, line = _innermost_template_line(exc.__traceback__, root, template_name)
    if isinstance(exc, SecurityError):
        message = f"refused by the sandbox: {exc}"
    elif isinstance(exc, jinja2.UndefinedError):
        message = exc.message or "undefined value"
    else:
        message = f"{type(exc).__name__}: {exc}"
    return RenderError(name, message, line)


def _innermost_template_line(
    traceback: TracebackType | None, root: str, default_name: str
) -> tuple[str, int | None]:
    """Name and line of the deepest template frame (Jinja rewrites frames to template lines)."""
    name, line = default_name, None
    while traceback is not None:
        relative = _relative_name(traceback.tb_frame.f_code.co_filename, root)
        if relative is not None:
            name, line = relative, traceback.tb_lineno
        traceback = traceback.tb_next
    return name, line


def _relative_name(filename: str | None, root: str) -> str | None:
    if not filename:
        return None
    normalized = os.path.abspath(filename)
    if not normalized.startswith(root + os.sep):
        return None
    return normalized[len(root) + 1 :].replace(os.sep, "/")
