"""Answer schema, few-shot prompt, exemplars from real samples stored in a model bundle."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from cascade_defect.bundles.bundle import Bundle
from cascade_defect.errors import BundleError, ConfigError, DataError
from cascade_defect.oracle.prompt import (ExemplarSet, PromptBuilder, build_exemplar_set, default_template,
                                          load_exemplars, save_exemplars)
from cascade_defect.oracle.schema import prediction_model
from conftest import real_subdir
from oracle_chat_server import noise_frame


def _png(part) -> Image.Image:
    url = part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_prediction_model_restricts_classes_per_domain():
    model = prediction_model(["pitting", "scratch"])
    ok = model.model_validate_json('{"defect_class": "no_defect", "confidence": 0.2, "reasoning": "clean"}')
    assert ok.defect_class == "no_defect"
    for bad in ('{"defect_class": "crazing", "confidence": 0.5, "reasoning": "r"}',  # another domain's class
                '{"defect_class": "scratch", "confidence": 1.5, "reasoning": "r"}',
                '{"defect_class": "scratch", "confidence": 0.5}',
                '{"defect_class": "scratch", "confidence": 0.5, "reasoning": "r", "box": [1, 2]}',
                '{"defect_class": "scratch", "confidence": 0.5, "reasoning": "' + "x" * 1001 + '"}'):
        with pytest.raises(ValidationError):
            model.model_validate_json(bad)
    schema = model.model_json_schema()
    assert schema["title"] == "DefectPrediction"
    assert schema["properties"]["defect_class"]["enum"] == ["pitting", "scratch", "no_defect"]
    assert prediction_model(("pitting", "scratch")) is model  # cached per taxonomy
    for bad in ([], ["a", "a"], [""], ["no_defect"]):
        with pytest.raises(ValueError):
            prediction_model(bad)


def test_prompt_version_tracks_template_taxonomy_exemplars_and_rendering():
    base = PromptBuilder()
    v = base.version("severstal")
    assert len(v) == 16 and v == PromptBuilder().version("severstal")
    assert v != base.version("neu")
    assert PromptBuilder(template=default_template() + " ").version("severstal") != v
    assert PromptBuilder(taxonomy={"severstal": ["pitting", "inclusion", "scratch"]}).version("severstal") != v
    assert PromptBuilder(max_side=256).version("severstal") != v
    ex = ExemplarSet({"severstal": ("pitting",)}, [])
    from cascade_defect.oracle.prompt import Exemplar, encode_png
    one = Exemplar("severstal", "pitting", "class", encode_png(noise_frame(1)))
    other = Exemplar("severstal", "pitting", "class", encode_png(noise_frame(2)))
    assert PromptBuilder(ExemplarSet(ex.taxonomy, [one])).version("severstal") != \
        PromptBuilder(ExemplarSet(ex.taxonomy, [other])).version("severstal")
    with pytest.raises(ConfigError, match="unknown domain 'coils'"):
        base.version("coils")


def test_messages_downscale_and_crop_to_the_hint():
    frame = noise_frame(3, shape=(256, 1600))
    builder = PromptBuilder(max_side=512)
    system, user = builder.messages("severstal", frame)
    assert system["role"] == "system" and '"pitting", "inclusion", "scratch", "patch", "no_defect"' in system["content"]
    assert "$" not in system["content"]
    whole = _png(user["content"][-1])
    assert whole.size == (512, 82)  # longest side 512, aspect kept
    _, user = builder.messages("severstal", frame, hint=(700, 100, 740, 140))
    text, crop = user["content"][-2]["text"], _png(user["content"][-1])
    assert "cropped to the flagged region x 608-832, y 8-232 of the 1600x256 frame" in text
    assert crop.size == (224, 224)
    assert PromptBuilder(crop_to_hint=False).render(frame, (700, 100, 740, 140)).crop is None
    with pytest.raises(ConfigError):
        PromptBuilder(image_detail="ultra")


@pytest.mark.realdata
def test_exemplars_from_real_samples_round_trip_through_the_bundle(real_data, tmp_path):
    from cascade_defect.data.registry import read_dataset

    sev = read_dataset("severstal", real_subdir(real_data, "severstal")).samples
    ksdd = [s for s in read_dataset("ksdd1", real_subdir(real_data, "ksdd1")).samples if s.group == "kos10"]
    exemplars = build_exemplar_set(sev, "severstal", commutator_samples=ksdd, max_side=256)
    roles = [(e.role, e.label) for e in exemplars.for_domain("severstal")]
    assert roles == [("class", "pitting"), ("class", "inclusion"), ("class", "scratch"), ("class", "patch"),
                     ("commutator", "commutator anomaly")]
    assert exemplars.for_domain("severstal")[-1].source.startswith("kos10/")
    for e in exemplars.exemplars:
        img = Image.open(io.BytesIO(e.png))
        assert max(img.size) <= 256 and min(img.size) >= 64
    # a commutator domain needs no extra anomaly: its own class exemplar is one
    k = build_exemplar_set(ksdd, "ksdd1")
    assert [(e.role, e.label) for e in k.for_domain("ksdd1")] == [("class", "defect")]

    bundle = Bundle.create(tmp_path / "bundle")
    save_exemplars(bundle, exemplars)
    save_exemplars(bundle, k)  # merged: both domains kept
    loaded = load_exemplars(tmp_path / "bundle")
    assert set(loaded.taxonomy) == {"severstal", "ksdd1"}
    assert [e.sha256 for e in loaded.for_domain("severstal")] == [e.sha256 for e in exemplars.for_domain("severstal")]
    assert PromptBuilder(loaded).version("severstal") == PromptBuilder(exemplars).version("severstal")
    _, user = PromptBuilder(loaded).messages("severstal", noise_frame(4))
    texts = [p["text"] for p in user["content"] if p["type"] == "text"]
    assert texts[:4] == ["Reference 1: pitting", "Reference 2: inclusion", "Reference 3: scratch", "Reference 4: patch"]
    assert "commutator" in texts[4] and texts[5].startswith("Frame to judge")
    assert sum(p["type"] == "image_url" for p in user["content"]) == 6
    # tampering is caught
    img = next((tmp_path / "bundle" / "oracle" / "images").rglob("*.png"))
    img.write_bytes(img.read_bytes() + b"x")
    with pytest.raises(BundleError, match="checksum"):
        load_exemplars(tmp_path / "bundle")
    meta = json.loads((tmp_path / "bundle" / "oracle" / "exemplars.json").read_text())
    assert meta["taxonomy"]["severstal"] == ["pitting", "inclusion", "scratch", "patch"]


@pytest.mark.realdata
def test_exemplar_builder_names_what_is_missing(real_data):
    from cascade_defect.data.registry import read_dataset

    sev = read_dataset("severstal", real_subdir(real_data, "severstal")).samples
    with pytest.raises(DataError, match="no sample of class 'dent'"):
        build_exemplar_set(sev, "severstal", ["pitting", "dent"], include_commutator=False)
    with pytest.raises(DataError, match="commutator"):
        build_exemplar_set(sev, "severstal")
    with pytest.raises(BundleError, match="no 'oracle' component"):
        load_exemplars(Bundle.create(__import__("tempfile").mkdtemp()))
