"""Layer 1: the gate. Scores how far a frame is from its domain's normals; never decides.

`PatchCoreGate` (default) and `AutoencoderGate` fit on one domain's defect-free images;
`GateSet` holds several domains and loads/saves them in a model bundle.
`SupervisedGate` also learns from labelled defectives and synthetic anomalies; `CombinedGate`
takes the max of an unsupervised and the supervised gate's z; `evaluation.gate_selection.select_gate`
picks by validation AUROC.
"""

from .autoencoder import AutoencoderGate
from .base import MIN_HOLDOUT, DomainStats
from .combined import CombinedGate
from .patchcore import PatchCoreGate
from .gate_set import GATE_KINDS, GateSet, save_gate
from .supervised import LabelledDefective, SupervisedGate, defectives_from_samples

__all__ = ["AutoencoderGate", "CombinedGate", "DomainStats", "GATE_KINDS", "GateSet", "LabelledDefective",
           "MIN_HOLDOUT", "PatchCoreGate", "SupervisedGate", "defectives_from_samples", "save_gate"]
