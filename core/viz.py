"""Pictures people would rather look at than read: overlays, match drawings, heatmaps."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw


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


def heatmap_image(scores: np.ndarray, size: tuple[int, int] | None = None) -> Image.Image:
    """A 2D score map as a colour image (blue → red), min-max normalised; ``size = (W, H)``."""
    s = np.asarray(scores, dtype=np.float64)
    lo, hi = np.nanmin(s), np.nanmax(s)
    s = (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)
    r = np.clip(1.5 - np.abs(4 * s - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * s - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * s - 1), 0, 1)
    img = Image.fromarray((np.stack([r, g, b], -1) * 255).astype(np.uint8), mode="RGB")
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
