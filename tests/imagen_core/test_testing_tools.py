"""The suite's own tools: the loopback stand-in's controls, the strict image check, the
secret probe."""

from __future__ import annotations

import base64
import io
import threading
import time

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from imagen.testing import LoopbackHandler, LoopbackServer
from imagen.testing.images import ImageDefect, decode
from imagen.testing.leaks import SecretProbe


class _Handler(LoopbackHandler):
    def do_POST(self) -> None:
        body = self.read_json()
        self.server.ran.append(body)
        self.send(201, {"id": "run-1", "echo": body})

    def do_GET(self) -> None:
        self.send(200, {"ok": True})


class StandIn(LoopbackServer):
    submission_routes = ("POST /v1/runs",)
    cancel_routes = ("POST /v1/runs/*/cancel",)

    def __init__(self) -> None:
        super().__init__(_Handler)
        self.ran: list[dict] = []


@pytest.fixture
def standin():
    with StandIn() as server:
        yield server


def test_traffic_records_submissions_and_cancels_and_keeps_the_body_readable(standin):
    with httpx.Client(base_url=standin.url) as client:  # one keep-alive connection
        assert client.post("/v1/runs", json={"n": 1}).json()["echo"] == {"n": 1}
        client.post("/v1/runs/run-1/cancel", json={})
        client.get("/v1/runs/run-1?x=1")
        assert client.post("/v1/runs", json={"n": 2}).json()["echo"] == {"n": 2}
    traffic = standin.traffic
    assert [e.path for e in traffic.submissions] == ["/v1/runs", "/v1/runs"]
    assert [e.path for e in traffic.cancels] == ["/v1/runs/run-1/cancel"]
    assert [e.method for e in traffic.requests] == ["POST", "POST", "GET", "POST"]
    assert traffic.submissions[1].body == b'{"n":2}'


def test_answer_next_answers_any_status_in_plain_text(standin):
    standin.answer_next(503, headers={"Retry-After": "0"})
    with httpx.Client(base_url=standin.url) as client:
        first = client.post("/v1/runs", json={})
        assert first.status_code == 503
        assert first.headers["retry-after"] == "0"
        assert first.text.startswith("imagen conformance check: status 503")
        assert client.post("/v1/runs", json={}).status_code == 201  # only the next one
    assert len(standin.ran) == 1
    assert len(standin.traffic.submissions) == 2


def test_drop_next_runs_the_submission_and_loses_its_answer(standin):
    standin.drop_next()
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(f"{standin.url}/v1/runs", json={"n": 1})
    assert standin.ran == [{"n": 1}]  # it ran upstream


def test_hang_next_holds_the_submission_until_the_server_stops():
    server = StandIn().start()
    server.hang_next()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/v1/runs", json={}, timeout=0.3)
    # The handler may reach its hold only after the client gave up (a loaded machine).
    for _ in range(3000):
        if server.paused == 1:
            break
        time.sleep(0.01)
    assert server.paused == 1
    assert server.ran == []
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    stopper.join(10)
    assert not stopper.is_alive()


def test_controls_need_submission_routes():
    class Plain(LoopbackServer):
        pass

    with Plain(_Handler) as server, pytest.raises(TypeError, match="submission_routes is empty"):
        server.hang_next()


def _png(size=(8, 6)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(out, "PNG")
    return out.getvalue()


def test_decode_reads_every_pixel_and_the_real_size():
    decoded = decode(_png((8, 6)), "image/png")
    assert (decoded.width, decoded.height) == (8, 6)
    assert len(decoded.pixels) == 8 * 6 * 3


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda d: d[:-12], "no IEND chunk"),
        (lambda d: d + b"junk", "4 bytes after its IEND"),
        (lambda d: d[:20] + bytes([d[20] ^ 1]) + d[21:], "bad CRC"),
        (lambda d: d[:-30], "runs past the end"),
    ],
)
def test_decode_refuses_a_damaged_png(mangle, message):
    with pytest.raises(ImageDefect, match=message):
        decode(mangle(_png()), "image/png")


def test_decode_refuses_a_jpeg_without_its_end_marker_and_a_wrong_type():
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "JPEG")
    assert decode(out.getvalue(), "image/jpeg").width == 8
    with pytest.raises(ImageDefect, match="EOI marker"):
        decode(out.getvalue()[:-2], "image/jpeg")
    with pytest.raises(ImageDefect, match="says image/png but its bytes are image/jpeg"):
        decode(out.getvalue(), "image/png")


@given(st.binary(max_size=200))
def test_decode_never_raises_anything_but_an_image_defect(data):
    for mime in ("image/png", "image/jpeg", "image/webp"):
        with pytest.raises(ImageDefect):
            decode(_png()[:8] + data if mime == "image/png" else data, mime)


def test_the_probe_finds_every_form_and_never_repeats_the_secret():
    probe = SecretProbe(
        {"AUTH": "alice:wonder-land-42", "USER": "bob", "PASS": "hunter2-hunter2"},
        public=["wonder-land tours"],
    )
    header = base64.b64encode(b"bob:hunter2-hunter2").decode()
    found = {
        "alice:wonder-land-42": "the value of $AUTH",
        "x alice:wond y": "a piece of $AUTH (10 of its 20 characters)",
        f"Basic {header}": "the base64 of $USER:$PASS",
        "alice%3Awonder-land-42": "the URL-encoded of $AUTH",
    }
    for text, what in found.items():
        assert probe.find(text) == what
        assert "[secret]" in probe.redact(text)
    assert probe.find("welcome to wonder-land tours") is None  # the test's own words
    assert probe.find("bob") is None  # too short to be a secret alone
    assert probe.redact("token alice:wonder-land-42.") == "token [secret]."
