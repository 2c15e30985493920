"""`mcunet evaluate`: the top-1 accuracy of an int8 model on a labelled dataset as the
generated code computes it (on the host, or on an emulated board under QEMU), beside the
float model's when there is one, with a confusion matrix. What Cube.AI's "validate" and
Edge Impulse's model testing report, for the code that actually ships."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .boards.firmware import run_on_board
from .errors import McunetError
from .host import build_host, quantize_rows
from .progress import counted
from .reference import expected_outputs
from .search.data import load_dataset, model_inputs
from .search.export import load_keras

# Rows per firmware build on a board: they are compiled into the image (flash).
BOARD_ROW_BYTES = 256 * 1024
DEFAULT_BOARD_ROWS = 500  # QEMU runs a few hundred inferences in seconds, not 10,000


@dataclass(frozen=True)
class Evaluation:
    where: str  # "host" or the board's name
    rows: int
    split: str  # "test" or "validation"
    classes: tuple[str, ...]
    top1: float
    confusion: np.ndarray  # [true class][predicted class]
    float_top1: float | None  # the float (Keras) model's, on the same rows
    reference_agrees: bool | None  # the generated code's outputs equal TFLite's reference

    def to_json(self) -> dict:
        return {"where": self.where, "rows": self.rows, "split": self.split,
                "classes": list(self.classes), "top1": self.top1,
                "float_top1": self.float_top1, "bit_exact_with_tflite": self.reference_agrees,
                "confusion": self.confusion.tolist()}


def evaluate(compiled, tflite: Path, dataset: str, *, board=None, limit: int | None = None,
             float_model: Path | None = None, input_range=(0.0, 1.0), seed: int = 0,
             check: bool = True) -> Evaluation:
    """Run the compiled model on the dataset's test split (or its validation split when it
    has none) and score the top-1 class of its first output."""
    ds = load_dataset(dataset, seed=seed)
    split, split_name = (ds.test, "test") if ds.test is not None else (ds.val, "validation")
    if limit is None and board is not None:
        limit = DEFAULT_BOARD_ROWS
    if limit is not None:
        split = split.subset(limit, seed)
    g = compiled.graph
    shape = g.t(g.inputs[0]).shape
    x = model_inputs(split.x, shape, input_range)
    q = quantize_rows(x, g)
    n = len(q)
    if board is None:
        host = build_host(compiled)
        chunk = 500
        outs = [host.run([q[i:i + chunk]])[0][0]
                for i in counted(range(0, n, chunk), -(-n // chunk), "evaluating on the host",
                                 "batch")]
        where = "host"
    else:
        per = max(1, BOARD_ROW_BYTES // max(q[0].nbytes, 1))
        outs = [run_on_board(compiled, board, [q[i:i + per]]).outputs[0]
                for i in counted(range(0, n, per), -(-n // per), f"evaluating on {board.name}",
                                 "build")]
        where = board.name
    y = np.concatenate(outs).reshape(n, -1)
    if y.shape[1] != len(ds.classes):
        raise McunetError(f"the model has {y.shape[1]} outputs and the dataset "
                          f"{len(ds.classes)} classes")
    pred = y.argmax(1)
    confusion = np.zeros((len(ds.classes), len(ds.classes)), np.int64)
    np.add.at(confusion, (split.y, pred), 1)
    agrees = None
    if check:
        ref = expected_outputs(Path(tflite).read_bytes(), [q],
                               compiled.options.arithmetic)[0].reshape(n, -1)
        agrees = bool(np.array_equal(ref, y))
    float_top1 = None
    if float_model is not None:
        keras = load_keras(float_model)
        if not hasattr(keras, "predict"):
            raise McunetError(f"{float_model} is a SavedModel without Keras' predict(); give "
                              "the .keras or .h5 file for the float accuracy")
        logits = keras.predict(x, batch_size=256, verbose=0)
        float_top1 = float((np.asarray(logits).argmax(1) == split.y).mean())
    return Evaluation(where=where, rows=n, split=split_name, classes=tuple(ds.classes),
                      top1=float((pred == split.y).mean()), confusion=confusion,
                      float_top1=float_top1, reference_agrees=agrees)


def confusion_table(e: Evaluation) -> str:
    """Rows: the true class; columns: the predicted one (class numbers; names beside)."""
    k = len(e.classes)
    width = max(4, len(f"{int(e.confusion.max()):,}") + 1)
    lines = ["true \\ predicted  " + "".join(f"{j:>{width}}" for j in range(k))]
    for i in range(k):
        lines.append(f"{i:>2} {e.classes[i][:14]:<14} " +
                     "".join(f"{int(v):>{width},}" for v in e.confusion[i]))
    return "\n".join(lines)
