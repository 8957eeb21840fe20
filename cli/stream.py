"""`telemetry simulate --stream --to URL`: the simulated fleet as devices, posting its readings
to the ingestion API (POST /api/v1/readings) at a steady rate.

Nothing generated is dropped. Each batch is written to an on-disk spool before it is sent and
deleted only when the API acknowledges it (HTTP 200: every row stored, a duplicate, or
quarantined), so an API outage, a crash or Ctrl-C leaves the readings on disk and the next run
sends them first. While the API is down the client keeps generating at its rate and retries
with exponential backoff. The simulator is deterministic, so the spool also records where in
simulated time the stream stands, and the next run continues from there.

Readings are never sent before their simulated arrival time; with --start in the past the rate
alone paces the stream. The fleet must be registered in the database first (`telemetry
backfill` or `telemetry demo` register it), as real devices would be.

The command function is plain typer; cli/main.py registers it (`app.command()(simulate)`).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
import typer
from rich.console import Console

from core.settings import get_settings
from simulator import FleetConfig
from simulator import simulate as simulate_fleet
from simulator.metrics import METRIC_BY_ID

console = Console()
CHUNK = timedelta(minutes=1)  # simulated time generated at once
READINGS_PATH = "/api/v1/readings"


def _write_atomically(path: Path, data: bytes) -> None:
    """Either the whole file or none of it survives a crash."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


class Spool:
    """pending/<seq>.json: batches not yet acknowledged, oldest first; state.json: where the
    stream stands; refused/: batches the API refused as a whole (kept for a person)."""

    def __init__(self, root: Path) -> None:
        self.root, self.pending, self.refused = root, root / "pending", root / "refused"
        self.pending.mkdir(parents=True, exist_ok=True)

    def files(self) -> list[Path]:
        return sorted(self.pending.glob("*.json"))

    def readings(self) -> int:
        return sum(len(orjson.loads(p.read_bytes())["readings"]) for p in self.files())

    def put(self, seq: int, rows: list[dict[str, Any]]) -> None:
        _write_atomically(self.pending / f"{seq:012d}.json", orjson.dumps({"readings": rows}))

    def state(self) -> dict[str, Any] | None:
        path = self.root / "state.json"
        return orjson.loads(path.read_bytes()) if path.exists() else None

    def save(self, state: dict[str, Any]) -> None:
        _write_atomically(self.root / "state.json", orjson.dumps(state))

    def refuse(self, path: Path, why: str) -> None:
        self.refused.mkdir(exist_ok=True)
        (self.refused / (path.stem + ".why.txt")).write_text(why)
        os.replace(path, self.refused / path.name)


class Source:
    """The fleet's readings in arrival order, from (chunk start, offset into that chunk)."""

    def __init__(self, config: FleetConfig, chunk_start: datetime, offset: int) -> None:
        self.config, self.chunk_start, self.offset = config, chunk_start, offset
        self._rows: list[dict[str, Any]] | None = None
        self._arrivals: npt.NDArray[np.int64] = np.empty(0, np.int64)  # ns since the epoch

    def _load(self) -> None:
        frame = simulate_fleet(self.config, self.chunk_start, self.chunk_start + CHUNK).readings
        metric = {k: (v.metric, v.unit) for k, v in METRIC_BY_ID.items()}
        ts = frame["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").tolist()
        self._rows = [{"device_id": int(d), "metric": metric[int(m)][0], "ts": t,
                       "value": float(v), "unit": metric[int(m)][1]}
                      for d, m, t, v in zip(frame["device_id"], frame["metric_id"], ts,
                                            frame["value"], strict=True)]
        self._arrivals = frame["arrival_ts"].to_numpy("datetime64[ns]").astype(np.int64)

    def take(self, n: int, due_by: datetime) -> list[dict[str, Any]]:
        """Up to n readings that have arrived by `due_by` (NaN values go out as null)."""
        out: list[dict[str, Any]] = []
        due_ns = pd.Timestamp(due_by).value
        while len(out) < n and self.chunk_start <= due_by:
            if self._rows is None:
                self._load()
            assert self._rows is not None
            while len(out) < n and self.offset < len(self._rows):
                if self._arrivals[self.offset] > due_ns:
                    return out
                out.append(self._rows[self.offset])
                self.offset += 1
            if self.offset >= len(self._rows):
                self.chunk_start, self.offset, self._rows = self.chunk_start + CHUNK, 0, None
        return out


