"""The oracle against a real chat-completions HTTP server on loopback, through the real `openai` client."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from cascade_defect.errors import ConfigError
from cascade_defect.cascade.assemble import backend_config, oracle_from_settings
from cascade_defect.oracle import (BackendConfig, CircuitBreaker, Oracle, OracleRequest, PriceTable,
                                   PromptBuilder, RetryPolicy, make_backend)
from cascade_defect.oracle.pricing import Usage
from cascade_defect.records import Frame
from cascade_defect.store import Database, LabelStore, OracleCallLog, RetrainQueue, ReviewQueue
from oracle_chat_server import (ChatServer, answer, content, noise_frame, refusal, slow, status)

KEY = "sk-test-7f3a9c2e1d-SECRET"
AZ_KEY = "azkey-41b7e0c9aa-SECRET"
FAST = RetryPolicy(max_attempts=4, base_delay_s=0.01, max_delay_s=0.05)


pytestmark = pytest.mark.usefixtures("no_oracle_env")


@pytest.fixture
def server():
    srv = ChatServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def db(tmp_path):
    d = Database(tmp_path / "store.db")
    yield d
    d.close()


class Clock:
    def __init__(self, t=1_800_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


def openai_oracle(server, db, monkeypatch, *, model="gpt-4.1-mini", retry=FAST, timeout=5.0, output_mode="auto",
                  **kw):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    cfg = BackendConfig(backend="openai", base_url=server.url, model=model, timeout_s=timeout,
                        output_mode=output_mode)
    kw.setdefault("hash_region", "whole")
    return Oracle(db, make_backend(cfg, api_key=KEY), kw.pop("prompt", None) or PromptBuilder(), retry=retry, **kw)


def req(seed, domain="severstal", hint=None, image=None):
    return OracleRequest(f"f{seed}", domain, noise_frame(seed) if image is None else image, hint, f"frames/f{seed}.png")


def expected_cost(prompt, cached, completion, p_in=0.40, p_cached=0.10, p_out=1.60):
    return ((prompt - cached) * p_in + cached * p_cached + completion * p_out) / 1e6


# -- well-formed answers -------------------------------------------------------------------
def test_structured_answer_on_openai_route_is_metered_logged_labelled(server, db, monkeypatch):
    server.script(answer("pitting", 0.83, "round dark pits", prompt_tokens=3000, cached_tokens=2048,
                         completion_tokens=50))
    oracle = openai_oracle(server, db, monkeypatch)
    [a] = oracle.classify([req(1)])
    assert (a.outcome, a.defect_class, a.confidence, a.reasoning) == ("answer", "pitting", 0.83, "round dark pits")
    assert (a.prompt_tokens, a.cached_tokens, a.completion_tokens) == (3000, 2048, 50)
    assert a.cost_usd == pytest.approx(expected_cost(3000, 2048, 50))
    assert not a.cached and not a.to_review and a.attempts == 1
    # what went over the wire
    [r] = server.requests
    assert r.path == "/v1/chat/completions"
    assert r.headers["authorization"] == f"Bearer {KEY}"
    assert r.body["model"] == "gpt-4.1-mini"
    fmt = r.body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["properties"]["defect_class"]["enum"] == [
        "pitting", "inclusion", "scratch", "patch", "no_defect"]
    system, user = r.body["messages"]
    assert system["role"] == "system" and '"no_defect"' in system["content"]
    assert user["content"][-1]["image_url"]["url"].startswith("data:image/png;base64,")
    # stored: the call, the label, the retrain item, the cache entry
    [call] = OracleCallLog(db).recent()
    assert call.outcome == "answer" and call.prompt_tokens == 3000 and call.cached_tokens == 2048
    assert call.cost_usd == pytest.approx(a.cost_usd) and call.backend == "openai"
    assert call.prompt_version == oracle.prompt.version("severstal") and len(call.dhash) == 16
    assert call.response_model == "gpt-4.1-mini-2025-04-14" and json.loads(call.raw_text)["defect_class"] == "pitting"
    assert LabelStore(db).effective("f1").label == "pitting"
    [item] = RetrainQueue(db).pending()
    assert item.label.source == "oracle" and item.label.oracle_call_id == call.id
    assert oracle.cache.size() == 1 and ReviewQueue(db).count() == 0


def test_azure_deployment_route_with_api_key(server, db, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZ_KEY)
    cfg = BackendConfig(backend="azure", azure_endpoint=server.endpoint, deployment="cascade-gpt4o",
                        api_version="2024-10-21", model="gpt-4o")
    oracle = Oracle(db, make_backend(cfg, api_key=AZ_KEY), retry=FAST)
    server.script(answer("scratch", prompt_tokens=1000, cached_tokens=0, completion_tokens=20))
    [a] = oracle.classify([req(2)])
    [r] = server.requests
    assert r.path == "/openai/deployments/cascade-gpt4o/chat/completions"
    assert r.query["api-version"] == ["2024-10-21"]
    assert r.headers["api-key"] == AZ_KEY and "authorization" not in r.headers
    assert a.defect_class == "scratch"
    assert a.cost_usd == pytest.approx(expected_cost(1000, 0, 20, 2.50, 1.25, 10.00))  # priced as gpt-4o


def test_azure_entra_id_token_through_azure_identity(server, db, monkeypatch):
    """No key: the client gets bearer tokens from azure-identity's DefaultAzureCredential."""
    import azure.identity
    from azure.core.credentials import AccessToken

    scopes = []

    class OfflineCredential:  # stands in for the machine's identity; get_bearer_token_provider is the real one
        def get_token(self, *s, **kw):
            scopes.extend(s)
            return AccessToken("entra-token-abc", 4_102_444_800)

        def get_token_info(self, *s, **kw):
            from azure.core.credentials import AccessTokenInfo
            scopes.extend(s)
            return AccessTokenInfo("entra-token-abc", 4_102_444_800)

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", OfflineCredential)
    cfg = BackendConfig(backend="azure", azure_endpoint=server.endpoint, deployment="gpt-4.1-mini")
    oracle = Oracle(db, make_backend(cfg), retry=FAST)
    [a] = oracle.classify([req(3)])
    assert a.outcome == "answer"
    assert server.requests[0].headers["authorization"] == "Bearer entra-token-abc"
    assert scopes == ["https://cognitiveservices.azure.com/.default"]


