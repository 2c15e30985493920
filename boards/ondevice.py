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
    # Over the serial port (`--port`): DWT cycles per step and per invoke where the core
    # counts them (empty where it does not: Cortex-M0+, and QEMU), the transport's figures.
    step_cycles: list[int] = field(default_factory=list)
    invoke_cycles: list[int] = field(default_factory=list)
    transport: str = "semihosting"
    serial: dict = field(default_factory=dict)

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
        def spread(values):
            if not values:
                return None
            v = np.array(values)
            return {"mean": float(v.mean()), "min": int(v.min()), "max": int(v.max())}

        return {"board": self.board, "scheme": self.scheme, "steps": self.steps,
                "eval_rows": self.eval_rows, "flags": self.flags, "transport": self.transport,
                "instructions_per_step": spread(self.step_instructions),
                "instructions_per_invoke": int(np.mean(self.invoke_instructions))
                if self.invoke_instructions else None,
                "cycles_per_step": spread(self.step_cycles),
                "cycles_per_invoke": int(np.mean(self.invoke_cycles))
                if self.invoke_cycles else None,
                "losses": [float(v) for v in self.run.losses], "ram": self.ram,
                **({"serial": self.serial} if self.serial else {})}


def check_trainable(model, board: Board, serial: bool = False) -> None:
    if model.training is None:
        raise McunetError("on-device training needs a --train build")
    check_emulated(board, serial)


def check_emulated(board: Board, serial: bool = False) -> None:
    """A real board trains over the serial port only (the emulated ones over semihosting, or
    over their UART with serial=True)."""
    if not board.emulated and not serial:
        raise McunetError(f"{board.name} is a real board: its training firmware gets the "
                          "samples over the serial port; give --port /dev/ttyACM0 (or set "
                          "MCUNET_SERIAL_PORT) with the board connected")


