"""Every library object the distributed transports use, imported in one place.

The transports are thin adapters; when library modules move (contracts, bundles, serialize),
only this file is re-pointed.
"""

from __future__ import annotations

from ..cascade.assemble import build_cascade, load_gate, load_oracle, load_policy, load_specialist, open_bundle
from ..bundles.bundle import Bundle
from ..bundles.uri import is_local, local_path, resolve_bundle_from_env, storage_options_for
from ..cascade.router import Router
from ..cascade.runner import InputItem, resolve_inputs
from ..contracts import GateScore, OracleVerdict
from ..data.files import IMAGE_EXTENSIONS as IMAGE_SUFFIXES
from ..data.inputs import is_mask_name
from ..serialize import decision_from_dict, decision_to_dict
from ..settings import settings
from ..cascade.summary import RunSummary, summarise
from ..errors import BundleError, CascadeError, ConfigError, DataError
from ..imaging import load_image
from ..records import Decision, Detection, Frame, LayerResult
from ..store.db import Database, default_db_path
from ..store.decisions import DecisionLog, FrameClaims, write_jsonl


__all__ = [
    "IMAGE_SUFFIXES", "is_mask_name", "settings", "Bundle", "BundleError", "CascadeError", "ConfigError", "DataError", "Database", "Decision",
    "DecisionLog", "Detection", "Frame", "FrameClaims", "GateScore", "InputItem", "LayerResult", "OracleVerdict", "Router",
    "RunSummary", "build_cascade", "decision_from_dict", "decision_to_dict", "default_db_path", "is_local",
    "load_gate", "load_image", "load_oracle", "load_policy", "load_specialist", "local_path", "open_bundle",
    "resolve_bundle_from_env", "resolve_inputs", "storage_options_for", "summarise", "write_jsonl",
]