def test_entra_sign_in_failure_goes_to_review(server, db, monkeypatch):
    import azure.identity

    class NoIdentity:
        def get_token(self, *s, **kw):
            raise azure.identity.CredentialUnavailableError("no identity on this machine")

        get_token_info = get_token

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", NoIdentity)
    cfg = BackendConfig(backend="azure", azure_endpoint=server.endpoint, deployment="gpt-4.1-mini")
    oracle = Oracle(db, make_backend(cfg), retry=FAST)
    [a] = oracle.classify([req(4)])
    assert a.to_review and a.review_reason == "oracle_error" and "Entra ID" in a.error
    assert server.requests == []


def test_json_mode_fallback_for_servers_without_json_schema(db, monkeypatch):
    server = ChatServer(reject_json_schema=True).start()
    try:
        oracle = openai_oracle(server, db, monkeypatch)
        a, b = oracle.classify([req(5), req(6)])
        assert a.defect_class == "scratch" and b.defect_class == "scratch"
        kinds = [r.body["response_format"]["type"] for r in server.requests]
        assert kinds == ["json_schema", "json_object", "json_object"]  # switched once, then stays
        assert oracle.backend.mode == "json_object"
    finally:
        server.stop()


def test_json_mode_applies_the_same_validation(server, db, monkeypatch):
    oracle = openai_oracle(server, db, monkeypatch, output_mode="json_object")
    bad = json.dumps({"defect_class": "rust", "confidence": 0.7, "reasoning": "orange"})
    server.script(content(bad), content('{"defect_class": "patch", "confidence": 1.4, "reasoning": "x"}'))
    a, b = oracle.classify([req(7), req(8)])
    assert a.to_review and a.review_reason == "malformed" and b.review_reason == "malformed"
    assert server.requests[0].body["response_format"] == {"type": "json_object"}
    calls = {c.frame_id: c for c in OracleCallLog(db).recent()}
    assert calls["f7"].raw_text == bad and calls["f7"].outcome == "error"
    assert LabelStore(db).count() == 0


