"""The .tflite frontend and the passes, on the MLPerf Tiny corpus and generated models."""
from collections import Counter

import pytest

from mcunet.analysis import op_macs
from mcunet.compiler import load_graph
from mcunet.frontend import read_tflite

from .conftest import mlperf_model

# From shared/models/mlperf-tiny/README.md.
EXPECTED = {
    "vww_96_int8.tflite": ({"CONV_2D": 14, "DEPTHWISE_CONV_2D": 13, "AVERAGE_POOL_2D": 1,
                            "RESHAPE": 1, "FULLY_CONNECTED": 1, "SOFTMAX": 1}, 7_489_664, (1, 96, 96, 3)),
    "kws_ref_model.tflite": ({"CONV_2D": 5, "DEPTHWISE_CONV_2D": 4, "AVERAGE_POOL_2D": 1,
                              "RESHAPE": 1, "FULLY_CONNECTED": 1, "SOFTMAX": 1}, 2_656_768, (1, 49, 10, 1)),
    "pretrainedResnet_quant.tflite": ({"CONV_2D": 9, "ADD": 3, "AVERAGE_POOL_2D": 1, "RESHAPE": 1,
                                       "FULLY_CONNECTED": 1, "SOFTMAX": 1}, 12_501_632, (1, 32, 32, 3)),
    "ad01_int8.tflite": ({"FULLY_CONNECTED": 10}, 264_192, (1, 640)),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_mlperf_ops_macs_and_shapes(name):
    ops, macs, input_shape = EXPECTED[name]
    g = read_tflite(mlperf_model(name))
    assert Counter(op.kind for op in g.ops) == Counter(ops)
    assert sum(op_macs(g, op) for op in g.ops) == macs
    assert g.t(g.inputs[0]).shape == input_shape
    assert g.t(g.inputs[0]).dtype == "int8"


def test_per_channel_quantisation_is_read():
    g = read_tflite(mlperf_model("kws_ref_model.tflite"))
    conv = next(op for op in g.ops if op.kind == "CONV_2D")
    w = g.t(conv.inputs[1])
    assert w.quant.per_axis and w.quant.scale.size == w.shape[0] == 64
    assert w.quant.axis == 0 and not w.quant.zero_point.any()
    assert w.data.dtype.name == "int8" and w.data.shape == (64, 10, 4, 1)


def test_reshape_keeps_only_its_data_input():
    g = load_graph(mlperf_model("vww_96_int8.tflite"))
    reshape = next(op for op in g.ops if op.kind == "RESHAPE")
    assert len(reshape.inputs) == 1
