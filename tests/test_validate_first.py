"""Inputs and outputs are checked before any work: bad rows by file and row number, --skip-bad, unwritable outputs.

"Before any work" is checked in a real process with ``python -X importtime``:
the refusal comes without torch ever being imported, so no model can have
been built. Unwritable outputs are made robustly, also for root (who ignores
file permissions): a path that runs through a regular file (``afile/out.h5``);
a 0o500 folder is tried too where permissions are enforced, and the "not
writable" sentence is checked by making the operating system's answer a
refusal (``tempfile.mkstemp`` raising PermissionError).
"""

import json
import os
import subprocess
import sys
import time

import h5py
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import REPO, willow_image
from semcorr.checks import BadRow, BadRowsError, check_output_dir, check_output_file
from semcorr_cli.main import app

A = willow_image("Cars_006a.png")
B = willow_image("Cars_007a.png")
SEMCORR = [sys.executable, "-X", "importtime", "-m", "semcorr_cli.main"]
ENV = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
SMALL = ["--size", "64", "--layers", "features.4"]


def run(args):
    return CliRunner().invoke(app, [str(a) for a in args])


def run_process(args, cwd):
    """Run semcorr in a fresh process: (exit status, semcorr's stderr lines, modules imported, seconds)."""
    start = time.monotonic()
    p = subprocess.run([*SEMCORR, *map(str, args)], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=120)
    seconds = time.monotonic() - start
    lines = p.stderr.splitlines()
    imported = {line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")}
    return p.returncode, [line for line in lines if not line.startswith("import time:")], imported, seconds


def pair_list(path, rows):
    path.write_text("source_image,target_image\n" + "".join(f"{r}\n" for r in rows))
    return path


# ----------------------------------------------------------------------------- refused before any work


def test_a_bad_row_is_named_by_file_and_row_before_torch_is_imported(tmp_path):
    csv = pair_list(tmp_path / "pairs.csv", [f"{A},{B}", f"{A},{B}", f"{A},gone.png", f"{B},{A}"])
    code, err, imported, seconds = run_process(["extract", "--pairs", csv, "-o", tmp_path / "f.h5"], tmp_path)
    assert code == 1
    assert err[0] == (
        f"semcorr: error: '{csv}' row 4, column 'target_image': image '{tmp_path / 'gone.png'}' does not exist; "
        "nothing was computed (--skip-bad computes the 3 other pairs)"
    )
    assert len(err) == 1 and not (tmp_path / "f.h5").exists()
    assert "typer" in imported and "semcorr.io.pair_list" in imported  # the import log was read
    assert "torch" not in imported and "torchvision" not in imported and "semcorr.pipeline" not in imported
    assert seconds < 10  # Python and typer starting; with torch and a backbone it took 15-40 s


def test_a_missing_image_and_a_missing_file_are_refused_without_torch(tmp_path):
    for args in (["extract", "nosuch.png", A], ["warp", "nosuch.h5", "--image", A, "-o", "w.png"], ["flow", "nosuch.h5", "-o", "f.h5"]):
        code, err, imported, _ = run_process(args, tmp_path)
        assert code == 1 and len(err) == 1 and "does not exist" in err[0], err
        assert "torch" not in imported, args


def test_evaluate_lists_the_bad_rows_of_a_custom_list_before_loading_the_model(tmp_path):
    Image.new("RGB", (40, 30)).save(tmp_path / "s.png")
    (tmp_path / "notes.png").write_text("not an image")
    rows = ["s.png,s.png,1;2,1;2,1;2,1;2", "s.png,gone.png,1;2,1;2,1;2,1;2", "s.png,s.png,1;x,1;2,1;2,1;2", "notes.png,s.png,1,1,1,1", "s.png"]
    (tmp_path / "pairs.csv").write_text("source_image,target_image,XA,YA,XB,YB\n" + "\n".join(rows) + "\n")
    code, err, imported, _ = run_process(["evaluate", "-d", "custom", "--root", ".", "--model", "nn", "--json", "r.json"], tmp_path)
    assert code == 1 and "torch" not in imported
    assert err == [
        "semcorr: error: 4 of 5 pairs are bad, so nothing was computed (--skip-bad computes the 1 other pair):",
        "  'pairs.csv' row 3, column 'target_image': image 'gone.png' does not exist",
        "  'pairs.csv' row 4, column 'XA': '1;x' is not a ';'-separated list of numbers",
        "  'pairs.csv' row 5, column 'source_image': 'notes.png' is not an image file PIL can read",
        "  'pairs.csv' row 6, column 'target_image': missing (the row has 1 field)",
    ]
    assert not (tmp_path / "r.json").exists()


def test_a_long_list_of_bad_rows_shows_the_first_five_and_counts_the_rest(tmp_path):
    csv = pair_list(tmp_path / "pairs.csv", [f"{A},{B}"] + [f"{A},gone{i}.png" for i in range(7)])
    r = run(["extract", "--pairs", csv, "-o", tmp_path / "f.h5"])
    lines = r.stderr.splitlines()
    assert r.exit_code == 1 and lines[0] == "semcorr: error: 7 of 8 pairs are bad, so nothing was computed (--skip-bad computes the 1 other pair):"
    assert [line.split(",")[0] for line in lines[1:6]] == [f"  '{csv}' row {n}" for n in range(3, 8)]
    assert lines[6:] == ["  … and 2 more"]


def test_a_missing_root_is_one_sentence_not_one_per_row(tmp_path):
    csv = pair_list(tmp_path / "pairs.csv", ["a.png,b.png"] * 9)
    r = run(["extract", "--pairs", csv, "--root", tmp_path / "nowhere", "-o", tmp_path / "f.h5"])
    assert r.exit_code == 1
    assert r.stderr == f"semcorr: error: the image folder '{tmp_path / 'nowhere'}' of pair list '{csv}' does not exist\n"


def test_a_list_with_only_bad_rows_is_refused_even_with_skip_bad(tmp_path):
    csv = pair_list(tmp_path / "pairs.csv", [f"{A},gone.png"])
    r = run(["extract", "--pairs", csv, "--skip-bad", "-o", tmp_path / "f.h5"])
    assert r.exit_code == 1 and r.stderr.strip().endswith("does not exist; nothing was computed")
    assert not (tmp_path / "f.h5").exists()


# ----------------------------------------------------------------------------- --skip-bad


def test_skip_bad_writes_exactly_the_good_pairs_and_lists_the_skipped_rows(tmp_path):
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(A.read_bytes()[:3000])  # a valid header: caught only when decoded, and still named by its row
    csv = pair_list(tmp_path / "pairs.csv", [f"{A},{B}", f"{A},gone.png", f"{B}", f"{B},{A}", f"{A},{truncated}"])
    r = run(["extract", "--pairs", csv, "--skip-bad", "--batch-size", "2", *SMALL, "-o", tmp_path / "f.h5"])
    assert r.exit_code == 1, r.output
    lines = r.stderr.splitlines()
    assert lines[0] == "semcorr: warning: skipping 2 bad pairs of 5; they are listed at the end"
    assert lines[-4:] == [
        "semcorr: error: skipped 3 bad pairs of 5 (the 2 other pairs went to " + str(tmp_path / "f.h5") + "):",
        f"  '{csv}' row 3, column 'target_image': image '{tmp_path / 'gone.png'}' does not exist",
        f"  '{csv}' row 4, column 'target_image': missing (the row has 1 field)",
        f"  '{csv}' row 6: image '{truncated}' is unreadable or truncated (image file is truncated)",
    ]
    with h5py.File(tmp_path / "f.h5") as f:  # the good pairs keep the ids of their place in the list
        kept = {k: (g.attrs["src_path"], g.attrs["trg_path"]) for k, g in f["pairs"].items()}
    assert kept == {"000000": (str(A), str(B)), "000003": (str(B), str(A))}


def test_without_skip_bad_a_pair_failing_late_is_named_by_its_row_and_nothing_is_kept(tmp_path):
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(A.read_bytes()[:3000])
    csv = pair_list(tmp_path / "pairs.csv", [f"{A},{B}", f"{truncated},{B}"])
    r = run(["extract", "--pairs", csv, *SMALL, "-o", tmp_path / "f.h5"])
    assert r.exit_code == 1
    assert r.stderr.startswith(f"semcorr: error: '{csv}' row 3: image '{truncated}' is unreadable or truncated")
    assert "(--skip-bad goes on past bad pairs)" in r.stderr and not (tmp_path / "f.h5").exists()


def test_evaluate_skip_bad_scores_the_good_pairs_and_reports_the_skipped(tmp_path):
    Image.new("RGB", (40, 30)).save(tmp_path / "s.png")
    rows = ["s.png,s.png,5;10,5;10,5;10,5;10", "s.png,s.png,5;x,5;10,5;10,5;10", "s.png,s.png,5;10,5;10,20;10,5;10"]
    (tmp_path / "pairs.csv").write_text("source_image,target_image,XA,YA,XB,YB\n" + "\n".join(rows) + "\n")
    with h5py.File(tmp_path / "f.h5", "w") as f:  # the identity flow: pair 1 exact, pair 3 off by 15 px at one point
        from semcorr.geometry import pixel_grid

        f.attrs["semcorr_format"] = 1
        g = f.create_group("pairs").create_group("r0")
        g.attrs["src_path"], g.attrs["trg_path"] = "s.png", "s.png"
        g.attrs["src_size"] = g.attrs["trg_size"] = (30, 40)
        g.create_dataset("flow/src_to_trg", data=pixel_grid(30, 40).numpy())
        g.create_dataset("flow/trg_to_src", data=pixel_grid(30, 40).numpy())
    args = ["evaluate", "-d", "custom", "--root", tmp_path, "--flows", tmp_path / "f.h5", "--alpha", "0.1", "-q"]
    r = run([*args, "--skip-bad", "--results", tmp_path / "res.jsonl", "--json", tmp_path / "r.json"])
    assert r.exit_code == 1
    assert r.stderr.splitlines() == [
        "semcorr: error: skipped 1 bad pair of 3 (the figures are of the other 2):",
        f"  '{tmp_path / 'pairs.csv'}' row 3, column 'XA': '5;x' is not a ';'-separated list of numbers",
    ]
    results = [json.loads(line) for line in (tmp_path / "res.jsonl").read_text().splitlines()[1:]]
    assert [p["index"] for p in results] == [0, 2]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["pairs_scored"] == 2 and [s["index"] for s in report["skipped"]] == [1]
    # L = 40 → 4 px at α 0.1: pair 1 both points right, pair 3 one of two
    assert report["summary"]["overall"]["pck_pair"] == {"0.1": pytest.approx(75.0)}
    r = run(args)  # without --skip-bad: nothing scored
    assert r.exit_code == 1 and "nothing was computed (--skip-bad computes the 2 other pairs)" in r.stderr


# ----------------------------------------------------------------------------- unwritable outputs


@pytest.mark.parametrize(
    "args",
    [
        ["extract", "{A}", "{B}", "-o", "{out}/f.h5"],
        ["extract", "--pairs", "{tmp}/pairs.csv", "-o", "{out}/f.h5"],
        ["correlate", "{tmp}/in.h5", "-o", "{out}/c.h5"],
        ["flow", "{tmp}/in.h5", "-o", "{out}/c.h5"],
        ["evaluate", "-d", "custom", "--root", "{tmp}", "--model", "nn", "--json", "{out}/r.json"],
        ["evaluate", "-d", "custom", "--root", "{tmp}", "--flows", "{tmp}/in.h5", "--results", "{out}/r.jsonl"],
        ["train", "--model", "toy", "--data", "{tmp}", "--out", "{out}/run"],
        ["warp", "{tmp}/in.h5", "--image", "{A}", "-o", "{out}/w.png"],
        ["show", "--model", "ncnet", "--point", "1,1", "{A}", "{B}", "-o", "{out}/s.png"],
        ["convert-weights", "--model", "ncnet", "{tmp}/in.h5", "{out}/w.safetensors"],
    ],
)
def test_an_output_under_a_regular_file_is_one_sentence_before_any_work(tmp_path, args):
    (tmp_path / "afile").write_text("a regular file, not a folder")
    (tmp_path / "in.h5").write_bytes(b"")  # never read: the output is refused first
    pair_list(tmp_path / "pairs.csv", [f"{A},{B}"])
    out = tmp_path / "afile" / "sub"
    args = [a.replace("{A}", str(A)).replace("{B}", str(B)).replace("{tmp}", str(tmp_path)).replace("{out}", str(out)) for a in args]
    r = run(args)
    assert r.exit_code == 1, r.output
    what = "output folder" if args[0] == "train" else "output"
    target = [a for a in args if a.startswith(str(out))][0]
    assert r.stderr == f"semcorr: error: cannot write {what} '{target}': '{tmp_path / 'afile'}' is a file, not a folder\n"


def test_an_unwritable_folder_is_refused_in_one_sentence(tmp_path, monkeypatch):
    import tempfile

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", dir)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # what a read-only mount or a 0o500 folder answers
    r = run(["extract", A, B, "-o", tmp_path / "ro" / "f.h5"])
    assert r.exit_code == 1
    assert r.stderr == f"semcorr: error: cannot write output '{tmp_path / 'ro' / 'f.h5'}': the folder '{tmp_path}' is not writable (Permission denied)\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0o500 folder")
def test_a_read_only_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    try:
        r = run(["evaluate", "--merge", tmp_path / "none.jsonl", "--json", ro / "r.json"])
        assert r.exit_code == 1 and "is not writable (Permission denied)" in r.stderr
    finally:
        ro.chmod(0o700)


def test_output_checks_leave_nothing_behind_and_create_no_folder(tmp_path):
    check_output_file(tmp_path / "new" / "deeper" / "out.h5")
    check_output_dir(tmp_path / "run")
    check_output_file(tmp_path / "out.h5")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(Exception, match="is a folder; give a file name"):
        check_output_file(tmp_path)


def test_bad_rows_error_words_one_row_as_one_sentence():
    one = BadRowsError([BadRow(2, "'p.csv' row 4, column 'x': empty")], 9, "add a flag")
    assert str(one) == "'p.csv' row 4, column 'x': empty; nothing was computed (add a flag)"
    assert one.exit_code == 1
