"""On-device training on emulated boards (`mcunet train-on-device`, issue 14 item 4;
docs/training.md).

The firmware is a PlatformIO project around a --train library with its own harness
(templates/firmware/train_main.c.j2): it reads labelled samples from the host over Arm
semihosting (a file in QEMU's working directory), evaluates the held-out rows, runs one
NAME_train_step per sample, writes the losses, the logits, the training state and the
evaluation after training back to a host file, and measures the stack of invoke and of the
training step by painting. QEMU's instruction-counting plugin counts every invoke and every
step (marks around them). The results are the records the host harness writes
(mcunet.host.read_training_run), so they are checked against mcunet.training.TrainReference
the same way, bit for bit."""
from __future__ import annotations

import hashlib
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mcunet import __version__
from mcunet.codegen.library import library_environment
from mcunet.errors import McunetError
from mcunet.host import TrainingRun, read_eval_rows, read_training_run
from mcunet.training import TrainReference

from . import Board
from .elf import library_ram_bytes, read_elf
from .firmware import (INPUTS_FILE, _locked, build_project, paint_bytes_for,
                       project_files, write_project)
from .toolchain import cache_root

SAMPLES_FILE = "mcunet-train.bin"
RESULTS_FILE = "mcunet-train.out"
MAGIC = b"MCTR"
VERSION = 1


@dataclass
class DeviceTraining:
    """What one run of the training firmware measured."""
    board: str
    scheme: str
    steps: int
    eval_rows: int
    before_outputs: np.ndarray  # the model's output per evaluation row, before training
    before_logits: np.ndarray  # int8 [rows][units]
    run: TrainingRun  # per step status, loss, logits; the state; the evaluation after
    step_instructions: list[int]  # per NAME_train_step (with its call)
    invoke_instructions: list[int]  # per NAME_invoke, evaluation before training
    ram: dict = field(default_factory=dict)
    flags: list = field(default_factory=list)  # what the firmware was compiled with

    @property
    def ram_bytes_measured(self) -> int:
        return self.ram["measured_bytes"]

    def accuracy(self, labels: np.ndarray) -> tuple[float | None, float | None]:
        """Top-1 accuracy (argmax of the head's logits) before and after training."""
        if not len(labels):
            return None, None
        labels = np.asarray(labels)
        return (float((self.before_logits.argmax(1) == labels).mean()),
                float((self.run.eval_logits.argmax(1) == labels).mean()))

    def to_json(self) -> dict:
        ins = np.array(self.step_instructions or [0])
        return {"board": self.board, "scheme": self.scheme, "steps": self.steps,
                "eval_rows": self.eval_rows, "flags": self.flags,
                "instructions_per_step": {"mean": float(ins.mean()), "min": int(ins.min()),
                                          "max": int(ins.max())},
                "instructions_per_invoke": int(np.mean(self.invoke_instructions))
                if self.invoke_instructions else None,
                "losses": [float(v) for v in self.run.losses], "ram": self.ram}


def check_trainable(model, board: Board) -> None:
    if model.training is None:
        raise McunetError("on-device training needs a --train build")
    check_emulated(board)


def check_emulated(board: Board) -> None:
    if not board.emulated:
        raise McunetError(f"{board.name} is a real board: on-device training runs on emulated "
                          "boards for now (samples go to the firmware over semihosting; the "
                          "serial transfer real boards need is not written yet); use "
                          "mps2-an386 (Cortex-M4F) or another emulated board, see `mcunet boards`")


def train_project_files(model, board: Board, source: str | None = None) -> dict[str, str]:
    """Every file of the training firmware's PlatformIO project."""
    check_trainable(model, board)
    paint = paint_bytes_for(model, board)
    files = project_files(model, board, [], paint, source=source)
    files.pop(INPUTS_FILE)
    lib = model.library()
    files["src/main.c"] = library_environment(lib.name).get_template(
        "firmware/train_main.c.j2").render(version=__version__, board=board,
                                            scheme=str(model.training.scheme),
                                            state=model.training.template_state(),
                                            paint_bytes=paint)
    return files


def samples_bytes(train_x: np.ndarray, train_y: np.ndarray, eval_x: np.ndarray, lr: float,
                  momentum: float, row_bytes: int) -> bytes:
    """The sample file the firmware reads (templates/firmware/train_main.c.j2's header)."""
    parts = [MAGIC, struct.pack("<IIII", VERSION, row_bytes, len(train_x), len(eval_x)),
             np.array([lr, momentum], np.float32).astype("<f4").tobytes()]
    for x in eval_x:
        parts.append(np.ascontiguousarray(x, dtype=np.int8).tobytes())
    for x, y in zip(train_x, train_y):
        parts.append(np.ascontiguousarray(x, dtype=np.int8).tobytes())
        parts.append(struct.pack("<i", int(y)))
    return b"".join(parts)


