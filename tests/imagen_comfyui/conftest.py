"""Fixtures for the ComfyUI adapter's tests: a loopback ComfyUI and backends against it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from comfy_standin import ComfyStandIn

from imagen import BackendConfig
from imagen_comfyui.backend import ComfyUIBackend

MODEL = "sd_xl_base_1.0.safetensors"


@pytest.fixture
def comfy() -> Iterator[ComfyStandIn]:
    with ComfyStandIn() as server:
        yield server


@pytest.fixture
def make_backend(comfy, tmp_path):
    """Build a comfyui backend from slice keys, pointed at the stand-in by default."""
    built = []

    def make(environ=None, **settings) -> ComfyUIBackend:
        settings.setdefault("base_url", comfy.url)
        if "workflow" not in settings:
            settings.setdefault("model", MODEL)
        settings.setdefault("silence_s", 1.0)
        config = BackendConfig(
            "gpu", "comfyui", settings, file=tmp_path / "imagen.yaml", environ=environ or {}
        )
        backend = ComfyUIBackend(config)
        built.append(backend)
        return backend

    yield make
    for backend in built:
        backend.close()


@pytest.fixture
def gpu_home(home, comfy):
    """A user whose imagen.yaml has backend ``gpu``: the checkpoint template on the stand-in."""
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-comfyui"
    home.write_config(
        f"""
        backends:
          gpu:
            type: comfyui
            base_url: {comfy.url}
            model: {MODEL}
            default_steps: 6
        """
    )
    return home
