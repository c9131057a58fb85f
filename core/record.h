/*
 * record.h - one file, folder or symbolic link of a replicated folder, as stored in the
 * database and (later) sent to partners: identity, place, version and stat data.
 *
 * The encoding is protobuf (core/dfsr.proto, message Record). record_decode() treats its
 * input as hostile: every field is checked after unpacking, and anything malformed is
 * -EBADMSG, never a partly filled record.
 *
 * Invariants of a decoded or encodable record: uid and parent are not zero; name is one
 * valid component (record_name_valid()); type is 'f', 'd' or 'l'; the gvsn's database id
 * is not zero and its counter > 0; the version vector is valid (core/version.h) and
 * contains the gvsn; the origin vector, when not empty, is valid, contains the gvsn and is
 * contained in the version vector; mode has permission bits only.
 *
 * Thread: no shared state.
 */
#ifndef DFSR_CORE_RECORD_H
#define DFSR_CORE_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/hash.h"
#include "core/util.h"
#include "core/version.h"

#define RECORD_NAME_MAX 255         /* bytes of one name component */
#define RECORD_ENC_MAX  (64 * 1024) /* bytes of one encoded record; larger input is refused */

enum record_type {
	RECORD_FILE = 'f',
	RECORD_DIR = 'd',
	RECORD_LINK = 'l',
};

struct record {
	struct dfsr_uid uid;
	struct dfsr_uid parent;
	char name[RECORD_NAME_MAX + 1];
	char type; /* enum record_type */
	struct version_gvsn gvsn;
	struct version_vector vv; /* owned */
	/*
	 * owned; empty when equal to vv. The vector of this version as it was made, before a
	 * conflict resolution merged the losers' vectors into vv (docs/conflicts.md §3): a
	 * member whose live version is in vv but not here held a loser, and preserves it.
	 */
	struct version_vector origin;
	uint8_t hash[HASH_LEN];    /* replication hash */
	uint8_t content[HASH_LEN]; /* content digest */
	uint64_t size;
	uint32_t mode; /* permission bits */
	uint32_t owner;
	uint32_t group;
	int64_t mtime_ns;
	int64_t ctime_ns;       /* local stat ctime; lets the scan skip unchanged entries */
	int64_t change_time_ns; /* when this version was made (conflict rules) */
	int64_t create_time_ns; /* when the UID was made (name conflicts) */
	bool tombstone;
	uint64_t seq; /* local journal sequence of this version; 0 if none */
};

/* An empty record (all zero, empty vector). */
void record_init(struct record *r);
/* Frees the vector; @r is empty afterwards. NULL-safe. */
void record_release(struct record *r);

/**
 * record_copy() - Deep copy.
 * Return: 0 or -ENOMEM (then @dst is unchanged).
 */
int record_copy(struct record *dst, const struct record *src);

/* True if @name is one component: 1..255 bytes, no '/', not "." or "..". */
bool record_name_valid(const char *name);

/* 'f', 'd', 'l' for S_IFREG, S_IFDIR, S_IFLNK; 0 for any other type. */
char record_type_of(uint32_t st_mode);

/**
 * record_encode() - Pack @r.
 * @out: receives the bytes (appended)
 *
 * Return: 0, -EINVAL if @r breaks an invariant, -ENOMEM.
 */
int record_encode(const struct record *r, struct dfsr_buf *out);

/**
 * record_decode() - Unpack and validate untrusted bytes.
 * @r:   receives the record; on success release it with record_release()
 * @buf: bytes
 * @len: their number
 *
 * Return: 0, -EBADMSG for anything malformed (then @r is empty), -ENOMEM.
 */
int record_decode(struct record *r, const uint8_t *buf, size_t len);

#endif
