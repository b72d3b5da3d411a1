"""4D convolution: every formulation against a direct sum over all kernel offsets."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from semcorr.conv4d import (
    CONV4D_STRATEGIES,
    Conv4d,
    conv4d,
    conv4d_output_size,
    conv4d_reference,
    dft_2d,
    inverse_dft_2d,
)

from helpers_4d import one_thread  # noqa: F401 - autouse: one torch thread in this module


def conv4d_direct(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The definition: out[b, o, p] = bias[o] + Σ_c Σ_offsets w[o, c, off] · x_pad[b, c, p + off]."""
    k = weight.shape[2:]
    pads = [k_ // 2 for k_ in k]
    xp = F.pad(x, [p for pad in reversed(pads) for p in (pad, pad)])
    out_size = conv4d_output_size(tuple(x.shape[2:]), tuple(k))
    out = torch.zeros(x.shape[0], weight.shape[0], *out_size, dtype=x.dtype)
    for off in itertools.product(*(range(n) for n in k)):
        window = xp[(slice(None), slice(None)) + tuple(slice(o, o + n) for o, n in zip(off, out_size))]
        out += torch.einsum("oc,bcijkl->boijkl", weight[(slice(None), slice(None)) + off], window)
    if bias is not None:
        out += bias.view(1, -1, 1, 1, 1, 1)
    return out


def _data(c_in, c_out, kernel, grid=(5, 6, 4, 7), batch=2, seed=0):
    """Input in [0, 1) like a correlation; weights at PyTorch's init scale (±1/√fan_in)."""
    g = torch.Generator().manual_seed(seed)
    fan_in = c_in * kernel[0] * kernel[1] * kernel[2] * kernel[3]
    x = torch.rand(batch, c_in, *grid, generator=g)
    w = (torch.rand(c_out, c_in, *kernel, generator=g) * 2 - 1) / fan_in**0.5
    b = (torch.rand(c_out, generator=g) * 2 - 1) / fan_in**0.5
    return x, w, b


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("c_in,c_out", [(1, 3), (3, 3), (3, 1)])
def test_every_formulation_matches_the_direct_sum(k, c_in, c_out):
    x, w, b = _data(c_in, c_out, (k, k, k, k))
    expected = conv4d_direct(x.double(), w.double(), b.double()).float()
    assert expected.shape == (2, c_out, 5, 6, 4, 7)
    assert torch.allclose(conv4d_reference(x, w, b), expected, atol=1e-5, rtol=0)
    for strategy in CONV4D_STRATEGIES:
        got = conv4d(x, w, b, strategy=strategy)
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, atol=1e-5, rtol=0), strategy


def test_anisotropic_and_even_kernels_without_bias():
    for kernel in [(3, 1, 5, 3), (2, 3, 4, 1)]:
        x, w, _ = _data(2, 2, kernel)
        expected = conv4d_direct(x.double(), w.double(), None).float()
        assert tuple(expected.shape[2:]) == conv4d_output_size((5, 6, 4, 7), kernel)
        for strategy in CONV4D_STRATEGIES:
            assert torch.allclose(conv4d(x, w, None, strategy=strategy), expected, atol=1e-5, rtol=0)


def test_gradients_match_the_reference():
    x, w, b = _data(2, 3, (3, 3, 3, 3), grid=(4, 5, 3, 4))
    target = torch.rand(2, 3, 4, 5, 3, 4, generator=torch.Generator().manual_seed(1))
    grads = {}
    for name in ("reference",) + CONV4D_STRATEGIES[1:]:
        xs, ws, bs = (t.clone().requires_grad_(True) for t in (x, w, b))
        y = conv4d_reference(xs, ws, bs) if name == "reference" else conv4d(xs, ws, bs, strategy=name)
        ((y - target) ** 2).sum().backward()
        grads[name] = (xs.grad, ws.grad, bs.grad)
    for name, g in grads.items():
        for a, r in zip(g, grads["reference"]):
            assert torch.allclose(a, r, atol=1e-4, rtol=1e-5), name


