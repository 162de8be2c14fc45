/* json.h — the JSON a room message needs, in one validating pass, without allocating.
 *
 * A client's message is a JSON object; roomcast reads a few top-level members ("type", "room",
 * ...) and forwards the rest verbatim with server-owned members ("client_id", "msg_id") spliced
 * in. rc_json_scan validates the whole text (RFC 8259: strict grammar, no trailing commas,
 * no leading zeros, valid escapes, no raw control characters in strings; the text is already
 * known to be UTF-8), checks that the top level is an object, and records for each known key
 * its last occurrence at the top level, and which of them occur more than once (a caller that
 * reads a key should refuse an object that repeats it: a receiver whose parser keeps the first
 * occurrence would read something else). Keys are compared after unescaping, so "\u0074ype" is
 * "type". Members whose key is in cut_mask are recorded as byte ranges to leave out when the
 * object is copied (each range includes one adjacent comma so the copy stays valid JSON).
 * Nesting deeper than RC_JSON_MAX_DEPTH is rejected; scanning is iterative, not recursive.
 */
#ifndef RC_JSON_H
#define RC_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define RC_JSON_MAX_DEPTH 64
#define RC_JSON_MAX_CUTS 8

enum rc_json_type {
    RC_JSON_NONE = 0,        /* key absent */
    RC_JSON_STRING,
    RC_JSON_NUMBER,
    RC_JSON_OBJECT,
    RC_JSON_ARRAY,
    RC_JSON_TRUE,
    RC_JSON_FALSE,
    RC_JSON_NULL,
};

/* Top-level keys roomcast looks at. */
enum rc_json_key {
    RC_JK_TYPE,              /* "type" */
    RC_JK_ROOM,              /* "room" */
    RC_JK_CLIENT_ID,         /* "client_id" */
    RC_JK_MSG_ID,            /* "msg_id" */
    RC_JK_ACK,               /* "ack" */
    RC_JK_SINCE,             /* "since" */
    RC_JK_EPOCH,             /* "epoch" */
    RC_JK_IDEMPOTENCY_KEY,   /* "idempotency_key" */
    RC_JK_SESSION,           /* "session" */
    RC_JK_HISTORY,           /* "history" */
    RC_JK_STATE,             /* "state" */
    RC_JK_PRESENCE,          /* "presence" */
    RC_JK_CONFLATE,          /* "conflate" */
    RC_JK_STATE_KEY,         /* "state_key" */
    RC_JK_STATE_DELETE,      /* "state_delete" */
    RC_JK_USER,              /* "user" (the server's when the sender is authenticated) */
    RC_JK_TOKEN,             /* "token" (of an auth message) */
    RC_JK__COUNT
};
#define RC_JK_BIT(k) (1u << (k))

/* rc_json_key_names[k] is the member name of known key k. */
extern const char *const rc_json_key_names[RC_JK__COUNT];

enum {
    RC_JSON_OK = 0,
    RC_JSON_ESYNTAX = -1,    /* not valid JSON */
    RC_JSON_ENOTOBJECT = -2, /* valid JSON, but the top level is not an object */
    RC_JSON_EDEPTH = -3,     /* nested deeper than RC_JSON_MAX_DEPTH */
    RC_JSON_ECUTS = -4,      /* more than RC_JSON_MAX_CUTS members to cut (duplicate keys) */
};

typedef struct rc_json_span {
    const char *p;           /* raw value text in the input (a string includes its quotes) */
    size_t len;              /* bytes of raw text */
    enum rc_json_type type;  /* RC_JSON_NONE when the key is absent */
} rc_json_span;

typedef struct rc_json_cut {
    size_t off;              /* first byte to leave out, offset from the start of the input */
    size_t len;              /* bytes to leave out */
} rc_json_cut;

typedef struct rc_json_top {
    rc_json_span key[RC_JK__COUNT]; /* last top-level occurrence of each known key */
    rc_json_cut cut[RC_JSON_MAX_CUTS]; /* ranges to leave out, in increasing offset order */
    size_t ncut;             /* entries used in cut[] */
    size_t members;          /* top-level members in the input */
    size_t members_cut;      /* of which are covered by cut[] */
    unsigned dups;           /* RC_JK_BIT of each known key that occurs more than once */
    size_t open;             /* offset of the top-level '{' */
    size_t close;            /* offset of the matching '}' */
} rc_json_top;

