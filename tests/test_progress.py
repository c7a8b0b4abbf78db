"""Long steps show progress: the supervised fit reports step, loss and ETA (log lines when stderr is not a
terminal). The queue worker's line per batch: tests/test_distributed_queue.py."""

from __future__ import annotations

import io

import numpy as np
from rich.console import Console

from cascade_defect.cli.common import StepProgress
from cascade_defect.gate.supervised import SupervisedGate


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_step_progress_logs_step_loss_and_eta_when_not_a_terminal():
    out = io.StringIO()
    clock = Clock()
    with StepProgress("supervised gate 's'", console=Console(file=out, force_terminal=False, width=200),
                      every_s=10, clock=clock) as on_step:
        for step in range(1, 101):
            clock.t = step * 0.5  # 0.5 s per step
            on_step(step, 100, 1.0 / step)
    lines = out.getvalue().splitlines()
    assert len(lines) == 5  # every 10 s (20 steps), the last step included
    assert lines[0] == "supervised gate 's': step 20/100, loss 0.0500, 10 s elapsed, ETA 40 s"
    assert lines[-1].startswith("supervised gate 's': step 100/100, loss 0.0100, 50 s elapsed, ETA 0 s")


def test_step_progress_draws_a_bar_on_a_terminal():
    out = io.StringIO()
    with StepProgress("fit", console=Console(file=out, force_terminal=True, width=120)) as on_step:
        for step in range(1, 4):
            on_step(step, 3, 0.25)
    text = out.getvalue()
    assert "3/3" in text and "loss 0.2500" in text and "ETA" in text


def test_the_supervised_fit_reports_every_step_with_its_loss():
    rng = np.random.default_rng(0)
    images = [rng.integers(100, 140, (64, 64, 3), dtype=np.uint8) for _ in range(14)]
    seen = []
    gate = SupervisedGate(seed=0, steps=4, short_side=64, min_holdout=4)
    gate.fit(images, [f"n{i}" for i in range(14)], domain="s", on_step=lambda *a: seen.append(a))
    assert [s[:2] for s in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert [s[2] for s in seen] == gate.train_losses_