@dataclass
class Tally:
    generated: int = 0
    acknowledged: int = 0
    loaded: int = 0
    duplicate: int = 0
    rejected: int = 0
    failed_attempts: int = 0
    refused_files: int = 0
    rejected_by_rule: dict[str, int] = field(default_factory=dict)


class GiveUp(Exception):
    """Stop streaming; the spool keeps what was not delivered."""


class Sender:
    """Posts spooled batches oldest first, a few files per request, with backoff on failure."""

    def __init__(self, client: httpx.Client, url: str, spool: Spool, batch: int,
                 backoff_max: float, tally: Tally) -> None:
        self.client, self.url, self.spool, self.batch = client, url, spool, batch
        self.backoff_max, self.tally = backoff_max, tally
        self.backoff = 0.0
        self.next_try = 0.0
        self.down_since: float | None = None

    def _group(self) -> list[tuple[Path, list[Any]]]:
        group: list[tuple[Path, list[Any]]] = []
        size = 0
        for path in self.spool.files():
            rows = orjson.loads(path.read_bytes())["readings"]
            if group and size + len(rows) > self.batch:
                break
            group.append((path, rows))
            size += len(rows)
        return group

    def _failed(self, why: str, retry_after: float | None = None) -> None:
        self.tally.failed_attempts += 1
        self.backoff = min(max(self.backoff * 2, 0.25), self.backoff_max)
        wait = min(retry_after, self.backoff_max) if retry_after else self.backoff
        self.next_try = time.monotonic() + wait
        if self.down_since is None:
            self.down_since = time.monotonic()
            console.print(f"[yellow]cannot deliver[/] ({why}); retrying with backoff, "
                          "readings stay in the spool")

    def send(self) -> bool:
        """One request, if one is due; True when it delivered something."""
        group = self._group() if time.monotonic() >= self.next_try else []
        if not group:
            return False
        rows = [r for _, part in group for r in part]
        try:
            response = self.client.post(self.url, content=orjson.dumps({"readings": rows}))
        except httpx.TransportError as exc:
            self._failed(type(exc).__name__)
            return False
        if response.status_code in (401, 403):
            raise GiveUp(f"the API refused the token ({response.status_code}): "
                         f"{response.text[:200]}")
        if response.status_code in (404, 405):
            raise GiveUp(f"{self.url} is not the ingestion endpoint ({response.status_code})")
        if response.status_code in (413, 422):
            if len(group) > 1:  # smaller requests next time
                self.batch = max(1, len(group[0][1]))
                return False
            self.spool.refuse(group[0][0], f"{response.status_code}: {response.text}")
            self.tally.refused_files += 1
            console.print(f"[red]the API refused a whole batch[/] ({response.status_code}); "
                          f"kept in {self.spool.refused}")
            return True
        if response.status_code != 200:
            retry = response.headers.get("retry-after", "")
            self._failed(f"HTTP {response.status_code}",
                         float(retry) if retry.isdigit() else None)
            return False
        try:
            answer = response.json()
            answer["received"]
        except (ValueError, KeyError, TypeError):
            raise GiveUp(f"{self.url} does not answer like the ingestion API") from None
        self._acknowledged(answer, group)
        return True

    def _acknowledged(self, out: dict[str, Any], group: list[tuple[Path, list[Any]]]) -> None:
        if self.down_since is not None:
            console.print(f"[green]delivering again[/] after "
                          f"{time.monotonic() - self.down_since:.1f}s")
        self.down_since, self.backoff, self.next_try = None, 0.0, 0.0
        for path, _ in group:
            path.unlink()
        t = self.tally
        t.acknowledged += out["received"]
        t.loaded += out["loaded"]
        t.duplicate += out["duplicate"]
        t.rejected += out["rejected"]
        for r in out["rejections"]:
            t.rejected_by_rule[r["rule"]] = t.rejected_by_rule.get(r["rule"], 0) + 1


