/* Tests src/cluster/clwire.c: the --redis URL, key and channel names, the channel message. */
#include "cluster/clwire.h"

#include <stdio.h>

#include "unit.h"

static int parse(const char *s, rc_clwire_url *u)
{
    const char *why;
    int rc = rc_clwire_url_parse(s, strlen(s), u, &why);
    if (rc < 0 && !why) return -2; /* an error must say why */
    return rc;
}

TEST(url_tcp)
{
    rc_clwire_url u;
    CHECK(parse("redis://127.0.0.1", &u) == 0);
    CHECK(!u.is_unix && strcmp(u.host, "127.0.0.1") == 0 && u.port == 6379 && u.db == 0);
    CHECK(!u.has_pass);
    CHECK(parse("redis://redis.example:6380/2", &u) == 0);
    CHECK(strcmp(u.host, "redis.example") == 0 && u.port == 6380 && u.db == 2);
    CHECK(parse("redis://localhost:7000/", &u) == 0);
    CHECK(u.port == 7000 && u.db == 0);
    CHECK(parse("redis://[::1]:6390/1", &u) == 0);
    CHECK(strcmp(u.host, "::1") == 0 && u.port == 6390 && u.db == 1);
    CHECK(parse("redis://[::1]", &u) == 0);
    CHECK(u.port == 6379);
}

TEST(url_auth)
{
    rc_clwire_url u;
    CHECK(parse("redis://:s3cret@h:1/0", &u) == 0);
    CHECK(u.has_pass && strcmp(u.user, "") == 0 && strcmp(u.pass, "s3cret") == 0);
    CHECK(strcmp(u.host, "h") == 0 && u.port == 1);
    CHECK(parse("redis://alice:p%40ss%3Aw@h", &u) == 0);
    CHECK(strcmp(u.user, "alice") == 0 && strcmp(u.pass, "p@ss:w") == 0);
    /* the last '@' before the path ends the credentials */
    CHECK(parse("redis://:a@b@h/3", &u) == 0);
    CHECK(strcmp(u.pass, "a@b") == 0 && strcmp(u.host, "h") == 0 && u.db == 3);
    CHECK(parse("redis://:@h", &u) == 0);
    CHECK(u.has_pass && u.pass[0] == '\0');
    CHECK(parse("unix://:pw@/run/redis.sock?db=4", &u) == 0);
    CHECK(u.is_unix && strcmp(u.pass, "pw") == 0 && strcmp(u.path, "/run/redis.sock") == 0);
    CHECK(u.db == 4);
}

TEST(url_unix)
{
    rc_clwire_url u;
    CHECK(parse("unix:///tmp/r.sock", &u) == 0);
    CHECK(u.is_unix && strcmp(u.path, "/tmp/r.sock") == 0 && u.db == 0 && !u.has_pass);
    CHECK(parse("unix:///tmp/r.sock?db=12", &u) == 0);
    CHECK(u.db == 12);
}

TEST(url_rejects)
{
    static const char *const bad[] = {
        "", "redis:/h", "http://h", "redis://", "redis://:6379", "redis://h:0", "redis://h:65536",
        "redis://h:12x", "redis://h/x", "redis://h/-1", "redis://[::1", "redis://[::1]x",
        "redis://h h", "redis://user@h", "redis://:%4@h", "redis://:%zz@h", "redis://:%00@h",
        "unix://", "unix://relative.sock", "unix:///s?db=", "unix:///s?x=1", "unix:///s?db=a",
        "redis://h:01",
    };
    rc_clwire_url u;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse(bad[i], &u);
        if (rc != -1) fprintf(stderr, "accepted or no reason: '%s'\n", bad[i]);
        CHECK_EQ_INT(rc, -1);
    }
    char longpath[300] = "unix:///";
    memset(longpath + 8, 'a', 200);
    CHECK_EQ_INT(parse(longpath, &u), -1);
}

