/* test_perm.c — tests for src/rooms/perm.c: the permission matrix (each policy × with and
 * without a token × grants r, w, rw, none, by pattern × a full room), namespace lookup, grant
 * patterns and the "rooms" claim reader. */
#include "unit.h"

#include "rooms/perm.h"

#define ROOM(s) (s), strlen(s)

static rc_perm_rules rules;

/* setup: namespace "g" with the given policies and max-members 2. */
static void setup(int join, int publish)
{
    rc_perm_rules_release(&rules);
    rc_perm_ns *ns = rc_perm_add(&rules, "g", 1);
    ns->join = (uint8_t)join;
    ns->publish = (uint8_t)publish;
    ns->max_members = 2;
}

static rc_perm_grants grants_of(rc_perm_grant *g, size_t n)
{
    return (rc_perm_grants){g, n};
}

TEST(matrix)
{
    rc_perm_rules_init(&rules);
    /* grants on "g:1": none, r, w, rw exactly, and r or rw through the pattern "g:*" */
    rc_perm_grant none[] = {{"other", 5, RC_PERM_R | RC_PERM_W}};
    rc_perm_grant r[] = {{"g:1", 3, RC_PERM_R}};
    rc_perm_grant w[] = {{"g:1", 3, RC_PERM_W}};
    rc_perm_grant rw[] = {{"g:1", 3, RC_PERM_R | RC_PERM_W}};
    rc_perm_grant pr[] = {{"g:*", 3, RC_PERM_R}};
    rc_perm_grant prw[] = {{"*:1", 3, RC_PERM_R | RC_PERM_W}};
    struct { rc_perm_grant *g; unsigned rights; } gs[] = {
        {none, 0}, {r, RC_PERM_R}, {w, RC_PERM_W}, {rw, RC_PERM_R | RC_PERM_W},
        {pr, RC_PERM_R}, {prw, RC_PERM_R | RC_PERM_W},
    };
    for (int policy = RC_PERM_ANYONE; policy <= RC_PERM_GRANTED; policy++) {
        setup(policy, policy);
        for (int authed = 0; authed <= 1; authed++) {
            for (size_t k = 0; k < sizeof gs / sizeof gs[0]; k++) {
                rc_perm_grants g = grants_of(gs[k].g, 1);
                for (uint32_t members = 0; members <= 2; members++) {
                    enum rc_perm_result want_join, want_pub;
                    if (policy == RC_PERM_ANYONE) {
                        want_join = want_pub = RC_PERM_OK;
                    } else if (!authed) {
                        want_join = want_pub = RC_PERM_UNAUTHENTICATED;
                    } else if (policy == RC_PERM_AUTHENTICATED) {
                        want_join = want_pub = RC_PERM_OK;
                    } else {
                        want_join = gs[k].rights & RC_PERM_R ? RC_PERM_OK : RC_PERM_FORBIDDEN;
                        want_pub = gs[k].rights & RC_PERM_W ? RC_PERM_OK : RC_PERM_FORBIDDEN;
                    }
                    /* full only matters once joining is allowed */
                    if (want_join == RC_PERM_OK && members >= 2) want_join = RC_PERM_ROOM_FULL;
                    enum rc_perm_result j = rc_perm_check(&rules, ROOM("g:1"), RC_PERM_JOIN,
                                                          authed, &g, members);
                    enum rc_perm_result p = rc_perm_check(&rules, ROOM("g:1"), RC_PERM_PUBLISH,
                                                          authed, &g, members);
                    if (j != want_join || p != want_pub)
                        fprintf(stderr, "policy %s authed %d grant %zu members %u: join %s "
                                "publish %s\n", rc_perm_policy_name(policy), authed, k,
                                members, rc_perm_result_name(j), rc_perm_result_name(p));
                    CHECK_EQ_INT(j, want_join);
                    CHECK_EQ_INT(p, want_pub);
                }
            }
        }
    }
    rc_perm_rules_release(&rules);
}

TEST(no_grants_at_all)
{
    rc_perm_rules_init(&rules);
    setup(RC_PERM_GRANTED, RC_PERM_GRANTED);
    CHECK_EQ_INT(rc_perm_check(&rules, ROOM("g:1"), RC_PERM_JOIN, true, NULL, 0),
                 RC_PERM_FORBIDDEN);
    CHECK_EQ_INT(rc_perm_check(&rules, ROOM("g:1"), RC_PERM_JOIN, false, NULL, 0),
                 RC_PERM_UNAUTHENTICATED);
    rc_perm_rules_release(&rules);
}

TEST(switches_and_defaults)
{
    rc_perm_rules_init(&rules);
    /* the defaults are today's behaviour: all open, no limit */
    CHECK_EQ_INT(rc_perm_check(&rules, ROOM("lobby"), RC_PERM_JOIN, false, NULL, 100000),
                 RC_PERM_OK);
    CHECK_EQ_INT(rc_perm_check(&rules, ROOM("x:y"), RC_PERM_PUBLISH, false, NULL, 0), RC_PERM_OK);
    rc_perm_ns *ns = rc_perm_add(&rules, "quiet", 5);
    ns->history = 0;
    ns->recovery = 0;
    ns->presence = 0;
    ns->join = RC_PERM_AUTHENTICATED;
    CHECK_EQ_INT(rc_perm_check(&rules, ROOM("quiet:1"), RC_PERM_HISTORY, true, NULL, 0),
                 RC_PERM_FORBIDDEN);
    CHECK_EQ_INT(rc_perm_check(&rules, ROOM("quiet:1"), RC_PERM_RECOVER, true, NULL, 0),
                 RC_PERM_FORBIDDEN);
    CHECK_EQ_INT(rc_perm_check(&rules, ROOM("quiet:1"), RC_PERM_PRESENCE, true, NULL, 0),
                 RC_PERM_FORBIDDEN);
    /* reading history needs the right to join first */
    CHECK_EQ_INT(rc_perm_check(&rules, ROOM("quiet:1"), RC_PERM_HISTORY, false, NULL, 0),
                 RC_PERM_UNAUTHENTICATED);
    CHECK_EQ_INT(rc_perm_check(&rules, ROOM("lobby"), RC_PERM_HISTORY, false, NULL, 0),
                 RC_PERM_OK);
    rc_perm_rules_release(&rules);
}

