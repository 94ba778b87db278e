"""Render prompt templates: Jinja2, sandboxed and strict.

A :class:`PromptRenderer` is built once per LLM step: it loads and compiles the step's
template once, and builds the part of the context that is the same for every unit. Then
:meth:`PromptRenderer.render` turns one unit's fields into a prompt.

Guarantees:

- **Sandboxed.** ``ImmutableSandboxedEnvironment``: no access to underscore or internal
  attributes (``''.__class__``), no calls to unsafe callables, no mutation of the unit's
  lists and dicts (their nested values are shared between units), ``range`` capped.
- **Bounded.** Every way a template builds text or repeats work is checked before the work
  is done (see ``core/budget.py``): ``*``, ``+``, ``~`` and ``%`` past
  :data:`MAX_SEQUENCE_LENGTH` characters or elements, ``**`` past :data:`MAX_POWER_BITS` bits,
  format specs and ``%`` widths (``"{0:>1000000000}".format(1)``), padding and joining
  filters and methods (``|center(10**9)``, ``.ljust``), ``lipsum(n=...)``, text made of a
  value that shares its parts, a ``namespace`` attribute past the limit; loops, filter and
  macro calls and output take steps of the render's `Budget` (work and CPU time); the whole
  prompt is at most :data:`MAX_PROMPT_LENGTH` characters. A unit past a bound fails to render
  alone, with a ``RenderError`` saying which bound.
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
from collections.abc import Callable, Iterator, Mapping
from functools import update_wrapper
from pathlib import Path
from types import BuiltinMethodType, MethodType, TracebackType
from typing import Any, cast

import jinja2
from jinja2 import meta, nodes
from jinja2.runtime import Context, new_context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter, SecurityError
from jinja2.utils import Namespace, generate_lorem_ipsum

from octopipe.core.bounded import GUARDED_METHODS, guarded_attribute
from octopipe.core.budget import (
    MAX_LENGTH,
    Budget,
    ResourceLimitExceeded,
    activate,
    check_format_spec,
    check_length,
    check_printf,
    check_text_size,
    current,
    text_size,
)
from octopipe.core.budget import active as active_budget
from octopipe.core.template_loader import ContainedTemplateLoader
from octopipe.errors import RenderError

MAX_SEQUENCE_LENGTH = MAX_LENGTH
"""Largest string/list a template may build (``*``, ``~``, ``+``, filters, format widths)."""
MAX_PROMPT_LENGTH = MAX_LENGTH
"""Largest prompt, in characters."""
MAX_POWER_BITS = 100_000
"""Largest integer (in bits) a template may build with ``**``."""
MAX_SLICES = 100_000
"""Most lists ``|slice`` may make (each is made even when empty)."""
_LOOP_FILTER = "octopipe_loop"
_CONCAT_FILTER = "octopipe_concat"


class _PromptEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            _check_power(left, right)
        elif operator == "*":
            _check_repetition(left, right)
            _check_repetition(right, left)
        elif operator == "%":
            if isinstance(left, str):
                check_printf(left, right)
        elif isinstance(left, str | list | tuple) and type(right) is type(left):
            check_length(len(left) + len(right), f"{type(left).__name__} + {type(left).__name__}")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Every call takes a step of the budget; its text arguments must fit (a macro that
        doubles a string on each recursion is stopped), and the size-making string methods
        are checked like in expressions."""
        current().tick()
        for arg in args:
            if type(arg) is not str and type(arg) is not int:
                check_text_size(arg, "a call's argument")
        owner = getattr(__obj, "__self__", None)
        if isinstance(__obj, BuiltinMethodType) and isinstance(owner, str):
            name = __obj.__name__
            if name in GUARDED_METHODS:
                __obj = guarded_attribute(owner, name)
            elif name == "expandtabs":
                tabsize = args[0] if args else kwargs.get("tabsize", 8)
                if isinstance(tabsize, int):
                    check_length(len(owner) + owner.count("\t") * tabsize, "str.expandtabs()")
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format``/``format_map`` through a formatter that checks every field's spec
        and text before formatting it."""
        if not isinstance(value, MethodType | BuiltinMethodType) or value.__name__ not in (
            "format",
            "format_map",
        ):
            return None
        text = value.__self__
        if not isinstance(text, str):
            return None
        formatter = _BoundedFormatter(self)
        is_map = value.__name__ == "format_map"

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                kwargs, args = args[0], ()
            return formatter.vformat(text, args, kwargs)

        return update_wrapper(wrapper, value)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Parse, then route every ``for`` loop's sequence and every ``~`` through the
        bounding filters (every template, include and import is parsed here)."""
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, _LOOP_FILTER, [], [], None, None)
        for concat in list(tree.find_all(nodes.Concat)):
            first, *rest = concat.nodes
            bounded = nodes.Filter(first, _CONCAT_FILTER, rest, [], None, None)
            concat.nodes = [bounded]
        return tree


