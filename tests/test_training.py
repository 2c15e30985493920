"""--train head / bias (mcunet/training.py, docs/training.md): the generated C's training
step against the NumPy reference bit for bit over 100 steps, invoke after training against
TFLite's reference kernels on the model with the trained parameters written into it, the
reference's gradients against TensorFlow's autodiff, the plan's training figures against the
object file, and the errors."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mcunet import api
from mcunet.cli import main
from mcunet.host import build_training_host
from mcunet.reference import _interpreter, reference_outputs
from mcunet.training import TrainReference, train_exp, train_log

from .conftest import mlperf_model
from .modelgen import ModelBuilder
from .searchnet import ARCH_RESIDUAL, searched_fashion_model

STEPS = 100


def small_model(per_channel: bool, softmax: bool, seed: int = 0) -> bytes:
    """input (1, 20) -> FULLY_CONNECTED 20->12 RELU -> FULLY_CONNECTED 12->5 [-> SOFTMAX]."""
    rng = np.random.default_rng(seed)
    m = ModelBuilder()
    x = m.input((1, 20), "int8", scale=0.05, zero_point=-3)
    w1 = m.const(rng.integers(-127, 128, (12, 20)).astype(np.int8), scale=[0.01], zero_point=[0])
    b1 = m.const(rng.integers(-500, 500, 12).astype(np.int32), scale=[0.0005], zero_point=[0])
    h = m.tensor((1, 12), "int8", scale=0.08, zero_point=-128)
    m.op("FULLY_CONNECTED", [x, w1, b1], [h], fused_activation="RELU")
    n = 5 if per_channel else 1
    scales = [float(np.float32(s)) for s in rng.uniform(0.004, 0.02, n)]
    w2 = m.const(rng.integers(-127, 128, (5, 12)).astype(np.int8), scale=scales, zero_point=[0] * n,
                 quantized_dimension=0)
    b2 = m.const(rng.integers(-300, 300, 5).astype(np.int32), scale=[0.08 * s for s in scales],
                 zero_point=[0] * n)
    y = m.tensor((1, 5), "int8", scale=0.12, zero_point=4)
    m.op("FULLY_CONNECTED", [h, w2, b2], [y])
    if softmax:
        p = m.tensor((1, 5), "int8", scale=1 / 256, zero_point=-128)
        m.op("SOFTMAX", [y], [p])
        y = p
    m.output(y)
    return m.build()


def stem_conv(m, rng, stride: int, out_scale: float, activation: str):
    """The small models' first layer: input (1, 6, 6, 3) -> CONV_2D 3x3 SAME, 8 channels
    (per-channel weights drawn from rng), at `stride`; its output tensor."""
    x = m.input((1, 6, 6, 3), "int8", scale=0.04, zero_point=-5)
    w0 = m.const(rng.integers(-127, 128, (8, 3, 3, 3)).astype(np.int8), scale=[0.01] * 8,
                 zero_point=[0] * 8, quantized_dimension=0)
    b0 = m.const(rng.integers(-300, 300, 8).astype(np.int32), scale=[0.0004] * 8, zero_point=[0] * 8)
    side = 6 // stride
    out = m.tensor((1, side, side, 8), "int8", scale=out_scale, zero_point=-128)
    m.op("CONV_2D", [x, w0, b0], [out], padding="SAME", stride_w=stride, stride_h=stride,
         fused_activation=activation)
    return out


def conv_model(activation: str = "RELU6", per_channel: bool = True, seed: int = 0,
               mean: bool = False) -> bytes:
    """input (1, 6, 6, 3) -> CONV_2D 3x3 stride 2 RELU -> 1x1 CONV_2D 8->16 [activation] ->
    global AVERAGE_POOL_2D -> RESHAPE (or MEAN over the pixels, its own scale, as Keras's
    GlobalAveragePooling2D converts) -> FULLY_CONNECTED 16->5 -> SOFTMAX: the tail of KWS
    (and of most CNN classifiers) on a small model."""
    rng = np.random.default_rng(seed)
    m = ModelBuilder()
    h0 = stem_conv(m, rng, stride=2, out_scale=0.05, activation="RELU")
    n = 16 if per_channel else 1
    scales = [float(np.float32(s)) for s in rng.uniform(0.005, 0.02, n)]
    w1 = m.const(rng.integers(-127, 128, (16, 1, 1, 8)).astype(np.int8), scale=scales,
                 zero_point=[0] * n, quantized_dimension=0)
    b1 = m.const(rng.integers(-400, 400, 16).astype(np.int32), scale=[0.05 * s for s in scales],
                 zero_point=[0] * n)
    h1 = m.tensor((1, 3, 3, 16), "int8", scale=0.03, zero_point=-128 if activation != "NONE" else 3)
    m.op("CONV_2D", [h0, w1, b1], [h1], padding="VALID", fused_activation=activation)
    if mean:
        r = m.tensor((1, 16), "int8", scale=0.021, zero_point=-100)
        m.op("MEAN", [h1, m.const(np.array([1, 2], np.int32))], [r], keep_dims=False)
    else:
        p = m.tensor((1, 1, 1, 16), "int8", scale=0.03,
                     zero_point=-128 if activation != "NONE" else 3)
        m.op("AVERAGE_POOL_2D", [h1], [p], padding="VALID", filter_width=3, filter_height=3,
             stride_w=1, stride_h=1)
        shape = m.const(np.array([1, 16], np.int32))
        r = m.tensor((1, 16), "int8", scale=0.03, zero_point=-128 if activation != "NONE" else 3)
        m.op("RESHAPE", [p, shape], [r], new_shape=[1, 16])
    return classifier_tail(m, rng, r, 16)


def classifier_tail(m, rng, r: int, depth: int) -> bytes:
    """The models' common end: a 5-unit FULLY_CONNECTED head on `depth` features and SOFTMAX,
    built."""
    w2 = m.const(rng.integers(-127, 128, (5, depth)).astype(np.int8), scale=[0.01], zero_point=[0])
    b2 = m.const(rng.integers(-300, 300, 5).astype(np.int32), scale=[0.0003], zero_point=[0])
    y = m.tensor((1, 5), "int8", scale=0.1, zero_point=2)
    m.op("FULLY_CONNECTED", [r, w2, b2], [y])
    out = m.tensor((1, 5), "int8", scale=1 / 256, zero_point=-128)
    m.op("SOFTMAX", [y], [out])
    m.output(out)
    return m.build()


def depthwise_model(k: int = 3, stride: int = 1, padding: str = "SAME", dw_act: str = "RELU",
                    pw_act: str = "RELU6", per_channel: bool = True, seed: int = 0) -> bytes:
    """input (1, 8, 8, 3) -> CONV_2D 3x3 stride 1 SAME RELU (6 channels) -> DEPTHWISE_CONV_2D kxk
    [stride, padding, dw_act] -> 1x1 CONV_2D 6->12 [pw_act] -> global AVERAGE_POOL_2D ->
    RESHAPE -> FULLY_CONNECTED 12->5 -> SOFTMAX: the tail of KWS (and of MobileNet-style
    classifiers) on a small model, for last:3."""
    rng = np.random.default_rng(seed)
    m = ModelBuilder()
    x = m.input((1, 8, 8, 3), "int8", scale=0.04, zero_point=-5)
    w0 = m.const(rng.integers(-127, 128, (6, 3, 3, 3)).astype(np.int8), scale=[0.01] * 6,
                 zero_point=[0] * 6, quantized_dimension=0)
    b0 = m.const(rng.integers(-300, 300, 6).astype(np.int32), scale=[0.0004] * 6,
                 zero_point=[0] * 6)
    h0 = m.tensor((1, 8, 8, 6), "int8", scale=0.05, zero_point=-128)
    m.op("CONV_2D", [x, w0, b0], [h0], padding="SAME", stride_w=1, stride_h=1,
         fused_activation="RELU")
    n = 6 if per_channel else 1
    ds = [float(np.float32(s)) for s in rng.uniform(0.01, 0.03, n)]
    wd = m.const(rng.integers(-127, 128, (1, k, k, 6)).astype(np.int8), scale=ds,
                 zero_point=[0] * n, quantized_dimension=3)
    bd = m.const(rng.integers(-400, 400, 6).astype(np.int32), scale=[0.05 * s for s in ds],
                 zero_point=[0] * n)
    o = (8 + stride - 1) // stride if padding == "SAME" else (8 - k) // stride + 1
    h1 = m.tensor((1, o, o, 6), "int8", scale=0.06, zero_point=-128 if dw_act != "NONE" else 2)
    m.op("DEPTHWISE_CONV_2D", [h0, wd, bd], [h1], padding=padding, stride_h=stride,
         stride_w=stride, dilation_h=1, dilation_w=1, depth_multiplier=1,
         fused_activation=dw_act)
    ps = [float(np.float32(s)) for s in rng.uniform(0.005, 0.02, 12)]
    w1 = m.const(rng.integers(-127, 128, (12, 1, 1, 6)).astype(np.int8), scale=ps,
                 zero_point=[0] * 12, quantized_dimension=0)
    b1 = m.const(rng.integers(-400, 400, 12).astype(np.int32), scale=[0.06 * s for s in ps],
                 zero_point=[0] * 12)
    zp = -128 if pw_act != "NONE" else 3
    h2 = m.tensor((1, o, o, 12), "int8", scale=0.03, zero_point=zp)
    m.op("CONV_2D", [h1, w1, b1], [h2], padding="VALID", fused_activation=pw_act)
    p = m.tensor((1, 1, 1, 12), "int8", scale=0.03, zero_point=zp)
    m.op("AVERAGE_POOL_2D", [h2], [p], padding="VALID", filter_width=o, filter_height=o,
         stride_w=1, stride_h=1)
    r = m.tensor((1, 12), "int8", scale=0.03, zero_point=zp)
    m.op("RESHAPE", [p, m.const(np.array([1, 12], np.int32))], [r], new_shape=[1, 12])
    return classifier_tail(m, rng, r, 12)


def residual_model(depthwise: bool = False, add_act: str = "NONE", seed: int = 0) -> bytes:
    """input (1, 6, 6, 3) -> CONV_2D 3x3 SAME RELU6 (8 channels) = r [-> DEPTHWISE_CONV_2D 3x3
    SAME RELU6] -> 1x1 CONV_2D 8->8, no activation -> ADD(r, that) [add_act] -> global
    AVERAGE_POOL_2D -> RESHAPE -> FULLY_CONNECTED 8->5 -> SOFTMAX: an inverted-residual block's
    end (expansion 1) under the classifier, for the backward through the ADD."""
    rng = np.random.default_rng(seed)
    m = ModelBuilder()
    r = stem_conv(m, rng, stride=1, out_scale=0.03, activation="RELU6")
    h = r
    if depthwise:
        ds = [float(np.float32(s)) for s in rng.uniform(0.01, 0.03, 8)]
        wd = m.const(rng.integers(-127, 128, (1, 3, 3, 8)).astype(np.int8), scale=ds,
                     zero_point=[0] * 8, quantized_dimension=3)
        bd = m.const(rng.integers(-400, 400, 8).astype(np.int32), scale=[0.03 * s for s in ds],
                     zero_point=[0] * 8)
        h = m.tensor((1, 6, 6, 8), "int8", scale=0.05, zero_point=-128)
        m.op("DEPTHWISE_CONV_2D", [r, wd, bd], [h], padding="SAME", stride_h=1, stride_w=1,
             dilation_h=1, dilation_w=1, depth_multiplier=1, fused_activation="RELU6")
    ps = [float(np.float32(s)) for s in rng.uniform(0.005, 0.02, 8)]
    w1 = m.const(rng.integers(-127, 128, (8, 1, 1, 8)).astype(np.int8), scale=ps,
                 zero_point=[0] * 8, quantized_dimension=0)
    b1 = m.const(rng.integers(-400, 400, 8).astype(np.int32),
                 scale=[(0.05 if depthwise else 0.03) * s for s in ps], zero_point=[0] * 8)
    y = m.tensor((1, 6, 6, 8), "int8", scale=0.04, zero_point=3)
    m.op("CONV_2D", [h, w1, b1], [y], padding="VALID", fused_activation="NONE")
    zp = -128 if add_act != "NONE" else -20
    s = m.tensor((1, 6, 6, 8), "int8", scale=0.06, zero_point=zp)
    m.op("ADD", [r, y], [s], fused_activation=add_act)
    p = m.tensor((1, 1, 1, 8), "int8", scale=0.06, zero_point=zp)
    m.op("AVERAGE_POOL_2D", [s], [p], padding="VALID", filter_width=6, filter_height=6,
         stride_w=1, stride_h=1)
    q = m.tensor((1, 8), "int8", scale=0.06, zero_point=zp)
    m.op("RESHAPE", [p, m.const(np.array([1, 8], np.int32))], [q], new_shape=[1, 8])
    return classifier_tail(m, rng, q, 8)


def head_inputs(model, training, rows: np.ndarray) -> np.ndarray:
    """The trained tail's int8 input (the head's, or the trained conv's) for every row, by
    TFLite's reference kernels."""
    interp = _interpreter(model, preserve=True)
    d = interp.get_input_details()[0]
    xs = []
    for x in rows:
        interp.set_tensor(d["index"], x[None].reshape(d["shape"]))
        interp.invoke()
        xs.append(np.concatenate([interp.get_tensor(e).reshape(-1) for e in training.entries]))
    return np.stack(xs)


