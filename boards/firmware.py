"""Firmware for a board: a PlatformIO project around the generated library, built with `pio
run`, and run on the board (under QEMU with instruction counting for emulated boards, over
the serial port for real ones), with its outputs and costs read back.

A project for an emulated board stands alone: its platformio.ini points PlatformIO at the
platform and the tool-scons package inside the folder (platforms_dir, packages_dir), so a
plain `pio run` in it builds offline in a fresh shell. mcunet-project.json records what
`mcunet run --project` needs to read the firmware's report without the model.

RAM accounting of a run (RunResult.ram): static RAM from the ELF (the arena, which holds all
activations and scratch exactly as planned, plus the harness's and C runtime's variables)
and the stack's high-water mark found by painting it: the harness's own frames above the
point where it calls NAME_invoke, and the library's stack below it (which -fstack-usage
bounds: `kernel_stack_bytes`)."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mcunet import __version__
from mcunet.codegen.library import TEMPLATE_DIR, environment, library_environment
from mcunet.costmodel import step_estimates
from mcunet.errors import McunetError
from mcunet.host import check_inputs, quantize_with, split_rows
from mcunet.outdir import record
from mcunet.progress import plural

from . import Board, get_board
from .elf import ElfImage, library_flash_bytes, read_elf
from .stack import arm_footprint
from .toolchain import ARM_GCC, PLATFORM_DIR, cache_root, provision_tool_scons, require, run_pio

PORT_DIR = TEMPLATE_DIR / "firmware"
PAINT_MARGIN = 1024  # stack painted beyond the library's bound, so an overrun still shows
# Profile builds: NAME_invoke calls the harness's mcunet_trace after every step, whose frames
# (it, stack_used and paint: 24 bytes with arm-none-eabi-gcc 12 at -O2) are below invoke's but
# not the library's; the measured stack may exceed the library's bound by that much.
TRACE_STACK_BYTES = 64
PROJECT_INFO = "mcunet-project.json"
INPUTS_FILE = "src/harness_inputs.c"
# Inside an emulated board's project: the local platform and PlatformIO's tool-scons package.
PROJECT_PLATFORM = "platform"
PROJECT_PACKAGES = "packages"
# What the project's library and harness are compiled with on emulated boards (all code is
# mcunet's there: warnings are errors). Real boards compile the vendor's framework too, whose
# warnings are not ours to fail on.
EMULATED_FLAGS = ["-O2", "-Wall", "-Wextra", "-Werror"]
# A --train build's float32 step is bit-exact with mcunet.training.TrainReference only without
# fused multiply-adds (the M4F's vfma/vmla): the platform compiles with -std=c99, which implies
# it in gcc, and this says so whatever the C mode.
TRAIN_FLAGS = ["-ffp-contract=off"]


def kernel_stack_bytes(model, board: Board) -> int:
    """The deepest stack of the generated code (NAME_invoke and everything it calls) on the
    board's core (mcunet.boards.stack): the model's own bound when it was compiled for that
    core."""
    if model.target.name == board.core and model.target.footprint is not None:
        return model.stack_bytes
    return arm_footprint(model.library().files, board.arm).stack_bytes


@dataclass(frozen=True)
class ProjectInfo:
    """What reading a firmware's report needs to know of the project (mcunet-project.json):
    the board, the library's names, the model's inputs and outputs, the plan's figures."""
    board: str
    library: str  # the library's name: the prefix of its symbols (mcunet compile --name)
    library_dir: str  # lib/NAME_model
    model: str | None  # the .tflite it was compiled from, where known
    inputs: list  # [{"shape": [...], "dtype": "int8", "bytes": n}]
    outputs: list
    arena_bytes: int
    stack_bytes: int  # the library's stack bound on the board's core
    weights: list  # the symbols of the constant arrays
    flash_bytes: int  # the plan's constant data
    flash_total_bytes: int | None  # with the library's code, as predicted
    macs: int
    dsp: bool
    profile: bool  # a trace build: a mark after every step
    steps: list  # traced spans (traced_steps): index, op, kernel, steps, macs, estimated...
    arithmetic: str = "reference"  # whose arithmetic the library follows (--arithmetic)

    @classmethod
    def of(cls, model, board: Board, profile: bool, source: str | None = None) -> "ProjectInfo":
        g = model.graph
        lib = model.library()

        def io(tids):
            return [{"shape": list(g.t(t).shape), "dtype": g.t(t).dtype,
                     "bytes": g.t(t).nbytes,
                     "scale": float(g.t(t).quant.s) if g.t(t).quant is not None else None,
                     "zero_point": int(g.t(t).quant.zp) if g.t(t).quant is not None else None}
                    for t in tids]

        steps = traced_steps(model) if profile else []
        same_core = model.target.name == board.core and model.target.footprint is not None
        return cls(board=board.name, library=lib.name, library_dir=f"lib/{lib.options.target}",
                   model=source, inputs=io(g.inputs), outputs=io(g.outputs),
                   arena_bytes=model.plan.arena_bytes,
                   stack_bytes=kernel_stack_bytes(model, board),
                   weights=[lib.options.c(c.symbol) for c in model.consts],
                   flash_bytes=model.flash_bytes,
                   flash_total_bytes=model.flash_total_bytes if same_core else None,
                   macs=model.macs, dsp=model.dsp, profile=profile, steps=steps,
                   arithmetic=model.options.arithmetic)

    @classmethod
    def read(cls, project: Path) -> "ProjectInfo":
        path = project / PROJECT_INFO
        if not path.is_file():
            raise McunetError(f"{project} has no {PROJECT_INFO}: it is not a project that "
                              "`mcunet build` wrote (run mcunet build MODEL --board B --out "
                              f"{project} first)")
        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            raise McunetError(f"{path} is not readable ({exc}); write the project again with "
                              "mcunet build") from None

    @property
    def row_bytes(self) -> int:
        return sum(io["bytes"] for io in self.inputs)


