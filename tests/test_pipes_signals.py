"""Ending early, with real processes: a closed downstream pipe ends the stages quietly with status 141,
Ctrl-C (SIGINT to the whole pipeline, as a terminal sends it) with "interrupted" once and status 130;
neither leaves an output file behind."""

import os
import signal
import subprocess
import sys
import time

from conftest import REPO, willow_image

A = willow_image("Cars_006a.png")
B = willow_image("Cars_007a.png")
SEMCORR = [sys.executable, "-m", "semcorr_cli.main"]
ENV = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def pair_list(tmp_path, n: int):
    """A pair list of ``n`` copies of one small PF-WILLOW pair (tiny records at --size 32)."""
    path = tmp_path / "pairs.csv"
    path.write_text("source_image,target_image\n" + f"{A},{B}\n" * n)
    return path


def extract(pairs, *more):
    return [*SEMCORR, "extract", "--pairs", str(pairs), "--size", "32", "--layers", "features.6", *more]


def test_a_closed_downstream_pipe_ends_every_stage_quietly_with_141(tmp_path):
    # extract --pairs P | correlate | head -c 100: some 60 records, far more than head and the pipe buffers take
    p1 = subprocess.Popen(extract(pair_list(tmp_path, 60)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, cwd=tmp_path)
    p2 = subprocess.Popen([*SEMCORR, "correlate"], stdin=p1.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, cwd=tmp_path)
    p1.stdout.close()
    head = subprocess.run(["head", "-c", "100"], stdin=p2.stdout, capture_output=True, timeout=120)
    p2.stdout.close()
    assert head.stdout.startswith(b"SEMCORR\n") and len(head.stdout) == 100
    for p in (p2, p1):  # correlate meets the closed pipe first, then extract meets the closed correlate
        assert p.wait(timeout=120) == 141
        assert p.stderr.read() == b""  # no message, no traceback
    assert sorted(os.listdir(tmp_path)) == ["pairs.csv"]


def test_ctrl_c_mid_stream_says_interrupted_once_and_leaves_no_output_file(tmp_path):
    # extract --pairs P | correlate -o out.h5, with enough pairs to be still running when Ctrl-C comes
    pairs = pair_list(tmp_path, 3000)
    p1 = subprocess.Popen(extract(pairs), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, cwd=tmp_path, start_new_session=True)
    p2 = subprocess.Popen(
        [*SEMCORR, "correlate", "-o", "out.h5"], stdin=p1.stdout, stderr=subprocess.PIPE, env=ENV, cwd=tmp_path, start_new_session=True
    )
    p1.stdout.close()
    # mid-stream: correlate's temporary output has begun to hold records
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        tmp = [f for f in os.listdir(tmp_path) if f.startswith(".out.h5")]
        if tmp and os.path.getsize(tmp_path / tmp[0]) > 20_000:
            break
        assert p1.poll() is None and p2.poll() is None, "a stage ended before it was interrupted"
        time.sleep(0.05)
    else:
        raise AssertionError("correlate wrote nothing in 120 s")
    for p in (p1, p2):  # what a terminal does on Ctrl-C: SIGINT to every process of the pipeline
        os.kill(p.pid, signal.SIGINT)
    for p in (p1, p2):
        assert p.wait(timeout=60) == 130
        err = p.stderr.read().decode()
        assert err == "semcorr: error: interrupted\n", err
    assert sorted(os.listdir(tmp_path)) == ["pairs.csv"]  # neither out.h5 nor its temporary file
