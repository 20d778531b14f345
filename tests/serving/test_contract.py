"""The UI and the API cannot drift apart: real API answers, read by the UI's own models.

ui/client.py parses every answer with pydantic models that ignore extra fields and default
missing ones, so a renamed or dropped field would silently become None in the UI. Here every
field those models declare must be present in what the API really sends, with a valid value.
"""

from __future__ import annotations

import typing
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from serving_helpers import Server

from ui import client as ui

pytestmark = pytest.mark.serving


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside a field annotation (list[Point] → [Point], X | None → [X])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def assert_sends_every_field(model: type[BaseModel], data: Any, where: str) -> None:
    """Every field `model` declares is in `data` (recursively), and `data` validates."""
    model.model_validate(data)
    assert isinstance(data, dict), f"{where}: expected an object, got {data!r}"
    missing = sorted(set(model.model_fields) - set(data))
    assert not missing, f"{where}: the API does not send {missing} that ui.client reads"
    for name, field in model.model_fields.items():
        for inner in _models_in(field.annotation):
            values = data[name] if isinstance(data[name], list) else [data[name]]
            for i, value in enumerate(values):
                if value is not None:
                    assert_sends_every_field(inner, value, f"{where}.{name}[{i}]")


@pytest.mark.parametrize("query", ["", "?alias=challenger", "?version=3"])
def test_predict_answers_are_what_the_ui_reads(api: Server, query: str) -> None:
    body = httpx.post(f"{api.url}/predict{query}", json={"horizon": 3}, timeout=60).json()
    assert_sends_every_field(ui.Forecast, body, "POST /predict")
    assert ui.Forecast.model_validate(body).lineage.version >= 1


def test_limits_are_what_the_ui_reads(api: Server) -> None:
    from forecasting.forecast import MAX_HORIZON

    limits = httpx.get(f"{api.url}/limits", timeout=60).json()
    assert_sends_every_field(ui.Limits, limits, "GET /limits")
    assert ui.Limits.model_validate(limits).max_horizon == MAX_HORIZON


def test_models_and_sweep_answers_are_what_the_ui_reads(api: Server) -> None:
    models = httpx.get(f"{api.url}/models", timeout=60).json()
    assert_sends_every_field(ui.Models, models, "GET /models")
    assert len(ui.Models.model_validate(models).versions) >= 3
    sweep = httpx.get(f"{api.url}/sweeps/latest", timeout=60).json()
    assert_sends_every_field(ui.Sweep, sweep, "GET /sweeps/latest")


def test_the_check_notices_a_missing_field() -> None:
    class Wants(BaseModel):
        date: str
        close: float = 0.0

    with pytest.raises(AssertionError, match=r"does not send \['close'\]"):
        assert_sends_every_field(Wants, {"date": "2024-01-01"}, "test")
