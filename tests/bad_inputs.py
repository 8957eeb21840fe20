"""The bad-input corpus (tests/data/bad_inputs/): its placeholders and per-line expectations.

Shared by the entry points' tests: POST /readings (readings.json), `load-csv`
(readings.csv) and `score-csv` (timeseries.csv)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

CORPUS_DIR = Path(__file__).parent / "data" / "bad_inputs"
DEVICE = 1  # a registered device id in the tests' fleets
_STAMP = re.compile(r"\{\{now(?:([+-])(\d+)s)?\}\}")
_EXPECT = re.compile(r"([a-z0-9_]+):([a-z_]+)\r?$")


def fill(text: str, now: datetime, device: int = DEVICE) -> str:
    """{{device}}, {{day}} and {{now}}/{{now+Ns}}/{{now-Ns}} (ISO 8601 UTC, whole seconds)."""
    text = text.replace('"{{device}}"', str(device)).replace("{{device}}", str(device))
    text = text.replace("{{day}}", f"{now:%Y-%m-%d}")

    def stamp(match: re.Match[str]) -> str:
        sign, seconds = match.groups()
        shift = timedelta(seconds=int(seconds or 0)) * (-1 if sign == "-" else 1)
        return f"{now + shift:%Y-%m-%dT%H:%M:%SZ}"

    return _STAMP.sub(stamp, text)


def expectation(line: str) -> tuple[str, str] | None:
    """(field or column, rule) from a corpus line's last field `field:rule`; None for a line
    that is expected to pass (`loaded`, `duplicate`, `gap`, `ok`)."""
    match = _EXPECT.search(line)
    return (match.group(1), match.group(2)) if match else None


def outcome(line: str) -> str:
    """The last field of a corpus line: `loaded`, `duplicate`, `gap`, `ok` or `field:rule`."""
    return line.rstrip("\r\n").rsplit(",", 1)[-1].rsplit(";", 1)[-1]
