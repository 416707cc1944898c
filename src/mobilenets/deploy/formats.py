"""The export formats, one row each: name, suffix, the tasks whose models it takes and the options it accepts
for each, its writer and its loader. Every export checks its request against the row (`check_request`) and
every exported file is opened through it (`load_exported`), so adding a format is one row, a writer and, for a
runtime that runs it from Python, a loader."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..extras import require
from .executorch import export_pte
from .export import export_graph
from .runtime import ExportedModel, OnnxModel, PteModel

# the options of an export beyond the model and the output, in the order a request is checked, with the name
# messages give them (the command line's flags, which the Python API's keyword arguments mirror)
OPTION_NAMES = {"int8": "--int8", "dynamic_batch": "--dynamic-batch", "reduce_range": "--full-range and --reduce-range",
                "qat_epochs": "--qat-epochs", "calibration": "--calibration", "keep_float": "--keep-float",
                "val": "--val"}
ANY_TASK = "*"  # a row's entry for the tasks it does not name: their float models, as any network exports
INT8_OPTIONS = ("reduce_range", "qat_epochs", "calibration", "keep_float", "val")  # they tune or check int8
_INT8_FOR_CLASSIFIERS = frozenset({"int8", "calibration", "keep_float", "qat_epochs", "val"})


@dataclass(frozen=True)
class ExportFormat:
    """One export format. `tasks` maps each task whose models it takes to the options it accepts for them (a zoo
    network is a classifier; ANY_TASK: every task not named); `write(model, output, *, resolution,
    dynamic_batch, metadata, output_names)` writes the float model; `load(path, threads, spinning)` opens a
    written file (None: no runtime of ours runs it); `runtime`: the module and extra that loading needs."""

    name: str
    suffix: str
    summary: str
    tasks: Mapping[str, frozenset[str]]
    write: Callable[..., Path]
    load: Callable[[Path, int | None, bool], ExportedModel] | None = None
    runtime: tuple[str, str] | None = None
    not_for: str = ""  # why options it does not take are not for it, said after the refusal


def _graph(format: str) -> Callable[..., Path]:
    def write(model: Any, output: str | Path, **options: Any) -> Path:
        return export_graph(model, format, output, **options)
    return write


def _pte(model: Any, output: str | Path, *, resolution: int, metadata: dict[str, Any] | None = None,
         **_: Any) -> Path:
    return export_pte(model, output, resolution=resolution, metadata=metadata)  # batch 1, the outputs unnamed


_ROWS = (
    ExportFormat("onnx", ".onnx", "ONNX for onnxruntime (int8: its static quantization)",
                 {"classification": _INT8_FOR_CLASSIFIERS | {"dynamic_batch", "reduce_range"},
                  ANY_TASK: frozenset({"dynamic_batch"})},
                 _graph("onnx"), lambda path, threads, spinning: OnnxModel(path, threads, spinning=spinning),
                 ("onnxruntime", "deploy")),
    ExportFormat("torchscript", ".pt", "TorchScript (deprecated by PyTorch; pt2 succeeds it)",
                 {ANY_TASK: frozenset({"dynamic_batch"})}, _graph("torchscript")),
    ExportFormat("pt2", ".pt2", "torch.export's program archive", {ANY_TASK: frozenset({"dynamic_batch"})},
                 _graph("pt2")),
    ExportFormat("executorch", ".pte", "an ExecuTorch program on XNNPACK, for phones (int8: PT2E)",
                 {"classification": _INT8_FOR_CLASSIFIERS,
                  "detection": frozenset({"int8", "calibration", "keep_float"}), ANY_TASK: frozenset()},
                 _pte, lambda path, threads, spinning: PteModel(path, threads), ("executorch", "executorch"),
                 not_for="batch 1, XNNPACK's 8-bit int8"),
)
FORMATS = tuple(row.name for row in _ROWS)  # the built-in formats' names
_BY_NAME = {row.name: row for row in _ROWS}
# the suffixes of the files `load_exported` opens
EXPORTED_SUFFIXES = {row.suffix: row for row in _ROWS if row.load is not None}


def register_format(row: ExportFormat) -> ExportFormat:
    """Add a format (another package's, or a test's) to the table; returns it."""
    if row.name in _BY_NAME or row.suffix in {other.suffix for other in _BY_NAME.values()}:
        raise ValueError(f"format {row.name!r} or its suffix {row.suffix} is taken")
    _BY_NAME[row.name] = row
    if row.load is not None:
        EXPORTED_SUFFIXES[row.suffix] = row
    return row


def list_formats(task: str | None = None) -> list[ExportFormat]:
    """The export formats, or those that take `task`'s models."""
    return [row for row in _BY_NAME.values() if task is None or task in row.tasks or ANY_TASK in row.tasks]


