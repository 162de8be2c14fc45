/* Tests src/codec/handshake.c: Sec-WebSocket-Key validation and Sec-WebSocket-Accept. */
#include "codec/handshake.h"

#include "unit.h"

TEST(accept_rfc_example)
{
    /* RFC 6455 §1.3 worked example. */
    char out[RC_WS_ACCEPT_LEN + 1];
    CHECK(rc_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", 24, out) == 0);
    CHECK_MEM(out, strlen(out), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 28);
}

TEST(key_validation)
{
    CHECK(rc_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ==", 24));
    CHECK(rc_ws_key_valid("AAAAAAAAAAAAAAAAAAAAAA==", 24));
    CHECK(!rc_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=", 23));    /* short */
    CHECK(!rc_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ===", 25));  /* long */
    CHECK(!rc_ws_key_valid("dGhlIHNhbXBsZSBub25jZQAA", 24));   /* 18 bytes, no padding */
    CHECK(!rc_ws_key_valid("dGhlIHNhbXBsZSBub25j*Q==", 24));   /* not base64 */
    CHECK(!rc_ws_key_valid("", 0));
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(accept_rfc_example);
    RUN(key_validation);
    UNIT_MAIN_END("test_handshake");
}
