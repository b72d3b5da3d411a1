"""SFNet's loss terms (semcorr.losses.sfnet): identities, hand-computed cases, invariants."""

from __future__ import annotations

import pytest
import torch

from semcorr.geometry import cell_grid
from semcorr.losses.sfnet import (
    flow_consistency,
    flow_smoothness,
    forward_differences,
    grid_to_displacement,
    mask_consistency,
    masks_on_grid,
    sfnet_objective,
)

H = W = 5
STEP = 2.0 / (W - 1)  # one cell in normalised coordinates


def identity(b: int = 2, h: int = H, w: int = W) -> torch.Tensor:
    return cell_grid(h, w).expand(b, h, w, 2).clone()


def full_mask(b: int = 2, h: int = H, w: int = W) -> torch.Tensor:
    return torch.ones(b, 1, h, w)


def shifted(dx_cells: float, b: int = 2) -> torch.Tensor:
    g = identity(b)
    g[..., 0] += dx_cells * STEP
    return g


def test_identity_pair_has_zero_loss_in_every_term():
    g, m = identity(), full_mask()
    assert mask_consistency(g, m, m).item() == pytest.approx(0.0, abs=1e-10)
    assert flow_consistency(g, g, m).item() == pytest.approx(0.0, abs=1e-10)
    assert flow_smoothness(g, m).item() == pytest.approx(0.0, abs=1e-10)
    total, logs = sfnet_objective(g, g, m, m)
    assert total.item() == pytest.approx(0.0, abs=1e-9)
    assert set(logs) == {"loss", "mask", "flow", "smooth"}


def test_displacement_of_identity_is_zero_and_of_a_shift_is_the_shift():
    assert torch.allclose(grid_to_displacement(identity()), torch.zeros(2, H, W, 2), atol=1e-7)
    d = grid_to_displacement(shifted(1.0))
    assert torch.allclose(d[..., 0], torch.full((2, H, W), STEP), atol=1e-6)
    assert torch.allclose(d[..., 1], torch.zeros(2, H, W), atol=1e-6)


def test_mask_consistency_of_a_one_cell_shift_is_hand_computed():
    # Source cells in the last column map outside the target: warped mask 0 there.
    # 5 of 25 cells differ by 1 → mean 0.2 per direction.
    m = full_mask()
    assert mask_consistency(shifted(1.0), m, m).item() == pytest.approx(5 / 25, abs=1e-6)
    assert mask_consistency(shifted(-1.0), m, m).item() == pytest.approx(5 / 25, abs=1e-6)


def test_mask_consistency_sees_a_foreground_mismatch():
    # Identity matches but the target object sits elsewhere.
    mask_src = torch.zeros(1, 1, H, W)
    mask_src[..., :, :2] = 1
    mask_trg = torch.zeros(1, 1, H, W)
    mask_trg[..., :, 3:] = 1
    g = identity(1)
    # 10 source-foreground cells read background, 10 background cells read foreground.
    assert mask_consistency(g, mask_src, mask_trg).item() == pytest.approx(20 / 25, abs=1e-6)


def test_flow_consistency_of_inverse_shifts_only_counts_cells_leaving_the_image():
    # s2t moves one cell right, t2s one cell left (consistent). Only the 5
    # source cells of the last column land outside (read 0): each leaves
    # ‖STEP‖², normalised by the 25 foreground cells.
    m = full_mask()
    s2t, t2s = shifted(1.0), shifted(-1.0)
    assert flow_consistency(s2t, t2s, m).item() == pytest.approx(5 * STEP**2 / 25, abs=1e-6)
    assert flow_consistency(t2s, s2t, m).item() == pytest.approx(5 * STEP**2 / 25, abs=1e-6)


def test_flow_consistency_is_positive_for_a_wrong_flow_and_normalised_by_the_foreground():
    m = full_mask()
    # Both directions shifted the same way: inconsistent. Interior cells leave (2·STEP)².
    wrong = flow_consistency(shifted(1.0), shifted(1.0), m).item()
    expected = (20 * (2 * STEP) ** 2 + 5 * STEP**2) / 25
    assert wrong == pytest.approx(expected, abs=1e-6)
    # Only the foreground counts, and it is averaged over the foreground.
    half = torch.zeros(2, 1, H, W)
    half[..., :, :2] = 1  # 10 cells per image, none leaving the image
    assert flow_consistency(shifted(1.0), shifted(1.0), half).item() == pytest.approx((2 * STEP) ** 2, abs=1e-6)
    assert flow_consistency(shifted(1.0), shifted(1.0), torch.zeros(2, 1, H, W)).item() == 0.0


