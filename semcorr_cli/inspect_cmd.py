"""``semcorr inspect``: a human (or --json) summary of a records file or stream."""

from __future__ import annotations

import typer

from .common import console, handle_errors, print_json

HELP = """Summarise a records file or stream: pairs, datasets, shapes, dtypes, history.

Examples:

  semcorr inspect feats.h5

  semcorr extract a.jpg b.jpg | semcorr inspect --json
"""


def inspect_cmd(
    input: str = typer.Argument(None, help="Records file, or '-'/omitted for stdin.", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    from rich.table import Table

    from semcorr.io.stream import iter_records
    from semcorr.pipeline import summarise_records

    summary = summarise_records(iter_records(input))
    pairs, history = summary["pairs"], summary["history"]
    if as_json:
        print_json(summary)
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