# -- bad answers ---------------------------------------------------------------------------
@pytest.mark.parametrize("step, reason, raw", [
    (content("{\"defect_class\": \"scratch\", \"confid"), "malformed", "{\"defect_class\": \"scratch\", \"confid"),
    (content("Sure! It looks like a scratch."), "malformed", "Sure! It looks like a scratch."),
    (content(json.dumps({"defect_class": "dent", "confidence": 0.5, "reasoning": "r"})), "malformed", "dent"),
    (refusal("I can't help with that request."), "refusal", "I can't help with that request."),
    ({**content('{"defect_class": "scr'), "finish_reason": "length"}, "truncated", '{"defect_class": "scr'),
])
def test_bad_answer_is_logged_with_raw_text_and_sent_to_review(server, db, monkeypatch, caplog, step, reason, raw):
    caplog.set_level(logging.INFO, logger="cascade_defect.oracle")
    server.script({**step, "prompt_tokens": 2000, "cached_tokens": 0, "completion_tokens": 12})
    oracle = openai_oracle(server, db, monkeypatch)
    [a] = oracle.classify([req(9)])
    assert a.to_review and a.review_reason == reason and a.defect_class is None
    assert len(server.requests) == 1  # a bad answer is not retried
    [call] = OracleCallLog(db).recent()
    assert call.outcome == "error" and raw in call.raw_text and reason in call.error
    assert call.cost_usd == pytest.approx(expected_cost(2000, 0, 12)) == a.cost_usd  # paid for all the same
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and raw in errors[0].getMessage()
    [item] = ReviewQueue(db).list()
    assert item.frame_id == "f9" and item.reason == reason and item.oracle_call_id == call.id
    assert "no_defect" in item.classes
    assert LabelStore(db).count() == 0 and oracle.cache.size() == 0  # never a label, never cached


# -- transport failures --------------------------------------------------------------------
def test_429_retries_honour_retry_after(server, db, monkeypatch):
    server.script(status(429, {"Retry-After": "1"}), status(429, {"retry-after-ms": "300"}), answer("patch"))
    oracle = openai_oracle(server, db, monkeypatch)
    [a] = oracle.classify([req(10)])
    assert a.defect_class == "patch" and a.attempts == 3
    t = [r.t for r in server.requests]
    assert len(t) == 3
    assert t[1] - t[0] >= 0.95  # waited the server's Retry-After: 1 (backoff alone is <= 0.05 s)
    assert 0.28 <= t[2] - t[1] < 0.95  # and its retry-after-ms: 300
    assert OracleCallLog(db).recent()[0].attempts == 3


def test_server_errors_exhaust_retries_then_review_with_raw_body(server, db, monkeypatch):
    server.default = status(500, body='{"error": {"message": "upstream exploded"}}')
    oracle = openai_oracle(server, db, monkeypatch, retry=RetryPolicy(max_attempts=3, base_delay_s=0.01))
    [a] = oracle.classify([req(11)])
    assert len(server.requests) == 3
    assert a.to_review and a.review_reason == "oracle_unavailable" and "HTTP 500" in a.error
    [call] = OracleCallLog(db).recent()
    assert call.outcome == "error" and call.attempts == 3 and "upstream exploded" in call.raw_text
    assert ReviewQueue(db).count() == 1 and call.cost_usd == 0


