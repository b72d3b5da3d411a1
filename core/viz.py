"""Pictures people would rather look at than read: overlays, match drawings, heatmaps.

Also the figures of ``show`` (:func:`heatmap_figure`: a source point's scores
over the target, one panel per score map) and ``warp --matches``
(:func:`matches_figure`), and :func:`save_image`, the one way a picture is
written (atomically).
"""

from __future__ import annotations

import colorsys
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .files import atomic_write_bytes


def save_image(img: Image.Image, path: str | Path, format: str | None = None) -> None:
    """Write a picture atomically (:func:`semcorr.files.atomic_write_bytes`) in ``format``; None: JPEG for a ``.jpg``/``.jpeg`` path, else PNG."""
    buf = io.BytesIO()
    img.save(buf, format=format or ("JPEG" if Path(path).suffix.lower() in (".jpg", ".jpeg") else "PNG"))
    atomic_write_bytes(path, buf.getvalue())


def blend(a: Image.Image, b: Image.Image, alpha: float = 0.5) -> Image.Image:
    """``alpha`` · a + (1 − alpha) · b, with ``b`` resized to ``a`` if needed."""
    if b.size != a.size:
        b = b.resize(a.size, Image.BILINEAR)
    return Image.blend(b.convert("RGB"), a.convert("RGB"), alpha)


def side_by_side(a: Image.Image, b: Image.Image, gap: int = 8) -> tuple[Image.Image, int]:
    """Both images on one canvas, top-aligned; returns the canvas and the x offset of ``b``."""
    h = max(a.height, b.height)
    canvas = Image.new("RGB", (a.width + gap + b.width, h), (255, 255, 255))
    canvas.paste(a.convert("RGB"), (0, 0))
    canvas.paste(b.convert("RGB"), (a.width + gap, 0))
    return canvas, a.width + gap