def test_dirac_kernel_is_identity_and_offset_kernel_shifts():
    x = torch.rand(1, 1, 4, 5, 3, 6)
    w = torch.zeros(1, 1, 3, 3, 3, 3)
    w[0, 0, 1, 1, 1, 1] = 1.0
    assert torch.equal(conv4d(x, w), x)
    # cross-correlation: weight at offset +1 along hA reads the next row
    w = torch.zeros(1, 1, 3, 3, 3, 3)
    w[0, 0, 2, 1, 1, 1] = 1.0
    y = conv4d(x, w)
    assert torch.equal(y[:, :, :-1], x[:, :, 1:])
    assert torch.all(y[:, :, -1] == 0)
    w = torch.zeros(1, 1, 3, 3, 3, 3)
    w[0, 0, 1, 1, 1, 0] = 1.0  # offset −1 along wB
    y = conv4d(x, w)
    assert torch.equal(y[..., 1:], x[..., :-1])
    assert torch.all(y[..., 0] == 0)


def test_conv4d_module_shapes_init_and_forward():
    torch.manual_seed(0)
    m = Conv4d(2, 4, 3)
    assert m.weight.shape == (4, 2, 3, 3, 3, 3) and m.bias.shape == (4,)
    bound = 1.0 / (2 * 81) ** 0.5  # PyTorch's _ConvNd init: U(−1/√fan_in, 1/√fan_in)
    assert m.weight.abs().max() <= bound + 1e-7 and m.bias.abs().max() <= bound + 1e-7
    x = torch.rand(1, 2, 4, 4, 5, 3)
    assert torch.allclose(m(x), conv4d_direct(x.double(), m.weight.double(), m.bias.double()).float(), atol=1e-5)
    assert Conv4d(1, 1, 5, bias=False).bias is None


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        conv4d(torch.rand(1, 2, 3, 3, 3), torch.rand(1, 2, 3, 3, 3, 3))
    with pytest.raises(ValueError):
        conv4d(torch.rand(1, 2, 3, 3, 3, 3), torch.rand(1, 3, 3, 3, 3, 3))
    with pytest.raises(ValueError):
        conv4d(torch.rand(1, 2, 3, 3, 3, 3), torch.rand(1, 2, 3, 3, 3, 3), strategy="fft")


# ----------------------------------------------------------------------------- spectral (inference) route


@pytest.mark.parametrize(
    "c_in, c_out, kernel, grid",
    [(3, 4, (3, 5, 5, 3), (5, 6, 7, 9)), (8, 8, (5, 5, 5, 5), (6, 7, 9, 8)), (2, 1, (1, 3, 5, 5), (4, 3, 8, 10))],
)
def test_spectral_route_equals_the_direct_sum(c_in, c_out, kernel, grid):
    x, w, b = _data(c_in, c_out, kernel, grid=grid)
    expected = conv4d_direct(x.double(), w.double(), b.double()).float()
    with torch.no_grad():
        got = conv4d(x, w, b, strategy="spectral")
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 2e-6 * expected.abs().max()


def test_auto_takes_the_spectral_route_only_without_autograd():
    x, w, b = _data(8, 8, (5, 5, 5, 5), grid=(6, 6, 9, 9))
    direct = conv4d(x, w, b, strategy="sum-rows")
    with torch.no_grad():
        spectral = conv4d(x, w, b, strategy="spectral")
        auto = conv4d(x, w, b)
    assert not torch.equal(spectral, direct)  # another summation order: the route really differs
    assert torch.equal(auto, spectral)
    assert torch.equal(conv4d(x, w.requires_grad_(True), b), direct)  # training keeps the direct sum


