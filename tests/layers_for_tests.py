"""Tiny deterministic layers for routing tests (the real layers are tested in their own files)."""

from cascade_defect.contracts import GateScore, OracleVerdict
from cascade_defect.records import Detection


class BrightnessGate:
    """Scores a frame by its mean brightness (z = (mean - 100) / 10)."""

    def __init__(self):
        self.calls = []

    def score_batch(self, images, domain):
        self.calls.append(len(images))
        out = []
        for img in images:
            if img.ndim != 3:
                raise ValueError("needs HxWx3")
            m = float(img.mean())
            out.append(GateScore(score=m, z=(m - 100.0) / 10.0))
        return out


class CornerDetector:
    """One 'scratch' box whose confidence is the top-left red value / 255 (none if green is 0)."""

    def __init__(self):
        self.calls = []

    def detect_batch(self, images, domain):
        self.calls.append(len(images))
        return [[Detection("scratch", img[0, 0, 0] / 255.0, (1.0, 2.0, 3.0, 4.0))] if img[0, 0, 1] else []
                for img in images]


class LabelOracle:
    """Answers 'inclusion' at a metered cost, or sends listed frames to review."""

    def __init__(self, fail_ids=()):
        self.seen = []
        self.fail_ids = set(fail_ids)

    def judge_batch(self, frames, hints):
        self.seen.extend(f.frame_id for f in frames)
        return [OracleVerdict(None, to_review=True, error="oracle down") if f.frame_id in self.fail_ids
                else OracleVerdict("inclusion", 0.8, "dark spot", prompt_tokens=100,
                                   completion_tokens=10, cost_usd=0.001, latency_ms=5.0)
                for f in frames]
