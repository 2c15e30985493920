/* What the firmware harness needs from a board: a text channel to the host, a cycle counter
 * and a way to end the run. Emulated boards implement it over Arm semihosting (in mcunet's
 * PlatformIO platform), real boards over the serial port (port_arduino.cpp). */
#ifndef HARNESS_PORT_H
#define HARNESS_PORT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void port_init(void);
/* Write a NUL-terminated line (or part of one) to the host. */
void port_write(const char *text);
/* Raw bytes over the serial port (on-device training's frames, mcunet train-on-device
 * --port): write n bytes; read one byte, waiting for it. Emulated boards: the MPS2's UART0. */
void port_write_bytes(const void *data, uint32_t n);
int port_read_byte(void);
/* The core's cycle counter (DWT CYCCNT), or 0 where there is none. */
uint32_t port_cycles(void);
/* End of the run: status 0 for success. Returns only on real boards. */
void port_done(int status);

int harness_main(void);

#ifdef __cplusplus
}
#endif

#endif /* HARNESS_PORT_H */
