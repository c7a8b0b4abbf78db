"""/docs and /redoc work offline: their JavaScript and CSS come from the server (no CDN URL in the page),
the schema declares the bearer key (Swagger UI's "Authorize" button), and both render in chromium."""

from __future__ import annotations

import re

import httpx
import pytest

from test_review_page import KEYS, _browser, served  # noqa: F401 - the served review page fixture

CDN = re.compile(r"https?://[^\"' )]+")  # any absolute URL: the page must need nothing from outside


def test_docs_pages_reference_only_local_assets_and_the_assets_are_served(served):  # noqa: F811
    base = served["base"]
    for page in ("/docs", "/redoc"):
        html = httpx.get(base + page, timeout=10).text
        assert not CDN.findall(html), CDN.findall(html)
        for src in re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', html):
            r = httpx.get(base + src, timeout=10)
            assert r.status_code == 200 and len(r.content) > 1000, src
    assert len(re.findall(r"/docs/assets/", httpx.get(base + "/docs").text)) >= 2
    schema = httpx.get(base + "/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "a client, service or reviewer key"}
    assert httpx.get(base + "/docs/assets/nope.js").status_code == 404


def test_swagger_ui_and_redoc_render_offline_with_an_authorize_button(served):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    drv = _browser()
    try:
        drv.set_page_load_timeout(30)
        drv.get(served["base"] + "/docs")
        wait = WebDriverWait(drv, 30)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .btn.authorize"))
        wait.until(lambda d: "/v1/review/items" in d.find_element(By.TAG_NAME, "body").text)
        drv.find_element(By.CSS_SELECTOR, ".swagger-ui .btn.authorize").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".auth-container input"))
        drv.find_element(By.CSS_SELECTOR, ".auth-container input").send_keys(KEYS["ana"])
        drv.find_element(By.CSS_SELECTOR, ".auth-btn-wrapper .authorize").click()
        wait.until(lambda d: d.execute_script(
            "return typeof ui !== 'undefined' && JSON.stringify(ui.authSelectors.authorized().toJS()).includes('bearer')"))
        drv.get(served["base"] + "/redoc")
        wait.until(lambda d: "cascade-defect review" in d.find_element(By.TAG_NAME, "body").text)
        assert "/v1/review/items" in drv.find_element(By.TAG_NAME, "body").text
    finally:
        drv.quit()
