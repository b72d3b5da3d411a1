"""4D convolution over correlation volumes.

A 4D-conv tensor is ``(B, C, hA, wA, hB, wB)``: ``C`` channels over the grid of
(source cell, target cell) pairs. Weights are ``(C_out, C_in, k1, k2, k3, k4)``
(PyTorch's layout for convolutions; the authors' NC-Net checkpoints store them
permuted, see :mod:`semcorr.models.official`).

Like PyTorch's convolutions this is a cross-correlation, stride 1, zero
padding ``k // 2`` on every axis (odd kernels keep the grid size).

Two formulations compute the same thing:

* :func:`conv4d_reference` — the public NC-Net code's formulation: a Python
  loop over the output positions along ``hA`` and over the kernel's first
  axis, one ``conv3d`` per (position, kernel slice). Kept as the reference
  and for the benchmark.
* :func:`conv4d` — the fast one used by :class:`Conv4d`: the ``hA`` axis is
  folded into the batch, so there are at most ``k1`` large ``conv3d`` calls
  over ``(wA, hB, wB)`` instead of ``hA · k1`` small ones; for layers that
  widen (1 → 16) or narrow (16 → 1) the channels, the kernel's first axis is
  folded into the thin side's channels too, making it **one** call.
  ``benchmarks/bench_conv4d.py`` measures both.
* the spectral route (:func:`_conv4d_spectral`, inference only) — a real 2D
  DFT over the target axes (two matrix products, :func:`dft_2d`) turns the
  kernel's last two axes into a product per frequency, leaving a grouped 2D
  convolution over the source axes: ~10× fewer multiplications for the 5⁴
  kernels of the consensus layers. ``"auto"`` takes it for layers with ≥ 8
  channels on either side when no gradient is needed; training keeps the
  direct sums.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def _as_4tuple(k: int | tuple[int, ...]) -> tuple[int, int, int, int]:
    if isinstance(k, int):
        return (k, k, k, k)
    k = tuple(int(v) for v in k)
    if len(k) != 4:
        raise ValueError(f"a 4D kernel size is an int or 4 ints, got {k!r}")
    return k  # type: ignore[return-value]


def _check_args(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    if x.dim() != 6:
        raise ValueError(f"conv4d input must be (B, C, hA, wA, hB, wB), got shape {tuple(x.shape)}")
    if weight.dim() != 6:
        raise ValueError(f"conv4d weight must be (C_out, C_in, k1, k2, k3, k4), got shape {tuple(weight.shape)}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"conv4d input has {x.shape[1]} channels, the weight expects {weight.shape[1]}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"conv4d bias must be ({weight.shape[0]},), got {tuple(bias.shape)}")


def conv4d_output_size(size: tuple[int, int, int, int], kernel: tuple[int, int, int, int]) -> tuple[int, ...]:
    """Grid size after a stride-1 convolution with zero padding ``k // 2``."""
    return tuple(n + 2 * (k // 2) - k + 1 for n, k in zip(size, kernel))


def conv4d_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """4D convolution as the public NC-Net code computes it (slow reference).

    x ``(B, C_in, hA, wA, hB, wB)``, weight ``(C_out, C_in, k1, k2, k3, k4)``,
    bias ``(C_out,)`` or None → ``(B, C_out, hA', wA', hB', wB')``.

    The first axis is zero-padded by ``k1 // 2``; output slice ``i`` is the sum
    over ``p < k1`` of ``conv3d(x_pad[:, :, i + p], weight[:, :, p])`` with
    padding ``k // 2`` on the three other axes — ``hA' · k1`` conv3d calls.
    """
    _check_args(x, weight, bias)
    k1, k2, k3, k4 = weight.shape[2:]
    p1 = k1 // 2
    xp = F.pad(x, (0, 0, 0, 0, 0, 0, p1, p1))
    h_out = xp.shape[2] - k1 + 1
    outs = []
    for i in range(h_out):
        acc = None
        for p in range(k1):
            y = F.conv3d(xp[:, :, i + p], weight[:, :, p], bias=bias if p == 0 else None, padding=(k2 // 2, k3 // 2, k4 // 2))
            acc = y if acc is None else acc + y
        outs.append(acc)
    return torch.stack(outs, dim=2)


def _pad_rows_first(x: torch.Tensor, pad: int) -> torch.Tensor:
    """``(B, C, hA, wA, hB, wB)`` → ``(hA + 2·pad, B, C, wA, hB, wB)``, zero-padded along ``hA``."""
    return F.pad(x.movedim(2, 0), (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, pad, pad))


def _conv4d_stack_input(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Kernel rows folded into the *input* channels: one conv3d with ``k1 · C_in`` inputs.

    The ``k1`` row-shifted views ``x_pad[p : p + hA']`` are stacked along the
    channels, ``(hA' · B, k1 · C_in, wA, hB, wB)`` (``k1`` copies of the input),
    and convolved with the weight reshaped to ``(C_out, k1 · C_in, k2, k3, k4)``.
    """
    b, c_in = x.shape[:2]
    c_out, _, k1, k2, k3, k4 = weight.shape
    xt = _pad_rows_first(x, k1 // 2)
    h_out = xt.shape[0] - k1 + 1
    rest = xt.shape[3:]
    if k1 == 1:
        stacked = xt.reshape(h_out * b, c_in, *rest)
    else:
        stacked = torch.stack([xt[p : p + h_out] for p in range(k1)], dim=2)  # (hA', B, k1, C_in, ...)
        stacked = stacked.reshape(h_out * b, k1 * c_in, *rest)
    w = weight.permute(0, 2, 1, 3, 4, 5).reshape(c_out, k1 * c_in, k2, k3, k4)
    y = F.conv3d(stacked, w, bias=bias, padding=(k2 // 2, k3 // 2, k4 // 2))
    return y.view(h_out, b, c_out, *y.shape[2:]).permute(1, 2, 0, 3, 4, 5)


def _conv4d_stack_output(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Kernel rows folded into the *output* channels: one conv3d with ``k1 · C_out`` outputs.

    Every padded input row is convolved with all ``k1`` kernel slices at once,
    ``z (hA_pad, B, k1, C_out, ...)``; output row ``i`` is ``Σ_p z[i + p, :, p]``
    (``k1`` copies of the output). Cheaper than stacking inputs when
    ``C_out < C_in`` (NeighConsensus's last layer, 16 → 1).
    """
    b, c_in = x.shape[:2]
    c_out, _, k1, k2, k3, k4 = weight.shape
    xt = _pad_rows_first(x, k1 // 2)
    h_pad = xt.shape[0]
    h_out = h_pad - k1 + 1
    w = weight.permute(2, 0, 1, 3, 4, 5).reshape(k1 * c_out, c_in, k2, k3, k4)
    z = F.conv3d(xt.reshape(h_pad * b, c_in, *xt.shape[3:]), w, padding=(k2 // 2, k3 // 2, k4 // 2))
    z = z.view(h_pad, b, k1, c_out, *z.shape[2:])
    y = z[0:h_out, :, 0]
    for p in range(1, k1):
        y = y + z[p : p + h_out, :, p]
    if bias is not None:
        y = y + bias.view(1, 1, c_out, 1, 1, 1)
    return y.permute(1, 2, 0, 3, 4, 5)


def _conv4d_sum_rows(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """One conv3d per kernel row on row-shifted *views*, summed: ``k1`` calls, no input copies.

    ``x_pad[p : p + hA']`` of the ``(hA_pad, B, C_in, …)`` layout is a
    contiguous view, read as a batch of ``hA' · B`` 3D volumes and convolved
    with ``weight[:, :, p]``. Same speed as stacking for ``C_in = C_out`` but
    memory stays at one copy of the input (NeighConsensus's 16 → 16 layer).
    """
    b, c_in = x.shape[:2]
    c_out, _, k1, k2, k3, k4 = weight.shape
    xt = _pad_rows_first(x, k1 // 2)
    h_out = xt.shape[0] - k1 + 1
    rest = xt.shape[3:]
    y = None
    for p in range(k1):
        yp = F.conv3d(
            xt[p : p + h_out].reshape(h_out * b, c_in, *rest),
            weight[:, :, p],
            bias=bias if p == 0 else None,
            padding=(k2 // 2, k3 // 2, k4 // 2),
        )
        y = yp if y is None else y.add_(yp)  # conv3d does not keep its output for backward
    assert y is not None
    return y.view(h_out, b, c_out, *y.shape[2:]).permute(1, 2, 0, 3, 4, 5)


def spectral_weight(weight: torch.Tensor, n3: int, n4: int) -> torch.Tensor:
    """The kernel over (hB, wB) as frequencies, for :func:`_conv4d_spectral`'s grouped convolution.

    weight ``(C_out, C_in, k1, k2, k3, k4)`` → ``(F · 2 · C_out, 2 · C_in, k1, k2)``
    with ``F = n3 · (n4 // 2 + 1)``: for every frequency ``(f3, f4)`` of a real
    2D DFT of size ``n3 × n4``, the complex kernel
    ``Ŵ = Σ_q w[q] · exp(+2πi (f3·(q3 − k3//2)/n3 + f4·(q4 − k4//2)/n4))``
    (a cross-correlation, centred) as a real block matrix that maps the
    channels ``(Re c_0 … Re c_{C_in−1}, Im c_0 …)`` of one frequency to
    ``(Re, Im)`` of the ``C_out`` outputs: ``[[Re Ŵ, −Im Ŵ], [Im Ŵ, Re Ŵ]]``.
    Built in float64, returned in the weight's dtype.
    """
    c_out, c_in, k1, k2, k3, k4 = weight.shape
    m4 = n4 // 2 + 1
    f3 = torch.arange(n3, dtype=torch.float64, device=weight.device).view(n3, 1, 1, 1)
    f4 = torch.arange(m4, dtype=torch.float64, device=weight.device).view(1, m4, 1, 1)
    q3 = (torch.arange(k3, dtype=torch.float64, device=weight.device) - k3 // 2).view(1, 1, k3, 1)
    q4 = (torch.arange(k4, dtype=torch.float64, device=weight.device) - k4 // 2).view(1, 1, 1, k4)
    angle = (2 * math.pi) * (f3 * q3 / n3 + f4 * q4 / n4)  # (n3, m4, k3, k4)
    w = weight.detach().to(torch.float64).reshape(-1, k3 * k4)  # (C_out·C_in·k1·k2, k3·k4)
    shape = (c_out, c_in, k1, k2, n3 * m4)
    re = (w @ angle.cos().reshape(n3 * m4, k3 * k4).T).view(shape).permute(4, 0, 1, 2, 3)  # (F, C_out, C_in, k1, k2)
    im = (w @ angle.sin().reshape(n3 * m4, k3 * k4).T).view(shape).permute(4, 0, 1, 2, 3)
    blocks = weight.new_empty(n3 * m4, 2, c_out, 2, c_in, k1, k2)
    blocks[:, 0, :, 0] = re
    blocks[:, 0, :, 1] = -im
    blocks[:, 1, :, 0] = im
    blocks[:, 1, :, 1] = re
    return blocks.view(n3 * m4 * 2 * c_out, 2 * c_in, k1, k2).contiguous(memory_format=torch.channels_last)


#: Spectral kernels of the last few weights seen (inference reuses the same weights call after call):
#: key → (the weight itself, its spectral kernel). Holding the weight keeps its storage alive, so
#: no other tensor can take its address while the entry exists; in-place updates bump ``_version``.
_SPECTRAL_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _cached_spectral_weight(weight: torch.Tensor, n3: int, n4: int) -> torch.Tensor:
    """:func:`spectral_weight`, reused while the weight tensor is unchanged (same storage, strides and version)."""
    key = (weight.data_ptr(), weight._version, tuple(weight.shape), weight.stride(), weight.dtype, weight.device, n3, n4)
    hit = _SPECTRAL_CACHE.get(key)
    if hit is None:
        if len(_SPECTRAL_CACHE) >= 8:
            _SPECTRAL_CACHE.clear()
        hit = _SPECTRAL_CACHE[key] = (weight.detach(), spectral_weight(weight, n3, n4))
    return hit[1]


@functools.lru_cache(maxsize=16)
def dft_matrices(
    hb: int, wb: int, n3: int, n4: int, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real matrices of the 2D DFT of an ``hb × wb`` signal zero-padded to ``n3 × n4``, one axis each.

    Returns ``(along_w, along_h, inverse_h, inverse_w)`` for :func:`dft_2d` and
    :func:`inverse_dft_2d`, with ``m4 = n4 // 2 + 1`` (the half spectrum of a
    real signal), ``θ = 2π f4 w / n4`` and ``φ = 2π f3 h / n3``:

    * ``along_w`` ``(2 · m4 · 2, wb)``: rows ``(copy, f4, re/im)``. Copy 0 is
      the spectrum along ``w``, ``a = Σ_w x (cos θ − i sin θ)`` as
      ``(Re a, Im a)``; copy 1 is ``−i · a`` as ``(Im a, −Re a)``, so that the
      complex product of the next axis is a plain sum;
    * ``along_h`` ``(n3, hb · 2)``: columns ``(h, copy)``, ``cos φ`` on copy 0
      and ``sin φ`` on copy 1: ``X̂ = Σ_h (cos φ · a + sin φ · (−i a))``;
    * ``inverse_h`` ``(hb · 2, n3)`` and ``inverse_w`` ``(wb, 2 · m4 · 2)``: the
      transposes, the latter scaled by ``c_f4 / (n3 · n4)`` (``c = 1`` for
      ``f4 = 0`` and, for even ``n4``, the Nyquist frequency; ``2`` otherwise),
      which invert a Hermitian half spectrum as ``irfft2`` does, keeping only
      the first ``hb × wb`` outputs (the crop comes free).

    Built in float64, cast to ``dtype``.
    """
    m4 = n4 // 2 + 1
    theta = (2 * math.pi / n4) * torch.outer(torch.arange(m4, dtype=torch.float64), torch.arange(wb, dtype=torch.float64))
    cos, sin = theta.cos(), theta.sin()  # (m4, wb)
    along_w = torch.stack([torch.stack([cos, -sin], 1), torch.stack([-sin, -cos], 1)], 0)  # (copy, f4, ri, wb)
    along_w = along_w.reshape(4 * m4, wb)
    phi = (2 * math.pi / n3) * torch.outer(torch.arange(n3, dtype=torch.float64), torch.arange(hb, dtype=torch.float64))
    along_h = torch.stack([phi.cos(), phi.sin()], 2).reshape(n3, 2 * hb)  # columns (h, copy)
    weight = torch.full((m4,), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    if n4 % 2 == 0:
        weight[-1] = 1.0
    scale = (weight / (n3 * n4)).view(1, m4, 1).expand(2, m4, 2).reshape(4 * m4)
    inverse_w = along_w.T * scale  # (wb, 4·m4)
    cast = dict(dtype=dtype, device=device)
    return along_w.to(**cast), along_h.to(**cast), along_h.T.contiguous().to(**cast), inverse_w.contiguous().to(**cast)


def dft_2d(x: torch.Tensor, n3: int, n4: int) -> torch.Tensor:
    """Real 2D DFT over the two axes before the channels, zero-padded to ``n3 × n4``, by two matrix products.

    x ``(N, hb, wb, C)`` (channels last) → ``(N, n3, m4, 2, C)``: for every
    frequency ``(f3, f4)`` of the half spectrum, ``(Re, Im)`` of the ``C``
    channels, equal to ``torch.fft.rfft2(x, s=(n3, n4), dim=(1, 2))``. At the
    sizes of correlation volumes (a few tens per axis) two GEMMs beat an FFT
    and give the layout the grouped convolution reads without a transpose.
    """
    n, hb, wb, c = x.shape
    along_w, along_h, _, _ = dft_matrices(hb, wb, n3, n4, x.dtype, str(x.device))
    m4 = n4 // 2 + 1
    if c == 1:  # one GEMM instead of N·hb matrix-vector products
        a = x.reshape(n * hb, wb) @ along_w.T
    else:
        a = torch.matmul(along_w, x.reshape(n * hb, wb, c))  # (N·hb, 2·m4·2, C): rows (copy, f4, ri)
    return torch.matmul(along_h, a.view(n, hb * 2, m4 * 2 * c)).view(n, n3, m4, 2, c)


def inverse_dft_2d(y: torch.Tensor, hb: int, wb: int, n3: int, n4: int) -> torch.Tensor:
    """The inverse of :func:`dft_2d`, cropped to the first ``hb × wb`` outputs.

    y ``(N, n3, m4, 2, C)`` (a Hermitian half spectrum, ``(Re, Im)``) →
    ``(N, hb, wb, C)``, equal to ``torch.fft.irfft2(·, s=(n3, n4))[:, :hb, :wb]``.
    """
    n, _, m4, _, c = y.shape
    _, _, inverse_h, inverse_w = dft_matrices(hb, wb, n3, n4, y.dtype, str(y.device))
    u = torch.matmul(inverse_h, y.reshape(n, n3, m4 * 2 * c))  # (N, hb·2, m4·2·C): rows (h, copy)
    if c == 1:
        return (u.view(n * hb, 2 * m4 * 2) @ inverse_w.T).view(n, hb, wb, 1)
    return torch.matmul(inverse_w, u.view(n * hb, 2 * m4 * 2, c)).view(n, hb, wb, c)


def _conv4d_spectral(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Target axes by DFT, source axes by direct convolution: ~10× fewer multiplications for 5⁴ kernels.

    A real 2D DFT over ``(hB, wB)`` (:func:`dft_2d`), zero-padded to
    ``n = size + k // 2`` so the circular convolution is the zero-padded one,
    turns the kernel's two last axes into a product per frequency; what
    remains is, per frequency, a 2D convolution over ``(hA, wA)`` with complex
    ``C_in → C_out`` weights — one grouped ``conv2d`` (a group per frequency,
    complex numbers as channel pairs, see :func:`spectral_weight`), then the
    inverse DFT (:func:`inverse_dft_2d`). Data stay channels-last,
    ``(B, hA, wA, hB, wB, C)`` in memory, from layer to layer (the result is a
    permuted view of that), so no transform, convolution or following layer
    needs a transpose. Equal to the direct sum up to float rounding (~1e-6 of
    the largest output); for inference only (no autograd through the kernel's
    spectrum), which :func:`conv4d` ensures.
    """
    b, c_in, ha, wa, hb, wb = x.shape
    c_out, _, k1, k2, k3, k4 = weight.shape
    n3, n4 = hb + k3 // 2, wb + k4 // 2
    m4 = n4 // 2 + 1
    spectrum = dft_2d(x.permute(0, 2, 3, 4, 5, 1).reshape(b * ha * wa, hb, wb, c_in), n3, n4)
    planes = spectrum.view(b, ha, wa, n3 * m4 * 2 * c_in).permute(0, 3, 1, 2)  # channels-last (B, F·2·C_in, hA, wA)
    y = F.conv2d(planes, _cached_spectral_weight(weight, n3, n4), padding=(k1 // 2, k2 // 2), groups=n3 * m4)
    y = y.permute(0, 2, 3, 1).contiguous()  # a no-op when the convolution kept channels-last
    out = inverse_dft_2d(y.view(b * ha * wa, n3, m4, 2, c_out), hb, wb, n3, n4).view(b, ha, wa, hb, wb, c_out)
    if bias is not None:
        out = out.add_(bias)
    return out.permute(0, 5, 1, 2, 3, 4)


CONV4D_STRATEGIES = ("auto", "stack-input", "stack-output", "sum-rows")
#: Strategies without autograd support and for odd kernels only, which ``"auto"`` takes at inference.
INFERENCE_STRATEGIES = ("spectral",)


def _needs_autograd(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a gradient will flow through this call (the spectral route has none)."""
    return torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)


def _spectral_pays(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """``"auto"`` takes the spectral route for layers with ≥ 8 channels on either side (all three
    of NeighConsensus's 1 → 16 → 16 → 1) and large odd kernels (k3, k4 ≥ 5), at inference on CPU
    (no autograd), where it does ~10× fewer multiplications than the direct sum. For 1 → 16 alone
    it only ties with one stacked ``conv3d``, but its channels-last output spares the next
    spectral layer a transpose."""
    if _needs_autograd(x, weight):
        return False
    k3, k4 = weight.shape[-2:]
    odd = all(k % 2 == 1 for k in weight.shape[2:])
    return odd and x.device.type == "cpu" and max(x.shape[1], weight.shape[0]) >= 8 and min(k3, k4) >= 5 and min(x.shape[-2:]) >= 8


def conv4d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, strategy: str = "auto"
) -> torch.Tensor:
    """Fast 4D convolution: one ``conv3d`` call with ``hA`` folded into the batch.

    x ``(B, C_in, hA, wA, hB, wB)``, weight ``(C_out, C_in, k1, k2, k3, k4)``,
    bias ``(C_out,)`` or None → ``(B, C_out, hA', wA', hB', wB')``, equal to
    :func:`conv4d_reference` up to float rounding.

    ``strategy``: ``"stack-input"`` folds the kernel's first axis into the
    input channels (one call), ``"stack-output"`` into the output channels
    (one call, then sums shifted output rows), ``"sum-rows"`` makes one call
    per kernel row on views; ``"auto"`` stacks on the side with fewer
    channels and uses ``"sum-rows"`` when both sides have as many — the
    fastest in ``benchmarks/bench_conv4d.py`` while keeping the extra memory
    at ``k1`` copies of a one-channel volume at most. Without autograd, on
    CPU, ``"auto"`` takes ``"spectral"`` instead for layers with ≥ 8 channels
    on either side and odd kernels of ≥ 5 along the target axes (equal to the
    direct sum to ~1e-6 of the largest output). ``"spectral"`` may also be
    asked for explicitly; it refuses autograd and even kernels.
    """
    _check_args(x, weight, bias)
    if strategy == "auto":
        c_in, c_out = x.shape[1], weight.shape[0]
        strategy = "stack-input" if c_in < c_out else "stack-output" if c_out < c_in else "sum-rows"
        if _spectral_pays(x, weight):
            strategy = "spectral"
    if strategy == "spectral":
        if _needs_autograd(x, weight):
            raise ValueError("the spectral conv4d is for inference only; use another strategy with autograd")
        if any(k % 2 == 0 for k in weight.shape[2:]):
            raise ValueError(f"the spectral conv4d needs odd kernel sizes, got {tuple(weight.shape[2:])}")
    if strategy == "stack-input":
        return _conv4d_stack_input(x, weight, bias)
    if strategy == "stack-output":
        return _conv4d_stack_output(x, weight, bias)
    if strategy == "sum-rows":
        return _conv4d_sum_rows(x, weight, bias)
    if strategy == "spectral":
        return _conv4d_spectral(x, weight, bias)
    raise ValueError(
        f"unknown conv4d strategy {strategy!r}; choose one of {', '.join(CONV4D_STRATEGIES + INFERENCE_STRATEGIES)}"
    )


class Conv4d(nn.Module):
    """4D convolution layer, stride 1, zero padding ``k // 2``, optional bias.

    ``forward(x (B, C_in, hA, wA, hB, wB)) -> (B, C_out, hA, wA, hB, wB)`` for odd kernels.
    ``weight``: ``(C_out, C_in, k1, k2, k3, k4)``; initialised like PyTorch's
    ``_ConvNd`` (Kaiming-uniform with ``a = √5``, fan-in ``C_in · k1·k2·k3·k4``),
    as the public NC-Net ``Conv4d`` is.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, ...], bias: bool = True):
        super().__init__()
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = _as_4tuple(kernel_size)
        self.weight = nn.Parameter(torch.empty(self.out_channels, self.in_channels, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(self.out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_channels * math.prod(self.kernel_size)
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv4d(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, bias={self.bias is not None}"
