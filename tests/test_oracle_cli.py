"""`cascade-defect oracle classify` and `review list/label` against a real loopback server and SQLite."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from cascade_defect.cli import app
from oracle_chat_server import ChatServer, answer, content, noise_frame

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("no_oracle_env")


@pytest.fixture
def images(tmp_path):
    paths = []
    for seed in (1, 2):
        p = tmp_path / f"frame{seed}.png"
        Image.fromarray(noise_frame(seed)).save(p)
        paths.append(p)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return paths, bad


def _lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_classify_with_openai_compatible_server(images, tmp_path, monkeypatch):
    (a, b), bad = images
    server = ChatServer().start()
    try:
        server.script(answer("scratch", 0.91, "bright streak"), content("not json at all"))
        monkeypatch.setenv("OPENAI_API_KEY", "sk-cli-test")
        db = tmp_path / "c.db"
        args = ["oracle", "classify", str(a), str(bad), str(b), "--domain", "severstal", "--backend", "openai",
                "--base-url", server.url, "--model", "gpt-4.1-mini", "--db", str(db), "--hash-region", "whole",
                "--json"]
        res = runner.invoke(app, args)
        assert res.exit_code == 1  # one image could not be read
        out = _lines(res.stdout)
        assert [o["image"] for o in out] == [str(a), str(bad), str(b)]
        assert out[0]["defect_class"] == "scratch" and out[0]["cached"] is False
        assert out[0]["prompt_tokens"] == 2540 and out[0]["completion_tokens"] == 37
        assert out[0]["cost_usd"] == pytest.approx((1516 * 0.40 + 1024 * 0.10 + 37 * 1.60) / 1e6)
        assert set(out[0]) >= {"image", "defect_class", "confidence", "reasoning", "cached", "prompt_tokens",
                               "completion_tokens", "cost_usd", "latency_ms"}
        assert set(out[1]) == {"image", "error"} and "broken.png" in out[1]["error"]
        assert out[2]["queued_for_review"] is True and out[2]["reason"] == "malformed" and "error" in out[2]
        again = _lines(runner.invoke(app, args[:3] + args[5:]).stdout)  # same first frame: its answer, reused
        assert again[0]["reused"] is True and again[0]["call_id"] == out[0]["call_id"]
        assert again[0]["defect_class"] == "scratch" and len(server.requests) == 2  # not asked (or paid) twice
        # the malformed answer is waiting for a human
        listed = _lines(runner.invoke(app, ["review", "list", "--db", str(db), "--json"]).stdout)
        assert [(i["image_ref"], i["reason"]) for i in listed] == [(str(b), "malformed")]
    finally:
        server.stop()


def test_review_backend_is_the_default_and_review_commands_label(images, tmp_path):
    (a, _), _ = images
    db = tmp_path / "r.db"
    res = runner.invoke(app, ["oracle", "classify", str(a), "--domain", "neu", "--db", str(db), "--box",
                              "10,10,60,60", "--json"])
    assert res.exit_code == 0, res.output
    [out] = _lines(res.stdout)
    assert out["queued_for_review"] is True and out["reason"] == "no_backend"
    rid = out["review_id"]
    text = runner.invoke(app, ["review", "list", "--db", str(db)]).stdout
    assert f"#{rid}" in text and "crazing" in text
    assert "no AI oracle is configured, so a person decides" in text and "no_backend" not in text  # plain words
    bad = runner.invoke(app, ["review", "label", str(rid), "--label", "rust", "--by", "ana", "--db", str(db)])
    assert bad.exit_code == 2 and "'rust' is not one of" in bad.output
    ok = runner.invoke(app, ["review", "label", str(rid), "--label", "scratches", "--by", "ana", "--db", str(db),
                             "--json"])
    assert ok.exit_code == 0 and _lines(ok.stdout)[0]["labelled_by"] == "ana"
    assert "review queue is empty" in runner.invoke(app, ["review", "list", "--db", str(db)]).stdout
    [done] = _lines(runner.invoke(app, ["review", "list", "--db", str(db), "--status", "labelled", "--json"]).stdout)
    assert done["label"] == "scratches" and done["hint_box"] == [10.0, 10.0, 60.0, 60.0]


def test_cli_errors_are_clear(images, tmp_path):
    (a, _), _ = images
    res = runner.invoke(app, ["oracle", "classify", str(a), "--domain", "mars", "--db", str(tmp_path / "x.db")])
    assert res.exit_code == 2 and "unknown domain 'mars'" in res.output
    res = runner.invoke(app, ["oracle", "classify", str(a), "--domain", "neu", "--backend", "azure",
                              "--db", str(tmp_path / "x.db")])
    assert res.exit_code == 2 and "endpoint" in res.output
    res = runner.invoke(app, ["oracle", "classify", str(a), "--domain", "neu", "--box", "1,2,3"])
    assert res.exit_code == 2 and "x1,y1,x2,y2" in res.output
    res = runner.invoke(app, ["review", "list", "--db", str(tmp_path / "none.db")])
    assert res.exit_code == 2 and "no database yet" in res.output


def test_a_key_echoed_by_the_server_never_reaches_stdout_or_stderr(images, tmp_path, monkeypatch):
    import logging

    from oracle_chat_server import status

    (a, b), _ = images
    key = "sk-cli-echo-5e1f0a9b77c3"
    body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error"}})
    server = ChatServer(default=status(401, body=body)).start()
    logging.getLogger("cascade_defect").setLevel(logging.INFO)
    try:
        monkeypatch.setenv("OPENAI_API_KEY", key)
        for extra in (["--json"], []):
            res = runner.invoke(app, ["oracle", "classify", str(a), str(b), "--domain", "severstal", "--backend",
                                      "openai", "--base-url", server.url, "--model", "gpt-4.1-mini",
                                      "--db", str(tmp_path / "k.db"), *extra])
            assert "Incorrect API key provided" in res.output and "401" in res.output
            assert key not in res.output and "5e1f0a9b77c3" not in res.output
    finally:
        server.stop()
    assert key.encode() not in b"".join(p.read_bytes() for p in tmp_path.glob("k.db*"))
