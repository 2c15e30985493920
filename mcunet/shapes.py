"""Shape arithmetic shared by the frontend passes, the analysis and the lowerings."""
from __future__ import annotations


def same_padding(in_size: int, filter_size: int, stride: int, dilation: int, out_size: int) -> int:
    """The leading pad of a SAME window, as TFLite computes it (the odd pixel goes at the end)."""
    effective = (filter_size - 1) * dilation + 1
    total = (out_size - 1) * stride + effective - in_size
    return max(total // 2, 0)


def window_padding(attrs: dict, in_h: int, in_w: int, k_h: int, k_w: int,
                   out_h: int, out_w: int) -> tuple[int, int]:
    """(pad_top, pad_left) of a conv or pool op, including any PAD folded into it."""
    top = attrs.get("extra_pad_top", 0)
    left = attrs.get("extra_pad_left", 0)
    if attrs["padding"] == "SAME":
        top += same_padding(in_h, k_h, attrs["stride_h"], attrs.get("dilation_h", 1), out_h)
        left += same_padding(in_w, k_w, attrs["stride_w"], attrs.get("dilation_w", 1), out_w)
    return top, left
