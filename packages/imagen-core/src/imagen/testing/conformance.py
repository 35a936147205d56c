"""The backend conformance suite: the Backend contract, as tests.

Subclass :class:`BackendConformance` in a test module (name the subclass ``Test...``) and
fill in what :class:`~imagen.testing.base.ConformanceBase` asks for. Every ``test_*``
method of the four groups below then runs against your backend.
"""

from __future__ import annotations

from imagen.testing.base import InvalidSlice
from imagen.testing.checks_config import ConfigChecks
from imagen.testing.checks_inputs import InputChecks
from imagen.testing.checks_output import OutputChecks
from imagen.testing.checks_upstream import UpstreamChecks
from imagen.testing.standin import StandIn

__all__ = ["BackendConformance", "InvalidSlice", "StandIn"]


class BackendConformance(ConfigChecks, OutputChecks, UpstreamChecks, InputChecks):
    """Base class of a backend's conformance tests.

    Set :attr:`backend_type`, :attr:`invalid_slices` and (with an upstream)
    :attr:`timeout_key`; override the ``upstream`` and ``valid_slice`` fixtures (and
    ``environ`` when your slice reads credentials). The ``make_*`` methods drive a
    :class:`~imagen.testing.StandIn`; override them for a stand-in that speaks otherwise.
    The input checks run when the backend declares inputs (``input_support()``); they see
    what arrived through :meth:`~InputChecks.received_inputs` and
    :meth:`~InputChecks.seen_strength`.
    """
