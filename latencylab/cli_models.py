"""``latencylab models``: list uploaded models, edit their name / accuracy / tags, delete them."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Literal

import typer
from rich.markup import escape

from latencylab.cli_common import (
    JsonOpt,
    ServerOpt,
    TokenOpt,
    WideOpt,
    connect,
    console,
    err,
    parse_pairs,
    stop,
)
from latencylab.cli_layout import Col, print_table
from latencylab.schemas import ModelPublic

models_app = typer.Typer(
    help="Uploaded models: list them (the default), edit or delete one.",
    invoke_without_command=True,
)

COLUMNS = (
    Col("id", numeric=True),
    Col("name"),
    Col("format"),
    Col("size MB", rank=2, numeric=True),
    Col("accuracy", rank=1),
    Col("tags", rank=3),
    Col("inputs", rank=4),
    Col("sha256", rank=5),
)


def _row(m: ModelPublic) -> list[str]:
    acc = m.metadata.get("accuracy") or {}
    tags = m.metadata.get("tags") or []
    return [
        str(m.id),
        escape(m.name),
        m.format,
        f"{m.size / 2**20:.2f}",
        escape("\n".join(f"{k} {v}" for k, v in acc.items())) if isinstance(acc, dict) else "",
        escape(", ".join(str(t) for t in tags)) if isinstance(tags, list) else "",
        escape("\n".join(f"{i.name}{i.shape}" for i in m.inputs)),
        m.sha256[:12],
    ]


def list_models(server: str | None, token: str | None, as_json: bool, wide: bool) -> None:
    with connect(server, token) as c:
        ms = c.models()
    if as_json:
        print(json.dumps([m.model_dump(mode="json") for m in ms]))
        return
    print_table(console, "models", COLUMNS, [_row(m) for m in ms], wide)


@models_app.callback()
def models(
    ctx: typer.Context,
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """List uploaded models (newest first); `models edit` / `models delete` change one."""
    if ctx.invoked_subcommand is None:
        list_models(server, token, as_json, wide)


@models_app.command("list")
def list_(
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """List uploaded models (newest first)."""
    list_models(server, token, as_json, wide)


def _accuracy(pairs: dict[str, str]) -> dict[str, float]:
    out = {}
    for key, value in pairs.items():
        try:
            out[key] = float(value)
        except ValueError:
            stop(f"--accuracy {key}={value!r}: the value must be a number, e.g. top1=75.3")
    return out


@models_app.command("edit")
def edit(
    model_id: Annotated[int, typer.Argument(help="The model's id (see 'latencylab models')")],
    name: Annotated[str | None, typer.Option(help="New display name")] = None,
    accuracy: Annotated[
        list[str] | None,
        typer.Option(help="metric=value, e.g. top1=75.3 (repeat; shown on the Pareto page)"),
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option(help="A tag (repeat); replaces the model's tags")
    ] = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a model's name, accuracy or tags (what is not given stays as it is)."""
    acc = _accuracy(parse_pairs(accuracy, "--accuracy")) if accuracy else None
    if name is None and acc is None and tag is None:
        stop("nothing to change: give --name, --accuracy metric=value or --tag")
    with connect(server, token) as c:
        m = c.update_model(model_id, name=name, accuracy=acc, tags=tag)
    if as_json:
        print(m.model_dump_json())
        return
    print_table(console, f"model {m.id} updated", COLUMNS, [_row(m)])


@models_app.command("delete")
def delete(
    model_id: Annotated[int, typer.Argument(help="The model's id (see 'latencylab models')")],
    results: Annotated[
        Literal["keep", "delete"],
        typer.Option(
            help="keep: its benchmarks and results stay readable by id (the model leaves "
            "the lists and the Pareto page); delete: they go with it",
        ),
    ] = "keep",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a model (its file goes once nothing else uses it)."""
    with connect(server, token) as c:
        m = c.model(model_id)
        if not yes:
            if not sys.stdin.isatty():
                stop(f"not deleting model {m.id} ({m.name}) without --yes (no terminal to ask)")
            what = "and its results" if results == "delete" else "(its results are kept)"
            if not typer.confirm(f"delete model {m.id} ({m.name}) {what}?", err=True):
                stop("nothing deleted", code=1)
        c.delete_model(model_id, results=results)
    if as_json:
        print(json.dumps({"id": m.id, "name": m.name, "deleted": True, "results": results}))
        return
    kept = "its results are kept" if results == "keep" else "its results are deleted"
    err.print(f"model {m.id} ({escape(m.name)}) deleted; {kept}", soft_wrap=True)