def test_smoothness_is_zero_for_any_constant_flow_and_hand_computed_for_a_step():
    m = full_mask()
    assert flow_smoothness(shifted(2.0), m).item() == pytest.approx(0.0, abs=1e-7)
    g = identity()
    g[:, :, 3:, 0] += STEP  # x-flow jumps by STEP between columns 2 and 3
    # One of 4 channels (x component, x difference) is STEP on 5 cells of 25.
    assert flow_smoothness(g, m).item() == pytest.approx(5 * STEP / (4 * 25), abs=1e-7)
    # Background cells do not count.
    no_fg_at_step = m.clone()
    no_fg_at_step[..., 2] = 0
    assert flow_smoothness(g, no_fg_at_step).item() == pytest.approx(0.0, abs=1e-7)


def test_forward_differences_are_zero_on_the_last_column_and_row():
    f = torch.arange(2 * 3 * 4, dtype=torch.float32).view(1, 2, 3, 4)
    dx, dy = forward_differences(f)
    assert dx.shape == dy.shape == f.shape
    assert torch.equal(dx[..., :-1], torch.ones(1, 2, 3, 3))
    assert torch.equal(dx[..., -1], torch.zeros(1, 2, 3))
    assert torch.equal(dy[..., :-1, :], torch.full((1, 2, 2, 4), 4.0))
    assert torch.equal(dy[..., -1, :], torch.zeros(1, 2, 4))


def test_objective_weights_the_terms_with_the_paper_lambdas():
    m = full_mask()
    s2t, t2s = shifted(1.0), shifted(1.0)
    total, logs = sfnet_objective(s2t, t2s, m, m)
    assert logs["mask"] == pytest.approx(0.4, abs=1e-6)
    assert logs["mask"] > 0 and logs["flow"] > 0
    assert total.item() == pytest.approx(3 * logs["mask"] + 16 * logs["flow"] + 0.5 * logs["smooth"], rel=1e-6)
    assert logs["loss"] == pytest.approx(total.item())


def test_random_flow_is_penalised_by_every_term():
    torch.manual_seed(0)
    m = full_mask()
    s2t = identity() + 0.6 * torch.randn(2, H, W, 2)
    t2s = identity() + 0.6 * torch.randn(2, H, W, 2)
    _, logs = sfnet_objective(s2t, t2s, m, m)
    assert logs["mask"] > 0.01 and logs["flow"] > 0.01 and logs["smooth"] > 0.01


def test_losses_have_gradients_with_respect_to_the_matches():
    s2t = shifted(0.5).requires_grad_(True)
    t2s = shifted(0.5).requires_grad_(True)
    total, _ = sfnet_objective(s2t, t2s, full_mask(), full_mask())
    total.backward()
    assert s2t.grad.abs().sum() > 0 and t2s.grad.abs().sum() > 0


def test_masks_on_grid_resizes_with_cell_centres_and_thresholds_at_0_1():
    mask = torch.zeros(1, 1, 9, 9)
    mask[..., 4, 4] = 1.0  # the centre pixel only
    small = masks_on_grid(mask, (5, 5))
    # align_corners: cell (2, 2) samples pixel (4, 4) exactly; cell (1, 2) samples pixel (2, 4): 0.
    expected = torch.zeros(1, 1, 5, 5)
    expected[..., 2, 2] = 1
    assert torch.equal(small, expected)
    faint = torch.full((1, 1, 9, 9), 0.1)
    assert masks_on_grid(faint, (5, 5)).sum() == 0  # > 0.1, not >=
    assert masks_on_grid(faint + 0.01, (5, 5)).sum() == 25


def test_shape_errors_are_reported():
    with pytest.raises(ValueError, match="mask_own"):
        mask_consistency(identity(), torch.ones(2, 1, 4, 4), full_mask())
    with pytest.raises(ValueError, match="grid"):
        flow_smoothness(torch.zeros(2, H, W), full_mask())
