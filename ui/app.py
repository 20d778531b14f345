"""Gradio Blocks over the serving API: forecast + lineage + decision, versions compared on the
same days, latest sweep, live scores."""

from __future__ import annotations

import os
from typing import Any

import gradio as gr
import pandas as pd
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ui import compare, plots, shaping
from ui.client import ApiClient, ApiClientError, ApiError
from ui.settings import UiSettings

DEFAULT_HORIZON = 7


def _warning(message: str) -> str:
    return f"⚠️ {message}"


class Handlers:
    """Event handlers: call the API, shape the answer, turn every failure into a message."""

    def __init__(self, client: ApiClient, mlflow_ui_url: str | None = None) -> None:
        self.client = client
        self.mlflow_ui_url = mlflow_ui_url

    def refresh_models(self, current: str | None) -> tuple[Any, str]:
        """Picker choices and status line from `GET /models`."""
        try:
            models = self.client.models()
        except ApiClientError as exc:  # keep what the page already shows; say why it is stale
            return gr.skip(), _warning(exc.message)
        choices = shaping.model_choices(models)
        aliases = ", ".join(f"@{a} → v{v}" for a, v in models.aliases.items()) or "no aliases"
        status = (
            f"Connected to {self.client.base_url}: **{models.name}**, "
            f"{len(models.versions)} version(s), {aliases}."
        )
        if not models.versions:
            status = _warning(
                f"{models.name} has no registered versions yet: run a sweep and "
                "`coinflow registry promote`, then press Refresh models."
            )
        return (
            gr.Dropdown(choices=choices, value=shaping.default_choice(choices, current)),
            status,
        )

    def refresh_compare(self) -> tuple[str, pd.DataFrame, Any]:
        """Note, table and dot plot of every version on the same days (`GET /models/compare`);
        an API that cannot score them gets each version's own test scores, said to differ."""
        try:
            comparison = self.client.compare()
        except ApiClientError as exc:
            return self._own_windows(exc.message)
        rows = pd.DataFrame(compare.compare_rows(comparison), columns=compare.COMPARE_HEADERS)
        dots = compare.compare_dots(comparison)
        base = comparison.baseline
        figure = plots.compare_figure(dots, base.crps, base.mase) if dots else None
        return compare.compare_note(comparison), rows, figure

    def _own_windows(self, why: str) -> tuple[str, pd.DataFrame, Any]:
        try:
            models = self.client.models()
        except ApiClientError as exc:
            return _warning(exc.message), gr.skip(), gr.skip()
        rows = pd.DataFrame(shaping.version_rows(models), columns=shaping.VERSION_HEADERS)
        note = _warning(
            f"Same-day scores unavailable ({why}). Below, each version's scores on its own "
            "training run's test window: windows of different data versions are not comparable."
        )
        return note, rows, None

    def decision(self, version: int) -> str:
        """The decision panel of a served version (`GET /models/{version}/decision`)."""
        try:
            return compare.decision_markdown(self.client.decision(version))
        except ApiClientError as exc:
            return f"### Decision\n\n{_warning(exc.message)}"

    def horizon_limit(self) -> Any:
        """The horizon slider's maximum, from the API's bounds (unchanged while it is down)."""
        try:
            return gr.Slider(maximum=self.client.limits().max_horizon)
        except ApiClientError:
            return gr.skip()

    def forecast(self, choice: str | None, horizon: float) -> tuple[Any, Any, Any, str]:
        """Plot, lineage and decision panels and status for one forecast; on failure keep the
        last result."""
        try:
            ref = shaping.parse_choice(choice)
            result = self.client.predict(ref, int(horizon))
            series = shaping.forecast_series(result)
        except ApiClientError as exc:
            return gr.skip(), gr.skip(), gr.skip(), _warning(exc.message)
        except ValueError as exc:  # a bad picker value or an answer without history
            return gr.skip(), gr.skip(), gr.skip(), _warning(str(exc))
        lineage = result.lineage
        title = f"{lineage.model_name} v{lineage.version}: {int(horizon)}-day forecast"
        return (
            plots.forecast_figure(series, title),
            shaping.lineage_markdown(lineage, self.mlflow_ui_url),
            self.decision(lineage.version),
            shaping.forecast_summary(series, lineage),
        )

    def refresh_live(self) -> tuple[str, pd.DataFrame, Any]:
        """Note, table and chart of live scores (`GET /monitoring`), champion moves marked."""
        empty = pd.DataFrame(columns=shaping.LIVE_HEADERS)
        try:
            live = self.client.monitoring(shaping.LIVE_WINDOW)
        except ApiError as exc:
            if exc.status == 404:
                return (
                    "The API logs no forecasts (COINFLOW_PREDICTION_LOG_URL is empty).",
                    empty,
                    None,
                )
            return _warning(exc.message), empty, None
        except ApiClientError as exc:
            return _warning(exc.message), empty, None
        if not live.latest:
            return (
                "No live scores yet: run `coinflow monitor score` once forecasts have their "
                "day's close.",
                empty,
                None,
            )
        rows = pd.DataFrame(shaping.live_rows(live), columns=shaping.LIVE_HEADERS)
        note = (
            f"Live scores of **{live.model_name}**, computed {live.computed_at or '?'}."
            + shaping.moves_note(live)
        )
        series = shaping.live_series(live)
        if not series:
            return note, rows, None
        marks = shaping.live_marks(live.alias_moves, series)
        return note, rows, plots.live_figure(series, shaping.LIVE_WINDOW, marks)

    def refresh_sweep(self) -> tuple[str, pd.DataFrame, Any]:
        """Note, trials table and chart for the latest sweep (`GET /sweeps/latest`)."""
        empty = pd.DataFrame(columns=shaping.TRIAL_HEADERS)
        try:
            sweep = self.client.latest_sweep()
        except ApiError as exc:
            if exc.status == 404:
                return "No sweep recorded yet: run `coinflow sweep`.", empty, None
            return _warning(exc.message), empty, None
        except ApiClientError as exc:
            return _warning(exc.message), empty, None
        rows = pd.DataFrame(shaping.trial_rows(sweep), columns=shaping.TRIAL_HEADERS)
        note = (
            f"Sweep **{sweep.study_name or '?'}** (parent run `{sweep.parent_run_id}`): "
            f"{len(sweep.trials)} trial(s), best objective first "
            "(mean backtest skill, lower is better)."
        )
        return note, rows, plots.sweep_figure(sweep) if sweep.trials else None


