"""The tricho.result/1 payload and its JSON Schema (station/schemas/result.schema.json)."""
from __future__ import annotations

import copy
import json

import jsonschema
import pytest

from station import payload
from tests.mqtt_broker import synthetic_record


def _payload(**kw):
    return payload.build_result_payload(synthetic_record(1), "station-01", **kw)


def test_schema_is_valid_draft_2020_12():
    schema = payload.load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    required = set(schema["$defs"]["analysis"]["required"])
    assert {"width", "height", "um_per_px", "area_cm2", "hair_count", "density_per_cm2", "mean_thickness_um",
            "median_thickness_um", "vellus_threshold_um", "vellus_count", "terminal_count",
            "cumulative_thickness_mm_per_cm2", "follicular_units", "quality", "elapsed_ms"} <= required


def test_payload_is_valid_and_round_trips_through_the_outbox_bytes():
    rec = synthetic_record(3)
    msgs = payload.outbox_messages(rec, "station-01")
    assert [t for t, _ in msgs] == ["results"]
    decoded, errors = payload.decode_and_validate(msgs[0][1])
    assert errors == []
    assert decoded["schema"] == "tricho.result/1.1"  # minor version 1.1 (optional follow_up); major still 1
    assert decoded["id"] == rec.id and decoded["station_id"] == "station-01"
    assert decoded["captured_at"].endswith("Z")
    assert decoded["capture"]["exposure_us"] == 8000 and decoded["capture"]["colour_gains"] == [1.8, 1.6]
    assert decoded["analysis"]["hairs"][0]["thickness_um"] == 50.0
    assert decoded["calibration"] == {"source": "config", "um_per_px": 4.0, "id": None, "created_at": None}
    # the same record always gives the same bytes (retries are byte-identical)
    assert payload.outbox_messages(rec, "station-01")[0][1] == msgs[0][1]


def test_include_hairs_off_drops_the_list_and_stays_valid():
    p = _payload(include_hairs=False)
    assert "hairs" not in p["analysis"]
    assert payload.validation_errors(p) == []


def test_non_finite_numbers_become_null():
    rec = synthetic_record(2)
    rec.analysis["mean_thickness_um"] = float("nan")
    rec.analysis["median_thickness_um"] = float("inf")
    p = payload.build_result_payload(rec, "s")
    assert p["analysis"]["mean_thickness_um"] is None and p["analysis"]["median_thickness_um"] is None
    payload.encode(p)  # allow_nan=False would raise on NaN
    assert payload.validation_errors(p) == []


def test_later_versions_may_add_fields():
    p = _payload()
    p["analysis"]["growth_rate_um_per_day"] = 310.0
    p["quality"]["new_check"] = 1
    p["capture"]["sensor_temperature_c"] = 41.0
    p["registration"] = {"matched": 17}
    assert payload.validation_errors(p) == []


@pytest.mark.parametrize("mutate, where", [
    (lambda p: p["analysis"].pop("hair_count"), "analysis"),
    (lambda p: p["analysis"]["follicular_units"].pop("4+"), "follicular_units"),
    (lambda p: p.__setitem__("schema", "tricho.result/2"), "schema"),
    (lambda p: p.__setitem__("id", "not-a-uuid"), "id"),
    (lambda p: p.__setitem__("captured_at", "yesterday"), "captured_at"),
    (lambda p: p["analysis"].__setitem__("median_thickness_um", "54"), "median_thickness_um"),
    (lambda p: p["analysis"]["hairs"][0].pop("thickness_um"), "hairs"),
    (lambda p: p.pop("patient_id"), "patient_id"),
])
def test_invalid_payloads_are_reported(mutate, where):
    p = copy.deepcopy(_payload())
    mutate(p)
    errors = payload.validation_errors(p)
    assert errors and any(where in e for e in errors), errors


def test_decode_rejects_non_json():
    p, errors = payload.decode_and_validate(b"\xff not json")
    assert p is None and "not UTF-8 JSON" in errors[0]
    p, errors = payload.decode_and_validate(json.dumps({"schema": "tricho.result/1"}).encode())
    assert p is None and errors


def test_the_example_in_docs_mqtt_md_is_valid():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "mqtt.md").read_text(encoding="utf-8")
    blocks = [json.loads(b) for b in re.findall(r"```json\n(\{.*?)```", text, re.S)]
    examples = [b for b in blocks if b.get("schema") == "tricho.result/1"]
    assert examples, "docs/mqtt.md has no example payload"
    for ex in examples:
        assert payload.validation_errors(ex) == []


def test_payload_from_the_real_analysis_core_is_valid():
    """The schema matches what core.analyze actually returns (a phantom with hairs, and a blank frame)."""
    import dataclasses

    import numpy as np

    core = pytest.importorskip("core")
    from tests.phantoms.generator import PhantomSpec, render_phantom

    image, _ = render_phantom(3, PhantomSpec(width=640, height=480))
    for frame in (image, np.full((480, 640, 3), 200, np.uint8)):
        result = core.analyze(frame, 4.0)
        rec = dataclasses.replace(synthetic_record(0), analysis=result.to_dict(include_hairs=True))
        for include_hairs in (True, False):
            p = payload.build_result_payload(rec, "station-01", include_hairs=include_hairs)
            assert payload.validation_errors(p) == [], (result.hair_count, include_hairs)
            payload.encode(p)
