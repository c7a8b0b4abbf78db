"""Install by role: the router and the oracle import and run where torch (and the other heavy
libraries of the gate and specialist roles) cannot be imported; the core dependencies carry none of them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "torchvision", "ultralytics", "faiss", "onnxruntime", "onnx", "cv2", "scipy")

BLOCK_HEAVY = textwrap.dedent("""
    import sys
    HEAVY = {heavy!r}

    class Blocked:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HEAVY:
                raise ImportError(f"{{name}} is not installed in this role")
            return None

    sys.meta_path.insert(0, Blocked())
""")  # what a role without the heavy libraries can import

SCRIPT = BLOCK_HEAVY + textwrap.dedent("""
    import numpy as np
    import cascade_defect.bundles, cascade_defect.bundles.uri, cascade_defect.cascade.decide
    import cascade_defect.cascade.policy, cascade_defect.cascade.router, cascade_defect.cascade.runner
    import cascade_defect.contracts, cascade_defect.settings, cascade_defect.oracle, cascade_defect.oracle.oracle
    import cascade_defect.store.decisions
    from cascade_defect.cascade.policy import Policy
    from cascade_defect.cascade.router import Router
    from cascade_defect.oracle.oracle import Oracle
    from cascade_defect.records import Frame
    from cascade_defect.store.db import Database
    from cascade_defect.store.review import ReviewIntake
    sys.path.insert(0, {tests!r})
    from layers_for_tests import BrightnessGate, CornerDetector

    oracle = Oracle(Database({db!r}), backend=None)
    router = Router(Policy.from_dict({{"domains": {{"severstal": {{"tau": 1.0}}}}}}), BrightnessGate(), CornerDetector(),
                    oracle, ReviewIntake(oracle.review, oracle.prompt.labels))
    frames = []
    for fid, mean in (("calm", 100), ("odd", 150)):
        img = np.full((8, 8, 3), mean, np.uint8)
        img[0, 0, 0], img[0, 0, 1] = 100, 1
        frames.append(Frame(fid, "severstal", img, source=fid + ".png"))
    print([(d.frame_id, d.label, d.layer) for d in router.route(frames)])
    print(sorted(m for m in sys.modules if m.split(".")[0] in HEAVY))
""")


def test_router_and_oracle_run_without_torch(tmp_path):
    code = SCRIPT.format(heavy=HEAVY, tests=str(REPO / "tests"), db=str(tmp_path / "c.db"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    decided, heavy = proc.stdout.strip().splitlines()
    assert decided == "[('calm', 'no_defect', 1), ('odd', None, 'review')]"
    assert heavy == "[]"


def test_the_blocker_really_blocks_torch():
    code = BLOCK_HEAVY.format(heavy=HEAVY) + "import torch\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "is not installed in this role" in proc.stderr


def test_core_dependencies_leave_the_heavy_libraries_to_the_roles():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    for name in ("torch", "ultralytics", "faiss", "onnxruntime", "opencv", "openai"):
        assert name not in core, name
    extras = project["optional-dependencies"]
    assert any(d.startswith("openai") for d in extras["oracle"])
    assert any(d.startswith("torch") for d in extras["gate"]) and any(d.startswith("ultralytics") for d in extras["specialist"])
    assert set(extras["all"][0].split("[")[1].rstrip("]").split(",")) >= {"oracle", "gate", "specialist", "eval"}
    assert ".[test,all]" in (REPO / "scripts" / "bootstrap.sh").read_text()


POLICY_SCRIPT = BLOCK_HEAVY + textwrap.dedent("""
    from cascade_defect.bundles.bundle import Bundle
    from cascade_defect.cascade.assemble import load_policy, write_calibration

    bundle = Bundle.create({root!r})
    write_calibration(bundle, "steel", 1.5, {{"mode": "test"}}, l2_bar=0.3)
    policy = load_policy(Bundle.open({root!r}), ["steel"])
    print(policy.domains["steel"].tau, sorted(m for m in sys.modules if m.split(".")[0] in HEAVY))
""")


def test_router_service_loads_its_policy_without_torch_or_opencv(tmp_path):
    """What `serve router` does first with remote layers (found by running the router's container image)."""
    code = POLICY_SCRIPT.format(heavy=HEAVY, root=str(tmp_path / "bundle"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "1.5 []"
