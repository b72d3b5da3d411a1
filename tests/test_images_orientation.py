"""Images are read upright (EXIF orientation applied) everywhere, with upright sizes; large valid images are decoded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import semcorr.images as images
from semcorr.errors import DataError
from semcorr.images import EXIF_ORIENTATION, image_file_size, load_image, load_mask

RED, BLUE = (255, 0, 0), (0, 0, 255)


def phone_jpeg(path: Path, width: int = 300, height: int = 200, orientation: int = 6) -> Path:
    """A ``width × height`` stored JPEG, blue with a red top-left block, tagged with an EXIF orientation.

    Orientation 6 means "rotate 90° clockwise to display": the stored top-left
    corner is shown top-right, and the shown image is ``height × width``.
    """
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:] = BLUE
    arr[: height // 4, : width // 4] = RED
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    Image.fromarray(arr).save(path, quality=95, exif=exif.tobytes())
    return path


def colour_at(img: Image.Image, x: int, y: int) -> tuple[int, int, int]:
    return tuple(int(round(c / 255)) * 255 for c in img.getpixel((x, y)))  # type: ignore[return-value]


def test_a_rotated_phone_jpeg_is_read_upright_with_its_upright_size(tmp_path):
    path = phone_jpeg(tmp_path / "phone.jpg")
    with Image.open(path) as raw:
        assert raw.size == (300, 200)  # what is stored
    img = load_image(path)
    assert img.size == (200, 300)  # (W, H) as shown
    assert images.original_size(img) == (300, 200) == image_file_size(path)  # (H, W)
    assert colour_at(img, 200 - 10, 10) == RED  # stored top-left → shown top-right
    assert colour_at(img, 10, 10) == BLUE and colour_at(img, 10, 300 - 10) == BLUE


def test_every_orientation_and_an_untagged_file(tmp_path):
    # where the stored top-left corner (red) is shown, per orientation, as (right?, bottom?)
    corner = {1: (0, 0), 2: (1, 0), 3: (1, 1), 4: (0, 1), 5: (0, 0), 6: (1, 0), 7: (1, 1), 8: (0, 1)}
    for orientation, (right, bottom) in corner.items():
        img = load_image(phone_jpeg(tmp_path / f"o{orientation}.jpg", orientation=orientation))
        assert img.size == ((200, 300) if orientation >= 5 else (300, 200)), orientation
        x = img.width - 10 if right else 10
        y = img.height - 10 if bottom else 10
        assert colour_at(img, x, y) == RED, orientation
    plain = tmp_path / "plain.png"
    Image.new("RGB", (30, 20), RED).save(plain)
    assert load_image(plain).size == (30, 20) and image_file_size(plain) == (20, 30)


def test_reduced_decoding_of_a_large_rotated_jpeg_keeps_the_upright_original_size(tmp_path):
    path = phone_jpeg(tmp_path / "big.jpg", width=1600, height=800)
    img = load_image(path, reduce_to=100)
    assert images.original_size(img) == (1600, 800)
    assert img.height > img.width and img.width < 800  # decoded at a reduced scale, upright
    assert colour_at(img, img.width - 5, 5) == RED


def test_a_rotated_mask_is_turned_like_its_image(tmp_path):
    path = tmp_path / "mask.png"
    arr = np.zeros((20, 30), np.uint8)
    arr[:5, :5] = 255
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    Image.fromarray(arr).save(path, exif=exif.tobytes())
    mask = load_mask(path)
    assert mask.shape == (30, 20) and mask[:5, -5:].all() and mask.sum() == 25


def test_records_store_the_upright_size(tmp_path, mobilenet):
    from semcorr.pipeline import FeatureExtractor

    src = phone_jpeg(tmp_path / "phone.jpg")
    trg = tmp_path / "plain.png"
    Image.new("RGB", (120, 80), BLUE).save(trg)
    ext = FeatureExtractor(mobilenet, ["features.13"], (64, 64))
    rec = ext.extract_record("p", src, trg)
    assert tuple(rec.src_size) == (300, 200) and tuple(rec.trg_size) == (80, 120)


def test_large_valid_images_are_decoded_and_only_bombs_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 10_000)  # the same rules, scaled down
    ok = tmp_path / "large.png"
    Image.new("RGB", (120, 80), RED).save(ok)  # 9600 pixels: above PIL's own warning limit here, below ours
    assert load_image(ok).size == (120, 80)
    big = tmp_path / "bomb.png"
    Image.new("RGB", (200, 80), RED).save(big)  # 16000 pixels
    with pytest.raises(DataError, match=r"claims 200x80 pixels .*decompression bombs") as info:
        load_image(big)
    assert "truncated" not in str(info.value)
    huge = tmp_path / "huge.png"
    Image.new("RGB", (300, 100), RED).save(huge)  # beyond twice the limit: PIL refuses it while opening
    with pytest.raises(DataError, match="decompression bomb"):
        load_image(huge)
