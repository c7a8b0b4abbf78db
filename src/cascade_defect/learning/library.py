"""Every library object the learning loop uses from other packages, imported in one place
(when modules move, only this file is re-pointed)."""

from __future__ import annotations

from ..cascade.assemble import load_policy, open_bundle, read_calibration
from ..bundles.bundle import MANIFEST, Bundle
from ..cascade.router import Router
from ..contracts import GateScore
from ..data.registry import read_dataset
from ..data.selection import seeded_subset, select_split
from ..data.yolo_export import export_yolo
from ..errors import CascadeError, ConfigError, DataError
from ..evaluation.bundle_calibration import calibrate_domain
from ..evaluation.standins import GroundTruthOracle
from ..oracle.pricing import PriceTable
from ..records import NO_DEFECT, Frame, Sample
from ..specialist.datasets import read_format, wide_fraction
from ..specialist.yolo import Specialist
from ..store.db import Database
from ..store.decisions import DecisionLog
from ..store.labels import LabelStore, RetrainQueue
from ..store.review import ReviewQueue

__all__ = ["MANIFEST", "Bundle", "CascadeError", "ConfigError", "DataError", "Database", "DecisionLog", "Frame",
           "GateScore", "GroundTruthOracle", "LabelStore", "NO_DEFECT", "PriceTable", "RetrainQueue", "ReviewQueue",
           "Router", "Sample", "Specialist", "calibrate_domain", "export_yolo", "load_policy", "open_bundle",
           "read_calibration", "read_dataset", "read_format", "seeded_subset", "select_split", "wide_fraction"]
