"""int8 post-training static quantization of an exported ONNX model with onnxruntime's own tooling.

Per-channel int8 weights and uint8 activations in the QDQ format, calibrated on real images. onnxruntime's
`quant_pre_process` runs first: without it ReLU6's Clip bounds stay as separate nodes and the quantized model
gets slower, not faster. Weights use 8 bits on CPUs with VNNI (ARM: the dot
product) and 7 elsewhere, unless told (`choose_weight_range`): onnxruntime's u8s8 kernels on x86 CPUs without VNNI
add pairs of u8 x s8 products in 16 bits, which saturate with 8-bit weights (the default trained model on such a
CPU: 92% top-1 agreement with fp32 at 8 bits, 99% at 7; docs/benchmarks.md). Layer groups that cost accuracy in
int8 can be kept in float: the first convolution, the squeeze-excitation blocks, depthwise convolutions with kernels
over 3x3 and the classifier; by default none is, since none measurably helped enough to pay for its float time.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

from .. import cpu
from .._atomic import atomic_path
from .export import CHANNEL_BROADCAST
from .runtime import ExportedModel
from .timing import interleaved, median_p90

log = logging.getLogger(__name__)
FLOAT_GROUPS = ("first_conv", "se", "large_depthwise", "classifier")
ACTIVATION_OPS = ("Relu", "Clip", "HardSigmoid", "HardSwish", "Mul")


def _consumers(graph) -> dict[str, list]:
    users: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def checked_groups(groups: Iterable[str]) -> tuple[str, ...]:
    """`groups` as a tuple; ValueError naming the first one that is not in FLOAT_GROUPS."""
    groups = tuple(groups)
    if unknown := [g for g in groups if g not in FLOAT_GROUPS]:
        raise ValueError(f"unknown layer group {unknown[0]!r}; choose from {', '.join(FLOAT_GROUPS)}")
    return groups


@dataclass(frozen=True)
class FloatGroups:
    """The layer groups an int8 export leaves in float, and why."""

    groups: tuple[str, ...]
    reason: str

    def __str__(self) -> str:
        return f"{', '.join(self.groups) or 'none'} ({self.reason})"


def _is_large_depthwise(node) -> bool:
    """A grouped (in MobileNets: depthwise) ONNX Conv with a kernel over 3x3."""
    attributes = {a.name: a for a in node.attribute}
    groups = attributes["group"].i if "group" in attributes else 1
    kernel = list(attributes["kernel_shape"].ints) if "kernel_shape" in attributes else []
    return node.op_type == "Conv" and groups > 1 and max(kernel, default=0) > 3


def float_node_names(graph, keep_float: Iterable[str]) -> list[str]:
    """Names of the nodes of the ONNX `graph` that `keep_float` asks to leave in float: 'first_conv' (the conv
    reading the image, and its activation), 'se' (each squeeze-excitation: pool → conv → act → conv → gate →
    multiply), 'large_depthwise' (grouped convolutions, depthwise in MobileNets, with kernels over 3x3) and
    'classifier' (Gemm/MatMul)."""
    keep = set(checked_groups(keep_float))
    users = _consumers(graph)
    names: list[str] = []
    if "first_conv" in keep:
        frontier = [n for n in users.get(graph.input[0].name, []) if n.op_type == "Conv"]
        while frontier:  # the convolution and its activation (ReLU6's Clip, hard-swish's HardSigmoid and Mul)
            node = frontier.pop()
            if node.name not in names:  # hard-swish's Mul is reached twice
                names.append(node.name)
            frontier += [n for n in users.get(node.output[0], []) if n.op_type in ACTIVATION_OPS]
    if "classifier" in keep:
        names += [n.name for n in graph.node if n.op_type in ("Gemm", "MatMul")]
    if "large_depthwise" in keep:
        names += [n.name for n in graph.node if _is_large_depthwise(n)]
    if "se" in keep:
        for pool in (n for n in graph.node if n.op_type in ("ReduceMean", "GlobalAveragePool")):
            chain, node = [pool], pool
            while len(chain) <= 6 and len(users.get(node.output[0], [])) == 1:
                node = users[node.output[0]][0]
                chain.append(node)
                if node.op_type == "Mul":
                    names += [n.name for n in chain]
                    break
    return names


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over NCHW float32 batches, split into single images when
    the model's batch size is fixed at 1."""

    def __init__(self, input_name: str, batches: Iterable[np.ndarray], single: bool) -> None:
        self.input_name = input_name
        images = (image[None] for batch in batches for image in batch) if single else batches
        self.batches: Iterator[np.ndarray] = iter(images)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}


