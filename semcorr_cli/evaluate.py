"""``semcorr evaluate``: score a model, or precomputed flows, on a benchmark under a named protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import typer
from rich.table import Table

from semcorr.errors import UsageError, param
from semcorr.pck_names import THRESHOLD_KINDS
from semcorr.protocols import DIRECTIONS, PROPAGATIONS
from semcorr.parsing import parse_key_values, parse_list

from .common import (
    MatchMethod,
    SkipBadOpt,
    bad_rows_gate,
    check_outputs,
    device_option,
    console,
    err_console,
    handle_errors,
    model_weights,
    output_option,
    parse_model_options,
    parse_str_list,
    progress,
    quiet_option,
    report_skipped,
    resolve_device,
    size_option,
    weights_option,
    working_size,
)

#: How ``--coords`` reads a list's coordinates (:data:`semcorr.datasets.base.COORDS`; a test keeps the two equal).
Coords = Literal["one-based", "raw"]

HELP = """Score a model, or precomputed flows, on a benchmark under a named protocol.

Protocols (--protocol) fix α, the threshold length, the transfer direction,
coordinate reading and averaging of a published table; see docs/protocols.md.
Figures are percentages. -o FILE (repeatable) saves them: .json (every figure
and the protocol), .csv (the same, long format) or .png (PCK against α).

Examples:

  semcorr evaluate --dataset pf-willow --root ../shared/data/pf-willow-dev --model nn

  semcorr evaluate --dataset pf-willow --root ../shared/data/pf-willow-dev --model ncnet -o ncnet.json -o ncnet.csv -o ncnet.png

  semcorr extract --pairs ../shared/data/pf-willow-dev/test_pairs_pf.csv --limit 4 | semcorr correlate | semcorr flow | semcorr evaluate --dataset pf-willow --root ../shared/data/pf-willow-dev --flows - --limit 4

  for i in 1 2 3 4; do semcorr evaluate --dataset pf-willow --root ../shared/data/pf-willow-dev --shard $i/4 --results s$i.jsonl -q; done

  semcorr evaluate --merge s1.jsonl s2.jsonl s3.jsonl s4.jsonl -o willow.json

  semcorr evaluate --dataset spair --root SPair-71k --model sfnet -o spair.json

  semcorr evaluate --dataset jhmdb --root JHMDB --protocol jhmdb-sfnet --model identity   (the Identity baseline)

