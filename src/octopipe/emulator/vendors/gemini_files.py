"""Gemini Files API, as much of it as file-based batch jobs need (``client.aio.files``).

Routes (relative to the Gemini mount; the SDK adds the API version):

- ``POST /upload/{v}/files``: Google's resumable upload. The *start* call (headers
  ``X-Goog-Upload-Protocol: resumable``, ``X-Goog-Upload-Command: start``,
  ``X-Goog-Upload-Header-Content-Length``, body ``{"file": {mimeType, displayName?}}``) answers
  with an absolute ``X-Goog-Upload-URL`` (this same route plus ``?upload_id=``). Chunks are then
  POSTed there with ``X-Goog-Upload-Command: upload`` (``upload, finalize`` for the last one)
  and ``X-Goog-Upload-Offset``; each answer carries ``X-Goog-Upload-Status`` (``active``, then
  ``final`` with ``{"file": File}``). The SDK retries a chunk whose answer lacks that header,
  so error answers carry it too.
- ``GET /{v}/files/{id}`` -> ``File``; ``GET /{v}/files/{id}:download?alt=media`` -> raw bytes,
  for uploaded files and for the results files that batch jobs generate (``results`` resolves
  those; ``serve`` sends them, cut when the fault plan cuts that download). A generated file's
  ``sizeBytes`` is always the whole file's.

Only the start call goes through the batch fault gate; chunks are counted but never faulted.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from octopipe.emulator.batches import (
    BatchRoutes,
    Handler,
    mount_prefix,
    not_found,
    read_json,
    rfc3339,
)
from octopipe.emulator.vendors.base import InvalidRequest, Reply
from octopipe.emulator.vendors.gemini import GeminiVendor

MOUNT = "/gemini"
UPLOAD_STATUS = "X-Goog-Upload-Status"
# A generated file's bytes by resource name (``files/…``), or None when it is not one.
ResultsResolver = Callable[[str], bytes | None]
# Sends a generated file's bytes (request, resource name, bytes), cut or not.
ResultsSender = Callable[[web.Request, str, bytes], Awaitable[web.StreamResponse]]


class GeminiFileRoutes:
    def __init__(
        self,
        shared: BatchRoutes,
        vendor: GeminiVendor,
        results: ResultsResolver,
        serve: ResultsSender,
    ) -> None:
        self.shared = shared
        self.store = shared.store
        self.vendor = vendor
        self._results = results
        self._serve = serve
        self._uploads: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._start = shared.wrap(vendor, "gemini.files.upload", self.start)

    def routes(self, version: str) -> list[tuple[str, str, Handler]]:
        wrap = self.shared.wrap
        v = self.vendor
        file = f"/{version}/files/{{file_id:[^/:]+}}"
        return [
            ("POST", f"/upload/{version}/files", self.upload),
            ("GET", file, wrap(v, "gemini.files.get", self.get)),
            ("GET", file + ":download", wrap(v, "gemini.files.download", self.download)),
        ]

    async def upload(self, http: web.Request) -> web.StreamResponse:
        upload_id = http.query.get("upload_id")
        if upload_id is None:
            return await self._start(http)
        self.shared.stats.request("gemini.files.upload_chunk")
        reply = await self.chunk(http, upload_id)
        self.shared.stats.response(reply.status)
        headers = {UPLOAD_STATUS: "final", **reply.headers}
        return web.json_response(dict(reply.body), status=reply.status, headers=headers)

    async def start(self, http: web.Request) -> Reply:
        if http.headers.get("X-Goog-Upload-Command", "").strip() != "start":
            raise InvalidRequest("a resumable upload starts with X-Goog-Upload-Command: start")
        meta = (await read_json(http)).get("file")
        meta = meta if isinstance(meta, dict) else {}
        upload_id = f"up{next(self._ids):06d}"
        self._uploads[upload_id] = {
            "data": bytearray(),
            "mime_type": str(
                meta.get("mimeType") or http.headers.get("X-Goog-Upload-Header-Content-Type", "")
            ),
            "display_name": str(meta.get("displayName") or ""),
        }
        version = http.match_info["version"]
        url = (
            f"{http.scheme}://{http.host}{mount_prefix(http, MOUNT)}/upload/{version}/files"
            f"?upload_id={upload_id}&upload_protocol=resumable"
        )
        return Reply(200, {}, {"X-Goog-Upload-URL": url, UPLOAD_STATUS: "active"})

    async def chunk(self, http: web.Request, upload_id: str) -> Reply:
        upload = self._uploads.get(upload_id)
        if upload is None:
            return not_found(self.vendor, f"upload {upload_id}")
        command = http.headers.get("X-Goog-Upload-Command", "")
        offset = http.headers.get("X-Goog-Upload-Offset", "")
        if not offset.isdigit() or int(offset) != len(upload["data"]):
            return self.vendor.error("400", model="", retry_after=None, request_id="")
        upload["data"].extend(await http.read())
        if "finalize" not in command:
            return Reply(200, {}, {UPLOAD_STATUS: "active"})
        del self._uploads[upload_id]
        name = f"files/{self.store.new_id('upload').lower()}"
        self.store.files[name] = {
            "data": bytes(upload["data"]),
            "mime_type": upload["mime_type"],
            "display_name": upload["display_name"],
            "created_at": time.time(),
        }
        return Reply(200, {"file": self._file_object(name, http)})

    async def get(self, http: web.Request) -> Reply:
        name = f"files/{http.match_info['file_id']}"
        if self._bytes(name) is None:
            return not_found(self.vendor, name)
        return Reply(200, self._file_object(name, http))

    async def download(self, http: web.Request) -> Reply | web.StreamResponse:
        name = f"files/{http.match_info['file_id']}"
        data = self._bytes(name)
        if data is None:
            return not_found(self.vendor, name)
        if name not in self.store.files:  # generated by a batch job
            return await self._serve(http, name, data)
        return web.Response(body=data, content_type="application/octet-stream")

    def _bytes(self, name: str) -> bytes | None:
        stored = self.store.files.get(name)
        return bytes(stored["data"]) if stored is not None else self._results(name)

    def _file_object(self, name: str, http: web.Request) -> dict[str, Any]:
        stored = self.store.files.get(name)
        data = self._bytes(name) or b""
        created = stored["created_at"] if stored is not None else time.time()
        version = http.match_info["version"]
        uri = f"{http.scheme}://{http.host}{mount_prefix(http, MOUNT)}/{version}/{name}"
        file: dict[str, Any] = {
            "name": name,
            "mimeType": stored["mime_type"] if stored is not None else "application/jsonl",
            "sizeBytes": str(len(data)),
            "createTime": rfc3339(created),
            "updateTime": rfc3339(created),
            "expirationTime": rfc3339(created + 48 * 3600),
            "sha256Hash": base64.b64encode(hashlib.sha256(data).hexdigest().encode()).decode(),
            "uri": uri,
            "state": "ACTIVE",
            "source": "UPLOADED" if stored is not None else "GENERATED",
        }
        if stored is not None and stored["display_name"]:
            file["displayName"] = stored["display_name"]
        if stored is None:
            file["downloadUri"] = f"{uri}:download?alt=media"
        return file
