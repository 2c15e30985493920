"""Read a .tflite flatbuffer into the graph IR (no TensorFlow needed).

Everything that can go wrong with a user's file ends here as one McunetError whose
message says what is wrong and what to do about it. The reader checks what it needs to
read the file at all (the file itself, vector lengths, buffer and opcode indices); every
rule about the graph it describes is checked once, by mcunet.validate, before anything
else runs.
"""
from __future__ import annotations

import contextlib
import os
import stat
import struct
from pathlib import Path

import flatbuffers
import numpy as np
import tflite
from tflite.BuiltinOptions import BuiltinOptions
from tflite.utils import BUILTIN_OPCODE2NAME

from . import opschema
from .errors import McunetError
from .graph import NP_TYPES, Graph, Op, QuantParams, Tensor
from .validate import validate

TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string",
                6: "bool", 7: "int16", 9: "int8", 10: "float64", 17: "int4"}
# The largest model file read: far above any microcontroller model (flash is a few MB), and
# small enough that reading one whole is harmless. Checked before reading.
MAX_MODEL_BYTES = 512 << 20

# The flatbuffer reader fails in these ways on bytes that are not what the schema says.
_DAMAGE = (IndexError, struct.error, ValueError, OverflowError)

def _why(exc: Exception) -> str:
    if isinstance(exc, (IndexError, struct.error)):
        return "an offset or a length points outside the file"
    return f"{type(exc).__name__}: {exc}"


class _Reader:
    """The raw flatbuffer, read with every damage reported as one McunetError that names
    what was being read."""

    def __init__(self, data: bytes, name: str):
        self.data = data
        self.name = name

    def damaged(self, what: str, why: str = "lies outside the file") -> McunetError:
        return McunetError(f"malformed .tflite '{self.name}': {what} {why}; is the file "
                           "truncated or damaged?")

    @contextlib.contextmanager
    def reading(self, what: str):
        try:
            yield
        except _DAMAGE as exc:
            raise self.damaged(what, f"could not be read ({_why(exc)})") from None
        except TypeError as exc:  # flatbuffers' check of an offset read from the bytes
            if "bad number" not in str(exc):
                raise
            raise self.damaged(what, "could not be read (an offset is out of range)") from None

    def length(self, obj, slot: int, elem: int, what: str) -> int:
        """The length of vector field `slot` of a table, checked to fit in the file."""
        tab = obj._tab
        o = tab.Offset(slot)
        if not o:
            return 0
        start, n = tab.Vector(o), tab.VectorLen(o)
        if start < 0 or start + n * elem > len(self.data):
            raise self.damaged(f"{what} ({n} entries)")
        return n

    def ints(self, obj, slot: int, dtype, what: str) -> list[int]:
        n = self.length(obj, slot, np.dtype(dtype).itemsize, what)
        if not n:
            return []
        start = obj._tab.Vector(obj._tab.Offset(slot))
        return [int(v) for v in np.frombuffer(self.data, dtype=np.dtype(dtype).newbyteorder("<"),
                                              count=n, offset=start)]

    def floats(self, obj, slot: int, what: str) -> np.ndarray:
        n = self.length(obj, slot, 4, what)
        if not n:
            return np.zeros(0, np.float32)
        start = obj._tab.Vector(obj._tab.Offset(slot))
        return np.frombuffer(self.data, dtype="<f4", count=n, offset=start).astype(np.float32)

    def string(self, obj, slot: int, what: str) -> str:
        tab = obj._tab
        o = tab.Offset(slot)
        if not o:
            return ""
        start = tab.Indirect(tab.Pos + o)
        n = self.length(obj, slot, 1, what)
        return bytes(self.data[start + 4:start + 4 + n]).decode(errors="replace")


def _raw_builtin_code(code) -> int:
    """OperatorCode.builtin_code as stored (the `tflite` package's BuiltinCode() substitutes the
    deprecated code below 127; TFLite takes the larger of the two, and so does mcunet)."""
    o = code._tab.Offset(10)
    return code._tab.Get(flatbuffers.number_types.Int32Flags, code._tab.Pos + o) if o else 0


