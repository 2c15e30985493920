"""Read a .tflite flatbuffer into the graph IR (no TensorFlow needed).

Everything that can go wrong with a user's file ends here as one McunetError whose
message says what is wrong and what to do about it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tflite
from tflite.utils import BUILTIN_OPCODE2NAME

from . import opschema
from .errors import McunetError
from .graph import NP_TYPES, Graph, Op, QuantParams, Tensor
from .passes import FOLDABLE_OPS

TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string",
                6: "bool", 7: "int16", 9: "int8", 10: "float64", 17: "int4"}


def _options(kind: str, op):
    """The operator's options table, typed as its kind's table, or None."""
    options = opschema.OPTIONS.get(kind)
    table = op.BuiltinOptions()
    if options is None or table is None:
        return None
    typed = getattr(tflite, options.table)()
    typed.Init(table.Bytes, table.Pos)
    return typed


def _quant(t) -> QuantParams | None:
    q = t.Quantization()
    if q is None or q.ScaleLength() == 0:
        return None
    scale = np.asarray(q.ScaleAsNumpy(), dtype=np.float32).reshape(-1)
    zp = (np.asarray(q.ZeroPointAsNumpy(), dtype=np.int64).reshape(-1)
          if q.ZeroPointLength() else np.zeros_like(scale, dtype=np.int64))
    if zp.size == 1 and scale.size > 1:
        zp = np.repeat(zp, scale.size)
    return QuantParams(scale=scale, zero_point=zp, axis=int(q.QuantizedDimension()))


def _buffer_data(model, data: bytes, t, dtype: str, shape: tuple[int, ...]):
    buf = model.Buffers(t.Buffer())
    if buf is None:
        return None
    if buf.Offset() > 1:  # large models keep buffers after the flatbuffer
        raw = np.frombuffer(data, dtype=np.uint8, count=buf.Size(), offset=buf.Offset())
    elif buf.DataLength() > 0:
        raw = buf.DataAsNumpy()
    else:
        return None
    if dtype not in NP_TYPES:
        raise McunetError(f"constant tensor '{t.Name().decode()}' has type {dtype}, "
                          "which mcunet cannot store")
    arr = np.frombuffer(raw.tobytes(), dtype=NP_TYPES[dtype])
    expected = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if arr.size != expected:
        raise McunetError(f"malformed .tflite: constant tensor '{t.Name().decode()}' holds "
                          f"{arr.size} values but its shape {shape} needs {expected}")
    return arr.reshape(shape).copy()


def read_tflite(path: str | Path) -> Graph:
    """Parse a .tflite file. Raises McunetError with a readable message on any bad input."""
    path = Path(path)
    if not path.exists():
        raise McunetError(f"no such file: {path}")
    if path.is_dir():
        raise McunetError(f"{path} is a directory; give the path of a .tflite file")
    data = path.read_bytes()
    return parse_tflite(data, name=path.name)


def parse_tflite(data: bytes, name: str = "model") -> Graph:
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise McunetError(
            f"'{name}' is not a TensorFlow Lite model (no TFL3 identifier"
            f"{'; the file is empty' if not data else ''}); give an int8 .tflite file")
    try:
        graph = _parse(data, name)
    except McunetError:
        raise
    except Exception as exc:  # the flatbuffer reader fails in many ways on damaged files
        raise McunetError(f"malformed .tflite '{name}': the flatbuffer could not be read "
                          f"({type(exc).__name__}: {exc}); is the file truncated?") from None
    check_int8(graph)
    return graph


def _parse(data: bytes, name: str) -> Graph:
    model = tflite.Model.GetRootAs(data, 0)
    n_sub = model.SubgraphsLength()
    if n_sub != 1:
        raise McunetError(
            f"'{name}' has {n_sub} subgraphs; mcunet compiles single-subgraph models only "
            "(no control flow such as WHILE/IF). Export the model without control flow.")
    sub = model.Subgraphs(0)
    tensors: list[Tensor | None] = []
    for i in range(sub.TensorsLength()):
        t = sub.Tensors(i)
        dtype = TENSOR_TYPES.get(t.Type(), f"type#{t.Type()}")
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        if any(d <= 0 for d in shape):
            sig = tuple(int(d) for d in t.ShapeSignatureAsNumpy()) if t.ShapeSignatureLength() else shape
            raise McunetError(f"tensor '{t.Name().decode()}' has a dynamic or empty shape {sig}; "
                              "mcunet needs fixed shapes (batch size 1)")
        tensors.append(Tensor(id=i, name=t.Name().decode(errors="replace"), shape=shape,
                              dtype=dtype, quant=_quant(t),
                              data=_buffer_data(model, data, t, dtype, shape)))
    ops: list[Op] = []
    for i in range(sub.OperatorsLength()):
        op = sub.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        kind = BUILTIN_OPCODE2NAME.get(builtin, f"BUILTIN_{builtin}")
        if kind == "CUSTOM":
            kind = "CUSTOM:" + (code.CustomCode() or b"?").decode(errors="replace")
        inputs = [int(x) for x in op.InputsAsNumpy()] if op.InputsLength() else []
        outputs = [int(x) for x in op.OutputsAsNumpy()] if op.OutputsLength() else []
        attrs = opschema.read_attrs(kind, _options(kind, op), f"{kind} at index {i}")
        ops.append(Op(index=i, kind=kind, inputs=inputs, outputs=outputs, attrs=attrs))
    inputs = [int(x) for x in sub.InputsAsNumpy()]
    outputs = [int(x) for x in sub.OutputsAsNumpy()]
    return Graph(tensors=tensors, ops=ops, inputs=inputs, outputs=outputs, name=name)


def check_int8(graph: Graph) -> None:
    """Reject a model that is not fully int8-quantised (float or 16-bit activations anywhere
    but at the model's edges), naming the first offending op and its index. Which operators
    mcunet supports is the code generator's to say (mcunet.codegen.lower.supported_ops)."""
    # Float or 16-bit activations anywhere but at the model's edges mean the model was not
    # fully quantised to int8.
    for op in graph.ops:
        if op.kind in FOLDABLE_OPS or op.kind in ("QUANTIZE", "DEQUANTIZE"):
            continue
        for tid in op.inputs + op.outputs:
            if tid < 0 or graph.t(tid).is_const:
                continue
            t = graph.t(tid)
            if t.dtype in ("float32", "float16", "float64"):
                raise McunetError(
                    f"'{graph.name}' is a float model ({op.kind} at index {op.index} works on "
                    f"{t.dtype} tensor '{t.name}'); mcunet needs a fully int8-quantised model: "
                    "convert with TFLite's converter, a representative dataset and "
                    "target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]")
            if t.dtype in ("int16", "uint8"):
                raise McunetError(
                    f"{op.kind} at index {op.index} works on {t.dtype} tensor '{t.name}'; "
                    "mcunet supports int8 activations only (no 16x8 or uint8 quantisation)")
            if t.dtype == "int8" and t.quant is None:
                raise McunetError(f"int8 tensor '{t.name}' of {op.kind} at index {op.index} "
                                  "has no quantisation parameters")
