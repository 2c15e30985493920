"""The builtin options of TFLite operators, written once: which options table an operator
carries and how each field of it becomes an entry of `Op.attrs`.

The frontend reads options with it, tests/modelgen.py writes them with it, and
search/graph.py builds the attrs of the graphs it plans with it, so the three agree by
construction. Field names follow TFLite's schema.fbs (snake_case); the flatbuffer accessor
of a field is its CamelCase form (`dilation_h_factor` -> `DilationHFactor()`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import McunetError

PADDING = ("SAME", "VALID")  # schema value -> name
ACTIVATIONS = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT")


@dataclass(frozen=True)
class Field:
    attr: str  # the Op.attrs key
    schema: str  # the field in schema.fbs
    kind: type = int  # int, bool or float
    enum: tuple[str, ...] | None = None  # names of an enum's values (attrs hold the names)
    default: Any = 0  # the schema's default (what a reader gets for an absent field)
    absent: Any = None  # what TFLite assumes when the whole table is absent, if not `default`

    def decode(self, raw, where: str) -> Any:
        if self.kind is list:
            return [int(v) for v in raw]
        if self.enum is not None:
            if not 0 <= raw < len(self.enum):
                raise McunetError(f"{where}: {self.schema} is {raw}, which is not one of "
                                  f"TFLite's values ({', '.join(self.enum)})")
            return self.enum[raw]
        return self.kind(raw)

    @property
    def value_if_absent(self) -> Any:
        """The attr value of an absent field (an enum's by its name)."""
        if self.kind is list:
            return list(self.default)
        return self.enum[self.default] if self.enum is not None else self.default

    def encode(self, value) -> Any:
        if self.enum is not None and isinstance(value, str):
            return self.enum.index(value)
        return value


@dataclass(frozen=True)
class Options:
    table: str  # the options table's name, e.g. "Conv2DOptions"
    fields: tuple[Field, ...] = ()
    # The op means nothing without its table (strides, padding): absent, the attrs are only
    # {"no_options": True}, which mcunet.validate rejects with a message.
    required: bool = False

    def field(self, name: str) -> Field | None:
        """A field by its attrs key or its schema name."""
        for f in self.fields:
            if name in (f.attr, f.schema):
                return f
        return None


def camel(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


_PADDING = Field("padding", "padding", enum=PADDING)
_STRIDE_W = Field("stride_w", "stride_w")
_STRIDE_H = Field("stride_h", "stride_h")
_DILATION_W = Field("dilation_w", "dilation_w_factor", default=1)
_DILATION_H = Field("dilation_h", "dilation_h_factor", default=1)
_ACTIVATION = Field("activation", "fused_activation_function", enum=ACTIVATIONS)
_POOL = Options("Pool2DOptions", (_PADDING, _STRIDE_W, _STRIDE_H,
                                  Field("filter_w", "filter_width"),
                                  Field("filter_h", "filter_height"), _ACTIVATION), required=True)

OPTIONS: dict[str, Options] = {
    "CONV_2D": Options("Conv2DOptions", (_PADDING, _STRIDE_W, _STRIDE_H, _DILATION_W,
                                         _DILATION_H, _ACTIVATION), required=True),
    "DEPTHWISE_CONV_2D": Options("DepthwiseConv2DOptions", (
        _PADDING, _STRIDE_W, _STRIDE_H, _DILATION_W, _DILATION_H,
        Field("depth_multiplier", "depth_multiplier"), _ACTIVATION), required=True),
    "FULLY_CONNECTED": Options("FullyConnectedOptions", (
        _ACTIVATION, Field("weights_format", "weights_format"),
        Field("keep_num_dims", "keep_num_dims", bool, default=False))),
    "ADD": Options("AddOptions", (_ACTIVATION,)),
    "SUB": Options("SubOptions", (_ACTIVATION,)),
    "MUL": Options("MulOptions", (_ACTIVATION,)),
    "AVERAGE_POOL_2D": _POOL,
    "MAX_POOL_2D": _POOL,
    "MEAN": Options("ReducerOptions", (Field("keep_dims", "keep_dims", bool, default=False),)),
    "SUM": Options("ReducerOptions", (Field("keep_dims", "keep_dims", bool, default=False),)),
    # Without a table TFLite's parser leaves beta zero-initialised.
    "SOFTMAX": Options("SoftmaxOptions", (Field("beta", "beta", float, default=0.0),)),
    "CONCATENATION": Options("ConcatenationOptions", (Field("axis", "axis"), _ACTIVATION)),
    "STRIDED_SLICE": Options("StridedSliceOptions", (
        Field("begin_mask", "begin_mask"), Field("end_mask", "end_mask"),
        Field("ellipsis_mask", "ellipsis_mask"), Field("new_axis_mask", "new_axis_mask"),
        Field("shrink_axis_mask", "shrink_axis_mask"),
        Field("offset", "offset", bool, default=False))),
    "PACK": Options("PackOptions", (Field("values_count", "values_count"), Field("axis", "axis"))),
    # Tables mcunet reads nothing from (the op's meaning lies in its tensors).
    "PAD": Options("PadOptions"),
    "PADV2": Options("PadV2Options"),
    "RESHAPE": Options("ReshapeOptions", (Field("new_shape", "new_shape", list, default=()),)),
    "SQUEEZE": Options("SqueezeOptions", (Field("squeeze_dims", "squeeze_dims", list, default=()),)),
    "QUANTIZE": Options("QuantizeOptions"),
    "DEQUANTIZE": Options("DequantizeOptions"),
    "HARD_SWISH": Options("HardSwishOptions"),
    # TFLite takes the output type from the table (a TensorType), not from the output tensor:
    # without the table it has none and rejects the model.
    "SHAPE": Options("ShapeOptions", (Field("out_type", "out_type"),), required=True),
    "GATHER": Options("GatherOptions"),
    "TRANSPOSE": Options("TransposeOptions"),
}


def read_attrs(kind: str, table, where: str) -> dict:
    """The attrs of an op from its options table (a flatbuffer table object, already typed,
    or None when the operator carries none); `where` names the op in errors."""
    options = OPTIONS.get(kind)
    if options is None:
        return {}
    if table is None and options.required:
        return {"no_options": True}
    attrs = {}
    for f in options.fields:
        if table is None:
            attrs[f.attr] = f.value_if_absent if f.absent is None else f.absent
            continue
        if f.kind is list:  # a vector: its elements, [] where the table leaves it out
            n = getattr(table, camel(f.schema) + "Length")()
            attrs[f.attr] = f.decode(getattr(table, camel(f.schema) + "AsNumpy")(), where) \
                if n else []
            continue
        accessor = getattr(table, camel(f.schema), None)
        attrs[f.attr] = f.decode(accessor(), where) if accessor is not None else f.value_if_absent
    return attrs


def attrs(kind: str, **given) -> dict:
    """Every attr of an op of `kind`: the given ones (by attrs key), the schema's defaults for
    the rest."""
    options = OPTIONS[kind]
    unknown = set(given) - {f.attr for f in options.fields}
    if unknown:
        raise TypeError(f"{kind} has no option {', '.join(sorted(unknown))}")
    return {f.attr: given.get(f.attr, f.value_if_absent) for f in options.fields}
