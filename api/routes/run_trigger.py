"""POST /api/v1/runs: start a flow run now; GET /api/v1/runs/{run_id}: how it is doing.

With a Prefect server configured (PREFECT_API_URL, or TELEMETRY_API_RUN_MODE=prefect) the API
creates a run of the deployment `<flow>/<flow>` (prefect.yaml) and a worker executes it; the run
id is Prefect's. Otherwise the flow runs in this process, in a background thread (at most
TELEMETRY_API_MAX_RUNS at once), and the run id is the API's; such runs are remembered by this
process only.

Parameters are checked against the flow's signature before anything starts (422), the same
pydantic models the Prefect UI form uses.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api.deps import Config, WriteAccess
from api.ingest_models import Refusal, RunRequest, RunView, body_schema, read_model
from core.settings import Settings

log = logging.getLogger(__name__)

# The flows `telemetry run` knows, by their Prefect names (flows/ is imported on first use).
FLOWS = {
    "micro-batch": ("flows.pipeline", "micro_batch"),
    "simulate-and-load": ("flows.pipeline", "simulate_and_load"),
    "build-kpis": ("flows.pipeline", "build_kpis"),
    "backfill": ("flows.pipeline", "backfill"),
    "train": ("flows.detection", "train"),
    "score": ("flows.detection", "score"),
    "drift-report": ("flows.drift", "drift_report"),
    "report": ("flows.reports", "report"),
}
KEEP_RUNS = 200  # in-process runs remembered for GET /runs/{id}


@dataclass
class _Run:
    run_id: str
    flow: str
    mode: str
    state: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    prefect_flow_run_id: str | None = None
    error: str | None = None
    result: Any = None


@dataclass
class _Runs:
    """In-process runs: a bounded thread pool and what it did."""

    executor: ThreadPoolExecutor
    limit: int
    runs: OrderedDict[str, _Run] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def active(self) -> int:
        return sum(r.state in ("scheduled", "running") for r in self.runs.values())

    def add(self, run: _Run) -> None:
        self.runs[run.run_id] = run
        while len(self.runs) > KEEP_RUNS:
            oldest = next(iter(self.runs))
            if self.runs[oldest].state in ("scheduled", "running"):
                break
            self.runs.pop(oldest)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    config: Settings = app.state.settings
    executor = ThreadPoolExecutor(max_workers=config.api_max_runs, thread_name_prefix="flow-run")
    app.state.runs = _Runs(executor, config.api_max_runs)
    try:
        yield
    finally:
        # Queued runs are dropped; a running flow cannot be interrupted from here, and the
        # interpreter waits for it before exiting.
        executor.shutdown(wait=False, cancel_futures=True)


router = APIRouter(prefix="/api/v1", tags=["runs"], lifespan=lifespan)


def run_mode(config: Settings) -> str:
    if config.api_run_mode != "auto":
        return config.api_run_mode
    from prefect.settings import PREFECT_API_URL

    return "prefect" if os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value() \
        else "in-process"


def _flow(name: str) -> Any:
    module, attr = FLOWS[name]
    return getattr(importlib.import_module(module), attr)


def _checked(name: str, parameters: dict[str, Any]) -> Any:
    """The flow object, once its parameters pass its own validation (422 otherwise)."""
    from prefect.exceptions import ParameterTypeError, SignatureMismatchError

    flow = _flow(name)
    try:
        flow.validate_parameters(parameters)
    except (ParameterTypeError, SignatureMismatchError) as exc:
        raise HTTPException(422, f"parameters for {name}: {exc}") from None
    return flow


def _execute(run: _Run, flow: Any, parameters: dict[str, Any]) -> None:
    run.state, run.started_at = "running", datetime.now(UTC)
    try:
        state = flow(**parameters, return_state=True)
        run.prefect_flow_run_id = str(state.state_details.flow_run_id)
        if state.is_completed():
            run.result = jsonable_encoder(state.result())
            run.state = "completed"
        else:
            run.state, run.error = state.type.value.lower(), state.message
    except Exception as exc:  # a flow's failure is the run's outcome, not the API's
        log.exception("in-process run %s of %s failed", run.run_id, run.flow)
        run.state, run.error = "failed", f"{type(exc).__name__}: {exc}"[:2000]
    finally:
        run.finished_at = datetime.now(UTC)


def _view(run: _Run) -> RunView:
    return RunView(**asdict(run), status_url=f"/api/v1/runs/{run.run_id}")


async def _prefect_run(name: str, parameters: dict[str, Any]) -> RunView:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        async with get_client() as client:
            try:
                deployment = await client.read_deployment_by_name(f"{name}/{name}")
            except ObjectNotFound:
                raise HTTPException(409, f"the Prefect server has no deployment {name}/{name}:"
                                    " run `prefect deploy --all`") from None
            flow_run = await client.create_flow_run_from_deployment(
                deployment.id, parameters=parameters, tags=["api"])
    except httpx.HTTPError as exc:
        raise HTTPException(503, f"Prefect server unreachable: {exc}",
                            headers={"Retry-After": "10"}) from None
    return _prefect_view(flow_run, name)


def _prefect_view(flow_run: Any, flow: str) -> RunView:
    run_id = str(flow_run.id)
    state = flow_run.state
    return RunView(
        run_id=run_id, flow=flow, mode="prefect",
        state=state.type.value.lower() if state else "scheduled", created_at=flow_run.created,
        started_at=flow_run.start_time, finished_at=flow_run.end_time,
        prefect_flow_run_id=run_id, error=state.message if state and state.is_failed() else None,
        status_url=f"/api/v1/runs/{run_id}")


@router.post("/runs", response_model=RunView, status_code=202, dependencies=[WriteAccess],
             openapi_extra={"requestBody": body_schema(RunRequest)},
             responses={401: {"description": "missing or wrong token"},
                        403: {"description": "writes disabled (no token configured)"},
                        409: {"description": "no such deployment on the Prefect server"},
                        422: {"model": Refusal,
                              "description": "unknown flow or invalid parameters"},
                        429: {"description": "in-process runs at their limit"},
                        503: {"description": "Prefect server unreachable"}})
async def trigger(request: Request, response: Response, config: Config) -> Any:
    """Start `flow` with `parameters`; returns the run id and where to follow it."""
    body = await read_model(request, RunRequest, config.api_max_body_bytes)
    flow = await run_in_threadpool(_checked, body.flow, body.parameters)
    if run_mode(config) == "prefect":
        view = await _prefect_run(body.flow, body.parameters)
    else:
        runs: _Runs = request.app.state.runs
        with runs.lock:
            if runs.active() >= runs.limit:
                raise HTTPException(429, f"{runs.limit} runs are in progress; try again later",
                                    headers={"Retry-After": "30"})
            run = _Run(run_id=uuid.uuid4().hex, flow=body.flow, mode="in-process",
                       state="scheduled", created_at=datetime.now(UTC))
            runs.add(run)
        runs.executor.submit(_execute, run, flow, body.parameters)
        view = _view(run)
    response.headers["Location"] = view.status_url
    return view


@router.get("/runs/{run_id}", response_model=RunView,
            responses={404: {"description": "no such run"},
                       503: {"description": "Prefect server unreachable"}})
async def run_status(run_id: str, request: Request, config: Config) -> Any:
    """A run started through POST /runs: its state, and its summary once completed."""
    run = request.app.state.runs.runs.get(run_id)
    if run is not None:
        return _view(run)
    if run_mode(config) == "prefect":
        try:
            flow_id = uuid.UUID(run_id)
        except ValueError:
            raise HTTPException(404, f"no run {run_id!r}") from None
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        try:
            async with get_client() as client:
                flow_run = await client.read_flow_run(flow_id)
                flow = await client.read_flow(flow_run.flow_id)
        except ObjectNotFound:
            raise HTTPException(404, f"no run {run_id!r}") from None
        except httpx.HTTPError as exc:
            raise HTTPException(503, f"Prefect server unreachable: {exc}") from None
        return _prefect_view(flow_run, flow.name)
    raise HTTPException(404, f"no run {run_id!r} (in-process runs are remembered by the API "
                        "process that started them)")
