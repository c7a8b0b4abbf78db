"""The cascade over HTTP: what the transport costs, and how the services hold up under load and faults.

Usage:
    python benchmarks/bench_services.py [--frames 48] [--sustain-s 60] [--overload-s 20] [--fault-s 30]
        [--oracle-down-s 60] [--quick] [--out benchmarks/results/services.json]

Builds one bundle with two domains: SYNTHETIC 256x256 steel (PatchCore-lite with a seeded random
backbone, the project's synthetic-steel YOLOv8n) and, when `CASCADE_DATA_ROOT` holds `ksdd1/`,
real KolektorSDD frames (about 500x1250; gate only, no detector fits them). τ = 0, so about half
the frames escalate past the gate; the oracle is the review queue (no LLM) except in the
oracle-fault scenario, where it is a real OpenAI-compatible server on loopback.

Part 1, transport cost (per domain): the same frames (PNG/JPEG bytes) decided
* in-process: decode + `Router.route([frame])` + decision-log write, one frame at a time (what a
  `serve all` request does, without HTTP), alternating frame by frame with
* `serve all` (one process, layers in-process): `POST /v1/frames`, one client, sequential — the
  HTTP overhead is the median of the paired differences, robust to drift on a shared machine;
* `serve all` with 2 concurrent clients (throughput);
* the router with all three layers remote (four processes), sequential;
plus batches of 16 (in-process `route(16 frames)` vs `POST /v1/frames/batch` with 16 files), and the
transport alone: the same frames sent again with their frame ids, answered from the decision log
(upload, multipart parsing, hashing, lookup, JSON; no layer work).

Part 2, load and faults on `serve all` / the four-process stack:
* sustained load at a fixed rate (about 70% of the measured capacity) for `--sustain-s`;
* 10x that rate for `--overload-s`: only 429/503 refusals, memory (RSS) before/after, recovery;
* kill -9 of the specialist and then of the gate service mid-load, restart: frames sent =
  decisions + retryable refusals, nothing lost or doubled, degraded frames escalated;
* the oracle model answering 429/500 for `--oracle-down-s`: breaker opens, frames go to review,
  cost 0, retries answered from the log.

The benchmark client runs on the same machine as the servers (it takes CPU from them).
Prints a table per part and writes JSON.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the loopback chat server and the service launcher of the tests

from oracle_chat_server import ChatServer, answer, status  # noqa: E402
from services_helpers import Service, auth  # noqa: E402

STEEL, KSDD = "steel", "ksdd1"


def pct(values, q):
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None


def lat_summary(ms: list[float]) -> dict:
    return {"n": len(ms), "p50": pct(ms, 50), "p95": pct(ms, 95), "p99": pct(ms, 99)}


# -- setup ---------------------------------------------------------------------------------------
def png(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def build(work: Path, n_frames: int) -> tuple[Path, dict[str, list[tuple[str, bytes]]], dict]:
    from cascade_defect.cascade.assemble import write_calibration
    from cascade_defect.bundles.bundle import Bundle
    from cascade_defect.demo import SYNTH_DETECTOR
    from cascade_defect.settings import data_root
    from cascade_defect.data.synthetic import SyntheticGenerator
    from cascade_defect.gate import PatchCoreGate, save_gate
    from cascade_defect.specialist.yolo import Specialist

    from cascade_defect.data.folder import read_folder
    from cascade_defect.data.synthetic import write_synthetic
    from cascade_defect.oracle.prompt import build_exemplar_set, save_exemplars

    bundle = Bundle.create(work / "bundle")
    write_synthetic(work / "fit", 60, generator=SyntheticGenerator(style="steel", seed=11, contrast=5.0))
    samples = read_folder(work / "fit", domain=STEEL).samples
    gate = PatchCoreGate(backbone="random", seed=0, threads=2)
    gate.fit([s.image_path for s in samples if s.defective is False], domain=STEEL)
    save_gate(bundle, STEEL, gate)
    write_calibration(bundle, STEEL, 0.0, {"mode": "benchmark"})
    Specialist.load(SYNTH_DETECTOR, device="cpu").to_bundle(bundle)
    save_exemplars(bundle, build_exemplar_set(samples, STEEL, include_commutator=False))
    stream = SyntheticGenerator(style="steel", seed=12, contrast=5.0).generate(n_frames)
    frames = {STEEL: [(f"steel-{i:04d}.png", png(f.image)) for i, f in enumerate(stream)]}
    notes = {"steel": "SYNTHETIC 256x256 steel; PatchCore-lite RANDOM backbone; synthetic-steel YOLOv8n"}
    root = data_root()
    if root is not None and (root / "ksdd1").is_dir():
        from cascade_defect.data.ksdd1 import read_ksdd1

        samples = read_ksdd1(root / "ksdd1", domain=KSDD, skip_invalid=True).samples
        normals = [s for s in samples if s.defective is False]
        kgate = PatchCoreGate(backbone="random", seed=0, threads=2)
        kgate.fit([s.image_path for s in normals[:24]], domain=KSDD)
        save_gate(bundle, KSDD, kgate)
        write_calibration(bundle, KSDD, 0.0, {"mode": "benchmark"})
        picked = samples[24:24 + n_frames]
        frames[KSDD] = [(p.image_path.name, p.image_path.read_bytes()) for p in picked]
        from PIL import Image

        w, h = Image.open(picked[0].image_path).size
        notes["ksdd1"] = f"real KolektorSDD frames ({w}x{h} JPEG); PatchCore-lite RANDOM backbone; no detector"
    else:
        notes["ksdd1"] = "skipped: CASCADE_DATA_ROOT has no ksdd1/"
    return work / "bundle", frames, notes


# -- part 1: transport cost ----------------------------------------------------------------------
class InProcess:
    """Decode + route + log, like a request without HTTP (layers and log in this process)."""

    def __init__(self, bundle: Path, db: Path):
        import hashlib

        from cascade_defect.services.engine import build_engine
        from cascade_defect.services.frames import FrameStore
        from cascade_defect.services.library import Database, Frame, load_image
        from cascade_defect.services.settings import ServiceSettings

        self._sha, self._frame, self._load = hashlib.sha256, Frame, load_image
        self.db = Database(db)
        self.engine = build_engine("all", str(bundle), ServiceSettings.from_env({"CASCADE_API_KEYS": "x"}), self.db)
        self.store = FrameStore(self.db)
        self.run_id = self.store.run_id(self.engine.version, {"bench": True})
        self.n = 0

    def decide(self, chunk, domain: str) -> float:
        """Milliseconds per frame for this chunk."""
        t0 = time.perf_counter()
        self.n += 1
        fs = [self._frame(f"f{self.n}-{i}", domain, self._load(data, name=name), source=name)
              for i, (name, data) in enumerate(chunk)]
        ds = self.engine.router.route(fs)
        self.store.record(self.run_id, [(self._sha(d).hexdigest(), x) for (_, d), x in zip(chunk, ds)])
        return (time.perf_counter() - t0) * 1000 / len(chunk)


def paired(inproc: "InProcess", url: str, frames, domain: str, batch: int = 1) -> dict:
    """The same chunks alternately in-process and over HTTP (`serve all`, one client): drift on a
    shared machine hits both alike; the overhead is the median of the per-chunk differences."""
    chunks = [frames[i:i + batch] for i in range(0, len(frames), batch)]
    send = http_sender(url, domain, batch, ids=f"paired{batch}-{domain}" if batch == 1 else None)
    inproc.decide(chunks[0], domain)
    http_sender(url, domain, batch)(chunks[0])
    a, b, wa, wb = [], [], 0.0, 0.0
    for ch in chunks:
        t = time.perf_counter()
        a.append(inproc.decide(ch, domain))
        wa += time.perf_counter() - t
        t = time.perf_counter()
        b.append(send(ch))
        wb += time.perf_counter() - t
    return {"in_process": {"frames_per_s": len(frames) / wa, "latency_ms": lat_summary(a)},
            "http": {"frames_per_s": len(frames) / wb, "latency_ms": lat_summary(b)},
            "overhead_ms_per_frame_p50_of_differences": pct([y - x for x, y in zip(a, b)], 50),
            "throughput_ratio": (len(frames) / wb) / (len(frames) / wa)}


class Client:
    """Thread-local keep-alive HTTP clients."""

    def __init__(self):
        import httpx

        self._httpx = httpx
        self._local = threading.local()

    def get(self):
        c = getattr(self._local, "c", None)
        if c is None:
            c = self._local.c = self._httpx.Client(headers=auth(), timeout=120)
        return c


def http_sender(url: str, domain: str, batch: int = 1, ids: str | None = None):
    """POST chunks; with `ids`, chunk k's frames get ids `{ids}-{k}.{j}` (a second send is a replay)."""
    cl = Client()
    count = itertools.count()

    def send(chunk, k: int | None = None) -> float:
        c = cl.get()
        k = next(count) if k is None else k
        form = {"frame_id": [f"{ids}-{k}.{j}" for j in range(len(chunk))]} if ids else None
        t0 = time.perf_counter()
        if batch == 1:
            (name, data), = chunk
            r = c.post(f"{url}/v1/frames", params={"domain": domain}, files={"file": (name, data)}, data=form)
        else:
            r = c.post(f"{url}/v1/frames/batch", params={"domain": domain},
                       files=[("files", (n, d)) for n, d in chunk], data=form)
        assert r.status_code == 200, r.text
        return (time.perf_counter() - t0) * 1000 / len(chunk)

    return send


