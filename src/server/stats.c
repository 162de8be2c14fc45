/* stats.c — counter names; see stats.h. */
#include "server/stats.h"

const char *const rc_err_names[RC_ERR__COUNT] = {
    [RC_ERR_HTTP_400] = "http_400",
    [RC_ERR_HTTP_404] = "http_404",
    [RC_ERR_HTTP_405] = "http_405",
    [RC_ERR_HTTP_408] = "http_408",
    [RC_ERR_HTTP_426] = "http_426",
    [RC_ERR_HTTP_431] = "http_431",
    [RC_ERR_HTTP_503] = "http_503",
    [RC_ERR_HTTP_401] = "http_401",
    [RC_ERR_HTTP_403] = "http_403",
    [RC_ERR_HTTP_411] = "http_411",
    [RC_ERR_HTTP_413] = "http_413",
    [RC_ERR_HTTP_501] = "http_501",
    [RC_ERR_WS_1002] = "ws_1002",
    [RC_ERR_WS_1007] = "ws_1007",
    [RC_ERR_WS_1009] = "ws_1009",
    [RC_ERR_BAD_JSON] = "bad_json",
    [RC_ERR_NOT_OBJECT] = "not_object",
    [RC_ERR_MISSING_FIELD] = "missing_field",
    [RC_ERR_BAD_FIELD] = "bad_field",
    [RC_ERR_NOT_MEMBER] = "not_member",
    [RC_ERR_NO_SUCH_ROOM] = "no_such_room",
    [RC_ERR_RESERVED_TYPE] = "reserved_type",
    [RC_ERR_TOO_MANY_ROOMS] = "too_many_rooms",
    [RC_ERR_BAD_BINARY] = "bad_binary",
};
