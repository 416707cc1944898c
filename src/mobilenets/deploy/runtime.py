"""Exported models run from Python: ONNX through onnxruntime, `.pte` through the ExecuTorch runtime, behind one
interface, so that evaluating, predicting and timing use the very file a user ships, whatever its format."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

PTE_MAGIC = b"ET"  # bytes 4-5 of every ExecuTorch program ("ET12" and later versions)
METADATA_PREFIX = "mobilenets."


class ExportedModel(ABC):
    """A loaded exported model: its input and output shapes (None for a dynamic dimension), the metadata it was
    exported with (class names, preprocessing, ...), and `run` for a batch of preprocessed NCHW float32 images."""

    format: str  # the export format that writes it (`deploy.export`'s name)

    def __init__(self, path: Path, input_shape: tuple[int | None, ...], metadata: dict[str, Any], *,
                 output_shapes: list[tuple[int | None, ...]]) -> None:
        self.path, self.input_shape, self.output_shapes, self.metadata = path, input_shape, output_shapes, metadata

    @property
    def fixed_batch(self) -> int | None:
        """The one batch size the model takes, or None when any is accepted."""
        return self.input_shape[0]

    def run(self, images: np.ndarray) -> list[np.ndarray]:
        """The model's outputs for `images` (N, C, H, W) of any batch size: a model exported for one batch size
        runs them in pieces of that size. ValueError, naming the file, for images of another shape."""
        expected = self.input_shape[1:]
        if images.ndim != 4 or any(e is not None and e != s for e, s in zip(expected, images.shape[1:], strict=True)):
            shape = "x".join("N" if s is None else str(s) for s in (None, *expected))
            raise ValueError(f"{self.path}: expects input of shape {shape}, got {'x'.join(map(str, images.shape))}")
        images = np.ascontiguousarray(images, dtype=np.float32)
        step = self.fixed_batch or len(images)
        parts = [self._run(images[i:i + step]) for i in range(0, len(images), step)]
        return [np.concatenate(outputs) for outputs in zip(*parts, strict=True)]

    @abstractmethod
    def _run(self, batch: np.ndarray) -> list[np.ndarray]: ...


class OnnxModel(ExportedModel):
    """An ONNX file on onnxruntime's CPU provider."""

    format = "onnx"

    def __init__(self, path: Path, threads: int | None = None, *, spinning: bool = True) -> None:
        self.session = onnx_session(path, threads or 0, spinning=spinning)
        meta = self.session.get_modelmeta().custom_metadata_map
        model_input = self.session.get_inputs()[0]
        shapes = [tuple(d if isinstance(d, int) else None for d in t.shape)
                  for t in (model_input, *self.session.get_outputs())]
        metadata = {k.removeprefix(METADATA_PREFIX): _json_or_text(v) for k, v in meta.items()
                    if k.startswith(METADATA_PREFIX)}
        super().__init__(path, shapes[0], metadata, output_shapes=shapes[1:])
        self._input = model_input.name

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self._input: batch})


def _json_or_text(value: str) -> Any:
    """An ONNX metadata value: JSON as our exports write it, or plain text (e.g. the int8 weights' range)."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


class PteModel(ExportedModel):
    """An ExecuTorch program (`.pte`) on the ExecuTorch runtime, with its sidecar metadata (`<file>.json`)."""

    format = "executorch"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import torch

        import_executorch_quietly()
        from executorch.runtime import Runtime

        self._torch = torch
        with open(path, "rb") as file:
            header = file.read(8)
        if header[4:6] != PTE_MAGIC:
            raise ValueError(f"{path}: not an ExecuTorch program (.pte)")
        try:
            with _native_stderr_silenced():  # the runtime logs its CPU probing and thread pool on stderr
                if threads:
                    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

                    _unsafe_reset_threadpool(threads)
                self.method = Runtime.get().load_program(path).load_method("forward")
        except RuntimeError as e:
            raise ValueError(f"{path}: the ExecuTorch runtime cannot load it ({e})") from None
        meta = self.method.metadata
        outputs = [tuple(meta.output_tensor_meta(i).sizes()) for i in range(meta.num_outputs())]
        super().__init__(path, tuple(meta.input_tensor_meta(0).sizes()), read_sidecar(path), output_shapes=outputs)

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        return [output.numpy() for output in self.method.execute([self._torch.from_numpy(batch)])]


class ExportedNetwork:
    """An exported model called like the PyTorch network it came from: a batch tensor in, its output (e.g. the
    logits; a tuple for several, e.g. a detector's maps) out, on the input's device; so evaluation and
    prediction code serves both."""

    def __init__(self, exported: ExportedModel) -> None:
        self.exported = exported
        self.config = exported.metadata.get("model", {})

    def __call__(self, images: Any) -> Any:
        import torch

        outputs = [torch.from_numpy(o).to(images.device) for o in self.exported.run(images.detach().cpu().numpy())]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def to(self, *args: Any, **kwargs: Any) -> ExportedNetwork:
        return self  # it runs on the CPU, whatever device the inputs come from

    def eval(self) -> ExportedNetwork:
        return self


def import_executorch_quietly() -> None:
    """Import ExecuTorch (and the torchao it brings) without the deprecation notice torch logs about one of
    torchao's types on every run, which users can do nothing about."""
    pytree = logging.getLogger("torch.utils._pytree")
    level = pytree.level
    pytree.setLevel(logging.ERROR)
    try:
        import executorch.runtime  # noqa: F401
        import torchao  # noqa: F401
    finally:
        pytree.setLevel(level)


def sidecar_path(path: Path) -> Path:
    """Where a `.pte`'s metadata lives: `model.pte` -> `model.pte.json`."""
    return path.with_name(path.name + ".json")


def read_sidecar(path: Path) -> dict[str, Any]:
    """A `.pte`'s metadata ({} when it has no sidecar file); ValueError naming the sidecar if it is not JSON."""
    sidecar = sidecar_path(path)
    if not sidecar.exists():
        return {}
    if not sidecar.is_file():
        raise ValueError(f"{sidecar}: not a file (it should hold {path.name}'s metadata as JSON)")
    try:
        metadata = json.loads(sidecar.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{sidecar}: not valid JSON ({e})") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"{sidecar}: expected a JSON object, got {type(metadata).__name__}")
    return metadata


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send what native code writes to file descriptor 2 to /dev/null for the block (Python's own stderr too)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def onnx_session(path: Path, threads: int, *, spinning: bool = True):
    """An onnxruntime CPU session with every graph optimisation and `threads` intra-op threads (0: its default).

    `spinning=False` stops its threads busy-waiting after each run: right when the network is all there is,
    wrong when Python pre- and post-processing share the cores between runs (docs/benchmarks.md measures it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...) for foreign files
        raise ValueError(f"{path}: onnxruntime cannot load it ({str(e).splitlines()[0][:200]})") from None
