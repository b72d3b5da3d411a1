"""Stages inside a pipe share the cores instead of each taking them all (semcorr_cli.common.pipe_thread_count)."""

import os
import subprocess
import sys

from semcorr_cli.common import pipe_thread_count


def test_a_streaming_stage_in_a_pipe_takes_its_share_of_the_cores():
    assert pipe_thread_count("correlate", True, True, 2, {}) == 1
    assert pipe_thread_count("extract", False, True, 16, {}) == 5
    assert pipe_thread_count("flow", True, False, 12, {}) == 4


def test_defaults_stay_outside_pipes_for_other_commands_and_when_the_user_chose():
    assert pipe_thread_count("flow", False, False, 2, {}) is None  # files or a terminal
    assert pipe_thread_count("train", True, True, 2, {}) is None  # not a streaming stage
    assert pipe_thread_count("evaluate", False, True, 2, {}) is None
    assert pipe_thread_count("flow", True, True, 2, {"OMP_NUM_THREADS": "2"}) is None
    assert pipe_thread_count("flow", True, True, 2, {"MKL_NUM_THREADS": "4"}) is None


CODE = (
    "import os, sys; from semcorr_cli.common import share_cores_in_pipes; "
    "share_cores_in_pipes(['semcorr', sys.argv[1]]); sys.stderr.write(os.environ.get('OMP_NUM_THREADS', 'unset'))"
)


def _omp(command: str, stdin, stdout) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    r = subprocess.run([sys.executable, "-c", CODE, command], stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env, text=True)
    return r.stderr


def test_pipes_are_detected_on_the_real_file_descriptors(tmp_path):
    expected = str(max(1, (os.cpu_count() or 1) // 3))
    assert _omp("correlate", subprocess.PIPE, subprocess.PIPE) == expected
    with open(tmp_path / "in", "w") as fin, open(tmp_path / "out", "w") as fout:
        assert _omp("correlate", fin, fout) == "unset"  # regular files: torch's default
