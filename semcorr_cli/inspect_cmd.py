"""``semcorr inspect``: a human (or --json) summary of a records file or stream."""

from __future__ import annotations

import typer

from .common import console, handle_errors, print_json

HELP = """Summarise a records file or stream: pairs, datasets, shapes, dtypes, history.

Examples:

  semcorr inspect feats.h5

  semcorr extract a.jpg b.jpg | semcorr inspect --json
"""


def _summary(rec) -> dict:
    out = {
        "pair_id": rec.pair_id,
        "stage": rec.stage,
        "src_path": rec.src_path,
        "trg_path": rec.trg_path,
        "src_size": list(rec.src_size),
        "trg_size": list(rec.trg_size),
        "datasets": {},
    }
    for side in ("src", "trg"):
        for layer, arr in rec.features[side].items():
            out["datasets"][f"features/{side}/{layer}"] = [list(arr.shape), str(arr.dtype)]
    if rec.corr is not None:
        out["datasets"]["corr"] = [list(rec.corr.shape), str(rec.corr.dtype)]
    for k, arr in rec.flow.items():
        out["datasets"][f"flow/{k}"] = [list(arr.shape), str(arr.dtype)]
    for k, arr in rec.confidence.items():
        out["datasets"][f"confidence/{k}"] = [list(arr.shape), str(arr.dtype)]
    for k, arr in rec.extra.items():
        out["datasets"][f"extra/{k}"] = [list(arr.shape), str(arr.dtype)]
    return out


def inspect_cmd(
    input: str = typer.Argument(None, help="Records file, or '-'/omitted for stdin.", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    from rich.table import Table

    from core.io.stream import iter_records

    pairs = []
    history: list[str] = []
    for rec in iter_records(input):
        pairs.append(_summary(rec))
        history = rec.history
    if as_json:
        print_json({"pairs": pairs, "history": history, "count": len(pairs)})
        return
    console.print(f"[bold]{len(pairs)} pair(s)[/]")
    for p in pairs:
        t = Table(title=f"pair {p['pair_id']} ({p['stage']}): {p['src_path']} [{p['src_size'][0]}x{p['src_size'][1]}] → {p['trg_path']} [{p['trg_size'][0]}x{p['trg_size'][1]}]", title_justify="left")
        t.add_column("dataset")
        t.add_column("shape")
        t.add_column("dtype")
        for name, (shape, dtype) in p["datasets"].items():
            t.add_row(name, "×".join(str(s) for s in shape), dtype)
        console.print(t)
    if history:
        console.print("[bold]history[/]")
        for line in history:
            console.print(f"  {line}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("inspect", help=HELP)(handle_errors(inspect_cmd))
