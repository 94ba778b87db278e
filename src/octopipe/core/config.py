"""Load a pipeline folder into one frozen ``Pipeline``; report every problem with its place.

``load_pipeline(folder)`` reads ``config.yaml``, validates it against ``config_models``, then
checks the links a YAML schema cannot express: each LLM step has a template, every entry of
``prompts.templates`` / ``schemas.files`` / ``validation`` names a step, referenced files exist
and stay inside the pipeline folder, schema files are valid JSON Schema. All problems found are
raised together as one ``ConfigError``; each names the file, the line and the key path, with a
"did you mean" where a known name is close. A provider name must be one the model registry
knows (``core/registry.py``: the packaged ones and the installed plugins' names).

Deeper checks (expressions, template variables, trial evaluation) live in ``core/checker.py``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from octopipe.core.analysis import CUSTOM_STAT_NAMES, parse_analysis_args
from octopipe.core.config_models import (
    STEP_SCOPES,
    ExpressionStep,
    FanOutStep,
    LLMStep,
    PipelineConfig,
    RunStep,
    Step,
    ValidationSpec,
)
from octopipe.core.containment import Escape, escapes_in, real_root, resolve_inside
from octopipe.core.expressions import compile_expression
from octopipe.core.limits import check_file_size
from octopipe.core.price_file import parse_price_file
from octopipe.core.registry import load_registry
from octopipe.core.scripts import (
    ScriptRef,
    escapes,
    glob_problem,
    missing_script_hint,
    output_problem,
    resolve_script,
)
from octopipe.core.yamlpos import Positions, format_path, load_yaml_with_positions
from octopipe.errors import AnalysisArgsError, ConfigError, ConfigProblem, ExpressionError

CONFIG_NAMES = ("config.yaml", "config.yml")
_STEP_MODELS: dict[str, type[BaseModel]] = {
    "chunk": LLMStep,
    "expression": ExpressionStep,
    "fan_out": FanOutStep,
    "run": RunStep,
}


@dataclass(frozen=True)
class Pipeline:
    """A parsed, checked pipeline folder. Paths are absolute and inside ``folder``."""

    folder: Path
    config_file: Path
    config: PipelineConfig
    raw: dict[str, Any]
    positions: Positions = field(repr=False)
    schemas: dict[str, dict[str, Any]] = field(repr=False)
    warnings: tuple[ConfigProblem, ...] = ()

    @property
    def name(self) -> str:
        return self.config.pipeline.name or self.folder.name

    @property
    def steps(self) -> list[Step]:
        return self.config.pipeline.steps

    @cached_property
    def unit_steps(self) -> list[Step]:
        """Steps units flow through, in order (run-scope steps excluded)."""
        return [s for s in self.steps if not isinstance(s, RunStep)]

    @cached_property
    def run_steps(self) -> list[RunStep]:
        return [s for s in self.steps if isinstance(s, RunStep)]

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    def step_index(self, name: str) -> int:
        return [s.name for s in self.unit_steps].index(name)

    def validation_for(self, step: str) -> ValidationSpec | None:
        return self.config.validation.get(step)

    def schema_for(self, step: str) -> dict[str, Any] | None:
        return self.schemas.get(step)

    @property
    def template_dir(self) -> Path:
        return self.folder / self.config.prompts.template_dir

    def template_name(self, step: LLMStep) -> str:
        return self.config.prompts.templates.get(step.name) or step.prompt_template or ""

    @property
    def items_path(self) -> Path:
        return self.folder / self.config.processing.items.source

    @property
    def prices_path(self) -> Path | None:
        """The pipeline's price file (``prices:``), checked inside the folder at load."""
        return None if self.config.prices is None else self.folder / self.config.prices

    def line_of(self, *path: str | int) -> int | None:
        return self.positions.line_of(path)


def find_config_file(folder: Path) -> Path:
    if folder.is_file():
        return folder
    for name in CONFIG_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise ConfigError.single(str(folder), "no config.yaml in this folder")


