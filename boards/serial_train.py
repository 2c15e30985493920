"""The serial protocol of on-device training (`mcunet train-on-device --port`; docs/training.md,
"Over the serial port"): the host streams the header, the evaluation rows and the labelled
samples to the training firmware one frame at a time and reads the firmware's results back in
its acknowledgements.

Every frame, either way, little-endian:

    0xA5 | type (1 byte) | seq (u16) | length (u16) | payload (length bytes) | CRC-16 (u16)

the CRC-16/CCITT-FALSE (polynomial 0x1021, initial 0xFFFF) of type, seq, length and payload.
Stop and wait: the host sends frame `seq`, then waits for the board's `A` (acknowledged, with
the results of that frame as payload) or `N` (bad checksum or length: sent again) of the same
seq; a board that sees a frame again (its acknowledgement was lost) sends the same
acknowledgement again without redoing the work. The board acknowledges only once a frame's
work is done and it waits for the next one, so one frame is in flight at most: a slow board
never drops bytes. Host to board: `H` header, `V` an evaluation row, `T` a training sample,
`S` send the training state, `E` end. Board to host: `A`, `N`, `X` (an error, as text)."""
from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

import numpy as np

from mcunet.errors import McunetError
from mcunet.progress import plural

SOF = 0xA5
BAUD = 115200
VERSION = 2
MAGIC = b"MCTR"
NO_STACK = 0xFFFFFFFF  # the firmware's "the stack went past the painted region"


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def frame(kind: bytes, seq: int, payload: bytes = b"") -> bytes:
    body = kind + struct.pack("<HH", seq & 0xFFFF, len(payload)) + payload
    return bytes([SOF]) + body + struct.pack("<H", crc16(body))


class FrameReader:
    """Frames out of a byte stream: bytes before a start byte are skipped (a board's boot
    text), a frame whose checksum is wrong is dropped and counted."""

    def __init__(self, kinds: bytes = b"ANX"):
        self.buf = bytearray()
        self.bad = 0
        self.kinds = kinds  # the frame types this end takes (the board's: b"ANX")

    def feed(self, data: bytes) -> list[tuple[bytes, int, bytes]]:
        self.buf += data
        out = []
        while True:
            start = self.buf.find(bytes([SOF]))
            if start < 0:
                self.buf.clear()
                return out
            del self.buf[:start]
            if len(self.buf) < 6:
                return out
            kind, seq, n = bytes(self.buf[1:2]), *struct.unpack("<HH", self.buf[2:6])
            if len(self.buf) < 8 + n:
                return out
            body = bytes(self.buf[1:6 + n])
            (crc,) = struct.unpack("<H", self.buf[6 + n:8 + n])
            if crc != crc16(body) or kind not in self.kinds:
                self.bad += 1
                del self.buf[:1]  # resynchronise on the next start byte
                continue
            del self.buf[:8 + n]
            out.append((kind, seq, body[5:]))


@dataclass
class SerialRun:
    """What the firmware sent back over the serial port."""
    results: bytes  # the records the emulated firmware writes to mcunet-train.out
    sp: int
    cycles_available: bool
    eval_cycles: list[int]  # per invoke of the evaluation before training
    step_cycles: list[int]  # per training step
    invoke_stack: int
    step_stack: int
    resent: int = 0  # frames sent again (a NAK or a lost acknowledgement)
    frames: int = 0
    extra: dict = field(default_factory=dict)


def header_payload(row_bytes: int, steps: int, rows: int, lr: float, momentum: float) -> bytes:
    return MAGIC + struct.pack("<IIII", VERSION, row_bytes, steps, rows) + \
        np.array([lr, momentum], np.float32).astype("<f4").tobytes()


def open_port(port: str):
    """A serial device path or a pyserial URL (socket://HOST:PORT: an emulator's UART)."""
    try:
        import serial
    except ImportError:
        raise McunetError("pyserial is missing (pip install pyserial; PlatformIO normally "
                          "brings it)") from None
    try:
        opener = getattr(serial, "serial_for_url", serial.Serial)
        return opener(port, baudrate=BAUD, timeout=0.05)
    except (getattr(serial, "SerialException", OSError), OSError, ValueError) as exc:
        raise McunetError(f"cannot open serial port {port}: {exc}") from None


