/* Startup and host I/O for the emulated Arm MPS2 boards (QEMU): vector table, reset handler
 * (copy .data, zero .bss, enable the FPU), and the mcunet port functions over Arm
 * semihosting (the debugger's channel, which QEMU serves with -semihosting). */
#include <stdint.h>
#include <string.h>


extern uint32_t __data_start__, __data_end__, __data_load__, __bss_start__, __bss_end__;
extern uint32_t __stack_top__;
int main(void);
void mcunet_reset_handler(void);
/* The mcunet port API (harness_port.h of the firmware harness), implemented here. */
void port_init(void);
void port_write(const char *text);
uint32_t port_cycles(void);
void port_done(int status);
void port_write_bytes(const void *data, uint32_t n);
int port_read_byte(void);
/* Host files over semihosting (the on-device training harness reads its samples and writes
 * its results with these; QEMU opens the names relative to its working directory). */
int32_t port_file_open(const char *name, uint32_t mode);
uint32_t port_file_read(int32_t handle, void *buf, uint32_t bytes);
uint32_t port_file_write(int32_t handle, const void *buf, uint32_t bytes);
int32_t port_file_seek(int32_t handle, uint32_t position);
void port_file_close(int32_t handle);

#define SYS_OPEN 0x01
#define SYS_CLOSE 0x02
#define SYS_WRITE0 0x04
#define SYS_WRITE 0x05
#define SYS_READ 0x06
#define SYS_SEEK 0x0A
#define SYS_EXIT 0x18
#define ADP_STOPPED_APPLICATION_EXIT 0x20026
#define ADP_STOPPED_RUN_TIME_ERROR 0x20023

static uint32_t semihost(uint32_t op, const void *arg)
{
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void port_init(void)
{
}

void port_write(const char *text)
{
    semihost(SYS_WRITE0, text);
}

/* mode: the semihosting open mode (1 "rb", 5 "wb"). Returns the handle, or -1. */
int32_t port_file_open(const char *name, uint32_t mode)
{
    const uint32_t args[3] = {(uint32_t)(uintptr_t)name, mode, (uint32_t)strlen(name)};
    return (int32_t)semihost(SYS_OPEN, args);
}

/* Returns the bytes NOT read (0: all of them), as semihosting does. */
uint32_t port_file_read(int32_t handle, void *buf, uint32_t bytes)
{
    const uint32_t args[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)buf, bytes};
    return semihost(SYS_READ, args);
}

/* Returns the bytes NOT written (0: all of them). */
uint32_t port_file_write(int32_t handle, const void *buf, uint32_t bytes)
{
    const uint32_t args[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)buf, bytes};
    return semihost(SYS_WRITE, args);
}

/* To an absolute position; 0 on success. */
int32_t port_file_seek(int32_t handle, uint32_t position)
{
    const uint32_t args[2] = {(uint32_t)handle, position};
    return (int32_t)semihost(SYS_SEEK, args);
}

void port_file_close(int32_t handle)
{
    const uint32_t args[1] = {(uint32_t)handle};
    semihost(SYS_CLOSE, args);
}

/* Raw bytes over the board's UART0 (CMSDK APB UART; QEMU connects it to -serial): the
 * on-device training harness's frames (mcunet train-on-device --port). */
#ifndef MCUNET_UART_BASE
#if defined(__ARM_ARCH_8M_MAIN__)
#define MCUNET_UART_BASE 0x40200000u /* AN505 */
#else
#define MCUNET_UART_BASE 0x40004000u /* AN385, AN386, AN500 */
#endif
#endif
#define UART_DATA (*(volatile uint32_t *)(MCUNET_UART_BASE + 0x0u))
#define UART_STATE (*(volatile uint32_t *)(MCUNET_UART_BASE + 0x4u))
#define UART_CTRL (*(volatile uint32_t *)(MCUNET_UART_BASE + 0x8u))
#define UART_BAUDDIV (*(volatile uint32_t *)(MCUNET_UART_BASE + 0x10u))

static void uart_enable(void)
{
    if ((UART_CTRL & 3u) != 3u) {
        UART_BAUDDIV = 16u;
        UART_CTRL = 3u; /* TX and RX enabled, no interrupts */
    }
}

void port_write_bytes(const void *data, uint32_t n)
{
    const uint8_t *p = (const uint8_t *)data;
    uart_enable();
    for (uint32_t i = 0; i < n; ++i) {
        while (UART_STATE & 1u) { /* TX full */
        }
        UART_DATA = p[i];
    }
}

int port_read_byte(void)
{
    uart_enable();
    while (!(UART_STATE & 2u)) { /* RX empty */
    }
    return (int)(UART_DATA & 0xFFu);
}

uint32_t port_cycles(void)
{
    return 0; /* QEMU does not model cycles: `mcunet run` counts instructions instead */
}

void port_done(int status)
{
    /* QEMU exits with 0 for an application exit and 1 for a run-time error. */
    semihost(SYS_EXIT, (const void *)(uintptr_t)(status == 0 ? ADP_STOPPED_APPLICATION_EXIT
                                                             : ADP_STOPPED_RUN_TIME_ERROR));
    for (;;) {
    }
}

static void fault_handler(void)
{
    port_write("mcunet-fault\n");
    port_done(1);
}

void mcunet_reset_handler(void)
{
#if defined(__ARM_FP)
    /* CPACR: full access to CP10 and CP11 before any floating-point instruction runs. */
    *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    memcpy(&__data_start__, &__data_load__,
           (size_t)((char *)&__data_end__ - (char *)&__data_start__));
    memset(&__bss_start__, 0, (size_t)((char *)&__bss_end__ - (char *)&__bss_start__));
    port_done(main());
}

__attribute__((section(".vectors"), used))
static void (*const vectors[16])(void) = {
    (void (*)(void))(&__stack_top__),
    mcunet_reset_handler,
    fault_handler, /* NMI */
    fault_handler, /* HardFault */
    fault_handler, /* MemManage */
    fault_handler, /* BusFault */
    fault_handler, /* UsageFault */
#if defined(__ARM_ARCH_8M_MAIN__)
    fault_handler, /* SecureFault (Armv8-M with the Security Extension: the M33 boots Secure) */
#else
    0,
#endif
    0, 0, 0,
    fault_handler, /* SVCall */
    fault_handler, /* DebugMon */
    0,
    fault_handler, /* PendSV */
    fault_handler, /* SysTick */
};
