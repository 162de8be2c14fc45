/* tcpwire.c — provisional; replaced by the codec branch's module. */
#include "codec/tcpwire.h"
void rc_tcpw_header(uint8_t out[RC_TCPW_HEADER_LEN], uint8_t opcode, uint32_t len)
{
    for (int i = 0; i < 4; i++) out[i] = (uint8_t)(len >> (8 * i));
    out[4] = opcode;
}
