"""imagen serve's OpenAPI document, fuzzed with schemathesis against a running server."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks
from worker_helpers import running, serving

from imagen.config import parse_config
from imagen.yamlfile import Located
from imagen_worker.serve.app import create_app
from imagen_worker.serve.settings import ServeSettings, hash_key

KEY = "imk_fuzz-key"
# What the server promises: no 5xx, and every answer (status, type, body) as documented.
# Not that every schema-valid request is accepted: limits such as serve.max_images come
# from the config, and are answered with a documented 400.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]

_FRAMING = {"content-length", "transfer-encoding", "host", "connection", "upgrade"}


def test_no_5xx_and_no_undocumented_response(db_url, tmp_path):
    config = parse_config(
        Located(
            {
                "output": {"directory": str(tmp_path / "out"), "write_metadata_json": False},
                "backends": {"mock": {"type": "mock"}},
                "styles": {"noir": {"suffix": ", film noir"}},
            }
        )
    )
    serve = ServeSettings(api_keys={hash_key(KEY): "alice"}, wait_s=0.5, max_images=2)
    app = create_app(config, db_url, serve, thumbnails=tmp_path / "thumbnails")
    # A worker ends the jobs the fuzzing queues, so that their event streams end too.
    with serving(app) as url, running(config, db_url, concurrency=4):
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 12
        for operation in operations:
            # Valid requests, and requests that break the schema on purpose (those must be
            # refused with a documented 400, never a 5xx).
            cases = st.one_of(*(operation.as_strategy(mode) for mode in GenerationMode))

            @given(case=cases)
            @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
            def check(case):
                # Extra headers are named from string constants hypothesis finds in the code
                # ("Content-Length" among them). One that frames the message makes it broken
                # HTTP, which uvicorn answers (400, plain text) before the API sees anything.
                for header in [h for h in case.headers or {} if h.lower() in _FRAMING]:
                    del case.headers[header]
                case.call_and_validate(
                    headers={"Authorization": f"Bearer {KEY}"}, checks=CHECKS, timeout=60
                )

            check()
