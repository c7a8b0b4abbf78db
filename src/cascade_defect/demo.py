"""The demo: build a bundle from built-in (synthetic) or real data, calibrate it, run the cascade.

Steps, each printed as it happens: make or read the data; split it group-aware into
train/val/test; fit the gate on train normals; add the project's own detector when one fits the
domain; store the oracle's few-shot exemplars; calibrate τ on val; run the cascade on test and
write `DIR/decisions.jsonl` (with the decision log in `DIR/cascade.db`). Offline by default:
with no LLM configured the oracle is the human review queue.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .records import Sample
from .cascade.summary import RunSummary, accuracy_vs_truth

SYNTH_DOMAIN = "steel-synthetic"
DEMO_TARGET_RECALL = 0.98
DEMO_L2_PRECISION = 0.95
SYNTH_DETECTOR = Path(__file__).resolve().parent / "models" / "synthetic-steel"


@dataclass
class DemoResult:
    out: Path
    bundle: Path
    decisions: Path
    domain: str
    summary: RunSummary
    accuracy: dict[str, Any]
    describe: dict[str, Any]
    notes: list[str]


def _synthetic(out: Path, n: int, seed: int, contrast: float) -> tuple[list[Sample], list[Sample]]:
    from .data.folder import read_folder
    from .data.synthetic import SyntheticGenerator, write_synthetic

    steel = out / "data" / "steel"
    commutator = out / "data" / "commutator"
    write_synthetic(steel, n, generator=SyntheticGenerator(style="steel", seed=seed, contrast=contrast),
                    overwrite=True)
    write_synthetic(commutator, 8, generator=SyntheticGenerator(style="commutator", seed=seed + 1,
                                                                 defect_rate=1.0, contrast=contrast),
                    overwrite=True)
    return (read_folder(steel, domain=SYNTH_DOMAIN).samples,
            read_folder(commutator, domain="ksdd-synthetic").samples)


def _real(data_root: Path) -> tuple[str, list[Sample], list[Sample]]:
    from .data.ksdd1 import read_ksdd1

    samples = read_ksdd1(data_root / "ksdd1", domain="ksdd1", skip_invalid=False).samples
    return "ksdd1", samples, samples


DEMO_SUPERVISED_STEPS = 150
"""Training steps of the demo's supervised gate (128x128 working frames, batches of 8)."""


def _fit_demo_gate(kind: str, train, normals, domain: str, seed: int, backbone: str, notes: list, say,
                   steps: int = DEMO_SUPERVISED_STEPS, on_step=None):
    """The supervised gate when the train split has labelled defectives (`kind` "auto" or
    "supervised"), else PatchCore-lite."""
    from .gate import PatchCoreGate, SupervisedGate, defectives_from_samples

    paths, names = [s.image_path for s in normals], [str(s.image_path) for s in normals]
    labelled = [s for s in train if s.defective]
    if kind == "supervised" or (kind == "auto" and labelled):
        say(f"layer 1: training the supervised gate from scratch on {len(normals)} train normals + "
            f"{len(labelled)} labelled defectives (+ synthetic anomalies)")
        notes.append("Layer 1 is the supervised gate (segmentation + decision CNN trained from scratch on the "
                     "train split's labelled defectives; no downloaded weights)")
        return SupervisedGate(seed=seed, steps=steps).fit(
            paths, names, domain=domain, defectives=defectives_from_samples(labelled), on_step=on_step)
    if backbone == "random":
        notes.append("Layer 1 uses a seeded RANDOM ResNet18 backbone (no ImageNet weights offline); "
                     "pass --backbone imagenet where torchvision's weights are available")
    say(f"layer 1: fitting PatchCore-lite ({backbone} backbone) on {len(normals)} train normals")
    # p99 aggregation: steadier than max with a random backbone (measured on synthetic steel)
    gate = PatchCoreGate(backbone=backbone, seed=seed, short_side=256, aggregate="p99")
    return gate.fit(paths, names, domain=domain)


