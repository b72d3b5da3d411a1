"""One atomic-output helper serves every writer: an error or Ctrl-C in the middle of a write leaves the old file and no temporary."""

from pathlib import Path

import pytest

import semcorr.evaluate.reports as reports
from semcorr.errors import UsageError
from semcorr.files import atomic_output, atomic_write_text
from semcorr.io.records import PairRecord
from semcorr.io.stream import RecordWriter, iter_records, write_records
from test_evaluate_cli import invoke, make_custom, write_shift_flows


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_output_renames_on_success_and_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    with atomic_output(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".a.txt") and not target.exists()
        tmp.write_text("new")
    assert target.read_text() == "new"
    for error in (ValueError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(error)):
            with atomic_output(target) as tmp:
                tmp.write_text("half")
                raise error
        assert target.read_text() == "new" and leftovers(target.parent) == []
    atomic_write_text(target, "text")
    assert target.read_text() == "text"


@pytest.mark.parametrize("failing", [0, 1, 2])
def test_evaluate_interrupted_while_writing_its_reports_keeps_the_old_ones(tmp_path, monkeypatch, failing):
    make_custom(tmp_path)
    write_shift_flows(tmp_path / "f.h5", [("s.png", "t.png", (30, 40), (30, 40))])
    out = tmp_path / "out"
    out.mkdir()
    names = ["r.json", "r.csv", "c.png"]
    for name in names:
        (out / name).write_text("old " + name)
    written = []
    real = reports.write_bytes_durably

    def write_then_interrupt(tmp, data):
        if len(written) == failing:
            Path(tmp).write_bytes(data[: len(data) // 2])  # half of the file is on the disk
            raise KeyboardInterrupt
        written.append(tmp)
        real(tmp, data)

    monkeypatch.setattr(reports, "write_bytes_durably", write_then_interrupt)
    r = invoke("-d", "custom", "--root", tmp_path, "--flows", tmp_path / "f.h5", "-q",
               "--json", out / "r.json", "--csv", out / "r.csv", "--plot", out / "c.png")  # fmt: skip
    assert r.exit_code == 130 and "interrupted" in r.output
    assert [(out / n).read_text() for n in names] == ["old " + n for n in names]
    assert leftovers(out) == [] and len(written) == failing
    # the same command, not interrupted, replaces all three
    monkeypatch.setattr(reports, "write_bytes_durably", real)
    r = invoke("-d", "custom", "--root", tmp_path, "--flows", tmp_path / "f.h5", "-q", "-o", out / "r.json", "-o", out / "r.csv", "-o", out / "c.png")
    assert r.exit_code == 0, r.output
    assert (out / "r.json").read_text().startswith("{") and (out / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert leftovers(out) == []


def test_an_impossible_report_leaves_every_report_as_it_was(tmp_path):
    """A mask protocol has no PCK curves: the plot is refused before r.json is replaced."""
    from semcorr.protocols import get_protocol
    from test_evaluate_summary import _run

    run = _run()
    run.header["protocol"] = get_protocol("caltech-101").to_dict()
    (tmp_path / "r.json").write_text("old")
    with pytest.raises(UsageError, match="draws PCK curves"):
        reports.write_reports(run, [("json", tmp_path / "r.json"), ("plot", tmp_path / "c.png")])
    assert (tmp_path / "r.json").read_text() == "old" and not (tmp_path / "c.png").exists() and leftovers(tmp_path) == []


def records(n, fail_after=None):
    for i in range(n):
        if i == fail_after:
            raise KeyboardInterrupt
        yield PairRecord(f"p{i}", "a.png", "b.png", (4, 4), (4, 4))


@pytest.mark.parametrize("name", ["r.h5", "r.semcorr"])
def test_record_writer_interrupted_keeps_the_old_file(tmp_path, name):
    path = tmp_path / name
    write_records(path, records(1), "old")
    before = path.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        write_records(path, records(3, fail_after=2), "new")  # two records written, then Ctrl-C
    assert path.read_bytes() == before and leftovers(tmp_path) == []
    with pytest.raises(RuntimeError):
        with RecordWriter(path, "new") as w:
            w.write(next(records(1)))
            raise RuntimeError("a stage failed")
    assert path.read_bytes() == before and leftovers(tmp_path) == []
    assert write_records(path, records(3), "new") == 3
    assert [r.pair_id for r in iter_records(path)] == ["p0", "p1", "p2"] and leftovers(tmp_path) == []
