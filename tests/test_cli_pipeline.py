"""The stages end to end on real PF-WILLOW images: pipes, identities, recovered warps, bad input."""

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import willow_image
from semcorr.io.stream import iter_records
from semcorr_cli.main import app

A = willow_image("Cars_006a.png")
B = willow_image("Cars_007a.png")


def run(args, input=None):
    result = CliRunner().invoke(app, [str(a) for a in args], input=input)
    return result


def stdout_bytes(result) -> bytes:
    return result.stdout_bytes


def records(data: bytes):
    return list(iter_records("-", stdin=io.BytesIO(data)))


@pytest.fixture(scope="module")
def self_pair_flow():
    """extract A A | correlate | flow, in process."""
    r1 = run(["extract", A, A, "--size", "256"])
    assert r1.exit_code == 0, r1.output
    r2 = run(["correlate"], input=stdout_bytes(r1))
    assert r2.exit_code == 0, r2.output
    r3 = run(["flow", "--method", "kernel-soft-argmax"], input=stdout_bytes(r2))
    assert r3.exit_code == 0, r3.output
    return records(stdout_bytes(r3))[0]


def test_image_matched_to_itself_gives_the_identity_within_a_cell(self_pair_flow):
    rec = self_pair_flow
    h, w = rec.src_size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    err = np.hypot(rec.flow["src_to_trg"][..., 0] - xs, rec.flow["src_to_trg"][..., 1] - ys)
    cell = 8 * max(h, w) / 256  # stride-8 cells of the 256-px working image, in original pixels
    assert np.median(err) < 0.25 * cell
    assert np.percentile(err, 95) < cell
    assert rec.flow["trg_to_src"].shape == (h, w, 2)
    assert rec.history[0].startswith("semcorr extract") and rec.history[-1].startswith("semcorr flow")


def test_synthetic_translation_of_a_real_image_is_recovered(tmp_path):
    img = Image.open(A).convert("RGB")  # 300 x 200
    dx, dy = 40, 16
    src = img.crop((0, 0, 256, 176))
    trg = img.crop((dx, dy, dx + 256, dy + 176))
    src.save(tmp_path / "src.png")
    trg.save(tmp_path / "trg.png")
    r = run(["extract", tmp_path / "src.png", tmp_path / "trg.png", "--size", "256"])
    r = run(["correlate"], input=stdout_bytes(r))
    r = run(["flow", "--method", "kernel-soft-argmax", "-o", tmp_path / "f.h5"], input=stdout_bytes(r))
    assert r.exit_code == 0, r.output
    (rec,) = list(iter_records(tmp_path / "f.h5"))
    f = rec.flow["src_to_trg"]
    # pixels of src that are visible in trg, away from the borders
    ys, xs = np.mgrid[dy + 24 : 176 - 24, dx + 24 : 256 - 24]
    err = np.hypot(f[ys, xs, 0] - (xs - dx), f[ys, xs, 1] - (ys - dy))
    assert np.median(err) < 6.0
    assert np.mean(err < 16) > 0.8


def test_warp_outputs(tmp_path, self_pair_flow):
    from semcorr.io.stream import RecordWriter

    with RecordWriter(tmp_path / "self.h5", "test") as w:
        w.write(self_pair_flow)
    r = run(["warp", tmp_path / "self.h5", "--image", A, "-o", tmp_path / "w.png"])
    assert r.exit_code == 0, r.output
    warped = np.asarray(Image.open(tmp_path / "w.png"), dtype=np.float32)
    orig = np.asarray(Image.open(A).convert("RGB"), dtype=np.float32)
    assert warped.shape == orig.shape
    assert np.median(np.abs(warped - orig)) < 20  # the identity warp keeps the picture
    pts = tmp_path / "pts.csv"
    pts.write_text("x,y\n100,50\n150.5,120\n5000,1\n")
    r = run(["warp", tmp_path / "self.h5", "--keypoints", pts, "-o", tmp_path / "moved.csv"])
    assert r.exit_code == 0, r.output
    moved = np.genfromtxt(tmp_path / "moved.csv", delimiter=",", skip_header=1)
    assert np.hypot(*(moved[0] - [100, 50])) < 10 and np.isnan(moved[2]).all()
    for extra in (["--matches"], ["--overlay"]):
        r = run(["warp", tmp_path / "self.h5", "--image", A, "-o", tmp_path / "x.png", *extra])
        assert r.exit_code == 0, r.output
        assert Image.open(tmp_path / "x.png").width >= 300
    Image.fromarray((orig[..., 0] > 128).astype(np.uint8) * 255).save(tmp_path / "m.png")
    r = run(["warp", tmp_path / "self.h5", "--mask", tmp_path / "m.png", "-o", tmp_path / "wm.png"])
    assert r.exit_code == 0, r.output
    inter = (np.asarray(Image.open(tmp_path / "wm.png")) > 0) & (orig[..., 0] > 128)
    union = (np.asarray(Image.open(tmp_path / "wm.png")) > 0) | (orig[..., 0] > 128)
    assert inter.sum() / union.sum() > 0.7