def _fleet_key(config: FleetConfig) -> str:
    return config.model_dump_json()


def _position(spool: Spool, config: FleetConfig, start: datetime | None
              ) -> tuple[datetime, int, int]:
    """(chunk start, offset, next spool seq): the saved position of this fleet, else start."""
    state = spool.state()
    if state is not None and state["fleet"] != _fleet_key(config):
        raise typer.BadParameter(
            f"the spool {spool.root} belongs to another fleet configuration; use --spool "
            "elsewhere (its pending readings are sent by a run with that configuration)")
    if state is not None and start is None:
        return datetime.fromisoformat(state["chunk_start"]), state["offset"], state["seq"]
    seq = state["seq"] if state else 0
    begin = pd.Timestamp(start or datetime.now(UTC))
    begin = begin.tz_localize("UTC") if begin.tzinfo is None else begin.tz_convert("UTC")
    return begin.floor("s").to_pydatetime(), 0, seq


def _url(to: str) -> str:
    to = to.rstrip("/")
    return to if to.endswith("/readings") else to + READINGS_PATH


def simulate(
    stream: Annotated[bool, typer.Option(
        "--stream", help="Post the readings to the ingestion API as they arrive.")] = False,
    to: Annotated[str, typer.Option(
        help="The API's base URL (or its /api/v1/readings URL).")] = "http://127.0.0.1:8000",
    rate: Annotated[float | None, typer.Option(
        min=0.001, help="Readings per second; default TELEMETRY_STREAM_RATE (5).")] = None,
    count: Annotated[int | None, typer.Option(
        min=1, help="Stop after generating this many readings (once they are delivered).")
    ] = None,
    duration: Annotated[float | None, typer.Option(
        min=0, help="Stop generating after this many seconds (then deliver).")] = None,
    start: Annotated[datetime | None, typer.Option(
        help="Simulated time to start at (UTC); default: where the spool stopped, else now.")
    ] = None,
    token: Annotated[str | None, typer.Option(
        help="Bearer token; default TELEMETRY_API_TOKEN.")] = None,
    spool_dir: Annotated[Path | None, typer.Option(
        "--spool", help="Spool directory; default TELEMETRY_SPOOL_DIR (data_dir/spool).")
    ] = None,
    batch: Annotated[int, typer.Option(min=1, help="At most this many readings per request.")
                     ] = 1000,
    flush_seconds: Annotated[float, typer.Option(
        min=0.01, help="Spool and send generated readings at least this often.")] = 1.0,
    backoff_max: Annotated[float, typer.Option(
        min=0.01, help="Longest wait between delivery attempts (seconds).")] = 30.0,
    give_up_after: Annotated[float | None, typer.Option(
        min=0, help="Exit (code 2, spool kept) after this many seconds without delivering.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Default TELEMETRY_SEED.")] = None,
    sites: Annotated[int | None, typer.Option(help="Default TELEMETRY_SITES.")] = None,
    zones_per_site: Annotated[int | None, typer.Option(help="Default TELEMETRY_ZONES_PER_SITE.")
                              ] = None,
    devices_per_zone: Annotated[int | None, typer.Option(
        help="Default TELEMETRY_DEVICES_PER_ZONE.")] = None,
    fault_scale: Annotated[float, typer.Option(
        min=0, help="Multiplies the simulator's data-fault rates (0 = clean data).")] = 1.0,
) -> None:
    """Stream the simulated fleet's readings to the ingestion API, as devices would:
    at a steady rate, retrying with backoff while the API is down, never dropping a reading
    (an on-disk spool keeps each batch until the API acknowledges it)."""
    if not stream:
        raise typer.BadParameter("only --stream is supported here; to simulate straight into "
                                 "the database run `telemetry run simulate-and-load`",
                                 param_hint="--stream")
    from flows.params import FleetParams  # the same fleet (and defaults) as the flows

    settings = get_settings()
    config = FleetParams(seed=seed, sites=sites, zones_per_site=zones_per_site,
                         devices_per_zone=devices_per_zone, fault_scale=fault_scale).config()
    spool = Spool(spool_dir or settings.spool_dir or Path(settings.data_dir) / "spool")
    chunk_start, offset, seq = _position(spool, config, start)
    secret = token or (settings.api_token.get_secret_value() if settings.api_token else "")
    pace = rate or settings.stream_rate
    tally = Tally()
    waiting = spool.readings()
    console.print(f"streaming {config.n_devices} devices to {_url(to)} at {pace:g} readings/s "
                  f"from {chunk_start:%Y-%m-%d %H:%M:%S} UTC (simulated)"
                  + (f"; {waiting} spooled readings first" if waiting else ""))
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    with httpx.Client(headers=headers, timeout=httpx.Timeout(30.0, connect=5.0)) as client:
        sender = Sender(client, _url(to), spool, batch, backoff_max, tally)
        source = Source(config, chunk_start, offset)
        try:
            _loop(source, sender, spool, config, seq, pace, count, duration, flush_seconds,
                  give_up_after, tally)
        except GiveUp as exc:
            _report(tally, spool)
            console.print(f"[red]stopped[/]: {exc}")
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            _report(tally, spool)
            raise typer.Exit(130) from None
    _report(tally, spool)


