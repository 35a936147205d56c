"""Fixtures for the Replicate adapter: a loopback Replicate API and backends against it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from replicate_standin import TOKEN, ReplicateStandIn

from imagen import BackendConfig
from imagen_replicate.backend import ReplicateBackend


@pytest.fixture
def replicate_api() -> Iterator[ReplicateStandIn]:
    with ReplicateStandIn(TOKEN) as server:
        yield server


@pytest.fixture
def make_backend(replicate_api):
    built = []

    def make(environ=None, **settings) -> ReplicateBackend:
        settings.setdefault("model", "black-forest-labs/flux-schnell")
        settings.setdefault("base_url", replicate_api.url)
        settings.setdefault("poll_interval_s", 0.02)
        config = BackendConfig(
            "flux",
            "replicate",
            settings,
            environ=environ if environ is not None else {"REPLICATE_API_TOKEN": TOKEN},
        )
        backend = ReplicateBackend(config)
        built.append(backend)
        return backend

    yield make
    for backend in built:
        backend.close()
