"""The MLPerf Tiny reference models: compile, simulate bit-exactly, stay clean under sanitizers
(with guard bytes around the arena), layer by layer and with the automatic patch stage."""
import numpy as np
import pytest

from mcunet.compiler import compile_model

from .conftest import MLPERF, mlperf_model
from .opcheck import assert_bit_exact, random_inputs


@pytest.mark.parametrize("patch", ["none", "auto"])
@pytest.mark.parametrize("name", MLPERF)
def test_bit_exact_on_random_inputs(name, patch):
    assert_bit_exact(mlperf_model(name), rows=25, seed=1, flags=None, patch=patch)


@pytest.mark.parametrize("patch", ["none", "auto"])
@pytest.mark.parametrize("name", MLPERF)
def test_bit_exact_under_address_and_undefined_sanitizers(name, patch):
    assert_bit_exact(mlperf_model(name), rows=3, seed=2, sanitize=True, patch=patch)


def test_extreme_inputs_are_bit_exact():
    # Saturated inputs push accumulators and softmax to their edges.
    path = mlperf_model("kws_ref_model.tflite")
    graph = compile_model(path).graph
    shape = graph.t(graph.inputs[0]).shape[1:]
    x = np.stack([np.full(shape, -128, np.int8), np.full(shape, 127, np.int8),
                  np.zeros(shape, np.int8), random_inputs(graph, 1, seed=9)[0][0]])
    assert_bit_exact(path, inputs=[x])