def traced_steps(model) -> list[dict]:
    """What a profile build measures, in order: the span up to each trace call of the
    library (after every op; in a patch stage, after the last patch of each op). A span holds
    one step, or a patch stage's steps since the previous call: its MACs and the cost
    model's estimate (None where it has none) are their sums."""
    estimates = step_estimates(model)
    spans, pending = [], []
    for i, s in enumerate(model.steps):
        if s.kernel is None:
            continue
        pending.append(i)
        for _ in s.traced:
            est = [estimates[j] for j in pending]
            spans.append({"index": s.op.index, "op": s.op.kind, "kernel": s.kernel.name,
                          "steps": len(pending), "macs": sum(model.steps[j].macs for j in pending),
                          "live_bytes": max(model.plan.live_bytes(j) for j in pending),
                          "estimated": None if None in est else sum(est)})
            pending = []
    return spans


def spans_alone(model) -> list:
    """Per span of a profile build (traced_steps' order): its step when the span holds that
    step alone, None when it holds several (a patch stage's)."""
    found, pending = [], []
    for s in model.steps:
        if s.kernel is None:
            continue
        pending.append(s)
        for _ in s.traced:
            found.append(pending[0] if len(pending) == 1 else None)
            pending = []
    return found


@dataclass
class RunResult:
    board: str
    outputs: list[np.ndarray]  # batched like the inputs
    instructions: int | None  # executed per inference (emulated boards): the first row's
    instructions_per_row: list[int]
    cycles: int | None  # DWT cycles per inference (real M3/M4/M7 boards), first row
    macs: int
    ram_bytes_measured: int  # static RAM + stack high-water mark
    flash_bytes_measured: int  # the image less the harness's input rows
    peak_sram_bytes: int  # the plan: arena + kernel stack
    arena_bytes: int
    stack_bytes: int  # the plan's kernel stack (-fstack-usage)
    # The library's code and constants in the linked image (with the compiler's helpers it
    # calls), beside the plan's prediction (flash_total_bytes).
    flash_library_bytes_measured: int | None = None
    flash_total_bytes: int | None = None
    ram: dict = field(default_factory=dict)  # the byte-for-byte breakdown
    # Profile builds: per traced step, its instructions (first row), the cost model's
    # estimate, its stack and the RAM in use while it ran.
    layers: list = field(default_factory=list)
    flash: dict = field(default_factory=dict)
    dsp: bool = False

    @property
    def instructions_per_mac(self) -> float | None:
        return self.instructions / self.macs if self.instructions and self.macs else None

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("outputs")
        d["instructions_per_mac"] = round(self.instructions_per_mac, 4) \
            if self.instructions_per_mac else None
        return d


