"""semcorr's library: backbones, correlation, flow, warping, record I/O, models, datasets, metrics.

Importable without the CLI (``semcorr_cli``).
"""

__version__ = "0.1.0"
