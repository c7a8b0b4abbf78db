"""Perceptual answer cache: a frame within Hamming distance `radius` of a cached one reuses its answer.

Lookups use multi-index hashing (Norouzi et al., 2012): the 64 bits are split into `m` chunks.
If two hashes differ in at most r bits, at least one chunk differs in at most floor(r / m) bits
(pigeonhole), so probing each chunk's table with every value within floor(r / m) of the query's
chunk finds every true neighbour; candidates are then verified exactly. With m = r + 1 every
neighbour shares one chunk exactly; with fewer, wider chunks each table is sparser and the
candidate list shorter. Either way the result equals a brute-force scan (property-tested).

`PerceptualCache` persists entries in the shared SQLite database, keyed by domain, oracle version
(model + prompt version) and hashed region, and keeps one in-memory index per key, brought up to
date from the table (by row id) before each lookup so entries written by other processes count.
A hash hit is then verified against the entry's 16x16 thumbnail (`thumb_distance` at most
`verify_max`, when both sides have one): the nearest verified entry is the answer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from itertools import combinations
from math import comb
from typing import Iterable

import numpy as np

from ..store.db import Database, insert
from .dhash import HASH_BITS, thumb_distance, to_signed, to_unsigned

DEFAULT_RADIUS = 6
DEFAULT_CHUNKS = 4
DEFAULT_VERIFY_MAX = 4.0
MAX_PROBES = 100_000


def chunk_layout(n_chunks: int, bits: int = HASH_BITS) -> list[tuple[int, int]]:
    """(shift, width) of each chunk, widths differing by at most one bit."""
    if not 1 <= n_chunks <= bits:
        raise ValueError(f"n_chunks must be in 1..{bits}, got {n_chunks}")
    base, extra = divmod(bits, n_chunks)
    out, shift = [], 0
    for i in range(n_chunks):
        width = base + (1 if i < extra else 0)
        out.append((shift, width))
        shift += width
    return out


def probe_count(radius: int, n_chunks: int) -> int:
    """Table probes per lookup: for each chunk, every value within floor(radius / n_chunks) bits."""
    r = radius // n_chunks
    return sum(sum(comb(w, k) for k in range(min(r, w) + 1)) for _, w in chunk_layout(n_chunks))


def _flip_masks(width: int, radius: int) -> list[int]:
    """Every `width`-bit mask with at most `radius` bits set (0 first)."""
    masks = [0]
    for k in range(1, min(radius, width) + 1):
        for combo in combinations(range(width), k):
            m = 0
            for b in combo:
                m |= 1 << b
            masks.append(m)
    return masks


class MultiIndexHash:
    """In-memory Hamming-ball search over 64-bit hashes with exact results.

    `add(key, h)` stores a hash under an integer key; `query(h)` returns every `(distance, key)`
    within `radius`, sorted by distance then key — exactly what `brute_force` returns. Each chunk
    has a hash table from chunk value to positions; a lookup probes every value within the chunk
    radius and checks the candidates' full distance with one vectorised popcount.
    """

    def __init__(self, radius: int = DEFAULT_RADIUS, n_chunks: int = DEFAULT_CHUNKS):
        if radius < 0:
            raise ValueError("radius must be >= 0")
        self.radius = int(radius)
        self.layout = chunk_layout(n_chunks)
        self.chunk_radius = self.radius // len(self.layout)
        probes = probe_count(self.radius, n_chunks)
        if probes > MAX_PROBES:
            raise ValueError(f"radius {radius} with {n_chunks} chunks needs {probes} probes per lookup "
                             f"(> {MAX_PROBES}); use more chunks (radius + 1 chunks need one probe each)")
        self._masks = {w: _flip_masks(w, self.chunk_radius) for _, w in self.layout}
        self._tables: list[dict[int, list[int]]] = [{} for _ in self.layout]  # chunk value -> positions
        self._pos: dict[int, int] = {}  # key -> position
        self._keys = np.zeros(1024, dtype=np.int64)
        self._arr = np.zeros(1024, dtype=np.uint64)

    def __len__(self) -> int:
        return len(self._pos)

    def add(self, key: int, h: int) -> None:
        h = to_unsigned(h)
        key = int(key)
        if key in self._pos:
            raise KeyError(f"key {key} already indexed")
        pos = len(self._pos)
        if pos == len(self._arr):
            self._arr = np.concatenate([self._arr, np.zeros_like(self._arr)])
            self._keys = np.concatenate([self._keys, np.zeros_like(self._keys)])
        self._arr[pos], self._keys[pos] = h, key
        self._pos[key] = pos
        for table, (shift, width) in zip(self._tables, self.layout):
            table.setdefault((h >> shift) & ((1 << width) - 1), []).append(pos)

    def add_many(self, keys, hashes) -> None:
        for key, h in zip(keys, hashes, strict=True):
            self.add(key, h)

    def _candidate_positions(self, h: int) -> np.ndarray:
        found: set[int] = set()
        for table, (shift, width) in zip(self._tables, self.layout):
            value = (h >> shift) & ((1 << width) - 1)
            for m in self._masks[width]:
                hit = table.get(value ^ m)
                if hit:
                    found.update(hit)
        return np.fromiter(found, dtype=np.int64, count=len(found))

    def candidates(self, h: int) -> set[int]:
        """Keys sharing a chunk within the chunk radius (a superset of the true neighbours)."""
        return set(self._keys[self._candidate_positions(to_unsigned(h))].tolist())

    def query(self, h: int) -> list[tuple[int, int]]:
        h = to_unsigned(h)
        pos = self._candidate_positions(h)
        if not len(pos):
            return []
        d = np.bitwise_count(self._arr[pos] ^ np.uint64(h))
        keep = d <= self.radius
        return sorted(zip(d[keep].tolist(), self._keys[pos[keep]].tolist()))

    def nearest(self, h: int) -> tuple[int, int] | None:
        """(distance, key) of the closest hash within radius (ties: smallest key), or None."""
        hits = self.query(h)
        return hits[0] if hits else None

    def items(self) -> Iterable[tuple[int, int]]:
        return ((k, int(self._arr[p])) for k, p in self._pos.items())


def brute_force(items: Iterable[tuple[int, int]], h: int, radius: int) -> list[tuple[int, int]]:
    """Reference scan: every (distance, key) within `radius` of `h`, sorted."""
    h = to_unsigned(h)
    out = [((to_unsigned(v) ^ h).bit_count(), k) for k, v in items]
    return sorted((d, k) for d, k in out if d <= radius)


@dataclass(frozen=True)
class CachedAnswer:
    """A cache hit: the stored answer, which call produced it, and how far the hashes are."""

    entry_id: int
    distance: int
    defect_class: str
    confidence: float
    reasoning: str
    call_id: int | None
    dhash: int
    thumb_distance: float | None = None


CacheKey = tuple[str, str, str]


class PerceptualCache:
    """dHash-keyed answers in SQLite with sub-linear lookups; see the module docstring."""

    def __init__(self, db: Database, radius: int = DEFAULT_RADIUS, n_chunks: int = DEFAULT_CHUNKS,
                 verify_max: float | None = DEFAULT_VERIFY_MAX, clock=time.time):
        self.db = db
        self.radius = int(radius)
        self.verify_max = verify_max
        self.n_chunks = int(n_chunks)
        self.clock = clock
        self._lock = threading.Lock()
        self._index: dict[CacheKey, tuple[MultiIndexHash, int]] = {}

    def _synced(self, key: CacheKey) -> MultiIndexHash:
        index, last = self._index.get(key) or (MultiIndexHash(self.radius, self.n_chunks), 0)
        rows = self.db.query(
            "SELECT id, dhash FROM oracle_cache WHERE domain = ? AND oracle_version = ? AND hash_region = ? "
            "AND id > ? ORDER BY id", (*key, last))
        if rows:
            index.add_many([int(r[0]) for r in rows], [to_unsigned(int(r[1])) for r in rows])
            last = int(rows[-1][0])
        self._index[key] = (index, last)
        return index

    def lookup(self, domain: str, oracle_version: str, hash_region: str, h: int,
               thumb: bytes | None = None) -> CachedAnswer | None:
        """The nearest cached answer within `radius` for this key whose thumbnail verifies, or None."""
        key = (domain, oracle_version, hash_region)
        with self._lock:
            hits = self._synced(key).query(h)
        if not hits:
            return None
        rows = {r["id"]: r for r in self.db.query(
            f"SELECT * FROM oracle_cache WHERE id IN ({','.join('?' * len(hits))})", [k for _, k in hits])}
        for distance, entry_id in hits:
            r = rows[entry_id]
            td = None
            if thumb is not None and r["thumb"] is not None:
                td = thumb_distance(thumb, r["thumb"])
                if self.verify_max is not None and td > self.verify_max:
                    continue
            return CachedAnswer(entry_id=entry_id, distance=distance, defect_class=r["defect_class"],
                                confidence=float(r["confidence"]), reasoning=r["reasoning"],
                                call_id=r["call_id"], dhash=to_unsigned(int(r["dhash"])), thumb_distance=td)
        return None

    def add(self, domain: str, oracle_version: str, hash_region: str, h: int, *, defect_class: str,
            confidence: float, reasoning: str, call_id: int | None, thumb: bytes | None = None) -> int:
        """Store an answer; it is visible to the next lookup (in this and other processes)."""
        with self.db.transaction() as conn:
            return insert(conn, "oracle_cache", dict(
                ts=self.clock(), domain=domain, oracle_version=oracle_version, hash_region=hash_region,
                dhash=to_signed(h), defect_class=defect_class, confidence=float(confidence),
                reasoning=reasoning, call_id=call_id, thumb=thumb))

    def size(self, domain: str | None = None, oracle_version: str | None = None) -> int:
        sql, params = "SELECT COUNT(*) FROM oracle_cache WHERE 1=1", []
        if domain is not None:
            sql += " AND domain = ?"
            params.append(domain)
        if oracle_version is not None:
            sql += " AND oracle_version = ?"
            params.append(oracle_version)
        return int(self.db.query(sql, params)[0][0])