class _BoundedFormatter(SandboxedFormatter):
    def format_field(self, value: Any, format_spec: str) -> Any:
        check_format_spec(format_spec)
        check_text_size(value, "a format field")
        return super().format_field(value, format_spec)


class _BoundedNamespace(Namespace):
    """``namespace()``, refusing attributes whose text would pass the limit (a loop that
    doubles ``ns.text`` or nests ``ns.items`` in itself is stopped)."""

    def __init__(*args: Any, **kwargs: Any) -> None:
        for value in (*args[1:], *kwargs.values()):
            check_text_size(value, "a namespace attribute")
        Namespace.__init__(*args, **kwargs)

    def __setitem__(self, name: str, value: Any) -> None:
        check_text_size(value, f"namespace attribute {name!r}")
        Namespace.__setitem__(self, name, value)


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
    if isinstance(sequence, str | list | tuple) and isinstance(times, int) and times > 1:
        current().charge(len(sequence) * times)


# --- bounded filters and globals --------------------------------------------------------------


def _loop(value: Any) -> Any:
    """A ``for`` loop's sequence: its length is charged to the budget before the loop runs
    (one-shot iterators were charged when they were made)."""
    if isinstance(value, list | tuple | dict | str | range | set | frozenset):
        current().charge(len(value) + 1)
    else:
        current().tick()
    return value


