"""One ONNX model, loaded once into an onnxruntime session, run on one row at a time.

The session is built when the package is loaded (at server start), single-threaded: one
row is microseconds of work, and the server's other requests need the other cores more than
a model needs a thread pool.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from cds_hooks.models.manifest import ManifestError, ModelFile


class OnnxModel:
    """`predict(row)`: the manifest's output column (times its scale) for one float32 row."""

    def __init__(self, path: Path, spec: ModelFile, width: int) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own exception types for bad files
            raise ManifestError(f"{path.parent.name}: cannot load {path.name}: {error}") from error
        self._input = self._check_input(path, width)
        self._output = spec.output
        self._column = spec.column
        self._scale = spec.scale
        if spec.output not in {o.name for o in self._session.get_outputs()}:
            raise ManifestError(f"{path.parent.name}: the model has no output {spec.output!r}")

    def _check_input(self, path: Path, width: int) -> str:
        inputs = self._session.get_inputs()
        shape = inputs[0].shape if len(inputs) == 1 else None
        if shape is None or inputs[0].type != "tensor(float)" or shape[-1] != width:
            raise ManifestError(
                f"{path.parent.name}: the model must take one float32 input of {width} "
                "columns (one per manifest input)"
            )
        return str(inputs[0].name)

    def predict(self, row: list[float]) -> float:
        features = np.asarray([row], dtype=np.float32)
        (output,) = self._session.run([self._output], {self._input: features})
        return float(np.asarray(output).reshape(1, -1)[0, self._column]) * self._scale
