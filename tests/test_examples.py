"""Every command's --help has examples, and every README/--help example names real commands and current options.

Running them is `python benchmarks/run_examples.py` (minutes); this checks, in a second, that
none has drifted from the commands: an unknown command, an option a command does not have,
or an old spelling that is only kept as a hidden alias.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys

import pytest
import typer

from conftest import REPO
from semcorr_cli.main import app

spec = importlib.util.spec_from_file_location("run_examples", REPO / "benchmarks" / "run_examples.py")
run_examples = importlib.util.module_from_spec(spec)
sys.modules["run_examples"] = run_examples  # dataclasses look their module up
spec.loader.exec_module(run_examples)

COMMANDS = typer.main.get_command(app).commands


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_help_has_examples(name):
    text = COMMANDS[name].help or ""
    assert "Examples:" in text, f"'semcorr {name} --help' has no Examples section"
    after = text.split("Examples:", 1)[1]
    assert re.search(r"^  (semcorr|torchrun|for) ", after, re.M), name


def semcorr_calls(text: str) -> list[list[str]]:
    """The argument lists of every ``semcorr`` call in a shell line.

    Tokenised as the shell quotes (``shlex`` with punctuation), split at ``|``, ``;``,
    ``&&``, parentheses and loop keywords; a quoted command line (``sh -c '…'``) is
    searched too.
    """
    lex = shlex.shlex(text.replace("$", "_"), posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    calls, words = [], []
    for tok in list(lex) + [";"]:
        if tok in ("do", "done") or set(tok) <= set("|;&()<>"):
            if words and words[0] == "semcorr":
                calls.append(words[1:])
            words = []
        elif "semcorr " in tok:
            calls += semcorr_calls(tok)
        else:
            words.append(tok)
    return calls


def visible_options(command) -> set[str]:
    return {o for p in command.params if not getattr(p, "hidden", False) for o in list(p.opts) + list(p.secondary_opts)}


def test_examples_use_real_commands_and_their_current_options():
    examples = [ex for ex in run_examples.all_examples() if ex.skip is None or any(w in ex.skip for w in ("authors'", "dataset", "recipe"))]
    assert len(examples) > 30
    checked = 0
    for ex in examples:
        for args in semcorr_calls(ex.text):
            if args == ["--help"] or not args:
                continue
            assert args[0] in COMMANDS, f"{ex.where}: unknown command '{args[0]}' in: {ex.text}"
            known = visible_options(COMMANDS[args[0]])
            for word in args[1:]:
                if word.startswith("-") and word != "-":
                    assert word.split("=")[0] in known, f"{ex.where}: 'semcorr {args[0]}' has no option {word} (in: {ex.text})"
            checked += 1
    assert checked > 40


def test_skipped_examples_say_why_and_runnable_ones_need_only_the_sandbox():
    examples = run_examples.all_examples()
    skipped = [ex for ex in examples if ex.skip]
    assert skipped and all(ex.skip for ex in skipped)
    runnable = [ex for ex in examples if not ex.skip]
    # what the sandbox provides, and what earlier examples make
    provided = {"a.jpg", "b.jpg", "pairs.csv", "points.csv", "images/"}
    for ex in runnable:
        words = shlex.split(ex.text.replace("$", "_"))
        for k, name in enumerate(words):
            if re.search(r"\.(jpg|png|csv)$", name) and not (k and words[k - 1] == "-o"):  # an input, not an output
                assert name in provided or name.startswith("../shared/data/"), f"{ex.where}: '{name}' comes from nowhere"