# ---------------------------------------------------------------------------------------------
# The PlatformIO project

def _board_manifest(board: Board) -> dict:
    """PlatformIO board manifest for mcunet's local platform (emulated boards)."""
    return {"build": {"cpu": board.core, "fpu": board.fpu or "", "mcu": board.name,
                      "f_cpu": f"{board.clock_hz}L", "mcunet_bsp": "mps2",
                      "mcunet_ldscript": board.ldscript},
            "frameworks": [], "name": board.title,
            "upload": {"maximum_ram_size": board.sram_total_bytes,
                       "maximum_size": board.flash_total_bytes, "protocol": "qemu"},
            "url": "https://www.qemu.org/docs/master/system/arm/mps2.html", "vendor": "Arm"}


def inputs_source(row_bytes: int, rows: list[list[np.ndarray]]) -> str:
    """src/harness_inputs.c: the rows and their count (a row of zeros when there are none,
    so the project builds)."""
    count = len(rows)
    lines = ["/* Input rows for the harness, generated by mcunet: each row holds the model's",
             " * inputs back to back. */", "#include <stdint.h>", "",
             f"const uint32_t harness_rows = {count};",
             f"const uint8_t harness_input[{max(count, 1)}][{row_bytes}] = {{"]
    for row in rows or [[np.zeros(row_bytes, np.uint8)]]:
        data = np.concatenate([np.ascontiguousarray(x).view(np.uint8).reshape(-1) for x in row])
        body = ", ".join(str(v) for v in data.tolist())
        lines.append(f"    {{ {body} }},")
    lines.append("};")
    return "\n".join(lines) + "\n"


def project_files(model, board: Board, rows: list[list[np.ndarray]], paint_bytes: int,
                  profile: bool = False, source: str | None = None) -> dict:
    """Every file of the PlatformIO project (path -> text) for these input rows."""
    g = model.graph
    lib = model.library()
    info = ProjectInfo.of(model, board, profile, source)
    io = {"inputs": [{"bytes": g.t(t).nbytes} for t in g.inputs],
          "outputs": [{"bytes": g.t(t).nbytes} for t in g.outputs]}
    files = {f"{info.library_dir}/{rel}": text for rel, text in lib.files.items()}
    if board.emulated:
        platform = f"symlink://{PROJECT_PLATFORM}"
        files[f"boards/{board.pio_board}.json"] = json.dumps(_board_manifest(board), indent=2) + "\n"
        build_flags = EMULATED_FLAGS + ([f"-D{lib.options.macro}_TRACE"] if profile else [])
        if model.training is not None:
            build_flags = build_flags + TRAIN_FLAGS
    else:
        platform = f"{board.pio_platform}@{board.pio_platform_version}"
        files["src/port_arduino.cpp"] = (PORT_DIR / "port_arduino.cpp").read_text()
        build_flags = ["-O2"] + (TRAIN_FLAGS if model.training is not None else [])
    files["platformio.ini"] = environment().get_template("firmware/platformio.ini.j2").render(
        version=__version__, model_name=g.name, board=board, platform=platform,
        build_flags=build_flags, library_dir=info.library_dir,
        platform_folder=PROJECT_PLATFORM, platforms_dir=".pio/platforms",
        packages_dir=PROJECT_PACKAGES)
    files["src/harness_port.h"] = (PORT_DIR / "harness_port.h").read_text()
    files["src/main.c"] = library_environment(lib.name).get_template("firmware/main.c.j2").render(
        version=__version__, board=board, traced=len(info.steps),
        row_bytes=info.row_bytes, paint_bytes=paint_bytes, **io)
    files[INPUTS_FILE] = inputs_source(info.row_bytes, rows)
    files[PROJECT_INFO] = json.dumps(asdict(info), indent=1) + "\n"
    return files


def write_project(files: dict[str, str], out: Path, board: Board) -> None:
    """Write the files, leaving unchanged ones alone (so `pio run` rebuilds only what changed),
    and remove the files an earlier project wrote that this one does not have (a kernel of
    another model, another board's port: mcunet.outdir's manifest, so a file of the user's own
    is never touched); an emulated board's project gets the platform and tool-scons it builds
    with."""
    for rel, text in files.items():
        path = out / rel
        if path.exists() and path.read_text() == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    record(out, files)  # the manifest: what is mcunet's here (mcunet.outdir)
    if board.emulated:
        copy_platform(out / PROJECT_PLATFORM)
        provision_tool_scons(out, packages=out / PROJECT_PACKAGES)


