"""dHash cache on real frames: hit rates (perturbed copies vs distinct frames, whole frame vs region)
and lookup time (multi-index hashing vs brute force at 10k / 100k hashes).

    CASCADE_DATA_ROOT=/work/shared/data .venv/bin/python benchmarks/bench_dhash_cache.py [--out FILE]

Perturbed copies: brightness +-3 %, JPEG quality 90 re-encode, 1-pixel horizontal shift (region:
the box moves with the content), and for regions a +-2 px jitter of every box edge (a detector's
box on the next frame). Distinct frames: every pair of different images (KolektorSDD's identical
items kos01/kos26 and kos27/kos34 count as the same image). A "false hit" is a distinct pair within
the radius; "frames with a false hit" is the share of frames that would find some other frame in a
cache holding all of them (leave-one-out), and "cross-class" counts only pairs whose image-level
classes differ (where a false hit would change the label). Regions are the ground-truth boxes (the
stand-in for what the detector points at), grown by 50 % per side and to at least 96 px.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cascade_defect.settings import data_root
from cascade_defect.data.registry import read_dataset
from cascade_defect.imaging import load_image
from cascade_defect.oracle.cache import MultiIndexHash, PerceptualCache
from cascade_defect.oracle.cache import DEFAULT_VERIFY_MAX
from cascade_defect.oracle.dhash import dhash, signature, thumb_distance
from cascade_defect.store.db import Database

RADIUS = 6
MARGIN, MIN_SIDE = 0.5, 96
VERIFY_MAX = DEFAULT_VERIFY_MAX
SAME_ITEM = {"kos26": "kos01", "kos34": "kos27"}


def perturb(img: np.ndarray, kind: str) -> np.ndarray:
    if kind == "bright+3%":
        return np.clip(img.astype(np.float32) * 1.03, 0, 255).round().astype(np.uint8)
    if kind == "bright-3%":
        return np.clip(img.astype(np.float32) * 0.97, 0, 255).round().astype(np.uint8)
    if kind == "jpeg90":
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=90)
        return np.asarray(Image.open(buf).convert("RGB"))
    if kind == "shift1px":
        out = np.roll(img, 1, axis=1)
        out[:, 0] = img[:, 0]
        return out
    raise ValueError(kind)


def distances(hashes: np.ndarray) -> np.ndarray:
    x = hashes[:, None] ^ hashes[None, :]
    return np.bitwise_count(x).astype(np.int16)


def false_hits(hashes: list[int], thumbs: list[bytes], ident: list[str], classes: list[tuple]) -> dict:
    """Distinct pairs within the radius, before and after thumbnail verification."""
    h = np.array(hashes, dtype=np.uint64)
    d = distances(h)
    ident_a = np.array(ident)
    same = ident_a[:, None] == ident_a[None, :]
    cls = np.array([",".join(sorted(c)) for c in classes])
    cross = cls[:, None] != cls[None, :]
    n = len(h)
    close = (d <= RADIUS) & ~same
    np.fill_diagonal(close, False)
    ii, jj = np.nonzero(np.triu(close, 1))
    td = np.array([thumb_distance(thumbs[i], thumbs[j]) for i, j in zip(ii, jj)])
    verified = np.zeros_like(close)
    keep = td <= VERIFY_MAX if len(td) else np.array([], bool)
    verified[ii[keep], jj[keep]] = True
    verified |= verified.T
    distinct_pairs = int((~same)[np.triu_indices(n, 1)].sum())
    out = {"items": n, "distinct_pairs": distinct_pairs,
           "min_distinct_distance": int(np.where(same, 64, d).min()) if n > 1 else None,
           "min_thumb_distance_of_close_distinct": float(td.min()) if len(td) else None}
    for tag, mask in (("hash", close), ("verified", verified)):
        out[tag] = {
            "false_hit_pairs": int(np.triu(mask, 1).sum()),
            "false_hit_pair_rate": float(np.triu(mask, 1).sum() / max(distinct_pairs, 1)),
            "frames_with_false_hit": float(mask.any(1).mean()) if n > 1 else 0.0,
            "frames_with_cross_class_false_hit": float((mask & cross).any(1).mean()) if n > 1 else 0.0,
        }
    return out


def perturbed_hits(items: list, region: bool, rng: np.random.Generator) -> dict:
    """Share of perturbed copies within the radius (hash) and also verified (thumbnail)."""
    kinds = ["bright+3%", "bright-3%", "jpeg90", "shift1px"] + (["box-jitter2px"] if region else [])
    out, worst = {}, 0.0
    for kind in kinds:
        hit = ver = 0
        for _, img, box, h, t, _ in items:
            if kind == "box-jitter2px":
                h2, t2 = signature(img, [v + float(rng.integers(-2, 3)) for v in box], margin=MARGIN,
                                   min_side=MIN_SIDE)
            elif kind == "shift1px" and box is not None:  # the box moves with the content
                h2, t2 = signature(perturb(img, kind), [box[0] + 1, box[1], box[2] + 1, box[3]], margin=MARGIN,
                                   min_side=MIN_SIDE)
            else:
                h2, t2 = signature(perturb(img, kind), box, margin=MARGIN, min_side=MIN_SIDE)
            td = thumb_distance(t, t2)
            near = bin(h ^ h2).count("1") <= RADIUS
            hit += near
            ver += near and td <= VERIFY_MAX
            worst = max(worst, td)
        out[kind] = {"hash": hit / len(items), "verified": ver / len(items)}
    out["max_thumb_distance"] = worst
    return out


def quality(root: Path) -> dict:
    rng = np.random.default_rng(0)
    sources = {"severstal": ("severstal", root / "severstal"), "ksdd1": ("ksdd1", root / "ksdd1"),
               "neu": ("neu", root / "neu-det")}
    result = {}
    for name, (fmt, path) in sources.items():
        samples = read_dataset(fmt, path).samples
        frames, regions = [], []
        for s in samples:
            img = load_image(s.image_path)
            ident = s.id
            if s.group:
                ident = SAME_ITEM.get(s.group, s.group) + "/" + s.id.split("/")[-1]
            frames.append((ident, img, None, *signature(img), s.classes))
            for b in s.boxes:
                if b.area >= 64:
                    box = b.as_list()
                    regions.append((ident, img, box, *signature(img, box, margin=MARGIN, min_side=MIN_SIDE),
                                    s.classes))
        result[name] = {"frames": len(frames), "regions": len(regions)}
        for key, items in (("whole_frame", frames), ("region", regions)):
            sample = items if len(items) <= 600 else items[:: len(items) // 600]
            result[name][key] = {
                "perturbed_hit_rate": perturbed_hits(sample, key == "region", rng),
                "perturbed_sample": len(sample),
                "distinct": false_hits([r[3] for r in items], [r[4] for r in items], [r[0] for r in items],
                                       [r[5] for r in items])}
        print(f"  {name}: {len(frames)} frames, {len(regions)} regions", file=sys.stderr)
    return result


def timing(sizes=(10_000, 100_000), queries=300, real_pool: list[np.ndarray] | None = None) -> dict:
    rng = random.Random(0)
    out = {}
    for dist in ("uniform", "real-crops"):
        if dist == "real-crops" and not real_pool:
            continue
        for n in sizes:
            if dist == "uniform":
                hashes = [rng.getrandbits(64) for _ in range(n)]
            else:  # random crops of real frames: the clustered distribution a real cache sees
                hashes = []
                for _ in range(n):
                    img = real_pool[rng.randrange(len(real_pool))]
                    h, w = img.shape[:2]
                    cw, ch = rng.randint(min(w, 32), w), rng.randint(min(h, 32), h)
                    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
                    hashes.append(dhash(img[y:y + ch, x:x + cw]))
            qs = [hashes[rng.randrange(n)] ^ (1 << rng.randrange(64)) if i % 2 else rng.getrandbits(64)
                  for i in range(queries)]
            arr = np.array(hashes, dtype=np.uint64)
            row = {}
            t = time.perf_counter()
            for q in qs[:50]:
                [(k, v) for k, v in enumerate(hashes) if (v ^ q).bit_count() <= RADIUS]
            row["brute_python_ms"] = (time.perf_counter() - t) / 50 * 1000
            t = time.perf_counter()
            for q in qs:
                np.nonzero(np.bitwise_count(arr ^ np.uint64(q)) <= RADIUS)
            row["brute_numpy_ms"] = (time.perf_counter() - t) / len(qs) * 1000
            for m in (4, 7):
                index = MultiIndexHash(RADIUS, m)
                t = time.perf_counter()
                for k, h in enumerate(hashes):
                    index.add(k, h)
                row[f"mih{m}_build_s"] = time.perf_counter() - t
                t = time.perf_counter()
                cand = 0
                for q in qs:
                    cand += len(index.candidates(q))
                    index.query(q)
                row[f"mih{m}_ms"] = (time.perf_counter() - t) / len(qs) * 1000
                row[f"mih{m}_candidates"] = cand / len(qs)
                # exactness spot check against the numpy scan
                for q in qs[:20]:
                    want = sorted((int(np.bitwise_count(arr[i] ^ np.uint64(q))), int(i))
                                  for i in np.nonzero(np.bitwise_count(arr ^ np.uint64(q)) <= RADIUS)[0])
                    assert index.query(q) == want
            db = Database(":memory:")
            cache = PerceptualCache(db, RADIUS, 4)
            with db.transaction() as conn:
                conn.executemany("INSERT INTO oracle_cache (ts, domain, oracle_version, hash_region, dhash, "
                                 "defect_class, confidence, reasoning) VALUES (0, 'd', 'v', 'whole', ?, 'x', 1, '')",
                                 [(h - (1 << 64) if h >= 1 << 63 else h,) for h in hashes])
            t = time.perf_counter()
            cache.lookup("d", "v", "whole", qs[0])
            row["sqlite_cache_first_load_s"] = time.perf_counter() - t
            t = time.perf_counter()
            for q in qs:
                cache.lookup("d", "v", "whole", q)
            row["sqlite_cache_lookup_ms"] = (time.perf_counter() - t) / len(qs) * 1000
            out[f"{dist}/{n}"] = row
            print(f"  timing {dist} n={n} done", file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_dhash_cache.json"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    args = ap.parse_args()
    root = data_root()
    if root is None:
        sys.exit("set CASCADE_DATA_ROOT to the real datasets (e.g. /work/shared/data)")
    t0 = time.time()
    q = quality(root)
    pool = [load_image(p) for p in sorted((root / "neu-det" / "images").glob("*.jpg"))[::10]]
    pool += [load_image(p) for p in sorted((root / "severstal" / "train_images").glob("*.jpg"))]
    tm = timing(tuple(args.sizes), real_pool=pool)
    result = {"radius": RADIUS, "region_margin": MARGIN, "region_min_side": MIN_SIDE, "quality": q, "timing": tm,
              "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine(),
                          "numpy": np.__version__}, "seconds": round(time.time() - t0, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))

    print(f"\nHit rates at Hamming <= {RADIUS}; 'ver.' = also thumbnail distance <= {VERIFY_MAX} "
          "(perturbed copies should hit; distinct frames should not)")
    print(f"{'dataset':9} {'hashed':6} {'n':>5} {'bright+3%':>11} {'bright-3%':>11} {'jpeg90':>11} {'shift1px':>11} "
          f"{'jitter2px':>11} | {'false pairs':>15} {'frames w/ false':>15} {'cross-class':>13}")
    print(f"{'':9} {'':6} {'':>5} " + " ".join(f"{'hash ver.':>11}" for _ in range(5))
          + " | " + f"{'hash ver.':>15} {'hash ver.':>15} {'hash ver.':>13}")
    for name, r in q.items():
        for kind, key, n in (("whole", "whole_frame", r["frames"]), ("region", "region", r["regions"])):
            p, d = r[key]["perturbed_hit_rate"], r[key]["distinct"]
            cells = []
            for k in ("bright+3%", "bright-3%", "jpeg90", "shift1px", "box-jitter2px"):
                cells.append(f"{p[k]['hash']:5.3f} {p[k]['verified']:5.3f}" if k in p else f"{'-':>11}")
            h, v = d["hash"], d["verified"]
            print(f"{name:9} {kind:6} {n:5d} " + " ".join(cells) + " | "
                  f"{h['false_hit_pair_rate']:7.4f} {v['false_hit_pair_rate']:7.4f} "
                  f"{h['frames_with_false_hit']:7.3f} {v['frames_with_false_hit']:7.3f} "
                  f"{h['frames_with_cross_class_false_hit']:6.3f} {v['frames_with_cross_class_false_hit']:6.3f}")
    print("\nLookup time per query (radius 6), ms; MIH = multi-index hashing with m chunks")
    print(f"{'hashes':18} {'python scan':>11} {'numpy scan':>10} {'MIH m=4':>8} {'cand.':>7} {'MIH m=7':>8} "
          f"{'cand.':>7} {'SQLite cache':>12}")
    for key, r in tm.items():
        print(f"{key:18} {r['brute_python_ms']:11.3f} {r['brute_numpy_ms']:10.3f} {r['mih4_ms']:8.3f} "
              f"{r['mih4_candidates']:7.1f} {r['mih7_ms']:8.3f} {r['mih7_candidates']:7.1f} "
              f"{r['sqlite_cache_lookup_ms']:12.3f}")
    print(f"\nwritten {args.out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
