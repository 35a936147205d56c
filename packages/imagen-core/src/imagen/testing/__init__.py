"""Testing tools for backend authors: the conformance suite and loopback stand-ins.

An adapter's tests subclass :class:`BackendConformance`, point it at their backend type, a
valid config slice and a loopback stand-in of their upstream, and get the whole contract
checked::

    from imagen.testing import BackendConformance, InvalidSlice

    class TestAcme(BackendConformance):
        backend_type = "acme"
        invalid_slices = [InvalidSlice({}, "base_url")]
        timeout_key = "timeout_s"

        @pytest.fixture
        def upstream(self):
            with AcmeStandIn() as server:
                yield server

        @pytest.fixture
        def valid_slice(self, upstream):
            return {"base_url": upstream.url, "token_env": "ACME_TOKEN"}

imagen-core registers this package's pytest plugin through pytest's ``pytest11`` entry
point, so nothing needs importing into ``conftest.py``.
"""

from imagen.testing.base import InvalidSlice
from imagen.testing.conformance import BackendConformance
from imagen.testing.loopback import LoopbackHandler, LoopbackServer, serve
from imagen.testing.recording import RecordingContext
from imagen.testing.standin import Exchange, StandIn, Traffic

__all__ = [
    "BackendConformance",
    "Exchange",
    "InvalidSlice",
    "LoopbackHandler",
    "LoopbackServer",
    "RecordingContext",
    "StandIn",
    "Traffic",
    "serve",
]
