/* Tests src/transport/sock.c: listening sockets and SO_REUSEPORT (--reuseport) — a port is
 * shared only when every holder asks for it, and a port picked by the kernel is reported. */
#include "transport/sock.h"

#include <errno.h>
#include <unistd.h>

#include "unit.h"

TEST(port_zero_reports_the_port)
{
    uint16_t port = 0;
    int fd = rc_sock_listen_flags("127.0.0.1", 0, 16, RC_SOCK_REUSEPORT, &port);
    CHECK(fd >= 0);
    CHECK(port != 0);
    close(fd);
}

TEST(reuseport_shares_a_port)
{
    uint16_t port = 0, again = 0, third = 0;
    int a = rc_sock_listen_flags("127.0.0.1", 0, 16, RC_SOCK_REUSEPORT, &port);
    CHECK(a >= 0);
    int b = rc_sock_listen_flags("127.0.0.1", port, 16, RC_SOCK_REUSEPORT, &again);
    int c = rc_sock_listen_flags("127.0.0.1", port, 16, RC_SOCK_REUSEPORT, &third);
    CHECK(b >= 0 && c >= 0);
    CHECK_EQ_INT(again, port);
    CHECK_EQ_INT(third, port);
    /* a socket without the flag is refused while they hold it */
    int d = rc_sock_listen("127.0.0.1", port, 16, NULL);
    CHECK_EQ_INT(d, -EADDRINUSE);
    close(a);
    close(b);
    close(c);
}

TEST(reuseport_cannot_join_a_plain_holder)
{
    uint16_t port = 0;
    int a = rc_sock_listen("127.0.0.1", 0, 16, &port);
    CHECK(a >= 0);
    CHECK_EQ_INT(rc_sock_listen_flags("127.0.0.1", port, 16, RC_SOCK_REUSEPORT, NULL),
                 -EADDRINUSE);
    CHECK_EQ_INT(rc_sock_listen("127.0.0.1", port, 16, NULL), -EADDRINUSE);
    close(a);
    /* once the holder is gone the port is free again, with or without the flag */
    int b = rc_sock_listen_flags("127.0.0.1", port, 16, RC_SOCK_REUSEPORT, NULL);
    CHECK(b >= 0);
    close(b);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(port_zero_reports_the_port);
    RUN(reuseport_shares_a_port);
    RUN(reuseport_cannot_join_a_plain_holder);
    UNIT_MAIN_END("test_sock");
}