def test_slow_response_times_out_and_is_retried(server, db, monkeypatch):
    server.script(slow(1.5), answer("inclusion"))
    oracle = openai_oracle(server, db, monkeypatch, timeout=0.4)
    [a] = oracle.classify([req(12)])
    assert a.defect_class == "inclusion" and a.attempts == 2 and len(server.requests) == 2


def test_client_errors_are_not_retried(server, db, monkeypatch):
    server.default = status(401, body='{"error": {"message": "invalid api key"}}')
    oracle = openai_oracle(server, db, monkeypatch)
    [a] = oracle.classify([req(13)])
    assert len(server.requests) == 1
    assert a.to_review and a.review_reason == "oracle_error" and "401" in a.error


def test_circuit_opens_after_failures_and_closes_after_a_good_trial(server, db, monkeypatch):
    t = [0.0]
    breaker = CircuitBreaker(failure_threshold=2, reset_after_s=30, clock=lambda: t[0])
    server.default = status(503)
    oracle = openai_oracle(server, db, monkeypatch, retry=RetryPolicy(max_attempts=2, base_delay_s=0.01),
                           breaker=breaker)
    out = oracle.classify([req(s) for s in (20, 21, 22, 23)])
    assert [a.review_reason for a in out] == ["oracle_unavailable", "oracle_unavailable", "circuit_open",
                                              "circuit_open"]
    assert len(server.requests) == 4  # 2 attempts x 2 frames, then no traffic while open
    assert breaker.state == "open" and ReviewQueue(db).count() == 4
    t[0] = 31.0  # half-open: one trial call goes out
    server.default = answer("scratch")
    [a] = oracle.classify([req(24)])
    assert a.outcome == "answer" and breaker.state == "closed" and len(server.requests) == 5


# -- cache ---------------------------------------------------------------------------------
def test_cache_hit_costs_nothing_and_is_logged_as_hit(server, db, monkeypatch):
    oracle = openai_oracle(server, db, monkeypatch)
    frame = noise_frame(30)
    brighter = np.clip(frame.astype(np.int16) + 4, 0, 255).astype(np.uint8)
    first, same, near = oracle.classify([req(30, image=frame), req(31, image=frame), req(32, image=brighter)])
    assert len(server.requests) == 1
    assert first.outcome == "answer" and first.cost_usd > 0
    for a in (same, near):
        assert a.outcome == "cache_hit" and a.cached and a.cost_usd == 0 and a.prompt_tokens == 0
        assert a.defect_class == first.defect_class
    calls = {c.frame_id: c for c in OracleCallLog(db).recent()}
    assert calls["f31"].outcome == "cache_hit" and calls["f31"].cost_usd == 0
    assert calls["f31"].cache_source_id == first.call_id
    assert RetrainQueue(db).pending()[0].label.frame_id == "f30" and len(RetrainQueue(db).pending()) == 1
    assert LabelStore(db).effective("f32").source == "oracle_cache"
    [distinct] = oracle.classify([req(33)])
    assert distinct.outcome == "answer" and len(server.requests) == 2


def test_new_prompt_version_or_model_misses_the_cache(server, db, monkeypatch):
    frame = noise_frame(40)
    base = openai_oracle(server, db, monkeypatch)
    assert base.classify([req(40, image=frame)])[0].outcome == "answer"
    assert base.classify([req(41, image=frame)])[0].outcome == "cache_hit"
    new_prompt = openai_oracle(server, db, monkeypatch, prompt=PromptBuilder(template="Classify. $labels"))
    assert new_prompt.prompt.version("severstal") != base.prompt.version("severstal")
    assert new_prompt.classify([req(42, image=frame)])[0].outcome == "answer"
    other_model = openai_oracle(server, db, monkeypatch, model="gpt-4o")
    assert other_model.classify([req(43, image=frame)])[0].outcome == "answer"
    assert len(server.requests) == 3
    # and the same oracle again (a restart) hits the persisted cache
    again = openai_oracle(server, db, monkeypatch)
    assert again.classify([req(44, image=frame)])[0].outcome == "cache_hit"
    assert len(server.requests) == 3


