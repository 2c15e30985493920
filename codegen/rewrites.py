"""Rewrites of lowered steps, each a pass that returns new steps (Steps are immutable):

- fuse_residual_adds: a residual ADD into the convolution that produces one of its operands;
- in_place_depthwise: depthwise layers onto the in-place kernel where that needs less memory;
- leaner_variant: a step onto a later variant of its family with less scratch;
- widen_filters: convolutions onto the variant with an int16 filter, where the flash has room.

Which variant (and blocking) each step runs first is mcunet.tune's choice: measured, or the
cost model's.
"""
from __future__ import annotations

from dataclasses import replace

from mcunet.graph import Graph
from mcunet.layers import AddLayer, FusedAdd
from mcunet.memory import align
from mcunet.overlaps import window_delta
from mcunet.step import ConstArg, ConstArray, Step, TensorArg

from . import kernels


def fuse_residual_adds(graph: Graph, steps: list[Step]) -> list[Step]:
    """Steps with every eligible conv + ADD pair replaced by one fused conv step.

    In an inverted-residual block the projection conv's output y is read once, by ADD(x, y).
    The fused step computes each conv value and adds the matching x value at once, writing the
    sum over x in place: y never exists, so the block's peak loses a whole tensor. The fused
    kernel applies TFLite's ADD arithmetic to the clamped int8 conv value, exactly as the two
    separate kernels would, so outputs stay bit-exact.
    """
    steps = list(steps)
    outputs = set(graph.outputs)
    i = 0
    while i < len(steps):
        add = steps[i]
        if (add.kernel is not kernels.ADD_S8 or add.layer.shape.broadcast
                or len(add.inputs) != 2):
            i += 1
            continue
        fused = _fuse(graph, steps, i, outputs)
        if fused is None:
            i += 1
            continue
        conv_index, step = fused
        steps[conv_index] = step
        del steps[i]
    return steps


def _fuse(graph: Graph, steps: list[Step], add_index: int, outputs: set[int]):
    add = steps[add_index]
    assert isinstance(add.layer, AddLayer)
    operands = [a.tid for a in add.inputs]
    z = add.writes[0]
    writer = {t: k for k, s in enumerate(steps[:add_index]) for t in s.writes}
    readers: dict[int, int] = {}
    for s in steps:
        for t in s.reads:
            readers[t] = readers.get(t, 0) + 1
    for which, y in enumerate(operands):
        x = operands[1 - which]
        k = writer.get(y)
        if k is None or steps[k].kernel is None or steps[k].kernel.family != kernels.CONV \
                or steps[k].layer.fused_add is not None:
            continue
        conv = steps[k]
        if readers.get(y) != 1 or y in outputs or x == y or x in conv.reads:
            continue  # (a residual the conv itself reads would be overwritten under its window)
        if graph.t(y).shape != graph.t(z).shape or graph.t(x).shape != graph.t(z).shape:
            continue
        if x in writer and writer[x] >= k:
            continue  # the residual must exist when the conv runs
        if not conv.whole_tensors:
            continue
        layer = replace(conv.layer, fused_add=FusedAdd(add.layer.add, add.op.index,
                                                       residual_first=which == 1))
        args = tuple(a for a in conv.args if not (isinstance(a, TensorArg) and a.output)) + \
            (TensorArg(x, "residual"), TensorArg(z, "output", output=True))
        return k, replace(conv, layer=layer, args=args, trace=(z,))
    return None


def in_place_depthwise(graph: Graph, steps: list[Step]) -> list[Step]:
    """Depthwise layers that need less memory in place (their output over their input, one
    channel plane of scratch) than with the output offset a row ahead of the input, switched
    to the in-place kernel."""
    result = []
    for step in steps:
        if (step.kernel is kernels.DEPTHWISE_CONV_S8 and len(step.inputs) == 1
                and step.whole_tensors and kernels.in_place_applies(step.layer)):
            offset_cost = -window_delta(step.layer, step.kernel.overlap.block(step.layer))
            in_place = kernels.portable(kernels.DEPTHWISE_IN_PLACE)
            if align(in_place.scratch_bytes(step.layer)) < offset_cost:
                step = replace(step, kernel=in_place)
        result.append(step)
    return result


def leaner_variant(step: Step) -> Step | None:
    """The step on a later kernel of its family and instruction set (slower by the
    registry's order, not by a different class of code) that needs less scratch, if one
    applies."""
    if step.kernel is None:
        return None
    family = kernels.FAMILIES[step.kernel.family]
    for kernel in family[family.index(step.kernel) + 1:]:
        if kernel.isa == step.kernel.isa and kernel.applies(step.layer) \
                and kernel.scratch_bytes(step.layer) < step.scratch_bytes:
            return replace(step, kernel=kernel)
    return None


def widen_filters(steps: list[Step], consts: list[ConstArray], room: int
                  ) -> tuple[list[Step], list[ConstArray]]:
    """Steps and constants with the convolutions whose kernel has a wider-filter variant
    (kernels.WIDER_FILTER) moved onto it, their filters rewritten as that variant reads them
    (kernels.conv_wide_filter_words, about twice the bytes), as many as `room` bytes of
    extra flash allow: the most MACs per extra byte first. A filter array that another step
    reads as something else, or that a step without the variant reads, stays as it is."""
    readers: dict[str, list[int]] = {}
    for i, step in enumerate(steps):
        for a in step.args:
            if isinstance(a, ConstArg):
                readers.setdefault(a.symbol, []).append(i)
    by_symbol = {c.symbol: c for c in consts}

    def widens(i: int, symbol: str) -> bool:
        step = steps[i]
        wide = kernels.WIDER_FILTER.get(step.kernel) if step.kernel is not None else None
        return wide is not None and wide.applies(step.layer) and all(
            a.name == "filter" for a in step.args
            if isinstance(a, ConstArg) and a.symbol == symbol)

    options = []  # (MACs per extra byte, symbol, words)
    for symbol, users in readers.items():
        if not all(widens(i, symbol) for i in users):
            continue
        w = steps[users[0]].layer.window
        words = kernels.conv_wide_filter_words(by_symbol[symbol].values, w.oc,
                                               w.kh * w.kw * w.ic)
        extra = 4 * len(words) - by_symbol[symbol].nbytes
        options.append((sum(steps[i].macs for i in users) / max(extra, 1), symbol, words, extra))
    options.sort(key=lambda o: -o[0])
    steps, consts = list(steps), list(consts)
    at = {c.symbol: k for k, c in enumerate(consts)}
    for _, symbol, words, extra in options:
        if extra > room:
            continue
        room -= extra
        consts[at[symbol]] = ConstArray(symbol, "uint32_t", words)
        for i in readers[symbol]:
            step = steps[i]
            args = tuple(replace(a, ctype="uint32_t") if isinstance(a, ConstArg)
                         and a.symbol == symbol else a for a in step.args)
            steps[i] = replace(step, kernel=kernels.WIDER_FILTER[step.kernel], args=args)
    return steps, consts