TEST(url_describe_hides_password)
{
    rc_clwire_url u;
    char out[128];
    CHECK(parse("redis://:topsecret@10.0.0.1:7/2", &u) == 0);
    size_t n = rc_clwire_url_describe(&u, out, sizeof(out));
    CHECK_MEM(out, n, "redis://10.0.0.1:7/2", 20);
    CHECK(parse("unix://:topsecret@/s?db=1", &u) == 0);
    n = rc_clwire_url_describe(&u, out, sizeof(out));
    CHECK_MEM(out, n, "unix:///s?db=1", 14);
    CHECK(parse("redis://[fe80::1]", &u) == 0);
    n = rc_clwire_url_describe(&u, out, sizeof(out));
    CHECK_MEM(out, n, "redis://[fe80::1]:6379/0", 24);
}

TEST(names)
{
    char out[64];
    int n = rc_clwire_name(out, sizeof(out), "rc", RC_CLWIRE_META, "lobby", 5, NULL, 0);
    CHECK_MEM(out, (size_t)n, "rc:{lobby}:m", 12);
    n = rc_clwire_name(out, sizeof(out), "rc", RC_CLWIRE_STREAM, "lobby", 5, NULL, 0);
    CHECK_MEM(out, (size_t)n, "rc:{lobby}:s", 12);
    n = rc_clwire_name(out, sizeof(out), "app.1", RC_CLWIRE_IDEM, "a", 1, "k9", 2);
    CHECK_MEM(out, (size_t)n, "app.1:{a}:i:k9", 14);
    n = rc_clwire_name(out, sizeof(out), "rc", RC_CLWIRE_CHANNEL, "a\0b", 3, NULL, 0);
    CHECK_MEM(out, (size_t)n, "rc:{a\0b}:c", 10);
    n = rc_clwire_name(out, sizeof(out), "rc", RC_CLWIRE_PRESENCE, "lobby", 5, NULL, 0);
    CHECK_MEM(out, (size_t)n, "rc:{lobby}:p", 12);
    /* exact fit, then one byte short */
    CHECK_EQ_INT(rc_clwire_name(out, 12, "rc", RC_CLWIRE_META, "lobby", 5, NULL, 0), 12);
    CHECK_EQ_INT(rc_clwire_name(out, 11, "rc", RC_CLWIRE_META, "lobby", 5, NULL, 0), -1);
}

TEST(channel_room_round_trip)
{
    char ch[64];
    const char *room;
    size_t rl;
    int n = rc_clwire_name(ch, sizeof(ch), "rc", RC_CLWIRE_CHANNEL, "x:}{y", 5, NULL, 0);
    CHECK(rc_clwire_channel_room(ch, (size_t)n, "rc", &room, &rl) == 0);
    CHECK_MEM(room, rl, "x:}{y", 5);
    n = rc_clwire_name(ch, sizeof(ch), "rc", RC_CLWIRE_CHANNEL, "", 0, NULL, 0);
    CHECK(rc_clwire_channel_room(ch, (size_t)n, "rc", &room, &rl) == 0 && rl == 0);
    CHECK(rc_clwire_channel_room("rc:ctl", 6, "rc", &room, &rl) == -1);
    CHECK(rc_clwire_channel_room("rd:{a}:c", 8, "rc", &room, &rl) == -1);
    CHECK(rc_clwire_channel_room("rc:{a}:m", 8, "rc", &room, &rl) == -1);
    CHECK(rc_clwire_channel_room("rcx{a}:c", 8, "rc", &room, &rl) == -1);
    CHECK(rc_clwire_channel_room("rc:{}:", 6, "rc", &room, &rl) == -1);
}