@pytest.mark.parametrize("c_in, c_out", [(1, 8), (8, 1)])
def test_auto_takes_the_spectral_route_for_widening_and_narrowing_layers(c_in, c_out):
    # NeighConsensus's 1 -> 16 and 16 -> 1 layers: spectral once either side has >= 8 channels
    x, w, b = _data(c_in, c_out, (5, 5, 5, 5), grid=(6, 6, 9, 9))
    with torch.no_grad():
        assert torch.equal(conv4d(x, w, b), conv4d(x, w, b, strategy="spectral"))
        assert not torch.equal(conv4d(x, w, b), conv4d(x, w, b, strategy="stack-input"))
    x, w, b = _data(1, 4, (5, 5, 5, 5), grid=(6, 6, 9, 9))
    with torch.no_grad():  # too few channels: the direct route
        assert torch.equal(conv4d(x, w, b), conv4d(x, w, b, strategy="stack-input"))


@pytest.mark.parametrize("channels, size, padded", [(3, (7, 9), (10, 12)), (1, (5, 8), (7, 11)), (2, (4, 4), (4, 4))])
def test_dft_by_matrices_equals_torch_fft(channels, size, padded):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, *size, channels, generator=g, dtype=torch.float64)
    got = dft_2d(x, *padded)  # (N, n3, m4, re/im, C)
    expected = torch.view_as_real(torch.fft.rfft2(x, s=padded, dim=(1, 2))).permute(0, 1, 2, 4, 3)
    assert got.shape == (2, padded[0], padded[1] // 2 + 1, 2, channels)
    assert torch.allclose(got, expected, atol=1e-10)
    # the inverse of a spectrum of a real signal gives the signal back, cropped to its size
    assert torch.allclose(inverse_dft_2d(got, *size, *padded), x, atol=1e-10)
    # and of any half spectrum, what irfft2 gives (the imaginary parts it ignores are ignored)
    y = torch.randn(2, padded[0], padded[1] // 2 + 1, 2, channels, generator=g, dtype=torch.float64)
    expected = torch.fft.irfft2(torch.view_as_complex(y.transpose(3, 4).contiguous()), s=padded, dim=(1, 2))
    assert torch.allclose(inverse_dft_2d(y, *size, *padded), expected[:, : size[0], : size[1]], atol=1e-10)


def test_dft_matrices_by_hand():
    # a 1 x 2 signal [1, 2] padded to 1 x 3: X[f] = 1 + 2 exp(-2 pi i f / 3), f = 0, 1
    x = torch.tensor([1.0, 2.0], dtype=torch.float64).view(1, 1, 2, 1)
    got = dft_2d(x, 1, 3)[0, 0, :, :, 0]  # (m4 = 2, re/im)
    c, s = math.cos(2 * math.pi / 3), math.sin(2 * math.pi / 3)
    assert torch.allclose(got, torch.tensor([[3.0, 0.0], [1 + 2 * c, -2 * s]], dtype=torch.float64), atol=1e-12)


def test_spectral_route_refuses_autograd_and_even_kernels():
    x, w, b = _data(2, 2, (3, 3, 3, 3))
    with pytest.raises(ValueError, match="inference only"):
        conv4d(x, w.requires_grad_(True), b, strategy="spectral")
    x, w, b = _data(2, 2, (3, 3, 4, 3))
    with torch.no_grad(), pytest.raises(ValueError, match="odd kernel"):
        conv4d(x, w, b, strategy="spectral")


def test_spectral_kernels_follow_in_place_weight_updates():
    x, w, b = _data(8, 8, (3, 3, 5, 5), grid=(4, 4, 8, 8))
    with torch.no_grad():
        conv4d(x, w, b, strategy="spectral")  # caches the kernel of w
        w.mul_(-2.0)
        got = conv4d(x, w, b, strategy="spectral")
    expected = conv4d_direct(x.double(), w.double(), b.double()).float()
    assert (got - expected).abs().max() <= 2e-6 * expected.abs().max()