TEST(namespace_lookup)
{
    rc_perm_rules_init(&rules);
    rc_perm_ns *g = rc_perm_add(&rules, "game", 4);
    CHECK(g != NULL);
    CHECK(rc_perm_add(&rules, "game", 4) == NULL);    /* taken */
    CHECK(rc_perm_add(&rules, "a:b", 3) == NULL);     /* invalid */
    CHECK(rc_perm_add(&rules, "", 0) == NULL);
    const rc_perm_ns *gg = rc_perm_find(&rules, "game", 4);
    CHECK(rc_perm_lookup(&rules, ROOM("game:42")) == gg);
    CHECK(rc_perm_lookup(&rules, ROOM("game:a:b")) == gg);  /* the first ':' ends it */
    CHECK(rc_perm_lookup(&rules, ROOM("game")) == &rules.def);
    CHECK(rc_perm_lookup(&rules, ROOM("games:1")) == &rules.def);
    CHECK(rc_perm_lookup(&rules, ROOM(":x")) == &rules.def);
    rc_perm_rules_release(&rules);
}

TEST(grant_patterns)
{
    rc_perm_grant v[] = {{"game:42", 7, RC_PERM_W}, {"game:*", 6, RC_PERM_R},
                         {"*-vip", 5, RC_PERM_W}, {"a*b*c", 5, RC_PERM_R}};
    rc_perm_grants g = {v, 4};
    CHECK_EQ_INT(rc_perm_granted(&g, ROOM("game:42")), RC_PERM_W); /* exact narrows */
    CHECK_EQ_INT(rc_perm_granted(&g, ROOM("game:7")), RC_PERM_R);
    CHECK_EQ_INT(rc_perm_granted(&g, ROOM("game:7-vip")), RC_PERM_R | RC_PERM_W); /* union */
    CHECK_EQ_INT(rc_perm_granted(&g, ROOM("game")), 0);
    CHECK_EQ_INT(rc_perm_granted(&g, ROOM("abxbc")), RC_PERM_R);
    CHECK_EQ_INT(rc_perm_granted(&g, ROOM("abxbcd")), 0);
    CHECK_EQ_INT(rc_perm_granted(&g, ROOM("ac")), 0);
    CHECK_EQ_INT(rc_perm_granted(NULL, ROOM("game:1")), 0);
}

TEST(grants_from_json)
{
    char buf[64];
    rc_perm_grant v[4];
    const char *j = "{\"game:42\":\"rw\",\"lobby\":\"r\",\"game:*\":\"r\",\"\\u0061\":\"w\"}";
    CHECK_EQ_INT(rc_perm_grants_from_json(j, strlen(j), v, 4, buf, sizeof buf), 4);
    CHECK_MEM(v[0].pattern, v[0].len, "game:42", 7);
    CHECK_EQ_INT(v[0].rights, RC_PERM_R | RC_PERM_W);
    CHECK_MEM(v[1].pattern, v[1].len, "lobby", 5);
    CHECK_EQ_INT(v[1].rights, RC_PERM_R);
    CHECK_MEM(v[3].pattern, v[3].len, "a", 1);
    CHECK_EQ_INT(v[3].rights, RC_PERM_W);
    rc_perm_grants g = {v, 4};
    CHECK_EQ_INT(rc_perm_granted(&g, ROOM("game:1")), RC_PERM_R);
    static const char *const bad[] = {
        "[]", "{\"a\":\"x\"}", "{\"a\":1}", "{\"\":\"r\"}", "{\"a\":\"r\",}", "nope",
        "{\"a\":\"r\",\"b\":\"r\",\"c\":\"r\",\"d\":\"r\",\"e\":\"r\"}", /* more than cap */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ_INT(rc_perm_grants_from_json(bad[i], strlen(bad[i]), v, 4, buf, sizeof buf),
                     -1);
    char small[4];
    CHECK_EQ_INT(rc_perm_grants_from_json(j, strlen(j), v, 4, small, sizeof small), -1);
}

TEST(names)
{
    CHECK_EQ_INT(rc_perm_parse_policy("anyone"), RC_PERM_ANYONE);
    CHECK_EQ_INT(rc_perm_parse_policy("authenticated"), RC_PERM_AUTHENTICATED);
    CHECK_EQ_INT(rc_perm_parse_policy("granted"), RC_PERM_GRANTED);
    CHECK_EQ_INT(rc_perm_parse_policy("Anyone"), -1);
    CHECK(strcmp(rc_perm_result_name(RC_PERM_ROOM_FULL), "room_full") == 0);
    CHECK(strcmp(rc_perm_result_name(RC_PERM_UNAUTHENTICATED), "unauthenticated") == 0);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(matrix);
    RUN(no_grants_at_all);
    RUN(switches_and_defaults);
    RUN(namespace_lookup);
    RUN(grant_patterns);
    RUN(grants_from_json);
    RUN(names);
    UNIT_MAIN_END("test_perm");
}