def test_region_hashing_keys_on_the_hinted_region(server, db, monkeypatch):
    a = noise_frame(50, shape=(128, 512))
    b = a.copy()
    b[:, 300:] = noise_frame(51, shape=(128, 212))  # same left part, different right part
    hint = (20.0, 20.0, 120.0, 100.0)
    region = openai_oracle(server, db, monkeypatch, hash_region="hint")
    r1, r2 = region.classify([req(50, image=a, hint=hint), req(51, image=b, hint=hint)])
    assert (r1.outcome, r2.outcome) == ("answer", "cache_hit")
    whole = openai_oracle(server, db, monkeypatch, hash_region="whole")
    w1, w2 = whole.classify([req(52, image=a, hint=hint), req(53, image=b, hint=hint)])
    assert (w1.outcome, w2.outcome) == ("answer", "answer")
    # hint_only: a frame without a hint bypasses the cache; a per-domain mapping picks the mode
    only = openai_oracle(server, db, monkeypatch, hash_region={"severstal": "hint_only", "*": "whole"})
    o1, o2 = only.classify([req(54, image=a), req(55, image=a)])
    assert (o1.outcome, o2.outcome) == ("answer", "answer") and only.cache.size() == 3
    server.script(answer("scratches"))
    n1, n2 = only.classify([req(56, image=a, domain="neu"), req(57, image=a, domain="neu")])
    assert (n1.outcome, n2.outcome) == ("answer", "cache_hit")
    default = Oracle(db, only.backend, retry=FAST)  # default: only hinted regions are cached
    d1, d2 = default.classify([req(58, image=a), req(59, image=a)])
    assert (d1.outcome, d2.outcome) == ("answer", "answer") and d1.dhash is not None
    hint2 = (150.0, 20.0, 250.0, 100.0)  # grown to x 100-300: still left of where a and b differ
    h1, h2 = default.classify([req(58, image=a, hint=hint2), req(59, image=b, hint=hint2)])
    assert (h1.outcome, h2.outcome) == ("answer", "cache_hit")
    with pytest.raises(ConfigError, match="hash region"):
        openai_oracle(server, db, monkeypatch, hash_region="tiles")
    # the query image was cropped to the hint
    assert "cropped to the flagged region" in server.requests[0].body["messages"][1]["content"][-2]["text"]


# -- spending guard ------------------------------------------------------------------------
def test_spending_guard_sends_to_review_and_survives_restart(server, db, monkeypatch):
    clock = Clock()
    per_call = expected_cost(2540, 1024, 37)
    make = lambda: openai_oracle(server, db, monkeypatch, clock=clock, max_usd_per_hour=2.5 * per_call,
                                 max_usd_per_day=10 * per_call)
    oracle = make()
    out = oracle.classify([req(s) for s in (60, 61, 62, 63)])
    assert [a.outcome for a in out] == ["answer", "answer", "answer", "review"]
    assert out[3].review_reason == "budget" and "last hour" in out[3].error
    assert len(server.requests) == 3
    restarted = make()  # a new process reading the same database
    assert restarted.classify([req(64)])[0].review_reason == "budget"
    clock.t += 3601  # the hour window has passed; the day limit still allows more
    assert restarted.classify([req(65)])[0].outcome == "answer"
    assert OracleCallLog(db).spent_since(0) == pytest.approx(4 * per_call)


