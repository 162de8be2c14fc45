/* Tests src/transport/ipcount.c: keys (IPv4, IPv4-mapped, IPv6 /64), counting up and down
 * against a reference, entries freed at zero, formatting. */
#include "transport/ipcount.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <netinet/in.h>
#include <string.h>

#include "unit.h"

static rc_ipkey v4(const char *a)
{
    struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons(1234)};
    inet_pton(AF_INET, a, &s.sin_addr);
    return rc_ipkey_of((struct sockaddr *)&s);
}

static rc_ipkey v6(const char *a)
{
    struct sockaddr_in6 s = {.sin6_family = AF_INET6, .sin6_port = htons(80)};
    inet_pton(AF_INET6, a, &s.sin6_addr);
    return rc_ipkey_of((struct sockaddr *)&s);
}

static int same(rc_ipkey a, rc_ipkey b)
{
    return memcmp(a.b, b.b, 16) == 0;
}

TEST(keys)
{
    CHECK(same(v4("192.0.2.1"), v4("192.0.2.1")));
    CHECK(!same(v4("192.0.2.1"), v4("192.0.2.2")));
    /* the same IPv4 client seen through a dual-stack socket */
    CHECK(same(v4("192.0.2.1"), v6("::ffff:192.0.2.1")));
    /* an IPv6 /64 is one key; another /64 is another */
    CHECK(same(v6("2001:db8:1:2::1"), v6("2001:db8:1:2:aaaa:bbbb:cccc:dddd")));
    CHECK(!same(v6("2001:db8:1:2::1"), v6("2001:db8:1:3::1")));
    CHECK(!same(v6("::1"), v4("127.0.0.1")));
    CHECK(rc_ipkey_known(&(rc_ipkey){0}) == 0);
    rc_ipkey k = v4("10.0.0.1");
    CHECK(rc_ipkey_known(&k));
    struct sockaddr un = {.sa_family = AF_UNIX};
    k = rc_ipkey_of(&un);
    CHECK(!rc_ipkey_known(&k));
}

TEST(format)
{
    char buf[64];
    rc_ipkey k = v4("203.0.113.9");
    rc_ipkey_format(&k, buf, sizeof(buf));
    CHECK(strcmp(buf, "203.0.113.9") == 0);
    k = v6("2001:db8:1:2:3:4:5:6");
    rc_ipkey_format(&k, buf, sizeof(buf));
    CHECK(strcmp(buf, "2001:db8:1:2::/64") == 0);
}

TEST(count_up_and_down)
{
    rc_ipcount t = {0};
    rc_ipkey a = v4("192.0.2.1"), b = v6("2001:db8::1"), b2 = v6("2001:db8::2");
    CHECK_EQ_INT(rc_ipcount_get(&t, &a), 0);
    CHECK_EQ_INT(rc_ipcount_add(&t, &a), 1);
    CHECK_EQ_INT(rc_ipcount_add(&t, &a), 2);
    CHECK_EQ_INT(rc_ipcount_add(&t, &b), 1);
    CHECK_EQ_INT(rc_ipcount_add(&t, &b2), 2); /* same /64 */
    CHECK_EQ_INT(rc_ipcount_addresses(&t), 2);
    rc_ipcount_del(&t, &a);
    CHECK_EQ_INT(rc_ipcount_get(&t, &a), 1);
    rc_ipcount_del(&t, &a);
    CHECK_EQ_INT(rc_ipcount_get(&t, &a), 0);
    CHECK_EQ_INT(rc_ipcount_addresses(&t), 1); /* freed at zero */
    rc_ipcount_release(&t); /* with entries left: ASan checks they are freed */
    CHECK_EQ_INT(rc_ipcount_addresses(&t), 0);
}

TEST(many_against_reference)
{
    enum { N = 2000 };
    static uint32_t ref[N];
    memset(ref, 0, sizeof(ref));
    rc_ipcount t = {0};
    for (int step = 0; step < 200000; step++) {
        int i = (int)(unit_rand() % N);
        char a[32];
        snprintf(a, sizeof(a), "10.%d.%d.1", i / 256, i % 256);
        rc_ipkey k = v4(a);
        if (ref[i] && unit_rand() % 2) {
            rc_ipcount_del(&t, &k);
            ref[i]--;
        } else {
            CHECK_EQ_INT(rc_ipcount_add(&t, &k), ref[i] + 1);
            ref[i]++;
        }
        if (step % 997 == 0) CHECK_EQ_INT(rc_ipcount_get(&t, &k), ref[i]);
    }
    uint32_t live = 0;
    for (int i = 0; i < N; i++) live += ref[i] > 0;
    CHECK_EQ_INT(rc_ipcount_addresses(&t), live);
    for (int i = 0; i < N; i++) {
        char a[32];
        snprintf(a, sizeof(a), "10.%d.%d.1", i / 256, i % 256);
        rc_ipkey k = v4(a);
        while (ref[i]--) rc_ipcount_del(&t, &k);
    }
    CHECK_EQ_INT(rc_ipcount_addresses(&t), 0);
    rc_ipcount_release(&t);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(keys);
    RUN(format);
    RUN(count_up_and_down);
    RUN(many_against_reference);
    UNIT_MAIN_END("test_ipcount");
}
