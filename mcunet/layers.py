"""Typed layer parameters: one frozen record per operator family, shared by every kernel
variant of that family and handed to its templates (as CMSIS-NN's arm_nn_types.h gives one
parameter struct per op family).

Every value is a compile-time constant of the rendered C. Formats, unless a field says
otherwise: activations are int8, NHWC, batch 1; `*_offset` fields are what TFLite adds to a
raw value (an input offset is minus the input zero point, an output offset the output zero
point, both in [-128, 127] for int8); `act_min`/`act_max` clamp the requantised int8 output
(-128 <= act_min <= act_max <= 127); multipliers are Q31 (0 or in [2^30, 2^31)) with shifts
in [-31, 30] (positive: left); sizes count elements, not bytes.

Templates see a record's fields as plain names (`{{ ih }}`, `{{ act_min }}`): the fields of a
nested `Flattened` record (a Window, a Broadcast) are lifted to the top, other nested records
stay as they are (`{{ fused_add.op }}`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace


class Flattened:
    """A nested record whose fields the templates see at the top level."""


@dataclass(frozen=True)
class Layer:
    """Base of the per-family parameter records. `tuning`: the blocking a kernel variant was
    given by the tuner or the cost model (its record's `tunables`, as (name, value) pairs);
    empty for the variant's own default. The registry's size functions read it, so a kernel's
    blocking and its scratch cannot disagree."""
    tuning: tuple[tuple[str, int], ...] = field(default=(), kw_only=True)

    def tuned(self, name: str) -> int | None:
        return dict(self.tuning).get(name)

    def template_vars(self) -> dict:
        result: dict = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Flattened):
                result.update((g.name, getattr(value, g.name)) for g in fields(value))
            else:
                result[f.name] = value
        return result


# ---------------------------------------------------------------------------------------------
# Windowed layers: convolution, depthwise convolution, pooling


@dataclass(frozen=True)
class Region:
    """Rows [y0, y1) and columns [x0, x1) of a tensor."""
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def h(self) -> int:
        return self.y1 - self.y0

    @property
    def w(self) -> int:
        return self.x1 - self.x0


@dataclass(frozen=True, kw_only=True)
class Window(Flattened):
    """The geometry of a windowed layer: an ih x iw x ic input, an oh x ow x oc output, a
    kh x kw kernel moved by (sh, sw) with dilation (dh, dw); output pixel (oy, ox) reads the
    input from row oy * sh - pad_top and column ox * sw - pad_left (rows and columns outside
    the input are padding: they contribute nothing). `in_row` / `out_row` are the pixels per
    row of the buffers the kernel reads and writes: the layer's own widths, or a wider
    tensor's when the layer runs on a patch of it."""
    ih: int
    iw: int
    ic: int
    oh: int
    ow: int
    oc: int
    kh: int = 1
    kw: int = 1
    sh: int = 1
    sw: int = 1
    dh: int = 1
    dw: int = 1
    pad_top: int = 0
    pad_left: int = 0
    in_row: int
    out_row: int

    @property
    def dense(self) -> bool:
        """Input and output are whole tensors (not rows of wider ones)."""
        return self.in_row == self.iw and self.out_row == self.ow

    def input_region(self, out: Region) -> tuple[Region, int, int]:
        """The input rows/cols the window reads for an output region, clipped to the tensor,
        and the padding (top, left) that the clipped-off part becomes."""
        lo_y, hi_y = out.y0 * self.sh - self.pad_top, \
            (out.y1 - 1) * self.sh - self.pad_top + (self.kh - 1) * self.dh + 1
        lo_x, hi_x = out.x0 * self.sw - self.pad_left, \
            (out.x1 - 1) * self.sw - self.pad_left + (self.kw - 1) * self.dw + 1
        region = Region(max(lo_y, 0), min(hi_y, self.ih), max(lo_x, 0), min(hi_x, self.iw))
        return region, region.y0 - lo_y, region.x0 - lo_x

    def on_patch(self, rin: Region, rout: Region, pad_top: int, pad_left: int, in_row: int,
                 out_row: int) -> "Window":
        """The same window on a patch: input region rin, output region rout."""
        return replace(self, ih=rin.h, iw=rin.w, oh=rout.h, ow=rout.w, pad_top=pad_top,
                       pad_left=pad_left, in_row=in_row, out_row=out_row)


@dataclass(frozen=True)
class Windowed(Layer):
    """A layer that computes its output pixels from windows of its input: the patch
    scheduler and the planner's raster-order overlap work on its `window`."""
    window: Window

    def on_window(self, window: Window) -> "Windowed":
        return replace(self, window=window)


@dataclass(frozen=True)
class AddArith:
    """TFLite's int8 ADD of one pair of values: each input plus its offset, shifted left by
    `left_shift` (20), requantised by its multiplier/shift to a common scale, summed,
    requantised to the output and clamped."""
    input1_offset: int
    input2_offset: int
    output_offset: int
    left_shift: int
    input1_multiplier: int
    input1_shift: int
    input2_multiplier: int
    input2_shift: int
    output_multiplier: int
    output_shift: int
    act_min: int
    act_max: int


@dataclass(frozen=True)
class FusedAdd:
    """A residual ADD fused into the convolution that produces one of its operands: each
    clamped conv value y and the matching residual value r give ADD(y, r) (or ADD(r, y) when
    `residual_first`); `op` is the ADD's index in the source model."""
    arith: AddArith
    op: int
    residual_first: bool


@dataclass(frozen=True)
class PerChannelRequantized(Windowed):
    """What convolution and depthwise share: the input and output offsets, the activation's
    clamp, and the range of the per-channel shifts (the DSP kernels requantise faster when
    all lie in [-31, -2]). acc_bound: a bound on every partial sum of a channel's
    accumulator, max over channels of |bias| + max |x + input_offset| * sum |w| (the DSP
    kernels accumulate twice the sum where it is below 2^30; 2^31 where unknown)."""
    input_offset: int
    output_offset: int
    act_min: int
    act_max: int
    shift_min: int
    shift_max: int
    acc_bound: int = field(default=1 << 31, kw_only=True)


@dataclass(frozen=True)
class ConvLayer(PerChannelRequantized):
    """CONV_2D: int8 filter (oc, kh, kw, ic), symmetric per channel; int32 bias, Q31
    multiplier and shift per output channel. trained (a sparse --train build,
    mcunet/training.py): the first `trained` output channels' filter values are read from
    `filter` (RAM, oc = trained of them), the others from `filter_frozen` (the flash filter,
    all channels); 0: all from `filter`."""
    fused_add: FusedAdd | None = None
    trained: int = field(default=0, kw_only=True)


@dataclass(frozen=True)
class DepthwiseLayer(PerChannelRequantized):
    """DEPTHWISE_CONV_2D: int8 filter (1, kh, kw, oc) with oc = ic * depth_multiplier,
    symmetric per channel; bias, multiplier and shift per output channel as ConvLayer.
    trained: as ConvLayer's (the RAM filter is then [kh][kw][trained])."""
    depth_multiplier: int
    trained: int = field(default=0, kw_only=True)


@dataclass(frozen=True)
class PoolLayer(Windowed):
    """AVERAGE_POOL_2D / MAX_POOL_2D: input and output share scale and zero point
    (ic == oc); padding is excluded from both the maximum and the average's count."""
    act_min: int
    act_max: int


# ---------------------------------------------------------------------------------------------
# The other families


@dataclass(frozen=True)
class FullyConnectedLayer(Layer):
    """FULLY_CONNECTED: `batches` rows of `depth` inputs times an int8 (units, depth) filter
    (stored unit-blocked in words: codegen/ops/conv.py fc_filter_words); int32 bias; the
    rescale round(acc * scale) is TFLite's double one, passed as the double's significand and
    exponent (one pair per unit when per_channel). filter_offset: minus the filter zero point
    (0 when per channel, as TFLite ignores it). The lowering folds the input offset's share
    into the bias, so input_offset is 0. fixed_point (--arithmetic tflm): TF Lite Micro's
    rescale instead, the fixed-point requantisation of conv layers (a Q31 multiplier and a
    shift per unit or one pair, mcunet_requantize). near: the double rescale takes its fast
    form (mcunet_round_scaled_near, quant.NearRescale), whose window and k the `near`
    argument holds; False where the scales do not allow it. trained: as ConvLayer's (the
    trainable kernel only: units < trained from `filter`, the rest from `filter_frozen`)."""
    batches: int
    units: int
    depth: int
    per_channel: bool
    filter_offset: int
    input_offset: int
    output_offset: int
    act_min: int
    act_max: int
    fixed_point: bool = False
    near: bool = False
    trained: int = field(default=0, kw_only=True)


@dataclass(frozen=True)
class Broadcast(Flattened):
    """The shapes of a binary elementwise op: `size` output elements; with `broadcast`, the
    4-D out_shape and each input's element strides along it (0 on a broadcast axis)."""
    size: int
    broadcast: bool
    out_shape: tuple[int, ...]
    strides1: tuple[int, ...]
    strides2: tuple[int, ...]


@dataclass(frozen=True)
class AddLayer(Layer):
    shape: Broadcast
    add: AddArith


@dataclass(frozen=True)
class MulLayer(Layer):
    """MUL: (x1 + input1_offset) * (x2 + input2_offset) requantised by output_multiplier /
    output_shift, plus output_offset, clamped."""
    shape: Broadcast
    input1_offset: int
    input2_offset: int
    output_offset: int
    output_multiplier: int
    output_shift: int
    act_min: int
    act_max: int


@dataclass(frozen=True)
class SoftmaxLayer(Layer):
    """SOFTMAX over the last axis of `rows` x `depth` values, TFLite's fixed-point
    exp-and-normalise: differences to the row maximum below diff_min count as 0; output scale
    1/256, zero point -128."""
    rows: int
    depth: int
    multiplier: int
    left_shift: int
    diff_min: int


@dataclass(frozen=True)
class Loop:
    """One loop of a reduction: `size` iterations of `stride` input elements."""
    size: int
    stride: int


@dataclass(frozen=True)
class MeanLayer(Layer):
    """MEAN over `axes`: the int32 sum of n raw values plus sum_offset (= -zp * n), times
    multiplier/shift (1/n folded in), plus output_offset. `kept` and `red` are the kept and
    reduced loops, outermost first."""
    in_shape: tuple[int, ...]
    axes: tuple[int, ...]
    n: int
    kept: tuple[Loop, ...]
    red: tuple[Loop, ...]
    sum_offset: int
    output_offset: int
    multiplier: int
    shift: int


@dataclass(frozen=True)
class PadDim:
    """One of the 4 (right-aligned, merged) dimensions of a PAD: `before` + `size` + `after`
    = `out` elements."""
    size: int
    before: int
    after: int
    out: int


@dataclass(frozen=True)
class PadLayer(Layer):
    """PAD/PADV2: raw int8 values copied, the rest filled with `value`."""
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    value: int
    copy_only: bool
    size: int
    dims: tuple[PadDim, ...]


@dataclass(frozen=True)
class Chunk:
    """A concatenation input: `bytes` contiguous bytes per outer index, at `offset` within
    each output chunk."""
    bytes: int
    offset: int


@dataclass(frozen=True)
class ConcatLayer(Layer):
    out_shape: tuple[int, ...]
    axis: int
    outer: int
    out_chunk: int
    chunks: tuple[Chunk, ...]


@dataclass(frozen=True)
class FloatConversionLayer(Layer):
    """QUANTIZE float32 -> int8 or DEQUANTIZE int8 -> float32 of `size` values: `scale` is
    an exact C float literal (hexadecimal), `scale_text` its decimal form for comments."""
    size: int
    scale: str
    scale_text: str
    zero_point: int


@dataclass(frozen=True)
class RequantizeLayer(Layer):
    """QUANTIZE int8 -> int8: (x + input_offset) requantised, plus output_offset; `identity`
    when the multiplier is exactly 1 (no rounding)."""
    size: int
    input_offset: int
    output_offset: int
    multiplier: int
    shift: int
    identity: bool


@dataclass(frozen=True)
class LutLayer(Layer):
    """An int8 -> int8 function of one value through a 256-entry table (LOGISTIC)."""
    size: int


@dataclass(frozen=True)
class ReluLayer(Layer):
    """RELU, RELU6, RELU_N1_TO_1 (`kind`): requantise (skipped when `identity`), clamp."""
    kind: str
    size: int
    input_offset: int
    output_offset: int
    multiplier: int
    shift: int
    identity: bool
    act_min: int
    act_max: int