TEST(msg_round_trip)
{
    char buf[128];
    const char payload[] = "he:llo\0x";
    int n = rc_clwire_msg_encode(buf, sizeof(buf), 42, "ab12", 4, payload, sizeof(payload) - 1);
    CHECK_MEM(buf, (size_t)n, "r1:42:ab12:he:llo\0x", 19);
    rc_clwire_msg m;
    CHECK(rc_clwire_msg_decode(buf, (size_t)n, &m) == 0);
    CHECK_EQ_INT(m.msg_id, 42);
    CHECK_MEM(m.epoch, m.epoch_len, "ab12", 4);
    CHECK_MEM(m.payload, m.payload_len, payload, sizeof(payload) - 1);
    /* empty payload */
    n = rc_clwire_msg_encode(buf, sizeof(buf), 9007199254740992ull, "E", 1, "", 0);
    CHECK(rc_clwire_msg_decode(buf, (size_t)n, &m) == 0);
    CHECK(m.msg_id == 9007199254740992ull && m.payload_len == 0);
    CHECK_EQ_INT(rc_clwire_msg_encode(buf, 5, 1, "e", 1, "", 0), -1);
}

TEST(msg_every_prefix_is_rejected)
{
    /* A message cut anywhere before its payload starts is not a message. */
    static const char full[] = "r1:1234:deadbeef:";
    rc_clwire_msg m;
    for (size_t i = 0; i < sizeof(full) - 1; i++) CHECK_EQ_INT(rc_clwire_msg_decode(full, i, &m), -1);
    CHECK(rc_clwire_msg_decode(full, sizeof(full) - 1, &m) == 0);
}

TEST(msg_rejects)
{
    static const char *const bad[] = {
        "r2:1:e:x", "r1::e:x", "r1:0:e:x", "r1:01:e:x", "r1:1::x", "r1:1:e-f:x",
        "r1:9007199254740993:e:x", "r1:99999999999999999999999:e:x", "r1:1a:e:x", "x",
        "r1:1:abcdefghijabcdefghijabcdefghijabc:x", /* 33-letter epoch */
    };
    rc_clwire_msg m;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_EQ_INT(rc_clwire_msg_decode(bad[i], strlen(bad[i]), &m), -1);
}

TEST(batch_round_trip)
{
    char buf[256];
    const void *pl[3] = {"a:b", "", "x\0y"};
    size_t lens[3] = {3, 0, 3};
    int n = rc_clwire_batch_encode(buf, sizeof(buf), 7, "ep0", 3, pl, lens, 3);
    CHECK_MEM(buf, (size_t)n, "r2:7:3:ep0:3:a:b0:3:x\0y", 23);
    rc_clwire_batch b;
    rc_clwire_msg m;
    CHECK(rc_clwire_batch_decode(buf, (size_t)n, &b) == 0);
    CHECK(b.first == 7 && b.count == 3);
    for (int i = 0; i < 3; i++) {
        CHECK(rc_clwire_batch_next(&b, &m) == 1);
        CHECK_EQ_INT(m.msg_id, 7 + (uint64_t)i);
        CHECK_MEM(m.epoch, m.epoch_len, "ep0", 3);
        CHECK_MEM(m.payload, m.payload_len, pl[i], lens[i]);
    }
    CHECK_EQ_INT(rc_clwire_batch_next(&b, &m), 0);
    /* a batch is never a single message, nor a single message a batch */
    CHECK_EQ_INT(rc_clwire_msg_decode(buf, (size_t)n, &m), -1);
    CHECK_EQ_INT(rc_clwire_batch_decode("r1:1:e:x", 8, &b), -1);
    /* every cut short is rejected, byte by byte */
    for (int i = 0; i < n; i++) CHECK_EQ_INT(rc_clwire_batch_decode(buf, (size_t)i, &b), -1);
    CHECK_EQ_INT(rc_clwire_batch_encode(buf, sizeof(buf), 1, "e", 1, pl, lens, 1), -1);
    CHECK_EQ_INT(rc_clwire_batch_encode(buf, 10, 1, "e", 1, pl, lens, 2), -1);
}

