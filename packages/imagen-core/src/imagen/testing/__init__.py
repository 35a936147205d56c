"""Testing tools for backend authors: the conformance suite and loopback helpers.

An adapter's tests subclass :class:`BackendConformance`, point it at their backend type, a
valid config slice, some invalid ones and a loopback stand-in of their upstream, and get
the whole contract checked::

    from imagen.testing import BackendConformance, InvalidSlice

    class TestAcme(BackendConformance):
        backend_type = "acme"
        invalid_slices = [InvalidSlice({}, "base_url")]

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

from imagen.testing.conformance import BackendConformance, InvalidSlice, StandIn
from imagen.testing.loopback import LoopbackHandler, LoopbackServer, serve
from imagen.testing.recording import RecordingContext

__all__ = [
    "BackendConformance",
    "InvalidSlice",
    "LoopbackHandler",
    "LoopbackServer",
    "RecordingContext",
    "StandIn",
    "serve",
]
