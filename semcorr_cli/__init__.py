"""Thin typer front end of semcorr: parse options, call the library (``semcorr``), print."""