def accepted(row: ExportFormat, task: str) -> frozenset[str]:
    """The options `row` takes for `task`'s models."""
    return row.tasks.get(task, row.tasks.get(ANY_TASK, frozenset()))


def get_format(name: str, task: str | None = None) -> ExportFormat:
    """The row of format `name`; ValueError naming the formats there are (for `task`'s models, if given)."""
    choices = [row.name for row in list_formats(task)]
    if name not in choices:
        raise ValueError(f"unknown format {name!r}; choose from {', '.join(choices)}")
    return _BY_NAME[name]


def _verb(option: str, singular: str, plural: str) -> str:
    return plural if " and " in OPTION_NAMES[option] else singular


def check_request(format: str, task: str, output: str | Path | None = None, **options: Any) -> ExportFormat:
    """The row of `format`, once `options` (the names in OPTION_NAMES; None, False and 0 are not asking) are found
    to fit it for `task`'s models and each other, and `output`'s suffix fits it; else ValueError, one line
    naming the option or file."""
    row = get_format(format, task)
    if unknown := sorted(set(options) - set(OPTION_NAMES)):
        raise TypeError(f"unknown export option {unknown[0]!r}")
    if (qat := options.get("qat_epochs") or 0) < 0:
        raise ValueError(f"--qat-epochs must be 0 or more, got {qat}")
    given = [name for name in OPTION_NAMES if options.get(name) not in (None, False, 0) or
             (name == "reduce_range" and options.get(name) is False)]
    for name in given:
        if name in INT8_OPTIONS and "int8" not in given:
            extra = " and a trained --checkpoint" if name == "qat_epochs" else ""
            raise ValueError(f"{OPTION_NAMES[name]} {_verb(name, 'needs', 'need')} --int8{extra}")
        if name in accepted(row, task):
            continue
        if not (takers := [other.name for other in list_formats(task) if name in accepted(other, task)]):
            raise ValueError(f"{OPTION_NAMES[name]} is not for a {task} model (no format takes it)")
        if len(takers) * 2 <= len(list_formats(task)):
            raise ValueError(f"{OPTION_NAMES[name]} {_verb(name, 'needs', 'need')} --format {' or '.join(takers)}")
        raise ValueError(f"{OPTION_NAMES[name]} {_verb(name, 'is', 'are')} not for --format {format}"
                         f"{f' ({row.not_for})' if row.not_for else ''}")
    if output is not None:
        check_suffix(row, output)
    return row


def check_suffix(row: ExportFormat, output: str | Path) -> None:
    """ValueError naming `output` when its suffix is another format's (`load_exported` goes by the suffix) or a
    checkpoint's."""
    suffix = Path(output).suffix
    if suffix == ".safetensors":
        raise ValueError(f"{output}: a .safetensors name is a checkpoint's, not a name for the {row.name} format")
    if suffix in EXPORTED_SUFFIXES and suffix != row.suffix:
        raise ValueError(f"{output}: a {suffix} name for the {row.name} format (use {row.suffix})")


def load_exported(path: str | Path, *, threads: int | None = None, spinning: bool = True) -> ExportedModel:
    """An exported model by its suffix: `.onnx` (onnxruntime) or `.pte` (ExecuTorch, needs the [executorch]
    extra). ValueError naming the file for a missing file, another suffix, or a file its runtime refuses.
    `spinning=False`: onnxruntime's threads sleep between runs (see `runtime.onnx_session`)."""
    path = Path(path)
    if path.suffix not in EXPORTED_SUFFIXES:
        raise ValueError(f"{path}: not an exported model (expected {' or '.join(EXPORTED_SUFFIXES)})")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    row = EXPORTED_SUFFIXES[path.suffix]
    if row.runtime is not None:
        require(*row.runtime, f"running {path.name}")
    return row.load(path, threads, spinning)