def run_demo(out: str | Path, *, frames: int = 240, seed: int = 0, backbone: str = "random",
             contrast: float = 5.0, real: bool = False, data_root: Path | None = None,
             gate_kind: str = "auto", supervised_steps: int = DEMO_SUPERVISED_STEPS,
             say: Callable[[str], None] = print,
             on_step: Callable[[int, int, float], None] | None = None) -> DemoResult:
    """Build `out/bundle`, calibrate, run on held-back frames; returns what was printed, as data.
    `on_step(step, steps, loss)` follows the supervised gate's training (progress for people)."""
    from .data.selection import select_split
    from .gate import save_gate
    from .oracle.prompt import build_exemplar_set, save_exemplars
    from .store.db import Database
    from .store.decisions import DecisionLog
    from .cascade.assemble import build_cascade
    from .bundles.bundle import Bundle
    from .evaluation.bundle_calibration import calibrate_domain
    from .cascade.runner import CascadeRunner, items_from_samples
    from .cascade.summary import summarise

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    if real:
        if data_root is None:
            from .settings import DATA_ROOT_ENV

            raise ValueError(f"--real needs {DATA_ROOT_ENV} pointing at the datasets")
        domain, samples, commutator = _real(Path(data_root))
        say(f"data: KolektorSDD from {data_root / 'ksdd1'} ({len(samples)} images, real)")
    else:
        domain = SYNTH_DOMAIN
        samples, commutator = _synthetic(out, frames, seed, contrast)
        say(f"data: {len(samples)} SYNTHETIC steel frames (seed {seed}) in {out / 'data'}")
    train, val, test = (select_split(samples, s, seed=seed) for s in ("train", "val", "test"))
    say(f"split (group-aware, seed {seed}): train {len(train)}, val {len(val)}, test {len(test)}")

    bundle_dir = out / "bundle"
    if bundle_dir.exists():
        shutil.rmtree(bundle_dir)
    bundle = Bundle.create(bundle_dir)
    normals = [s for s in train if s.defective is False]
    gate = _fit_demo_gate(gate_kind, train, normals, domain, seed, backbone, notes, say, supervised_steps,
                          on_step=on_step)
    save_gate(bundle, domain, gate)

    if not real and (SYNTH_DETECTOR / "weights.pt").is_file():
        from .specialist.yolo import Specialist

        Specialist.load(SYNTH_DETECTOR, device="cpu").to_bundle(bundle)
        say(f"layer 2: the project's YOLOv8n trained on synthetic steel ({SYNTH_DETECTOR.name})")
    else:
        notes.append("no trained detector fits this domain: flagged frames go straight to the oracle")
        say("layer 2: none for this domain (flagged frames go to the oracle)")

    exemplars = build_exemplar_set(train, domain, commutator_samples=commutator)
    save_exemplars(bundle, exemplars)
    say(f"layer 3: {len(exemplars.exemplars)} few-shot exemplars stored in the bundle")

    # The stated risk: Layer 1 must pass on ≥ 98% of defectives (the least-escalating τ that does, on the val
    # slice), Layer 2 decides a class only above the bar where its val precision is ≥ 0.95.
    info = {"split": "val", "seed": seed, "demo": True}
    record = calibrate_domain(bundle, domain, val, mode="risk", target_recall=DEMO_TARGET_RECALL,
                              l2_precision=DEMO_L2_PRECISION, data_info=info)
    l2 = record.get("layer2") or {}
    say(f"stated risk: Layer-1 recall ≥ {DEMO_TARGET_RECALL}, Layer-2 precision ≥ {DEMO_L2_PRECISION}")
    say(f"calibration: τ[{domain}] = {record['tau']:.3f} on {record['frames']} val frames "
        f"({record['defective']} defective): recall {record['recall']:.3f} met (certified "
        f"{record['certified_recall']:.3f} at 95%), escalation {record['escalation_rate']:.2f}"
        + (f"; layer 2 decides {l2['coverage']:.0%} of escalated val frames at precision "
           f"{l2['precision']:.2f}" if l2.get("precision") is not None else "; layer 2 decides no val frame"))
    notes.extend(f"calibration: {w}" for w in record["warnings"])

    db = Database(out / "cascade.db")
    cascade = build_cascade(bundle_dir, domain, db=db)
    if getattr(cascade.oracle, "backend_name", "") == "review":
        notes.append("no LLM configured: frames Layer 2 is unsure about are queued for human review "
                     f"(see `cascade-defect review list --db {out / 'cascade.db'}`)")
    log = DecisionLog(db)
    run_id = log.start_run({**cascade.describe(), "demo": True})
    decisions_path = out / "decisions.jsonl"
    say(f"running the cascade on {len(test)} held-back frames")
    CascadeRunner(cascade.router, log, jsonl_path=decisions_path).run(items_from_samples(test), domain, run_id)
    decisions = log.decisions(run_id)
    summary = summarise(decisions)
    accuracy = accuracy_vs_truth(decisions, {str(s.image_path): s for s in test})
    (out / "summary.json").write_text(json.dumps(
        {"domain": domain, "summary": summary.to_dict(), "accuracy_vs_truth": accuracy, "notes": notes,
         "cascade": cascade.describe()}, indent=2, default=float))
    db.close()
    return DemoResult(out, bundle_dir, decisions_path, domain, summary, accuracy, cascade.describe(), notes)
