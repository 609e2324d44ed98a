"""What every ``latencylab`` command shares: the options, the consoles, and turning errors
into one readable message and an exit code (never a traceback for a user's mistake).

Exit codes: 0 done; 1 an error (the coordinator refused the token or the request, is
unreachable, or failed); 2 invalid input, nothing was done (a bad option, a target no device
can run, a field the coordinator refused); 3 the work ran and failed (a failed benchmark or
table build).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from latencylab.client import Client, LatencyLabError
from latencylab.config import TOKEN_FILE, TokenOrigin
from latencylab.errors import ErrorCode

EXIT_ERROR, EXIT_INVALID, EXIT_FAILED = 1, 2, 3
INVALID_STATUSES = {400, 413, 415, 422}
"""Refusals of what the user gave (exit 2); other statuses exit 1."""

console = Console()
err = Console(stderr=True)

ServerOpt = Annotated[
    str | None,
    typer.Option(
        help="Coordinator URL (env LATENCYLAB_SERVER; default http://127.0.0.1:8000)",
        show_default=False,
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        help=f"API token (env LATENCYLAB_TOKEN; default: the file ./.latencylab/{TOKEN_FILE})",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]
WideOpt = Annotated[
    bool, typer.Option("--wide", help="Every column, however wide the terminal (no wrapping)")
]

ENV_HELP = (
    "Environment: LATENCYLAB_SERVER, the coordinator's URL (default http://127.0.0.1:8000; "
    "LATENCYLAB_PORT changes the port); LATENCYLAB_TOKEN, the API token (default: the file "
    f"./.latencylab/{TOKEN_FILE} that `make run` writes; LATENCYLAB_DATA_DIR moves it). "
    "--server and --token override them."
)

Label = Callable[[list[Any]], str]
"""Names the part of the user's input an error ``loc`` points at (e.g. ``--runtime 'x'``)."""


def say(message: str, *details: str) -> None:
    """Print an error line (and indented detail lines) on stderr, unwrapped, markup escaped."""
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    for line in details:
        err.print(f"  {escape(line)}", soft_wrap=True)


def stop(message: str, *details: str, code: int = EXIT_INVALID) -> NoReturn:
    say(message, *details)
    raise typer.Exit(code)


def token_source(origin: TokenOrigin) -> str:
    if origin.source == "argument":
        return f"token {origin.prefix} from --token"
    if origin.source == "env":
        return f"token {origin.prefix} from LATENCYLAB_TOKEN"
    if origin.source == "file":
        return f"token {origin.prefix} from the file {origin.path}"
    return f"no token: neither --token nor LATENCYLAB_TOKEN is set and {origin.path} is absent"


def _token_hints(exc: LatencyLabError, server: str) -> list[str]:
    origin = exc.token or TokenOrigin("none")
    hints = [f"sent: {token_source(origin)}"]
    if exc.code == ErrorCode.token_missing or origin.source == "none":
        hints.append(
            "fix: start the coordinator with `make run` (it writes that file), or pass a token "
            "with --token or LATENCYLAB_TOKEN (an admin creates one: `latencylab token create`)"
        )
    elif exc.code == ErrorCode.token_revoked:
        hints.append("fix: ask an admin for a new token (`latencylab token create --scope user`)")
    elif exc.code == ErrorCode.token_invalid:
        hints.append(
            f"fix: check that LATENCYLAB_SERVER (now {server}) points at the coordinator that "
            "issued this token, or create one there with `latencylab token create`"
        )
    return hints


def _loc(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if part == "body":
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "request"


def flag_label(loc: list[Any]) -> str:
    """A field of a request the CLI builds from same-named options: ``--batch-size``."""
    loc = loc[1:] if loc[:1] == ["body"] else loc
    return f"--{str(loc[0]).replace('_', '-')}" if loc else "request"


def _msg(item: dict[str, Any]) -> str:
    """A field error's message, without pydantic's "Value error, " in front of our own."""
    msg = str(item.get("msg") or "invalid")
    return msg.removeprefix("Value error, ") if item.get("type") == "value_error" else msg


def describe(exc: BaseException, server: str, label: Label | None = None) -> tuple[list[str], int]:
    """The message lines and exit code for an error the CLI expects."""
    if isinstance(exc, LatencyLabError):
        status = f"{exc.status_code} {exc.code}"
        code = EXIT_INVALID if exc.status_code in INVALID_STATUSES else EXIT_ERROR
        if exc.status_code in (401, 403):
            return [f"{exc.detail} ({status})", *_token_hints(exc, server)], code
        if exc.errors:
            lines = [f"the coordinator refused the request ({status}):"]
            for item in exc.errors:
                where = (label or _loc)(list(item.get("loc") or []))
                lines.append(f"{where}: {_msg(item)}")
            return lines, code
        return [f"{exc.detail} ({status})"], code
    if isinstance(exc, ValidationError):
        lines = ["invalid input:"]
        for detail in exc.errors():
            given = detail.get("input")
            got = f" (got {json.dumps(given, default=str)[:80]})" if "input" in detail else ""
            lines.append(f"{(label or _loc)(list(detail['loc']))}: {_msg(dict(detail))}{got}")
        return lines, EXIT_INVALID
    if isinstance(exc, ValueError):  # the CLI's own checks of what was typed
        return [str(exc)], EXIT_INVALID
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return [
            f"cannot reach the coordinator at {server}: is `make run` running? "
            "(set LATENCYLAB_SERVER)"
        ], EXIT_ERROR
    if isinstance(exc, httpx.TransportError):
        return [
            f"lost the connection to the coordinator at {server} ({type(exc).__name__}: {exc})"
        ], EXIT_ERROR
    if isinstance(exc, TimeoutError):
        return [str(exc)], EXIT_ERROR
    raise exc


EXPECTED = (LatencyLabError, ValidationError, httpx.TransportError, TimeoutError)
"""What ``connect`` turns into a message (a ValueError there is a bug, so it propagates)."""


def fail(
    exc: BaseException,
    server: str | None = None,
    label: Label | None = None,
    note: str | None = None,
) -> NoReturn:
    """Print an expected error readably (``note``: a last line, e.g. "nothing was uploaded")
    and exit with its code (anything else propagates)."""
    if server is None and isinstance(exc, httpx.TransportError):
        try:
            url = exc.request.url
            server = f"{url.scheme}://{url.netloc.decode()}"
        except RuntimeError:  # no request attached
            server = None
    lines, code = describe(exc, server or "the configured URL", label)
    stop(lines[0], *lines[1:], *([note] if note else []), code=code)


@contextmanager
def connect(server: str | None, token: str | None, label: Label | None = None) -> Iterator[Client]:
    """A client for one command; an expected error inside ends the command readably."""
    c = Client(server=server, token=token)
    try:
        yield c
    except EXPECTED as exc:
        fail(exc, c.server, label)
    finally:
        c.close()


def parse_pairs(values: Sequence[str] | None, flag: str) -> dict[str, str]:
    """``key=value`` arguments of a repeatable option (exit 2 naming the bad one)."""
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            stop(f"{flag} wants key=value, got {item!r}")
        out[key.strip()] = value
    return out