def stream_training(conn, port: str, train_x: np.ndarray, train_y: np.ndarray,
                    eval_x: np.ndarray, lr: float, momentum: float, row_bytes: int,
                    timeout: float = 10.0, start_timeout: float = 30.0,
                    retries: int = 5) -> SerialRun:
    """Run the protocol on an open port `conn` (read(n), write(data)): the header (sent again
    every second with an 'r' before it until the board answers, as `mcunet run` pokes a real
    board), the evaluation rows, the samples, the state, the evaluation rows again, the end.
    `timeout`: seconds a board may take to acknowledge one frame; `retries`: times a frame is
    sent again on a NAK or silence before giving up."""
    if row_bytes + 4 > 0xFFFF:
        raise McunetError(f"the model's input is {row_bytes:,} bytes: a training sample (row and "
                          "label) does not fit one frame of the serial protocol (65,535 bytes)")
    reader = FrameReader()
    steps, rows = len(train_x), len(eval_x)
    plan = [(b"H", header_payload(row_bytes, steps, rows, lr, momentum))]
    plan += [(b"V", np.ascontiguousarray(x, np.int8).tobytes()) for x in eval_x]
    plan += [(b"T", np.ascontiguousarray(x, np.int8).tobytes() + struct.pack("<i", int(y)))
             for x, y in zip(train_x, train_y)]
    plan += [(b"S", b"")]
    plan += [(b"V", np.ascontiguousarray(x, np.int8).tobytes()) for x in eval_x]
    plan += [(b"E", b"")]
    acks: list[bytes] = []
    resent = 0

    def progress_text(seq: int) -> str:
        done_steps = max(0, min(steps, seq - 1 - rows))
        done_eval = max(0, min(rows, seq - 1)) + max(0, min(rows, seq - 2 - rows - steps))
        return (f"{done_steps} of {steps} training samples and {done_eval} of {2 * rows} "
                f"evaluation rows acknowledged")

    def read() -> bytes:
        # What is waiting (at least one byte, or the read's timeout): pyserial's socket://
        # drops what a read got when the peer closes within it (QEMU exiting after 'E').
        try:
            return conn.read(max(1, getattr(conn, "in_waiting", 0) or 0))
        except OSError as exc:
            raise McunetError(f"the serial port {port} failed while talking to the board "
                              f"({exc}); {progress_text(seq)}") from None

    for seq, (kind, payload) in enumerate(plan):
        data = frame(kind, seq, payload)
        # The header goes again every second until the board answers (it may still be
        # booting); any other frame after `timeout` of silence or at once on a NAK.
        interval = min(1.0, start_timeout) if seq == 0 else timeout
        began = time.monotonic()
        tries = 0
        got = None
        while got is None:
            if seq == 0 and tries and time.monotonic() - began >= start_timeout:
                raise McunetError(f"the board on {port} never answered within "
                                  f"{start_timeout:g} s; check that it is connected, that the "
                                  "upload succeeded and that it runs the training firmware")
            if seq and tries > retries:
                raise McunetError(f"the board on {port} stopped answering: no acknowledgement "
                                  f"of frame {seq} ({kind.decode()}) within {timeout:g} s, "
                                  f"sent {plural(retries + 1, 'time')}; {progress_text(seq)}")
            if tries:
                resent += 1
            tries += 1
            conn.write((b"r" if seq == 0 else b"") + data)
            sent_at = time.monotonic()
            nak = False
            while got is None and not nak and time.monotonic() - sent_at < interval:
                for k, s, p in reader.feed(read()):
                    if k == b"X":
                        raise McunetError(f"the training firmware stopped: "
                                          f"{p.decode('ascii', 'replace')} ({progress_text(seq)})")
                    if s != seq:
                        continue  # a late acknowledgement of a frame sent twice
                    if k == b"N":
                        nak = True
                    else:
                        got = p
        acks.append(got)
    return _collect(plan, acks, rows, steps, resent)


def _collect(plan, acks, rows: int, steps: int, resent: int) -> SerialRun:
    def cut(p: bytes, what: str) -> tuple[int, bytes]:
        if len(p) < 4:
            raise McunetError(f"the board's acknowledgement of {what} is {len(p)} bytes long")
        return struct.unpack("<I", p[:4])[0], p[4:]

    if len(acks[0]) != 8:
        raise McunetError(f"the board answered the header with {len(acks[0])} bytes, not 8: is "
                          "it the training firmware of this model?")
    sp, has_cycles = struct.unpack("<II", acks[0])
    results, eval_cycles, step_cycles = [], [], []
    k = 1
    for _ in range(rows):
        c, p = cut(acks[k], "an evaluation row")
        eval_cycles.append(c)
        results.append(p)
        k += 1
    for _ in range(steps):
        c, p = cut(acks[k], "a training sample")
        step_cycles.append(c)
        results.append(p)
        k += 1
    results.append(acks[k])  # the state
    k += 1
    for _ in range(rows):
        results.append(cut(acks[k], "an evaluation row")[1])
        k += 1
    if len(acks[k]) != 8:
        raise McunetError(f"the board answered the end with {len(acks[k])} bytes, not 8")
    invoke_stack, step_stack = struct.unpack("<II", acks[k])
    return SerialRun(results=b"".join(results), sp=sp, cycles_available=bool(has_cycles),
                     eval_cycles=eval_cycles, step_cycles=step_cycles,
                     invoke_stack=invoke_stack, step_stack=step_stack, resent=resent,
                     frames=len(plan))


def train_over_serial(port: str, train_x, train_y, eval_x, lr: float, momentum: float,
                      row_bytes: int, timeout: float = 10.0, start_timeout: float = 30.0,
                      start_grace: float = 2.0) -> SerialRun:
    """Open the port (boards reset when it opens: wait start_grace) and run the protocol."""
    conn = open_port(port)
    try:
        if start_grace:
            time.sleep(start_grace)
        return stream_training(conn, port, train_x, train_y, eval_x, lr, momentum, row_bytes,
                               timeout=timeout, start_timeout=start_timeout)
    finally:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - closing a port that failed
            pass