def train_project_files(model, board: Board, source: str | None = None,
                        serial: bool = False) -> dict[str, str]:
    """Every file of the training firmware's PlatformIO project: its samples over
    semihosting (emulated boards), or framed over the serial port (serial=True; real boards
    always; templates/firmware/train_serial_main.c.j2)."""
    serial = serial or not board.emulated
    check_trainable(model, board, serial)
    paint = paint_bytes_for(model, board)
    files = project_files(model, board, [], paint, source=source)
    files.pop(INPUTS_FILE)
    lib = model.library()
    template = "firmware/train_serial_main.c.j2" if serial else "firmware/train_main.c.j2"
    files["src/main.c"] = library_environment(lib.name).get_template(
        template).render(version=__version__, board=board,
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
    return _ram_measured(model, elf, elf_path, sp, int(found["step_stack"]),
                         int(found["invoke_stack"]))


def _ram_measured(model, elf, elf_path: Path, sp: int | None, step_stack: int,
                  invoke_stack: int) -> dict:
    # The stack's top: mcunet's platform's symbol, or a vendor startup's (_estack).
    top = elf.address("__stack_top__")
    if top is None:
        top = elf.address("_estack")
    harness_stack = (top - (sp & ~3)) if top is not None and sp is not None else 0
    library = model.library()
    map_path = elf_path.with_name("firmware.map")
    library_static = library_ram_bytes(map_path, Path(library.options.target).name) \
        if map_path.is_file() else None
    static = elf.static_ram_bytes
    library_measured = (library_static or 0) + max(step_stack, invoke_stack) \
        if library_static is not None else None
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
# Over the serial port (mcunet.boards.serial_train: the frames)


def check_port(port: str) -> None:
    """A real board's --port: a device that is there, or a pyserial URL (socket://, ...)."""
    if not str(port).startswith(("socket://", "loop://", "rfc2217://")) and not Path(port).exists():
        raise McunetError(f"serial port {port} is not there; connect the board or give the "
                          "right --port (ls /dev/ttyACM* /dev/ttyUSB*)")


def _serial_project(model, board: Board, work_dir: Path | None, source: str | None):
    files = train_project_files(model, board, source, serial=True)
    if work_dir is None:
        digest = hashlib.sha256()
        for rel in sorted(files):
            digest.update(rel.encode() + b"\0" + files[rel].encode() + b"\0")
        work_dir = cache_root() / "firmware" / f"train-serial-{board.name}-{digest.hexdigest()[:16]}"
    return files, Path(work_dir)


def _from_serial(model, board: Board, files, elf, elf_path: Path, got, train_x, eval_x,
                 marks: list[int] | None = None) -> DeviceTraining:
    from .serial_train import NO_STACK

    if NO_STACK in (got.invoke_stack, got.step_stack):
        raise McunetError("the training step's stack went past the painted region: the "
                          "stack bound from -fstack-usage is wrong (a bug in mcunet; please "
                          "report it)")
    m = len(eval_x)
    raw = got.results
    before_out, before_logits, pos = read_eval_rows(model, raw, 0, m)
    run, end = read_training_run(model, raw, pos, len(train_x), m)
    if end != len(raw):
        raise McunetError(f"the training firmware sent {len(raw)} bytes of results, expected {end}")
    steps_ins, invoke_ins = [], []
    if marks is not None:
        expected = 2 + 2 * (2 * m + len(train_x))
        if len(marks) != expected:
            raise McunetError(f"QEMU's instruction counter saw {len(marks)} marks, expected "
                              f"{expected}")
        cost = marks[1] - marks[0]
        spans = [marks[2 + 2 * k + 1] - marks[2 + 2 * k] - cost
                 for k in range((expected - 2) // 2)]
        invoke_ins, steps_ins = spans[:m], spans[m:m + len(train_x)]
    ram = _ram_measured(model, elf, elf_path, got.sp, got.step_stack, got.invoke_stack)
    return DeviceTraining(
        board=board.name, scheme=str(model.training.scheme), steps=len(train_x), eval_rows=m,
        before_outputs=before_out, before_logits=before_logits, run=run,
        step_instructions=steps_ins, invoke_instructions=invoke_ins, ram=ram,
        flags=_flags(files["platformio.ini"]),
        step_cycles=got.step_cycles if got.cycles_available else [],
        invoke_cycles=got.eval_cycles if got.cycles_available else [],
        transport="serial", serial={"frames": got.frames, "resent": got.resent,
                                    "cycles_counted": got.cycles_available})


def train_over_port(model, board: Board, train_x, train_y, eval_x, port: str,
                    lr: float | None = None, momentum: float | None = None,
                    work_dir: Path | None = None, timeout: float = 30.0,
                    source: str | None = None, upload: bool = True) -> DeviceTraining:
    """A real board: build the serial training firmware, upload it with `pio run -t upload`
    (as `mcunet run` does), then stream the samples over `port` and read the results.
    `timeout`: seconds the board may take over one frame (a training step)."""
    from .serial_train import open_port, stream_training
    from .toolchain import run_pio
    import time

    row_bytes = _check_rows(model, train_x, train_y, eval_x)
    t = model.training
    lr = t.lr if lr is None else lr
    momentum = t.momentum if momentum is None else momentum
    files, work_dir = _serial_project(model, board, work_dir, source)
    if not board.emulated:
        check_port(port)
    with _locked(work_dir):
        write_project(files, work_dir, board)
        if upload:
            run_pio(["run", "--environment", board.name, "--target", "upload"], cwd=work_dir)
        elf_path = work_dir / ".pio" / "build" / board.name / "firmware.elf"
        if not elf_path.is_file():
            elf_path = build_project(work_dir, board)
        elf = read_elf(elf_path)
        conn = open_port(port)
        try:
            time.sleep(2.0)  # boards reset when the port opens
            got = stream_training(conn, port, train_x, train_y, eval_x, lr, momentum,
                                  row_bytes, timeout=timeout)
        finally:
            conn.close()
    return _from_serial(model, board, files, elf, elf_path, got, train_x, eval_x)


def train_on_emulated_serial(model, board: Board, train_x, train_y, eval_x,
                             lr: float | None = None, momentum: float | None = None,
                             work_dir: Path | None = None, timeout: float = 60.0,
                             source: str | None = None) -> DeviceTraining:
    """The serial training firmware on an emulated board: QEMU's UART0 on a local TCP socket
    (`-serial tcp:127.0.0.1:PORT,server=on`), the host's side of the protocol on
    socket://127.0.0.1:PORT, instructions counted as the semihosting path counts them. The
    same firmware logic and host code a real board runs, end to end."""
    import socket
    import subprocess
    import time

    from .qemu import instruction_marks, qemu_command
    from .serial_train import open_port, stream_training

    row_bytes = _check_rows(model, train_x, train_y, eval_x)
    t = model.training
    lr = t.lr if lr is None else lr
    momentum = t.momentum if momentum is None else momentum
    files, work_dir = _serial_project(model, board, work_dir, source)
    with _locked(work_dir):
        write_project(files, work_dir, board)
        elf_path = build_project(work_dir, board)
        elf = read_elf(elf_path)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            tcp = probe.getsockname()[1]
        cmd = qemu_command(elf_path, board.qemu_machine, elf.address("harness_mark"),
                           serial=f"tcp:127.0.0.1:{tcp},server=on,wait=on")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True)
        try:
            conn = None
            for _ in range(100):  # QEMU listening
                try:
                    conn = open_port(f"socket://127.0.0.1:{tcp}")
                    break
                except McunetError:
                    if proc.poll() is not None:
                        break
                    time.sleep(0.05)
            if conn is None:
                raise McunetError(f"QEMU did not open its serial port: "
                                  f"{proc.communicate(timeout=5)[1].strip()[-1000:]}")
            try:
                got = stream_training(conn, "QEMU's UART", train_x, train_y, eval_x, lr,
                                      momentum, row_bytes, timeout=timeout, start_timeout=timeout)
            except McunetError as exc:
                if proc.poll() is None:
                    proc.kill()
                tail = "\n".join(ln for ln in proc.communicate()[1].splitlines()
                                  if not ln.startswith("mcunet-insn"))[-1500:]
                raise McunetError(f"{exc}; QEMU (exit {proc.returncode}) said: {tail}") from None
            finally:
                conn.close()
            out, err = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return _from_serial(model, board, files, elf, elf_path, got, train_x, eval_x,
                        instruction_marks(err))


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

