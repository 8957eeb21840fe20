"""Fitted detector versions and their backtest figures."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from api import queries
from api.deps import Conn
from api.pagination import MAX_TEXT, TEXT, PageParams, decode_cursor, page_of, respond
from api.responses import FastJSONResponse
from api.schemas import Model, ModelDetail, ModelEvaluation, Page, documented

router = APIRouter(prefix="/api/v1", tags=["models"])

ModelId = Annotated[int, Path(ge=1, le=2**63 - 1)]
NOT_FOUND = {404: {"description": "no such model"}}


@router.get("/models", response_model=None, responses=documented(Page[Model]))
async def list_models(
    conn: Conn, page: PageParams,
    detector: Annotated[str | None, Query(max_length=MAX_TEXT, pattern=TEXT, description=(
        "rolling_z, stuck, seasonal_z or pca."))] = None,
) -> FastJSONResponse:
    """Model versions, newest first: parameters, training window and rows (not the state)."""
    after = decode_cursor(page.cursor, "i")
    rows = await queries.models(conn, detector, page.limit, after)
    return respond(page_of(rows, page.limit, ("model_id",)))


async def _model(conn: Conn, model_id: int) -> dict:
    model = await queries.model(conn, model_id)
    if model is None:
        raise HTTPException(404, f"no model {model_id}")
    return model


@router.get("/models/{model_id}", response_model=None,
            responses={**documented(ModelDetail), **NOT_FOUND})
async def get_model(conn: Conn, model_id: ModelId) -> FastJSONResponse:
    """One model version, with the size of its state and whether it is the current one."""
    return respond(await _model(conn, model_id))


@router.get("/models/{model_id}/eval", response_model=None,
            responses={**documented(ModelEvaluation), **NOT_FOUND})
async def get_model_evaluation(conn: Conn, model_id: ModelId) -> FastJSONResponse:
    """What training recorded, and the newest backtest of the model's detector (`telemetry
    evaluate`: the same detector and parameters on simulated days with labels)."""
    model = await _model(conn, model_id)
    rows = await queries.model_evaluations(conn, model["detector"])
    return respond({"model_id": model["model_id"], "detector": model["detector"],
                    "version": model["version"], "training": model["metrics"],
                    "run_id": rows[0]["run_id"] if rows else None, "evaluations": rows})