/* rc_json_scan validates p[0..n) and fills *t. Returns RC_JSON_OK or a negative RC_JSON_E*.
 * Syntax and depth errors are reported for the first offending byte; RC_JSON_ENOTOBJECT and
 * RC_JSON_ECUTS only for text that is otherwise valid JSON. Whitespace may surround the value;
 * nothing else may follow it. On error the contents of *t are unspecified. Spans in *t point
 * into p. */
int rc_json_scan(const char *p, size_t n, unsigned cut_mask, rc_json_top *t);

/* rc_json_copy_open writes the object from its '{' up to, not including, its closing '}' with
 * the cut ranges left out, into out (room for n bytes is always enough). Returns the bytes
 * written; *nonempty says whether any member remains (so the caller knows whether to write a
 * comma before appending members and the closing brace). t must come from a scan of p that
 * returned RC_JSON_OK. */
size_t rc_json_copy_open(const char *p, const rc_json_top *t, char *out, bool *nonempty);

/* rc_json_unescape decodes the JSON string literal raw[0..len) (with its quotes) into out
 * (cap bytes). Returns the decoded length, or -1 when it does not fit, is not a string
 * literal, or decodes to a lone surrogate or a NUL byte. */
long rc_json_unescape(const char *raw, size_t len, char *out, size_t cap);

/* rc_json_unescape_lossy is rc_json_unescape for text that is shown, not interpreted (the chat
 * port's lines): a \u0000 decodes to a NUL byte and a lone surrogate to U+FFFD instead of
 * failing; -1 only for what is not a string literal or does not fit. The result is never
 * longer than the literal. */
long rc_json_unescape_lossy(const char *raw, size_t len, char *out, size_t cap);

/* rc_json_escape writes s[0..n) (UTF-8) as a JSON string literal with quotes into out, which
 * must have room for rc_json_escape_max(n) bytes. Returns the bytes written. Escapes '"', '\\'
 * and control characters; everything else is copied as is. */
size_t rc_json_escape(const char *s, size_t n, char *out);
#define rc_json_escape_max(n) (6 * (n) + 2)

/* rc_json_get_u64 parses a span holding a non-negative integer without fraction or exponent
 * that fits in 64 bits. Returns false otherwise. */
bool rc_json_get_u64(const rc_json_span *s, uint64_t *out);

/* ---- walking JSON that rc_json_scan has already accepted ---------------------------------
 *
 * For the rare messages whose members are not among the known keys (an observer's
 * "netsync_set", the REST bridge's "vars" object): a small cursor over members, with no
 * validation of its own — the text must come from a successful rc_json_scan, or be a span of
 * one. Never used on the publish hot path. */
typedef struct rc_json_iter {
    const char *p, *e;       /* next byte to look at, end of the object's text */
} rc_json_iter;

/* rc_json_iter_init starts a walk over the object that p[0..n) holds (whitespace around it is
 * allowed). Returns false when the value is not an object. */
bool rc_json_iter_init(rc_json_iter *it, const char *p, size_t n);

/* rc_json_iter_next yields the next member: its key as a raw string literal (quotes included)
 * and its raw value. Returns false after the last member. */
bool rc_json_iter_next(rc_json_iter *it, rc_json_span *key, rc_json_span *value);

/* rc_json_array_init / rc_json_array_next: the same cursor over the elements of an array
 * (a JWT's "aud" may be one). init returns false when p[0..n) is not an array; next yields
 * each element's raw value and returns false after the last. */
bool rc_json_array_init(rc_json_iter *it, const char *p, size_t n);
bool rc_json_array_next(rc_json_iter *it, rc_json_span *value);

/* rc_json_member finds the last top-level member named key (compared after unescaping) of the
 * object p[0..n). Returns false, with value->type RC_JSON_NONE, when there is none. */
bool rc_json_member(const char *p, size_t n, const char *key, rc_json_span *value);

/* rc_json_get_f64 parses a number span with strtod rules. Returns false otherwise. */
bool rc_json_get_f64(const rc_json_span *s, double *out);

#endif
