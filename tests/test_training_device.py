"""On-device training on the emulated Cortex-M4 (mcunet.boards.ondevice, `mcunet
train-on-device`; docs/training.md): the firmware's training steps against the NumPy
reference bit for bit (every loss, every step's logits, every byte of the state, the logits
before and after), the RAM it measures against the plan, and the command's errors."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mcunet import api
from mcunet.boards import get_board
from mcunet.boards.ondevice import head_inputs, reference_mismatches, train_on_board
from mcunet.cli import main
from mcunet.training import TrainReference

from .conftest import mlperf_model

needs_tools = pytest.mark.skipif(
    not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
    reason="needs arm-none-eabi-gcc and qemu-system-arm (scripts/setup.sh installs them)")

BOARD = "mps2-an386"


def kws_samples(rows: int, steps: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(rows, 49, 10, 1)).astype(np.int8)
    y = rng.integers(0, 12, size=rows)
    reps = -(-steps // rows)
    return np.tile(x, (reps, 1, 1, 1))[:steps], np.tile(y, reps)[:steps], x


def check_on_m4(scheme: str, lr: float, rows: int, steps: int):
    source = mlperf_model("kws_ref_model.tflite")
    compiled = api.compile(source, board=BOARD, train=scheme)
    tx, ty, ex = kws_samples(rows, steps)
    result = train_on_board(compiled, get_board(BOARD), tx, ty, ex[:2], lr=lr, source=str(source))
    # Bit for bit, written out here for the main quantities (reference_mismatches checks the
    # same and more).
    t = compiled.training
    ref = TrainReference(t, lr=lr)
    losses = [ref.step(x, int(y))[0] for x, y in zip(head_inputs(str(source), compiled, tx), ty)]
    assert result.run.losses.view(np.uint32).tolist() == \
        np.array(losses, np.float32).view(np.uint32).tolist()
    state = ref.state()
    assert sorted(result.run.state) == sorted(state)
    for key, value in state.items():  # every byte of every trained array
        assert result.run.state[key].tobytes() == value.tobytes(), key
    full = t.full_parameters(state)
    layers = {t.head.op_index: t.head, **({t.conv.op_index: t.conv} if t.conv else {}),
              **({t.dw.op_index: t.dw} if t.dw else {})}
    for _, op, update, _ in t.layers():  # what the scheme trains moved
        filt, bias = full[op]
        assert np.array_equal(bias, layers[op].bias) != update.bias, (op, "bias")
        assert np.array_equal(filt, layers[op].filter) != (update.channels > 0), (op, "filter")
    assert reference_mismatches(str(source), compiled, result, tx, ty, ex[:2], lr=lr) == []
    assert "-ffp-contract=off" in result.flags
    # Instructions: one count per step and per invoke; a step is an invoke and a bit more.
    assert len(result.step_instructions) == steps and len(result.invoke_instructions) == 2
    assert min(result.step_instructions) > min(result.invoke_instructions)
    # RAM: the library's static RAM in the image is the plan's arena plus training state,
    # its stack (painted) within the bound the plan adds, which covers train_step.
    r = result.ram
    assert r["arena_bytes"] == compiled.plan.arena_bytes
    assert r["library_static_bytes"] == compiled.plan.arena_bytes + t.static_bytes
    assert 0 < r["step_stack_bytes"] <= compiled.stack_bytes
    assert r["invoke_stack_bytes"] <= compiled.stack_bytes
    assert r["library_measured_bytes"] <= compiled.peak_sram_bytes == r["planned_bytes"]
    return result


@needs_tools
def test_kws_head_steps_on_the_m4_are_bit_exact():
    check_on_m4("head", 0.01, rows=3, steps=6)


@needs_tools
def test_kws_bias_steps_on_the_m4_are_bit_exact():
    check_on_m4("bias", 0.05, rows=3, steps=6)


@needs_tools
def test_kws_last2_steps_on_the_m4_are_bit_exact():
    """The backward through the pool to the 1x1 conv (op 8), on the M4F."""
    check_on_m4("last:2", 0.01, rows=3, steps=4)


@needs_tools
def test_kws_last3_steps_on_the_m4_are_bit_exact():
    """On through op 8's input gradient to the DEPTHWISE_CONV_2D (op 7), on the M4F."""
    result = check_on_m4("last:3", 0.01, rows=3, steps=4)
    print("last:3 instructions per step", result.step_instructions,
          "per invoke", result.invoke_instructions, result.ram)


