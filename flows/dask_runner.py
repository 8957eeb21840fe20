"""Dask for the score flow's shard tasks: a local cluster of worker processes, or a running one.

    TELEMETRY_DASK_ADDRESS=tcp://scheduler:8786   use that cluster; its workers need the
                                                  project installed and DATABASE_URL set (the
                                                  Prefect settings travel with each task)
    unset                                         a LocalCluster of `workers` processes for the
                                                  run, torn down when the run ends

Local workers get the database URL this process resolved, so with the embedded PostgreSQL they
connect to the running server's socket instead of each attaching to (and, on exit, possibly
stopping) it through pgserver.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prefect.context import FlowRunContext
from prefect.settings import PREFECT_API_URL, temporary_settings

from core import db

if TYPE_CHECKING:
    from prefect_dask import DaskTaskRunner

ADDRESS_ENV = "TELEMETRY_DASK_ADDRESS"


def cluster_address() -> str | None:
    """The running Dask scheduler to use, if one is configured."""
    return os.environ.get(ADDRESS_ENV) or None


def task_runner(workers: int) -> DaskTaskRunner:
    """A DaskTaskRunner for one flow run (Prefect duplicates it per run)."""
    from prefect_dask import DaskTaskRunner  # dask/distributed: 0.7 s, only when asked for

    address = cluster_address()
    if address:
        return DaskTaskRunner(address=address)
    # The scheduler and nannies live in this process and log their start and stop at INFO
    # (~40 lines a run) through Prefect's handlers; silence_logs only quiets the workers.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    return DaskTaskRunner(cluster_kwargs={
        "n_workers": workers,
        # Scoring is numpy/pandas holding the GIL between calls: processes, one thread each.
        "processes": True,
        "threads_per_worker": 1,
        "host": "127.0.0.1",
        # Port 0: a free port (the default :8787 collides between concurrent runs).
        "dashboard_address": "127.0.0.1:0",
        "silence_logs": logging.WARNING,
        "env": {"DATABASE_URL": db.database_url()},
    })


@contextmanager
def shared_prefect_api() -> Iterator[None]:
    """Point Dask workers at this run's Prefect API.

    Each task carries the submitting process's Prefect settings. Without PREFECT_API_URL (a
    run on Prefect's temporary server) those settings name no server, and every worker process
    would start a temporary server of its own (~20 s each); naming this run's server avoids it.
    """
    context = FlowRunContext.get()
    if PREFECT_API_URL.value() or context is None or context.client is None:
        yield
        return
    with temporary_settings(updates={PREFECT_API_URL: str(context.client.api_url)}):
        yield
