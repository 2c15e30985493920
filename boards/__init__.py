"""Board descriptors: what a target offers the model (core, SRAM, flash, clock), how
PlatformIO builds for it and uploads to it, and for emulated boards the QEMU machine.

`sram_bytes` and `flash_bytes` are what is free for the model: the board's memory less a
reserve for the harness and, on real boards, the framework (Arduino core, USB, serial).
They are the budgets `mcunet plan/compile --board` checks the plan against."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from mcunet.errors import McunetError
from mcunet.target import HOST, TARGETS, Target, get_target

from .stack import arm_footprint
from .toolchain import CORE_FPU, ArmCore

KB = 1024
MB = 1024 * 1024


@dataclass(frozen=True)
class Board:
    name: str  # what --board takes
    title: str
    core: str  # gcc's -mcpu: cortex-m0plus, cortex-m3, cortex-m4, cortex-m7, cortex-m33
    fpu: str | None  # gcc's -mfpu (fpv4-sp-d16, fpv5-d16), None without an FPU
    sram_total_bytes: int
    flash_total_bytes: int
    clock_hz: int
    pio_platform: str  # PlatformIO development platform ("mcunet" = boards/platform/)
    pio_board: str
    pio_framework: str | None  # None for bare metal (the local platform)
    upload_protocol: str | None  # None for emulated boards
    qemu_machine: str | None = None  # emulated boards only
    reserve_sram_bytes: int = 16 * KB  # harness, framework and their stack
    reserve_flash_bytes: int = 64 * KB
    # The vendor platform's release the generated platformio.ini pins (PlatformIO asks
    # projects to pin one, so that a platform update cannot change the build).
    pio_platform_version: str | None = None
    # Emulated boards: the local platform's linker script (boards/platform/mps2/), which
    # holds the image's memory map (where the core boots, where the RAM is).
    ldscript: str = "link.ld"

    @property
    def arm(self) -> ArmCore:
        return ArmCore(self.core, self.fpu)

    @property
    def target(self) -> Target:
        """The board's core for the compiler: its kernels, and the library's stack bound and
        code bytes on it (mcunet.boards.stack)."""
        return Target(self.core, TARGETS[self.core].isas,
                      footprint=partial(arm_footprint, core=self.arm))

    @property
    def dsp(self) -> bool:
        """ARMv7E-M, or Armv8-M Mainline with the DSP extension (the M33): the SMLAD/SXTB16
        kernels apply."""
        return TARGETS[self.core].dsp

    @property
    def emulated(self) -> bool:
        return self.qemu_machine is not None

    @property
    def sram_bytes(self) -> int:
        return self.sram_total_bytes - self.reserve_sram_bytes

    @property
    def flash_bytes(self) -> int:
        return self.flash_total_bytes - self.reserve_flash_bytes

    def describe(self) -> dict:
        return {"name": self.name, "title": self.title, "core": self.core, "fpu": self.fpu,
                "dsp": self.dsp, "sram_bytes": self.sram_bytes, "flash_bytes": self.flash_bytes,
                "sram_total_bytes": self.sram_total_bytes,
                "flash_total_bytes": self.flash_total_bytes, "clock_hz": self.clock_hz,
                "platformio": {"platform": self.pio_platform,
                               "platform_version": self.pio_platform_version,
                               "board": self.pio_board,
                               "framework": self.pio_framework,
                               "upload_protocol": self.upload_protocol},
                "qemu_machine": self.qemu_machine}


STSTM32 = "19.4.0"  # platformio/ststm32, with the STM32duino Arduino core


def _mps2(name: str, title: str, core: str, fpu: str | None, clock_hz: int = 25_000_000,
          ldscript: str = "link.ld") -> Board:
    # QEMU's MPS2 images: 4 MB of SSRAM for the image, 4 MB of RAM (at 0x20000000 on the
    # AN385/AN386/AN500, link.ld; the AN505's map is in link_an505.ld), 25 MHz (AN505: 20).
    # The reserve covers the harness's input rows (flash) and its stack region (RAM).
    return Board(name, title, core, fpu, 4 * MB, 4 * MB, clock_hz, "mcunet", name, None, None,
                 qemu_machine=name, reserve_sram_bytes=128 * KB, reserve_flash_bytes=1 * MB,
                 ldscript=ldscript)


BOARDS: dict[str, Board] = {b.name: b for b in [
    _mps2("mps2-an386", "Arm MPS2 AN386, Cortex-M4F (emulated by QEMU)", "cortex-m4",
          "fpv4-sp-d16"),
    _mps2("mps2-an500", "Arm MPS2 AN500, Cortex-M7 (emulated by QEMU)", "cortex-m7",
          "fpv5-sp-d16"),
    _mps2("mps2-an385", "Arm MPS2 AN385, Cortex-M3 (emulated by QEMU)", "cortex-m3", None),
    # Armv8-M Mainline with the DSP extension, a single-precision FPU and TrustZone: QEMU
    # boots it in Secure state; SYSCLK is 20 MHz (hw/arm/mps2-tz.c).
    _mps2("mps2-an505", "Arm MPS2 AN505, Cortex-M33 (emulated by QEMU)", "cortex-m33",
          "fpv5-sp-d16", clock_hz=20_000_000, ldscript="link_an505.ld"),
    Board("stm32f746g-disco", "ST STM32F746G-DISCO, Cortex-M7 216 MHz", "cortex-m7",
          "fpv5-sp-d16", 320 * KB, 1 * MB, 216_000_000, "platformio/ststm32", "disco_f746ng",
          "arduino", "stlink", pio_platform_version=STSTM32),
    Board("nucleo-f411re", "ST NUCLEO-F411RE, Cortex-M4F 100 MHz", "cortex-m4", "fpv4-sp-d16",
          128 * KB, 512 * KB, 100_000_000, "platformio/ststm32", "nucleo_f411re", "arduino",
          "stlink", pio_platform_version=STSTM32),
    Board("nucleo-f412zg", "ST NUCLEO-F412ZG, Cortex-M4F 100 MHz", "cortex-m4", "fpv4-sp-d16",
          256 * KB, 1 * MB, 100_000_000, "platformio/ststm32", "nucleo_f412zg", "arduino",
          "stlink", pio_platform_version=STSTM32),
    # The H743's largest contiguous SRAM is the 512 KB AXI SRAM (D1 domain).
    Board("nucleo-h743zi", "ST NUCLEO-H743ZI, Cortex-M7 480 MHz", "cortex-m7", "fpv5-d16",
          512 * KB, 2 * MB, 480_000_000, "platformio/ststm32", "nucleo_h743zi", "arduino",
          "stlink", pio_platform_version=STSTM32),
    Board("nano33ble", "Arduino Nano 33 BLE (nRF52840), Cortex-M4F 64 MHz", "cortex-m4",
          "fpv4-sp-d16", 256 * KB, 1 * MB, 64_000_000, "platformio/nordicnrf52", "nano33ble",
          "arduino", "sam-ba", reserve_sram_bytes=48 * KB, reserve_flash_bytes=256 * KB,
          pio_platform_version="10.11.0"),
    Board("pico", "Raspberry Pi Pico (RP2040), Cortex-M0+ 133 MHz", "cortex-m0plus", None,
          264 * KB, 2 * MB, 133_000_000, "platformio/raspberrypi", "pico", "arduino",
          "picotool", pio_platform_version="1.19.0"),
]}


def core_target(target: str | Target | None) -> Target:
    """A target core without a board: its kernels, and for an Arm core the library's stack
    bound and code bytes with the core's usual FPU (mcunet.boards.toolchain.CORE_FPU)."""
    t = get_target(target)
    if t.name == HOST.name or t.footprint is not None:
        return t
    return Target(t.name, t.isas, footprint=partial(arm_footprint,
                                                    core=ArmCore(t.name, CORE_FPU[t.name])))


def get_board(name: str) -> Board:
    key = name.strip().lower()
    if key not in BOARDS:
        raise McunetError(f"unknown board '{name}'; known boards: {', '.join(BOARDS)} "
                          "(see `mcunet boards`)")
    return BOARDS[key]
