"""The cortex-m4 export target: a bare-metal build of the check program, run
under QEMU, and the costs a firmware engineer decides with.

Files added beside the host files (none is a .c file, so the host build
`cc ... *.c` is unchanged):
    Makefile               `make -C DIR run [SEQUENCES=K]`: arm-none-eabi-gcc -mcpu=cortex-m4
                           -mthumb -mfloat-abi=soft (no FPU use), then qemu-system-arm -M
                           mps2-an386 with semihosting; the last line is `N/N identical` and
                           the exit status is 0 only when all are identical
    mps2_an386.ld          the board's memory map: code at 0 (standing in for flash),
                           data at 0x20000000
    startup_cortex_m4.S    vector table and reset handler (copies .data, then newlib's crt0)
    cortex_m4_timer.h      SysTick as an instruction counter (check.c includes it here only)

Measured (`measure`), into memory.json under "cortex_m4":
    flash_bytes            text + rodata + data of gruq_kernel.o: kernel and model, without
                           the test vectors, the check program or the C library
    ram_bytes              data + bss of gruq_kernel.o (gruq_infer's static state)
    stack_bytes            the deepest call chain from gruq_run / gruq_infer, from GCC's
                           -fstack-usage figures and call graph (-fcallgraph-info=su)
    instructions_per_step  from running the check under QEMU with -icount shift=0: its
                           virtual clock advances 1 ns per instruction, and SysTick (clocked by
                           the board's 25 MHz system clock) counts it; a loop of known length
                           calibrates ticks to instructions. An instruction count, not the
                           cycle count of real silicon (no wait states, no pipeline stalls).
    macs_per_step          multiply-accumulates of the six matrix-vector products
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from gruq.errors import GruqError
from gruq.genome import ModelShape

NAME = "cortex-m4"
KEY = "cortex_m4"  # the record's key in memory.json
BUILD = "make -C DIR run"  # DIR: the export folder
MAKEFILE, LINKER, STARTUP, TIMER_H = "Makefile", "mps2_an386.ld", "startup_cortex_m4.S", "cortex_m4_timer.h"
FILES = (MAKEFILE, LINKER, STARTUP, TIMER_H)
BUILD_DIR = "build-cortex-m4"
TOOLS = ("make", "arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm")
DEBIAN_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm make"
MEASURE_SEQUENCES = 10  # sequences timed for memory.json (the instruction count barely depends on data)
ENTRY_POINTS = ("gruq_run", "gruq_infer")  # the API calls a firmware makes per sequence

MAKEFILE_TEXT = r"""# Makefile: the gruq check program on a Cortex-M4 (qemu-system-arm's mps2-an386 board).
#
#   make run [SEQUENCES=K]   build, then run under QEMU with semihosting: the last line is
#                            "N/N identical" (the first K sequences with SEQUENCES=K) and the
#                            exit status is 0 only when all are identical
#   make size                sections of the kernel + model object (no test vectors)
#   WEIGHTS=unpacked         (with any target) weights stored one byte each instead of
#                            bit-packed: faster, larger (build-cortex-m4-unpacked/)
#   make                     build only: build-cortex-m4/check.elf
#   make clean
#
# Needs (Debian): gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm.
# -mfloat-abi=soft: the kernel is integers only and needs no FPU.
# QEMU runs with -icount shift=0 (one instruction = 1 ns of virtual time), so the
# SysTick counts printed by the check are instruction counts (not silicon cycles).

CC = arm-none-eabi-gcc
SIZE = arm-none-eabi-size
QEMU = qemu-system-arm
OPT = -O2
ARCH = -mcpu=cortex-m4 -mthumb -mfloat-abi=soft
WEIGHTS = packed
UNPACKED = $(filter unpacked,$(WEIGHTS))
CFLAGS = $(ARCH) -std=c99 -Wall -Wextra -Werror $(OPT) -fstack-usage -fcallgraph-info=su \
	-DGRUQ_TIMER_HEADER='"cortex_m4_timer.h"' $(if $(UNPACKED),-DGRUQ_WEIGHTS_UNPACKED=1)
