/* tcpwire.h — provisional; replaced by the codec branch's module. */
#ifndef RC_TCPWIRE_H
#define RC_TCPWIRE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
enum rc_tcpw_mode { RC_TCPW_UNDECIDED, RC_TCPW_LINE, RC_TCPW_FRAMED };
enum rc_tcpw_kind { RC_TCPW_NONE, RC_TCPW_PREAMBLE, RC_TCPW_TOO_LONG, RC_TCPW_TEXT,
                    RC_TCPW_BINARY, RC_TCPW_CLOSE, RC_TCPW_PING, RC_TCPW_PONG };
typedef struct rc_tcpw { uint8_t mode; bool skipping; size_t scanned; size_t max; } rc_tcpw;
typedef struct rc_tcpw_msg { uint8_t kind; char *p; size_t len; } rc_tcpw_msg;
void rc_tcpw_init(rc_tcpw *d, size_t max);
long rc_tcpw_next(rc_tcpw *d, char *p, size_t n, rc_tcpw_msg *out);
#define RC_TCPW_PREAMBLE_LEN 4
extern const uint8_t rc_tcpw_preamble[RC_TCPW_PREAMBLE_LEN];
#define RC_TCPW_HEADER_LEN 5
void rc_tcpw_header(uint8_t out[RC_TCPW_HEADER_LEN], uint8_t opcode, uint32_t len);
#endif