@dataclass(frozen=True)
class WeightRange:
    """The int8 weights' range, 7-bit (`reduce_range`) or 8-bit, and why it was chosen."""

    reduce_range: bool
    reason: str

    @property
    def bits(self) -> int:
        """7 or 8."""
        return 7 if self.reduce_range else 8

    def __str__(self) -> str:
        return f"{self.bits}-bit ({self.reason})"


def choose_weight_range(reduce_range: bool | None = None) -> WeightRange:
    """`reduce_range` if given, else what this CPU needs: 8-bit weights with VNNI (ARM: asimddp), 7-bit without,
    where onnxruntime's u8s8 kernels add u8 x s8 products in 16 bits. The one place PTQ and QAT take their grid."""
    info = cpu.describe()
    dot = info.int8_dot_product_name
    if not info.flags:
        risk = "this CPU's instruction sets are unknown: 7-bit weights are safe on every CPU"
    elif info.is_x86:
        risk = f"this CPU has no {dot}: 8-bit weights would saturate onnxruntime's u8s8 kernels"
    else:
        risk = f"this CPU has no {dot}: 7-bit weights, the safe choice"
    if reduce_range is not None:
        reason = "reduced range, as asked" if reduce_range else "full range, as asked"
        if not reduce_range and not info.int8_dot_product:
            reason += f"; {risk}"
        return WeightRange(reduce_range, reason)
    if info.int8_dot_product:
        return WeightRange(False, f"full range; this CPU has {dot}")
    return WeightRange(True, risk)


