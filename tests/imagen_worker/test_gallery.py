"""The gallery page in a real headless browser: Debian's chromium, driven by Playwright.

Screenshots of each step are kept in ``$IMAGEN_TEST_ARTIFACTS/gallery`` (default:
``test-artifacts/gallery`` at the repository root).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright
from worker_helpers import job, running, serving

from imagen.config import parse_config
from imagen.metadata.reader import sidecar_path
from imagen.yamlfile import Located
from imagen_worker.serve.app import create_app
from imagen_worker.serve.settings import ServeSettings, hash_key

ALICE_KEY = "imk_alice-gallery-key"
BOB_KEY = "imk_bob-gallery-key"
ARTIFACTS = (
    Path(os.environ.get("IMAGEN_TEST_ARTIFACTS") or Path(__file__).parents[2] / "test-artifacts")
    / "gallery"
)
# Flags for a machine with no display, no sandbox as root, and no network beyond loopback.
CHROMIUM_FLAGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("the gallery tests need Debian's chromium: apt-get install chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def gallery(db_url, tmp_path) -> Iterator[str]:
    config = parse_config(
        Located(
            {
                "output": {"directory": str(tmp_path / "out")},
                "backends": {"mock": {"type": "mock", "price_per_image_usd": 0.02}},
                "styles": {"noir": {"suffix": ", film noir", "negative_suffix": "colour"}},
                "serve": {"inputs_dir": str(tmp_path / "inputs")},
            }
        )
    )
    settings = ServeSettings(
        api_keys={hash_key(ALICE_KEY): "alice", hash_key(BOB_KEY): "bob"}, max_images=10
    )
    app = create_app(config, db_url, settings, thumbnails=tmp_path / "thumbnails")
    with serving(app) as url, running(config, db_url, concurrency=2):
        yield url


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def _sign_in(page: Page, key: str, owner: str) -> None:
    expect(page.locator("#sign-in")).to_be_visible()
    page.fill("#sign-in-form input[name=token]", key)
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#owner")).to_have_text(owner)


def _queue_images(url: str, key: str, counts: list[int]) -> None:
    """Images made through the API, before the page opens: something to scroll through."""
    headers = {"Authorization": f"Bearer {key}"}
    for n in counts:
        response = httpx.post(
            f"{url}/v1/images/generations",
            json={"prompt": f"a batch of {n}", "n": n, "size": "64x64", "response_format": "url"},
            headers=headers,
            timeout=60,
        )
        assert response.status_code == 200, response.text


def test_the_gallery_end_to_end(browser, gallery, conn):
    _queue_images(gallery, ALICE_KEY, [10, 10, 6])
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    # Signing in: where a key comes from, a wrong key refused in words, the right one let in.
    page.goto(gallery)
    expect(page.locator("#sign-in-help")).to_contain_text("imagen serve-key YOUR-NAME")
    expect(page.locator("#sign-in-help")).to_contain_text("serve: api_keys:")
    _shot(page, "01-sign-in")
    page.fill("#sign-in-form input[name=token]", "imk_wrong")
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#sign-in-error")).to_have_text("Incorrect API key provided.")
    _sign_in(page, ALICE_KEY, "alice")

    # Newest first, a page at a time; scrolling down loads the rest.
    cards = page.locator("#gallery [data-image]")
    expect(cards).to_have_count(24)
    ids = [int(i) for i in cards.evaluate_all("cards => cards.map(c => c.dataset.image)")]
    assert ids == sorted(ids, reverse=True)
    _shot(page, "02-signed-in")
    page.locator("#more").scroll_into_view_if_needed()
    expect(cards).to_have_count(26)
    expect(page.locator("#gallery-end")).to_have_text("That's all of them.")

    # A prompt through the form: its progress shows, then its image leads the gallery.
    page.evaluate("window.scrollTo(0, 0)")
    page.fill("#generate textarea[name=prompt]", "a lighthouse at dusk")
    page.select_option("#generate select[name=backend]", "mock")
    page.select_option("#generate select[name=style]", "noir")
    page.fill("#generate input[name=size]", "480x320")
    page.click("#generate summary")
    page.fill("#generate input[name=seed]", "42")
    page.fill("#generate textarea[name=options]", "delay=2")
    page.click("#generate button[type=submit]")
    running_job = page.locator("#jobs .job[data-state=running]")
    expect(running_job).to_be_visible()
    # The prompt stays in the form, to try a variation of it.
    expect(page.locator("#generate textarea[name=prompt]")).to_have_value("a lighthouse at dusk")
    expect(running_job.locator(".state")).to_contain_text("step")
    expect(running_job.locator("progress")).not_to_have_js_property("value", 0)
    _shot(page, "03-progress")
    expect(page.locator("#jobs .job")).to_have_count(0)
    newest = cards.first
    expect(newest.locator(".prompt")).to_have_text("a lighthouse at dusk")
    expect(newest.locator(".facts")).to_have_text("mock · seed 42 · $0.02")
    # The thumbnail loaded (through the session cookie): 384 wide, for 480x320.
    expect(newest.locator("img")).to_have_js_property("naturalWidth", 384)
    _shot(page, "04-done")

    # Its full metadata, and "make again" with the same parameters.
    newest.click()
    dialog = page.locator("#details")
    expect(dialog).to_be_visible()
    expect(page.locator("#details-facts")).to_contain_text("480×320")
    expect(page.locator("#details-metadata")).to_contain_text('"model": "imagen-mock"')
    expect(page.locator("#details-image")).to_have_js_property("naturalWidth", 480)
    _shot(page, "05-metadata")
    page.click("#make-again")
    expect(dialog).to_be_hidden()
    expect(cards).to_have_count(28)
    expect(cards.first.locator(".facts")).to_have_text("mock · seed 42 · $0.02")
    first, second = (
        int(i) for i in cards.evaluate_all("c => c.slice(0, 2).map(e => e.dataset.image)")
    )
    assert first > second
    _shot(page, "06-made-again")

    # A running job, cancelled from the page.
    page.fill("#generate textarea[name=prompt]", "a very slow picture")
    page.fill("#generate textarea[name=options]", "delay=60")
    page.click("#generate button[type=submit]")
    slow = page.locator("#jobs .job").first
    expect(slow).to_have_attribute("data-state", "running")
    slow_id = int(slow.get_attribute("data-job"))
    slow.locator(".cancel").click()
    expect(slow).to_have_attribute("data-state", "cancelled")
    _shot(page, "07-cancelled")
    assert job(conn, slow_id)["status"] == "cancelled"
    expect(cards).to_have_count(28)

    # Download: the file as it is on disk, under its own name.
    made_again = int(cards.first.get_attribute("data-image"))
    path = Path(
        conn.execute(
            "SELECT local_path FROM imagen.images WHERE id = %s", (made_again,)
        ).fetchone()[0]
    )
    cards.first.click()
    expect(dialog).to_be_visible()
    with page.expect_download() as downloading:
        page.click("#details-download")
    assert downloading.value.suggested_filename == path.name
    assert Path(downloading.value.path()).read_bytes() == path.read_bytes()

    # Delete: asked first (no changes nothing), then the card, the row and the file go.
    page.once("dialog", lambda prompt: prompt.dismiss())
    page.click("#delete-image")
    expect(cards).to_have_count(28)
    assert path.is_file()
    assert sidecar_path(path).is_file()
    page.once("dialog", lambda prompt: prompt.accept())
    page.click("#delete-image")
    expect(dialog).to_be_hidden()
    expect(cards).to_have_count(27)
    expect(page.locator(f'#gallery [data-image="{made_again}"]')).to_have_count(0)
    assert not path.exists()
    assert not sidecar_path(path).exists()
    assert page.request.get(f"{gallery}/v1/images/{made_again}").status == 404
    _shot(page, "08-deleted")

    # Search by prompt, on the server: words and their beginnings.
    search = page.locator("#search input")
    search.fill("lighth")
    expect(cards).to_have_count(1)
    expect(cards.first.locator(".prompt")).to_have_text("a lighthouse at dusk")
    search.fill("batch 6")
    expect(cards).to_have_count(6)
    _shot(page, "09-search")
    search.fill("zebra")
    expect(cards).to_have_count(0)
    expect(page.locator("#gallery-end")).to_have_text("No images match “zebra”.")
    search.fill("")
    expect(cards).to_have_count(24)  # the first page again
    page.locator("#more").scroll_into_view_if_needed()
    expect(cards).to_have_count(27)

    # Another owner signs in on the same browser: none of the first owner's images.
    alices_image = page.locator("#gallery [data-image]").first.get_attribute("data-image")
    page.click("#sign-out")
    _sign_in(page, BOB_KEY, "bob")
    expect(page.locator("#gallery-end")).to_have_text("No images yet.")
    expect(cards).to_have_count(0)
    _shot(page, "10-second-owner")
    theirs = page.request.get(f"{gallery}/v1/images/{alices_image}/file")
    assert theirs.status == 404
    assert errors == []
    page.close()


@pytest.mark.parametrize(
    ("locale", "zone", "written"),
    [
        ("de-DE", "Asia/Tokyo", lambda d: f"{d:%d.%m.%Y, %H:%M}"),
        ("ja-JP", "America/New_York", lambda d: f"{d:%Y/%m/%d} {d.hour}:{d:%M}"),
    ],
    ids=["de-DE", "ja-JP"],
)
def test_dates_are_in_the_readers_language_and_time_zone(
    browser, gallery, conn, locale, zone, written
):
    _queue_images(gallery, ALICE_KEY, [1])
    context = browser.new_context(locale=locale, timezone_id=zone)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(gallery)
    _sign_in(page, ALICE_KEY, "alice")
    made = conn.execute("SELECT created_at FROM imagen.images").fetchone()[0]
    expected = written(made.astimezone(ZoneInfo(zone)))
    expect(page.locator("#gallery time").first).to_have_text(expected)
    page.locator("#gallery [data-image]").first.click()
    expect(page.locator("#details-facts")).to_contain_text(expected)
    assert errors == []
    context.close()


def test_an_image_is_edited_from_the_gallery_or_dropped_on_the_form(browser, gallery, conn):
    _queue_images(gallery, ALICE_KEY, [1])
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(gallery)
    _sign_in(page, ALICE_KEY, "alice")
    cards = page.locator("#gallery [data-image]")
    expect(cards).to_have_count(1)
    source_id = int(cards.first.get_attribute("data-image"))
    source = Path(
        conn.execute("SELECT local_path FROM imagen.images WHERE id = %s", (source_id,)).fetchone()[
            0
        ]
    )

    # "Edit this image": the image becomes the form's input, its prompt the form's prompt.
    cards.first.click()
    page.click("#edit-image")
    expect(page.locator("#details")).to_be_hidden()
    expect(page.locator("#input-chosen")).to_be_visible()
    expect(page.locator("#input-name")).to_have_text(f"image-{source_id}.png")
    expect(page.locator("#generate textarea[name=prompt]")).to_have_value("a batch of 1")
    expect(page.locator("#generate button[type=submit]")).to_have_text("Edit")
    _shot(page, "11-edit-chosen")
    page.fill("#generate input[name=strength]", "0")
    page.click("#generate button[type=submit]")
    expect(cards).to_have_count(2)
    edited_id = int(cards.first.get_attribute("data-image"))
    inputs, strength = conn.execute(
        "SELECT j.inputs, j.strength FROM imagen.jobs j JOIN imagen.images i ON i.job_id = j.id "
        "WHERE i.id = %s",
        (edited_id,),
    ).fetchone()
    assert [ref["role"] for ref in inputs] == ["image"]
    assert strength == 0
    edited = Path(
        conn.execute("SELECT local_path FROM imagen.images WHERE id = %s", (edited_id,)).fetchone()[
            0
        ]
    )
    with Image.open(source) as before, Image.open(edited) as after:  # strength 0: the input
        assert after.convert("RGB").tobytes() == before.convert("RGB").tobytes()
    _shot(page, "12-edited")

    # Dropped on the form: a file from the desktop becomes the input; Remove takes it away.
    page.click("#input-remove")
    expect(page.locator("#input-none")).to_be_visible()
    page.evaluate(
        """async (bytes) => {
            const file = new File([new Uint8Array(bytes)], "dropped.png", { type: "image/png" });
            const data = new DataTransfer();
            data.items.add(file);
            document.querySelector("#input-drop").dispatchEvent(
                new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
        }""",
        list(source.read_bytes()),
    )
    expect(page.locator("#input-name")).to_have_text("dropped.png")
    page.fill("#generate textarea[name=prompt]", "a dropped edit")
    page.click("#generate button[type=submit]")
    expect(cards).to_have_count(3)
    expect(cards.first.locator(".prompt")).to_have_text("a dropped edit")

    # A file that is not an image, dropped: refused in words, nothing queued.
    page.evaluate(
        """() => {
            const data = new DataTransfer();
            data.items.add(new File(["hello"], "notes.txt", { type: "text/plain" }));
            document.querySelector("#input-drop").dispatchEvent(
                new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
        }"""
    )
    expect(page.locator("#generate-error")).to_have_text("Drop a PNG, JPEG or WebP image.")
    assert errors == []
    page.close()