def samples(compiled, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`rows` random inputs with labels, repeated to STEPS steps (so the loss can fall)."""
    rng = np.random.default_rng(seed)
    shape = compiled.graph.t(compiled.graph.inputs[0]).shape
    x = rng.integers(-128, 128, size=(rows,) + tuple(shape[1:])).astype(np.int8)
    labels = rng.integers(0, compiled.training.head.units, size=rows)
    reps = -(-STEPS // rows)
    return np.tile(x, (reps,) + (1,) * (x.ndim - 1))[:STEPS], np.tile(labels, reps)[:STEPS]


def patched(model: bytes, training, state) -> bytes:
    """The .tflite with the trained filters and biases written over the original bytes (a
    sparse build's untrained channels as they were)."""
    layers = {"": training.head, **({training.conv.key: training.conv} if training.conv else {}),
              **({training.dw.key: training.dw} if training.dw else {})}
    full = training.full_parameters(state)
    pairs = []
    for key, op, _, _ in training.layers():
        filt, bias = full[op]
        pairs += [(layers[key].filter, filt, np.int8), (layers[key].bias, bias, "<i4")]
    for old, new, dtype in pairs:
        old, new = np.asarray(old).astype(dtype).tobytes(), np.asarray(new).astype(dtype).tobytes()
        assert model.count(old) == 1, "the trained parameters appear once in the file"
        model = model.replace(old, new)
    return model


def check_training(model, tmp_path, scheme: str, lr: float, rows: int = 10, seed: int = 1):
    path = model
    if isinstance(model, bytes):
        path = tmp_path / "model.tflite"
        path.write_bytes(model)
    compiled = api.compile(path, train=scheme)
    t = compiled.training
    x, labels = samples(compiled, rows, seed)
    evaluate = x[:rows]
    # Before training invoke is the model as compiled: bit-exact with TFLite's reference.
    before = build_training_host(compiled).run(x[:0], labels[:0], evaluate, lr=lr)
    np.testing.assert_array_equal(before.outputs.reshape(len(evaluate), -1),
                                  reference_outputs(path, [evaluate])[0].reshape(len(evaluate), -1))
    run = build_training_host(compiled).run(x, labels, evaluate, lr=lr)
    ref = TrainReference(t, lr=lr)
    xs = head_inputs(str(path), t, x)
    losses, logits = zip(*(ref.step(xi, int(li)) for xi, li in zip(xs, labels)))
    assert (run.status == 0).all()
    np.testing.assert_array_equal(run.logits, np.stack(logits))
    np.testing.assert_array_equal(run.losses.view(np.uint32),
                                  np.array(losses, np.float32).view(np.uint32))
    state = ref.state()
    assert sorted(run.state) == sorted(state)
    for name, value in state.items():  # every byte of every updated parameter and its state
        assert run.state[name].tobytes() == value.tobytes(), name
    full = t.full_parameters(run.state)
    layers = {t.head.op_index: t.head, **({t.conv.op_index: t.conv} if t.conv else {}),
              **({t.dw.op_index: t.dw} if t.dw else {})}
    for key, op, update, _ in t.layers():  # training changed what it trains, nothing else
        filt, bias = full[op]
        assert np.array_equal(bias, layers[op].bias) != update.bias, (op, "bias")
        if update.channels:
            k = update.channels
            new, old = (filt[:, :k], layers[op].filter[:, :k]) if t.dw is not None and key == t.dw.key else \
                (filt[:k], layers[op].filter[:k])
            assert not np.array_equal(new, old), (op, "filter")
        else:
            assert np.array_equal(filt, layers[op].filter)
    # It learns: the last pass over the samples has a lower loss than the first.
    assert run.losses[-rows:].mean() < run.losses[:rows].mean()
    # After training invoke uses the trained parameters: TFLite's reference on the model
    # with them written in gives the same bytes, and the head's logits are the reference's.
    trained = patched(path.read_bytes() if not isinstance(model, bytes) else model, t, run.state)
    np.testing.assert_array_equal(run.outputs.reshape(len(evaluate), -1),
                                  reference_outputs(trained, [evaluate])[0].reshape(len(evaluate), -1))
    np.testing.assert_array_equal(run.eval_logits, np.stack([ref.logits(xi) for xi in xs[:rows]]))
    assert not np.array_equal(run.outputs, before.outputs)
    return compiled, run


@pytest.mark.parametrize("scheme, lr", [("head", 0.01), ("bias", 0.05)])
def test_kws_training_is_bit_exact_with_the_reference(tmp_path, scheme, lr):
    check_training(mlperf_model("kws_ref_model.tflite"), tmp_path, scheme, lr)


@pytest.mark.parametrize("scheme, lr", [("last:2", 0.01), ("bias", 0.05)])
def test_kws_last2_and_conv_bias_are_bit_exact_with_the_reference(tmp_path, scheme, lr):
    """The backward through the head, RESHAPE, the global average pool and op 8's ReLU mask
    to the 1x1 CONV_2D (op 8): both layers' parameters (last:2) or biases (bias)."""
    compiled, run = check_training(mlperf_model("kws_ref_model.tflite"), tmp_path, scheme, lr)
    assert compiled.training.conv.op_index == 8
    assert compiled.training.conv_filter == (scheme == "last:2")


@pytest.mark.parametrize("scheme, activation, per_channel, mean",
                         [("last:2", "RELU6", True, False), ("last:2", "NONE", False, False),
                          ("last:2", "RELU", True, True), ("bias", "RELU6", True, False)])
def test_small_conv_model_last2_is_bit_exact(tmp_path, scheme, activation, per_channel, mean):
    compiled, _ = check_training(conv_model(activation, per_channel, mean=mean), tmp_path,
                                 scheme, lr=0.05, rows=8)
    assert compiled.training.conv.op_index == 1


@pytest.mark.parametrize("scheme, depthwise, add_act", [
    ("last:3", True, "NONE"),
    pytest.param("last:2", False, "NONE", marks=pytest.mark.slow),
    pytest.param("last:2", False, "RELU", marks=pytest.mark.slow),
    pytest.param("bias", True, "RELU6", marks=pytest.mark.slow)])
def test_training_through_a_residual_add_is_bit_exact(tmp_path, scheme, depthwise, add_act):
    """The backward through a residual ADD (straight through its requantisation, the mask of
    its fused activation on its kept output) to the 1x1 conv under it (no activation; fused
    with the ADD in the forward), and on to the depthwise: 100 steps, the reference's forward
    computing the ADD as TFLite from the conv's output and the residual."""
    compiled, _ = check_training(residual_model(depthwise, add_act), tmp_path, scheme,
                                 lr=0.05, rows=8)
    t = compiled.training
    conv_op = 2 if depthwise else 1
    assert t.conv.op_index == conv_op and t.conv.add_op == conv_op + 1
    assert t.entries == (t.entry, t.conv.residual)
    # Under the depthwise the ADD runs inside the trained conv (fused: the conv's own output
    # never exists); without it the conv reads the residual itself, so the ADD stays a step.
    step = [s for s in compiled.steps if s.op.index == conv_op][0]
    assert (step.layer.fused_add is not None) == depthwise
    assert (t.dw is not None) == depthwise


@pytest.mark.parametrize("scheme", [
    "last:3", pytest.param("bias", marks=pytest.mark.slow),
    pytest.param({"layers": [{"op": "head", "bias": True},
                             {"op": 0, "weights": 0.5, "bias": True}]}, marks=pytest.mark.slow)])
def test_a_3x3_conv_under_the_1x1_conv_is_bit_exact(tmp_path, scheme):
    """conv_model's 3x3 stride-2 SAME CONV_2D (op 0, on the model's input) under the 1x1 conv:
    its weight gradient T[o][k][i] (every input channel of every tap) and bias, 100 steps;
    last:4 is refused at the model's input. The sparse scheme: the head's biases, op 1 frozen,
    op 0's first 4 of 8 output channels."""
    spec = scheme if isinstance(scheme, str) else scheme_file(tmp_path, scheme)
    compiled, _ = check_training(conv_model("RELU6", True), tmp_path, spec, lr=0.05, rows=8)
    t = compiled.training
    assert (t.dw.kind, t.dw.op_index, t.dw.in_channels, t.dw.kh) == ("CONV_2D", 0, 3, 3)
    assert t.parameters == {"last:3": 5 * 17 + 16 * 9 + 8 * 28, "bias": 5 + 16 + 8}.get(
        spec, 5 + 4 * 27 + 8)


@pytest.mark.parametrize("scheme, lr", [("last:3", 0.01), ("bias", 0.05)])
def test_kws_last3_and_depthwise_bias_are_bit_exact_with_the_reference(tmp_path, scheme, lr):
    """The backward on through op 8's input gradient and op 7's ReLU mask to the
    DEPTHWISE_CONV_2D (op 7): its filter and bias (last:3) or bias (bias) too."""
    compiled, run = check_training(mlperf_model("kws_ref_model.tflite"), tmp_path, scheme, lr)
    assert compiled.training.dw.op_index == 7
    assert compiled.training.dw_filter == (scheme == "last:3")


@pytest.mark.parametrize("scheme, k, stride, padding, dw_act, pw_act, per_channel", [
    ("last:3", 3, 1, "SAME", "RELU", "RELU6", True),
    ("last:3", 3, 2, "SAME", "RELU6", "RELU", False),
    ("last:3", 5, 2, "VALID", "NONE", "NONE", True),
    ("bias", 3, 2, "VALID", "RELU", "RELU", True)])
def test_small_depthwise_model_last3_is_bit_exact(tmp_path, scheme, k, stride, padding, dw_act,
                                                  pw_act, per_channel):
    compiled, _ = check_training(depthwise_model(k, stride, padding, dw_act, pw_act,
                                                 per_channel), tmp_path, scheme, lr=0.05, rows=8)
    t = compiled.training
    assert (t.dw.op_index, t.conv.op_index) == (1, 2)
    assert (t.dw.sh, t.dw.kh) == (stride, k)


@pytest.mark.parametrize("scheme, per_channel, softmax",
                         [("head", True, True), ("head", False, False), ("bias", True, False),
                          ("bias", False, True)])
def test_small_model_training_is_bit_exact(tmp_path, scheme, per_channel, softmax):
    check_training(small_model(per_channel, softmax), tmp_path, scheme, lr=0.05, rows=8)


def test_a_bad_label_changes_nothing(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(small_model(True, True))
    compiled = api.compile(path, train="head")
    x, _ = samples(compiled, 2, 0)
    run = build_training_host(compiled).run(x[:2], np.array([5, -1]))
    assert run.status.tolist() == [-1, -1]
    assert (run.state["bias"] == compiled.training.head.bias).all()
    assert (run.state["filter"] == compiled.training.head.filter).all()


def test_exp_and_log_are_close_to_libm():
    """Float against float (a tolerance): relative 2e-7 for exp on [-87, 0] (0 below), 1e-6
    absolute for log on [1, 40]."""
    xs = np.linspace(-87, 0, 2001).astype(np.float32)
    got = np.array([train_exp(v) for v in xs], np.float64)
    want = np.exp(xs.astype(np.float64))
    assert np.max(np.abs(got - want) / want) < 2e-7
    assert train_exp(np.float32(-87.5)) == 0
    ys = np.linspace(1, 40, 2001).astype(np.float32)
    got = np.array([train_log(v) for v in ys], np.float64)
    assert np.max(np.abs(got - np.log(ys.astype(np.float64)))) < 1e-6


def test_plan_reports_training_memory_measured_in_the_object(tmp_path):
    model = mlperf_model("kws_ref_model.tflite")
    plans = {}
    sparse = scheme_file(tmp_path, SPARSE_A)
    for scheme in ("head", "bias", "last:2", "last:3", sparse):
        r = subprocess.run([sys.executable, "-m", "mcunet", "plan", str(model), "--train", scheme,
                            "--json", "--no-png"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        plans[scheme] = json.loads(r.stdout)
    inference = api.compile(model, patch="none")
    for scheme, plan in plans.items():
        t = plan["training"]
        assert t["scheme"] == scheme
        assert plan["peak_sram_bytes"] == t["training_peak_sram_bytes"] == \
            plan["arena_bytes"] + t["static_bytes"]
        assert plan["arena_bytes"] >= inference.plan.arena_bytes
        # The static RAM counted is what the compiled object holds besides the arena.
        compiled = api.compile(model, train=scheme)
        out = tmp_path / ("sparse" if scheme == sparse else scheme)
        compiled.write(out)
        obj = out / "m.o"
        subprocess.run(["cc", "-std=c99", "-O2", "-c", str(out / "mcunet_model.c"), "-I", str(out),
                        "-o", str(obj)], check=True)
        symbols = subprocess.run(["nm", "-S", str(obj)], capture_output=True, text=True).stdout
        static = sum(int(size, 16) for _, size, kind, name in
                     (line.split() for line in symbols.splitlines() if len(line.split()) == 4)
                     if kind in "bBdD" and name != "arena")
        assert static == t["static_bytes"]
    assert plans["head"]["training"]["parameters"] == 12 * 65
    assert plans["bias"]["training"]["static_bytes"] < plans["head"]["training"]["static_bytes"]
    assert plans["last:2"]["training"]["parameters"] == 12 * 65 + 64 * 65
    assert plans["last:2"]["training"]["layers"] == [11, 8]
    assert plans["bias"]["training"]["parameters"] == 12 + 64 + 64
    assert plans["last:3"]["training"]["parameters"] == 12 * 65 + 64 * 65 + 64 * 10
    assert plans["last:3"]["training"]["layers"] == [11, 8, 7]
    # The gradient buffers: dL/dz, dL/dx of the head's input, op 8's scaled output gradient.
    assert plans["last:3"]["training"]["gradient_bytes"] == 4 * (12 + 64 + 64)
    # SPARSE_A: op 8's first 16 channels' weights and op 7's first 32 (of 64) in RAM, at 9 B
    # each (int8, float32 delta and momentum): 30,240 B less state than last:3.
    t = plans[sparse]["training"]
    assert t["parameters"] == 12 * 65 + 16 * 64 + 64 + 32 * 9 + 64
    assert t["layer_updates"] == [
        {"op": 11, "kind": "FULLY_CONNECTED", "bias": True, "weight_channels": 12, "channels": 12},
        {"op": 8, "kind": "CONV_2D", "bias": True, "weight_channels": 16, "channels": 64},
        {"op": 7, "kind": "DEPTHWISE_CONV_2D", "bias": True, "weight_channels": 32, "channels": 64}]
    assert plans["last:3"]["training"]["static_bytes"] - t["static_bytes"] == \
        9 * (48 * 64 + 32 * 9)


@pytest.mark.parametrize("spec, words", [
    ("everything", "is not a training scheme"),
    ("last:4", "below DEPTHWISE_CONV_2D (op 7) reaches CONV_2D (op 6), which the backward "
               "does not pass through"),
    ("last:x", "N in last:N"),
])
def test_unsupported_schemes_are_one_line_errors(capsys, spec, words):
    with pytest.raises(SystemExit) as exc:
        main(["plan", str(mlperf_model("kws_ref_model.tflite")), "--train", spec, "--no-png"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --train") and words in err and len(err.strip().splitlines()) == 1


# Sparse schemes (docs/training.md, "Sparse update"): on KWS the backward reaches op 11 (the
# head), op 8 (the 1x1 conv) and op 7 (the depthwise). A: every part of the schema, partial
# channels of the conv and the depthwise; B: not contiguous (op 8 frozen between the head's
# bias and op 7's weights: the backward passes through op 8's input gradient only).
SPARSE_A = {"layers": [{"op": "head", "weights": 1, "bias": True},
                       {"op": 8, "weights": 0.25, "bias": True},
                       {"op": 7, "weights": 0.5, "bias": True}]}
SPARSE_B = {"layers": [{"op": 11, "bias": True}, {"op": 7, "weights": 0.25, "bias": True}]}


def scheme_file(tmp_path, scheme: dict, name: str = "scheme.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(scheme))
    return str(path)


@pytest.mark.parametrize("scheme, layers, channels", [
    (SPARSE_A, [11, 8, 7], [12, 16, 32]),
    pytest.param(SPARSE_B, [11, 7], [0, 0, 16], marks=pytest.mark.slow)])
def test_kws_sparse_schemes_are_bit_exact_with_the_reference(tmp_path, scheme, layers, channels):
    """100 steps; the trained filters hold their first ceil(ratio x C) output channels only
    (the rest stay in flash, and invoke reads them there: TFLite agrees after training)."""
    compiled, run = check_training(mlperf_model("kws_ref_model.tflite"), tmp_path,
                                   scheme_file(tmp_path, scheme), lr=0.01)
    t = compiled.training
    assert t.sparse and t.summary(compiled)["layers"] == layers
    assert [t.head_channels, t.conv_channels, t.dw_channels] == channels
    if t.conv_filter:
        assert run.state[t.conv.key + "filter"].shape == (channels[1], 64)
    if t.dw_filter:
        assert run.state[t.dw.key + "filter"].shape == (9, channels[2])
    if scheme is SPARSE_B:  # op 8 frozen: no state, its flash filter serves the backward
        assert not any(k.startswith(t.conv.key) for k in run.state) and "filter" not in run.state


# VWW (MLPerf Tiny vww_96_int8): ... DEPTHWISE_CONV_2D op 25 (3x3, 256) -> 1x1 CONV_2D op 26
# (256 -> 256, RELU) -> AVERAGE_POOL_2D -> RESHAPE -> FULLY_CONNECTED op 29 (2 x 256) -> SOFTMAX.
SPARSE_VWW = {"layers": [{"op": "head", "weights": 1, "bias": True},
                         {"op": 26, "weights": 0.125, "bias": True},
                         {"op": 25, "weights": 0.25, "bias": True}]}


@pytest.mark.slow
@pytest.mark.parametrize("scheme, lr", [("head", 0.01), ("bias", 0.05), ("last:2", 0.01),
                                        ("last:3", 0.01), ("sparse", 0.01)])
def test_vww_training_is_bit_exact_with_the_reference(tmp_path, scheme, lr):
    """100 steps on VWW (ops 29, 26, 25), every loss, logit and state byte, and invoke after
    training against TFLite with the trained parameters written in."""
    spec = scheme_file(tmp_path, SPARSE_VWW) if scheme == "sparse" else scheme
    compiled, _ = check_training(mlperf_model("vww_96_int8.tflite"), tmp_path, spec, lr)
    t = compiled.training
    assert t.head.op_index == 29 and (t.conv is None or t.conv.op_index == 26)
    if scheme == "sparse":
        assert (t.conv_channels, t.dw_channels) == (32, 64)


@pytest.fixture(scope="module")
def fashion_model():
    """A searched Fashion-MNIST network (tests/searchnet.py: mcunet's search space, exported
    by the search's int8 path; about 40 s to build here with TensorFlow's import and a short
    fit, cached under MCUNET_CACHE, so the tests using it are slow); skipped without
    TensorFlow or the dataset."""
    import importlib.util
    from pathlib import Path

    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("needs TensorFlow")
    from mcunet.search.data import FASHION_DIRS

    if not any(Path(d).is_dir() for d in FASHION_DIRS):
        pytest.skip("needs the Fashion-MNIST dataset")
    return searched_fashion_model()


# Its tail: DEPTHWISE_CONV_2D op 13 (3x3, 72, RELU6) -> the block's 1x1 project CONV_2D op 14
# (72 -> 32, no activation) -> MEAN -> FULLY_CONNECTED op 16 (10 x 32) -> SOFTMAX.
SPARSE_FASHION = {"layers": [{"op": "head", "weights": 0.5, "bias": True},
                             {"op": 14, "weights": 0.25, "bias": True},
                             {"op": 13, "weights": 0.25}]}


@pytest.mark.slow
@pytest.mark.parametrize("scheme, lr", [("sparse", 0.02), ("bias", 0.05), ("head", 0.02),
                                        ("last:2", 0.02), ("last:3", 0.02)])
def test_searched_fashion_model_training_is_bit_exact(tmp_path, fashion_model, scheme, lr):
    """100 steps on a network of mcunet's own search space, quantised as the search exports
    it (ops 16, 14, 13: the head, the last block's project conv with no activation, and its
    depthwise)."""
    spec = scheme_file(tmp_path, SPARSE_FASHION) if scheme == "sparse" else scheme
    compiled, _ = check_training(fashion_model, tmp_path, spec, lr)
    t = compiled.training
    assert t.head.op_index == 16
    if t.conv is not None:  # no activation; MEAN
        assert t.conv.op_index == 14 and t.conv.mask_lo is None and t.conv.mean is not None
    if scheme == "sparse":
        assert (t.head_channels, t.conv_channels, t.dw_channels) == (5, 8, 18)


@pytest.fixture(scope="module")
def fashion_residual_model(fashion_model):
    """The searched network with two blocks in its last stage: it ends DEPTHWISE_CONV_2D op 16
    -> project CONV_2D op 17 -> ADD op 18 (op 14's output + op 17's) -> MEAN -> FC op 20."""
    return searched_fashion_model(ARCH_RESIDUAL)


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["last:2", "last:3", "sparse"])
def test_searched_fashion_model_through_its_residual_add(tmp_path, fashion_residual_model,
                                                        scheme):
    spec = scheme_file(tmp_path, {"layers": [{"op": "head", "weights": 1, "bias": True},
                                             {"op": 17, "weights": 0.5, "bias": True},
                                             {"op": 16, "weights": 0.25, "bias": True}]}) \
        if scheme == "sparse" else scheme
    compiled, _ = check_training(fashion_residual_model, tmp_path, spec, 0.02)
    t = compiled.training
    assert (t.head.op_index, t.conv.op_index, t.conv.add_op) == (20, 17, 18)
    assert (t.dw is not None) == (scheme != "last:2")


@pytest.mark.parametrize("scheme, words", [
    ({"layers": [{"op": 99, "bias": True}]}, "layers[0].op: no op 99 in this model"),
    ({"layers": [{"op": "nowhere", "bias": True}]}, "layers[0].op: no op of this model outputs"),
    ({"layers": [{"op": 11, "bias": True}, {"op": 8, "weights": 0}]},
     "layers[1].weights: 0 is not a ratio of output channels in (0, 1]"),
    ({"layers": [{"op": 8, "weights": 1.5}]}, "layers[0].weights: 1.5 is not a ratio"),
    ({"layers": [{"op": 8, "weights": "half"}]}, "layers[0].weights: \"half\" is not a ratio"),
    ({"layers": [{"op": 8, "bias": 1}]}, "layers[0].bias: 1 is not true or false"),
    ({"layers": [{"op": 9, "bias": True}]},
     "layers[0].op: AVERAGE_POOL_2D (op 9) is not a layer the backward reaches"),
    ({"layers": [{"op": 6, "weights": 0.5}]},
     "layers[0].op: CONV_2D (op 6) is not a layer the backward reaches: on this model it trains "
     "op 11 (the head), op 8 (CONV_2D), op 7 (DEPTHWISE_CONV_2D), and below op 7 it stops at "
     "CONV_2D (op 6)"),
    ({"layers": [{"op": 8, "bias": True}, {"op": 8, "weights": 0.5}]}, "op 8 is listed twice"),
    ({"layers": [{"op": 8}]}, "layers[0]: updates nothing"),
    ({"layers": [{"op": 8, "bias": True, "ratio": 0.5}]}, "layers[0].ratio: unknown field"),
    ({"layers": [{"bias": True}]}, "layers[0].op: missing"),
    ({"layers": []}, "layers: missing or not a non-empty list"),
    ({"layer": [{"op": 8, "bias": True}]}, "layer: unknown field"),
    ([{"op": 8, "bias": True}], "the file must hold one JSON object"),
    ('{"layers": [', "not valid JSON (line 1 column 13"),
    (None, "is a directory, not a JSON scheme file"),
    ("missing", "no such file"),
])
def test_bad_sparse_schemes_are_one_line_errors(tmp_path, capsys, scheme, words):
    if scheme is None:
        spec = str(tmp_path)
    elif scheme == "missing":
        spec = str(tmp_path / "missing.json")
    else:
        path = tmp_path / "scheme.json"
        path.write_text(scheme if isinstance(scheme, str) else json.dumps(scheme))
        spec = str(path)
    with pytest.raises(SystemExit) as exc:
        main(["plan", str(mlperf_model("kws_ref_model.tflite")), "--train", spec, "--no-png"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --train {spec}: ") and words in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_model_without_a_fully_connected_head_is_refused(tmp_path, capsys):
    m = ModelBuilder()
    x = m.input((1, 8), "int8", scale=0.1, zero_point=0)
    y = m.tensor((1, 8), "int8", scale=1 / 256, zero_point=-128)
    m.op("SOFTMAX", [x], [y])
    m.output(y)
    path = tmp_path / "nofc.tflite"
    path.write_bytes(m.build())
    with pytest.raises(SystemExit) as exc:
        main(["compile", str(path), "--train", "head", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "FULLY_CONNECTED" in err and err.startswith("error:") and "Traceback" not in err


def test_compile_train_stays_off_tensorflow(tmp_path):
    code = ("import sys; from mcunet.cli import main\n"
            "main(['compile', sys.argv[1], '--train', 'head', '--out', sys.argv[2]])\n")
    code = ("import sys; from mcunet.cli import main\n"
            "try:\n    main(['compile', sys.argv[1], '--train', 'head', '--out', sys.argv[2]])\n"
            "except SystemExit: pass\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'ray')]\n"
            "print('heavy:', bad)\n")
    r = subprocess.run([sys.executable, "-c", code, str(mlperf_model("kws_ref_model.tflite")),
                        str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "heavy: []" in r.stdout and (tmp_path / "o" / "mcunet_model.h").is_file()
    header = (tmp_path / "o" / "mcunet_model.h").read_text()
    assert "int mcunet_train_step(const int8_t *input, int label);" in header
    assert "-ffp-contract=off" in (tmp_path / "o" / "CMakeLists.txt").read_text()


def test_gradients_match_tensorflow_autodiff(tmp_path):
    """Float against float: the reference's dL/dW, dL/db (of the real-valued parameters, at the
    int8 forward's logits) against TensorFlow's autodiff of softmax cross-entropy on
    z = Wx + b with the same logits (straight through); within 2e-6 of the largest gradient.
    One step's update in quantised units, scaled back, is -lr times TensorFlow's gradient
    (QAS): within 1e-5 relative."""
    tf = pytest.importorskip("tensorflow")
    model = mlperf_model("kws_ref_model.tflite")
    compiled = api.compile(model, train="head")
    t = compiled.training
    h = t.head
    x, labels = samples(compiled, 4, 7)
    xs = head_inputs(str(model), t, x[:4])
    for xi, label in zip(xs, labels[:4]):
        ref = TrainReference(t, momentum=0.0)
        grads = ref.real_gradients(xi, int(label))
        gw, gb = grads["filter"], grads["bias"]
        zq = ref.logits(xi).astype(np.float32) - h.y_zp
        scale = h.w_scales.astype(np.float64)[:, None]
        W = tf.Variable((h.filter.astype(np.float64) * scale).astype(np.float32))
        b = tf.Variable((h.bias * h.x_scale * h.w_scales.astype(np.float64)).astype(np.float32))
        xr = tf.constant(((xi.astype(np.float32) - h.x_zp) * np.float32(h.x_scale))[:, None])
        with tf.GradientTape() as tape:
            lin = tf.reshape(tf.matmul(W, xr), [-1]) + b
            z = tf.stop_gradient(tf.constant(zq * np.float32(h.y_scale)) - lin) + lin
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.constant([int(label)]), logits=z[None])[0]
        tw, tb = (g.numpy() for g in tape.gradient(loss, [W, b]))
        loss_ref, _ = ref.step(xi, int(label))
        assert abs(float(loss_ref) - float(loss.numpy())) <= 1e-5 * max(1.0, float(loss.numpy()))
        assert np.max(np.abs(gw - tw)) <= 2e-6 * np.max(np.abs(tw))
        assert np.max(np.abs(gb - tb)) <= 2e-6 * np.max(np.abs(tb))
        moved = ref.filter_delta.astype(np.float64) * scale
        np.testing.assert_allclose(moved, -t.lr * tw, rtol=1e-5, atol=1e-5 * np.max(np.abs(t.lr * tw)))
        moved_b = ref.bias_delta * h.x_scale * h.w_scales.astype(np.float64)
        np.testing.assert_allclose(moved_b, -t.lr * tb, rtol=1e-5, atol=1e-5 * np.max(np.abs(t.lr * tb)))


def test_conv_gradients_match_tensorflow_autodiff():
    """last:2 on KWS, float against float: the reference's gradients of the head's and the 1x1
    conv's (op 8) real-valued parameters against TensorFlow's autodiff of the straight-through
    float computation (the int8 forward's values, TF's gradients through FC, the mean over the
    pixels, the activation's mask and the conv), within 1e-5 of the largest gradient of each;
    one step's QAS update of the conv, scaled back, is -lr times TF's gradient (1e-5 of the
    largest)."""
    tf = pytest.importorskip("tensorflow")
    model = mlperf_model("kws_ref_model.tflite")
    compiled = api.compile(model, train="last:2")
    t = compiled.training
    h, c = t.head, t.conv
    x, labels = samples(compiled, 3, 7)
    xs = head_inputs(str(model), t, x[:3])
    for xi, label in zip(xs, labels[:3]):
        ref = TrainReference(t, momentum=0.0)
        grads = ref.real_gradients(xi, int(label))
        y, pooled = ref.conv_forward(xi)
        zq = ref.head_logits(pooled).astype(np.float32) - h.y_zp
        mask = np.ones(y.shape, bool)
        if c.mask_lo is not None:
            mask &= y > c.mask_lo
        if c.mask_hi is not None:
            mask &= y < c.mask_hi
        cs = c.w_scales.astype(np.float64)
        Wc = tf.Variable((c.filter * cs[:, None]).astype(np.float32))
        bc = tf.Variable((c.bias * c.x_scale * cs).astype(np.float32))
        hs = h.w_scales.astype(np.float64)
        W = tf.Variable((h.filter * hs[:, None]).astype(np.float32))
        b = tf.Variable((h.bias * h.x_scale * hs).astype(np.float32))
        xr = tf.constant(((xi.reshape(c.pixels, c.depth).astype(np.float32) - c.x_zp)
                          * np.float32(c.x_scale)))
        pr = tf.constant((pooled.astype(np.float32) - h.x_zp) * np.float32(h.x_scale))
        with tf.GradientTape() as tape:
            lin = (tf.matmul(xr, Wc, transpose_b=True) + bc) * tf.constant(mask, tf.float32)
            mean = tf.reduce_mean(lin, axis=0)
            pst = tf.stop_gradient(pr - mean) + mean
            lin2 = tf.reshape(tf.matmul(W, pst[:, None]), [-1]) + b
            z = tf.stop_gradient(tf.constant(zq * np.float32(h.y_scale)) - lin2) + lin2
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.constant([int(label)]), logits=z[None])[0]
        tw, tb, tcw, tcb = (g.numpy() for g in tape.gradient(loss, [W, b, Wc, bc]))
        for mine, theirs in [(grads["filter"], tw), (grads["bias"], tb),
                             (grads["conv_filter"], tcw), (grads["conv_bias"], tcb)]:
            assert np.max(np.abs(mine - theirs)) <= 1e-5 * np.max(np.abs(theirs))
        assert np.any(grads["conv_filter"] != 0) and not mask.all()
        ref.step(xi, int(label))
        moved = ref.conv["filter_delta"].astype(np.float64) * cs[:, None]
        np.testing.assert_allclose(moved, -t.lr * tcw, rtol=1e-5,
                                   atol=1e-5 * np.max(np.abs(t.lr * tcw)))
        moved_b = ref.conv["bias_delta"] * c.x_scale * cs
        np.testing.assert_allclose(moved_b, -t.lr * tcb, rtol=1e-5,
                                   atol=1e-5 * np.max(np.abs(t.lr * tcb)))


# On KWS: the head's first 5 of 12 units' weights and no bias, op 8's biases only, op 7's
# first 16 of 64 channels' weights and no bias.
SPARSE_C = {"layers": [{"op": "head", "weights": 0.4}, {"op": 8, "bias": True},
                       {"op": 7, "weights": 0.25}]}


@pytest.mark.parametrize("build, scheme", [("fc", "head"), ("conv", "last:2"),
                                           ("kws", SPARSE_C)])
def test_a_named_library_with_an_external_arena_trains_alike_under_sanitizers(tmp_path, build,
                                                                             scheme):
    """--name and --external-arena rename and move nothing that training reads; ASan/UBSan
    find nothing (a sparse scheme's split filters included: partial head rows, conv channels
    and depthwise channels); the steps equal the reference's (every state byte)."""
    path = tmp_path / "m.tflite"
    path.write_bytes(small_model(False, True, seed=3) if build == "fc" else conv_model(seed=3)
                     if build == "conv" else mlperf_model("kws_ref_model.tflite").read_bytes())
    compiled = api.compile(path, train=scheme, name="kws", external_arena=True)
    header = compiled.library().files["kws_model.h"]
    assert "int kws_train_step(const int8_t *input, int label);" in header
    x, labels = samples(compiled, 5, 2)
    run = build_training_host(compiled, sanitize=True).run(x[:20], labels[:20], lr=0.05)
    ref = TrainReference(compiled.training, lr=0.05)
    xs = head_inputs(str(path), compiled.training, x[:20])
    losses = [ref.step(xi, int(li))[0] for xi, li in zip(xs, labels[:20])]
    assert run.losses.tobytes() == np.array(losses, np.float32).tobytes()
    for key, value in ref.state().items():
        assert run.state[key].tobytes() == value.tobytes(), key
    if build == "kws":
        t = compiled.training
        assert (t.head_channels, t.conv_channels, t.dw_channels) == (5, 0, 16)
        assert t.parameters == 5 * 64 + 64 + 16 * 9
        assert sorted(run.state) == ["filter", "filter_delta", "filter_velocity", "op7_filter",
                                     "op7_filter_delta", "op7_filter_velocity", "op8_bias",
                                     "op8_bias_delta", "op8_bias_velocity"]


@pytest.mark.parametrize("which", ["kws", "conv3x3",
                                   pytest.param("residual", marks=pytest.mark.slow)])
def test_depthwise_gradients_match_tensorflow_autodiff(tmp_path, which):
    """last:3 on KWS, float against float: the reference's gradients of op 7's (the
    DEPTHWISE_CONV_2D's) real-valued filter and bias, and of op 8's and the head's, against
    TensorFlow's autodiff of the straight-through float computation (the int8 forward's values
    at every layer; TF's gradients through the FC, the mean, op 8's mask and 1x1 conv, op 7's
    mask and tf.nn.depthwise_conv2d), within 1e-5 of the largest gradient of each; one step's
    QAS update of op 7, scaled back, is -lr times TF's gradient (1e-5 of the largest).
    "residual": the same through a residual ADD (residual_model with the depthwise and a
    RELU6 on the ADD): TF adds the residual's real values to the 1x1 conv's and masks the sum
    by the ADD's activation. "conv3x3": a 3x3 stride-2 SAME CONV_2D under the 1x1 conv
    (conv_model), its weight gradient against tf.nn.conv2d's."""
    tf = pytest.importorskip("tensorflow")
    model = mlperf_model("kws_ref_model.tflite")
    if which != "kws":
        model = tmp_path / f"{which}.tflite"
        model.write_bytes(residual_model(True, "RELU6", seed=2) if which == "residual" else
                          conv_model("RELU6", True, seed=4))
    compiled = api.compile(model, train="last:3")
    t = compiled.training
    h, c, d = t.head, t.conv, t.dw
    x, labels = samples(compiled, 3, 7)
    xs = head_inputs(str(model), t, x[:3])

    def masked(v, lo, hi):
        m = np.ones(v.shape, bool)
        if lo is not None:
            m &= v > lo
        if hi is not None:
            m &= v < hi
        return m

    padding = compiled.graph.ops[d.op_index].attrs["padding"]
    depth = d.in_channels if d.is_conv else d.channels
    for xi, label in zip(xs, labels[:3]):
        ref = TrainReference(t, momentum=0.0)
        grads = ref.real_gradients(xi, int(label))
        xe, r = ref.split(xi)
        ydw = ref.dw_forward(xe)
        y, pooled = ref.conv_forward(ydw, r)
        zq = ref.head_logits(pooled).astype(np.float32) - h.y_zp
        ds, cs, hs = (v.w_scales.astype(np.float64) for v in (d, c, h))
        if d.is_conv:  # TF's HWIO from TFLite's [O][kh][kw][I]
            Wd = tf.Variable((d.filter.reshape(d.channels, d.kh, d.kw, depth) *
                              ds[:, None, None, None]).transpose(1, 2, 3, 0).astype(np.float32))
        else:
            Wd = tf.Variable((d.filter * ds[None, :]).reshape(d.kh, d.kw, d.channels, 1)
                             .astype(np.float32))
        bd = tf.Variable((d.bias * d.x_scale * ds).astype(np.float32))
        Wc = tf.Variable((c.filter * cs[:, None]).astype(np.float32))
        bc = tf.Variable((c.bias * c.x_scale * cs).astype(np.float32))
        W = tf.Variable((h.filter * hs[:, None]).astype(np.float32))
        b = tf.Variable((h.bias * h.x_scale * hs).astype(np.float32))
        xr = tf.constant(((xe.reshape(1, d.ih, d.iw, depth).astype(np.float32) - d.x_zp)
                          * np.float32(d.x_scale)))
        yr = tf.constant((ydw.astype(np.float32) - c.x_zp) * np.float32(c.x_scale))
        pr = tf.constant((pooled.astype(np.float32) - h.x_zp) * np.float32(h.x_scale))
        with tf.GradientTape() as tape:
            conv2d = tf.nn.conv2d if d.is_conv else tf.nn.depthwise_conv2d
            lin0 = conv2d(xr, Wd, [1, d.sh, d.sw, 1], padding) + bd
            lin0 = tf.reshape(lin0, [d.pixels, d.channels]) * \
                tf.constant(masked(ydw, d.mask_lo, d.mask_hi), tf.float32)
            a0 = tf.stop_gradient(yr - lin0) + lin0
            lin = tf.matmul(a0, Wc, transpose_b=True) + bc
            if r is not None:  # the ADD: the residual's real values plus the conv's
                rq = compiled.graph.t(c.residual).quant
                lin = lin + tf.constant(((r.reshape(c.pixels, c.units).astype(np.float32) -
                                          rq.zp) * np.float32(rq.s)))
            lin = lin * tf.constant(masked(y, c.mask_lo, c.mask_hi), tf.float32)
            mean = tf.reduce_mean(lin, axis=0)
            pst = tf.stop_gradient(pr - mean) + mean
            lin2 = tf.reshape(tf.matmul(W, pst[:, None]), [-1]) + b
            z = tf.stop_gradient(tf.constant(zq * np.float32(h.y_scale)) - lin2) + lin2
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.constant([int(label)]), logits=z[None])[0]
        tw, tb, tcw, tcb, tdw, tdb = (g.numpy() for g in
                                      tape.gradient(loss, [W, b, Wc, bc, Wd, bd]))
        tdw = tdw.transpose(3, 0, 1, 2).reshape(d.channels, -1) if d.is_conv else \
            tdw.reshape(d.taps, d.channels)
        for mine, theirs in [(grads["filter"], tw), (grads["bias"], tb),
                             (grads["conv_filter"], tcw), (grads["conv_bias"], tcb),
                             (grads["dw_filter"], tdw), (grads["dw_bias"], tdb)]:
            assert np.max(np.abs(mine - theirs)) <= 1e-5 * np.max(np.abs(theirs))
        assert np.any(grads["dw_filter"] != 0) and not masked(ydw, d.mask_lo, d.mask_hi).all()
        assert r is None or not masked(y, c.mask_lo, c.mask_hi).all()
        ref.step(xi, int(label))
        moved = ref.dw["filter_delta"].astype(np.float64) * (ds[:, None] if d.is_conv else
                                                             ds[None, :])
        np.testing.assert_allclose(moved, -t.lr * tdw, rtol=1e-5,
                                   atol=1e-5 * np.max(np.abs(t.lr * tdw)))
        moved_b = ref.dw["bias_delta"] * d.x_scale * ds
        np.testing.assert_allclose(moved_b, -t.lr * tdb, rtol=1e-5,
                                   atol=1e-5 * np.max(np.abs(t.lr * tdb)))


@pytest.mark.parametrize("shape", [(1,), (7,), (300,), (300, 1), (300, 1, 1), (1, 5), (9, 64),
                                   (130, 3, 2), (16, 64, 9, 32)])
def test_in_order_sums_term_by_term_as_the_c_loop(shape):
    """training.in_order (the reference's float32 sums over pixels and channels) equals the C's
    loop: a zeroed float accumulator, each term added in order, rounded every time. Values
    spread over many magnitudes (where a pairwise sum differs), some -0.0."""
    from mcunet.training import in_order

    rng = np.random.default_rng(len(shape) * 100 + shape[0])
    terms = (rng.standard_normal(shape) * 10.0 ** rng.integers(-6, 7, shape)).astype(np.float32)
    terms[rng.random(shape) < 0.1] = np.float32(-0.0)
    if shape[0] > 2:
        terms[:2] = np.float32(-0.0)  # a run of -0.0 first
    loop = np.zeros(shape[1:], np.float32)
    for t in terms:
        loop = (loop + t).astype(np.float32)
    got = in_order(terms)
    assert got.dtype == np.float32 and got.shape == loop.shape
    assert np.array_equal(got.view(np.int32), loop.view(np.int32))
    zeros = np.full(shape, np.float32(-0.0))
    assert np.array_equal(in_order(zeros).view(np.int32), np.zeros(shape[1:], np.int32))
