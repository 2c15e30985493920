"""SCons build script of mcunet's offline PlatformIO platform: bare-metal Cortex-M firmware
built with the system arm-none-eabi-gcc (no toolchain package from PlatformIO's registry).

The board manifest names the core (build.cpu), the floating-point unit (build.fpu, "" for
none), the board-support folder of this platform holding startup.c and the linker scripts
(build.mcunet_bsp, e.g. "mps2") and the board's linker script in it (build.mcunet_ldscript,
default "link.ld": the image's memory map; it includes the shared sections.ld)."""
import os

from SCons.Script import AlwaysBuild, Builder, Default, DefaultEnvironment

env = DefaultEnvironment()
board = env.BoardConfig()
platform_dir = env.PioPlatform().get_dir()
bsp = board.get("build.mcunet_bsp", "mps2")
bsp_dir = os.path.join(platform_dir, bsp)
ldscript = board.get("build.mcunet_ldscript", "link.ld")

cpu = board.get("build.cpu")
fpu = board.get("build.fpu", "")
machine = ["-mcpu=%s" % cpu, "-mthumb"]
machine += ["-mfpu=%s" % fpu, "-mfloat-abi=hard"] if fpu else ["-mfloat-abi=soft"]

env.Replace(
    AR="arm-none-eabi-gcc-ar",
    AS="arm-none-eabi-gcc",
    CC="arm-none-eabi-gcc",
    CXX="arm-none-eabi-g++",
    GDB="arm-none-eabi-gdb",
    OBJCOPY="arm-none-eabi-objcopy",
    RANLIB="arm-none-eabi-gcc-ranlib",
    SIZETOOL="arm-none-eabi-size",
    SIZEPRINTCMD="$SIZETOOL -A -d $SOURCES",
    PROGNAME="firmware",
    PROGSUFFIX=".elf",
    LDSCRIPT_PATH=os.path.join(bsp_dir, ldscript),
)
env.Append(
    ASFLAGS=machine,
    CCFLAGS=machine + ["-O2", "-ffunction-sections", "-fdata-sections"],
    CFLAGS=["-std=c99"],
    LINKFLAGS=machine + ["-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
                         "-Wl,--gc-sections", "-Wl,-Map,${BUILD_DIR}/firmware.map"],
    LIBS=["c", "gcc"],
    LIBPATH=[bsp_dir],  # where the linker script's INCLUDE finds sections.ld
)

# The board-support sources (vector table, reset handler, semihosting) are part of every build.
env.BuildSources(os.path.join("$BUILD_DIR", "bsp"), bsp_dir)

env.Append(BUILDERS=dict(ElfToBin=Builder(
    action=env.VerboseAction("$OBJCOPY -O binary $SOURCES $TARGET", "Building $TARGET"),
    suffix=".bin")))

program = env.BuildProgram()
binary = env.ElfToBin(os.path.join("$BUILD_DIR", "${PROGNAME}"), program)
AlwaysBuild(env.Alias("size", program, env.VerboseAction("$SIZEPRINTCMD", "Size")))
# Emulated boards have nothing to upload to: `mcunet run` starts QEMU on the ELF instead.
AlwaysBuild(env.Alias("upload", program, env.VerboseAction(
    "echo emulated board: run it with mcunet run (QEMU)", "Upload")))
Default([program, binary])