def _options(op, kind: str):
    """The op's builtin options table, typed as its kind's table (mcunet.opschema), or None
    when it has none of that type (TFLite reads a table of another type as absent)."""
    options = opschema.OPTIONS.get(kind)
    if options is None or op.BuiltinOptionsType() != getattr(BuiltinOptions, options.table):
        return None
    table = op.BuiltinOptions()
    if table is None:
        return None
    typed = getattr(tflite, options.table)()
    typed.Init(table.Bytes, table.Pos)
    return typed


def _quant(t, r: _Reader, what: str) -> QuantParams | None:
    q = t.Quantization()
    if q is None:
        return None
    scale = r.floats(q, 8, f"{what}'s quantisation scales")
    if scale.size == 0:
        return None
    zp = np.asarray(r.ints(q, 10, np.int64, f"{what}'s zero points"), dtype=np.int64)
    return QuantParams(scale=scale, zero_point=zp, axis=int(q.QuantizedDimension()))


def _buffer_data(model, r: _Reader, t, index: int, name: str, dtype: str,
                 shape: tuple[int, ...], n_buffers: int):
    b = t.Buffer()
    if b == 0:
        return None  # buffer 0 is the empty sentinel
    if b >= n_buffers:
        raise McunetError(f"malformed .tflite '{r.name}': tensor {index} '{name}' refers to "
                          f"buffer {b}, but the model has {n_buffers} buffers")
    buf = model.Buffers(b)
    what = f"the data of tensor {index} '{name}' (buffer {b})"
    if buf.Offset() > 1:  # large models keep buffers after the flatbuffer
        offset, size = buf.Offset(), buf.Size()
        if offset + size > len(r.data):
            raise r.damaged(f"{what} ({size} bytes at offset {offset})")
        raw = bytes(r.data[offset:offset + size])
    else:
        n = r.length(buf, 4, 1, what)
        if n == 0:
            return None
        start = buf._tab.Vector(buf._tab.Offset(4))
        raw = bytes(r.data[start:start + n])
    if dtype not in NP_TYPES:
        raise McunetError(f"constant tensor {index} '{name}' has type {dtype}, which mcunet "
                          "cannot store")
    itemsize = np.dtype(NP_TYPES[dtype]).itemsize
    expected = 1
    for d in shape:
        expected *= d
    if len(raw) != expected * itemsize or any(d <= 0 for d in shape):
        raise McunetError(f"malformed .tflite '{r.name}': constant tensor {index} '{name}' holds "
                          f"{len(raw)} bytes but its shape {shape} of {dtype} needs "
                          f"{expected * itemsize if all(d > 0 for d in shape) else 'positive dimensions'}")
    return np.frombuffer(raw, dtype=np.dtype(NP_TYPES[dtype]).newbyteorder("<")) \
        .astype(NP_TYPES[dtype]).reshape(shape)


