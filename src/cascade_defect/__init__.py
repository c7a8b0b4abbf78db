"""cascade-defect: a cost-aware three-layer defect-detection cascade for metal surfaces."""

__version__ = "0.1.0"
