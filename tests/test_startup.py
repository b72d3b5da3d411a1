"""The console script's start-up: it registers only the module of the command it runs.

``semcorr <stage> --help`` must stay quick (issue 18's target is under 0.5 s), so the
entry point imports only the named command's module and never pydantic (which typer
pulls in to coerce values). These tests check the command table against the modules
and what a fresh interpreter has imported after ``--help``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import typer

from semcorr_cli import main as cli_main

PROBE = """
import atexit, json, sys
def report():
    mods = sorted(m for m in sys.modules if m.startswith(("semcorr_cli.", "pydantic", "torch", "numpy")))
    sys.stderr.write("MODULES " + json.dumps(mods) + "\\n")
atexit.register(report)
sys.argv = ["semcorr"] + json.loads(sys.argv[1])
from semcorr_cli.main import main
main()
"""


def _run(args: list[str]) -> tuple[int, str, list[str]]:
    r = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True)
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("MODULES ")][-1]
    return r.returncode, r.stdout, json.loads(line[len("MODULES "):])


def test_command_table_names_what_each_module_registers():
    for module in cli_main.COMMAND_MODULES:
        application = typer.Typer()
        __import__(f"semcorr_cli.{module}", fromlist=["register"]).register(application)
        registered = [c.name for c in application.registered_commands]
        assert registered == [name for name, m in cli_main.COMMANDS.items() if m == module], module


def test_full_app_has_every_command_in_table_order():
    names = [c.name for c in cli_main.app.registered_commands]
    assert names == list(cli_main.COMMANDS)


def test_stage_help_imports_only_its_module_and_no_pydantic():
    rc, out, mods = _run(["correlate", "--help"])
    assert rc == 0
    assert "Usage:" in out and "correlate" in out and "--mode" in out
    assert [m for m in mods if m.startswith("semcorr_cli.")] == ["semcorr_cli.common", "semcorr_cli.correlate", "semcorr_cli.main"]
    assert not [m for m in mods if m.startswith(("pydantic", "torch", "numpy"))]


def test_alias_registers_its_module():
    rc, out, mods = _run(["extract", "--help"])
    assert rc == 0 and "--model" in out
    assert "semcorr_cli.extract" in mods and "semcorr_cli.flow" not in mods


def test_root_help_and_unknown_command_get_every_command():
    rc, out, mods = _run(["--help"])
    assert rc == 0
    for name in cli_main.COMMANDS:
        assert name in out
    assert {f"semcorr_cli.{m}" for m in cli_main.COMMAND_MODULES} <= set(mods)
    rc, _, mods = _run(["corelate"])
    assert rc == 2
    assert "semcorr_cli.flow" in mods
