"""Platform statistics in one round trip."""

from __future__ import annotations

from fastapi import APIRouter

from api import queries
from api.deps import Conn
from api.pagination import respond
from api.responses import FastJSONResponse
from api.schemas import Stats, documented

router = APIRouter(prefix="/api/v1", tags=["stats"])

SEVERITIES = ("low", "medium", "high", "critical")


@router.get("/stats", response_model=None, responses=documented(Stats))
async def stats(conn: Conn) -> FastJSONResponse:
    """Devices, readings loaded, anomalous points, alerts, and open alerts by severity."""
    row = await queries.stats(conn)
    by_severity = {s: int(row["open_by_severity"].get(s, 0)) for s in SEVERITIES}
    return respond({"devices": row["devices"], "readings": int(row["readings"]),
                    "anomalies": row["anomalies"], "alerts": row["alerts"],
                    "open_alerts": sum(by_severity.values()),
                    "alerts_by_severity": by_severity})
