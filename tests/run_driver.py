"""`cascade-defect run` in a subprocess with light layers, for the kill-and-resume property test.

Runs the real CLI command (argument parsing, input expansion, locks, decision log, JSONL, the real
`Oracle` on the review backend, exit codes) with the bundle's models swapped for the deterministic
test layers of `layers_for_tests.py`, so a process starts in a second instead of loading torch.
`RUN_DRIVER_FRAME_S` slows Layer 1 and the oracle step down per frame, so a kill can land mid-run (also
between the oracle step and the decision log).

    python tests/run_driver.py run PATH... --bundle unused --domain severstal --out O --db D [--resume]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from layers_for_tests import BrightnessGate, CornerDetector  # noqa: E402


class SlowGate(BrightnessGate):
    def score_batch(self, images, domain):
        time.sleep(float(os.environ.get("RUN_DRIVER_FRAME_S", "0")) * len(images))
        return super().score_batch(images, domain)


class SlowOracle:
    """The real oracle, then a pause: widens the window between the oracle step and the decision log."""

    def __init__(self, oracle):
        self.oracle = oracle

    def judge_batch(self, frames, hints):
        out = self.oracle.judge_batch(frames, hints)
        time.sleep(float(os.environ.get("RUN_DRIVER_FRAME_S", "0")) * len(frames))
        return out


def light_cascade(bundle_ref, *, domains, options, db=None, **_):
    """`build_router` with slow light layers in place of the bundle's (the real oracle, its review queue)."""
    from cascade_defect.bundles.bundle import Bundle
    from cascade_defect.cascade.policy import Policy
    from cascade_defect.cascade.assemble import oracle_from_settings

    policy = Policy.from_dict({"domains": {domains[0]: {"tau": 1.0}}, "l2_bar": 0.85})
    oracle = oracle_from_settings(options.oracle_config, db=db)
    loaded = real_build_router(None, domains=domains, policy=policy, gate=SlowGate(), specialist=CornerDetector(),
                               oracle=SlowOracle(oracle), db=db)
    loaded.bundle, loaded.oracle = Bundle(Path(bundle_ref), {}), oracle
    return loaded


if __name__ == "__main__":
    from cascade_defect.cascade import assemble
    from cascade_defect.cli import app

    real_build_router = assemble.build_router
    assemble.build_router = light_cascade
    app(prog_name="cascade-defect")
