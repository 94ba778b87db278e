"""JSON Schema ``$ref``: resolved only inside the schema and the pipeline's own schema files.

Left to itself, ``jsonschema`` resolves a reference it does not know by fetching it:
``http://...`` over the network (during ``validate`` and on every answer of a run), and
``file:///...`` from anywhere on disk. Here every reference is resolved once, when the
pipeline is loaded, through an explicit ``referencing.Registry`` whose retrieve function
refuses everything:

- a local reference (``#/$defs/x``, ``#anchor``) must point at something in its document;
- a reference to another file (``common.json#/$defs/x``, relative to the referring file) must
  name a JSON file inside the pipeline's schema folder, after following links;
- anything else (``http(s)://``, ``file:`` outside the folder, ``../`` out of it, an unknown
  scheme) is a ``ConfigError`` naming the schema file, where the reference is and what it
  points to. Nothing is ever fetched; a dangling reference never waits for answer time.

:func:`load_schema` returns the step's schema **self-contained**: when it references other
files, they are embedded under ``$defs`` and every reference is rewritten to a local pointer,
so the validator, the coercion walker (``core/coercion.py``), the mock answers
(``core/schema_values.py``) and the providers' structured output all see one document with
local references only. The ``$schema`` keyword names a dialect; it is never fetched.

:data:`NO_REMOTE` is the registry the validator is built with: it knows no document and its
retrieve function refuses every URI, so even a reference this module did not see cannot
cause I/O (it becomes a schema violation).
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource
from referencing.jsonschema import DRAFT202012

from octopipe.core.limits import check_file_size
from octopipe.errors import ConfigError, ConfigProblem

MAX_SCHEMA_DEPTH = 64
"""Deepest nesting of objects and arrays accepted in a schema file."""
_REF_KEYWORDS = ("$ref", "$dynamicRef")
_RESOURCE_KEYWORDS = ("$id", "$anchor", "$dynamicAnchor", "$schema")
_BUNDLE_PREFIX = "file_"  # $defs keys of embedded files: word characters only, for providers


def _refuse(uri: str) -> Resource[Any]:
    raise NoSuchResource(uri)


NO_REMOTE: Registry[Any] = Registry(retrieve=_refuse)  # type: ignore[call-arg]
"""An empty registry that resolves no URI: given to every validator we build."""


def load_schema(schema_dir: Path, path: Path, shown: str) -> dict[str, Any]:
    """The schema at ``path`` (inside ``schema_dir``, both real paths), self-contained.

    ``shown`` names the file in messages. Raises ``ConfigError`` listing every problem with
    the file and with the references it (or a file it references) makes.
    """
    crawl = _Crawl(schema_dir, shown)
    root_uri = path.as_uri()
    contents = crawl.document(root_uri, path, shown)
    if not crawl.problems and not crawl.root_problems:
        crawl.walk(root_uri)
        if not isinstance(contents, dict):
            crawl.file_problem(shown, "must be a JSON object")
    if crawl.problems or crawl.root_problems:
        raise SchemaProblems(shown, crawl.root_problems, crawl.problems)
    return crawl.bundle(root_uri)


class SchemaProblems(ConfigError):
    """The problems of one schema: ``whole_file`` with the named file as a whole (not JSON,
    not a schema: (key path, message after "the schema file")), ``references`` with the
    references it makes and the files they reach."""

    def __init__(
        self, shown: str, whole_file: list[tuple[str, str]], references: list[ConfigProblem]
    ) -> None:
        self.whole_file = whole_file
        self.references = references
        own = [ConfigProblem(shown, None, key, f"the schema file {m}") for key, m in whole_file]
        super().__init__(own + references)


# --- the crawl --------------------------------------------------------------------------------


@dataclass
class _Document:
    uri: str
    shown: str
    contents: Any
    locations: dict[int, str] = field(default_factory=dict)
    """id() of each container in the document -> its JSON pointer."""


@dataclass(frozen=True)
class _Link:
    """One reference: where it is (document, pointer to the subschema, keyword) and where it
    resolves (document, pointer), or a boolean schema."""

    doc: str
    at: str
    keyword: str
    target_doc: str
    target: str | None
    boolean: bool | None = None


class _Crawl:
    def __init__(self, schema_dir: Path, shown_root: str) -> None:
        self.schema_dir = schema_dir
        self.shown_root = shown_root
        self.docs: dict[str, _Document] = {}
        self.registry: Registry[Any] = NO_REMOTE
        self.links: list[_Link] = []
        self.subschemas: dict[str, list[str]] = {}
        self.problems: list[ConfigProblem] = []
        self.root_problems: list[tuple[str, str]] = []
        """(key path, message) of problems with the root file as a whole (not JSON, not a
        schema), for the caller to word from the config's side."""

    def problem(self, shown: str, key_path: str, message: str) -> None:
        self.problems.append(ConfigProblem(shown, None, key_path, message))

    def file_problem(self, shown: str, message: str, key_path: str = "") -> None:
        """A problem with a whole file; ``message`` reads after "the schema file"."""
        if shown == self.shown_root:
            self.root_problems.append((key_path, message))
        else:
            self.problem(shown, key_path, f"the schema file {message}")

    def document(self, uri: str, path: Path, shown: str) -> Any:
        """Read, parse and check one schema file; register it under ``uri``."""
        try:
            check_file_size(path, shown)
            contents = json.loads(path.read_text(encoding="utf-8"))
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return None
        except json.JSONDecodeError as exc:
            self.file_problem(shown, f"is not JSON: line {exc.lineno}: {exc.msg}")
            return None
        except RecursionError:
            self.file_problem(shown, f"is nested more than {MAX_SCHEMA_DEPTH} levels")
            return None
        except (OSError, UnicodeDecodeError) as exc:
            self.file_problem(shown, f"cannot be read: {exc}")
            return None
        if not isinstance(contents, dict | bool):
            self.file_problem(shown, "must be a JSON object")
            return None
        doc = _Document(uri, shown, contents)
        if not _index_locations(doc):
            self.file_problem(shown, f"is nested more than {MAX_SCHEMA_DEPTH} levels")
            return None
        try:
            Draft202012Validator.check_schema(contents)
        except SchemaError as exc:
            where = _dotted(exc.absolute_path)
            self.file_problem(shown, f"is not a valid JSON Schema: {_clip(exc.message)}", where)
            return None
        self.docs[uri] = doc
        resource = DRAFT202012.create_resource(contents)
        self.registry = self.registry.with_resource(uri, resource).crawl()
        return contents

    def walk(self, root_uri: str) -> None:
        """Check every reference of the root document and of the files it reaches."""
        pending = [root_uri]
        walked: set[str] = set()
        while pending:
            uri = pending.pop()
            if uri in walked:
                continue
            walked.add(uri)
            doc = self.docs[uri]
            for pointer, base, schema in _subschemas(doc):
                self.subschemas.setdefault(uri, []).append(pointer)
                for keyword in _REF_KEYWORDS:
                    ref = schema.get(keyword)
                    if isinstance(ref, str):
                        reached = self.reference(doc, pointer, base, keyword, ref)
                        if reached is not None:
                            pending.append(reached)

    def reference(
        self, doc: _Document, pointer: str, base: str, keyword: str, ref: str
    ) -> str | None:
        """Resolve one reference; record it, or a problem. Returns a newly reached file."""
        key_path = _dotted_pointer(f"{pointer}/{keyword}")
        target_uri, _ = urldefrag(urljoin(base, ref))
        reached = None
        if target_uri not in self.docs and not self._known(target_uri):
            refusal = self._outside(target_uri)
            if refusal is not None:
                resolved_to = ""
                if target_uri != urldefrag(ref).url and urlsplit(target_uri).scheme != "file":
                    resolved_to = f" (resolved to {target_uri!r})"  # file refusals name the path
                self.problem(doc.shown, key_path, f"{keyword} {ref!r}{resolved_to} {refusal}")
                return None
            self.document(target_uri, _file_of(target_uri), self._shown(target_uri))
            if target_uri not in self.docs:
                return None
            reached = target_uri
        try:
            resolved = self.registry.resolver(base_uri=base).lookup(ref)
        except Exception:  # PointerToNowhere, NoSuchAnchor, a bad pointer segment, ...
            where = "" if target_uri == doc.uri else f" in {self._shown(target_uri)}"
            self.problem(doc.shown, key_path, f"{keyword} {ref!r} points to nothing{where}")
            return None
        target = resolved.contents
        if isinstance(target, bool):
            self.links.append(_Link(doc.uri, pointer, keyword, "", None, boolean=target))
            return reached
        for candidate in self.docs.values():
            location = candidate.locations.get(id(target))
            if location is not None:
                self.links.append(_Link(doc.uri, pointer, keyword, candidate.uri, location))
                return reached
        self.problem(doc.shown, key_path, f"{keyword} {ref!r} cannot be resolved")
        return None

    def _known(self, uri: str) -> bool:
        """Whether ``uri`` names a resource embedded (by ``$id``) in a document read so far."""
        try:
            self.registry.get_or_retrieve(uri)
        except Exception:
            return False
        return True

    def _outside(self, uri: str) -> str | None:
        """Why ``uri`` is not one of the pipeline's schema files, or None when it is."""
        scheme = urlsplit(uri).scheme
        if scheme in ("http", "https"):
            return (
                "would be fetched from the network; octopipe resolves references only "
                "inside the schema and the pipeline's own schema files"
            )
        if scheme != "file":
            return (
                "is not a schema file of this pipeline; octopipe resolves references only "
                "inside the schema and the pipeline's own schema files"
            )
        path = _file_of(uri)
        real = Path(os.path.realpath(path))
        if not real.is_relative_to(self.schema_dir):
            link = f" (a link to {real})" if real != Path(os.path.abspath(path)) else ""
            return (
                f"points to {path}{link}, outside the schema folder; references may name only "
                "the pipeline's own schema files"
            )
        if not real.is_file():
            return f"names {self._shown(uri)}, which does not exist"
        return None

    def _shown(self, uri: str) -> str:
        if uri in self.docs:
            return self.docs[uri].shown
        path = _file_of(uri)
        try:
            relative = Path(os.path.abspath(path)).relative_to(self.schema_dir)
        except ValueError:
            return str(path)
        prefix = Path(self.shown_root).parent
        return str(prefix / relative)

    # --- bundling ---------------------------------------------------------------------------

    def bundle(self, root_uri: str) -> dict[str, Any]:
        """The root schema with every other document it reaches embedded, refs made local."""
        root = self.docs[root_uri].contents
        others = [uri for uri in self.docs if uri != root_uri]
        if not others:
            return dict(root)
        out: dict[str, Any] = copy.deepcopy(root)
        defs = out.setdefault("$defs", {})
        prefixes = {root_uri: ""}
        for uri in others:
            relative = _file_of(uri).relative_to(self.schema_dir).as_posix()
            key = _unused(defs, _BUNDLE_PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", relative))
            defs[key] = copy.deepcopy(self.docs[uri].contents)
            prefixes[uri] = f"/$defs/{_escape(key)}"
        booleans: dict[bool, str] = {}
        for link in self.links:
            if link.boolean is not None and link.boolean not in booleans:
                key = _unused(defs, f"schema_{str(link.boolean).lower()}")
                defs[key] = link.boolean
                booleans[link.boolean] = f"#/$defs/{_escape(key)}"
        for link in self.links:
            schema = _at(out, prefixes[link.doc] + link.at)
            if link.boolean is not None:
                schema[link.keyword] = booleans[link.boolean]
            else:
                schema[link.keyword] = "#" + prefixes[link.target_doc] + (link.target or "")
        for uri, pointers in self.subschemas.items():
            for pointer in pointers:
                schema = _at(out, prefixes[uri] + pointer)
                if schema is out:
                    continue
                for keyword in _RESOURCE_KEYWORDS:
                    schema.pop(keyword, None)
        return out


def _subschemas(doc: _Document) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(pointer, base URI, schema) of every subschema (object) of the document."""
    root = DRAFT202012.create_resource(doc.contents)
    pending = [(root, urljoin(doc.uri, root.id() or ""))]
    while pending:
        resource, base = pending.pop()
        contents = resource.contents
        if isinstance(contents, dict):
            yield doc.locations[id(contents)], base, contents
        for sub in resource.subresources():
            sub_id = sub.id()
            pending.append((sub, urljoin(base, sub_id) if sub_id else base))


def _index_locations(doc: _Document) -> bool:
    """Fill ``doc.locations``; False when the document is nested past the limit."""
    pending: list[tuple[Any, str, int]] = [(doc.contents, "", 0)]
    while pending:
        node, pointer, depth = pending.pop()
        if depth > MAX_SCHEMA_DEPTH:
            return False
        if isinstance(node, dict):
            doc.locations.setdefault(id(node), pointer)
            pending.extend((v, f"{pointer}/{_escape(str(k))}", depth + 1) for k, v in node.items())
        elif isinstance(node, list):
            doc.locations.setdefault(id(node), pointer)
            pending.extend((v, f"{pointer}/{i}", depth + 1) for i, v in enumerate(node))
    return True


def _at(document: Any, pointer: str) -> Any:
    node = document
    for part in pointer.split("/")[1:] if pointer else []:
        token = part.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def _file_of(uri: str) -> Path:
    return Path(unquote(urlsplit(uri).path))


def _unused(mapping: dict[str, Any], key: str) -> str:
    candidate, n = key, 1
    while candidate in mapping:
        n += 1
        candidate = f"{key}_{n}"
    return candidate


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _dotted_pointer(pointer: str) -> str:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    return _dotted(int(p) if p.isdigit() else p for p in parts)


def _dotted(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _clip(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"