def test_unknown_model_price_is_refused_at_start(server, db, monkeypatch):
    with pytest.raises(ConfigError, match="no price for model 'llava-13b'"):
        openai_oracle(server, db, monkeypatch, model="llava-13b")
    free = PriceTable({"llava-13b": __import__("cascade_defect.oracle", fromlist=["ModelPrice"]).ModelPrice(0, 0, 0)})
    oracle = openai_oracle(server, db, monkeypatch, model="llava-13b", prices=free)
    assert oracle.classify([req(70)])[0].cost_usd == 0.0
    assert oracle.prices.cost("llava-13b", Usage(10, 0, 10)) == 0.0
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZ_KEY)
    azure = BackendConfig(backend="azure", azure_endpoint=server.endpoint, deployment="prod-vision")
    with pytest.raises(ConfigError, match="CASCADE_ORACLE_MODEL or --model"):
        Oracle(db, make_backend(azure, api_key=AZ_KEY))


# -- secrets -------------------------------------------------------------------------------
def test_api_keys_never_reach_logs_or_the_database(server, db, monkeypatch, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OPENAI_LOG", "debug")
    server.script(answer(), status(429, {"retry-after-ms": "10"}), answer("patch"), content("garbage"),
                  status(500), status(500), status(500), status(500), status(401))
    oracle = openai_oracle(server, db, monkeypatch)
    oracle.classify([req(s) for s in range(80, 85)])
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZ_KEY)
    az = Oracle(db, make_backend(BackendConfig(backend="azure", azure_endpoint=server.endpoint,
                                               deployment="gpt-4.1-mini"), api_key=AZ_KEY), retry=FAST)
    server.script(answer(), content("{bad"), status(429, {"retry-after-ms": "10"}), answer())
    az.classify([req(s) for s in range(90, 93)])
    # the keys were really used ...
    assert any(r.headers.get("authorization") == f"Bearer {KEY}" for r in server.requests)
    assert any(r.headers.get("api-key") == AZ_KEY for r in server.requests)
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    # ... and appear nowhere we write
    db.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("store.db*"))
    assert len(stored) > 0
    for secret in (KEY, AZ_KEY, "7f3a9c2e1d", "41b7e0c9aa"):
        assert secret not in caplog.text
        assert secret.encode() not in stored


# -- defaults and the router ---------------------------------------------------------------
def test_review_is_the_default_backend(db, monkeypatch):
    cfg = backend_config()
    assert cfg.backend == "review" and make_backend(cfg) is None
    oracle = oracle_from_settings(db=db)
    [a] = oracle.classify([req(100, hint=(1, 2, 30, 40))])
    assert a.to_review and a.review_reason == "no_backend" and a.error is None
    [item] = ReviewQueue(db).list()
    assert item.hint_box == (1.0, 2.0, 30.0, 40.0) and item.image_ref == "frames/f100.png"
    assert OracleCallLog(db).recent()[0].backend == "review"


def test_backend_from_environment(server, db, monkeypatch):
    monkeypatch.setenv("CASCADE_ORACLE_BACKEND", "openai")
    monkeypatch.setenv("CASCADE_ORACLE_BASE_URL", server.url)
    monkeypatch.setenv("CASCADE_ORACLE_MODEL", "gpt-4o")
    oracle = oracle_from_settings(db=db, retry=FAST)
    [a] = oracle.classify([req(110)])
    assert a.outcome == "answer" and server.requests[0].body["model"] == "gpt-4o"
    assert server.requests[0].headers["authorization"] == "Bearer no-key"  # a local server needs no key
    monkeypatch.delenv("CASCADE_ORACLE_BASE_URL")
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        oracle_from_settings(db=db)
    monkeypatch.setenv("CASCADE_ORACLE_BACKEND", "azure")
    with pytest.raises(ConfigError, match="endpoint"):
        oracle_from_settings(db=db)


