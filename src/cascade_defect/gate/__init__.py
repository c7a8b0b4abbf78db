"""Layer 1: the gate. Scores how far a frame is from its domain's normals; never decides.

`PatchCoreGate` (default) and `AutoencoderGate` fit on one domain's defect-free images;
`GateSet` holds several domains and loads/saves them in a model bundle.
"""

from .autoencoder import AutoencoderGate
from .base import MIN_HOLDOUT, DomainStats
from .patchcore import PatchCoreGate
from .store import GATE_KINDS, GateSet, save_gate

__all__ = ["AutoencoderGate", "DomainStats", "GATE_KINDS", "GateSet", "MIN_HOLDOUT",
           "PatchCoreGate", "save_gate"]
