"""Layer 3: a vision-LLM oracle with structured answers, a perceptual cache and metered cost.

The router calls `Oracle.judge_batch` (or `Oracle.classify` with `OracleRequest`s); nothing
else should call the oracle. See docs/oracle.md.
"""

from .cache import MultiIndexHash, PerceptualCache
from .clients import BackendConfig, ChatBackend, OracleAnswerError, make_backend
from .dhash import dhash, hamming
from .oracle import Oracle, OracleRequest
from .pricing import DEFAULT_PRICES, ModelPrice, PriceTable, SpendingGuard, Usage
from .prompt import Exemplar, ExemplarSet, PromptBuilder, build_exemplar_set, load_exemplars, save_exemplars
from .resilience import CircuitBreaker, RetryPolicy
from .schema import DefectPrediction, prediction_model

__all__ = [
    "BackendConfig", "ChatBackend", "CircuitBreaker", "DEFAULT_PRICES", "DefectPrediction", "Exemplar",
    "ExemplarSet", "ModelPrice", "MultiIndexHash", "Oracle", "OracleAnswerError", "OracleRequest",
    "PerceptualCache", "PriceTable", "PromptBuilder", "RetryPolicy", "SpendingGuard", "Usage",
    "build_exemplar_set", "dhash", "hamming", "load_exemplars", "make_backend", "prediction_model",
    "save_exemplars",
]