def test_router_calls_the_oracle_and_routes_review(server, db, monkeypatch):
    from cascade_defect.cascade.policy import Policy
    from cascade_defect.cascade.router import Router
    from cascade_defect.contracts import GateScore

    class MeanGate:
        def score_batch(self, images, domain):
            return [GateScore(score=float(i.mean()), z=10.0) for i in images]  # every frame is flagged

    class NoDetections:
        def detect_batch(self, images, domain):
            return [[] for _ in images]

    policy = Policy.from_dict({"domains": {"severstal": {"tau": 1.0}}, "l2_bar": 0.85})
    server.script(answer("scratch"), refusal())
    oracle = openai_oracle(server, db, monkeypatch)
    frames = [Frame(f"r{i}", "severstal", noise_frame(120 + i), source=f"r{i}.png") for i in range(2)]
    d1, d2 = Router(policy, MeanGate(), NoDetections(), oracle).route(frames)
    assert (d1.label, d1.layer) == ("scratch", 3) and d1.trace[-1].cost_usd > 0
    assert (d2.label, d2.layer) == (None, "review") and "refusal" in d2.trace[-1].error
    assert [i.frame_id for i in ReviewQueue(db).list()] == ["r1"]


def test_bad_input_raises_before_any_call(server, db, monkeypatch):
    from cascade_defect.errors import DataError

    oracle = openai_oracle(server, db, monkeypatch)
    with pytest.raises(ConfigError, match="unknown domain 'mars'"):
        oracle.classify([req(130), req(131, domain="mars")])
    with pytest.raises(DataError, match="f132"):
        oracle.classify([req(130), OracleRequest("f132", "severstal", np.zeros((4, 4), np.float32))])
    with pytest.raises(DataError, match="hint box"):
        oracle.classify([req(133, hint=(500, 500, 600, 600))])
    assert server.requests == [] and OracleCallLog(db).recent() == []


# -- idempotency by frame (a resumed run asks nothing twice) -------------------------------
def test_a_frame_seen_again_reuses_its_recorded_answer_or_review_item(server, db, monkeypatch):
    server.script(answer("patch"), answer("scratch"))
    server.default = status(429, {"retry-after-ms": "5"})
    oracle = openai_oracle(server, db, monkeypatch, retry=RetryPolicy(max_attempts=2, base_delay_s=0.01))
    reqs = [req(s) for s in (140, 141, 142, 143)]
    first = oracle.classify(reqs)
    assert [a.outcome for a in first] == ["answer", "answer", "review", "review"]
    n_requests = len(server.requests)
    # killed before the decisions were logged: the resumed run routes the same frames again
    again = openai_oracle(server, db, monkeypatch).classify(reqs)
    assert len(server.requests) == n_requests  # nothing paid twice, nothing retried
    assert [(a.outcome, a.defect_class, a.call_id, a.review_id) for a in again] == \
        [(a.outcome, a.defect_class, a.call_id, a.review_id) for a in first]
    assert again[0].cost_usd == first[0].cost_usd > 0  # the frame's decision keeps what it cost, once
    assert all(a.reused for a in again) and not any(a.reused for a in first)
    assert [c.frame_id for c in OracleCallLog(db).history()] == ["f140", "f141", "f142", "f143"]
    assert [i.frame_id for i in ReviewQueue(db).list()] == ["f142", "f143"]
    assert LabelStore(db).count() == 2
    # changed content is a new question
    server.script(answer("inclusion"))
    [changed] = oracle.classify([req(140, image=noise_frame(999))])
    assert changed.outcome == "answer" and changed.defect_class == "inclusion"
    assert len(server.requests) == n_requests + 1


def test_review_backend_queues_a_frame_once(db):
    oracle = oracle_from_settings(db=db)
    first = oracle.classify([req(150), req(151)])
    again = oracle.classify([req(150), req(151)])
    assert [a.review_id for a in again] == [a.review_id for a in first]
    assert ReviewQueue(db).count() == 2 and len(OracleCallLog(db).history()) == 2