def _colour(i: int, n: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((i / max(n, 1)) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_matches(
    src: Image.Image,
    trg: Image.Image,
    src_points: np.ndarray,
    trg_points: np.ndarray,
    radius: int = 3,
    lines: bool = True,
) -> Image.Image:
    """Draw corresponding points ``(N, 2)`` (pixel x, y) on the two images side by side.

    Rows with a NaN in either image are skipped.
    """
    canvas, dx = side_by_side(src, trg)
    draw = ImageDraw.Draw(canvas)
    n = len(src_points)
    for i, (p, q) in enumerate(zip(src_points, trg_points)):
        if not (np.isfinite(p).all() and np.isfinite(q).all()):
            continue
        c = _colour(i, n)
        qx = q[0] + dx
        if lines:
            draw.line([(p[0], p[1]), (qx, q[1])], fill=c, width=1)
        draw.ellipse([p[0] - radius, p[1] - radius, p[0] + radius, p[1] + radius], outline=c, width=2)
        draw.ellipse([qx - radius, q[1] - radius, qx + radius, q[1] + radius], outline=c, width=2)
    return canvas


def grid_points(height: int, width: int, n: int = 8, margin: float = 0.1, mask: np.ndarray | None = None) -> np.ndarray:
    """An ``n × n`` grid of pixel points ``(K, 2)`` inside the image, optionally only on ``mask``."""
    xs = np.linspace(margin * (width - 1), (1 - margin) * (width - 1), n)
    ys = np.linspace(margin * (height - 1), (1 - margin) * (height - 1), n)
    pts = np.array([(x, y) for y in ys for x in xs], dtype=np.float64)
    if mask is not None:
        keep = mask[np.round(pts[:, 1]).astype(int), np.round(pts[:, 0]).astype(int)]
        pts = pts[keep]
    return pts


def colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape ``S``) → uint8 RGB ``(*S, 3)``, blue (0) → cyan → yellow → red (1)."""
    s = np.clip(np.asarray(values, dtype=np.float64), 0, 1)
    r = np.clip(1.5 - np.abs(4 * s - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * s - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * s - 1), 0, 1)
    return (np.stack([r, g, b], -1) * 255).astype(np.uint8)


def heatmap_image(scores: np.ndarray, size: tuple[int, int] | None = None) -> Image.Image:
    """A 2D score map as a colour image (blue → red, :func:`colormap`), min-max normalised; ``size = (W, H)``."""
    s = np.asarray(scores, dtype=np.float64)
    lo, hi = np.nanmin(s), np.nanmax(s)
    s = (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)
    img = Image.fromarray(colormap(s), mode="RGB")
    if size is not None:
        img = img.resize(size, Image.BILINEAR)
    return img


def contact_sheet(
    frames: list[Image.Image],
    points: np.ndarray,
    columns: int = 5,
    thumb_width: int = 240,
    labels: list[str] | None = None,
) -> Image.Image:
    """Every frame as a thumbnail with its points drawn, in a grid of ``columns``.

    frames: ``T`` images; points ``(T, N, 2)`` pixel ``(x, y)`` in each frame
    (NaN rows not drawn), point ``i`` in the same colour on every frame;
    ``labels``: a caption per frame (default: its 1-based index).
    """
    if not frames:
        raise ValueError("a contact sheet needs at least one frame")
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[0] != len(frames) or pts.shape[2] != 2:
        raise ValueError(f"points must be (T, N, 2) with T = {len(frames)}, got {pts.shape}")
    scale = thumb_width / frames[0].width
    th = max(1, round(frames[0].height * scale))
    caption = 14
    cols = max(1, min(columns, len(frames)))
    rows = -(-len(frames) // cols)
    sheet = Image.new("RGB", (cols * (thumb_width + 4) + 4, rows * (th + caption + 4) + 4), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    n = pts.shape[1]
    for t, frame in enumerate(frames):
        x0 = 4 + (t % cols) * (thumb_width + 4)
        y0 = 4 + (t // cols) * (th + caption + 4)
        sheet.paste(frame.convert("RGB").resize((thumb_width, th), Image.BILINEAR), (x0, y0 + caption))
        draw.text((x0, y0), labels[t] if labels else str(t + 1), fill=(0, 0, 0))
        fs = thumb_width / frame.width
        for i, p in enumerate(pts[t]):
            if not np.isfinite(p).all():
                continue
            cx, cy = x0 + p[0] * fs, y0 + caption + p[1] * (th / frame.height)
            draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=_colour(i, n), outline=(0, 0, 0))
    return sheet


def font(size: int = 14) -> ImageFont.ImageFont:
    """PIL's built-in scalable font at ``size`` pixels."""
    return ImageFont.load_default(size=size)


def colour_bar(width: int, low: float, high: float, label: str, height: int = 14, text_size: int = 13) -> Image.Image:
    """A horizontal colour bar of :func:`colormap` from ``low`` to ``high`` with its label and end values."""
    f = font(text_size)
    pad = 6
    img = Image.new("RGB", (width, height + text_size + 3 * pad), "white")
    d = ImageDraw.Draw(img)
    ramp = colormap(np.linspace(0, 1, max(width - 2 * pad, 2)))[None].repeat(height, 0)
    img.paste(Image.fromarray(ramp, mode="RGB"), (pad, pad))
    d.rectangle([pad, pad, width - pad - 1, pad + height], outline="black")
    y = pad + height + pad // 2
    d.text((pad, y), f"{low:.3g}", fill="black", font=f)
    d.text((width - pad, y), f"{high:.3g}", fill="black", font=f, anchor="ra")
    d.text((width / 2, y), label, fill="black", font=f, anchor="ma")
    return img


def with_title_and_legend(picture: Image.Image, title: str, legend: Image.Image | None = None, note: str = "") -> Image.Image:
    """``picture`` with a title band above and, below it, an optional legend image and a note line."""
    size = max(12, min(18, picture.width // 45))
    f = font(size)
    band = size + 12
    extra = (legend.height + 4 if legend is not None else 0) + (size + 10 if note else 0)
    canvas = Image.new("RGB", (picture.width, band + picture.height + extra), "white")
    d = ImageDraw.Draw(canvas)
    d.text((picture.width / 2, band / 2), title, fill="black", font=f, anchor="mm")
    canvas.paste(picture, (0, band))
    y = band + picture.height + 2
    if legend is not None:
        canvas.paste(legend, ((picture.width - legend.width) // 2, y))
        y += legend.height + 2
    if note:
        d.text((picture.width / 2, y + (size + 6) / 2), note, fill=(60, 60, 60), font=f, anchor="mm")
    return canvas


#: Side of the lattice of candidate source points :func:`sample_matches` draws from.
GRID_FOR_MATCHES = 24


def sample_matches(
    src_to_trg: np.ndarray,
    trg_to_src: np.ndarray,
    confidence: np.ndarray | None = None,
    grid: int = GRID_FOR_MATCHES,
    top: int | None = 30,
    max_cycle: float = 0.03,
    foreground: np.ndarray | None = None,
    spacing: float = 0.045,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Matches worth drawing from pixel flows ``(H, W, 2)`` (source) and ``(H', W', 2)`` (target).

    Candidates: a ``grid × grid`` lattice of source pixels. With ``top = N``,
    only the cycle-consistent ones are kept (the target's flow brings the match
    back within ``max_cycle`` of the image diagonal: background matches rarely
    are) and the ``N`` of highest ``confidence`` ``(H, W)`` (or, without one,
    smallest cycle error) are returned, no two closer than ``spacing`` of the
    diagonal (so they spread over the object); ``top = None`` returns every
    candidate. ``foreground``: a bool ``(H, W)`` mask the candidates must lie on.
    Returns ``(src_points (K, 2), trg_points (K, 2), scores (K,), consistent)``
    with points as pixel ``(x, y)``, scores the confidence (or
    ``1 − cycle error / max_cycle``), sorted best first, and the number of
    cycle-consistent candidates.
    """
    h, w = src_to_trg.shape[:2]
    pts = grid_points(h, w, n=grid, margin=0.06, mask=foreground)
    ij = np.round(pts).astype(int)
    moved = src_to_trg[ij[:, 1], ij[:, 0]].astype(np.float64)
    ht, wt = trg_to_src.shape[:2]
    inside = np.isfinite(moved).all(1) & (moved[:, 0] >= 0) & (moved[:, 0] <= wt - 1) & (moved[:, 1] >= 0) & (moved[:, 1] <= ht - 1)
    err = np.full(len(pts), np.inf)
    q = np.round(np.nan_to_num(moved[inside])).astype(int)
    err[inside] = np.hypot(*(trg_to_src[q[:, 1], q[:, 0]] - pts[inside]).T) / np.hypot(h, w)
    consistent = err <= max_cycle
    if confidence is not None:
        scores = np.asarray(confidence, dtype=np.float64)[ij[:, 1], ij[:, 0]]
    else:
        scores = 1.0 - np.minimum(err, max_cycle * 2) / max_cycle
    keep = np.flatnonzero(consistent & np.isfinite(scores)) if top is not None else np.flatnonzero(inside)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    if top is not None:
        keep = _spread(pts, keep, top, spacing * np.hypot(h, w))
    return pts[keep], moved[keep], scores[keep], int(consistent.sum())


def _spread(pts: np.ndarray, order: np.ndarray, n: int, min_distance: float) -> np.ndarray:
    """The first ``n`` of ``order`` (indices into ``pts (K, 2)``, best first) none closer than ``min_distance`` to a better one."""
    chosen: list[int] = []
    for i in order:
        if len(chosen) == n:
            break
        if not chosen or np.hypot(*(pts[chosen] - pts[i]).T).min() >= min_distance:
            chosen.append(int(i))
    return np.asarray(chosen, dtype=int)


def draw_scored_matches(
    src: Image.Image,
    trg: Image.Image,
    src_points: np.ndarray,
    trg_points: np.ndarray,
    scores: np.ndarray,
) -> tuple[Image.Image, float, float]:
    """Matches ``(K, 2)`` side by side, each line and its end points coloured by its score (:func:`colormap`).

    The colours span ``[min, max]`` of ``scores``; returns the drawing and that
    range (for a :func:`colour_bar`). The best matches are drawn last (on top).
    """
    canvas, dx = side_by_side(src, trg)
    draw = ImageDraw.Draw(canvas)
    lo, hi = (float(np.min(scores)), float(np.max(scores))) if len(scores) else (0.0, 1.0)
    colours = colormap((scores - lo) / (hi - lo) if hi > lo else np.ones_like(scores))
    radius = max(3, min(src.width, src.height, trg.width, trg.height) // 70)
    width = max(1, radius // 2)
    for k in np.argsort(scores, kind="stable"):
        (px, py), (qx, qy), c = src_points[k], trg_points[k], tuple(int(v) for v in colours[k])
        qx += dx
        draw.line([(px, py), (qx, qy)], fill=c, width=width)
        for x, y in ((px, py), (qx, qy)):
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=c, outline="black")
    return canvas, lo, hi


def matches_figure(
    src: Image.Image,
    trg: Image.Image,
    src_to_trg: np.ndarray,
    trg_to_src: np.ndarray,
    confidence: np.ndarray | None,
    title: str,
    top: int = 30,
    foreground: np.ndarray | None = None,
) -> Image.Image:
    """Matches worth drawing (:func:`sample_matches`) side by side, titled, with a colour bar and a note.

    ``src``/``trg``: the two images at the flows' sizes; flows ``(H, W, 2)``
    from ``src`` and ``(H', W', 2)`` from ``trg``; ``confidence`` ``(H, W)``
    colours the matches (else their cycle consistency); ``top = 0``: every
    match of the grid.
    """
    pts, moved, scores, consistent = sample_matches(src_to_trg, trg_to_src, confidence, top=top or None, foreground=foreground)
    drawing, lo, hi = draw_scored_matches(src, trg, pts, moved, scores)
    label = "match confidence" if confidence is not None else "cycle consistency"
    grid = f"{GRID_FOR_MATCHES}x{GRID_FOR_MATCHES}"
    note = (
        f"the {len(pts)} most confident of {consistent} cycle-consistent matches of a {grid} grid (--top 0: all)"
        if top
        else f"all {len(pts)} matches of a {grid} grid, background included"
    )
    bar = colour_bar(min(drawing.width, 360), lo, hi, label)
    return with_title_and_legend(drawing, title, bar, note)


# ----------------------------------------------------------------------------- heatmap figures (show)

#: Height of every panel of :func:`heatmap_figure`, of its title band and of the gap between panels (pixels).
PANEL_HEIGHT = 240
TITLE_HEIGHT = 22
GAP = 6


def upsample_heatmap(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(h, w)`` cell scores → ``(H, W)`` with cell centres on the image's corner pixels (align_corners)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.asarray(heat, dtype=np.float32))[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=True)[0, 0].numpy()


def _marker(draw, xy: tuple[float, float], colour=(255, 255, 255), r: int = 6) -> None:
    x, y = xy
    draw.ellipse([x - r, y - r, x + r, y + r], outline=(0, 0, 0), width=3)
    draw.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=2)
    draw.line([x - r - 3, y, x + r + 3, y], fill=colour, width=1)
    draw.line([x, y - r - 3, x, y + r + 3], fill=colour, width=1)


def _titled(img: Image.Image, title: str) -> Image.Image:
    canvas = Image.new("RGB", (img.width, img.height + TITLE_HEIGHT), (255, 255, 255))
    canvas.paste(img, (0, TITLE_HEIGHT))
    ImageDraw.Draw(canvas).text((4, 5), title, fill=(0, 0, 0))
    return canvas


def _fit_height(img: Image.Image, height: int) -> Image.Image:
    w = max(1, round(img.width * height / img.height))
    return img.convert("RGB").resize((w, height), Image.BILINEAR)


def heatmap_panel(target: Image.Image, heat: np.ndarray, title: str, height: int = PANEL_HEIGHT, alpha: float = 0.55) -> Image.Image:
    """One panel: ``heat (hB, wB)`` over the target image, its maximum marked, with a title and a colour bar of its range."""
    base = _fit_height(target, height)
    up = upsample_heatmap(heat, (base.height, base.width))
    img = blend(heatmap_image(up), base, alpha)
    y, x = np.unravel_index(int(np.argmax(up)), up.shape)
    _marker(ImageDraw.Draw(img), (float(x), float(y)), colour=(255, 255, 255), r=4)
    titled = _titled(img, f"{title}  max {float(np.max(heat)):.3f}")
    bar = colour_bar(titled.width, float(np.nanmin(up)), float(np.nanmax(up)), "matching score")
    panel = Image.new("RGB", (titled.width, titled.height + bar.height), (255, 255, 255))
    panel.paste(titled, (0, 0))
    panel.paste(bar, (0, titled.height))
    return panel


def heatmap_figure(
    source: Image.Image,
    point: tuple[float, float],
    target: Image.Image,
    panels: Sequence[tuple[str, np.ndarray]],
    height: int = PANEL_HEIGHT,
) -> Image.Image:
    """The whole figure: source with ``point`` (pixels), then every ``(title, heatmap)`` panel over ``target``.

    source / target: PIL images; heatmaps ``(hB, wB)`` over the target's
    feature grid (any size; drawn with cell centres at the image corners).
    Returns a PIL RGB image.
    """
    src = _fit_height(source, height)
    scale = height / source.height
    _marker(ImageDraw.Draw(src), (point[0] * scale, point[1] * scale), colour=(255, 40, 40))
    tiles = [_titled(src, f"source ({point[0]:g}, {point[1]:g})")]
    tiles += [heatmap_panel(target, heat, title, height) for title, heat in panels]
    width = sum(t.width for t in tiles) + GAP * (len(tiles) - 1)
    fig = Image.new("RGB", (width, max(t.height for t in tiles)), (255, 255, 255))
    x = 0
    for t in tiles:
        fig.paste(t, (x, 0))
        x += t.width + GAP
    return fig