def read_tflite(path: str | Path) -> Graph:
    """Parse a .tflite file. Raises McunetError with a readable message on any bad input.
    Only regular files are read (a FIFO or a device would block or never end), at most
    MAX_MODEL_BYTES, and the identifier is checked on the first bytes before the rest."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise McunetError(f"no such file: {path}") from None
    except OSError as exc:
        raise McunetError(f"cannot read {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise McunetError(f"{path} is a directory; give the path of a .tflite file")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else "not a regular file")
        raise McunetError(f"{path} is {kind}; give the path of a .tflite file")
    if st.st_size > MAX_MODEL_BYTES:
        raise McunetError(f"{path} is {st.st_size:,} bytes; mcunet reads models of at most "
                          f"{MAX_MODEL_BYTES >> 20} MiB")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            _check_identifier(head, path.name)
            data = head + f.read(MAX_MODEL_BYTES + 1 - len(head))
    except OSError as exc:
        raise McunetError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_MODEL_BYTES:  # a file whose size stat did not tell (/proc, ...)
        raise McunetError(f"{path} holds more than {MAX_MODEL_BYTES >> 20} MiB; mcunet reads "
                          "models of at most that size")
    return parse_tflite(data, name=path.name)


def _check_identifier(data: bytes, name: str) -> None:
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise McunetError(
            f"'{name}' is not a TensorFlow Lite model (no TFL3 identifier"
            f"{'; the file is empty' if not data else ''}); give an int8 .tflite file")


def parse_tflite(data: bytes, name: str = "model") -> Graph:
    _check_identifier(data, name)
    if len(data) > MAX_MODEL_BYTES:
        raise McunetError(f"'{name}' is {len(data):,} bytes; mcunet reads models of at most "
                          f"{MAX_MODEL_BYTES >> 20} MiB")
    graph = _parse(bytes(data), name)
    validate(graph)
    return graph


def _parse(data: bytes, name: str) -> Graph:
    r = _Reader(data, name)
    with r.reading("the model's root table"):
        model = tflite.Model.GetRootAs(data, 0)
        n_sub = r.length(model, 8, 4, "the subgraph list")
    if n_sub != 1:
        raise McunetError(
            f"'{name}' has {n_sub} subgraphs; mcunet compiles single-subgraph models only "
            "(no control flow such as WHILE/IF). Export the model without control flow.")
    with r.reading("the subgraph"):
        sub = model.Subgraphs(0)
        n_buffers = r.length(model, 12, 4, "the buffer list")
        n_codes = r.length(model, 6, 4, "the operator code list")
        n_tensors = r.length(sub, 4, 4, "the tensor list")
        n_ops = r.length(sub, 10, 4, "the operator list")
    tensors: list[Tensor | None] = []
    for i in range(n_tensors):
        with r.reading(f"tensor {i}"):
            t = sub.Tensors(i)
            tname = r.string(t, 10, f"the name of tensor {i}")
            dtype = TENSOR_TYPES.get(t.Type(), f"type#{t.Type()}")
            shape = tuple(r.ints(t, 4, np.int32, f"the shape of tensor {i}"))
            if any(d <= 0 for d in shape):
                sig = tuple(r.ints(t, 18, np.int32, f"the shape signature of tensor {i}")) or shape
                raise McunetError(f"tensor {i} '{tname}' has a dynamic or empty shape {sig}; "
                                  "mcunet needs fixed shapes (batch size 1)")
            tensors.append(Tensor(id=i, name=tname, shape=shape, dtype=dtype,
                                  quant=_quant(t, r, f"tensor {i}"),
                                  data=_buffer_data(model, r, t, i, tname, dtype, shape,
                                                    n_buffers)))
    ops: list[Op] = []
    for i in range(n_ops):
        with r.reading(f"operator {i}"):
            op = sub.Operators(i)
            opcode = op.OpcodeIndex()
            if opcode >= n_codes:
                raise McunetError(f"malformed .tflite '{name}': operator {i} has opcode index "
                                  f"{opcode}, but the model has {n_codes} operator codes")
            code = model.OperatorCodes(opcode)
            builtin = max(_raw_builtin_code(code), code.DeprecatedBuiltinCode())
            kind = BUILTIN_OPCODE2NAME.get(builtin, f"BUILTIN_{builtin}")
            if kind == "CUSTOM":
                kind = "CUSTOM:" + (r.string(code, 6, f"the custom code of operator {i}") or "?")
            inputs = r.ints(op, 6, np.int32, f"the inputs of operator {i}")
            outputs = r.ints(op, 8, np.int32, f"the outputs of operator {i}")
            attrs = opschema.read_attrs(kind, _options(op, kind), f"{kind} at index {i}")
        ops.append(Op(index=i, kind=kind, inputs=inputs, outputs=outputs, attrs=attrs))
    with r.reading("the subgraph's inputs and outputs"):
        inputs = r.ints(sub, 6, np.int32, "the subgraph's inputs")
        outputs = r.ints(sub, 8, np.int32, "the subgraph's outputs")
    return Graph(tensors=tensors, ops=ops, inputs=inputs, outputs=outputs, name=name)
