/* fuzz_authtoken.c — libFuzzer target for rc_auth_upgrade_token and rc_auth_split_kid
 * (src/app/auth.c): the token of a WebSocket upgrade, read from a client's request head.
 *
 * The input is a request head. Checked on every input that parses as one:
 *   - the answer is -1, 0 or 1; with 1 the token lies inside the head (the header) or inside
 *     the caller's buffer, within its capacity (the query, decoded);
 *   - without an Authorization header, the answer and the decoded token agree with a
 *     straightforward reimplementation of "the first token= of the query, percent-decoded";
 *   - rc_auth_split_kid on the input as a string returns a suffix of it, and a kid exactly
 *     when the part before the first '=' is 1..128 bytes of [A-Za-z0-9_.-].
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "app/auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int hexv(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The reference: returns -1/0/1 and the decoded token in out (cap bytes). */
static int ref_query(const char *q, size_t n, char *out, size_t cap, size_t *outn)
{
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && q[j] != '&') j++;
        if (j - i >= 6 && memcmp(q + i, "token=", 6) == 0) {
            size_t k = 0;
            for (size_t p = i + 6; p < j; p++) {
                char c = q[p];
                if (c == '%') {
                    if (p + 2 >= j || hexv(q[p + 1]) < 0 || hexv(q[p + 2]) < 0) return -1;
                    c = (char)(hexv(q[p + 1]) * 16 + hexv(q[p + 2]));
                    p += 2;
                } else if (c == '+') {
                    c = ' ';
                }
                if (k == cap) return -1;
                out[k++] = c;
            }
            *outn = k;
            return 1;
        }
        i = j + 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *head = (const char *)data;
    static rc_http_request req;
    size_t scanned = 0;
    if (rc_http_parse_request(head, size, &scanned, &req) > 0) {
        rc_http_ctx x = {.req = &req};
        const char *q = memchr(req.target, '?', req.target_len);
        x.query = q ? q + 1 : "";
        x.query_len = q ? req.target_len - (size_t)(q + 1 - req.target) : 0;
        char buf[64], ref[64];
        const char *tok = NULL;
        size_t n = 0, rn = 0;
        int r = rc_auth_upgrade_token(&x, buf, sizeof(buf), &tok, &n);
        if (r < -1 || r > 1) abort();
        if (r == 1) {
            bool in_head = tok >= head && tok + n <= head + size;
            bool in_buf = tok == buf && n <= sizeof(buf);
            if (!in_head && !in_buf) abort();
        }
        if (!rc_http_find_header(&req, "Authorization")) {
            int rr = ref_query(x.query, x.query_len, ref, sizeof(ref), &rn);
            if (rr != r) abort();
            if (r == 1 && (rn != n || memcmp(ref, tok, n) != 0)) abort();
        }
    }
    /* the kid split, on the input as a string */
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    char kb[RC_JWT_MAX_KID + 1];
    const char *kid;
    const char *file = rc_auth_split_kid(s, kb, &kid);
    size_t sl = strlen(s);
    if (file < s || file > s + sl) abort();
    const char *eq = strchr(s, '=');
    bool want = eq && eq > s && (size_t)(eq - s) <= RC_JWT_MAX_KID &&
                strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") ==
                    (size_t)(eq - s);
    if (want != (kid != NULL)) abort();
    if (kid && (file != eq + 1 || strlen(kid) != (size_t)(eq - s) ||
                memcmp(kid, s, (size_t)(eq - s)) != 0))
        abort();
    if (!kid && file != s) abort();
    free(s);
    return 0;
}