def copy_platform(dest: Path) -> None:
    """mcunet's local PlatformIO platform (boards/platform) into a project, as files (not a
    link into the installed package), updated where they differ."""
    for src in PLATFORM_DIR.rglob("*"):
        if src.is_file() and "__pycache__" not in src.parts:
            target = dest / src.relative_to(PLATFORM_DIR)
            data = src.read_bytes()
            if target.is_file() and target.read_bytes() == data:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def _rows(inputs: list[np.ndarray]) -> list[list[np.ndarray]]:
    n = inputs[0].shape[0] if inputs else 0
    return [[x[r] for x in inputs] for r in range(n)]


def paint_bytes_for(model, board: Board) -> int:
    return (kernel_stack_bytes(model, board) + PAINT_MARGIN + 7) // 8 * 8


def build_project(project: Path, board: Board, timeout: float = 900) -> Path:
    """`pio run` in the project; returns the firmware ELF."""
    if board.emulated:
        require(ARM_GCC)  # the local platform builds with the system toolchain
    run_pio(["run", "--environment", board.name], cwd=project, timeout=timeout)
    elf = project / ".pio" / "build" / board.name / "firmware.elf"
    if not elf.exists():
        raise McunetError(f"`pio run` finished but wrote no {elf}")
    return elf


def build_firmware(model, board: Board, out: Path, inputs: list[np.ndarray] | None = None,
                   build: bool = True, source: str | None = None,
                   profile: bool = False) -> Path | None:
    """Write the PlatformIO project into `out` and build it (`mcunet build`); returns the ELF
    (None with build=False)."""
    if inputs:
        check_inputs(model.graph, inputs)
    files = project_files(model, board, _rows(inputs or []), paint_bytes_for(model, board),
                          profile=profile, source=source)
    out.mkdir(parents=True, exist_ok=True)
    write_project(files, out, board)
    return build_project(out, board) if build else None


