"""The UI's API client and event handlers against a real tiny HTTP server serving canned JSON."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from matplotlib.figure import Figure

from ui.app import Handlers, build_app
from ui.client import ApiClient, ApiError, ApiUnavailable, ModelRef

pytestmark = pytest.mark.unit

LINEAGE = {
    "model_name": "btc-forecaster",
    "version": 2,
    "aliases": ["champion"],
    "run_id": "run-2",
    "data_version": "v0.3",
    "dvc_md5": "md5-v03",
    "git_sha": "sha-1",
    "trained_at": "2024-11-01T00:00:00+00:00",
    "kind": "torch",
}
FORECAST = {
    "forecasts": [{"date": "2024-11-01", "close": 70_500.0}],
    "history": [
        {"date": "2024-10-30", "close": 69_000.0},
        {"date": "2024-10-31", "close": 70_000.0},
    ],
    "lineage": LINEAGE,
}
MODELS = {
    "name": "btc-forecaster",
    "aliases": {"champion": 2},
    "versions": [
        {
            "version": 2,
            "aliases": ["champion"],
            "kind": "torch",
            "run_id": "run-2",
            "data_version": "v0.3",
            "dvc_md5": "md5-v03",
            "created_at": 1_730_000_000_000,
            "metrics": {"test_mase": 0.98, "test_mae": 800.0, "test_rmse": 1100.0},
        },
        {
            "version": 1,
            "aliases": [],
            "kind": "persistence",
            "metrics": {"test_mase": 1.0, "test_mae": 815.0, "test_rmse": 1200.0},
        },
    ],
}
LIMITS = {"max_horizon": 30, "max_rows": 1000, "history_days": 60}
SWEEP = {
    "parent_run_id": "parent",
    "study_name": "btc-sweep",
    "trials": [
        {
            "run_id": "t0",
            "trial_number": 0,
            "status": "FINISHED",
            "hidden_size": 32,
            "num_layers": 2,
            "cell": "gru",
            "lookback": 30,
            "lr": 0.001,
            "val_loss": 0.4,
            "test_mase": 0.99,
        }
    ],
}
SKIP = {"__type__": "update"}  # gr.skip(): the component keeps its value


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    delay_s: float = 0.0
    content_type: str = "application/json"


@dataclass
class CannedApi:
    """Routes (method, path) → Reply; records every request it receives."""

    url: str = ""
    routes: dict[tuple[str, str], Reply] = field(default_factory=dict)
    seen: list[dict[str, Any]] = field(default_factory=list)


def _handler(api: CannedApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            api.seen.append(
                {"method": method, "path": parts.path, "query": parse_qs(parts.query), "json": body}
            )
            reply = api.routes.get(
                (method, parts.path), Reply(404, {"title": "Not Found", "detail": "no such route"})
            )
            time.sleep(reply.delay_s)
            raw = (reply.body if isinstance(reply.body, str) else json.dumps(reply.body)).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                pass

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


SCORES = {"mase": 1.0057, "crps": 1234.5, "coverage_80": 0.8, "coverage_95": 0.95}
REFUSAL = "its median's MASE 1.0057 exceeds 1: the point forecast is worse than persistence"
DECIDED = {
    "action": "refuse",
    "outcome": "refused",
    "version": 2,
    "decided_at": "2026-12-07T10:00:00+00:00",
    "reason": REFUSAL,
    "champion_before": 1,
    "champion_after": 1,
    "scores": [{"role": "challenger", "version": 2, **SCORES}],
}
DECISION = {"name": "btc-forecaster", "version": 2, "aliases": [], "decision": DECIDED}
COMPARISON = {
    "name": "btc-forecaster",
    "eval": {"data_version": "v0.3", "rows": 366, "first_day": "2023-11-01"},
    "baseline": {"crps": 1250.0, "mase": 1.0},
    "versions": [
        {"version": 2, "kind": "torch", **SCORES, "decision": DECIDED},
        {"version": 1, "kind": "persistence", "aliases": ["champion"], "crps": 1250.0},
    ],
}


@pytest.fixture
def api() -> Iterator[CannedApi]:
    canned = CannedApi(
        routes={
            ("GET", "/models"): Reply(body=MODELS),
            ("POST", "/predict"): Reply(body=FORECAST),
            ("GET", "/sweeps/latest"): Reply(body=SWEEP),
            ("GET", "/limits"): Reply(body=LIMITS),
            ("GET", "/models/2/decision"): Reply(body=DECISION),
            ("GET", "/models/compare"): Reply(body=COMPARISON),
        }
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(canned))
    server.daemon_threads = True
    canned.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield canned
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(api: CannedApi) -> Iterator[ApiClient]:
    with ApiClient(api.url + "/", timeout_s=2.0) as c:
        yield c


def _dead_url() -> str:
    with socket.socket() as sock:  # bound then released: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_models_parses_versions_aliases_and_metrics(client: ApiClient) -> None:
    models = client.models()
    assert models.name == "btc-forecaster" and models.aliases == {"champion": 2}
    assert [v.version for v in models.versions] == [2, 1]
    assert models.versions[0].metrics.test_mase == 0.98
    assert models.versions[1].run_id is None  # optional fields may be absent


@pytest.mark.parametrize(
    ("ref", "query"),
    [
        (ModelRef("version", "1"), {"version": ["1"]}),
        (ModelRef("alias", "challenger"), {"alias": ["challenger"]}),
    ],
)
def test_predict_sends_the_model_ref_and_horizon(
    client: ApiClient, api: CannedApi, ref: ModelRef, query: dict[str, list[str]]
) -> None:
    result = client.predict(ref, 5)
    assert api.seen[-1] == {
        "method": "POST",
        "path": "/predict",
        "query": query,
        "json": {"horizon": 5},
    }
    assert result.lineage.run_id == "run-2" and result.forecasts[0].close == 70_500.0
    assert [p.date for p in result.history] == ["2024-10-30", "2024-10-31"]


@pytest.mark.parametrize("horizon", [0, 31])
def test_predict_rejects_a_bad_horizon_before_calling(
    client: ApiClient, api: CannedApi, horizon: int
) -> None:
    with pytest.raises(ApiError, match="horizon must be between 1 and 30"):
        client.predict(ModelRef("alias", "champion"), horizon)
    assert [s["path"] for s in api.seen] == ["/limits"]  # the bound is the API's; no /predict


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (
            Reply(
                404,
                {
                    "type": "about:blank",
                    "title": "Not Found",
                    "status": 404,
                    "detail": "model btc-forecaster has no version 9",
                },
            ),
            "has no version 9",
        ),
        (
            Reply(
                422,
                {
                    "detail": [
                        {"loc": ["query", "version"], "msg": "Input should be a valid integer"},
                        {"msg": "alias and version are exclusive"},
                    ]
                },
            ),
            "Input should be a valid integer; alias and version are exclusive",
        ),
        (Reply(500, "Internal Server Error", content_type="text/plain"), "Internal Server Error"),
        (Reply(503, {"title": "model not loaded"}), "model not loaded"),
    ],
)
def test_error_statuses_become_api_errors_with_the_server_message(
    client: ApiClient, api: CannedApi, reply: Reply, message: str
) -> None:
    api.routes[("POST", "/predict")] = reply
    with pytest.raises(ApiError) as info:
        client.predict(ModelRef("version", "9"), 1)
    assert info.value.status == reply.status
    assert message in info.value.message and f"({reply.status})" in info.value.message


@pytest.mark.parametrize("body", [{"forecasts": []}, "not json at all", [1, 2]])
def test_unreadable_answers_are_api_errors(client: ApiClient, api: CannedApi, body: Any) -> None:
    api.routes[("POST", "/predict")] = Reply(body=body)
    with pytest.raises(ApiError, match="not what the UI expects"):
        client.predict(ModelRef("alias", "champion"), 1)


def test_nothing_listening_is_api_unavailable() -> None:
    url = _dead_url()
    with ApiClient(url, timeout_s=2.0) as dead, pytest.raises(ApiUnavailable) as info:
        dead.models()
    assert url in info.value.message and "not reachable" in info.value.message


def test_a_slow_api_times_out_as_api_unavailable(api: CannedApi) -> None:
    api.routes[("GET", "/models")] = Reply(body=MODELS, delay_s=1.5)
    with ApiClient(api.url, timeout_s=0.3) as impatient:
        started = time.perf_counter()
        with pytest.raises(ApiUnavailable, match=r"did not answer within 0\.3 s"):
            impatient.models()
        assert time.perf_counter() - started < 1.2


def test_latest_sweep(client: ApiClient) -> None:
    sweep = client.latest_sweep()
    assert sweep.study_name == "btc-sweep" and sweep.trials[0].hidden_size == 32


# ---- event handlers: what the page shows, through the same client and server ----


def test_refresh_models_fills_picker_and_status(client: ApiClient) -> None:
    picker, status = Handlers(client).refresh_models(None)
    assert picker.value == "alias:champion"
    assert [value for _, value in picker.choices] == ["alias:champion", "version:2", "version:1"]
    assert "2 version(s)" in status and "@champion → v2" in status


def test_compare_tab_shows_same_day_scores_and_falls_back_saying_why(
    client: ApiClient, api: CannedApi
) -> None:
    note, table, chart = Handlers(client).refresh_compare()
    assert "**same 366 test days** of data v0.3" in note
    assert table["version"].tolist() == ["v2", "v1"] and table["CRPS rank"].tolist() == [1, 2]
    assert table["MASE"].tolist() == ["1.006", ""] and table["reason"].tolist()[0] == REFUSAL
    assert isinstance(chart, Figure)
    api.routes[("GET", "/models/compare")] = Reply(404, {"detail": "no evaluation data"})
    note, table, chart = Handlers(client).refresh_compare()
    assert note.startswith("⚠️") and "no evaluation data" in note and "not comparable" in note
    assert table["version"].tolist() == [2, 1] and chart is None  # each one's own window


def test_forecast_draws_plot_lineage_and_summary(client: ApiClient, api: CannedApi) -> None:
    handlers = Handlers(client, mlflow_ui_url="http://mlflow:5000")
    plot, lineage, decision, status = handlers.forecast("version:2", 1.0)
    assert isinstance(plot, Figure)
    assert "v2 was refused on 2026-12-07 (the champion stays v1): " + REFUSAL in decision
    assert "`run-2`" in lineage and "http://mlflow:5000/#/runs/run-2" in lineage
    assert "$70,500" in status
    predicted = [r for r in api.seen if r["path"] == "/predict"]
    assert predicted[-1]["query"] == {"version": ["2"]}
    assert api.seen[-1]["path"] == "/models/2/decision"  # the served version's decision


def test_handlers_turn_a_dead_api_into_messages_and_keep_the_last_plot() -> None:
    with ApiClient(_dead_url(), timeout_s=1.0) as dead:
        handlers = Handlers(dead)
        picker, status = handlers.refresh_models("version:2")
        assert status.startswith("⚠️") and "not reachable" in status
        assert picker == SKIP  # the last good choices stay
        note, table, chart = handlers.refresh_compare()
        assert note.startswith("⚠️") and table == chart == SKIP  # the last table stays
        plot, lineage, decision, status = handlers.forecast(None, 7)
        assert plot == lineage == decision == SKIP
        assert status.startswith("⚠️") and "coinflow serve" in status
        note, trials, scatter = handlers.refresh_sweep()
        assert note.startswith("⚠️") and trials.empty and scatter is None


def test_forecast_with_an_unknown_version_shows_the_api_message(
    client: ApiClient, api: CannedApi
) -> None:
    api.routes[("POST", "/predict")] = Reply(404, {"detail": "no version 9"})
    _, _, _, status = Handlers(client).forecast("version:9", 3)
    assert status.startswith("⚠️") and "no version 9" in status


def test_no_sweep_yet_is_a_note_not_a_warning(client: ApiClient, api: CannedApi) -> None:
    del api.routes[("GET", "/sweeps/latest")]
    note, trials, scatter = Handlers(client).refresh_sweep()
    assert note.startswith("No sweep recorded yet") and trials.empty and scatter is None


def test_sweep_tab_lists_trials(client: ApiClient) -> None:
    note, trials, scatter = Handlers(client).refresh_sweep()
    assert "btc-sweep" in note and "1 trial(s)" in note
    assert trials[["trial", "hidden size", "layers", "val loss"]].values.tolist() == [
        [0, 32, 2, 0.4]
    ]
    assert isinstance(scatter, Figure)


LIVE_POINT = {
    "version": 2,
    "role": "champion",
    "window": "30d",
    "n": 30,
    "mase": 0.97,
    "coverage_80": 0.8,
    "coverage_95": 0.94,
    "crps": 600.0,
}
MONITORING = {
    "model_name": "btc-forecaster",
    "computed_at": "2024-10-05T06:00:00Z",
    "latest": [{**LIVE_POINT, "day": "2024-10-04"}],
    "series": [{**LIVE_POINT, "day": f"2024-10-0{d}"} for d in range(1, 5)],
    "alias_moves": [
        {"at": "2024-10-02T08:00:00Z", "action": "promote", "version": 2, "record_run_id": "r1"}
    ],
    "alias_moves_error": None,
}


def test_live_tab_marks_the_champion_moves(client: ApiClient, api: CannedApi) -> None:
    api.routes[("GET", "/monitoring")] = Reply(body=MONITORING)
    live = client.monitoring("30d")
    assert [(m.action, m.version) for m in live.alias_moves] == [("promote", 2)]
    assert api.seen[-1]["query"] == {"window": ["30d"]}
    note, table, figure = Handlers(client).refresh_live()
    assert "Champion moves (1): v2 promoted on 2024-10-02." in note
    assert table["live MASE"].tolist() == [0.97]
    assert isinstance(figure, Figure) and [t.get_text() for t in figure.axes[0].texts] == [
        "v2 promoted"
    ]


def test_live_tab_without_moves_from_an_older_api_or_a_down_registry(
    client: ApiClient, api: CannedApi
) -> None:
    older = {k: v for k, v in MONITORING.items() if not k.startswith("alias_moves")}
    api.routes[("GET", "/monitoring")] = Reply(body=older)
    note, _, figure = Handlers(client).refresh_live()
    assert "Champion moves" not in note and len(figure.axes[0].texts) == 0
    down = {**MONITORING, "alias_moves": [], "alias_moves_error": "registry unreachable"}
    api.routes[("GET", "/monitoring")] = Reply(body=down)
    note, _, figure = Handlers(client).refresh_live()
    assert "not marked: registry unreachable" in note and isinstance(figure, Figure)


def test_the_page_builds_without_touching_the_api(api: CannedApi) -> None:
    with ApiClient(api.url) as c:
        demo = build_app(c)
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    assert {
        "status",
        "model-picker",
        "horizon",
        "forecast",
        "forecast-plot",
        "lineage",
        "decision",
        "compare-note",
        "versions-table",
        "compare-plot",
        "trials-table",
    } <= ids
    assert api.seen == []
