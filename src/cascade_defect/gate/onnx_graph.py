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


class OnnxEngine:
    """Mixin for a gate part that runs one network on ONNX Runtime: the graph is exported once
    (`_export_graph()`, provided by the class) or taken from a bundle (`use_onnx`), and its CPU
    session, with the part's `threads`, is built on first use."""

    _onnx: bytes | None = None
    _ort = None
    threads: int | None = None

    def _export_graph(self) -> bytes:
        raise NotImplementedError

    def onnx_bytes(self) -> bytes:
        """The network as ONNX, exported once."""
        if self._onnx is None:
            self._onnx = self._export_graph()
        return self._onnx

    def use_onnx(self, data: bytes | None) -> None:
        """Run this graph (from a bundle) instead of exporting again; None forgets the graph (refitted)."""
        self._onnx = None if data is None else bytes(data)
        self._ort = None

    @property
    def ort(self):
        if self._ort is None:
            self._ort = cpu_session(self.onnx_bytes(), self.threads)
        return self._ort
