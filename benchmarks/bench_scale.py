"""Scale-out throughput: frames/s with 1 and 2 queue workers, Ray Data actors and Ray Serve replicas, and the
per-replica throughput of each layer.

Usage (needs CASCADE_DATA_ROOT with ksdd1/, redis-server on PATH and the scale extra):
    python benchmarks/bench_scale.py [--frames 64] [--batch 16] [--skip queue,ray-data,ray-serve]
        [--out benchmarks/results/scale.json]

Builds the test suite's small bundle (seeded random PatchCore-lite backbone, the synthetic-steel YOLOv8n, review
oracle: no LLM is called) with τ at the median z of the frames and a Layer-2 bar of 0.3, so about half the frames
reach Layer 2 — the escalation rate is printed with the results. Frames are real KolektorSDD images (500 x ~1250
px), repeated under distinct frame ids to reach --frames. Every engine runs on this one machine, so "2 workers"
shows how the engine uses the cores it has, not cluster scaling. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("YOLO_OFFLINE", "1")


def layer_throughput(bundle, frames, batch):
    """Frames/s of one in-process replica of each layer, batches of `batch`."""
    from cascade_defect.distributed.assemble import load_router
    from cascade_defect.imaging import load_image
    from cascade_defect.store.db import Database
    from services_helpers import DOMAIN

    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_router(bundle, Database(Path(tmp) / "x.db"))
        images = [load_image(p) for p in frames]
        out = {}
        for name, fn in (("gate", lambda b: loaded.router.gate.score_batch(b, DOMAIN)),
                         ("specialist", lambda b: loaded.router.specialist.detect_batch(b))):
            fn(images[:batch])  # warm-up
            t0 = time.perf_counter()
            for i in range(0, len(images), batch):
                fn(images[i:i + batch])
            out[name] = len(images) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for p in frames:
            load_image(p)
        out["decode"] = len(frames) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        decisions = [d for i in range(0, len(images), batch) for d in loaded.router.route(
            [__import__("cascade_defect.records", fromlist=["Frame"]).Frame(f"f{j}", DOMAIN, im)
             for j, im in enumerate(images[i:i + batch], start=i)])]
        out["router_in_process"] = len(images) / (time.perf_counter() - t0)
        esc = sum(1 for d in decisions if any(r.layer == "specialist" for r in d.trace)) / len(decisions)
        to3 = sum(1 for d in decisions if d.layer in (3, "review")) / len(decisions)
        return out, {"gate_to_specialist": esc, "to_oracle_or_review": to3}


def bench_queue(bundle, frames, n_workers, batch, tmp):
    from distributed_helpers import RedisServer

    from cascade_defect.distributed.messages import FrameMessage
    from cascade_defect.distributed.queue import Producer, connect
    from services_helpers import DOMAIN

    server = RedisServer()
    try:
        client = connect(server.url)
        producer = Producer(client, "bench", max_backlog=100_000)
        db = Path(tmp) / f"queue{n_workers}.db"
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1",
               "CASCADE_QUEUE_SOURCES": ",".join(sorted({str(Path(f).resolve().parent) for f in frames}))}
        procs = [subprocess.Popen([sys.executable, "-m", "cascade_defect", "worker", "--bundle", str(bundle),
                                   "--queue", server.url, "--stream", "bench", "--db", str(db), "--consumer",
                                   f"w{i}", "--batch-size", str(batch)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for i in range(n_workers)]
        for p in procs:  # each prints "worker NAME: ..." once its bundle is loaded
            seen = []
            while not (seen and seen[-1].startswith("worker ")):
                line = p.stderr.readline()
                if not line:
                    raise RuntimeError("worker did not start: " + "".join(seen)[-2000:])
                seen.append(line)
        t0 = time.perf_counter()
        for i, p in enumerate(frames):
            producer.send(FrameMessage(f"{i}:{p}", DOMAIN, uri=str(p)))
        while client.xlen("bench") > 0 or client.xpending("bench", "cascade")["pending"] > 0:
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        for p in procs:
            p.terminate()  # SIGTERM: the worker finishes its batch and exits
            p.wait(60)
        return len(frames) / elapsed
    finally:
        server.stop()


def bench_ray_data(bundle, frames, actors, batch, tmp):
    from cascade_defect.distributed.ray_data import RayBatchConfig, run_batch
    from services_helpers import DOMAIN

    cpus = 1.8 / (2 * actors)
    cfg = RayBatchConfig(batch_size=batch, gate_actors=actors, specialist_actors=actors, gate_cpus=cpus,
                         specialist_cpus=cpus, oracle_cpus=0.1, read_cpus=0.05, oracle_max_calls_per_s=None)
    links = Path(tmp) / f"frames{actors}"
    links.mkdir()
    for i, p in enumerate(frames):  # distinct inputs (the batch engine keys frames by content + path)
        (links / f"{i:05d}.jpg").symlink_to(p)
    t0 = time.perf_counter()
    summary = run_batch([str(links)], str(bundle), DOMAIN, Path(tmp) / f"ray{actors}", cfg)
    assert summary["new"] == len(frames)
    return len(frames) / (time.perf_counter() - t0)


SERVE_PORT = None  # Ray Serve's HTTP proxy starts once, on one port, for every application


def bench_ray_serve(bundle, frames, replicas, batch, tmp):
    import httpx

    from cascade_defect.distributed.ray_serve import ServeConfig, start
    from services_helpers import API_KEY, DOMAIN, free_port
    from ray import serve

    small = {"ray_actor_options": {"num_cpus": 0.2}}
    layer = {"num_replicas": replicas, "ray_actor_options": {"num_cpus": 0.2}}
    port = SERVE_PORT
    start(ServeConfig.from_dict({"bundle": str(bundle), "db": str(Path(tmp) / f"serve{replicas}.db"),
                                 "http": {"port": port}, "router": {**small, "num_replicas": replicas},
                                 "gate": layer, "specialist": layer, "oracle": small}), app_name=f"bench{replicas}")
    os.environ.setdefault("CASCADE_MAX_CONCURRENCY", "4")
    chunks = [list(range(i, min(i + batch, len(frames)))) for i in range(0, len(frames), batch)]
    errors = []

    def client_thread(my_chunks):
        try:
            post_all(my_chunks)
        except Exception as exc:  # noqa: BLE001 - reported below, never a silently short run
            errors.append(repr(exc))

    def post_all(my_chunks):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300,
                          headers={"Authorization": f"Bearer {API_KEY}"}) as c:
            for ch in my_chunks:
                files = [("files", (f"{i}.jpg", frames[i].read_bytes(), "image/jpeg")) for i in ch]
                r = c.post("/v1/frames/batch", params={"domain": DOMAIN}, files=files,
                           data={"frame_id": [f"r{replicas}-{i}" for i in ch]})
                if r.status_code != 200:
                    errors.append(r.text)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client_thread, args=(chunks[k::2],)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    serve.delete(f"bench{replicas}")
    if errors:
        raise RuntimeError(errors[0])
    return len(frames) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--skip", default="", help="comma-separated: queue, ray-data, ray-serve")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale.json"))
    args = ap.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    from distributed_helpers import calibrated_bundle, real_frames
    from services_helpers import API_KEY, build_bundle

    data = Path(os.environ.get("CASCADE_DATA_ROOT", ROOT.parent / "shared" / "data"))
    base = real_frames(data)
    frames = [base[i % len(base)] for i in range(args.frames)]
    rows: list[tuple[str, str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        services = build_bundle(Path(tmp) / "b")
        bundle = calibrated_bundle(services, base, Path(tmp))
        print(f"bundle built in {time.time() - t0:.0f} s", file=sys.stderr)
        per_layer, escalation = layer_throughput(bundle, frames, args.batch)
        for k, v in per_layer.items():
            rows.append(("one replica, in-process", k, v))
        if "queue" not in skip:
            for n in (1, 2):
                rows.append(("redis queue", f"{n} worker(s)", bench_queue(bundle, frames, n, args.batch, tmp)))
        if not {"ray-data", "ray-serve"} <= skip:
            import ray

            os.environ["CASCADE_API_KEYS"] = API_KEY
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            try:
                if "ray-data" not in skip:
                    for n in (1, 2):
                        rows.append(("ray data", f"{n} actor(s) per layer",
                                     bench_ray_data(bundle, frames, n, args.batch, tmp)))
                if "ray-serve" not in skip:
                    global SERVE_PORT
                    from services_helpers import free_port

                    SERVE_PORT = free_port()
                    for n in (1, 2):
                        rows.append(("ray serve", f"{n} replica(s) per layer",
                                     bench_ray_serve(bundle, frames, n, args.batch, tmp)))
            finally:
                from ray import serve

                serve.shutdown()
                ray.shutdown()
    engines = {"queue": "redis queue", "ray-data": "ray data", "ray-serve": "ray serve"}
    if skip and Path(args.out).is_file():  # keep the skipped engines' rows of the previous run
        prev = json.loads(Path(args.out).read_text())
        kept = [(r["engine"], r["setting"] + f" (run of {prev['date']})", r["frames_per_s"]) for r in prev["rows"]
                if r["engine"] in {engines[k] for k in skip if k in engines}]
        rows = rows[:len(per_layer)] + kept + rows[len(per_layer):]
    load = os.getloadavg()
    print(f"\n{'engine':<26} {'setting':<26} {'frames/s':>9}")
    for engine, setting, v in rows:
        print(f"{engine:<26} {setting:<26} {v:>9.2f}")
    print(f"\nescalation: gate->specialist {escalation['gate_to_specialist']:.0%}, "
          f"->oracle/review {escalation['to_oracle_or_review']:.0%}; {args.frames} frames, batch {args.batch}; "
          f"load average {load[0]:.1f}")
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_end": load},
              "frames": args.frames, "batch": args.batch, "escalation": escalation,
              "rows": [{"engine": e, "setting": s, "frames_per_s": round(v, 3)} for e, s, v in rows],
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
