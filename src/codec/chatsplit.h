/* chatsplit.h — provisional; replaced by the codec branch's module. */
#ifndef RC_CHATSPLIT_H
#define RC_CHATSPLIT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
enum { RC_CHATSPLIT_OBJECT, RC_CHATSPLIT_GARBAGE, RC_CHATSPLIT_SPACE };
typedef struct rc_chatsplit { size_t scanned; uint32_t depth; bool in_string, escape; size_t max; } rc_chatsplit;
void rc_chatsplit_init(rc_chatsplit *s, size_t max);
long rc_chatsplit_next(rc_chatsplit *s, const char *p, size_t n, int *kind, size_t *len);
#endif