def test_pairs_csv_batch_and_inspect(tmp_path):
    csv = tmp_path / "pairs.csv"
    csv.write_text("source_image,target_image\nCars_006a.png,Cars_007a.png\nCars_007a.png,Cars_008b.png\n")
    r = run(["extract", "--pairs", csv, "--root", A.parent, "--size", "128", "--layers", "features.13", "-o", tmp_path / "f.h5"])
    assert r.exit_code == 0, r.output
    r = run(["inspect", tmp_path / "f.h5", "--json"])
    assert r.exit_code == 0, r.output
    import json

    info = json.loads(r.stdout)
    assert info["count"] == 2
    assert info["pairs"][1]["datasets"]["features/src/features.13"] == [[96, 8, 8], "float32"]


def _err(result):
    return result.stderr if hasattr(result, "stderr") else result.output


@pytest.mark.parametrize(
    "setup, args, code, message",
    [
        (None, ["extract", "{A}"], 2, "exactly two images"),
        (None, ["extract", "{A}", "{tmp}/missing.png"], 1, "does not exist"),
        ("text", ["extract", "{A}", "{tmp}/bad.png"], 1, "not an image"),
        ("truncated", ["extract", "{A}", "{tmp}/bad.png"], 1, "truncated"),
        (None, ["extract", "{A}", "{A}", "--backbone", "vgg"], 2, "unknown backbone"),
        (None, ["extract", "{A}", "{A}", "--layers", "layer9"], 2, "no layer"),
        (None, ["extract", "{A}", "{A}", "--size", "16", "--layers", "features.17"], 2, "smaller than one feature cell"),
        ("csv", ["extract", "--pairs", "{tmp}/bad.csv"], 1, "row 3"),
        (None, ["flow", "--method", "magic"], 2, "--method"),
    ],
)
def test_bad_input_gives_one_clear_line_and_the_right_code(tmp_path, setup, args, code, message):
    if setup == "text":
        (tmp_path / "bad.png").write_text("not an image at all")
    elif setup == "truncated":
        (tmp_path / "bad.png").write_bytes(A.read_bytes()[:2000])
    elif setup == "csv":
        (tmp_path / "bad.csv").write_text(f"source_image,target_image\n{A},{B}\n{A}\n")
    args = [a.replace("{A}", str(A)).replace("{tmp}", str(tmp_path)) for a in args]
    r = run(args, input=b"")
    assert r.exit_code == code, r.output
    err = _err(r)
    assert message in err
    assert "Traceback" not in err


def test_wrong_stage_record_is_rejected(self_pair_flow, tmp_path):
    from semcorr.io.stream import RecordWriter

    with RecordWriter(tmp_path / "flow.h5", "t") as w:
        w.write(self_pair_flow)
    r = run(["correlate", tmp_path / "flow.h5", "-o", tmp_path / "c.h5"])
    assert r.exit_code == 1 and "has no features" in _err(r)
    assert not (tmp_path / "c.h5").exists()


