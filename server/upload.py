"""Streaming multipart parsing: the file part goes straight to the artifact store.

Starlette's ``request.form()`` would buffer the whole form before we could check
anything; here every chunk is hashed and written as it arrives, and the size limit
stops the upload the moment it is crossed. A full disk while streaming is the server's
fault: ``StorageFull`` (507), with the temporary file removed, never a "malformed body".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from server.artifacts import ArtifactStore, PendingFile, StorageFull, UploadTooLarge, is_disk_full

MAX_FIELD_BYTES = 64 * 1024


class BadUpload(Exception):
    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


@dataclass
class ReceivedForm:
    fields: dict[str, str] = field(default_factory=dict)
    file: PendingFile | None = None
    filename: str | None = None

    def discard(self) -> None:
        if self.file is not None:
            self.file.discard()


@dataclass
class _PartState:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    name: str | None = None
    is_file: bool = False
    buf: bytearray = field(default_factory=bytearray)


async def receive_form(
    request: Request, store: ArtifactStore, limit: int, file_field: str = "file"
) -> ReceivedForm:
    """Parse a ``multipart/form-data`` body; the caller must ``discard()`` on failure."""
    ctype, params = parse_options_header(request.headers.get("content-type"))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise BadUpload("expected a multipart/form-data body with a 'file' part", 415)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + MAX_FIELD_BYTES * 4:
        raise UploadTooLarge(limit)

    form = ReceivedForm()
    state = _PartState()
    errors: list[Exception] = []

    def on_part_begin() -> None:
        nonlocal state
        state = _PartState()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state.header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state.header_value += data[start:end]

    def on_header_end() -> None:
        state.headers[bytes(state.header_field).lower()] = bytes(state.header_value)
        state.header_field.clear()
        state.header_value.clear()

    def on_headers_finished() -> None:
        _, disp = parse_options_header(state.headers.get(b"content-disposition"))
        state.name = disp.get(b"name", b"").decode("utf-8", "replace")
        if state.name == file_field:
            if form.file is not None:
                errors.append(BadUpload(f"more than one '{file_field}' part"))
                return
            state.is_file = True
            form.filename = disp.get(b"filename", b"").decode("utf-8", "replace")
            form.file = store.open_pending(limit)

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if errors:
            return
        chunk = data[start:end]
        try:
            if state.is_file and form.file is not None:
                form.file.write(chunk)
            else:
                state.buf += chunk
                if len(state.buf) > MAX_FIELD_BYTES:
                    errors.append(BadUpload(f"form field '{state.name}' is over 64 KiB", 413))
        except (UploadTooLarge, StorageFull) as exc:
            errors.append(exc)

    def on_part_end() -> None:
        if not state.is_file and state.name:
            form.fields[state.name] = state.buf.decode("utf-8", "replace")

    callbacks: Any = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    }
    parser = MultipartParser(params[b"boundary"], callbacks)
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if errors:
                raise errors[0]
        parser.finalize()
        if errors:
            raise errors[0]
        if form.file is None:
            raise BadUpload(f"the form has no '{file_field}' part")
        form.file.close()  # the last flush can hit a full disk: it discards itself then
    except (UploadTooLarge, BadUpload, StorageFull):
        form.discard()
        raise
    except OSError as exc:
        form.discard()
        if is_disk_full(exc):
            raise StorageFull() from exc
        raise  # a server-side I/O fault: a 500, not the client's malformed body
    except Exception as exc:
        form.discard()
        raise BadUpload(f"malformed multipart body: {exc}") from exc
    except BaseException:  # cancelled (client gone): nothing may stay behind
        form.discard()
        raise
    return form


def multipart_body(fields: dict[str, str], required: tuple[str, ...] = ("file",)) -> dict[str, Any]:
    """The OpenAPI request body of a streamed multipart route (FastAPI cannot infer it)."""
    props: dict[str, Any] = {
        name: {"type": "string", "format": "binary", "description": desc}
        if name == "file"
        else {"type": "string", "description": desc}
        for name, desc in fields.items()
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "required": list(required), "properties": props}
                }
            },
        }
    }


UPLOAD_FILE_BODY = multipart_body({"file": "The file"})
