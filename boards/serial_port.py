"""Real boards: upload with `pio run -t upload`, then ask the harness to run over the serial
port (send 'r') and read its lines until it says mcunet-end, or give up after a timeout."""
from __future__ import annotations

import os
import time
from pathlib import Path

from mcunet.errors import McunetError

from .toolchain import run_pio

BAUD = 115200


def find_port() -> str:
    """$MCUNET_SERIAL_PORT, else the only USB serial port present."""
    if os.environ.get("MCUNET_SERIAL_PORT"):
        return os.environ["MCUNET_SERIAL_PORT"]
    try:
        from serial.tools import list_ports
    except ImportError:
        raise McunetError("pyserial is missing (pip install pyserial; PlatformIO normally "
                          "brings it)") from None
    ports = [p.device for p in list_ports.comports() if p.vid is not None]
    if len(ports) != 1:
        found = ", ".join(ports) or "none"
        raise McunetError(f"cannot tell which serial port is the board (USB serial ports: "
                          f"{found}); set MCUNET_SERIAL_PORT=/dev/ttyACM0 or similar")
    return ports[0]


def read_harness(port: str, timeout: float, start_grace: float = 2.0) -> str:
    """Open the port, send 'r' (again every second until the board starts answering) and
    collect lines until mcunet-end."""
    import serial

    deadline = time.monotonic() + timeout
    try:
        conn = serial.Serial(port, BAUD, timeout=0.2)
    except (serial.SerialException, OSError) as exc:
        raise McunetError(f"cannot open serial port {port}: {exc}") from None
    text = ""
    with conn:
        time.sleep(start_grace)  # boards reset when the port opens
        last_poke = 0.0
        while time.monotonic() < deadline:
            try:
                if "mcunet-begin" not in text and time.monotonic() - last_poke > 1.0:
                    conn.write(b"r")
                    last_poke = time.monotonic()
                text += conn.read(4096).decode("ascii", "replace")
            except (serial.SerialException, OSError) as exc:
                raise McunetError(f"the serial port {port} failed while reading the board: "
                                  f"{exc}") from None
            if "mcunet-end" in text:
                # One run: from the last start before the first end (a second 'r' sent while
                # the board was starting may have begun another run).
                text = text.replace("\r\n", "\n")
                end = text.index("mcunet-end")
                start = text.rfind("mcunet-begin", 0, end)
                return text[max(start, 0):end] + "mcunet-end\n"
    what = "never answered" if not text.strip() else "stopped answering"
    raise McunetError(f"the board on {port} {what} within {timeout:.0f} s; check that it is "
                      "connected, that the upload succeeded, and the port "
                      "(MCUNET_SERIAL_PORT)")


def run_serial(project: Path, board, timeout: float) -> str:
    run_pio(["run", "--environment", board.name, "--target", "upload"], cwd=project)
    # Boards with native USB (Nano 33 BLE, Pico) take a moment to come back after an upload.
    for attempt in range(10):
        try:
            port = find_port()
            break
        except McunetError:
            if attempt == 9:
                raise
            time.sleep(0.5)
    return read_harness(port, timeout)
