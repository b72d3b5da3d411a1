"""Thin typer front end of semcorr: parse options, call ``core``, print."""
