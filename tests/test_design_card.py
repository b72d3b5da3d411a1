"""`semcorr extract a b | semcorr flow --model M`: layers M reads that the record lacks are computed
from the record's own images, giving exactly the flows of `extract --model M` (PF-WILLOW images)."""

import io
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import willow_image
from semcorr.io.stream import iter_records
from semcorr_cli.main import app

A = willow_image("Cars_006a.png")
B = willow_image("Cars_007a.png")
C = willow_image("Cars_008b.png")


def run(args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def records(data: bytes):
    return list(iter_records("-", stdin=io.BytesIO(data)))


def note_count(result) -> int:
    return result.stderr.count("computing ")


@pytest.fixture(scope="module")
def plain_extract() -> bytes:
    r = run(["extract", A, B])
    assert r.exit_code == 0, r.output
    return r.stdout_bytes


@pytest.mark.parametrize("model", ["sfnet", "ncnet", "dccnet", "mmnet"])
def test_design_card_line_gives_the_flows_of_extract_with_the_model(plain_extract, model):
    card = run(["flow", "--model", model], input=plain_extract)
    assert card.exit_code == 0, card.output
    direct = run(["flow", "--model", model], input=run(["extract", A, B, "--model", model]).stdout_bytes)
    assert direct.exit_code == 0, direct.output
    (got,), (want,) = records(card.stdout_bytes), records(direct.stdout_bytes)
    for key in ("src_to_trg", "trg_to_src"):
        np.testing.assert_array_equal(got.flow[key], want.flow[key])
    assert got.flow["src_to_trg"].shape == (200, 300, 2)
    # sfnet and mmnet read layers beyond the hypercolumn: said once; ncnet/dccnet read the hypercolumn itself
    assert note_count(card) == (1 if model in ("sfnet", "mmnet") else 0), card.stderr
    assert note_count(direct) == 0


def test_a_pair_list_with_relative_paths_is_completed_from_its_root_and_said_once(tmp_path):
    csv = tmp_path / "pairs.csv"
    csv.write_text(f"source_image,target_image\n{A.name},{B.name}\n{B.name},{C.name}\n")
    args = ["extract", "--pairs", csv, "--root", A.parent, "--size", "64"]
    plain = run(args + ["--layers", "features.13"])
    assert plain.exit_code == 0, plain.output
    assert {r.src_path for r in records(plain.stdout_bytes)} == {A.name, B.name}  # stored as written
    card = run(["flow", "--model", "sfnet"], input=plain.stdout_bytes)
    assert card.exit_code == 0, card.output
    assert note_count(card) == 1 and "features.17" in card.stderr
    direct = run(["flow", "--model", "sfnet"], input=run(args + ["--model", "sfnet"]).stdout_bytes)
    for got, want in zip(records(card.stdout_bytes), records(direct.stdout_bytes), strict=True):
        np.testing.assert_array_equal(got.flow["src_to_trg"], want.flow["src_to_trg"])
    # --quiet keeps the note to itself
    assert note_count(run(["flow", "--model", "sfnet", "-q"], input=plain.stdout_bytes)) == 0


def test_refine_and_show_complete_records_too(tmp_path):
    partial = run(["extract", A, B, "--size", "64", "--layers", "features.6"]).stdout_bytes
    full = run(["extract", A, B, "--size", "64", "--model", "ncnet"]).stdout_bytes
    got, want = (run(["refine", "--model", "ncnet"], input=x) for x in (partial, full))
    assert got.exit_code == 0 and want.exit_code == 0, got.output + want.output
    np.testing.assert_array_equal(records(got.stdout_bytes)[0].corr, records(want.stdout_bytes)[0].corr)
    for name, data in (("partial", partial), ("full", full)):
        r = run(["show", "-", "--model", "dccnet", "--point", "100,80", "-o", tmp_path / f"{name}.png"], input=data)
        assert r.exit_code == 0, r.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "partial.png")), np.asarray(Image.open(tmp_path / "full.png")))


def test_records_that_cannot_be_completed_say_why(tmp_path):
    # random backbone weights cannot be rebuilt from their id
    r = run(["extract", A, B, "--size", "64", "--backbone-weights", "random", "-o", tmp_path / "rand.h5"])
    assert r.exit_code == 0, r.output
    r = run(["flow", tmp_path / "rand.h5", "--model", "sfnet", "-o", tmp_path / "out.h5"])
    assert r.exit_code == 2 and "weights 'random', which cannot be rebuilt" in r.stderr
    assert "extract with --model sfnet" in r.stderr and not (tmp_path / "out.h5").exists()
    # an image that changed size since extract is a data error
    a = shutil.copy(A, tmp_path / "a.png")
    r = run(["extract", a, B, "--size", "64", "-o", tmp_path / "f.h5"])
    assert r.exit_code == 0, r.output
    Image.open(A).resize((150, 100)).save(a)
    r = run(["flow", tmp_path / "f.h5", "--model", "sfnet", "-o", tmp_path / "out.h5"])
    assert r.exit_code == 1 and "is 150x100 pixels now, not 300x200" in r.stderr, r.output
    assert not (tmp_path / "out.h5").exists()
