from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server per test process (flows run against it, as in production)."""
    with prefect_test_harness(server_startup_timeout=90):
        yield
