"""Devices: the registry, and one device's live status (newest readings, open alerts)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from api import queries
from api.deps import Conn
from api.pagination import (
    INT4_MAX,
    DeviceId,
    Metric,
    PageParams,
    Site,
    Zone,
    decode_cursor,
    make_filters,
    page_of,
    respond,
)
from api.responses import FastJSONResponse
from api.schemas import Device, DeviceDetail, Page, documented

router = APIRouter(prefix="/api/v1", tags=["devices"])


@router.get("/devices", response_model=None, responses=documented(Page[Device]))
async def list_devices(conn: Conn, page: PageParams, site: Site = None, zone: Zone = None,
                       device_id: DeviceId = None, metric: Metric = None) -> FastJSONResponse:
    """Registered devices by id, with their count of open alerts; `metric` keeps devices that
    report it."""
    filters = make_filters(site=site, zone=zone, device_id=device_id, metric=metric)
    after = decode_cursor(page.cursor, "i")
    rows = await queries.devices(conn, filters, page.limit, after)
    return respond(page_of(rows, page.limit, queries.DEVICE_KEY))


@router.get("/devices/{device_id}", response_model=None,
            responses={**documented(DeviceDetail), 404: {"description": "no such device"}})
async def get_device(conn: Conn, device_id: Annotated[int, Path(ge=0, le=INT4_MAX)]
                     ) -> FastJSONResponse:
    """A device with its newest reading of each metric and its open alerts (live status)."""
    device = await queries.device(conn, device_id)
    if device is None:
        raise HTTPException(404, f"no device {device_id}")
    alerts = await queries.open_alerts(conn, device_id)
    states = {a["state"] for a in alerts}
    status = "firing" if "firing" in states else "pending" if states else "ok"
    return respond({**device, "status": status,
                    "latest": await queries.latest_readings(conn, device_id),
                    "open_alerts": alerts})