def test_grayscale_rgba_and_16bit_images_are_converted(tmp_path):
    base = Image.open(A).convert("RGB").resize((96, 64))
    base.convert("L").save(tmp_path / "g.png")
    base.convert("RGBA").save(tmp_path / "rgba.png")
    arr16 = (np.asarray(base.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(arr16).save(tmp_path / "i16.png")
    r = run(["extract", tmp_path / "g.png", tmp_path / "rgba.png", "--size", "64", "--layers", "features.6", "-o", tmp_path / "a.h5"])
    assert r.exit_code == 0, r.output
    r = run(["extract", tmp_path / "i16.png", tmp_path / "g.png", "--size", "64", "--layers", "features.6", "-o", tmp_path / "b.h5"])
    assert r.exit_code == 0, r.output
    (a,) = list(iter_records(tmp_path / "a.h5"))
    (b,) = list(iter_records(tmp_path / "b.h5"))
    # the 16-bit image and the 8-bit grayscale image give the same features
    assert np.allclose(b.features["src"]["features.6"], a.features["src"]["features.6"], atol=1e-3)


def test_real_unix_pipe_between_processes(tmp_path):
    cmd = (
        f"{sys.executable} -m semcorr_cli.main extract '{A}' '{B}' --size 128 | "
        f"{sys.executable} -m semcorr_cli.main correlate | "
        f"{sys.executable} -m semcorr_cli.main flow --method argmax | "
        f"{sys.executable} -m semcorr_cli.main warp --image '{A}' -o '{tmp_path}/w.png'"
    )
    p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr
    assert Image.open(tmp_path / "w.png").size == Image.open(B).size


def test_writing_binary_to_a_terminal_is_refused():
    from semcorr.errors import UsageError
    from semcorr.io.stream import RecordWriter

    class Tty(io.BytesIO):
        def isatty(self):
            return True

    with pytest.raises(UsageError, match="terminal"):
        with RecordWriter(None, "x", stdout=Tty()):
            pass


def test_image_smaller_than_a_feature_cell_is_refused(tmp_path):
    Image.new("RGB", (8, 40), (200, 10, 10)).save(tmp_path / "tiny.png")
    r = run(["extract", A, tmp_path / "tiny.png", "--size", "64"])
    assert r.exit_code == 1 and "smaller than one feature cell" in _err(r)


def test_large_jpeg_is_decoded_reduced_but_keeps_its_original_size(tmp_path):
    big = Image.open(A).convert("RGB").resize((2400, 1600))
    big.save(tmp_path / "big.jpg", quality=90)
    from semcorr.images import load_image, original_size

    img = load_image(tmp_path / "big.jpg", reduce_to=128)
    assert original_size(img) == (1600, 2400)
    assert img.width < 2400 and min(img.size) >= 128
    r = run(["extract", tmp_path / "big.jpg", A, "--size", "128", "-o", tmp_path / "f.h5"])
    assert r.exit_code == 0, r.output
    (rec,) = list(iter_records(tmp_path / "f.h5"))
    assert rec.src_size == (1600, 2400)


def test_batched_extraction_equals_one_pair_at_a_time(tmp_path):
    csv = tmp_path / "pairs.csv"
    csv.write_text("source_image,target_image\nCars_006a.png,Cars_007a.png\nCars_007a.png,Cars_008b.png\nCars_008b.png,Cars_006a.png\n")
    args = ["extract", "--pairs", csv, "--root", A.parent, "--size", "96", "--layers", "features.10"]
    r1 = run(args + ["-o", tmp_path / "a.h5"])
    r2 = run(args + ["--batch-size", "2", "-o", tmp_path / "b.h5"])
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    for a, b in zip(iter_records(tmp_path / "a.h5"), iter_records(tmp_path / "b.h5")):
        assert a.src_path == b.src_path
        assert np.allclose(a.features["trg"]["features.10"], b.features["trg"]["features.10"], atol=1e-4)


def _extract_then_remove_images(tmp_path, *extract_args):
    """A features record of copies of A and B that are deleted afterwards (its layers cannot be computed again)."""
    import shutil

    a, b = shutil.copy(A, tmp_path / "a.png"), shutil.copy(B, tmp_path / "b.png")
    r = run(["extract", a, b, *extract_args])
    assert r.exit_code == 0, r.output
    for p in (a, b):
        Path(p).unlink()


def test_flow_with_a_model_names_the_extract_it_needs(tmp_path):
    # default extract layers (the hypercolumn) lack SFNet's features.17 and the images are gone:
    # exit 2 and the fix, no output file
    _extract_then_remove_images(tmp_path, "--size", "128", "-o", tmp_path / "f.h5")
    r = run(["flow", tmp_path / "f.h5", "--model", "sfnet", "-o", tmp_path / "flow.h5"])
    assert r.exit_code == 2
    assert "has no layer 'features.17', which sfnet reads" in _err(r) and "extract with --model sfnet" in _err(r)
    assert "a.png' is not there" in _err(r)
    assert not (tmp_path / "flow.h5").exists()


def test_refine_and_show_name_the_model_and_the_command_on_bad_records(tmp_path):
    _extract_then_remove_images(tmp_path, "--size", "64", "--layers", "features.6", "-o", tmp_path / "f6.h5")
    r = run(["refine", tmp_path / "f6.h5", "--model", "ncnet", "-o", tmp_path / "r.h5"])
    assert r.exit_code == 2 and "has no layer 'features.13', which ncnet reads" in _err(r)
    assert "extract with --model ncnet" in _err(r) and not (tmp_path / "r.h5").exists()
    r = run(["correlate", tmp_path / "f6.h5", "-o", tmp_path / "c.h5"])
    assert r.exit_code == 0, r.output
    r = run(["show", tmp_path / "c.h5", "--model", "ncnet", "--point", "10,10", "-o", tmp_path / "s.png"])
    assert r.exit_code == 1 and "show needs the output of 'semcorr extract'" in _err(r)
    assert not (tmp_path / "s.png").exists()
