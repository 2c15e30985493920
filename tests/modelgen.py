"""Build small .tflite models directly, with exact control over shapes and quantisation.

No TensorFlow involved: the flatbuffer is written with `flatbuffers.Builder` and the
table-builder functions of the `tflite` package (generated from TFLite's schema.fbs).

    m = ModelBuilder()
    x = m.input((1, 8, 8, 3), "int8", scale=0.05, zero_point=-3)
    w = m.const(weights_int8, scale=[...], zero_point=[0, ...], quantized_dimension=0)
    b = m.const(bias_int32, scale=[...], zero_point=[0, ...])
    y = m.tensor((1, 8, 8, 4), "int8", scale=0.1, zero_point=2)
    m.op("CONV_2D", [x, w, b], [y], padding="SAME", fused_activation="RELU")
    m.output(y)
    data = m.build()                       # bytes of a .tflite file
    outs = run_reference(data, [x_int8])   # TFLite's reference kernels

Tensor handles are plain ints (indices into the subgraph's tensor list); -1 marks an
omitted optional operator input (e.g. FULLY_CONNECTED without bias).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

import flatbuffers
import numpy as np
import tflite
from tflite.BuiltinOperator import BuiltinOperator
from tflite.BuiltinOptions import BuiltinOptions
from tflite.TensorType import TensorType

from mcunet import opschema

# dtype name -> (TensorType enum value, numpy dtype)
DTYPES = {
    "float32": (TensorType.FLOAT32, np.float32),  # 0
    "int32": (TensorType.INT32, np.int32),        # 2
    "uint8": (TensorType.UINT8, np.uint8),        # 3
    "int64": (TensorType.INT64, np.int64),        # 4
    "int16": (TensorType.INT16, np.int16),        # 7
    "int8": (TensorType.INT8, np.int8),           # 9
}
_NUMPY_TO_NAME = {np.dtype(npt).name: name for name, (_, npt) in DTYPES.items()}

# Defaults applied when the caller does not give the option (schema defaults are 0 for these,
# which the kernels reject or which would be a surprising default).
DEFAULTS = {
    "Conv2DOptions": {"stride_w": 1, "stride_h": 1, "dilation_w": 1, "dilation_h": 1},
    "DepthwiseConv2DOptions": {"stride_w": 1, "stride_h": 1, "dilation_w": 1, "dilation_h": 1},
    "Pool2DOptions": {"stride_w": 1, "stride_h": 1, "filter_width": 1, "filter_height": 1},
    "SoftmaxOptions": {"beta": 1.0},
}

# A short name for the fused activation; every other option is named as in mcunet's attrs
# (mcunet.opschema) or as the schema field itself.
_ALIASES = {"fused_activation": "activation"}


def _schema_name(kind: str, name: str) -> str:
    """The schema field an option name means for an op of `kind`."""
    name = _ALIASES.get(name, name)
    options = opschema.OPTIONS.get(kind)
    field = options.field(name) if options else None
    return field.schema if field else name


@dataclass
class _Tensor:
    shape: tuple[int, ...]
    dtype: str
    name: str
    buffer: int = 0                       # 0: no data (the empty sentinel buffer)
    scale: list[float] | None = None
    zero_point: list[int] | None = None
    quantized_dimension: int = 0


@dataclass
class _Op:
    kind: str
    inputs: list[int]
    outputs: list[int]
    table: str | None                     # options table name, or None
    options: dict                         # schema field name -> raw (enum-resolved) value
    version: int = 1


class ModelBuilder:
    """Collects tensors and operators of one subgraph, then serialises a TFLite model."""

    def __init__(self, num_subgraphs: int = 1, description: str = "mcunet modelgen"):
        self.num_subgraphs = num_subgraphs
        self.description = description
        self.tensors: list[_Tensor] = []
        self.buffers: list[bytes] = [b""]  # buffer 0 must be empty
        self.ops: list[_Op] = []
        self.inputs: list[int] = []
        self.outputs: list[int] = []

    # ----------------------------------------------------------------- tensors
    def tensor(self, shape, dtype: str = "int8", scale=None, zero_point=None,
               quantized_dimension: int = 0, name: str | None = None,
               data: np.ndarray | None = None) -> int:
        """Add a tensor and return its handle. `scale` may be a scalar (per-tensor) or a list
        (per-axis along `quantized_dimension`); no scale means no quantisation parameters.
        `data` makes it a constant (stored in its own buffer)."""
        if dtype not in DTYPES:
            raise ValueError(f"unsupported dtype {dtype!r}; use one of {sorted(DTYPES)}")
        t = _Tensor(tuple(int(d) for d in shape), dtype, name or f"tensor_{len(self.tensors)}")
        if scale is not None:
            scales = [float(s) for s in np.atleast_1d(scale)]
            zps = [int(z) for z in np.atleast_1d(0 if zero_point is None else zero_point)]
            if len(zps) == 1 and len(scales) > 1:
                zps *= len(scales)
            if len(zps) != len(scales):
                raise ValueError("scale and zero_point lengths differ")
            t.scale, t.zero_point, t.quantized_dimension = scales, zps, int(quantized_dimension)
        if data is not None:
            arr = np.asarray(data, dtype=DTYPES[dtype][1])
            if arr.shape != t.shape:
                raise ValueError(f"data shape {arr.shape} != tensor shape {t.shape}")
            self.buffers.append(np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes())
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        return len(self.tensors) - 1

    def input(self, shape, dtype: str = "int8", **kw) -> int:
        """A tensor that is also a subgraph input (in call order)."""
        tid = self.tensor(shape, dtype, **kw)
        self.inputs.append(tid)
        return tid

    def const(self, data, scale=None, zero_point=None, quantized_dimension: int = 0,
              name: str | None = None, dtype: str | None = None) -> int:
        """A constant tensor; shape and dtype come from the numpy array unless `dtype` is given."""
        arr = np.asarray(data)
        dtype = dtype or _NUMPY_TO_NAME.get(arr.dtype.name)
        if dtype is None:
            raise ValueError(f"unsupported constant dtype {arr.dtype}")
        return self.tensor(arr.shape, dtype, scale=scale, zero_point=zero_point,
                           quantized_dimension=quantized_dimension, name=name, data=arr)

    def output(self, tid: int) -> None:
        """Mark a tensor as a subgraph output (in call order)."""
        self.outputs.append(tid)

    # --------------------------------------------------------------- operators
    def op(self, kind: str, inputs, outputs, *, options: str | None = None, version: int = 1,
           **kwargs) -> None:
        """Add builtin operator `kind` (a BuiltinOperator name such as "CONV_2D" or "TANH").

        Options are keyword arguments named like the schema fields in snake_case
        (`fused_activation` / `dilation_w` / `dilation_h` short forms accepted). Enum-valued
        options take names: padding="SAME"|"VALID", fused_activation="NONE"|"RELU"|"RELU6"|
        "RELU_N1_TO_1", out_type="int32". Vector options (new_shape, squeeze_dims) take lists.
        """
        if not hasattr(BuiltinOperator, kind):
            raise ValueError(f"unknown builtin operator {kind!r}")
        inputs, outputs = [int(i) for i in inputs], [int(o) for o in outputs]
        table = options or (opschema.OPTIONS[kind].table if kind in opschema.OPTIONS else None)
        if table is None:
            if kwargs:
                raise TypeError(f"{kind} has no options table here; got {sorted(kwargs)}")
            self.ops.append(_Op(kind, inputs, outputs, None, {}, version))
            return

        values = {_schema_name(kind, k): v for k, v in DEFAULTS.get(table, {}).items()}
        values.update({_schema_name(kind, k): v
                       for k, v in self._derived_defaults(kind, inputs, outputs).items()})
        values.update({_schema_name(kind, k): v for k, v in kwargs.items()})
        module = importlib.import_module(f"tflite.{table}")
        resolved = {}
        for field, value in values.items():
            if not hasattr(module, f"{table}Add{opschema.camel(field)}"):
                raise TypeError(f"{kind} ({table}) has no option {field!r}")
            resolved[field] = _resolve_enum(kind, field, value)
        self.ops.append(_Op(kind, inputs, outputs, table, resolved, version))

    def _derived_defaults(self, kind: str, inputs: list[int], outputs: list[int]) -> dict:
        """Option defaults that follow from the operands, as the converter would write them."""
        if kind == "DEPTHWISE_CONV_2D" and len(inputs) >= 2:
            in_ch, out_ch = self.tensors[inputs[0]].shape[-1], self.tensors[inputs[1]].shape[-1]
            return {"depth_multiplier": max(out_ch // max(in_ch, 1), 1)}
        if kind == "SHAPE" and outputs:
            return {"out_type": self.tensors[outputs[0]].dtype}
        if kind == "PACK":
            return {"values_count": len(inputs)}
        return {}

    # ---------------------------------------------------------- serialisation
    def build(self, extra_subgraph: bool = False) -> bytes:
        """Serialise to .tflite bytes. Extra subgraphs (num_subgraphs > 1 or extra_subgraph)
        are copies of the main one; they exist only for "multiple subgraphs" error tests."""
        b = flatbuffers.Builder(1024)
        buffers = [self._write_buffer(b, data) for data in self.buffers]

        kinds = []                               # distinct (kind, version), in first-use order
        for op in self.ops:
            if (op.kind, op.version) not in kinds:
                kinds.append((op.kind, op.version))
        opcodes = [self._write_opcode(b, kind, version) for kind, version in kinds]

        n_sub = self.num_subgraphs + (1 if extra_subgraph else 0)
        subgraphs = [self._write_subgraph(b, kinds, "main" if i == 0 else f"subgraph_{i}")
                     for i in range(n_sub)]
        description = b.CreateString(self.description)

        buffers_vec = _offset_vector(b, buffers)
        opcodes_vec = _offset_vector(b, opcodes)
        subgraphs_vec = _offset_vector(b, subgraphs)
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, 3)
        tflite.ModelAddOperatorCodes(b, opcodes_vec)
        tflite.ModelAddSubgraphs(b, subgraphs_vec)
        tflite.ModelAddDescription(b, description)
        tflite.ModelAddBuffers(b, buffers_vec)
        b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    @staticmethod
    def _write_buffer(b: flatbuffers.Builder, data: bytes) -> int:
        data_vec = _bytes_vector(b, data, alignment=16) if data else None
        tflite.BufferStart(b)
        if data_vec is not None:
            tflite.BufferAddData(b, data_vec)
        return tflite.BufferEnd(b)

    @staticmethod
    def _write_opcode(b: flatbuffers.Builder, kind: str, version: int) -> int:
        code = getattr(BuiltinOperator, kind)
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        tflite.OperatorCodeAddBuiltinCode(b, code)
        tflite.OperatorCodeAddVersion(b, version)
        return tflite.OperatorCodeEnd(b)

    def _write_subgraph(self, b: flatbuffers.Builder, kinds: list, name: str) -> int:
        tensors = [self._write_tensor(b, t) for t in self.tensors]
        operators = [self._write_operator(b, op, kinds.index((op.kind, op.version)))
                     for op in self.ops]
        tensors_vec = _offset_vector(b, tensors)
        operators_vec = _offset_vector(b, operators)
        inputs_vec = b.CreateNumpyVector(np.array(self.inputs, np.int32))
        outputs_vec = b.CreateNumpyVector(np.array(self.outputs, np.int32))
        name_str = b.CreateString(name)
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, tensors_vec)
        tflite.SubGraphAddInputs(b, inputs_vec)
        tflite.SubGraphAddOutputs(b, outputs_vec)
        tflite.SubGraphAddOperators(b, operators_vec)
        tflite.SubGraphAddName(b, name_str)
        return tflite.SubGraphEnd(b)

    @staticmethod
    def _write_tensor(b: flatbuffers.Builder, t: _Tensor) -> int:
        quant = None
        if t.scale is not None:
            scale_vec = b.CreateNumpyVector(np.array(t.scale, np.float32))
            zp_vec = b.CreateNumpyVector(np.array(t.zero_point, np.int64))
            tflite.QuantizationParametersStart(b)
            tflite.QuantizationParametersAddScale(b, scale_vec)
            tflite.QuantizationParametersAddZeroPoint(b, zp_vec)
            tflite.QuantizationParametersAddQuantizedDimension(b, t.quantized_dimension)
            quant = tflite.QuantizationParametersEnd(b)
        shape_vec = b.CreateNumpyVector(np.array(t.shape, np.int32))
        name_str = b.CreateString(t.name)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape_vec)
        tflite.TensorAddType(b, DTYPES[t.dtype][0])
        tflite.TensorAddBuffer(b, t.buffer)
        tflite.TensorAddName(b, name_str)
        if quant is not None:
            tflite.TensorAddQuantization(b, quant)
        return tflite.TensorEnd(b)

    @staticmethod
    def _write_operator(b: flatbuffers.Builder, op: _Op, opcode_index: int) -> int:
        options = _write_options(b, op.table, op.options) if op.table else None
        inputs_vec = b.CreateNumpyVector(np.array(op.inputs, np.int32))
        outputs_vec = b.CreateNumpyVector(np.array(op.outputs, np.int32))
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, opcode_index)
        tflite.OperatorAddInputs(b, inputs_vec)
        tflite.OperatorAddOutputs(b, outputs_vec)
        if options is not None:
            tflite.OperatorAddBuiltinOptionsType(b, getattr(BuiltinOptions, op.table))
            tflite.OperatorAddBuiltinOptions(b, options)
        return tflite.OperatorEnd(b)


# ------------------------------------------------------------------ helpers
def _resolve_enum(kind: str, field: str, value):
    """Map enum option names to schema values; other values pass through."""
    options = opschema.OPTIONS.get(kind)
    known = options.field(field) if options else None
    if known is not None and known.enum is not None and isinstance(value, str):
        return known.encode(value)
    if field in ("out_type", "output_type", "idx_out_type") and isinstance(value, str):
        return DTYPES[value][0]
    if isinstance(value, (list, tuple, np.ndarray)):
        return [int(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    return value


def _write_options(b: flatbuffers.Builder, table: str, fields: dict) -> int:
    """Write one options table via the generated <Table>Start/Add<Field>/End functions.
    List values become int32 vectors, which must be created before the table is started."""
    module = importlib.import_module(f"tflite.{table}")
    vectors = {f: b.CreateNumpyVector(np.array(v, np.int32))
               for f, v in fields.items() if isinstance(v, list)}
    getattr(module, f"{table}Start")(b)
    for field, value in fields.items():
        getattr(module, f"{table}Add{opschema.camel(field)}")(b, vectors.get(field, value))
    return getattr(module, f"{table}End")(b)


def _offset_vector(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _bytes_vector(b: flatbuffers.Builder, data: bytes, alignment: int) -> int:
    """A [ubyte] vector whose payload starts on an `alignment`-byte boundary (the schema
    declares Buffer.data with force_align: 16, so int32/float32 constants stay aligned)."""
    b.StartVector(1, len(data), alignment)
    b.head = b.head - len(data)
    b.Bytes[b.head:b.head + len(data)] = data
    return b.EndVector()


def run_reference(model: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """One invoke of TFLite's reference kernels (BUILTIN_REF); inputs include the batch dim."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=bytes(model),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    details = interp.get_input_details()
    if len(details) != len(inputs):
        raise ValueError(f"model has {len(details)} inputs, got {len(inputs)}")
    for d, x in zip(details, inputs):
        interp.set_tensor(d["index"], np.asarray(x, dtype=d["dtype"]))
    interp.invoke()
    return [interp.get_tensor(d["index"]) for d in interp.get_output_details()]
