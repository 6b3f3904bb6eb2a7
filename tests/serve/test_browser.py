"""The page in a real browser: headless Debian Chromium driven by Playwright (never a downloaded browser).

A server started by the session (the `server` fixture) serves the page on 127.0.0.1; the test uploads a
real UTKFace photo from ../shared, waits for the result, and checks it has the photo's size and
differs from it. It saves a screenshot of the page.

The README's screenshot (docs/images/serve.png) is made by the same code, run as a script, with a
synthetic face (UTKFace photos may not be copied into the repository) and a demo model:

    python -m tfcyclegan.data.synthetic --out=/tmp/faces --count=4
    python tests/serve/test_browser.py --model=runs/demo:a2b --photo=/tmp/faces/<a face>.jpg --out=docs/images/serve.png
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = "/usr/bin/chromium"
# What works on this project's machines (root, closed network); Playwright adds --headless.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def _playwright():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"needs Debian's Chromium at {CHROMIUM} (apt-get install -y chromium); it is absent")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("needs the playwright package (pip install -e '.[test]'); it is absent")
    return sync_playwright


def open_browser(playwright, profile: Path):
    """A fresh headless Chromium with a new empty profile (user data dir)."""
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS, viewport={"width": 1180, "height": 860},
    )


def load_page(page, url: str) -> None:
    page.goto(url)
    page.wait_for_function("document.querySelectorAll('#direction option').length > 0", timeout=30_000)


def translate_in_page(page, photo: str | Path, *, model: str | None = None, chain: str | None = None) -> bytes:
    """Chooses the photo and a model (by name, else the first), clicks Translate; returns the result's PNG bytes."""
    if model:
        group = page.evaluate(f"(() => {{ for (const o of document.querySelectorAll('#direction option')) "
                              f"if (o.value === {model!r}) return true; return false; }})()")
        if not group:  # the model is in another group: pick the group, then the direction
            names = page.evaluate("fetch('/v1/models').then(r => r.json()).then(i => i.models)")
            page.select_option("#model", next(m["group"] for m in names if m["name"] == model))
        page.select_option("#direction", model)
    if chain:
        page.select_option("#chain", chain)
    page.set_input_files("#file", str(photo))
    page.click("#go")
    page.wait_for_selector("body[data-state=done]", timeout=60_000)
    encoded = page.evaluate("""async () => {
        const bytes = new Uint8Array(await (await fetch(document.getElementById('result').src)).arrayBuffer());
        let text = '';
        for (const b of bytes) text += String.fromCharCode(b);
        return btoa(text);
    }""")
    return base64.b64decode(encoded)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    sync_playwright = _playwright()
    with sync_playwright() as playwright:
        context = open_browser(playwright, tmp_path_factory.mktemp("chromium_profile"))
        yield context
        context.close()


def test_a_utkface_photo_is_translated_in_the_page(browser, server, utkface_sample, tmp_path):
    from serve.helpers import decode

    from tfcyclegan.io import read_image

    photo = sorted(utkface_sample.glob("*.jpg"))[0]
    page = browser.new_page()
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    load_page(page, server.url)
    faces = server.get_json("v1/models")["faces"]
    assert page.is_disabled("#faces") == (not faces["available"])
    if not faces["available"]:
        assert "faces mode needs the face pipeline" in page.inner_text("#faces-note")

    result = decode(translate_in_page(page, photo, model="age_b2a"))
    original = read_image(str(photo))
    assert result.shape == original.shape, (result.shape, original.shape)
    assert np.abs(result.astype(int) - original.astype(int)).mean() > 5  # translated, not the photo back
    assert page.is_hidden("#error") and page.is_hidden("#progress")
    # The result beside the input, the before/after slider, the PNG to download.
    assert page.get_attribute("#download", "href") == page.get_attribute("#result", "src")
    assert page.get_attribute("#download", "download").endswith("_age_b2a.png")
    page.locator("#slider").fill("20")
    assert "20%" in page.eval_on_selector("#compare-after", "e => e.style.clipPath")
    assert "200 \u00d7 200" in page.inner_text("#result-size")
    screenshot = tmp_path / "serve.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    print(f"screenshot: {screenshot}")
    # Everything the page loaded came from the server: no CDN, font or script from elsewhere.
    outside = [u for u in requests if not u.startswith((server.url, "blob:", "data:"))]
    assert not outside and not errors, (outside, errors)
    page.close()


def test_an_error_is_shown_in_the_page_in_words(browser, server):
    page = browser.new_page()
    load_page(page, server.url)
    page.set_input_files("#file", files=[{"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"not a photo"}])
    page.click("#go")
    page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    assert "415: the image cannot be used: not an image" in page.inner_text("#error")
    assert page.is_enabled("#go")  # ready for another try
    # A file over the server's upload limit (2 MB here) is refused in the page, before any upload.
    page.set_input_files("#file", files=[{"name": "huge.jpg", "mimeType": "image/jpeg", "buffer": bytes(3 * 2**20)}])
    assert "huge.jpg is 3.0 MB, more than this server's limit of 2.0 MB" in page.inner_text("#error")
    page.close()


def main(argv=None) -> int:
    """Makes the README's screenshot: a server with --model, the page translating --photo."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, help="as tfcyclegan-serve --model (repeat)")
    parser.add_argument("--photo", required=True, help="a synthetic face: never a UTKFace photo")
    parser.add_argument("--out", default="docs/images/serve.png")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/, for the package serve
    import tempfile

    from serve.helpers import Server
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        server = Server([f"--model={m}" for m in args.model], Path(tmp))
        try:
            with sync_playwright() as playwright:
                context = open_browser(playwright, Path(tmp) / "profile")
                page = context.new_page()
                load_page(page, server.url)
                translate_in_page(page, args.photo)
                page.locator("#slider").fill("50")
                page.screenshot(path=args.out, full_page=True)
                context.close()
        finally:
            server.stop()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