def test_a_key_echoed_by_the_server_is_redacted_everywhere(server, db, monkeypatch, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    hexkey = "0123456789abcdef0123456789abcdef"  # an Azure-style key: no recognisable shape, known by value
    echo = lambda key: json.dumps({"error": {"message": f"Incorrect API key provided: {key}. Headers: "
                                                        f"Authorization: Bearer {key}, api-key: {key}",
                                             "type": "invalid_request_error"}})
    server.script(status(401, body=echo(KEY)), status(500, body=echo(KEY)), status(500, body=echo(KEY)),
                  content(f"my key is {KEY}"))
    oracle = openai_oracle(server, db, monkeypatch, retry=RetryPolicy(max_attempts=2, base_delay_s=0.01))
    answers = oracle.classify([req(160), req(161), req(162)])
    assert [a.review_reason for a in answers] == ["oracle_error", "oracle_unavailable", "malformed"]
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", hexkey)
    az = Oracle(db, make_backend(BackendConfig(backend="azure", azure_endpoint=server.endpoint,
                                               deployment="gpt-4.1-mini"), api_key=hexkey), retry=FAST)
    server.script(status(401, body=echo(hexkey)))
    [a] = az.classify([req(163)])
    assert a.review_reason == "oracle_error" and "***" in a.error
    shown = json.dumps([x.to_json() for x in answers + [a]])
    calls, items = OracleCallLog(db).history(), ReviewQueue(db).list()
    assert "Incorrect API key provided" in calls[0].raw_text  # the message is kept, the key is not
    db.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("store.db*"))
    for secret in (KEY, hexkey, "7f3a9c2e1d"):
        assert secret not in shown and secret not in caplog.text and secret.encode() not in stored
        for c in calls:
            assert secret not in (c.error or "") + (c.raw_text or "")
        assert all(secret not in (i.detail or "") for i in items)


def test_redact_masks_known_keys_bearer_tokens_and_api_key_headers(monkeypatch):
    from cascade_defect.redact import redact

    monkeypatch.setenv("OPENAI_API_KEY", "plainsecretvalue42")
    text = ('key plainsecretvalue42; Authorization: Bearer eyJhbGciOi.J9xyz-abc; "api-key": "f00dfeed1234"; '
            "api_key=zzzzzzzz99 sk-proj-AbCdEf123456 and task-force stays")
    out = redact(text)
    for secret in ("plainsecretvalue42", "eyJhbGciOi", "f00dfeed1234", "zzzzzzzz99", "AbCdEf123456"):
        assert secret not in out
    assert "task-force stays" in out and "Bearer ***" in out and redact(None) is None
    assert redact("the bearer of bad news, a risk-free sk-") == "the bearer of bad news, a risk-free sk-"


def test_a_hanging_server_cannot_stall_a_frame_past_its_deadline(server, db, monkeypatch):
    import time as _time

    server.default = slow(20.0)  # hangs far longer than the deadline
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("CASCADE_ORACLE_DEADLINE_S", "1.0")
    cfg = backend_config(backend="openai", base_url=server.url, model="gpt-4.1-mini", timeout_s=60.0)
    assert cfg.deadline_s == 1.0
    oracle = Oracle(db, make_backend(cfg, api_key=KEY), hash_region="whole", retry=RetryPolicy(max_attempts=4, base_delay_s=0.01))
    t0 = _time.monotonic()
    [a] = oracle.classify([req(170)])
    elapsed = _time.monotonic() - t0
    assert elapsed < 8.0, f"took {elapsed:.1f} s"  # was 4 attempts x 60 s; 1 s + start-up on a loaded CPU
    assert a.to_review and a.review_reason == "oracle_unavailable" and "deadline" in a.error
    assert len(server.requests) == 1
    monkeypatch.setenv("CASCADE_ORACLE_DEADLINE_S", "soon")
    with pytest.raises(ConfigError, match="CASCADE_ORACLE_DEADLINE_S"):
        backend_config()
    assert BackendConfig().deadline_s == 30.0
