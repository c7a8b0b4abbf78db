"""The review page, served on its own (`cascade-defect serve review`), over HTTP and in a real browser.

The API part checks reviewer identity, history and the 409 on a stale write. The browser part
drives Debian's chromium through chromedriver (Selenium): it signs in, picks a class with the
keyboard, draws a box with the mouse, checks a screenshot of the canvas shows the image, the
detector's (magenta, dashed) box and the drawn (green) box, saves with Enter, and finds the
label with its box and reviewer in the store.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from cascade_defect.records import Decision, Detection, LayerResult
from cascade_defect.store import Database, LabelStore, ReviewQueue
from cascade_defect.store.decisions import DecisionLog

SRC = str(Path(__file__).resolve().parents[1] / "src")
KEYS = {"ana": "ana-key-for-tests", "bob": "bob-key-for-tests"}
CLASSES = ["scratch", "patch", "no_defect"]
DET_BOX = (20.0, 20.0, 60.0, 60.0)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    """A database with one review item (image, gate z, a detector box) and the page serving it."""
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(128, 6, (200, 200)), 0, 255).astype(np.uint8)
    image = tmp_path / "frame1.png"
    Image.fromarray(img).convert("RGB").save(image)
    db_path = tmp_path / "review.db"
    db = Database(db_path)
    log = DecisionLog(db)
    run = log.start_run({})
    log.record(run, [("k1", Decision(
        frame_id="frame1", image=str(image), domain="steel", label=None, layer="review",
        trace=[LayerResult("gate", 1.0, score=0.7, z=3.2),
               LayerResult("specialist", 2.0, detections=(Detection("scratch", 0.41, DET_BOX),),
                           defect_class="scratch", confidence=0.41)]))])
    item = ReviewQueue(db).enqueue(frame_id="frame1", image_ref=str(image), domain="steel", reason="no_backend",
                                   classes=CLASSES)
    db.close()
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
               CASCADE_REVIEWER_KEYS=",".join(f"{n}:{k}" for n, k in KEYS.items()), OMP_NUM_THREADS="1",
               CASCADE_REVIEW_IMAGE_ROOT=str(tmp_path))  # a `run` item names a file: served only from this root
    proc = subprocess.Popen([sys.executable, "-m", "cascade_defect", "serve", "review", "--db", str(db_path),
                             "--port", str(port)], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("review server did not start: " + proc.stderr.read().decode()[-2000:])
            time.sleep(0.2)
        yield {"base": base, "db": db_path, "item": item, "image": image}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _auth(name):
    return {"Authorization": f"Bearer {KEYS[name]}"}


def test_api_names_the_reviewer_keeps_history_and_refuses_a_stale_write(served):
    base, item = served["base"], served["item"]
    assert httpx.get(f"{base}/v1/review/items").status_code == 401
    assert httpx.get(f"{base}/v1/review/items", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert httpx.get(f"{base}/v1/review/whoami", headers=_auth("bob")).json() == {"reviewer": "bob"}
    items = httpx.get(f"{base}/v1/review/items", headers=_auth("ana")).json()["items"]
    assert [i["id"] for i in items] == [item] and items[0]["z"] == 3.2
    img = httpx.get(f"{base}/v1/review/items/{item}/image", headers=_auth("ana"))
    assert img.status_code == 200 and Image.open(io.BytesIO(img.content)).size == (200, 200)
    post = lambda who, body: httpx.post(f"{base}/v1/review/items/{item}/label", json=body, headers=_auth(who))
    bad = post("ana", {"label": "rust", "version": 0})
    assert bad.status_code == 400 and f"review item {item}" in bad.json()["error"]["message"]
    ok = post("ana", {"label": "scratch", "version": 0, "boxes": [{"cls": "scratch", "box": [1, 2, 30, 40]}]})
    assert ok.status_code == 200 and ok.json()["labelled_by"] == "ana" and ok.json()["version"] == 1
    stale = post("bob", {"label": "patch", "version": 0})
    assert stale.status_code == 409
    assert stale.json()["current"]["current"]["label"] == "scratch"
    assert stale.json()["current"]["current"]["labelled_by"] == "ana"
    assert post("bob", {"label": "patch", "version": 1}).status_code == 200
    hist = httpx.get(f"{base}/v1/review/items/{item}", headers=_auth("ana")).json()["history"]
    assert [(h["label"], h["labelled_by"]) for h in hist] == [("scratch", "ana"), ("patch", "bob")]


def _browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("Debian chromium and chromium-driver are needed for the review page browser test "
                    "(scripts/bootstrap.sh --test installs both)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,900", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=opts)


def test_browser_labels_a_frame_with_a_box_and_the_screenshot_shows_image_and_boxes(served):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    drv = _browser()
    try:
        drv.set_page_load_timeout(30)
        drv.get(served["base"] + "/review/")
        wait = WebDriverWait(drv, 20)
        drv.find_element(By.ID, "key").send_keys(KEYS["ana"] + Keys.ENTER)
        wait.until(lambda d: d.execute_script("return !!(window.reviewState.img && window.reviewState.item)"))
        assert "reviewer: ana" in drv.find_element(By.ID, "who").text
        evidence = drv.find_element(By.ID, "evidence").text
        assert "threshold" in evidence and "τ" not in evidence and " z " not in f" {evidence} "  # plain words
        assert "no AI oracle is configured, so a person decides" in evidence and "frame1.png" in evidence
        page = drv.find_element(By.TAG_NAME, "body").text
        assert "no_backend" not in page
        entry = drv.find_element(By.CSS_SELECTOR, "#list button")
        assert "frame1.png" in entry.text and "no AI oracle is configured" in entry.text  # file name, plain reason
        wait.until(lambda d: d.execute_script(  # the list's thumbnail is the frame itself, loaded with the key
            "const i = document.querySelector('#list button img.thumb'); return i && i.complete && i.naturalWidth"))
        assert drv.execute_script("return document.querySelector('#list button img.thumb').naturalWidth") == 200
        scale = drv.execute_script("return window.reviewState.scale")
        canvas = drv.find_element(By.ID, "canvas")
        cw, ch = canvas.size["width"], canvas.size["height"]
        assert abs(cw - 200 * scale) <= 1 and abs(ch - 200 * scale) <= 1

        ActionChains(drv).send_keys("1").perform()  # first class: scratch
        want = (50, 60, 150, 140)  # image pixels
        to_off = lambda x, y: (int(round(x * scale - cw / 2)), int(round(y * scale - ch / 2)))
        (ActionChains(drv).move_to_element_with_offset(canvas, *to_off(want[0], want[1])).click_and_hold()
         .move_to_element_with_offset(canvas, *to_off(100, 100))
         .move_to_element_with_offset(canvas, *to_off(want[2], want[3])).release().perform())
        assert drv.execute_script("return window.reviewState.boxes.length") == 1

        shot = np.asarray(Image.open(io.BytesIO(canvas.screenshot_as_png)).convert("RGB")).astype(int)
        assert shot.shape[:2] == (ch, cw)
        px = lambda x, y: shot[int(round(y * scale)), int(round(x * scale))]
        inside = shot[int(90 * scale):int(110 * scale), int(80 * scale):int(120 * scale)].reshape(-1, 3)
        assert 100 < inside.mean() < 160 and inside.std() > 2  # the grey, noisy frame is drawn
        green = px((want[0] + want[2]) / 2, want[1])  # top edge of the drawn box
        assert green[1] > 200 and green[0] < 90 and green[2] < 90, green
        magenta = shot[int(round(DET_BOX[1] * scale)), int(round(DET_BOX[0] * scale)) + 3]  # first dash, top edge
        assert magenta[0] > 200 and magenta[2] > 200 and magenta[1] < 90, magenta

        ActionChains(drv).send_keys(Keys.ENTER).perform()
        wait.until(lambda d: "saved" in d.find_element(By.ID, "status-line").text)
    finally:
        drv.quit()
    db = Database(served["db"])
    try:
        labels = LabelStore(db).for_frame("frame1")
    finally:
        db.close()
    assert len(labels) == 1
    lab = labels[0]
    assert (lab.label, lab.source, lab.labelled_by) == ("scratch", "human", "ana")
    assert len(lab.boxes) == 1 and lab.boxes[0].cls == "scratch"
    assert np.allclose(lab.boxes[0].as_list(), want, atol=1.5), lab.boxes[0]
