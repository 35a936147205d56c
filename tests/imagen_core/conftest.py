"""Fixtures of imagen-core's tests: a Supabase project on loopback (see supabase_stack)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from supabase_stack import (  # noqa: F401 (fixtures)
    supabase_cluster,
    supabase_project,
    supabase_project_factory,
)
