"""On-device training over the serial port (mcunet.boards.serial_train, `mcunet
train-on-device --port`; docs/training.md, "Over the serial port"): the host's side of the
framed protocol against a fake board (checksums, NAKs, lost acknowledgements, a board that
stops answering or never answers), the command's errors, and (slow) the real boards' serial
firmware end to end on the emulated Cortex-M4 over QEMU's UART, bit for bit with the NumPy
reference."""
from __future__ import annotations

import shutil
import struct
import time

import numpy as np
import pytest

from mcunet.boards.serial_train import FrameReader, crc16, frame, header_payload, stream_training
from mcunet.cli import main
from mcunet.errors import McunetError

from .conftest import mlperf_model

needs_tools = pytest.mark.skipif(
    not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
    reason="needs arm-none-eabi-gcc and qemu-system-arm (scripts/setup.sh installs them)")


class FakeBoard:
    """A serial port with a board behind it that speaks the protocol: it acknowledges each
    frame with made-up results (an evaluation row: cycles, its row's first byte twice; a
    step: cycles, status, loss, label), or misbehaves as told."""

    def __init__(self, row_bytes=3, stop_after=None, corrupt=(), lose_ack=(), silent=False,
                 error_at=None):
        self.row_bytes = row_bytes
        self.reader = FrameReader(kinds=b"HVTSE")
        self.out = bytearray()
        self.expected = 0
        self.last = None
        self.stop_after = stop_after  # answers no frame from this seq on
        self.corrupt = set(corrupt)  # seqs whose first copy arrives with a bad checksum
        self.lose_ack = set(lose_ack)  # seqs whose first acknowledgement is lost
        self.silent = silent
        self.error_at = error_at
        self.received = []
        self.in_waiting = 0

    def write(self, data: bytes):
        data = bytes(data).lstrip(b"r")
        if data and data[0] == 0xA5:
            seq = struct.unpack("<H", data[2:4])[0]
            if seq in self.corrupt:
                self.corrupt.discard(seq)
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
                self.out += frame(b"N", seq)
                return
        for kind, seq, payload in self.reader.feed(data):
            self.handle(kind, seq, payload)

    def handle(self, kind, seq, payload):
        if self.silent or (self.stop_after is not None and seq >= self.stop_after):
            return
        if seq == self.error_at:
            self.out += frame(b"X", seq, b"a frame out of order")
            return
        if self.last is not None and seq == self.last[0]:
            self.out += self.last[1]
            return
        assert seq == self.expected
        self.received.append((kind, payload))
        if kind == b"H":
            reply = struct.pack("<II", 0x20001000, 1)
        elif kind == b"V":
            reply = struct.pack("<I", 100 + seq) + payload[:1] * 2
        elif kind == b"T":
            reply = struct.pack("<Iif", 1000 + seq, 0, 0.5) + payload[-4:-3]
        elif kind == b"S":
            reply = b"STATE"
        else:
            reply = struct.pack("<II", 64, 96)
        ack = frame(b"A", seq, reply)
        self.last = (seq, ack)
        self.expected += 1
        if seq in self.lose_ack:
            self.lose_ack.discard(seq)
            return
        self.out += ack

    def read(self, n):
        if not self.out:
            return b""
        data, self.out[:] = bytes(self.out[:n]), self.out[n:]
        return data


def samples(steps=3, rows=2):
    x = np.arange(steps * 3, dtype=np.int8).reshape(steps, 3)
    return x, np.arange(steps), np.full((rows, 3), -5, np.int8)


def test_crc_and_frames():
    """CRC-16/CCITT-FALSE's check value; a frame reads back whatever comes before it, and a
    frame with a flipped bit is dropped."""
    assert crc16(b"123456789") == 0x29B1
    reader = FrameReader()
    good = frame(b"A", 7, b"xyz")
    bad = bytearray(frame(b"A", 8, b"abc"))
    bad[7] ^= 1
    assert reader.feed(b"boot text\n" + good[:4]) == []
    assert reader.feed(good[4:] + bytes(bad) + frame(b"N", 9)) == [(b"A", 7, b"xyz"), (b"N", 9, b"")]
    assert reader.bad >= 1


def test_stream_collects_the_results_in_order():
    x, y, e = samples()
    board = FakeBoard()
    run = stream_training(board, "fake", x, y, e, 0.01, 0.9, 3, timeout=1, start_timeout=1)
    kinds = [k for k, _ in board.received]
    assert kinds == [b"H", b"V", b"V", b"T", b"T", b"T", b"S", b"V", b"V", b"E"]
    assert board.received[0][1] == header_payload(3, 3, 2, 0.01, 0.9)
    assert board.received[3][1] == x[0].tobytes() + struct.pack("<i", 0)
    assert run.sp == 0x20001000 and run.cycles_available
    assert run.eval_cycles == [101, 102] and run.step_cycles == [1003, 1004, 1005]
    assert (run.invoke_stack, run.step_stack) == (64, 96) and run.resent == 0
    step = lambda k: struct.pack("<if", 0, 0.5) + bytes([int(y[k])])  # noqa: E731
    assert run.results == b"\xfb\xfb" * 2 + step(0) + step(1) + step(2) + b"STATE" + b"\xfb\xfb" * 2


