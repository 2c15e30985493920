"""The kernel registry: every C kernel mcunet can emit, one record each.

A record (mcunet.step.Kernel) names its template, the instruction set it needs, when it
applies to a layer, its scratch and how its output may overlap its inputs. Dispatch
(mcunet.tune's candidates), the scratch sizes, the planner's overlap permissions and the code generator's
`restrict` qualifiers all read these records, so "which kernel" and "how much scratch" are
answered by the same named predicates, as CMSIS-NN's arm_convolve_wrapper_s8.c and
arm_convolve_get_buffer_sizes_s8.c branch on the same conditions.

Variants of one family take the same arguments (plus their scratch, always last), honour the
same overlap contract and compute the same integers; `FAMILIES` lists each family's variants
best first, ending with the portable kernel, which applies to every layer that the family's
lowering (or rewrite) produces. On ARMv7E-M cores (the
ARM_DSP instruction set: Cortex-M4/M7/M33) the hot families have variants built on
SMLAD/SXTB16; on the host they compile against plain-C versions of those instructions, so
both paths are tested bit-exactly without a board.

To add a kernel: its template under templates/kernels/, one record here (and, for a new
family, a lowering in codegen/ops/ that returns a Step with the family's portable kernel).
"""
from __future__ import annotations

import numpy as np

from mcunet.layers import ConvLayer, DepthwiseLayer
from mcunet.step import ARM_DSP, InPlace, Elementwise, Kernel, PORTABLE, RasterOrder, Scratch

# ---------------------------------------------------------------------------------------------
# Named predicates and sizes, shared by dispatch and the scratch sizes

CONV_SMALL_K = 256  # windows up to this many values are computed three or four pixels at a time
CONV_UNROLLED_GROUPS = 16  # dot products of up to this many groups of four are written out
CONV_INNER_K = 12  # padded windows up to this many values run one output channel at a time
CONV_INNER_BLOCKS = (8, 7, 6, 5, 4)  # the pixel blocks the one-channel path chooses from


def conv_window_values(layer: ConvLayer) -> int:
    w = layer.window
    return w.kh * w.kw * w.ic


def conv_padded_window(layer: ConvLayer) -> int:
    """The window's values rounded up to whole groups of four: the DSP conv's dot products
    run over these, the values past the window (zero in `col`) times the filter's next bytes
    (codegen/ops/conv.py pads the filter with zero bytes for the last channel's)."""
    k = conv_window_values(layer)
    return k + (-k) % 4


