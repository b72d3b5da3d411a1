"""The stages are library calls (semcorr.pipeline): the CLI's records equal the in-process ones, a record's
backbone is read in one place (and an unsaid one refused), and the library imports neither the CLI nor upwards."""

import ast
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import REPO, willow_image
from semcorr.errors import DataError
from semcorr.io.records import PairRecord
from semcorr.io.stream import RecordWriter, iter_records
from semcorr_cli.common import flag_for
from semcorr_cli.main import app

A = willow_image("Cars_006a.png")
B = willow_image("Cars_007a.png")
CORE = REPO / "core"


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one(path):
    (rec,) = iter_records(path)
    return rec


def assert_same_datasets(ours: PairRecord, cli: PairRecord) -> None:
    for side in ("src", "trg"):
        assert sorted(ours.features[side]) == sorted(cli.features[side])
        for layer, arr in cli.features[side].items():
            np.testing.assert_array_equal(ours.features[side][layer], arr)
    assert (ours.corr is None) == (cli.corr is None)
    if cli.corr is not None:
        np.testing.assert_array_equal(ours.corr, cli.corr)
    for group in ("flow", "confidence", "extra"):
        assert sorted(getattr(ours, group)) == sorted(getattr(cli, group)), group
        for key, arr in getattr(cli, group).items():
            np.testing.assert_array_equal(getattr(ours, group)[key], arr)


# ----------------------------------------------------------------------------- in process = the CLI


def test_extract_correlate_flow_in_process_give_the_cli_records(tmp_path):
    from semcorr.io.pair_list import ImagePair
    from semcorr.pipeline import build_extractor, correlate_records, extract_pairs, flow_records

    layers = ["features.4", "features.6"]
    assert run("extract", A, B, "--size", "64", "--layers", ",".join(layers), "-o", tmp_path / "f.h5").exit_code == 0
    assert run("correlate", tmp_path / "f.h5", "-o", tmp_path / "c.h5").exit_code == 0
    assert run("flow", tmp_path / "c.h5", "-o", tmp_path / "fl.h5").exit_code == 0

    extractor = build_extractor(layers=layers, size=64)
    (feats,) = extract_pairs(extractor, [ImagePair("000000", str(A), str(B), A, B)], image_root=Path.cwd())
    assert_same_datasets(feats, one(tmp_path / "f.h5"))
    assert feats.feature_attrs == one(tmp_path / "f.h5").feature_attrs
    # the CLI's defaults: centred features, cosine scores; the flow stage's kernel soft-argmax
    (corr,) = correlate_records([feats], center=True)
    cli_corr = one(tmp_path / "c.h5")
    assert_same_datasets(corr, cli_corr)
    assert corr.corr_attrs == cli_corr.corr_attrs and corr.corr_attrs["centered"] is True
    (flow,) = flow_records([corr])
    cli_flow = one(tmp_path / "fl.h5")
    assert_same_datasets(flow, cli_flow)
    assert flow.flow_attrs == cli_flow.flow_attrs and flow.flow_attrs["method"] == "kernel-soft-argmax"
    assert flow.flow["src_to_trg"].shape == (*feats.src_size, 2)


def test_refine_in_process_gives_the_cli_record_and_flow_reads_its_rule(tmp_path):
    from semcorr.io.pair_list import ImagePair
    from semcorr.pipeline import build_extractor, extract_pairs, flow_records, matching_rule, refine_records

    assert run("extract", A, B, "--size", "64", "--model", "ncnet", "-o", tmp_path / "f.h5").exit_code == 0
    assert run("refine", tmp_path / "f.h5", "--model", "ncnet", "-o", tmp_path / "r.h5").exit_code == 0
    extractor = build_extractor(size=64, model="ncnet")
    assert sorted(extractor.layers) == sorted(one(tmp_path / "f.h5").layers())  # the model's layers, as extract --model stores
    (feats,) = extract_pairs(extractor, [ImagePair("000000", str(A), str(B), A, B)])
    (refined,) = refine_records([feats], "ncnet")
    cli = one(tmp_path / "r.h5")
    assert_same_datasets(refined, cli)
    assert refined.corr_attrs["matching"] == cli.corr_attrs["matching"] == "argmax"
    assert matching_rule(refined) == ("argmax", True)  # NC-Net's rule: softmax over the target, then argmax
    assert matching_rule(refined, "soft-argmax") == ("soft-argmax", True)
    (flow,) = flow_records([refined])
    assert flow.flow_attrs["method"] == "argmax" and flow.flow_attrs["model"] == "ncnet"


# ----------------------------------------------------------------------------- the backbone of a record


def features_record(attrs: dict[str, dict]) -> PairRecord:
    rec = PairRecord("p7", "a.png", "b.png", (32, 32), (32, 32))
    for layer in attrs:
        rec.features["src"][layer] = np.ones((8, 4, 4), np.float32)
        rec.features["trg"][layer] = np.ones((8, 4, 4), np.float32)
    rec.feature_attrs = attrs
    return rec


