"""ONNX for the gates' networks: export a module once, run it on ONNX Runtime's CPU provider."""

from __future__ import annotations

import io
from typing import Mapping, Sequence


def export_onnx(net, example, output_names: Sequence[str], dynamic_axes: Mapping[str, Mapping[int, str]]) -> bytes:
    """`net` (in eval mode, on the CPU) traced with `example` as input "image"; opset 17, TorchScript exporter."""
    import torch

    buf = io.BytesIO()
    torch.onnx.export(net, (example,), buf, input_names=["image"], output_names=list(output_names),
                      dynamic_axes={k: dict(v) for k, v in dynamic_axes.items()}, opset_version=17, dynamo=False)
    return buf.getvalue()


def cpu_session(onnx: bytes, threads: int | None = None):
    """An ONNX Runtime session on the CPU: `threads` intra-op threads (default: ONNX Runtime's), one inter-op
    thread, all graph optimisations, and no busy-waiting after a run (the gate's next step needs the same cores)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(onnx, opts, providers=["CPUExecutionProvider"])