def load_pipeline(folder: str | Path) -> Pipeline:
    """Parse and link-check a pipeline folder (or its config file). Raises ``ConfigError``."""
    found = find_config_file(Path(folder))
    root = real_root(found.parent)
    try:
        config_file = resolve_inside(root, found, found.name)
    except Escape as exc:
        raise ConfigError.single(_display_name(found), exc.reason) from None
    rel = _display_name(config_file)
    check_file_size(config_file, rel)
    try:
        text = config_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError.single(rel, f"cannot read: {exc}") from exc
    raw, positions = load_yaml_with_positions(text, rel)
    if not isinstance(raw, dict):
        raise ConfigError.single(rel, "the config must be a mapping of sections", line=1)
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(list(_problems_from_pydantic(exc, raw, positions, rel))) from None
    links = _LinkChecker(root, rel, config, positions)
    links.check()
    errors = [p for p in links.problems if p.level == "error"]
    if errors:
        raise ConfigError(links.problems)
    warnings = tuple(p for p in links.problems if p.level != "error")
    return Pipeline(root, config_file, config, raw, positions, links.schemas, warnings)


def _display_name(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --- pydantic errors -> problems ------------------------------------------------------------


def _problems_from_pydantic(
    exc: ValidationError, raw: dict[str, Any], positions: Positions, file: str
) -> Iterator[ConfigProblem]:
    for error in exc.errors():
        path = _clean_loc(error["loc"], raw)
        kind = error["type"]
        line = positions.line_of(path)
        key_path = format_path(path)
        if kind == "extra_forbidden":
            key = str(path[-1])
            allowed = _allowed_keys(path[:-1], raw)
            yield ConfigProblem(file, line, key_path, f"unknown key {key!r}", _close(key, allowed))
        elif kind == "missing":
            yield ConfigProblem(
                file, line, format_path(path[:-1]), f"missing required key {path[-1]!r}"
            )
        elif kind == "union_tag_invalid":
            scope = error["ctx"].get("tag", "?")
            yield ConfigProblem(
                file,
                positions.line_of((*path, "scope")),
                f"{key_path}.scope",
                f"unknown step scope {scope!r}; expected one of {', '.join(STEP_SCOPES)}",
                _close(str(scope), STEP_SCOPES),
            )
        elif kind in ("literal_error", "enum"):
            options = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
            yield ConfigProblem(
                file,
                line,
                key_path,
                f"{error['input']!r} is not allowed: {error['msg']}",
                _close(str(error["input"]), options),
            )
        else:
            msg = error["msg"].removeprefix("Value error, ")
            yield ConfigProblem(file, line, key_path, msg)


def _clean_loc(loc: Sequence[Any], raw: dict[str, Any]) -> tuple[str | int, ...]:
    """Drop the union tag pydantic inserts after ``steps[i]``."""
    out: list[str | int] = []
    for i, part in enumerate(loc):
        if (
            i == 3
            and tuple(loc[:2]) == ("pipeline", "steps")
            and isinstance(loc[2], int)
            and part in STEP_SCOPES
        ):
            continue
        out.append(part)
    return tuple(out)


def _allowed_keys(path: Sequence[str | int], raw: dict[str, Any]) -> list[str]:
    """Field names of the model that sits at ``path`` (for "did you mean" hints)."""
    model: type[BaseModel] | None = PipelineConfig
    for depth, part in enumerate(path):
        if depth in (1, 2) and (element := _container_element(path[: depth + 1], raw)):
            model = element  # validation.<step> and pipeline.steps[i]
            continue
        if isinstance(part, int) or model is None:
            continue  # list index: the element model was chosen at the list's key
        info = model.model_fields.get(str(part))
        model = next(_leaf_models(info.annotation), None) if info else None
    return list(model.model_fields) if model is not None else []


def _container_element(path: Sequence[str | int], raw: dict[str, Any]) -> type[BaseModel] | None:
    if len(path) == 2 and path[0] == "validation":
        return ValidationSpec
    if len(path) == 3 and tuple(path[:2]) == ("pipeline", "steps") and isinstance(path[2], int):
        step = _child(_child(_child(raw, "pipeline"), "steps"), path[2])
        scope = step.get("scope", "chunk") if isinstance(step, dict) else "chunk"
        return _STEP_MODELS.get(scope if isinstance(scope, str) else "chunk")
    return None


def _child(node: Any, part: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return None


def _leaf_models(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in getattr(annotation, "__args__", ()) or ():
        yield from _leaf_models(arg)


def _close(word: str, options: Sequence[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return matches[0] if matches else None


# --- links between sections and files ---------------------------------------------------------


class _LinkChecker:
    """Cross-section and file checks that need the whole parsed config."""

    def __init__(self, root: Path, file: str, config: PipelineConfig, positions: Positions):
        self.root, self.file, self.config, self.positions = root, file, config, positions
        self.problems: list[ConfigProblem] = []
        self.schemas: dict[str, dict[str, Any]] = {}

    def problem(
        self, path: Sequence[str | int], message: str, hint: str | None = None, level: str = "error"
    ) -> None:
        self.problems.append(
            ConfigProblem(
                self.file, self.positions.line_of(path), format_path(path), message, hint, level
            )
        )

    def size_ok(self, path: Path) -> bool:
        """False (and a problem naming the file) when a pipeline file is over the size limit."""
        try:
            check_file_size(path, str(path.relative_to(self.root)))
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return False
        return True

    def check(self) -> None:
        self._check_step_names()
        self._check_section_keys()
        self._check_templates()
        self._check_schemas()
        self._check_items()
        self._check_providers()
        self._check_scripts()
        self._check_prices()
        self._check_ignored_keys()

    def _check_prices(self) -> None:
        """``prices:`` names a price file inside the folder that parses (``core/price_file``)."""
        if self.config.prices is None:
            return
        target = self.inside(self.config.prices, ("prices",), "price file")
        if target is None or not self.size_ok(target):
            return
        try:
            parse_price_file(
                target.read_text(encoding="utf-8"),
                self.config.prices,
                load_registry().price_file_providers(),
            )
        except (OSError, UnicodeDecodeError) as exc:
            self.problem(("prices",), f"price file {self.config.prices!r} cannot be read: {exc}")
        except ConfigError as exc:
            self.problems.extend(exc.problems)

    def inside(
        self,
        relative: str,
        path: Sequence[str | int],
        what: str,
        must_exist: bool = True,
    ) -> Path | None:
        """Resolve ``relative`` under the pipeline folder, following links; refuse escapes
        (``../``, absolute paths, links pointing outside) and missing files."""
        written = Path(os.path.normpath(self.root / relative))
        if not written.is_relative_to(self.root):
            self.problem(path, f"{what} {relative!r} is outside the pipeline folder")
            return None
        try:
            target = resolve_inside(self.root, written)
        except Escape as exc:
            self.problem(path, f"{what} {relative!r}: {exc.reason}")
            return None
        if must_exist and not target.exists():
            self.problem(path, f"{what} {relative!r} does not exist")
            return None
        if must_exist and not target.is_file():
            self.problem(path, f"{what} {relative!r} is not a file")
            return None
        return target

    def contained_folder(self, relative: str, path: Sequence[str | int], what: str) -> Path | None:
        """Resolve a folder runs copy whole (templates, schemas); refuse links in it that
        point outside the pipeline folder."""
        folder = self.inside(relative, path, what, must_exist=False)
        if folder is not None and folder.is_dir():
            for escape in escapes_in(self.root, self.root / relative):
                self.problem(path, f"{escape.reason}; a run copies this folder, so it is refused")
        return folder

    @property
    def step_names(self) -> list[str]:
        return [s.name for s in self.config.pipeline.steps]

    def _check_step_names(self) -> None:
        seen: set[str] = set()
        for i, step in enumerate(self.config.pipeline.steps):
            if step.name in seen:
                self.problem(("pipeline", "steps", i, "name"), f"duplicate step name {step.name!r}")
            seen.add(step.name)
        unit_steps = [s for s in self.config.pipeline.steps if not isinstance(s, RunStep)]
        if not unit_steps:
            self.problem(("pipeline", "steps"), "the pipeline needs at least one non-run step")

    def _check_section_keys(self) -> None:
        sections: dict[tuple[str, ...], Mapping[str, object]] = {
            ("prompts", "templates"): self.config.prompts.templates,
            ("schemas", "files"): self.config.schemas.files,
            ("validation",): self.config.validation,
        }
        for prefix, mapping in sections.items():
            for key in mapping:
                if key not in self.step_names:
                    self.problem(
                        (*prefix, key),
                        f"{format_path(prefix)} names no step {key!r}",
                        _close(key, self.step_names),
                    )

    def _check_templates(self) -> None:
        prompts = self.config.prompts
        template_dir = self.contained_folder(
            prompts.template_dir, ("prompts", "template_dir"), "template folder"
        )
        for i, step in enumerate(self.config.pipeline.steps):
            if not isinstance(step, LLMStep):
                continue
            name = prompts.templates.get(step.name) or step.prompt_template
            where: tuple[str | int, ...] = (
                ("prompts", "templates", step.name)
                if step.name in prompts.templates
                else ("pipeline", "steps", i)
            )
            if not name:
                self.problem(
                    where,
                    f"LLM step {step.name!r} has no template: add prompts.templates.{step.name}",
                )
            elif template_dir is not None:
                path = self.inside(str(Path(prompts.template_dir) / name), where, "template")
                if path is not None:
                    self.size_ok(path)

    def _check_schemas(self) -> None:
        schemas = self.config.schemas
        schema_dir = self.contained_folder(
            schemas.schema_dir, ("schemas", "schema_dir"), "schema folder"
        )
        for step_name, name in schemas.files.items():
            where = ("schemas", "files", step_name)
            path = self.inside(str(Path(schemas.schema_dir) / name), where, "schema")
            if path is None or schema_dir is None or not self.size_ok(path):
                continue
            shown = str(Path(schemas.schema_dir) / name)
            # jsonschema is imported only by a pipeline that has schemas (start-up time)
            from octopipe.core.schema_refs import SchemaProblems, load_schema

            try:
                self.schemas[step_name] = load_schema(schema_dir, path, shown)
            except SchemaProblems as exc:
                for key, message in exc.whole_file:
                    at = f" (at {key})" if key else ""
                    self.problem(where, f"schema {name!r} {message}{at}")
                self.problems.extend(exc.references)
        for i, step in enumerate(self.config.pipeline.steps):
            if isinstance(step, LLMStep) and step.name not in schemas.files:
                self.problem(
                    ("pipeline", "steps", i),
                    f"LLM step {step.name!r} has no schema "
                    "(schemas.files); answers will only be checked by rules",
                    level="warning",
                )

    def _check_items(self) -> None:
        self.inside(
            self.config.processing.items.source, ("processing", "items", "source"), "items file"
        )

    def _check_providers(self) -> None:
        entries: list[tuple[tuple[str | int, ...], str | None]] = [
            (("api", "provider"), self.config.api.provider)
        ]
        for i, step in enumerate(self.config.pipeline.steps):
            if isinstance(step, LLMStep):
                entries.append((("pipeline", "steps", i, "provider"), step.provider))
        known = load_registry().providers()  # the registry's and the installed plugins'
        for path, provider in entries:
            if provider is not None and provider not in known:
                self.problem(
                    path,
                    f"unknown provider {provider!r}; expected one of {', '.join(known)}",
                    _close(provider, known),
                )

    def _check_scripts(self) -> None:
        """Scripts resolve by Octobatch's conventions (``core/scripts.py``); the built-in
        analysis gets arguments it can use; output paths stay inside the run folder."""
        for i, post in enumerate(self.config.post_process):
            base: tuple[str | int, ...] = ("post_process", i)
            if post.output is not None and escapes(post.output):
                self.problem(
                    (*base, "output"),
                    f"output {post.output!r} leaves the run's outputs folder (absolute or '..')",
                )
            if post.type == "gzip":
                for j, pattern in enumerate(post.files):
                    problem = glob_problem(pattern)
                    if problem:
                        self.problem((*base, "files", j), f"gzip pattern {pattern!r} {problem}")
                continue
            if not post.script:
                continue
            ref = resolve_script(self.root, post.script)
            if ref.kind == "analysis":
                self._check_analysis_args(post.args, base)
            else:
                self._check_folder_script(ref, (*base, "script"), run_step=False)
        for i, step in enumerate(self.config.pipeline.steps):
            if isinstance(step, RunStep):
                self._check_run_step(i, step)

    def _check_analysis_args(self, args: list[str], base: tuple[str | int, ...]) -> None:
        try:
            spec = parse_analysis_args(args)
        except AnalysisArgsError as exc:
            self.problem((*base, "args"), exc.message)
            return
        if spec.output is not None and escapes(spec.output):
            self.problem(
                (*base, "args"),
                f"--output {spec.output!r} leaves the run's outputs folder (absolute or '..')",
            )
        for stat in spec.custom_stats:
            if stat.problem:
                self.problem((*base, "args"), f"--custom-stat {stat.name}: {stat.problem}")
            elif stat.expression is not None and stat.expression.names - CUSTOM_STAT_NAMES:
                unknown = ", ".join(map(repr, sorted(stat.expression.names - CUSTOM_STAT_NAMES)))
                self.problem(
                    (*base, "args"),
                    f"--custom-stat {stat.name} reads {unknown}; a custom stat sees "
                    f"{', '.join(sorted(CUSTOM_STAT_NAMES))}",
                )
        for note in spec.notes:
            self.problem((*base, "args"), note.removeprefix("Warning: "), level="warning")

    def _check_folder_script(
        self, ref: ScriptRef, path: tuple[str | int, ...], *, run_step: bool
    ) -> None:
        if ref.relative is None:
            self.problem(path, f"script {ref.written!r} is outside the pipeline folder")
            return
        before = len(self.problems)
        self.inside(ref.relative, path, "script")
        hint = missing_script_hint(ref, run_step=run_step)
        if hint and len(self.problems) > before and "does not exist" in self.problems[-1].message:
            last = self.problems[-1]
            self.problems[-1] = ConfigProblem(
                last.file,
                last.line,
                last.key_path,
                f"script {ref.written!r} does not exist: {hint}",
                last.hint,
                last.level,
            )

    def _check_run_step(self, i: int, step: RunStep) -> None:
        base: tuple[str | int, ...] = ("pipeline", "steps", i)
        if step.upload is not None:
            self.problem(
                (*base, "upload"),
                f"run step {step.name!r}: 'upload' ({step.upload.provider}) cannot be honoured: "
                "octopipe uploads nothing; remove it and copy the extracted files yourself",
            )
        ref = resolve_script(self.root, step.script, run_step=True) if step.script else None
        if ref is not None and ref.kind == "folder":
            self._check_folder_script(ref, (*base, "script"), run_step=True)
            return
        if ref is None and not step.extraction_keys:
            self.problem(
                base,
                f"run step {step.name!r} needs 'script', or the extraction keys "
                "(output_dir, filename_expression, content_expression)",
            )
            return
        output_dir = step.output_dir if step.output_dir is not None else "outputs/units"
        problem = output_problem(output_dir, folder=True)
        if problem:
            self.problem((*base, "output_dir"), f"output_dir {output_dir!r} {problem}")
        for key in ("filename_expression", "content_expression"):
            source = getattr(step, key)
            if source is None:
                continue
            try:
                names = compile_expression(source).names
            except ExpressionError as exc:
                self.problem((*base, key), f"bad expression: {exc.detail}")
                continue
            unknown = sorted(names - {"data"})
            if unknown:
                self.problem(
                    (*base, key),
                    f"{key} reads {', '.join(map(repr, unknown))}: extraction expressions see "
                    "only 'data', the record (e.g. data['unit_id'])",
                )

    def _check_ignored_keys(self) -> None:
        for i, step in enumerate(self.config.pipeline.steps):
            if not isinstance(step, LLMStep):
                continue
            for key in ("requests_per_triple", "outputs_per_request", "depends_on"):
                if getattr(step, key) is not None:
                    self.problem(
                        ("pipeline", "steps", i, key),
                        f"{key!r} has no effect (steps run in the listed order)",
                        level="warning",
                    )
