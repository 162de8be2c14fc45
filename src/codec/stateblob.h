/* stateblob.h — the byte format of a room state snapshot (rooms/state.h), which the durable
 * log stores opaquely (store.h, the room's `state` file).
 *
 *   u64 upto | u32 count | count x ( u64 msg_id | u64 time_ms | u16 klen | u32 plen | key | payload )
 *
 * little-endian; upto is the msg_id through which the snapshot covers the room, each entry a
 * state key and the JSON text of its latest message. The reader checks every length against
 * the blob (it reads what a damaged or hostile file holds) and never allocates.
 */
#ifndef RC_STATEBLOB_H
#define RC_STATEBLOB_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* rc_state_blob_begin starts a blob in out; rc_state_blob_add appends one entry (count must
 * match the entries added). 0, or -1 when out of memory or a length does not fit. */
int rc_state_blob_begin(rc_buf *out, uint64_t upto, uint32_t count);
int rc_state_blob_add(rc_buf *out, uint64_t msg_id, uint64_t time_ms, const char *key,
                      size_t klen, const char *payload, size_t plen);

/* rc_state_blob_read checks blob[0..len) whole, then calls entry for each entry in order, with
 * pointers into the blob. Returns 0 (with *upto set), or -1 when malformed (nothing called). */
typedef void rc_state_blob_fn(void *arg, uint64_t msg_id, uint64_t time_ms, const char *key,
                              size_t klen, const char *payload, size_t plen);
int rc_state_blob_read(const char *blob, size_t len, uint64_t *upto, rc_state_blob_fn *entry,
                       void *arg);

#endif