@contextlib.contextmanager
def _locked(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# ---------------------------------------------------------------------------------------------
# Running

_ROW = re.compile(r"^mcunet-row (\d+) cycles=(\d+) stack=(\d+)( overflow)?$", re.M)
_LAYER = re.compile(r"^mcunet-layer (\d+) (\d+) stack=(\d+)$", re.M)
_OUT = re.compile(r"^mcunet-out (\d+) ([0-9a-f]*)$", re.M)
_BEGIN = re.compile(r"^mcunet-begin sp=0x([0-9a-f]+)$", re.M)
_ERROR = re.compile(r"^mcunet-error (.*)$", re.M)


@dataclass
class HarnessReport:
    sp: int
    cycles: list[int]
    stack: list[int]
    raw: list[bytes]
    layer_stack: list[int] = field(default_factory=list)  # profile builds: per step, row 0


def parse_harness(text: str, rows: int) -> HarnessReport:
    """Read the harness's lines (see templates/firmware/main.c.j2)."""
    error = _ERROR.search(text)
    if error:
        raise McunetError(f"the firmware stopped: {error.group(1)}")
    begin = _BEGIN.search(text)
    if begin is None or "mcunet-end" not in text:
        tail = "\n".join(text.strip().splitlines()[-10:])
        raise McunetError("the firmware did not run to the end" +
                          (f"; its last lines:\n{tail}" if tail else " and printed nothing"))
    found = _ROW.findall(text)
    if len(found) != rows:
        raise McunetError(f"the firmware reported {plural(len(found), 'row')}, expected {rows}")
    if any(r[3] for r in found):
        raise McunetError("the library's stack went past the painted region: the stack bound "
                          "from -fstack-usage is wrong (a bug in mcunet; please report it)")
    chunks: dict[int, list[str]] = {}
    for r, hexdata in _OUT.findall(text):
        chunks.setdefault(int(r), []).append(hexdata)
    raw = [bytes.fromhex("".join(chunks.get(r, []))) for r in range(rows)]
    layers = [int(s) for r, _, s in _LAYER.findall(text) if int(r) == 0]
    return HarnessReport(int(begin.group(1), 16), [int(r[1]) for r in found],
                         [int(r[2]) for r in found], raw, layers)


def _accounts(info: ProjectInfo, elf: ElfImage, elf_path: Path,
              report: HarnessReport) -> tuple[dict, dict, int, int, int]:
    """RAM and flash, byte for byte."""
    static = elf.static_ram_bytes
    arena = elf.size("arena")
    kernel_stack = max(report.stack)
    allowed = info.stack_bytes + (TRACE_STACK_BYTES if info.profile else 0)
    if kernel_stack > allowed:
        raise McunetError(f"the library used {kernel_stack} bytes of stack, more than the "
                          f"{info.stack_bytes} its -fstack-usage bound allows"
                          f"{' (with the profile trace calls)' if info.profile else ''} (a bug in "
                          "mcunet; please report it)")
    top = elf.address("__stack_top__")
    harness_stack = (top - (report.sp & ~3)) if top is not None else 0
    ram = {"static_bytes": static, "arena_bytes": arena,
           "harness_static_bytes": static - arena,
           "kernel_stack_bytes": kernel_stack,
           "kernel_stack_bound_bytes": info.stack_bytes,
           "harness_stack_bytes": harness_stack,
           "planned_arena_bytes": info.arena_bytes}
    measured = static + harness_stack + kernel_stack
    weights = sum(elf.size(symbol) for symbol in info.weights)
    rows = elf.size("harness_input")
    flash_total = elf.flash_bytes - rows
    library = library_flash_bytes(elf_path.with_name("firmware.map"),
                                  Path(info.library_dir).name)
    flash = {"total_bytes": flash_total, "weights_bytes": weights,
             "code_and_runtime_bytes": flash_total - weights, "input_rows_bytes": rows,
             "library_bytes": library, "planned_weights_bytes": info.flash_bytes}
    return ram, flash, measured, flash_total, library


def run_on_board(model, board: Board, inputs: list[np.ndarray], work_dir: Path | None = None,
                 timeout: float = 600, profile: bool = False,
                 source: str | None = None) -> RunResult:
    """Build (incrementally, in `work_dir` or a cache folder keyed by the library and the
    board) and run the firmware on every row of the inputs; outputs are batched like them.
    profile: a build with a mark after every step, for per-layer instructions and stack."""
    check_inputs(model.graph, inputs)
    rows = _rows(inputs)
    if not rows:
        raise McunetError("no input rows to run")
    if profile and not board.emulated:
        raise McunetError("per-layer profiles need an emulated board (instruction counting)")
    files = project_files(model, board, rows, paint_bytes_for(model, board), profile, source)
    if work_dir is None:
        digest = hashlib.sha256()
        for rel in sorted(files):
            if rel not in (INPUTS_FILE, PROJECT_INFO):
                digest.update(rel.encode() + b"\0" + files[rel].encode() + b"\0")
        work_dir = cache_root() / "firmware" / f"{board.name}-{digest.hexdigest()[:16]}"
    work_dir = Path(work_dir)
    with _locked(work_dir):
        write_project(files, work_dir, board)
        return _build_and_run(work_dir, board, ProjectInfo.read(work_dir), len(rows), timeout)


def run_project(project: Path, inputs: list[np.ndarray] | None = None,
                timeout: float = 600) -> tuple[RunResult, ProjectInfo]:
    """Build and run a project that `mcunet build` wrote, as it is now (the user may have
    edited its harness or its library); with inputs, its input rows are replaced first."""
    info = ProjectInfo.read(project)
    board = get_board(info.board)
    if inputs:
        inputs = [quantize_with(x, io["scale"], io["zero_point"], io["dtype"])
                  if x.dtype.kind == "f" and io["dtype"] != "float32" and io["scale"] else x
                  for x, io in zip(inputs, info.inputs)]
        for k, (x, io) in enumerate(zip(inputs, info.inputs)):
            if tuple(x.shape[1:]) != tuple(io["shape"][1:]) or x.dtype.name != io["dtype"]:
                raise McunetError(f"input {k} has shape {x.shape} and dtype {x.dtype}; the "
                                  f"project's model wants (N, {', '.join(map(str, io['shape'][1:]))}) "
                                  f"{io['dtype']}")
        (project / INPUTS_FILE).write_text(inputs_source(info.row_bytes, _rows(inputs)))
    rows = _count_rows(project / INPUTS_FILE)
    with _locked(project):
        return _build_and_run(project, board, info, rows, timeout), info


def _count_rows(inputs_file: Path) -> int:
    try:
        m = re.search(r"harness_rows = (\d+);", inputs_file.read_text())
    except OSError:
        m = None
    if m is None:
        raise McunetError(f"{inputs_file} does not say how many rows it holds "
                          "(const uint32_t harness_rows = N;)")
    if int(m.group(1)) == 0:
        raise McunetError(f"{inputs_file} holds no input rows; give --input X.npy")
    return int(m.group(1))


def _build_and_run(project: Path, board: Board, info: ProjectInfo, rows: int,
                   timeout: float) -> RunResult:
    elf_path = build_project(project, board)
    elf = read_elf(elf_path)
    traced = len(info.steps)
    if board.emulated:
        from .qemu import run_qemu
        mark = elf.address("harness_mark")
        run = run_qemu(elf_path, board.qemu_machine, mark, timeout)
        if run.returncode != 0:
            tail = "\n".join(run.stdout.strip().splitlines()[-5:])
            raise McunetError(f"the firmware failed on emulated {board.name} (QEMU exit "
                              f"{run.returncode}){': ' + tail if tail else ''}")
        text = run.stdout
        instructions, per_step = step_instructions(run.marks, rows, traced)
    else:
        from .serial_port import run_serial
        text = run_serial(project, board, timeout)
        instructions, per_step = [], []
    report = parse_harness(text, rows)
    ram, flash, ram_measured, flash_measured, library = _accounts(info, elf, elf_path, report)
    layers = []
    for k, (step, n) in enumerate(zip(info.steps, per_step)):
        stack = report.layer_stack[k] if k < len(report.layer_stack) else None
        layers.append({**step, "instructions": n, "stack_bytes_measured": stack,
                       "ram_bytes_measured": None if stack is None else
                       ram["static_bytes"] + ram["harness_stack_bytes"] + stack})
    cycles = report.cycles[0] if report.cycles and report.cycles[0] else None
    outs = [(tuple(io["shape"]), io["dtype"]) for io in info.outputs]
    return RunResult(board=board.name, outputs=split_rows(b"".join(report.raw), rows, outs),
                     instructions=instructions[0] if instructions else None,
                     instructions_per_row=instructions, cycles=cycles, macs=info.macs,
                     ram_bytes_measured=ram_measured, flash_bytes_measured=flash_measured,
                     peak_sram_bytes=info.arena_bytes + info.stack_bytes,
                     arena_bytes=info.arena_bytes, stack_bytes=info.stack_bytes,
                     flash_library_bytes_measured=library,
                     flash_total_bytes=info.flash_total_bytes, ram=ram, flash=flash,
                     layers=layers, dsp=info.dsp)


def step_instructions(marks: list[int], rows: int, traced: int = 0) -> tuple[list[int], list[int]]:
    """Per-row instructions of NAME_invoke (with its call) from the mark samples, and in a
    profile build each traced step's (first row).

    The first two marks are back to back: their difference is what one mark costs. Each row
    then has a mark before and after NAME_invoke, and a profile build two marks around the
    work of each trace call (the first as the step ends, the second as the next begins): a
    step is what runs from the previous mark to its first, less one mark; the trace calls'
    work between their two marks is not the model's and is left out of the row's total."""
    per_row = 2 + 2 * traced
    if len(marks) != 2 + per_row * rows:
        raise McunetError(f"QEMU's instruction counter saw {len(marks)} marks, expected "
                          f"{2 + per_row * rows}")
    overhead = marks[1] - marks[0]
    totals, steps = [], []
    for r in range(rows):
        m = marks[2 + per_row * r: 2 + per_row * (r + 1)]
        # m[0] before the invoke, (m[2k+1], m[2k+2]) around trace k, m[-1] after it.
        spans = [m[2 * k + 1] - m[2 * k] - overhead for k in range(traced + 1)]
        totals.append(sum(spans))
        if r == 0:
            steps = spans[:traced]
    return totals, steps