def build_app(client: ApiClient, mlflow_ui_url: str | None = None) -> gr.Blocks:
    """The Blocks page; every event goes through `Handlers`, so API failures stay messages."""
    handlers = Handlers(client, mlflow_ui_url)
    demo: gr.Blocks
    with gr.Blocks(title="coinflow", analytics_enabled=False) as demo:
        gr.Markdown(
            "# coinflow: BTC close forecasts\nServed by the API at "
            f"`{client.base_url}`; persistence = tomorrow's close equals today's."
        )
        status = gr.Markdown("Connecting to the API…", elem_id="status")
        with gr.Tab("Forecast"):
            with gr.Row(equal_height=True):
                picker = gr.Dropdown(
                    label="Model (alias or version)",
                    choices=[],
                    value=None,
                    elem_id="model-picker",
                    scale=3,
                )
                horizon = gr.Slider(  # its maximum comes from the API (GET /limits) on load
                    1,
                    DEFAULT_HORIZON,
                    value=DEFAULT_HORIZON,
                    step=1,
                    label="Horizon (days)",
                    elem_id="horizon",
                    scale=3,
                )
                refresh = gr.Button("Refresh models", elem_id="refresh", scale=1)
                go = gr.Button("Forecast", variant="primary", elem_id="forecast", scale=1)
            plot = gr.Plot(
                label="BTC close: actual, model, persistence", format="png", elem_id="forecast-plot"
            )
            with gr.Row():
                lineage = gr.Markdown(elem_id="lineage")
                decision = gr.Markdown(elem_id="decision")
        with gr.Tab("Compare versions"):
            compare_note = gr.Markdown(elem_id="compare-note")
            compare_refresh = gr.Button("Refresh comparison", elem_id="compare-refresh")
            table = gr.Dataframe(
                pd.DataFrame(columns=compare.COMPARE_HEADERS),
                interactive=False,
                wrap=True,
                column_widths=compare.COMPARE_WIDTHS,
                max_height=640,
                elem_id="versions-table",
            )
            dots = gr.Plot(
                label="every version on the same days, best CRPS first",
                format="png",
                elem_id="compare-plot",
            )
        with gr.Tab("Latest sweep"):
            sweep_note = gr.Markdown(elem_id="sweep-note")
            sweep_refresh = gr.Button("Refresh sweep", elem_id="sweep-refresh")
            trials = gr.Dataframe(
                pd.DataFrame(columns=shaping.TRIAL_HEADERS),
                interactive=False,
                elem_id="trials-table",
            )
            scatter = gr.Plot(
                label="sweep objective by hidden size", format="png", elem_id="sweep-plot"
            )
        with gr.Tab("Live"):
            live_note = gr.Markdown(elem_id="live-note")
            live_refresh = gr.Button("Refresh live scores", elem_id="live-refresh")
            live_table = gr.Dataframe(
                pd.DataFrame(columns=shaping.LIVE_HEADERS), interactive=False, elem_id="live-table"
            )
            live_plot = gr.Plot(label="live scores over time", format="png", elem_id="live-plot")
        model_outputs = [picker, status]
        compare_outputs = [compare_note, table, dots]
        demo.load(handlers.refresh_models, inputs=picker, outputs=model_outputs)
        demo.load(handlers.horizon_limit, outputs=horizon)
        demo.load(handlers.refresh_sweep, outputs=[sweep_note, trials, scatter])
        demo.load(handlers.refresh_compare, outputs=compare_outputs)
        refresh.click(handlers.refresh_models, inputs=picker, outputs=model_outputs)
        compare_refresh.click(handlers.refresh_compare, outputs=compare_outputs)
        go.click(
            handlers.forecast, inputs=[picker, horizon], outputs=[plot, lineage, decision, status]
        )
        sweep_refresh.click(handlers.refresh_sweep, outputs=[sweep_note, trials, scatter])
        live_outputs = [live_note, live_table, live_plot]
        demo.load(handlers.refresh_live, outputs=live_outputs)
        live_refresh.click(handlers.refresh_live, outputs=live_outputs)
    return demo


UPLOAD_LIMIT = "1kb"  # a second guard: Gradio's own size cap, should a route slip through


class RefuseUploads:
    """The UI takes no files: Gradio's upload routes answer 403 before a byte is stored, so no
    client can fill the temp folder with upload directories (Gradio keeps them until exit)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", "")).rstrip("/")
        if scope["type"] == "http" and path.endswith(("/upload", "/upload_progress")):
            refused = PlainTextResponse("this UI takes no file uploads", status_code=403)
            await refused(scope, receive, send)
            return
        await self.app(scope, receive, send)


def launch(host: str, port: int, settings: UiSettings | None = None) -> None:
    """Serve the UI on host:port (blocking); never shared publicly, no analytics."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    settings = settings or UiSettings()
    client = ApiClient(settings.coinflow_api_url, settings.coinflow_api_timeout_s)
    try:
        build_app(client, settings.coinflow_mlflow_ui_url).launch(
            server_name=host,
            server_port=port,
            share=False,
            show_error=False,
            quiet=True,
            max_file_size=UPLOAD_LIMIT,
            app_kwargs={"middleware": [Middleware(RefuseUploads)]},
        )
    finally:
        client.close()
