/* The mcunet port for real boards with the Arduino framework: text over the USB/serial port
 * at 115200 baud, cycles from the DWT cycle counter (Cortex-M3/M4/M7). The host (`mcunet
 * run`) opens the port and sends 'r'; the board then runs the harness and answers. */
#include <Arduino.h>

#include "harness_port.h"

#define DEMCR (*(volatile uint32_t *)0xE000EDFCu)
#define DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)
#define DWT_LAR (*(volatile uint32_t *)0xE0001FB0u)

extern "C" void port_init(void)
{
#if defined(__ARM_ARCH_7M__) || defined(__ARM_ARCH_7EM__)
    DEMCR |= 1u << 24; /* TRCENA */
    DWT_LAR = 0xC5ACCE55u; /* unlock (Cortex-M7) */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;
#endif
}

extern "C" void port_write(const char *text)
{
    Serial.print(text);
}

extern "C" void port_write_bytes(const void *data, uint32_t n)
{
    Serial.write((const uint8_t *)data, n);
}

extern "C" int port_read_byte(void)
{
    while (Serial.available() <= 0) {
    }
    return Serial.read();
}

extern "C" uint32_t port_cycles(void)
{
#if defined(__ARM_ARCH_7M__) || defined(__ARM_ARCH_7EM__)
    return DWT_CYCCNT;
#else
    return 0; /* Cortex-M0+: no DWT cycle counter */
#endif
}

extern "C" void port_done(int status)
{
    Serial.print(status == 0 ? "mcunet-done 0\n" : "mcunet-done 1\n");
    Serial.flush();
}

void setup()
{
    Serial.begin(115200);
}

void loop()
{
    if (Serial.available() > 0 && Serial.read() == 'r') {
        port_done(harness_main());
    }
}
