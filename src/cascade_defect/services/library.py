"""Every library object the services use, imported in one place.

The services are transports over the library; when library modules move, only this file is
re-pointed.
"""

from __future__ import annotations

from ..cascade.assemble import load_gate, load_oracle, load_policy, load_specialist, open_bundle, read_calibration
from ..bundles.bundle import MANIFEST, Bundle
from ..bundles.uri import resolve_bundle_from_env
from ..cascade.calibration_summary import calibration_summaries
from ..cascade.router import Router
from ..evaluation.drift import monitor_from_env, references_from_calibration
from ..contracts import GateScore, OracleVerdict
from ..serialize import decision_from_dict, decision_to_dict
from ..errors import BundleError, CascadeError, ConfigError, DataError
from ..imaging import MAX_ASPECT_RATIO, load_image
from ..records import Decision, Detection, Frame, LayerResult
from ..store.db import Database, default_db_path
from ..store.decisions import DecisionLog, FrameClaims
from ..store.images import ImageStore, image_store_path
from ..store.review import ReviewIntake, ReviewQueue


def review_image_root():
    """`CASCADE_REVIEW_IMAGE_ROOT` (the only folder whose files review items that name a file may show), or None."""
    from ..settings import settings

    root = settings().review_image_root
    return root.expanduser() if root is not None else None


def oracle_labels(domain: str) -> tuple[str, ...]:
    """Labels a reviewer may give a frame of `domain` (the oracle's default taxonomy + environment)."""
    from ..oracle.schema import taxonomy_labels
    from ..oracle.taxonomy import resolve_classes, taxonomy_from_env

    try:
        return taxonomy_labels(resolve_classes(domain, taxonomy_from_env()))
    except ConfigError:
        return ("defect", "no_defect")


__all__ = [
    "MANIFEST", "MAX_ASPECT_RATIO", "Bundle", "BundleError", "CascadeError", "ConfigError", "DataError", "Database",
    "Decision", "DecisionLog", "Detection", "FrameClaims", "ImageStore", "image_store_path", "review_image_root",
    "Frame", "GateScore", "LayerResult", "OracleVerdict", "ReviewIntake", "ReviewQueue", "Router",
    "calibration_summaries", "monitor_from_env", "read_calibration", "references_from_calibration",
    "decision_from_dict", "decision_to_dict", "default_db_path", "load_gate", "load_image", "load_oracle",
    "load_policy", "load_specialist", "open_bundle", "oracle_labels", "resolve_bundle_from_env",
]