def _concat(*parts: Any) -> str:
    """``a ~ b ~ c``: the parts' text must fit before it is joined."""
    total = 0
    for part in parts:
        total += len(part) if type(part) is str else text_size(part)
    check_length(total, "the text joined with ~")
    current().charge(total // 8 + len(parts))
    return "".join(part if type(part) is str else str(part) for part in parts)


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    words = n * max if isinstance(n, int) and isinstance(max, int) else 0
    check_length(words * 12, f"lipsum(n={n}, max={max})")
    return generate_lorem_ipsum(n, html, min, max)


def _finalize(value: Any) -> Any:
    """Every ``{{ value }}``: its text must fit, and its size is charged to the budget."""
    if type(value) is str:
        if len(value) > 256:
            current().charge(len(value) // 8)
        return value
    check_text_size(value, "a {{ value }}")
    return value


def _check_filter(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """The checks a filter needs before it runs, beyond the length charged for every one."""

    def arg(index: int, key: str, default: Any = None) -> Any:
        return args[index] if len(args) > index else kwargs.get(key, default)

    if name in ("string", "tojson", "pprint", "xmlattr", "urlencode", "join", "title"):
        check_text_size(value, f"|{name}")
    if name == "center":
        width = arg(0, "width", 80)
        if isinstance(width, int):
            check_length(width, f"|center({width:,})")
    elif name == "indent":
        width = arg(0, "width", 4)
        pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        lines = value.count("\n") + 1 if isinstance(value, str) else 1
        check_length(len(str(value)) + lines * pad, f"|indent({width!r})")
    elif name == "format" and isinstance(value, str):
        check_printf(value, kwargs or args)
    elif name == "replace" and isinstance(value, str):
        old, new, count = arg(0, "old", ""), arg(1, "new", ""), arg(2, "count", None)
        if isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
            found = len(value) + 1 if not old else value.count(old)
            if isinstance(count, int) and count >= 0:
                found = min(found, count)
            check_length(len(value) + found * (len(new) - len(old)), "|replace")
    elif name == "batch":
        size = arg(0, "linecount", 0)
        if isinstance(size, int):
            check_length(size, f"|batch({size:,})")
    elif name == "slice":
        slices = arg(0, "slices", 0)
        if isinstance(slices, int) and slices > MAX_SLICES:
            raise ResourceLimitExceeded(f"|slice({slices:,}) makes more than {MAX_SLICES:,} lists")
    elif name == "sum":
        start = arg(1, "start", 0)
        if isinstance(start, list | tuple) and isinstance(value, list | tuple):
            try:
                total = len(start) + sum(len(part) for part in value)
            except TypeError:
                total = 0
            check_length(total, "|sum of sequences")
            current().charge(total * max(1, len(value)))


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` after the checks of `_check_filter` and a charge of its input's length."""
    passes_extra = getattr(function, "jinja_pass_arg", None) is not None

    def bounded(*args: Any, **kwargs: Any) -> Any:
        position = 1 if passes_extra else 0
        value = args[position] if len(args) > position else None
        if isinstance(value, list | tuple | dict | set | frozenset):
            current().charge(len(value) + 1)
        else:
            current().tick()
        _check_filter(name, value, args[position + 1 :], kwargs)
        return function(*args, **kwargs)

    update_wrapper(bounded, function)
    if passes_extra:
        bounded.jinja_pass_arg = function.jinja_pass_arg  # type: ignore[attr-defined]
    return bounded


def _environment(template_dir: Path, root: Path | None = None) -> _PromptEnvironment:
    env = _PromptEnvironment(
        loader=ContainedTemplateLoader(template_dir, root),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        auto_reload=False,
        finalize=_finalize,
    )
    env.filters = {name: _bounded_filter(name, f) for name, f in env.filters.items()}
    env.filters[_LOOP_FILTER] = _loop
    env.filters[_CONCAT_FILTER] = _concat
    env.globals["lipsum"] = _lipsum
    env.globals["namespace"] = _BoundedNamespace
    return env


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
        self._globals: dict[str, Any] = dict(self._template.globals)
        """The template's globals as one plain dict: Jinja keeps them as a ChainMap (ours over
        the environment's), which it would copy key by key, in Python, twice a render."""

    def _generate(self, fields: Mapping[str, Any]) -> Iterator[str]:
        """``Template.generate(fields)`` with the context built from the flat globals: the
        same variables (the unit's fields over the globals), the same errors (Jinja's
        ``handle_exception`` rewrites them to template lines)."""
        template = self._template
        context = new_context(
            self._env,
            template.name,
            template.blocks,
            {**self._globals, **fields},
            shared=True,
            globals=self._globals,
        )
        try:
            yield from template.root_render_func(context)
        except Exception:
            yield self._env.handle_exception()

    def render(self, fields: Mapping[str, Any], budget: Budget | None = None) -> str:
        """The prompt for one unit, within ``budget`` (by default the current one, or a fresh
        one); any failure is a ``RenderError``."""
        try:
            with activate(budget or active_budget() or Budget()):
                pieces: list[str] = []
                length = 0
                for piece in self._generate(fields):
                    length += len(piece)
                    if length > MAX_PROMPT_LENGTH:
                        raise ResourceLimitExceeded(
                            f"the prompt would be longer than {MAX_PROMPT_LENGTH:,} characters"
                        )
                    pieces.append(piece)
                return "".join(pieces)
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
    elif isinstance(exc, ResourceLimitExceeded):
        message = f"too large: {exc}"
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
