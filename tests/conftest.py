"""Shared fixtures: the read-only datasets beside the checkout, and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SEMCORR_SHARED_DATA", REPO.parent / "shared" / "data"))
WILLOW = SHARED / "pf-willow-dev"
TSS = SHARED / "tss-sample" / "TSS_CVPR2016"
CALTECH = SHARED / "caltech-101-subset" / "101_ObjectCategories"
PASCAL_SPLITS = SHARED / "pf-pascal-splits"
SPAIR_FORMAT = SHARED / "spair-71k-format"

# One intra-op thread: on a shared 2-core machine torch's thread pool mostly waits,
# and subprocesses started by tests inherit the setting.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


def willow_image(name: str = "Cars_006a.png", folder: str = "car(G)") -> Path:
    return WILLOW / "PF-dataset" / folder / name


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"the shared datasets are missing: expected {SHARED} (set SEMCORR_SHARED_DATA)")
    return SHARED


@pytest.fixture(scope="session")
def mobilenet():
    """The offline default backbone, built once per test session."""
    from semcorr.backbones import build_backbone

    return build_backbone("mobilenet_v2")