TEST(batch_rejects)
{
    static const char *const bad[] = {
        "r2:1:1:e:1:x",          /* a batch of one */
        "r2:0:2:e:1:x1:y",       /* msg_id 0 */
        "r2:1:2:e:1:x",          /* fewer payloads than the count */
        "r2:1:2:e:1:x1:yz",      /* bytes after the last payload */
        "r2:1:2:e:1:x01:y",      /* leading zero in a length */
        "r2:1:2:e:1:x2:y",       /* a length past the end */
        "r2:1:2:e-f:1:x1:y",     /* bad epoch */
        "r2:01:2:e:1:x1:y", "r2:1:02:e:1:x1:y", "r2:1:2:e:", "r2:1:2::1:x1:y", "r2:",
        "r2:9007199254740992:2:e:1:x1:y", /* the last msg_id past 2^53 */
        "r2:1:4097:e:",          /* more than RC_CLWIRE_BATCH_MAX */
    };
    rc_clwire_batch b;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_EQ_INT(rc_clwire_batch_decode(bad[i], strlen(bad[i]), &b), -1);
    CHECK(rc_clwire_batch_decode("r2:9007199254740991:2:e:1:x1:y", 30, &b) == 0);
}

TEST(u64)
{
    uint64_t v;
    CHECK(rc_clwire_u64("0", 1, &v) == 0 && v == 0);
    CHECK(rc_clwire_u64("18446744073709551615", 20, &v) == 0 && v == UINT64_MAX);
    CHECK_EQ_INT(rc_clwire_u64("18446744073709551616", 20, &v), -1);
    CHECK_EQ_INT(rc_clwire_u64("", 0, &v), -1);
    CHECK_EQ_INT(rc_clwire_u64("00", 2, &v), -1);
    CHECK_EQ_INT(rc_clwire_u64("+1", 2, &v), -1);
}

TEST(pres_round_trip)
{
    static const char join[] = "p1:42:j:4294967301:0123abcd0123abcd:\"user\":\"al:ice\",";
    rc_clwire_pres e;
    CHECK(rc_clwire_pres_decode(join, sizeof(join) - 1, &e) == 0);
    CHECK(e.version == 42 && e.join && e.client_id == 4294967301ull);
    CHECK_MEM(e.node, e.node_len, "0123abcd0123abcd", 16);
    CHECK_MEM(e.info, e.info_len, "\"user\":\"al:ice\",", 16);
    char out[128];
    int n = rc_clwire_pres_encode(out, sizeof(out), &e);
    CHECK_MEM(out, (size_t)n, join, sizeof(join) - 1);
    CHECK_EQ_INT(rc_clwire_pres_encode(out, (size_t)n - 1, &e), -1); /* one byte short */
    static const char leave[] = "p1:7:l:9:n1:dropped";
    CHECK(rc_clwire_pres_decode(leave, sizeof(leave) - 1, &e) == 0);
    CHECK(!e.join && e.client_id == 9 && e.version == 7);
    CHECK_MEM(e.info, e.info_len, "dropped", 7);
    /* every cut before the info is refused; an empty info is fine */
    for (size_t i = 0; i < 12; i++) CHECK_EQ_INT(rc_clwire_pres_decode(leave, i, &e), -1);
    CHECK(rc_clwire_pres_decode(leave, 12, &e) == 0 && e.info_len == 0);
    static const char *const bad[] = {
        "p2:1:j:1:n:", "p1:0:j:1:n:", "p1:01:j:1:n:", "p1:1:x:1:n:", "p1:1:j:-1:n:",
        "p1:1:j:1::", "p1:1:j:1:n-1:", "p1:1:j:1:n", "r1:1:e:x",
        "p1:1:j:1:0123456789012345678901234567890123:",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_EQ_INT(rc_clwire_pres_decode(bad[i], strlen(bad[i]), &e), -1);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(url_tcp);
    RUN(url_auth);
    RUN(url_unix);
    RUN(url_rejects);
    RUN(url_describe_hides_password);
    RUN(names);
    RUN(channel_room_round_trip);
    RUN(msg_round_trip);
    RUN(msg_every_prefix_is_rejected);
    RUN(msg_rejects);
    RUN(batch_round_trip);
    RUN(batch_rejects);
    RUN(u64);
    RUN(pres_round_trip);
    UNIT_MAIN_END("test_clwire");
}
