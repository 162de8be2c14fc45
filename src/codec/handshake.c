/* handshake.c — Sec-WebSocket-Key validation and Sec-WebSocket-Accept; see handshake.h. */
#include "codec/handshake.h"

#include <openssl/evp.h>
#include <string.h>

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static bool is_b64(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

bool rc_ws_key_valid(const char *key, size_t len)
{
    if (len != 24 || key[22] != '=' || key[23] != '=') return false;
    for (size_t i = 0; i < 22; i++)
        if (!is_b64((unsigned char)key[i])) return false;
    return true;
}

int rc_ws_accept(const char *key, size_t len, char out[RC_WS_ACCEPT_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return -1;
    int ok = EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) && EVP_DigestUpdate(ctx, key, len) &&
             EVP_DigestUpdate(ctx, ws_guid, sizeof(ws_guid) - 1) &&
             EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    if (!ok || mdlen != 20) return -1;
    EVP_EncodeBlock((unsigned char *)out, md, 20);
    out[RC_WS_ACCEPT_LEN] = '\0';
    return 0;
}