Every chosen pair is checked before the model is loaded (its list row, its
annotations, its images' headers): bad pairs are listed by file and row and
nothing is scored, or, with --skip-bad, the others are scored and the
skipped ones listed at the end (exit 1).
"""

def _fmt(v: Any) -> str:
    return "–" if v is None else f"{v:.1f}"


def protocol_line(p: dict[str, Any]) -> str:
    """One line describing a protocol, printed above the tables."""
    if p["task"] == "mask":
        return f"protocol {p['name']}: LT-ACC and IoU, mask transferred {p['direction']}, coords {p['coords']}"
    if p["task"] == "coseg":
        return f"protocol {p['name']}: co-segmentation IoU (foreground > 0.5), mirrored source for flipped pairs: {p['flip'] == 'gt'}"
    if p["task"] == "flow":
        return (
            f"protocol {p['name']}: dense PCK over the foreground, L = max(H, W) of the flow's image, "
            f"both flow directions, mirrored source for flipped pairs: {p['flip'] == 'gt'}"
        )
    if p["task"] == "propagation":
        anchor = "every frame matched to the first" if p["propagation"] == "first" else "frame to frame"
        return (
            f"protocol {p['name']}: first-frame keypoints propagated ({anchor}), α_{p['threshold']} of each frame's "
            f"own keypoints, coords {p['coords']}, headline average over {p['average']}s"
        )
    where = f"rescaled to {p['measure_size'][1]}×{p['measure_size'][0]}" if p.get("measure_size") else "original images"
    return (
        f"protocol {p['name']}: α_{p['threshold']}, {p['direction']}, errors in {where}, "
        f"coords {p['coords']}, {p['sampling']} sampling, headline average over {p['average']}s"
    )


AVERAGE_NAMES = {"pair": "pair", "keypoint": "kp", "joint": "jnt"}


def _pck_columns(alphas: list[str], headline: dict[str, Any] | None, joints: bool = False) -> list[tuple[str, str, str]]:
    """``(header, field, α)`` of both averages (and the mean over joints) at every α; the headline column is starred."""
    fields = [("pck_pair", "pair"), ("pck_keypoint", "kp")] + ([("pck_joint", "jnt")] if joints else [])
    cols = []
    for a in alphas:
        for field, short in fields:
            star = headline is not None and float(a) == float(headline["alpha"]) and AVERAGE_NAMES[headline["average"]] == short
            cols.append((f"@{a}\n{short}{'*' if star else ''}", field, a))
    return cols


def _pck_cells(block: dict[str, Any], cols: list[tuple[str, str, str]], bold: bool = False) -> list[str]:
    cells = [_fmt(block[field][a]) for _, field, a in cols]
    return [f"[bold]{c}[/]" for c in cells] if bold else cells


LEGEND = "PCK (%): pair = mean of each pair's PCK, kp = pooled over keypoints; * = the preset's headline"
LEGEND_PROPAGATION = (
    "PCK (%) of the propagated keypoints: pair = mean of each frame's PCK, kp = pooled over keypoints, "
    "jnt = mean over joints of each joint's pooled PCK; pairs = frames scored; * = the preset's headline"
)


def keypoint_tables(s: dict[str, Any]) -> list[Table]:
    alphas = list(s["overall"]["pck_pair"])
    joints = "pck_joint" in s["overall"]
    cols = _pck_columns(alphas, s.get("headline"), joints)
    legend = LEGEND_PROPAGATION if joints else LEGEND
    t = Table(title=f"{legend}; per {s.get('group_name', 'category')}", title_justify="left")
    t.add_column(s.get("group_name", "category"), min_width=9, max_width=22, overflow="fold")
    t.add_column("pairs", justify="right", no_wrap=True)
    t.add_column("kps", justify="right", no_wrap=True)
    for header, _, _ in cols:
        t.add_column(header, justify="right", min_width=5, no_wrap=True)
    for c, b in s["categories"].items():
        t.add_row(c, str(b["n_pairs"]), str(b["n_keypoints"]), *_pck_cells(b, cols))
    t.add_section()
    o = s["overall"]
    label = f"[bold]all ({o['n_clips']} clips)[/]" if joints else "[bold]all[/]"
    t.add_row(label, str(o["n_pairs"]), str(o["n_keypoints"]), *_pck_cells(o, cols, bold=True))
    t.add_row("cat. mean", str(len(s["categories"])), "", *_pck_cells(s["category_mean"], cols))
    tables = [t]
    if s.get("breakdown"):
        tables.append(breakdown_table(s))
    return tables


def breakdown_table(s: dict[str, Any]) -> Table:
    """SPair-71k Table 4 (all pairs at a factor's level) beside Table 5 (that factor alone, the others at easy/none).

    Only the headline α is printed; every α is in the JSON and CSV reports.
    """
    h = s["headline"]
    a = f"{float(h['alpha']):g}"
    mark = {"pair": ("*", ""), "keypoint": ("", "*")}[h["average"]]
    b = Table(
        title=(
            f"PCK@{a} (%) by difficulty: Table 4 = every pair at the level; Table 5 = the factor alone, "
            "the others easy (view-point, scale) / none (truncation, occlusion)"
        ),
        title_justify="left",
    )
    for col in ("factor", "level"):
        b.add_column(col, no_wrap=True)
    for table in ("T4", "T5"):
        b.add_column(f"{table}\npairs", justify="right")
        b.add_column(f"{table}\npair{mark[0]}", justify="right")
        b.add_column(f"{table}\nkp{mark[1]}", justify="right")
    controlled = s.get("breakdown_controlled", {})
    for factor, levels in s["breakdown"].items():
        for level, g in levels.items():
            c = controlled.get(factor, {}).get(level)
            alone = [str(c["n_pairs"]), _fmt(c["pck_pair"][a]), _fmt(c["pck_keypoint"][a])] if c else ["0", "–", "–"]
            b.add_row(factor, level, str(g["n_pairs"]), _fmt(g["pck_pair"][a]), _fmt(g["pck_keypoint"][a]), *alone)
    return b


def flow_tables(s: dict[str, Any]) -> list[Table]:
    alphas = list(s["overall"]["pck"])
    t = Table(title="Dense PCK (%) over the foreground, per subset", title_justify="left")
    t.add_column("subset")
    t.add_column("pairs", justify="right")
    for a in alphas:
        t.add_column(f"PCK@{a}", justify="right")
        t.add_column("src→trg", justify="right")
        t.add_column("trg→src", justify="right")
    for name, b in s["subsets"].items():
        t.add_row(name, str(b["n_pairs"]), *[x for a in alphas for x in (_fmt(b["pck"][a]), _fmt(b["src_to_trg"][a]), _fmt(b["trg_to_src"][a]))])
    t.add_section()
    t.add_row("[bold]mean over subsets[/]", str(s["overall"]["n_pairs"]), *[x for a in alphas for x in (f"[bold]{_fmt(s['average']['pck'][a])}[/]", "", "")])
    return [t]


def mask_tables(s: dict[str, Any]) -> list[Table]:
    t = Table(title="Mask transfer (%) per class", title_justify="left")
    for col, j in (("class", "left"), ("pairs", "right"), ("LT-ACC", "right"), ("IoU", "right")):
        t.add_column(col, justify=j)
    for c, b in s["categories"].items():
        t.add_row(c, str(b["n_pairs"]), _fmt(b["lt_acc"]), _fmt(b["iou"]))
    t.add_section()
    o = s["overall"]
    t.add_row("[bold]all (mean over pairs)[/]", str(o["n_pairs"]), f"[bold]{_fmt(o['lt_acc'])}[/]", f"[bold]{_fmt(o['iou'])}[/]")
    return [t]


def coseg_tables(s: dict[str, Any]) -> list[Table]:
    t = Table(title="Co-segmentation IoU (%) per subset: each image's mask × the other's read through the flow", title_justify="left")
    for col, j in (("subset", "left"), ("pairs", "right"), ("IoU", "right"), ("image1", "right"), ("image2", "right")):
        t.add_column(col, justify=j)
    for name, b in s["subsets"].items():
        t.add_row(name, str(b["n_pairs"]), _fmt(b["iou"]), _fmt(b["iou_src"]), _fmt(b["iou_trg"]))
    t.add_section()
    o = s["overall"]
    t.add_row("all images", str(o["n_pairs"]), _fmt(o["iou"]), _fmt(o["iou_src"]), _fmt(o["iou_trg"]))
    t.add_row("[bold]mean over subsets*[/]", "", f"[bold]{_fmt(s['average']['iou'])}[/]", "", "")
    return [t]


def print_summary(run) -> None:
    from semcorr.evaluate.export import run_label

    s = run.summary
    console.print(f"scored: {run_label(run.header)}", highlight=False)
    console.print(protocol_line(run.header["protocol"]), highlight=False)
    tables = {"keypoints": keypoint_tables, "propagation": keypoint_tables, "flow": flow_tables, "mask": mask_tables, "coseg": coseg_tables}
    for t in tables[s["task"]](s):
        console.print(t)


def _build_source(args: dict[str, Any], protocol, root: Path):
    """The predictor (``--model``) or the record flows (``--flows``)."""
    if args["flows"] is not None:
        if args["model"] is not None:
            raise UsageError("give --model or --flows, not both")
        from semcorr.evaluate import RecordFlows

        return None, RecordFlows(args["flows"], root)
    try:
        from semcorr.pipeline import build_predictor
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installation
        raise UsageError(f"models are unavailable in this installation ({exc}); score precomputed flows with --flows") from None
    opts = {
        "backbone": args["backbone"],
        "backbone_weights": args["backbone_weights"],
        "weights": model_weights(args["weights"]),
        # a protocol's working size is its papers' input size for their models; nn keeps its own default
        "size": args["size"] or (protocol.size if (args["model"] or "nn") not in ("nn", "identity") else None),
        "device": resolve_device(args["device"]),
        "method": args["method"],
        "layers": parse_str_list(args["layers"]),
        "model_input": protocol.model_input,
    }
    model_options = parse_model_options(args["model_opt"])
    if model_options and (args["model"] or "nn") in ("nn", "identity"):
        raise UsageError("--model-opt is for learned models (--model sfnet, ncnet, dccnet or mmnet)")
    opts.update(model_options)
    try:
        return build_predictor(model=args["model"] or "nn", **{k: v for k, v in opts.items() if v is not None or k == "weights"}), None
    except TypeError as exc:
        raise UsageError(f"model '{args['model']}' does not take these --model-opt options ({exc})") from None


def output_files(outputs: list[Path] | None, json_path: Path | None, csv_path: Path | None, plot_path: Path | None) -> list[tuple[str, Path]]:
    """``-o FILE`` (repeatable; the kind from the extension) and the old ``--json/--csv/--plot FILE`` → ``[(kind, path)]``."""
    from semcorr.evaluate.reports import report_kind

    out = []
    for path in outputs or []:
        kind = report_kind(path)
        if kind is None:
            raise UsageError(f"-o '{path}': evaluate writes .json, .csv or .png files")
        out.append((kind, path))
    out += [(kind, p) for kind, p in (("json", json_path), ("csv", csv_path), ("plot", plot_path)) if p is not None]
    return out


def _write_outputs(run, files: list[tuple[str, Path]], quiet: bool) -> None:
    """Every report file, all or none (:func:`semcorr.evaluate.write_reports`)."""
    from semcorr.evaluate import write_reports

    write_reports(run, files)
    if not quiet:
        for _, path in files:
            err_console.print(f"wrote {path}", highlight=False)


def _run_merge(files: list[Path], alphas: list[float] | None, partial: bool, quiet: bool):
    """The merged run; refused when the files are not a whole run (missing shards, cut-off files) unless ``partial``."""
    from semcorr.errors import DataError
    from semcorr.evaluate import merge_results, run_from_results
    from semcorr.evaluate.results import coverage_problem

    header, records = merge_results(files)
    problem = coverage_problem(header["coverage"])
    if problem and not partial:
        raise DataError(f"the merged results are not a whole run ({problem}); merge every shard, or give --partial to report the {len(records)} pairs at hand as a partial score")
    if problem:
        err_console.print(f"[yellow]semcorr: warning:[/] partial score over {len(records)} pairs ({problem})", highlight=False, soft_wrap=True)
    return run_from_results(header, records, alphas)


def _run_evaluate(args: dict[str, Any], alphas: list[float] | None, quiet: bool):
    from semcorr.datasets import dataset_class, open_dataset
    from semcorr.evaluate import evaluate, parse_shard, select_indices
    from semcorr.protocols import customize, default_protocol, get_protocol

    if not args["dataset"] or not args["root"]:
        raise UsageError("--dataset and --root are required (or use --merge FILES)")
    if args["resume"] and args["results"] is None:
        raise UsageError("--resume needs --results FILE (the per-pair results file to continue)")
    name = dataset_class(args["dataset"]).name
    protocol = get_protocol(args["protocol"]) if args["protocol"] else default_protocol(name)
    protocol = customize(
        protocol, alphas=alphas, threshold=args["threshold"], direction=args["direction"], coords=args["coords"],
        propagation=args["propagation"],
    )  # fmt: skip
    options = protocol.options()
    options.update(parse_key_values(args["option"], param("reader_options"), dash_to_underscore=True))
    if args["pairs"] is not None:
        options["pairs"] = args["pairs"]
    shard = parse_shard(args["shard"])
    dataset = open_dataset(name, args["root"], split=args["split"] or protocol.split, **options)
    # every chosen pair is checked before a model is loaded (or torch imported)
    indices = select_indices(len(dataset), args["limit"], shard)
    bad = dataset.bad_pairs(indices, images=args["flows"] is None)
    bad_rows_gate(bad, len(indices), args["skip_bad"], quiet)
    predictor, flows = _build_source(args, protocol, dataset.root)
    bar = progress(quiet)
    task = None

    def on_start(total: int, done: int) -> None:
        nonlocal task
        task = bar.add_task(f"{protocol.name}", total=total, completed=done)

    def on_pair(record: dict[str, Any]) -> None:
        bar.advance(task)

    try:
        with bar:
            run = evaluate(
                dataset, protocol, predictor=predictor, flows=flows, results=args["results"], resume=args["resume"],
                limit=args["limit"], shard=shard, on_start=on_start, on_pair=on_pair, skip_bad=args["skip_bad"], bad=bad,
            )  # fmt: skip
    finally:
        if flows is not None:
            flows.close()
    if run.resumed and not quiet:
        err_console.print(f"resumed: {run.resumed} pairs were already in {args['results']}", highlight=False)
    return run


def register(app: typer.Typer) -> None:
    @app.command("evaluate", help=HELP, no_args_is_help=True)
    @handle_errors
    def evaluate_cmd(
        files: list[Path] = typer.Argument(None, help="With --merge: the per-pair results files to combine.", show_default=False),
        dataset: str = typer.Option(None, "--dataset", "-d", help="pf-willow, pf-pascal, spair, tss, caltech-101, cub, jhmdb or custom."),
        root: Path = typer.Option(None, "--root", help="The dataset's folder, in its published layout."),
        split: str = typer.Option(None, "--split", help="Split (default: the protocol's, usually test)."),
        pairs: str = typer.Option(None, "--pairs", help="Another pair-list CSV (absolute or relative to --root)."),
        option: list[str] = typer.Option(None, "--option", "-O", help="Reader option KEY=VALUE, repeatable: layout=small (spair), lists=DIR or pair_list=sfnet (pf-pascal), keypoints=mat (pf-willow), subsets=JODS,PASCAL (tss)."),
        model: str = typer.Option(None, "--model", "-m", help="nn (training-free matching, default), identity (no-motion baseline) or a learned model: sfnet, ncnet, dccnet, mmnet."),
        weights: str = weights_option("The learned model's weights: default (shipped), none (untrained), a checkpoint or the authors' file.", None),
        model_opt: list[str] = typer.Option(None, "--model-opt", help="Learned model builder option KEY=VALUE, repeatable (e.g. mask_head=true for sfnet)."),
        backbone: str = typer.Option(None, "--backbone", help="Feature backbone (default: the pipeline's)."),
        backbone_weights: str = typer.Option(None, "--backbone-weights", help="Backbone weights (name or file)."),
        layers: str = typer.Option(None, "--layers", help="nn: comma-separated backbone layers."),
        method: MatchMethod = typer.Option(None, "--method", help="nn: argmax, soft-argmax or kernel-soft-argmax."),
        protocol: str = typer.Option(None, "--protocol", "-p", help="Protocol preset (default: the dataset's; see docs/protocols.md)."),
        alpha: str = typer.Option(None, "--alpha", help="Comma-separated α values replacing the protocol's."),
        threshold: Optional[Literal[THRESHOLD_KINDS]] = typer.Option(None, "--threshold", help="Override the reference length: img, bbox, kps or kps-diag."),
        propagation: Optional[Literal[PROPAGATIONS]] = typer.Option(None, "--propagation", help="jhmdb: first (every frame matched to the first, the preset) or chain (frame to frame)."),
        direction: Optional[Literal[DIRECTIONS]] = typer.Option(None, "--direction", help="Override the transfer direction: src->trg or trg->src."),
        coords: Optional[Coords] = typer.Option(None, "--coords", help="Override how coordinates are read: one-based or raw."),
        size: int = size_option("Working image size fed to the model (default: a learned model gets the protocol's, nn its own)."),
        device: str = device_option(),
        outputs: list[Path] = output_option("Save the figures: FILE.json, FILE.csv or FILE.png (PCK against α); repeatable."),
        json_path: Path = typer.Option(None, "--json", hidden=True),  # old spelling of -o FILE.json
        csv_path: Path = typer.Option(None, "--csv", hidden=True),  # old spelling of -o FILE.csv
        plot_path: Path = typer.Option(None, "--plot", hidden=True),  # old spelling of -o FILE.png
        results: Path = typer.Option(None, "--results", help="Per-pair results file (JSON lines), written as the run goes."),
        resume: bool = typer.Option(False, "--resume", help="Continue the --results file, skipping the pairs it has."),
        limit: int = typer.Option(None, "--limit", help="Only the first N pairs."),
        shard: str = typer.Option(None, "--shard", help="i/n: every n-th pair from the i-th (1 ≤ i ≤ n)."),
        flows: Path = typer.Option(None, "--flows", help="Score precomputed flow records (.h5, a stream file, or '-' for stdin) instead of a model."),
        merge: bool = typer.Option(False, "--merge", help="Combine per-pair results files (FILES) and report them."),
        skip_bad: bool = SkipBadOpt,
        partial: bool = typer.Option(False, "--partial", help="With --merge: report files that are not a whole run (shards missing), marked partial."),
        quiet: bool = quiet_option("No progress bar or tables."),
    ) -> None:
        alphas = parse_list(alpha, float, param("alpha"), "comma-separated numbers") if alpha else None
        files_out = output_files(outputs, json_path, csv_path, plot_path)
        working_size(size)
        check_outputs(*(path for _, path in files_out), results)
        if merge:
            if not files:
                raise UsageError("--merge needs the results files to combine")
            run = _run_merge(files, alphas, partial, quiet)
        else:
            if files:
                raise UsageError(f"unexpected argument '{files[0]}' (results files are given with --merge)")
            args = dict(
                dataset=dataset, root=root, split=split, pairs=pairs, option=option, model=model, weights=weights, model_opt=model_opt, backbone=backbone,
                backbone_weights=backbone_weights, layers=layers, method=method, protocol=protocol, threshold=threshold,
                direction=direction, coords=coords, propagation=propagation, size=size, device=device, results=results, resume=resume, limit=limit,
                shard=shard, flows=flows, skip_bad=skip_bad,
            )  # fmt: skip
            run = _run_evaluate(args, alphas, quiet)
        if not quiet:
            print_summary(run)
        _write_outputs(run, files_out, quiet)
        report_skipped(run.skipped, len(run.records) + len(run.skipped), f"the figures are of the other {len(run.records)}")