def test_bad_checksums_and_lost_acknowledgements_are_sent_again():
    """A frame that arrives damaged is NAKed and sent again; a frame whose acknowledgement
    was lost is sent again after the timeout and acknowledged again without being redone."""
    x, y, e = samples()
    board = FakeBoard(corrupt={3, 5}, lose_ack={4})
    run = stream_training(board, "fake", x, y, e, 0.01, 0.9, 3, timeout=0.2, start_timeout=1)
    assert [k for k, _ in board.received].count(b"T") == 3  # each step ran once
    assert run.resent == 3 and run.step_cycles == [1003, 1004, 1005]


def test_a_board_that_stops_answering_says_how_far_it_got():
    x, y, e = samples(steps=5)
    board = FakeBoard(stop_after=5)  # H, 2 V, 2 T acknowledged
    with pytest.raises(McunetError) as exc:
        stream_training(board, "/dev/ttyFAKE", x, y, e, 0.01, 0.9, 3, timeout=0.1, retries=2,
                        start_timeout=1)
    msg = str(exc.value)
    assert "stopped answering" in msg and "frame 5 (T)" in msg and "sent 3 times" in msg
    assert "2 of 5 training samples and 2 of 4 evaluation rows acknowledged" in msg


def test_a_board_that_never_answers():
    x, y, e = samples()
    with pytest.raises(McunetError, match="never answered within 0.3 s"):
        stream_training(FakeBoard(silent=True), "/dev/ttyFAKE", x, y, e, 0.01, 0.9, 3,
                        timeout=0.1, start_timeout=0.3)


def test_the_boards_error_ends_the_run():
    x, y, e = samples()
    with pytest.raises(McunetError, match="the training firmware stopped: a frame out of order "
                                          r"\(1 of 3 training samples"):
        stream_training(FakeBoard(error_at=4), "fake", x, y, e, 0.01, 0.9, 3, timeout=1,
                        start_timeout=1)


@pytest.mark.parametrize("args, words", [
    (["--board", "nucleo-f411re", "--dataset", "fashion-mnist"], "give --port"),
    (["--board", "nucleo-f411re", "--dataset", "fashion-mnist", "--port", "/dev/ttyNOPE9"],
     "serial port /dev/ttyNOPE9 is not there"),
    (["--board", "mps2-an386", "--dataset", "fashion-mnist", "--port", "/dev/ttyACM0"],
     "takes no --port"),
])
def test_the_commands_serial_errors_are_one_line(capsys, monkeypatch, args, words):
    monkeypatch.delenv("MCUNET_SERIAL_PORT", raising=False)
    with pytest.raises(SystemExit) as exc:
        main(["train-on-device", str(mlperf_model("kws_ref_model.tflite")), "--train", "head",
              *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and words in err and len(err.strip().splitlines()) == 1


@needs_tools
@pytest.mark.slow
def test_serial_firmware_on_the_emulated_m4_is_bit_exact(capsys):
    """The real boards' training firmware (templates/firmware/train_serial_main.c.j2) and the
    host's protocol, end to end over QEMU's UART on a TCP socket: bit for bit the NumPy
    reference, the library's RAM as planned."""
    from mcunet import api
    from mcunet.boards import get_board
    from mcunet.boards.ondevice import reference_mismatches, train_on_emulated_serial

    source = mlperf_model("kws_ref_model.tflite")
    compiled = api.compile(source, board="mps2-an386", train="head")
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (7, 49, 10, 1)).astype(np.int8)
    y = rng.integers(0, 12, 7)
    result = train_on_emulated_serial(compiled, get_board("mps2-an386"), x[:5], y[:5], x[5:],
                                      lr=0.05, source=str(source))
    assert reference_mismatches(str(source), compiled, result, x[:5], y[:5], x[5:],
                                lr=0.05) == []
    assert result.transport == "serial" and len(result.step_instructions) == 5
    assert result.ram["library_measured_bytes"] == result.ram["planned_bytes"]
    assert result.step_cycles == []  # QEMU counts no cycles


@needs_tools
@pytest.mark.slow
def test_the_command_over_qemus_uart(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "kws.npz"
    np.savez(data, x=rng.integers(-128, 128, (10, 49, 10, 1)).astype(np.int8),
             y=rng.integers(0, 12, 10))
    main(["train-on-device", str(mlperf_model("kws_ref_model.tflite")), "--train", "bias",
          "--board", "mps2-an386", "--serial", "--dataset", str(data), "--steps", "3",
          "--eval", "2"])
    out = capsys.readouterr().out
    assert "bit-exact with the NumPy reference" in out and ": yes" in out
    assert "instructions per training step" in out


ARDUINO_STUB = """#include <stdint.h>
#include <stddef.h>
struct StubSerial {
    void begin(unsigned long);
    size_t print(const char *);
    size_t write(const uint8_t *, size_t);
    int available();
    int read();
    void flush();
};
extern StubSerial Serial;
"""

C_PORT_STUB = """#include <stdint.h>
void port_init(void) {}
void port_write(const char *t) { (void)t; }
void port_write_bytes(const void *d, uint32_t n) { (void)d; (void)n; }
int port_read_byte(void) { return 0; }
uint32_t port_cycles(void) { return 0; }
void port_done(int s) { (void)s; }
int harness_main(void);
int main(void) { return harness_main(); }
"""


@pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("arm-none-eabi-g++")),
                    reason="needs arm-none-eabi-gcc and arm-none-eabi-g++")