def test_record_backbone_reads_the_one_backbone_and_refuses_an_unsaid_or_mixed_one():
    from semcorr.pipeline import record_backbone

    assert record_backbone(features_record({"features.13": {"backbone": "resnet101"}})) == "resnet101"
    with pytest.raises(DataError, match=r"^record 'p7' does not say which backbone made its features \(its layers name none\)$"):
        record_backbone(features_record({"features.13": {"stride": 16}}))
    mixed = features_record({"x": {"backbone": "resnet50"}, "y": {"backbone": "mobilenet_v2"}})
    with pytest.raises(DataError, match=r"\(its layers name mobilenet_v2, resnet50\)$"):
        record_backbone(mixed)
    empty = PairRecord("p8", "a.png", "b.png", (32, 32), (32, 32))
    with pytest.raises(DataError) as info:
        record_backbone(empty, "show")
    assert str(info.value).endswith("show needs the output of 'semcorr extract'")


def test_flow_with_a_model_refuses_a_record_that_does_not_say_its_backbone(tmp_path):
    """No silent mobilenet_v2: a model built for a guessed backbone would read the features wrongly."""
    with RecordWriter(tmp_path / "f.h5", "test") as w:
        w.write(features_record({"features.13": {"stride": 16}}))
    r = run("flow", tmp_path / "f.h5", "--model", "sfnet", "-o", tmp_path / "fl.h5")
    assert r.exit_code == 1
    assert r.stderr.strip() == "semcorr: error: record 'p7' does not say which backbone made its features (its layers name none)"
    assert not (tmp_path / "fl.h5").exists()


def test_library_errors_name_parameters_and_the_cli_renders_its_flags():
    from semcorr.errors import UsageError
    from semcorr.pipeline import build_extractor, build_refiner, resolve_device

    with pytest.raises(UsageError) as info:
        build_extractor(layers=["features.4"], model="ncnet")
    assert str(info.value) == "model chooses the layers; drop layers"
    assert info.value.render(flag_for) == "--model chooses the layers; drop --layers"
    with pytest.raises(UsageError) as info:
        build_refiner("sfnet", "mobilenet_v2", None)
    assert str(info.value) == "model must be ncnet or dccnet, not 'sfnet'"
    with pytest.raises(UsageError) as info:
        resolve_device("tpu")
    assert info.value.render(flag_for) == "--device must be auto, cpu or cuda, not 'tpu'"


# ----------------------------------------------------------------------------- layering


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports (at the top or inside functions), relative imports made absolute."""
    parts = ["semcorr", *path.relative_to(CORE).with_suffix("").parts]  # core/ installs as semcorr
    package = parts if parts[-1] == "__init__" else parts[:-1]
    package = [p for p in package if p != "__init__"]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            out.add(module)
            out |= {f"{module}.{a.name}" for a in node.names}
    return out


def core_modules():
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 60
    return {f: imports_of(f) for f in files}


def test_no_library_module_imports_the_cli():
    offenders = {str(f.relative_to(REPO)): sorted(m for m in mods if m.split(".")[0] == "semcorr_cli") for f, mods in core_modules().items()}
    assert {f: m for f, m in offenders.items() if m} == {}


#: Layers of the library, lowest first: a module may import its own layer and those below.
LAYERS = [
    "ops",  # everything not named below: errors, backbones, correlation, flow, io, datasets, viz, ...
    "semcorr.models",
    "semcorr.pipeline",  # the stages build models
    "semcorr.evaluate",
    "semcorr.train",
]


def layer_of(module: str) -> int:
    for rank, prefix in enumerate(LAYERS[1:], 1):
        if module == prefix or module.startswith(prefix + "."):
            return rank
    return 0


def test_library_imports_only_run_downwards():
    upward = []
    for f, mods in core_modules().items():
        parts = ["semcorr", *f.relative_to(CORE).with_suffix("").parts]
        me = layer_of(".".join(p for p in parts if p != "__init__"))
        for m in mods:
            if m.startswith("semcorr.") and layer_of(m) > me:
                upward.append(f"{f.relative_to(REPO)} imports {m}")
    assert upward == []
    # the test sees an upward import where there is one
    assert layer_of("semcorr.pipeline.flow") > layer_of("semcorr.pseudo_labels")
    assert "semcorr.scores.correlate_scores" in imports_of(CORE / "pseudo_labels.py")


def test_every_parameter_a_library_error_names_renders_to_a_real_flag():
    import typer

    names = set()
    for f in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "param" and node.args:
                if isinstance(node.args[0], ast.Constant):
                    names.add(node.args[0].value)
    assert {"weights", "model", "layers", "skip_bad", "resume", "output", "model_options"} <= names
    flags = set()
    for command in typer.main.get_command(app).commands.values():
        for p in command.params:
            flags |= set(p.opts) | set(getattr(p, "secondary_opts", []))
    rendered = {name: flag_for(name) for name in names}
    assert {n: f for n, f in rendered.items() if not set(f.split("/")) <= flags} == {}
