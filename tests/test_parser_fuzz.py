"""Fuzzing the annotation parsers (RLE, Pascal VOC XML, mask images): a named `DataError` or a valid result, never
another exception. Seeded (derandomized) so CI runs the same examples; a few seconds in all."""

import io
import math
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from cascade_defect.data.boxes import rle_to_boxes
from cascade_defect.data.neu import parse_voc
from cascade_defect.data.rle import parse_rle, rle_area, rle_decode
from cascade_defect.errors import DataError
from cascade_defect.imaging import load_mask

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

SHAPE = (7, 11)
number = st.one_of(st.integers(-5, 90).map(str), st.integers(-10**30, 10**30).map(str),
                   st.sampled_from(["", "x", "1.5", "+3", "-0", "0x1f", "1e3", "٣", "1_0", "9" * 5000, "nan"]))
rle_text = st.one_of(st.text(max_size=40), st.lists(number, max_size=8).map(" ".join),
                     st.lists(st.integers(1, 80), max_size=8).map(lambda v: " ".join(map(str, v))))


@FUZZ
@given(rle_text)
@example("1 " + "9" * 5000)  # past Python's int-string limit: was a ValueError
@example("1 12345678901234567890123")
def test_rle_parsers_raise_only_data_error(text):
    try:
        starts, lengths = parse_rle(text, SHAPE, item="fuzz.csv", row=3)
    except DataError as exc:
        assert exc.item == "fuzz.csv" and exc.row == 3 and "malformed RLE" in str(exc)
        for fn in (rle_decode, rle_area):  # the others refuse the same text the same way
            try:
                fn(text, SHAPE)
            except DataError:
                continue
            raise AssertionError(f"{fn.__name__} accepted what parse_rle refused: {text!r}")
        return
    mask = rle_decode(text, SHAPE)
    assert mask.shape == SHAPE and int(mask.sum()) == rle_area(text, SHAPE) == int(lengths.sum())
    boxes, area = rle_to_boxes(text, SHAPE, "c", min_area=1)
    assert area == int(mask.sum())
    for box in boxes:
        assert 0 <= box.x1 < box.x2 <= SHAPE[1] and 0 <= box.y1 < box.y2 <= SHAPE[0]


coord = st.one_of(st.integers(-20, 120).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                  st.sampled_from(["", " ", "ten", "1e400", "-1e400", "inf", "nan", "1,5", "0x10"]))
obj = st.tuples(st.sampled_from(["crazing", "", " ", "<", "patches"]), coord, coord, coord, coord,
                st.booleans()).map(
    lambda t: (f"<object><name>{t[0] if t[0] != '<' else '&lt;'}</name>"
               + ("<bndbox>" + "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), t[1:5]))
                  + "</bndbox>" if t[5] else "") + "</object>"))
size = st.one_of(st.just(""), st.tuples(coord, coord).map(lambda wh: f"<size><width>{wh[0]}</width>"
                                                                      f"<height>{wh[1]}</height></size>"))
voc = st.one_of(
    st.tuples(size, st.lists(obj, max_size=4)).map(lambda t: f"<annotation>{t[0]}{''.join(t[1])}</annotation>"),
    st.text(max_size=60),
    st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
)


@FUZZ
@given(voc)
@example("<annotation><size><width>0</width><height>1e400</height></size></annotation>")  # was an OverflowError
@example("<annotation><object><name>c</name><bndbox><xmin>nan</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax>"
         "</bndbox></object></annotation>")  # was a NaN box