@pytest.mark.parametrize("board", ["nucleo-f411re", pytest.param("stm32f746g-disco",
                                                                 marks=pytest.mark.slow)])
def test_real_board_training_firmware_compiles_for_its_core(tmp_path, board):
    """A real board's training project (its vendor platform and the Arduino framework are not
    installed here, so `pio run` cannot build it): its main.c and library compile warnings
    clean for the board's core with the project's flags and link (with a stub port), and its
    Arduino port compiles against a stub Arduino.h."""
    import subprocess

    from mcunet import api
    from mcunet.boards import get_board
    from mcunet.boards.ondevice import train_project_files

    b = get_board(board)
    compiled = api.compile(mlperf_model("kws_ref_model.tflite"), board=b.name, train="head")
    files = train_project_files(compiled, b)
    ini = files["platformio.ini"]
    assert "-ffp-contract=off" in ini and "src/port_arduino.cpp" in files
    for rel, text in {**files, "stub/Arduino.h": ARDUINO_STUB, "stub/port.c": C_PORT_STUB}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    flags = b.arm.flags + ["-O2", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off",
                           "-ffunction-sections", "-fdata-sections"]
    lib = tmp_path / "lib" / compiled.library().options.target
    sources = [tmp_path / "src" / "main.c", tmp_path / "stub" / "port.c",
               *sorted(lib.glob("*.c")), *sorted(lib.glob("kernels/*.c"))]
    elf = tmp_path / "fw.elf"
    r = subprocess.run(["arm-none-eabi-gcc", "-std=c99", *flags, f"-I{lib}",
                        f"-I{tmp_path / 'src'}", *map(str, sources), "--specs=nosys.specs",
                        "-Wl,--gc-sections", "-o", str(elf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run(["arm-none-eabi-g++", *flags, f"-I{tmp_path / 'stub'}",
                        f"-I{tmp_path / 'src'}", "-c", str(tmp_path / "src" / "port_arduino.cpp"),
                        "-o", str(tmp_path / "port.o")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]


@needs_tools
@pytest.mark.slow
def test_the_real_board_path_against_qemu(monkeypatch):
    """train_over_port, the real boards' host path (upload, then the port), with the upload
    replaced and QEMU's UART standing in for the board's port."""
    import socket
    import subprocess

    from mcunet import api
    from mcunet.boards import get_board, toolchain
    from mcunet.boards.ondevice import (_serial_project, reference_mismatches,
                                        train_on_emulated_serial, train_over_port)

    source = mlperf_model("kws_ref_model.tflite")
    board = get_board("mps2-an386")
    compiled = api.compile(source, board=board.name, train="bias")
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, (4, 49, 10, 1)).astype(np.int8)
    y = rng.integers(0, 12, 4)
    train_on_emulated_serial(compiled, board, x[:3], y[:3], x[3:], source=str(source))  # builds
    _, work = _serial_project(compiled, board, None, str(source))
    elf = work / ".pio" / "build" / board.name / "firmware.elf"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        tcp = probe.getsockname()[1]
    qemu = subprocess.Popen(["qemu-system-arm", "-M", board.qemu_machine, "-display", "none",
                             "-serial", f"tcp:127.0.0.1:{tcp},server=on,wait=on", "-monitor",
                             "none", "-semihosting-config", "enable=on,target=native",
                             "-kernel", str(elf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    uploads = []
    monkeypatch.setattr(toolchain, "run_pio", lambda args, cwd: uploads.append(args))
    try:
        time.sleep(0.5)  # QEMU listening
        result = train_over_port(compiled, board, x[:3], y[:3], x[3:], f"socket://127.0.0.1:{tcp}",
                                 timeout=30, source=str(source))
        assert qemu.wait(timeout=30) == 0  # the firmware ended after 'E'
    finally:
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
    assert uploads and "upload" in uploads[0]
    assert reference_mismatches(str(source), compiled, result, x[:3], y[:3], x[3:]) == []
    assert result.step_instructions == [] and result.transport == "serial"


def test_a_row_too_big_for_a_frame_is_refused():
    x = np.zeros((1, 70000), np.int8)
    with pytest.raises(McunetError, match="does not fit one frame"):
        stream_training(FakeBoard(), "fake", x, np.zeros(1), x[:0], 0.01, 0.9, 70000)
