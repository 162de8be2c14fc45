/* base64.h — provisional; replaced by the codec branch's module. */
#ifndef RC_BASE64_H
#define RC_BASE64_H
#include <stddef.h>
#define rc_base64_len(n) (((n) + 2) / 3 * 4)
size_t rc_base64_encode(const void *p, size_t n, char *out);
#endif
