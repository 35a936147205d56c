"""Fixtures for the OpenAI adapter: a loopback Images API and backends against it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from openai_standin import KEY, OpenAIStandIn

from imagen import BackendConfig
from imagen_openai.backend import OpenAIBackend


@pytest.fixture
def openai_api() -> Iterator[OpenAIStandIn]:
    with OpenAIStandIn() as server:
        yield server


@pytest.fixture
def make_backend(openai_api):
    built = []

    def make(environ=None, **settings) -> OpenAIBackend:
        settings.setdefault("base_url", openai_api.api)
        config = BackendConfig(
            "gpt",
            "openai",
            settings,
            environ=environ if environ is not None else {"OPENAI_API_KEY": KEY},
        )
        backend = OpenAIBackend(config)
        built.append(backend)
        return backend

    yield make
    for backend in built:
        backend.close()
