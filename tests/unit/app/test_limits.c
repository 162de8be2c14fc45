/* Tests src/app/limits.c's Origin rule (--allowed-origins); the rate limits and the
 * per-address limit are driven end to end by tests/integration/test_abuse.py. */
#include "app/limits.h"

#include <string.h>

#include "unit.h"

static bool allowed(const char *list, const char *origin)
{
    return rc_limits_origin_allowed(list, origin, strlen(origin));
}

TEST(origin_rule)
{
    CHECK(allowed("*", "https://anything.example"));
    CHECK(!allowed("", "https://a.example"));
    CHECK(!allowed(NULL, "https://a.example"));
    const char *list = "https://a.example, http://b.example:8080 ,https://c.example";
    CHECK(allowed(list, "https://a.example"));
    CHECK(allowed(list, "http://b.example:8080"));
    CHECK(allowed(list, "https://c.example"));
    CHECK(allowed(list, "HTTPS://A.EXAMPLE")); /* scheme and host are case-insensitive */
    CHECK(!allowed(list, "http://a.example"));  /* scheme matters */
    CHECK(!allowed(list, "http://b.example"));  /* port matters */
    CHECK(!allowed(list, "https://a.example.evil"));
    CHECK(!allowed(list, "https://a.exampl"));
    CHECK(!allowed(list, ""));
    CHECK(!allowed(list, "null"));
    CHECK(allowed("null", "null")); /* listed explicitly: sandboxed and file:// pages */
    CHECK(allowed("https://a.example,*", "https://z.example"));
    CHECK(!allowed(",,", ""));
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(origin_rule);
    UNIT_MAIN_END("test_limits");
}