def _loop(source: Source, sender: Sender, spool: Spool, config: FleetConfig, seq: int,
          pace: float, count: int | None, duration: float | None, flush_seconds: float,
          give_up_after: float | None, tally: Tally) -> None:
    began = time.monotonic()
    buffered: list[dict[str, Any]] = []
    last_flush = began
    generating = True
    while True:
        now = time.monotonic()
        if generating:
            budget = int(pace * (now - began)) + 1 - tally.generated - len(buffered)
            if count is not None:
                budget = min(budget, count - tally.generated - len(buffered))
            if budget > 0:
                buffered += source.take(min(budget, sender.batch - len(buffered)),
                                        datetime.now(UTC))
            done = (count is not None and tally.generated + len(buffered) >= count) or (
                duration is not None and now - began >= duration)
            if buffered and (done or len(buffered) >= sender.batch
                             or now - last_flush >= flush_seconds):
                spool.put(seq, buffered)  # on disk before the position moves past it
                seq += 1
                tally.generated += len(buffered)
                buffered = []
                last_flush = now
                spool.save({"fleet": _fleet_key(config), "seq": seq, "offset": source.offset,
                            "chunk_start": source.chunk_start.isoformat()})
            generating = not done
        while sender.send():
            pass
        if not generating and not spool.files():
            return
        if give_up_after is not None and sender.down_since is not None \
                and now - sender.down_since >= give_up_after:
            raise GiveUp(f"nothing delivered for {give_up_after:g}s")
        time.sleep(min(0.05, max(1 / pace, 0.001)))


def _report(tally: Tally, spool: Spool) -> None:
    left = spool.readings()
    rules = ", ".join(f"{k} {v}" for k, v in sorted(tally.rejected_by_rule.items()))
    console.print(f"generated {tally.generated:,}; acknowledged {tally.acknowledged:,} "
                  f"(loaded {tally.loaded:,}, duplicate {tally.duplicate:,}, quarantined "
                  f"{tally.rejected:,}{f': {rules}' if rules else ''}); failed attempts "
                  f"{tally.failed_attempts}; still spooled {left:,}"
                  + (f" in {spool.pending}" if left else "")
                  + (f"; {tally.refused_files} batches refused, kept in {spool.refused}"
                     if tally.refused_files else ""))


if __name__ == "__main__":  # until cli/main.py registers it
    with contextlib.suppress(SystemExit):
        typer.run(simulate)