def test_voc_parser_raises_only_data_error_and_returns_finite_boxes(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "a.xml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            boxes, clipped = parse_voc(path, (100, 60))
        except DataError as exc:
            assert exc.item == str(path)
            return
    for b in boxes:
        assert all(math.isfinite(v) for v in (b.x1, b.y1, b.x2, b.y2)), b
        assert 0 <= b.x1 < b.x2 <= 100 and 0 <= b.y1 < b.y2 <= 60 and b.cls.strip()


def _encoded(arr_mode_fmt):
    arr, mode, fmt = arr_mode_fmt
    buf = io.BytesIO()
    img = Image.fromarray(arr.astype(np.uint16) * 257) if mode == "I;16" else Image.fromarray(arr).convert(mode)
    img.save(buf, format=fmt)
    return buf.getvalue()


masks = st.tuples(
    st.tuples(st.integers(1, 9), st.integers(1, 9)).flatmap(
        lambda hw: st.binary(min_size=hw[0] * hw[1], max_size=hw[0] * hw[1]).map(
            lambda v: np.frombuffer(v, np.uint8).reshape(hw).copy())),
    st.sampled_from(["L", "1", "P", "RGBA", "LA", "I;16", "RGB"]),
    st.sampled_from(["PNG", "BMP", "TIFF"]),
).filter(lambda t: not (t[1] in ("LA", "I;16") and t[2] == "BMP")).map(_encoded)
mask_bytes = st.one_of(
    masks,
    st.tuples(masks, st.integers(0, 200)).map(lambda t: t[0][:t[1]]),  # truncated
    st.tuples(masks, st.integers(0, 200), st.binary(min_size=1, max_size=4)).map(
        lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + len(t[2]):]),  # corrupted bytes
    st.binary(max_size=80),
)


@settings(FUZZ, max_examples=60)
@given(mask_bytes)
def test_mask_reader_raises_only_data_error(data):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.png"
        path.write_bytes(data)
        try:
            mask = load_mask(path)
        except DataError as exc:
            assert exc.item == str(path)
            return
    assert mask.dtype == bool and mask.ndim == 2 and mask.size > 0


# -- hostile uploads (issue 23): thin strips, cut files with their end marker put back, headers that lie --------
def _image_bytes(arr, fmt):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def _cut_keeping_the_end(data: bytes, keep: int, fmt: str) -> bytes:
    """The first `keep` bytes plus the format's end (JPEG's EOI, PNG's IEND chunk): well formed, rows missing."""
    if fmt == "JPEG":
        return data[:keep].rstrip(b"\xff") + b"\xff\xd9"
    idat = data.index(b"IDAT") - 4
    body = zlib.compress(zlib.decompress(data[idat + 8:idat + 8 + int.from_bytes(data[idat:idat + 4], "big")])[:keep])
    chunk = lambda kind, d: len(d).to_bytes(4, "big") + kind + d + zlib.crc32(kind + d).to_bytes(4, "big")  # noqa: E731
    return data[:idat] + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def _cut_case(fmt: str, h: int, w: int, frac: float) -> tuple[str, bytes]:
    data = _image_bytes(np.random.default_rng(h * 100 + w).integers(0, 256, (h, w), dtype=np.uint8), fmt)
    keep = int(h * (w + 1) * frac) if fmt == "PNG" else int(len(data) * frac)  # raw rows / file bytes kept
    return "cut", _cut_keeping_the_end(data, keep, fmt)


hostile = st.one_of(
    st.tuples(st.integers(1, 3), st.integers(61, 3000), st.booleans()).map(  # thin strips, either way up
        lambda t: ("thin", _image_bytes(np.zeros((t[0], t[1]) if t[2] else (t[1], t[0]), np.uint8), "PNG"))),
    st.tuples(st.sampled_from(["PNG", "JPEG"]), st.integers(16, 64), st.integers(16, 64), st.floats(0.05, 0.8))
    .map(lambda t: _cut_case(*t)),
    st.binary(max_size=120).map(lambda b: ("junk", b)),
)


@settings(FUZZ, max_examples=80)
@given(hostile)
def test_hostile_uploads_are_refused_with_a_4xx_never_decided(case):
    """Thin strips are `bad_aspect_ratio`, files cut short with their end put back are refused (issue 23)."""
    pytest.importorskip("fastapi")
    from cascade_defect.services.errors import ApiError
    from cascade_defect.services.uploads import UploadLimits, decode_upload

    kind, data = case
    try:
        arr = decode_upload(data, "h.png", UploadLimits(max_bytes=1 << 20, max_pixels=4_000_000, max_files=1))
    except ApiError as exc:
        assert 400 <= exc.status < 500 and "h.png" in exc.message
        if kind == "thin":
            assert exc.code == "bad_aspect_ratio"
        if kind == "cut":
            assert exc.code in ("corrupt_image", "unsupported_image")
        return
    assert kind == "junk" and arr.ndim == 3 and arr.size > 0, f"a {kind} upload was decided"