LDFLAGS = $(ARCH) --specs=rdimon.specs -T mps2_an386.ld -Wl,--gc-sections
QEMUFLAGS = -M mps2-an386 -nographic -monitor none -serial none -icount shift=0
SEQUENCES =
B = build-cortex-m4$(if $(UNPACKED),-unpacked)
OBJS = $(B)/startup_cortex_m4.o $(B)/gruq_kernel.o $(B)/check.o $(B)/test_vectors.o
comma := ,

all: $(B)/check.elf

$(B):
	mkdir -p $(B)

$(B)/%.o: %.c $(wildcard *.h) | $(B)
	$(CC) $(CFLAGS) -c $< -o $@

$(B)/startup_cortex_m4.o: startup_cortex_m4.S | $(B)
	$(CC) $(ARCH) -c $< -o $@

$(B)/check.elf: $(OBJS) mps2_an386.ld
	$(CC) $(LDFLAGS) $(OBJS) -o $@

run: $(B)/check.elf
	$(QEMU) $(QEMUFLAGS) -semihosting-config enable=on,target=native,arg=check$(if $(SEQUENCES),$(comma)arg=$(SEQUENCES)) \
		-kernel $(B)/check.elf

size: $(B)/gruq_kernel.o
	$(SIZE) -A $(B)/gruq_kernel.o

clean:
	rm -rf build-cortex-m4 build-cortex-m4-unpacked

.PHONY: all run size clean
"""

LINKER_TEXT = """\
/* mps2_an386.ld: memory map of qemu-system-arm's mps2-an386 board (Cortex-M4).
 * 4 MB of code memory at 0 (ZBT SSRAM1, standing in for flash) and 4 MB of
 * data memory at 0x20000000. Code and constants stay in FLASH; .data is loaded
 * in FLASH and copied to RAM by Reset_Handler; the stack grows down from the
 * top of RAM. For a real part, change the two MEMORY lines. */
MEMORY
{
    FLASH (rx)  : ORIGIN = 0x00000000, LENGTH = 4M
    RAM   (rwx) : ORIGIN = 0x20000000, LENGTH = 4M
}
ENTRY(Reset_Handler)
__stack_top = ORIGIN(RAM) + LENGTH(RAM);
__stack = __stack_top;

SECTIONS
{
    .isr_vector : { KEEP(*(.isr_vector)) } > FLASH
    .text :
    {
        *(.text .text.*)
        KEEP(*(.init))
        KEEP(*(.fini))
        *(.rodata .rodata.*)
        . = ALIGN(4);
    } > FLASH
    .ARM.extab : { *(.ARM.extab* .gnu.linkonce.armextab.*) } > FLASH
    .ARM.exidx : { __exidx_start = .; *(.ARM.exidx* .gnu.linkonce.armexidx.*) __exidx_end = .; } > FLASH
    .preinit_array : { PROVIDE_HIDDEN(__preinit_array_start = .); KEEP(*(.preinit_array*)) PROVIDE_HIDDEN(__preinit_array_end = .); } > FLASH
    .init_array : { PROVIDE_HIDDEN(__init_array_start = .); KEEP(*(SORT(.init_array.*))) KEEP(*(.init_array*)) PROVIDE_HIDDEN(__init_array_end = .); } > FLASH
    .fini_array : { PROVIDE_HIDDEN(__fini_array_start = .); KEEP(*(SORT(.fini_array.*))) KEEP(*(.fini_array*)) PROVIDE_HIDDEN(__fini_array_end = .); } > FLASH
    . = ALIGN(4);
    __data_load = .;
    .data : AT(__data_load)
    {
        __data_start = .;
        *(.data .data.*)
        . = ALIGN(4);
        __data_end = .;
    } > RAM
    .bss (NOLOAD) :
    {
        __bss_start__ = .;
        *(.bss .bss.* COMMON)
        . = ALIGN(4);
        __bss_end__ = .;
    } > RAM
    end = .;
    __end__ = .;
    PROVIDE(_end = .);
}
"""

STARTUP_TEXT = """\
/* startup_cortex_m4.S: vector table and reset handler for a Cortex-M4.
 * Reset_Handler copies .data from flash to RAM, then enters newlib's crt0
 * (rdimon-crt0: zeroes .bss, opens semihosting, calls main, exits with its
 * status). Any fault ends the run through semihosting with a failure status. */
    .syntax unified
    .cpu cortex-m4
    .thumb

    .section .isr_vector, "a", %progbits
    .align 2
    .global gruq_vectors
