"""Fixtures for the imagen mcp tests; the helpers are in mcp_helpers.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # mcp_helpers


@pytest.fixture
def mcp_home(home):
    """An isolated user whose imagen loads the mcp plugin (and no other third-party one)."""
    home.env["IMAGEN_LOAD_PLUGINS"] = "mcp"
    home.env["USER"] = "tester"
    return home