def quantize(fp32_model: str | Path, output: str | Path, calibration: Iterable[np.ndarray], *,
             keep_float: Iterable[str] = (), reduce_range: bool | None = None) -> Path:
    """Write an int8 (QDQ) copy of `fp32_model` calibrated on `calibration` batches; returns `output`.

    `keep_float`: layer groups of FLOAT_GROUPS left in float. `reduce_range`: 7-bit weights (True) or 8-bit
    (False); None chooses for this CPU (`choose_weight_range`), so pass a bool for a model meant for other CPUs,
    and check the agreement with fp32 either way. The choice and its reason go into the metadata
    (`mobilenets.int8_weights`).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    output = Path(output)
    weights = choose_weight_range(reduce_range)
    source = onnx.load(str(fp32_model))
    metadata = {p.key: p.value for p in source.metadata_props}
    metadata["mobilenets.int8_weights"] = json.dumps({"bits": weights.bits, "reduce_range": weights.reduce_range,
                                                      "reason": weights.reason, "cpu": cpu.summary()})
    with tempfile.TemporaryDirectory() as work:
        unbroadcast, prepared = Path(work) / "unbroadcast.onnx", Path(work) / "prepared.onnx"
        _drop_channel_broadcasts(source.graph)
        onnx.save(source, str(unbroadcast))
        quant_pre_process(str(unbroadcast), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        _name_nodes(model.graph)
        onnx.save(model, str(prepared))
        image_input = model.graph.input[0]
        single = image_input.type.tensor_type.shape.dim[0].dim_value == 1
        with atomic_path(output) as tmp:
            quantize_static(str(prepared), str(tmp), _Batches(image_input.name, calibration, single),
                            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=weights.reduce_range,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=float_node_names(model.graph, keep_float),
                            calibrate_method=CalibrationMethod.MinMax)
            _add_metadata(tmp, metadata)
    return output


def _name_nodes(graph) -> None:
    """Give every unnamed node a unique name, in place: the pre-processing inlines HardSwish into unnamed
    HardSigmoid and Mul nodes, which `nodes_to_exclude` could not otherwise name."""
    taken = {node.name for node in graph.node}
    for position, node in enumerate(graph.node):
        if not node.name:
            name = f"{node.op_type}_{position}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)


def _drop_channel_broadcasts(graph) -> None:
    """Remove the Resize nodes `export` puts before squeeze-excitation's Mul, in place: they keep fp32 in
    onnxruntime's NCHWc layout, but int8 kernels broadcast natively and the Resize only slows them
    (docs/benchmarks.md)."""
    ours = f"{CHANNEL_BROADCAST}/"
    for resize in [n for n in graph.node if n.op_type == "Resize" and n.name.startswith(ours)]:
        for node in graph.node:
            node.input[:] = [resize.input[0] if name == resize.output[0] else name for name in node.input]
        for output in graph.output:
            if output.name == resize.output[0]:
                output.name = resize.input[0]
        graph.node.remove(resize)
    used = {name for node in graph.node for name in node.input}
    for entries in (graph.initializer, graph.value_info):
        for entry in [e for e in entries if e.name.startswith(ours) and e.name not in used]:
            entries.remove(entry)


def _add_metadata(target: Path, metadata: dict[str, str]) -> None:
    """Write `metadata` (the fp32 model's class names and preprocessing, the weights' range) into the int8 model
    at `target`."""
    import onnx

    model = onnx.load(str(target))
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(target))


def calibration_batches(source: str | Path | None, preprocess, *, images: int = 256, batch_size: int = 16,
                        split: str = "train", transform: Callable | None = None,
                        builtin: Callable[[str, int], Iterable] | None = None) -> Iterator[np.ndarray]:
    """Preprocessed NCHW batches: from an image folder (any depth), or a split of the built-in shapes. Another
    task's input protocol comes as `transform` (PIL image -> CHW tensor, instead of `preprocess`'s) and
    `builtin(split, count)` (its own built-in images). The folder is checked at once, before the batches are
    drawn."""
    from ..data.folder import image_files, load_rgb
    from ..data.synthetic import SyntheticShapes
    from ..data.transforms import eval_transform

    transform = transform or eval_transform(preprocess)
    if source is None and builtin is not None:
        items = iter(builtin(split, images))
    elif source is None:
        shapes = SyntheticShapes(split, size=preprocess.image_size, length=images)
        items = (shapes[i][0] for i in range(len(shapes)))
    else:
        root = Path(source)
        if not root.is_dir():
            raise ValueError(f"{root}: no such folder of calibration images")
        files = image_files(root)[:images]
        if not files:
            raise ValueError(f"{root}: no images to calibrate on")
        items = _readable(files, load_rgb)
    return _batches(items, transform, batch_size, source)


def _batches(items: Iterable, transform: Callable, batch_size: int, source: str | Path | None
             ) -> Iterator[np.ndarray]:
    """`items` transformed and stacked `batch_size` at a time; ValueError naming `source` if there were none."""
    import torch

    batch: list = []
    seen = 0
    for image in items:
        seen += 1
        batch.append(transform(image))
        if len(batch) == batch_size:
            yield torch.stack(batch).numpy()
            batch = []
    if batch:
        yield torch.stack(batch).numpy()
    if not seen:
        raise ValueError(f"{source}: none of its images can be read to calibrate on")


def _readable(files: list[Path], load: Callable) -> Iterator:
    """The images of `files` that decode; each one that does not is skipped with a warning naming it."""
    for path in files:
        try:
            yield load(path)
        except ValueError as e:  # DataError: one corrupt image must not stop the calibration
            log.warning("calibration: skipped %s", e)


def compare(fp32: ExportedModel, int8: ExportedModel, images: np.ndarray, labels: np.ndarray | None = None, *,
            runs: int = 30) -> dict[str, float]:
    """int8 against fp32 on the same images: top-1 agreement, accuracy (with labels), batch-1 latency (ms)."""
    fp32_top, int8_top = (model.run(images)[0].argmax(1) for model in (fp32, int8))
    one = images[:1]
    times = interleaved({"fp32": lambda: fp32.run(one), "int8": lambda: int8.run(one)}, runs=runs)
    latency = {precision: median_p90(chain.from_iterable(per_round))[0] for precision, per_round in times.items()}
    report = {"agreement": float((fp32_top == int8_top).mean()), "fp32_ms": latency["fp32"],
              "int8_ms": latency["int8"]}
    if labels is not None:
        report |= {"fp32_top1": float((fp32_top == labels).mean()), "int8_top1": float((int8_top == labels).mean())}
    return report