# A sparse scheme (docs/training.md): the head's bias, op 8 frozen between, op 7's first 16 of
# 64 channels' weights and all its biases (the conv's input gradient from its flash filter).
SPARSE = {"layers": [{"op": 11, "bias": True}, {"op": 8, "weights": 0.125},
                     {"op": 7, "weights": 0.25, "bias": True}]}


@needs_tools
@pytest.mark.slow
def test_kws_sparse_steps_on_the_m4_are_bit_exact():
    """Split filters on the M4F: op 8's first 8 channels and op 7's first 16 from RAM, the
    rest from flash, in the forward and in the backward."""
    result = check_on_m4(SPARSE, 0.01, rows=3, steps=4)
    print("sparse instructions per step", result.step_instructions,
          "per invoke", result.invoke_instructions, result.ram)


@needs_tools
@pytest.mark.slow
@pytest.mark.parametrize("scheme, lr", [("head", 0.01), ("bias", 0.05), ("last:2", 0.01),
                                        ("last:3", 0.01), (SPARSE, 0.01)])
def test_kws_100_steps_on_the_m4_are_bit_exact(scheme, lr):
    result = check_on_m4(scheme, lr, rows=10, steps=100)
    assert result.run.losses[-10:].mean() < result.run.losses[:10].mean()


def test_the_plan_bounds_the_training_steps_stack():
    """On an Arm core the stack figure is the deeper of invoke and train_step (which runs the
    forward below its own frame)."""
    source = mlperf_model("kws_ref_model.tflite")
    inference = api.compile(source, board=BOARD)
    trained = api.compile(source, board=BOARD, train="head")
    assert trained.stack_bytes > inference.stack_bytes


@needs_tools
def test_the_command_trains_and_reports(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "kws.npz"
    np.savez(data, x=rng.integers(-128, 128, (10, 49, 10, 1)).astype(np.int8),
             y=rng.integers(0, 12, 10))
    report = tmp_path / "r.json"
    main(["train-on-device", str(mlperf_model("kws_ref_model.tflite")), "--train", "bias",
          "--board", BOARD, "--dataset", str(data), "--steps", "4", "--eval", "2",
          "--json", str(report)])
    out = capsys.readouterr().out
    assert "bit-exact with the NumPy reference" in out and ": yes" in out
    assert "instructions per training step" in out and "RAM measured" in out
    r = json.loads(report.read_text())
    assert r["bit_exact"] and r["steps"] == 4 and r["eval_rows"] == 2
    assert r["ram"]["library_measured_bytes"] <= r["ram"]["planned_bytes"]


@pytest.mark.parametrize("args, words", [
    (["--board", "no-such-board", "--dataset", "fashion-mnist"], "unknown board"),
    (["--board", "stm32f746g-disco", "--dataset", "fashion-mnist"], "give --port"),
    (["--board", BOARD, "--dataset", "/no/such/file.npz"], "no such .npz file"),
    (["--board", BOARD, "--dataset", "fashion-mnist", "--classes", "9-x"], "--classes"),
])
def test_the_commands_errors_are_one_line(capsys, args, words):
    with pytest.raises(SystemExit) as exc:
        main(["train-on-device", str(mlperf_model("kws_ref_model.tflite")), "--train", "head",
              *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and words in err and len(err.strip().splitlines()) == 1