def _check_rows(model, train_x, train_y, eval_x) -> int:
    g = model.graph
    t = g.t(g.inputs[0])
    for name, x in (("training", train_x), ("evaluation", eval_x)):
        if x.dtype != np.int8 or tuple(x.shape[1:]) != tuple(t.shape[1:]) and \
                int(np.prod(x.shape[1:])) != t.size:
            raise McunetError(f"the {name} rows have shape {x.shape} and dtype {x.dtype}; the "
                              f"model wants (N, {', '.join(map(str, t.shape[1:]))}) int8")
    if len(train_x) != len(train_y):
        raise McunetError(f"{len(train_x)} training rows but {len(train_y)} labels")
    units = model.training.head.units
    if len(train_y) and (np.min(train_y) < 0 or np.max(train_y) >= units):
        raise McunetError(f"labels must be 0..{units - 1} (the head has {units} outputs)")
    return t.size


def train_on_board(model, board: Board, train_x: np.ndarray, train_y: np.ndarray,
                   eval_x: np.ndarray, lr: float | None = None, momentum: float | None = None,
                   work_dir: Path | None = None, timeout: float = 600,
                   source: str | None = None) -> DeviceTraining:
    """Build the training firmware (incrementally, in `work_dir` or a cache folder keyed by
    the project's files) and run it under QEMU: evaluate eval_x, train one step per
    (train_x, train_y) row in order, evaluate again."""
    check_trainable(model, board)
    row_bytes = _check_rows(model, train_x, train_y, eval_x)
    t = model.training
    lr = t.lr if lr is None else lr
    momentum = t.momentum if momentum is None else momentum
    files = train_project_files(model, board, source)
    if work_dir is None:
        digest = hashlib.sha256()
        for rel in sorted(files):
            digest.update(rel.encode() + b"\0" + files[rel].encode() + b"\0")
        work_dir = cache_root() / "firmware" / f"train-{board.name}-{digest.hexdigest()[:16]}"
    work_dir = Path(work_dir)
    from .qemu import run_qemu

    with _locked(work_dir):
        write_project(files, work_dir, board)
        elf_path = build_project(work_dir, board)
        elf = read_elf(elf_path)
        with tempfile.TemporaryDirectory(prefix="mcunet-train-", dir=work_dir) as tmp:
            tmp = Path(tmp)
            (tmp / SAMPLES_FILE).write_bytes(samples_bytes(train_x, train_y, eval_x, lr,
                                                           momentum, row_bytes))
            qemu = run_qemu(elf_path, board.qemu_machine, elf.address("harness_mark"),
                            timeout, cwd=tmp)
            raw = (tmp / RESULTS_FILE).read_bytes() if (tmp / RESULTS_FILE).is_file() else b""
    text = qemu.stdout
    for line in text.splitlines():
        if line.startswith("mcunet-error "):
            raise McunetError(f"the training firmware stopped: {line[13:]}")
    if qemu.returncode != 0 or "mcunet-end" not in text:
        tail = "\n".join(text.strip().splitlines()[-5:])
        raise McunetError(f"the training firmware failed on emulated {board.name} (QEMU exit "
                          f"{qemu.returncode}){': ' + tail if tail else ''}")
    m = len(eval_x)
    before_out, before_logits, pos = read_eval_rows(model, raw, 0, m)
    run, end = read_training_run(model, raw, pos, len(train_x), m)
    if end != len(raw):
        raise McunetError(f"the training firmware wrote {len(raw)} bytes of results, expected {end}")
    # Instructions: two marks back to back (what a mark costs), then two around each invoke
    # of the evaluation before, each training step and each invoke after.
    marks = qemu.marks
    expected = 2 + 2 * (2 * m + len(train_x))
    if len(marks) != expected:
        raise McunetError(f"QEMU's instruction counter saw {len(marks)} marks, expected {expected}")
    cost = marks[1] - marks[0]
    spans = [marks[2 + 2 * k + 1] - marks[2 + 2 * k] - cost for k in range((expected - 2) // 2)]
    invoke, steps = spans[:m], spans[m:m + len(train_x)]
    ram = _ram(model, board, elf, elf_path, text)
    return DeviceTraining(board=board.name, scheme=str(t.scheme), steps=len(train_x), eval_rows=m,
                          before_outputs=before_out, before_logits=before_logits, run=run,
                          step_instructions=steps, invoke_instructions=invoke, ram=ram,
                          flags=_flags(files["platformio.ini"]))


def _flags(ini: str) -> list[str]:
    for line in ini.splitlines():
        if line.startswith("build_flags"):
            return line.split("=", 1)[1].split()
    return []


def _ram(model, board: Board, elf, elf_path: Path, text: str) -> dict:
    """RAM measured by the firmware beside the plan's figure (arena + the deeper stack of
    invoke and train_step + the training state)."""
    found = {}
    for line in text.splitlines():
        if line.startswith("mcunet-train "):
            found = dict(kv.split("=") for kv in line.split()[1:] if "=" in kv)
            if "overflow" in line:
                raise McunetError("the training step's stack went past the painted region: the "
                                  "stack bound from -fstack-usage is wrong (a bug in mcunet; "
                                  "please report it)")
    if not found:
        raise McunetError("the training firmware did not report its stack")
    begin = [ln for ln in text.splitlines() if ln.startswith("mcunet-begin sp=0x")]
    sp = int(begin[0].split("=0x")[1], 16) if begin else None
    top = elf.address("__stack_top__")
    harness_stack = (top - (sp & ~3)) if top is not None and sp is not None else 0
    step_stack, invoke_stack = int(found["step_stack"]), int(found["invoke_stack"])
    library = model.library()
    library_static = library_ram_bytes(elf_path.with_name("firmware.map"),
                                       Path(library.options.target).name)
    static = elf.static_ram_bytes
    library_measured = (library_static or 0) + max(step_stack, invoke_stack)
    return {"static_bytes": static, "arena_bytes": elf.size("arena"),
            "library_static_bytes": library_static,
            "harness_static_bytes": static - (library_static or 0),
            "step_stack_bytes": step_stack, "invoke_stack_bytes": invoke_stack,
            "stack_bound_bytes": model.stack_bytes,
            "harness_stack_bytes": harness_stack,
            "library_measured_bytes": library_measured,
            "measured_bytes": static + harness_stack + max(step_stack, invoke_stack),
            "planned_bytes": model.peak_sram_bytes,
            "planned_arena_bytes": model.plan.arena_bytes,
            "planned_training_state_bytes": model.training_static_bytes}


# ---------------------------------------------------------------------------------------------
# The reference


def head_inputs(source, model, rows: np.ndarray) -> np.ndarray:
    """The trained tail's int8 input (Training.entries: the head's, or the trained conv's, and
    a residual ADD's other input) for every row, by TFLite's reference kernels."""
    from mcunet.reference import _interpreter

    interp = _interpreter(source, preserve=True)
    d = interp.get_input_details()[0]
    xs = []
    for x in rows:
        interp.set_tensor(d["index"], np.asarray(x, np.int8).reshape(d["shape"]))
        interp.invoke()
        xs.append(np.concatenate([interp.get_tensor(e).reshape(-1)
                                  for e in model.training.entries]))
    size = sum(model.graph.t(e).size for e in model.training.entries)
    return np.stack(xs) if xs else np.zeros((0, size), np.int8)


def reference_mismatches(source, model, result: DeviceTraining, train_x, train_y, eval_x,
                         lr: float | None = None, momentum: float | None = None) -> list[str]:
    """What of the firmware's run differs from mcunet.training.TrainReference fed the head
    inputs of TFLite's reference kernels: every loss's bits, every step's logits, every
    byte of the state, the logits of the evaluation before and after. Empty: bit-exact."""
    t = model.training
    ref = TrainReference(t, lr=lr, momentum=momentum)
    xs = head_inputs(source, model, train_x)
    es = head_inputs(source, model, eval_x)
    bad = []
    before = np.stack([ref.logits(e) for e in es]) if len(es) else result.before_logits
    if not np.array_equal(before, result.before_logits):
        bad.append("the logits before training")
    losses, logits = [], []
    for x, y in zip(xs, train_y):
        loss, lg = ref.step(x, int(y))
        losses.append(loss)
        logits.append(lg)
    if len(xs):
        if not np.array_equal(np.array(losses, np.float32).view(np.uint32),
                              result.run.losses.view(np.uint32)):
            k = int(np.argmax(np.array(losses, np.float32).view(np.uint32)
                              != result.run.losses.view(np.uint32)))
            bad.append(f"the losses (first at step {k})")
        if not np.array_equal(np.stack(logits), result.run.logits):
            bad.append("the training steps' logits")
    if (result.run.status != 0).any():
        bad.append("a step's status")
    for name, value in ref.state().items():
        if result.run.state.get(name) is None or result.run.state[name].tobytes() != value.tobytes():
            bad.append(name)
    after = np.stack([ref.logits(e) for e in es]) if len(es) else result.run.eval_logits
    if not np.array_equal(after, result.run.eval_logits):
        bad.append("the logits after training")
    return bad