gruq_vectors:
    .word __stack_top          /* initial stack pointer: top of RAM */
    .word Reset_Handler        /* reset */
    .rept 14                   /* NMI, HardFault, MemManage, BusFault, UsageFault, ..., SysTick */
    .word Fault_Handler
    .endr

    .text
    .thumb_func
    .global Reset_Handler
Reset_Handler:
    ldr r0, =__data_load
    ldr r1, =__data_start
    ldr r2, =__data_end
1:  cmp r1, r2
    bhs 2f
    ldr r3, [r0], #4
    str r3, [r1], #4
    b 1b
2:  b _mainCRTStartup

    .thumb_func
    .weak Fault_Handler
Fault_Handler:
    movs r0, #0x18             /* semihosting SYS_EXIT */
    ldr r1, =0x20023           /* ADP_Stopped_RunTimeErrorUnknown: a failure */
    bkpt 0xab
    b Fault_Handler
"""

TIMER_TEXT = """\
/* cortex_m4_timer.h: the SysTick timer as an instruction counter.
 * Under `qemu-system-arm -icount shift=0` every instruction advances the
 * virtual clock by 1 ns and SysTick counts the 25 MHz system clock, so one
 * tick is 40 instructions; gruq_timer_calibrate measures that ratio with a
 * loop of known length instead of assuming it. On silicon the same code
 * counts core clock cycles (wait states, stalls and all). */
#ifndef GRUQ_CORTEX_M4_TIMER_H
#define GRUQ_CORTEX_M4_TIMER_H

#include <stdint.h>

#define GRUQ_SYST_CSR (*(volatile uint32_t *)0xE000E010u) /* control and status */
#define GRUQ_SYST_RVR (*(volatile uint32_t *)0xE000E014u) /* reload value */
#define GRUQ_SYST_CVR (*(volatile uint32_t *)0xE000E018u) /* current value, counts down */
#define GRUQ_SYST_MASK 0x00FFFFFFu                       /* a 24-bit counter */

/* Start SysTick from the processor clock, free-running, no interrupt. */
static void gruq_timer_init(void)
{
    GRUQ_SYST_RVR = GRUQ_SYST_MASK;
    GRUQ_SYST_CVR = 0u;
    GRUQ_SYST_CSR = 5u; /* ENABLE | CLKSOURCE (processor clock); TICKINT off */
}

static uint32_t gruq_timer(void)
{
    return GRUQ_SYST_CVR;
}

/* Ticks from t0 to t1 (the counter counts down; one wrap at most: < 2^24 ticks). */
static uint32_t gruq_ticks(uint32_t t0, uint32_t t1)
{
    return (t0 - t1) & GRUQ_SYST_MASK;
}

/* Ticks of a loop of exactly 2 * n instructions (subs, bne; n >= 1). */
static uint32_t gruq_timer_calibrate(unsigned long n)
{
    uint32_t left = (uint32_t)n;
    uint32_t t0 = gruq_timer();
    __asm__ volatile("1: subs %0, %0, #1\\n\\tbne 1b" : "+r"(left) : : "cc");
    return gruq_ticks(t0, gruq_timer());
}