def transport_only(url: str, frames, domain: str, ids: str) -> dict:
    """Replays of frames `paired` decided (same ids): upload, multipart parse, SHA-256, log lookup and
    the JSON answer — everything HTTP adds, with no layer work. An upper bound of the transport cost."""
    send = http_sender(url, domain, ids=ids)
    ms = [send([f], k) for k, f in enumerate(frames)]
    return {"latency_ms": lat_summary(ms)}


def http_sequential(url: str, frames, domain: str, clients: int = 1) -> dict:
    send = http_sender(url, domain)
    send(frames[:1])
    chunks = [frames[i:i + 1] for i in range(len(frames))]
    t = time.perf_counter()
    if clients == 1:
        ms = [send(ch) for ch in chunks]
    else:
        with ThreadPoolExecutor(clients) as pool:
            ms = list(pool.map(send, chunks))
    wall = time.perf_counter() - t
    return {"frames_per_s": len(frames) / wall, "latency_ms": lat_summary(ms)}


# -- part 2: load ----------------------------------------------------------------------------------
def fixed_rate(url: str, frames, domain: str, rate: float, seconds: float, prefix: str,
               on_tick=None, workers: int = 64) -> dict:
    """Open-loop load: one request every 1/rate s for `seconds`; statuses and latencies of each."""
    cl = Client()
    results: list[tuple[str, int | None, float, dict | None, str | None]] = []
    lock = threading.Lock()

    def send(i: int):
        name, data = frames[i % len(frames)]
        fid = f"{prefix}-{i}"
        t0 = time.perf_counter()
        try:
            r = cl.get().post(f"{url}/v1/frames", params={"domain": domain}, files={"file": (name, data)},
                              data={"frame_id": fid})
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else None
            row = (fid, r.status_code, (time.perf_counter() - t0) * 1000, body, r.headers.get("retry-after"))
        except Exception as exc:  # noqa: BLE001 - counted as lost
            row = (fid, None, (time.perf_counter() - t0) * 1000, {"transport": repr(exc)}, None)
        with lock:
            results.append(row)

    n = int(rate * seconds)
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for i in range(n):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if on_tick:
                on_tick(time.perf_counter() - start)
            pool.submit(send, i)
    codes: dict[str, int] = {}
    for _, code, _, _, _ in results:
        codes[str(code)] = codes.get(str(code), 0) + 1
    ok = [r for r in results if r[1] == 200]
    return {"sent": n, "answered": len(results), "status_counts": codes, "rate_per_s": rate, "seconds": seconds,
            "wall_s": time.perf_counter() - start, "latency_ms_200": lat_summary([r[2] for r in ok]),
            "results": results}


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return int(next(x for x in fh if x.startswith("VmRSS")).split()[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--sustain-s", type=float, default=60)
    ap.add_argument("--overload-s", type=float, default=20)
    ap.add_argument("--fault-s", type=float, default=30)
    ap.add_argument("--oracle-down-s", type=float, default=60)
    ap.add_argument("--quick", action="store_true", help="short load phases (a smoke run)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/services.json"))
    args = ap.parse_args()
    if args.quick:
        args.frames, args.sustain_s, args.overload_s, args.fault_s, args.oracle_down_s = 16, 8, 5, 10, 8
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import torch

    torch.set_num_threads(2)  # the in-process baseline gets the same 2 threads as a server
    work = Path(tempfile.mkdtemp(prefix="bench-services-"))
    services: list[Service] = []
    chat = ChatServer().start()
    result: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                                "python": platform.python_version(),
                                "note": "benchmark client and servers share the same cores; other jobs on the "
                                        "machine show in the load averages at start and end"},
                    "load_average_start": os.getloadavg(), "command": " ".join(sys.argv)}
    try:
        t0 = time.perf_counter()
        bundle, frames, notes = build(work, args.frames)
        result["setup"] = {"bundle_build_s": round(time.perf_counter() - t0, 1), "frames": notes,
                           "tau": 0.0, "oracle": "review queue (no LLM) unless stated"}

        def start(role, db=None, **env):
            env.setdefault("OMP_NUM_THREADS", "2")
            s = Service(role, bundle, work, db=db or work / f"{role}-{len(services)}.db", **env)
            services.append(s)
            return s.launch()

        # -- part 1 -------------------------------------------------------------------------
        part1: dict = {}
        solo = start("all", CASCADE_MAX_CONCURRENCY="2", CASCADE_MAX_QUEUE="64").wait()
        layer_svcs = {r: start(r) for r in ("gate", "specialist", "oracle")}
        for s in layer_svcs.values():
            s.wait()
        remote = start("router", CASCADE_GATE_URL=layer_svcs["gate"].url,
                       CASCADE_SPECIALIST_URL=layer_svcs["specialist"].url,
                       CASCADE_ORACLE_URL=layer_svcs["oracle"].url, CASCADE_MAX_QUEUE="64").wait()
        for domain, fr in frames.items():
            inproc = InProcess(bundle, work / f"inproc-{domain}.db")
            one = paired(inproc, solo.url, fr, domain)
            b16 = paired(inproc, solo.url, fr, domain, batch=16)
            row = {"in_process": one["in_process"], "http_all_1_client": one["http"],
                   "http_all_2_clients": http_sequential(solo.url, fr, domain, clients=2),
                   "http_remote_layers_1_client": http_sequential(remote.url, fr, domain),
                   "in_process_batch16": b16["in_process"], "http_all_batch16": b16["http"],
                   "http_transport_only_replays": transport_only(solo.url, fr, domain, f"paired1-{domain}"),
                   "http_overhead_p50_ms": one["overhead_ms_per_frame_p50_of_differences"],
                   "http_overhead_batch16_p50_ms": b16["overhead_ms_per_frame_p50_of_differences"],
                   "throughput_ratio_http_1_client": one["throughput_ratio"],
                   "throughput_ratio_batch16": b16["throughput_ratio"]}
            row["throughput_ratio_http_2_clients"] = (row["http_all_2_clients"]["frames_per_s"]
                                                      / one["in_process"]["frames_per_s"])
            inproc.db.close()
            part1[domain] = row
        result["transport"] = part1
        print(f"\n== transport cost ({args.frames} frames per domain, τ = 0) ==")
        print(f"{'domain':<8}{'mode':<30}{'frames/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
        for domain, row in part1.items():
            for mode, m in row.items():
                if isinstance(m, dict):
                    lm = m["latency_ms"]
                    fps = f"{m['frames_per_s']:>10.1f}" if "frames_per_s" in m else f"{'-':>10}"
                    print(f"{domain:<8}{mode:<30}{fps}{lm['p50']:>9.1f}{lm['p95']:>9.1f}{lm['p99']:>9.1f}")
            print(f"{domain:<8}HTTP overhead per frame (median of paired differences): single "
                  f"{row['http_overhead_p50_ms']:+.1f} ms, batch16 {row['http_overhead_batch16_p50_ms']:+.1f} ms "
                  f"(target ≤ 5)")
            print(f"{domain:<8}throughput HTTP / in-process: 1 client {row['throughput_ratio_http_1_client']:.2f}, "
                  f"2 clients {row['throughput_ratio_http_2_clients']:.2f}, batch16 "
                  f"{row['throughput_ratio_batch16']:.2f} (target ≥ 0.90)")

        # -- part 2 -------------------------------------------------------------------------
        steel = frames[STEEL]
        capacity = part1[STEEL]["http_all_2_clients"]["frames_per_s"]
        rate = max(1.0, round(0.7 * capacity, 1))
        part2: dict = {}
        sustained = fixed_rate(solo.url, steel, STEEL, rate, args.sustain_s, "sustain")
        part2["sustained"] = {k: v for k, v in sustained.items() if k != "results"}
        rss0 = rss_kb(solo.proc.pid)
        over = fixed_rate(solo.url, steel, STEEL, rate * 10, args.overload_s, "over", workers=256)
        rss1 = rss_kb(solo.proc.pid)
        time.sleep(2)
        recovery = http_sequential(solo.url, steel[:8], STEEL)
        bad = {k: v for k, v in over["status_counts"].items() if k not in ("200", "429", "503")}
        no_retry_after = sum(1 for r in over["results"] if r[1] in (429, 503) and not r[4])
        part2["overload_10x"] = {**{k: v for k, v in over.items() if k != "results"},
                                 "other_statuses": bad, "refusals_without_retry_after": no_retry_after,
                                 "rss_kb_before": rss0, "rss_kb_after": rss1,
                                 "recovery_frames_per_s": recovery["frames_per_s"]}

        for victim in ("specialist", "gate"):
            svc = layer_svcs[victim]
            fault = {"killed_at_s": None, "restarted_at_s": None}

            def tick(t, svc=svc, fault=fault):
                if fault["killed_at_s"] is None and t >= args.fault_s / 3:
                    svc.kill9()
                    fault["killed_at_s"] = round(t, 1)
                elif fault["killed_at_s"] is not None and fault["restarted_at_s"] is None and t >= args.fault_s / 2:
                    svc.launch()  # restart on the same port, in the background
                    fault["restarted_at_s"] = round(t, 1)

            run = fixed_rate(remote.url, steel, STEEL, max(1.0, rate / 2), args.fault_s, f"kill-{victim}",
                             on_tick=tick)
            svc.wait()
            ok = [r for r in run["results"] if r[1] == 200]
            refused = [r for r in run["results"] if r[1] in (429, 503) and r[4]]
            degraded = [r for r in ok if any(victim in (t.get("error") or "") for t in r[3]["trace"])]
            silent = [r for r in degraded if str(r[3].get("layer")) == "1" or r[3].get("label") == "no_defect"]
            part2[f"kill9_{victim}"] = {
                **{k: v for k, v in run.items() if k != "results"}, **fault,
                "decisions": len(ok), "retryable_refusals": len(refused),
                "lost": run["sent"] - len(ok) - len(refused),
                "doubled": len(ok) - len({r[0] for r in ok}),
                "degraded_with_reason": len(degraded), "silent_no_defect": len(silent)}

        # oracle down: a router (layers in-process) whose oracle is the loopback model answering 429/500
        errors = itertools.cycle([status(429, {"Retry-After": "0"}), status(500)])
        chat.default = lambda body: next(errors)
        down = start("all", db=work / "oracle-down.db", CASCADE_ORACLE_BACKEND="openai",
                     OPENAI_API_KEY="sk-bench-not-a-secret", CASCADE_ORACLE_BASE_URL=chat.url,
                     CASCADE_ORACLE_MAX_ATTEMPTS="2", CASCADE_ORACLE_BREAKER_FAILURES="5",
                     CASCADE_ORACLE_BREAKER_RESET_S="20", CASCADE_MAX_QUEUE="64").wait()
        calls0 = len(chat.requests)
        run = fixed_rate(down.url, steel, STEEL, max(1.0, rate / 2), args.oracle_down_s, "odown")
        calls = len(chat.requests) - calls0
        ok = [r for r in run["results"] if r[1] == 200]
        review = [r for r in ok if r[3]["layer"] == "review"]
        reasons: dict[str, int] = {}
        for r in review:
            reason = (r[3]["trace"][-1].get("extra") or {}).get("review_reason")
            reasons[str(reason)] = reasons.get(str(reason), 0) + 1
        retry = fixed_rate(down.url, steel, STEEL, max(1.0, rate / 2), min(5.0, args.oracle_down_s), "odown")
        replayed_calls = len(chat.requests) - calls0 - calls
        chat.default = answer()
        part2["oracle_429_500"] = {
            **{k: v for k, v in run.items() if k != "results"}, "decisions": len(ok), "to_review": len(review),
            "review_reasons": reasons, "model_requests": calls,
            "cost_usd": sum(r[3]["cost_usd"] for r in ok),
            "retried_frames": retry["sent"], "model_requests_during_retries": replayed_calls}
        result["load_and_faults"] = part2

        print(f"\n== load and faults (steel 256x256; fixed rate {rate}/s ≈ 70% of the 2-client capacity) ==")
        s = part2["sustained"]
        print(f"sustained {s['seconds']:.0f} s at {s['rate_per_s']}/s: {s['status_counts']}, "
              f"p50/p95/p99 {s['latency_ms_200']['p50']:.0f}/{s['latency_ms_200']['p95']:.0f}/"
              f"{s['latency_ms_200']['p99']:.0f} ms")
        o = part2["overload_10x"]
        print(f"10x overload {o['seconds']:.0f} s at {o['rate_per_s']}/s: {o['status_counts']}; other statuses "
              f"{o['other_statuses'] or 'none'}; RSS {o['rss_kb_before'] // 1024} -> {o['rss_kb_after'] // 1024} MiB; "
              f"recovery {o['recovery_frames_per_s']:.1f} frames/s")
        for victim in ("specialist", "gate"):
            k = part2[f"kill9_{victim}"]
            print(f"kill -9 {victim} at {k['killed_at_s']} s, restart at {k['restarted_at_s']} s: sent {k['sent']} = "
                  f"{k['decisions']} decisions + {k['retryable_refusals']} retryable refusals; lost {k['lost']}, "
                  f"doubled {k['doubled']}; {k['degraded_with_reason']} escalated with the reason, "
                  f"{k['silent_no_defect']} silent no_defect")
        od = part2["oracle_429_500"]
        print(f"oracle 429/500 for {od['seconds']:.0f} s: {od['decisions']} decisions, {od['to_review']} to review "
              f"{od['review_reasons']}, {od['model_requests']} model requests, cost ${od['cost_usd']:.4f}; "
              f"{od['retried_frames']} retried frames -> {od['model_requests_during_retries']} model requests")
    finally:
        for s in services:
            s.stop()
        chat.stop()
        shutil.rmtree(work, ignore_errors=True)
    result["load_average_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