def pixels_per_block(npix: int) -> int:
    """4 or 3 pixels a block, whichever runs fewer instructions for npix pixels: a step of
    the inner loop costs about 6 + 6P instructions, and a partial last block costs as much as
    a whole one (a 3x3 output: three blocks of 3 rather than three of 4)."""
    return min((4, 3), key=lambda b: -(-npix // b) * (6 + 6 * b))


CONV_DSP_BLOCKS = (1, 2, 3, 4)  # the pixel blocks the tuner tries


def conv_dsp_unrolled(layer: ConvLayer) -> bool:
    """The DSP conv's dot products written out step by step (no loop, every offset a
    constant): windows of up to 4 * CONV_UNROLLED_GROUPS values."""
    return conv_padded_window(layer) <= 4 * CONV_UNROLLED_GROUPS


def conv_dsp_inner(layer: ConvLayer) -> bool:
    """The DSP conv one output channel at a time over its block of pixels (small windows:
    the channel's widened weights stay in registers, each pixel's window is read once per
    channel), rather than channel pairs with the block's pixels interleaved."""
    return conv_padded_window(layer) <= CONV_INNER_K


def inner_pixels_per_block(npix: int, groups: int) -> int:
    """The one-channel path's block: per channel and block about 3 groups + 6 instructions
    (its weights widened, its constants), per pixel 2 groups + 4 (the dot product and the
    requantisation); a partial last block costs as much as a whole one."""
    return min(CONV_INNER_BLOCKS,
               key=lambda b: (-(-npix // b) * (b * (2 * groups + 4) + 3 * groups + 6), -b))


def conv_doubling_pays(layer: ConvLayer) -> bool:
    """Whether the DSP conv accumulates twice the sum where it may (dsp_common.j2): its
    requantisation then saves about 2 instructions an output, and doubling the window costs
    one SADD16 per 2 values a pixel, so it pays where the window is below 4 outputs a pixel."""
    return conv_padded_window(layer) < 4 * layer.window.oc


def conv_dsp_pixels(layer: ConvLayer) -> int:
    """Pixels whose windows share each weight load in the DSP conv: the tuned block, else
    three or four for windows of up to 8 values (two groups, written out), three up to
    CONV_SMALL_K values (with four, 8 accumulators, 4 weight halves and the pointers outrun
    the registers: gcc spills on every group), two beyond."""
    tuned = layer.tuned("P")
    if tuned is not None:
        return tuned
    if conv_dsp_inner(layer):
        return inner_pixels_per_block(layer.window.oh * layer.window.ow,
                                      conv_padded_window(layer) // 4)
    if conv_padded_window(layer) <= 8:
        return pixels_per_block(layer.window.oh * layer.window.ow)
    if conv_window_values(layer) <= CONV_SMALL_K:
        return 3
    return 2


def conv_dsp_doubled(layer: ConvLayer) -> bool:
    """Whether the DSP conv accumulates twice the sum and requantises with mcunet_rqd (the
    predicate of dsp_common.j2's `doubled`, with this kernel's `doubling`)."""
    return layer.acc_bound < 2 ** 30 and -30 <= layer.shift_min and layer.shift_max <= -1 \
        and conv_doubling_pays(layer)


def conv_dsp_rq_words(layer: ConvLayer) -> int:
    """The words of the DSP conv's requantisation constants per channel (its rq_t):
    mcunet_rqd_t or mcunet_rq2_t 3, mcunet_rq_t 7 (dsp_common.j2 picks the one)."""
    fast = conv_dsp_doubled(layer) or (-31 <= layer.shift_min and layer.shift_max <= -2)
    return 3 if fast else 7


def conv_dsp_record_bytes(layer: ConvLayer) -> int:
    """The per-channel records (a channel's bias, doubled where the kernel doubles, and its
    requantisation constants side by side; on the pair path a pair's two biases, then its
    two channels' constants), built once a call from bias, multiplier and shift so a
    channel's (pair's) setup is a few LDRD or one LDM: 4 (1 + rq words) bytes a channel (on
    the pair path an odd last channel reads the arrays)."""
    oc = layer.window.oc
    return 4 * (1 + conv_dsp_rq_words(layer)) * (oc if conv_dsp_inner(layer) else oc - oc % 2)


def conv_dsp_wide_applies(layer: ConvLayer) -> bool:
    """The DSP conv with its filter widened to int16 at compile time (conv_wide_filter_words:
    no SXTB16 of the weights in the dot products, twice the filter's flash): the channel
    pair path (not conv_dsp_inner). Chosen by the flash budget (codegen.rewrites.widen_filters),
    not by the rule or the tuner."""
    return not conv_dsp_inner(layer)


def conv_wide_filter_words(filt: np.ndarray, oc: int, k: int) -> np.ndarray:
    """The conv's (oc, K) int8 filter (flat, possibly followed by padding bytes) as int16
    pairs in SXTB16 order, packed in 32-bit words: each channel's window rounded up to whole
    groups of four with zeros, group g as two words (w[4g] | w[4g+2] << 16, w[4g+1] |
    w[4g+3] << 16), the pairs of channels (o, o + 1) interleaved group by group (o's two
    words, then o + 1's: one pointer and four words a group), an odd last channel's groups
    after them. oc * Kp / 2 words."""
    kp = k + (-k) % 4
    w = np.zeros((oc, kp), np.int64)
    w[:, :k] = np.asarray(filt[:oc * k], np.int64).reshape(oc, k)
    g = w.reshape(oc, kp // 4, 4)
    even = (g[:, :, 0] & 0xFFFF) | ((g[:, :, 2] & 0xFFFF) << 16)
    odd = (g[:, :, 1] & 0xFFFF) | ((g[:, :, 3] & 0xFFFF) << 16)
    words = np.stack([even, odd], axis=2)  # (oc, G, 2)
    pairs = oc - oc % 2
    paired = words[:pairs].reshape(pairs // 2, 2, kp // 4, 2).transpose(0, 2, 1, 3)
    return np.concatenate([paired.reshape(-1), words[pairs:].reshape(-1)]).astype(np.uint32)


def conv_dsp_lean_col_bytes(layer: ConvLayer) -> int:
    """P pixels' padded windows as int16; with a fused ADD, then the P pixels' sums (staged
    until every residual value of the block was read: the sum may then lie over the
    residual)."""
    staged = conv_dsp_pixels(layer) * layer.window.oc if layer.fused_add is not None else 0
    return 2 * conv_dsp_pixels(layer) * conv_padded_window(layer) + staged


def conv_dsp_col_bytes(layer: ConvLayer) -> int:
    """conv_dsp_lean_col_bytes and the channel records (conv_dsp_record_bytes) after the
    windows."""
    return conv_dsp_lean_col_bytes(layer) + conv_dsp_record_bytes(layer)


def one_filter_per_channel(layer: DepthwiseLayer) -> bool:
    return layer.depth_multiplier == 1


def depthwise_dsp_applies(layer: DepthwiseLayer) -> bool:
    """SIMD over groups of four channels (the last ic % 4 one by one)."""
    return one_filter_per_channel(layer)


def in_place_applies(layer: DepthwiseLayer) -> bool:
    """Output over input needs one output channel per input channel and whole tensors."""
    return one_filter_per_channel(layer) and layer.window.dense


def in_place_dsp_applies(layer: DepthwiseLayer) -> bool:
    w = layer.window
    return in_place_applies(layer) and (w.dh, w.dw) == (1, 1)


def plane_bytes(layer: DepthwiseLayer) -> int:
    """One channel plane of the input."""
    return layer.window.ih * layer.window.iw


def shares_loads_3x3(layer: DepthwiseLayer) -> bool:
    """The plane kernel whose neighbouring outputs share their loads (two per 4-byte load)."""
    w = layer.window
    return (w.kh, w.kw, w.sh, w.sw) == (3, 3, 1, 1)


def shares_loads_wide(layer: DepthwiseLayer) -> bool:
    """The plane kernel whose blocks of four neighbouring outputs share their loads: a
    column stride of 1 or 2, rows of 4 taps or more (depthwise_plane.j2's `quads`)."""
    w = layer.window
    return w.sw in (1, 2) and w.kw >= 4


def wide_words(layer: DepthwiseLayer) -> int:
    """The 4-byte loads of a kernel row for a block of four outputs (shares_loads_wide): at
    stride 1 one per group of four taps and the next one where the last group has two taps
    or more; at stride 2 two more than groups less one where the last group has one or two."""
    w = layer.window
    groups, last = (w.kw + 3) // 4, w.kw - 4 * ((w.kw + 3) // 4 - 1)
    if w.sw == 1:
        return groups + (1 if last >= 2 else 0)
    return groups + 1 + (1 if last >= 3 else 0)


def plane_width(layer: DepthwiseLayer) -> int:
    """A DSP plane row with its padding, wide enough for the input row and for the last
    4-byte loads: a 3x3 stride-1 kernel reads 4 columns for 2 outputs, a wider one at a
    column stride of 1 or 2 wide_words loads for each block of 4 outputs (the last block
    whole), the others read each kernel row in groups of 4 taps."""
    w = layer.window
    if shares_loads_3x3(layer):
        last = w.ow + 3
    elif shares_loads_wide(layer):
        last = 4 * w.sw * ((w.ow + 3) // 4 - 1) + 4 * wide_words(layer)
    else:
        last = (w.ow - 1) * w.sw + 4 * ((w.kw + 3) // 4)
    return max(last, w.iw + w.pad_left)


def padded_plane(layer: DepthwiseLayer) -> tuple[int, int]:
    """The in-place DSP plane with its padding, tall enough for the whole input (the kernel
    copies a channel's whole plane before it overwrites the channel)."""
    w = layer.window
    ph = max((w.oh - 1) * w.sh + w.kh, w.ih + w.pad_top)
    return ph, plane_width(layer)


def padded_plane_bytes(layer: DepthwiseLayer) -> int:
    ph, pw = padded_plane(layer)
    return ph * pw


def _plane_constants(layer: DepthwiseLayer) -> dict:
    ph, pw = padded_plane(layer)
    return {"plane_h": ph, "plane_w": pw, "quads": shares_loads_wide(layer)}


DW_BAND_BYTES = 1024  # the lean DSP depthwise's scratch: bands of rows up to this size
# The DSP depthwise's: bands up to a sixteenth of the layer's output and at most this size
# (with 1 KB a band of a large layer whose output overlaps its input is often one output row:
# every channel's plane rows and constants are set up again for each row).
DW_WIDE_BAND_BYTES = 16384
# Where the output overlaps the input and staging all of it takes at most this many bytes,
# one band (staged_band_budget). Kept small: a patch stage's tiles are such layers, and a
# larger scratch there moved --patch auto's choice to a larger arena.
DW_STAGED_WHOLE_BYTES = 6144


def wide_band_budget(layer: DepthwiseLayer) -> int:
    """The DSP depthwise's band budget: DW_BAND_BYTES, or up to DW_WIDE_BAND_BYTES where
    the output is 16 times that (the scratch stays small next to the layer's tensors)."""
    w = layer.window
    return max(DW_BAND_BYTES, min(DW_WIDE_BAND_BYTES, w.oh * w.ow * w.oc // 16))


def depthwise_dsp_plane_path(layer: DepthwiseLayer) -> bool:
    """The DSP depthwise works channel by channel from a band of rows of a channel plane in
    scratch (undilated windows at stride 1, or rows of 5 taps or more); the others read the
    input directly (at a stride of 2 a 3-tap row would copy more than it saves)."""
    w = layer.window
    return (w.dh, w.dw) == (1, 1) and ((w.sh, w.sw) == (1, 1) or w.kw >= 5)


def _band_fitting(layer: DepthwiseLayer, staged: bool, budget: int) -> int:
    """Output rows per band: as many as fit `budget` bytes (at least one), with their outputs
    staged too where `staged`."""
    w = layer.window
    pw = plane_width(layer)
    per_row = w.sh * pw + (w.ow * w.oc if staged else 0)
    fixed = (w.kh - w.sh) * pw
    return max(1, min(w.oh, (budget - fixed) // per_row))


def band_rows(layer: DepthwiseLayer, budget: int | None = None) -> int:
    """Output rows per band of the plane path where the output does not overlap the input.
    Each band copies kh - sh input rows that the previous band copied too. budget: the
    band's bytes (default: wide_band_budget)."""
    return _band_fitting(layer, staged=False, budget=budget or wide_band_budget(layer))


def staged_band_rows(layer: DepthwiseLayer, budget: int | None = None) -> int:
    """Output rows per band where the output overlaps the input: the band's outputs are
    staged after its plane and written once every channel of the band was computed (and
    nothing is read while they are written, so out_block = 1 holds: every later read is of a
    later band's windows)."""
    return _band_fitting(layer, staged=True, budget=budget or staged_band_budget(layer))


def staged_band_budget(layer: DepthwiseLayer) -> int:
    """The staged path's band budget: the whole output staged at once where that fits
    DW_STAGED_WHOLE_BYTES, else wide_band_budget. A band sets every channel up again (its taps,
    its constants) and copies kh - sh plane rows twice; with the outputs staged a band of a
    small layer is often one row, which then costs more than its MACs. (Larger layers keep
    wide_band_budget's bands: a band of odd rows costs the 3x3 stride-1 kernel more than the
    fewer bands save.)"""
    w = layer.window
    plane_h, plane_w = band_plane(layer, w.oh)
    whole = plane_h * plane_w + w.oh * w.ow * w.oc
    return whole if whole <= DW_STAGED_WHOLE_BYTES else wide_band_budget(layer)


def band_plane(layer: DepthwiseLayer, rows: int) -> tuple[int, int]:
    """A band's plane for `rows` output rows: (rows, width) of int8, with the padding."""
    w = layer.window
    return (rows - 1) * w.sh + w.kh, plane_width(layer)


def depthwise_dsp_scratch(layer: DepthwiseLayer, budget: int | None = None) -> int:
    """The larger of the two paths' needs (the scratch is sized before the planner says
    whether the output overlaps the input): a band plane, or a band plane and the band's
    outputs staged; dilated windows stage one output row."""
    w = layer.window
    if not depthwise_dsp_plane_path(layer):
        return w.ow * w.oc
    bh, bw = band_plane(layer, band_rows(layer, budget))
    r = staged_band_rows(layer, budget)
    sh_, sw_ = band_plane(layer, r)
    return max(bh * bw, sh_ * sw_ + r * w.ow * w.oc)


def depthwise_dsp_lean_scratch(layer: DepthwiseLayer) -> int:
    """depthwise_dsp_scratch with bands of up to DW_BAND_BYTES."""
    return depthwise_dsp_scratch(layer, DW_BAND_BYTES)


def _depthwise_dsp_constants(layer: DepthwiseLayer, budget: int | None) -> dict:
    if not depthwise_dsp_plane_path(layer):
        return {"plane_path": False}
    b, r = band_rows(layer, budget), staged_band_rows(layer, budget)
    return {"plane_path": True, "plane_w": plane_width(layer), "quads": shares_loads_wide(layer),
            "band": b, "plane_h": band_plane(layer, b)[0],
            "staged_band": r, "staged_plane_h": band_plane(layer, r)[0]}


# ---------------------------------------------------------------------------------------------
# The records

CONV = "conv"
DEPTHWISE = "depthwise"
DEPTHWISE_IN_PLACE = "depthwise in place"
FULLY_CONNECTED = "fully connected"
AVERAGE_POOL = "average pool"
MAX_POOL = "max pool"
ADD = "add"
MUL = "mul"
SOFTMAX = "softmax"
MEAN = "mean"
PAD = "pad"
CONCAT = "concatenation"
QUANTIZE_FLOAT = "quantize float"
REQUANTIZE = "requantize"
DEQUANTIZE = "dequantize"
LUT = "table lookup"
RELU = "relu"


def _k(name: str, family: str, **kw) -> Kernel:
    return Kernel(name=name, family=family, template=f"{name}.c.j2", **kw)


def _conv_dsp_constants(layer: ConvLayer, records: bool, wide: bool = False) -> dict:
    return {"P": conv_dsp_pixels(layer), "unrolled": conv_dsp_unrolled(layer), "wide": wide,
            "inner": conv_dsp_inner(layer), "doubling": conv_doubling_pays(layer),
            "rec_bytes": conv_dsp_record_bytes(layer) if records else 0,
            "rq_words": conv_dsp_rq_words(layer)}


# With the channel records in scratch (faster), or reading bias, multiplier and shift for
# each block (no records: what a layer at the arena's peak gets, leaner_variant).
CONV2D_S8_DSP = _k("conv2d_s8_dsp", CONV, isa=ARM_DSP,
                   scratch=Scratch("col", "int16_t", conv_dsp_col_bytes),
                   overlap=RasterOrder(block=conv_dsp_pixels),
                   constants=lambda layer: _conv_dsp_constants(layer, True),
                   tunables=lambda layer: {"P": CONV_DSP_BLOCKS})
# conv2d_s8_dsp and conv2d_s8_dsp_lean on a filter widened to int16 at compile time
# (conv_wide_filter_words), where the flash budget has room for it
# (codegen.rewrites.widen_filters); the same scratch as theirs.
CONV2D_S8_DSP_WIDE = Kernel("conv2d_s8_dsp_wide", CONV, "conv2d_s8_dsp.c.j2", isa=ARM_DSP,
                            applies=conv_dsp_wide_applies,
                            scratch=Scratch("col", "int16_t", conv_dsp_col_bytes),
                            overlap=RasterOrder(block=conv_dsp_pixels),
                            constants=lambda layer: _conv_dsp_constants(layer, True, True),
                            tunables=lambda layer: {"P": CONV_DSP_BLOCKS})
CONV2D_S8_DSP_LEAN = Kernel("conv2d_s8_dsp_lean", CONV, "conv2d_s8_dsp.c.j2", isa=ARM_DSP,
                            scratch=Scratch("col", "int16_t", conv_dsp_lean_col_bytes),
                            overlap=RasterOrder(block=conv_dsp_pixels),
                            constants=lambda layer: _conv_dsp_constants(layer, False),
                            tunables=lambda layer: {"P": CONV_DSP_BLOCKS})
CONV2D_S8_DSP_WIDE_LEAN = Kernel("conv2d_s8_dsp_wide_lean", CONV, "conv2d_s8_dsp.c.j2",
                                 isa=ARM_DSP, applies=conv_dsp_wide_applies,
                                 scratch=Scratch("col", "int16_t", conv_dsp_lean_col_bytes),
                                 overlap=RasterOrder(block=conv_dsp_pixels),
                                 constants=lambda layer: _conv_dsp_constants(layer, False, True),
                                 tunables=lambda layer: {"P": CONV_DSP_BLOCKS})
CONV2D_S8 = _k("conv2d_s8", CONV, overlap=RasterOrder())

# With bands of up to wide_band_budget (faster on large layers: fewer bands set up, fewer
# rows copied twice), or of up to 1 KB (what a layer at the arena's peak gets, leaner_variant).
DEPTHWISE_CONV_S8_DSP = _k("depthwise_conv_s8_dsp", DEPTHWISE, isa=ARM_DSP,
                           applies=depthwise_dsp_applies,
                           # A band plane, and its outputs staged where the output overlaps
                           # the input (written after the band's windows were all read).
                           scratch=Scratch("staged", "int8_t", depthwise_dsp_scratch),
                           overlap=RasterOrder(),
                           constants=lambda layer: _depthwise_dsp_constants(layer, None))
DEPTHWISE_CONV_S8_DSP_LEAN = Kernel("depthwise_conv_s8_dsp_lean", DEPTHWISE,
                                    "depthwise_conv_s8_dsp.c.j2", isa=ARM_DSP,
                                    applies=depthwise_dsp_applies,
                                    scratch=Scratch("staged", "int8_t", depthwise_dsp_lean_scratch),
                                    overlap=RasterOrder(),
                                    constants=lambda layer: _depthwise_dsp_constants(layer, DW_BAND_BYTES))
DEPTHWISE_CONV_S8 = _k("depthwise_conv_s8", DEPTHWISE, overlap=RasterOrder())

DEPTHWISE_CONV_INPLACE_S8_DSP = _k("depthwise_conv_inplace_s8_dsp", DEPTHWISE_IN_PLACE,
                                   isa=ARM_DSP, applies=in_place_dsp_applies,
                                   scratch=Scratch("plane", "int8_t", padded_plane_bytes),
                                   overlap=InPlace(), constants=_plane_constants)
DEPTHWISE_CONV_INPLACE_S8 = _k("depthwise_conv_inplace_s8", DEPTHWISE_IN_PLACE,
                               applies=in_place_applies,
                               scratch=Scratch("plane", "int8_t", plane_bytes), overlap=InPlace())

def fc_col_bytes(layer) -> int:
    """The input row's groups of four as int16 pairs (at least a word)."""
    return max(2 * (layer.depth - layer.depth % 4), 4)


# With the input row widened once into scratch (faster), or widened per block (no scratch).
FULLY_CONNECTED_S8_DSP_COL = Kernel("fully_connected_s8_dsp_col", FULLY_CONNECTED,
                                    "fully_connected_s8_dsp.c.j2", isa=ARM_DSP,
                                    scratch=Scratch("col", "uint32_t", fc_col_bytes),
                                    constants=lambda layer: {"widened": True})
FULLY_CONNECTED_S8_DSP = _k("fully_connected_s8_dsp", FULLY_CONNECTED, isa=ARM_DSP,
                            constants=lambda layer: {"widened": False})
FULLY_CONNECTED_S8 = _k("fully_connected_s8", FULLY_CONNECTED)
# The head a --train build updates (mcunet/training.py): TFLite's reference arithmetic on a
# plain row-major filter and an unfolded bias, both read from RAM, so that training can write
# them; one portable kernel (the head is small).
FULLY_CONNECTED_TRAIN = "fully connected, trainable"
FULLY_CONNECTED_TRAIN_S8 = _k("fully_connected_train_s8", FULLY_CONNECTED_TRAIN)
# A convolution a --train build updates (last:N, bias): the portable CONV_2D template with its
# filter and bias read from RAM; no variant, and no overlap (training keeps its input alive).
CONV_TRAIN = "convolution, trainable"
CONV2D_TRAIN_S8 = Kernel(name="conv2d_train_s8", family=CONV_TRAIN, template="conv2d_s8.c.j2")
# A depthwise convolution a --train build updates (last:3, bias): the portable DEPTHWISE_CONV_2D
# template with its filter, bias and rescale read from the training build's arrays; no
# variant, no overlap and not in place (training keeps its input and output alive).
DEPTHWISE_TRAIN = "depthwise, trainable"
DEPTHWISE_CONV_TRAIN_S8 = Kernel(name="depthwise_conv_train_s8", family=DEPTHWISE_TRAIN,
                                 template="depthwise_conv_s8.c.j2")

AVERAGE_POOL_S8 = _k("average_pool_s8", AVERAGE_POOL, overlap=RasterOrder())
MAX_POOL_S8 = _k("max_pool_s8", MAX_POOL, overlap=RasterOrder())
ADD_S8 = _k("add_s8", ADD, overlap=Elementwise())
MUL_S8 = _k("mul_s8", MUL, overlap=Elementwise())
SOFTMAX_S8 = _k("softmax_s8", SOFTMAX)
MEAN_S8 = _k("mean_s8", MEAN)
PAD_S8 = _k("pad_s8", PAD)
CONCAT_S8 = _k("concat_s8", CONCAT)
QUANTIZE_F32_S8 = _k("quantize_f32_s8", QUANTIZE_FLOAT)
REQUANTIZE_S8 = _k("requantize_s8", REQUANTIZE, overlap=Elementwise())
DEQUANTIZE_S8_F32 = _k("dequantize_s8_f32", DEQUANTIZE)
LUT_S8 = _k("lut_s8", LUT, overlap=Elementwise())
RELU_S8 = _k("relu_s8", RELU, overlap=Elementwise())

# Each family's variants, best first; the last is the portable one.
FAMILIES: dict[str, tuple[Kernel, ...]] = {}
for _kernel in (CONV2D_S8_DSP, CONV2D_S8_DSP_WIDE, CONV2D_S8_DSP_LEAN, CONV2D_S8_DSP_WIDE_LEAN,
                CONV2D_S8, DEPTHWISE_CONV_S8_DSP, DEPTHWISE_CONV_S8_DSP_LEAN, DEPTHWISE_CONV_S8,
                DEPTHWISE_CONV_INPLACE_S8_DSP, DEPTHWISE_CONV_INPLACE_S8,
                FULLY_CONNECTED_S8_DSP_COL, FULLY_CONNECTED_S8_DSP, FULLY_CONNECTED_S8,
                FULLY_CONNECTED_TRAIN_S8, CONV2D_TRAIN_S8, DEPTHWISE_CONV_TRAIN_S8, AVERAGE_POOL_S8,
                MAX_POOL_S8,
                ADD_S8, MUL_S8, SOFTMAX_S8, MEAN_S8, PAD_S8, CONCAT_S8, QUANTIZE_F32_S8,
                REQUANTIZE_S8, DEQUANTIZE_S8_F32, LUT_S8, RELU_S8):
    FAMILIES[_kernel.family] = FAMILIES.get(_kernel.family, ()) + (_kernel,)

KERNELS: dict[str, Kernel] = {k.name: k for ks in FAMILIES.values() for k in ks}


# Variants that the flash budget chooses (codegen.rewrites.widen_filters), from the one the
# rule or the tuner chose: never a rule's or a tuner's candidate themselves (their constants
# differ from the lowering's).
WIDER_FILTER: dict[Kernel, Kernel] = {CONV2D_S8_DSP: CONV2D_S8_DSP_WIDE,
                                       CONV2D_S8_DSP_LEAN: CONV2D_S8_DSP_WIDE_LEAN}


def by_flash(kernel: Kernel) -> bool:
    """Whether the kernel is one that only the flash budget chooses (WIDER_FILTER)."""
    return kernel in WIDER_FILTER.values()


def portable(family: str) -> Kernel:
    """The family's portable kernel (what lowering starts from)."""
    return FAMILIES[family][-1]


def _check_registry() -> None:
    for family, kernels in FAMILIES.items():
        last = kernels[-1]
        assert last.isa == PORTABLE, f"{family}: the last variant must be portable"
    assert len(KERNELS) == sum(len(k) for k in FAMILIES.values()), "kernel names are unique"


_check_registry()