#endif /* GRUQ_CORTEX_M4_TIMER_H */
"""

TEXTS = {MAKEFILE: MAKEFILE_TEXT, LINKER: LINKER_TEXT, STARTUP: STARTUP_TEXT, TIMER_H: TIMER_TEXT}


def missing_tools() -> list[str]:
    """The tools of TOOLS not on PATH."""
    return [t for t in TOOLS if shutil.which(t) is None]


def available() -> bool:
    return not missing_tools()


def require() -> None:
    """GruqError naming what to install when a tool is missing."""
    missing = missing_tools()
    if missing:
        raise GruqError(
            f"the cortex-m4 target needs {', '.join(missing)} on PATH (Debian: apt-get install {DEBIAN_PACKAGES})"
        )


def write(out_dir: str | Path) -> list[str]:
    """Write the target's files into out_dir (beside the host files); their names.
    Builds of an earlier export in the same folder are removed, so nothing stale is measured."""
    out = Path(out_dir)
    for variant in (False, True):
        shutil.rmtree(out / build_dir(variant), ignore_errors=True)
    for name, text in TEXTS.items():
        (out / name).write_text(text)
    return list(FILES)


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run cmd in its own process group, so that a timeout also ends QEMU under make."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise GruqError(f"{' '.join(cmd)} did not finish within {timeout:g} s") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def build_dir(unpacked: bool = False) -> str:
    return BUILD_DIR + ("-unpacked" if unpacked else "")


def build(out_dir: str | Path, timeout: float = 300, unpacked: bool = False) -> subprocess.CompletedProcess:
    """`make -C out_dir [WEIGHTS=unpacked]` (build only)."""
    require()
    return _run(["make", "-s", "-C", str(out_dir)] + (["WEIGHTS=unpacked"] if unpacked else []), timeout)


def run(
    out_dir: str | Path, sequences: int | None = None, timeout: float = 600, unpacked: bool = False
) -> dict[str, Any]:
    """`make -C out_dir run [SEQUENCES=K] [WEIGHTS=unpacked]`: {"ok", "compiled", "returncode",
    "output", "last_line", "timing"} (timing parsed from the check's output, or None)."""
    comp = build(out_dir, timeout, unpacked)
    if comp.returncode != 0:
        return {"ok": False, "compiled": False, "output": comp.stdout + comp.stderr}
    cmd = ["make", "-s", "-C", str(out_dir), "run"] + ([f"SEQUENCES={int(sequences)}"] if sequences else [])
    cmd += ["WEIGHTS=unpacked"] if unpacked else []
    proc = _run(cmd, timeout)
    lines = proc.stdout.strip().splitlines()
    return {
        "ok": proc.returncode == 0,
        "compiled": True,
        "returncode": proc.returncode,
        "output": proc.stdout + proc.stderr,
        "last_line": lines[-1] if lines else "",
        "timing": parse_timing(proc.stdout),
    }


TIMER_LINE = re.compile(r"^timer: (\d+) ticks for (\d+) instructions$", re.M)
TICKS_LINE = re.compile(r"^ticks: steps (\d+) over (\d+) steps, head (\d+) over (\d+) sequences$", re.M)


def parse_timing(output: str) -> dict[str, float] | None:
    """Instructions per step and per head from the check's timer lines (None if absent)."""
    cal, ticks = TIMER_LINE.search(output), TICKS_LINE.search(output)
    if not cal or not ticks or int(cal.group(1)) == 0 or int(ticks.group(2)) == 0:
        return None
    per_tick = int(cal.group(2)) / int(cal.group(1))
    steps, n_steps, head, n_seq = (int(g) for g in ticks.groups())
    return {
        "instructions_per_tick": per_tick,
        "instructions_per_step": steps * per_tick / n_steps,
        "instructions_head": head * per_tick / max(n_seq, 1),
        "sequences": n_seq,
    }


def sizes(out_dir: str | Path, unpacked: bool = False) -> dict[str, int]:
    """Sections of the kernel + model object (arm-none-eabi-size -A build/gruq_kernel.o)."""
    obj = Path(out_dir) / build_dir(unpacked) / "gruq_kernel.o"
    proc = _run(["arm-none-eabi-size", "-A", str(obj)], 60)
    if proc.returncode != 0:
        raise GruqError(f"arm-none-eabi-size failed on {obj}: {proc.stderr.strip()}")
    sec: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            kind = parts[0].split(".")[1]
            sec[kind] = sec.get(kind, 0) + int(parts[1])
    text, rodata, data, bss = (sec.get(k, 0) for k in ("text", "rodata", "data", "bss"))
    return {"text": text, "rodata": rodata, "data": data, "bss": bss}


NODE = re.compile(r'node: \{ title: "([^"]+)" label: "[^"]*\\n(\d+) bytes \((\w+)\)')
EDGE = re.compile(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"')


def stack_usage(ci_text: str, entries: tuple[str, ...] = ENTRY_POINTS) -> dict[str, Any]:
    """The deepest stack of any entry point, from GCC's call graph with stack sizes
    (-fcallgraph-info=su). Functions outside the kernel (memset, memcpy of the C
    library) have no figure and count 0; they are listed."""
    frames = {m.group(1): int(m.group(2)) for m in NODE.finditer(ci_text)}
    dynamic = sorted(m.group(1) for m in NODE.finditer(ci_text) if m.group(3) != "static")
    calls: dict[str, set[str]] = {}
    for m in EDGE.finditer(ci_text):
        calls.setdefault(m.group(1), set()).add(m.group(2))

    def depth(fn: str, path: tuple[str, ...]) -> int:
        if fn in path:
            raise GruqError(f"the kernel is recursive ({' -> '.join(path + (fn,))}): no stack bound")
        return frames.get(fn, 0) + max((depth(c, path + (fn,)) for c in calls.get(fn, ())), default=0)

    per_entry = {e: depth(e, ()) for e in entries if e in frames}
    if not per_entry:
        raise GruqError("no kernel entry point in the call graph")
    external = sorted({c for cs in calls.values() for c in cs} - set(frames))
    return {"stack_bytes": max(per_entry.values()), "per_entry": per_entry, "uncounted": external, "dynamic": dynamic}


def macs_per_step(shape: ModelShape) -> int:
    """Multiply-accumulates of the six matrix-vector products of one step, over every
    layer (layer k > 0 reads the H codes of the layer below)."""
    return sum(3 * shape.hidden * shape.inputs(k) + 3 * shape.hidden * shape.hidden for k in range(shape.layers))


def measure_variant(out_dir: str | Path, shape: ModelShape, sequences: int, unpacked: bool) -> dict[str, Any]:
    """Build and run the first `sequences` test vectors under QEMU; one storage variant's costs."""
    out = Path(out_dir)
    result = run(out, sequences, unpacked=unpacked)
    if not result["compiled"]:
        raise GruqError("the cortex-m4 build failed: " + result["output"].strip()[-500:])
    if not result["ok"] or result["timing"] is None:
        raise GruqError(f"the cortex-m4 check failed under QEMU: {result['last_line'] or result['output'][-300:]}")
    sec = sizes(out, unpacked)
    stack = stack_usage((out / build_dir(unpacked) / "gruq_kernel.ci").read_text())
    timing = result["timing"]
    macs = macs_per_step(shape)
    return {
        "flash_bytes": sec["text"] + sec["rodata"] + sec["data"],
        "ram_bytes": sec["data"] + sec["bss"],
        "stack_bytes": stack["stack_bytes"],
        "instructions_per_step": round(timing["instructions_per_step"], 1),
        "macs_per_step": macs,
        "instructions_per_mac": round(timing["instructions_per_step"] / macs, 2),
        "instructions_head": round(timing["instructions_head"], 1),
        "sections": sec,
        "stack": stack,
        "sequences_timed": timing["sequences"],
        "check": result["last_line"],
    }


def measure(out_dir: str | Path, shape: ModelShape, genome, sequences: int = MEASURE_SEQUENCES) -> dict[str, Any]:
    """The target's costs with bit-packed weights (the default build) and, when some
    weights are narrower than 8 bits, under "unpacked" the same with one byte per
    weight (WEIGHTS=unpacked): the size-for-speed trade-off."""
    from gruq.ops import LINEAR, OPS

    record = measure_variant(out_dir, shape, sequences, unpacked=False)
    if any(genome[k * len(OPS) + op] < 8 for k in range(len(genome) // len(OPS)) for op in LINEAR):
        u = measure_variant(out_dir, shape, sequences, unpacked=True)
        keys = ("flash_bytes", "ram_bytes", "stack_bytes", "instructions_per_step", "instructions_per_mac")
        record["unpacked"] = {k: u[k] for k in keys}
    record["how"] = (
        "arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=soft -O2; instructions counted by "
        "qemu-system-arm -M mps2-an386 -icount shift=0 (SysTick), not silicon cycles"
    )
    return record


def run_check(out_dir: str | Path, timeout: float = 900) -> dict[str, Any]:
    """The whole check (every test vector) on the Cortex-M4 under QEMU."""
    return run(out_dir, None, timeout)
