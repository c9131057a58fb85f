/*
 * stage.h - the staging area of a replicated folder (DESIGN.md, "Replication" and
 * "Quotas"; the file format is in docs/on-disk.md, "Staging").
 *
 * Upstream side: a file version, named by (UID, GVSN), is staged once: read through a
 * descriptor, cut into content-defined chunks (core/chunk.h), each chunk zstd-compressed
 * (level 3, kept raw when compression does not make it smaller), and written as one file
 * in the staging directory (DfsrPrivate/Staging or the folder's staging_path):
 *
 *   <uid hex>-<gvsn database id hex>-<gvsn counter, 16 hex digits>.stg
 *
 * A staged file is published atomically (written under a ".tmp." name, renamed), so a
 * reader never sees half of one; leftovers of a crash (".tmp.*") are removed by
 * stage_open(). Staging is a cache and is not fsync'd: the marker ".unsynced" stays in the
 * directory while a stage is open, and a stage_open() that finds it (the last one was not
 * closed: a crash may have torn any staged file) removes every staged version. Every
 * partner is then served from it: chunk i is read decompressed and verified
 * (stage_version_read()) or as stored (stage_version_read_stored(), to send without
 * recompressing).
 *
 * Quota (soft): usage is the sum of the staged files' sizes. When it passes 90 % of the
 * quota, the oldest staged versions (by staging time) that are not in use are removed
 * until usage is under 60 %. A version is in use while it is pinned (stage_pin(), or an
 * open struct stage_version). Events: 4202 when the high watermark is passed, 4204 when
 * cleanup got under the low watermark, 4206 when it could not (everything left is in use,
 * or a removal failed), and 4208 when usage is still above the quota afterwards.
 *
 * A small file can instead be staged in memory (stage_memory()): chunked and compressed
 * the same way, held by its struct stage_version until closed, never written to the
 * staging directory nor counted in the quota.
 *
 * Downstream side: an assembler (struct stage_asm) builds one file version in the
 * Installing directory from its chunk list, chunk by chunk in any order, each chunk
 * verified against its SHA-256, and resumes after a restart by recognising the chunks
 * already written. stage_asm_finish() checks the whole-file digest and hands back a
 * descriptor ready to install (installing it, metadata and rename, is core/install's).
 *
 * Thread: a struct stage is safe from any thread (a mutex guards its table of staged
 * versions; chunking, compression and disk writes happen outside it). A struct
 * stage_version or struct stage_asm belongs to one thread at a time. Everything here
 * blocks on disk: pool threads only, never the loop thread.
 */
#ifndef DFSR_CORE_STAGE_H
#define DFSR_CORE_STAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/chunk.h"
#include "core/event.h"
#include "core/hash.h"
#include "core/util.h"
#include "core/version.h"

#define STAGE_NAME_LEN     88 /* 32 + 1 + 32 + 1 + 16 + ".stg" + NUL, rounded up */
#define STAGE_ASM_NAME_LEN 96 /* stage name with ".part" instead of ".stg" */
#define STAGE_LEVEL        3  /* zstd level */
#define STAGE_HIGH_PCT     90
#define STAGE_LOW_PCT      60

/* How a chunk is stored in a staged file (and sent on the wire). */
enum stage_codec {
	STAGE_CODEC_RAW = 0,
	STAGE_CODEC_ZSTD = 1,
};

/* A stored chunk is never larger than the chunk: compression that does not help is not
 * kept. */
#define STAGE_STORED_MAX CHUNK_MAX

/* One file version. */
struct stage_key {
	struct dfsr_uid uid;
	struct version_gvsn gvsn;
};

/**
 * stage_event_fn - Receives the quota events (4202, 4204, 4206, 4208).
 * @details: key=value text (used=, quota=, removed=, in_use=, err=)
 *
 * Called without any stage lock held, from the thread that staged or cleaned up.
 */
typedef void (*stage_event_fn)(void *arg, enum dfsr_event ev, const char *details);

struct stage_opts {
	int dir_fd;              /* the staging directory (O_PATH is enough); borrowed, only
				  * during stage_open(), which opens its own descriptor */
	uint64_t quota;          /* bytes; 0 means CONFIG_DEFAULT_STAGING_QUOTA */
	stage_event_fn event_fn; /* NULL: event_log() */
	void *event_arg;
	/* the database's reserve when staging is on the local path's disk (core/space.h):
	 * staging a version fails with -ENOSPC rather than eat it; NULL: none. Borrowed. */
	struct space *space;
};

struct stage;
struct space;

/* The file name of a staged version (see the header comment). */
void stage_name(const struct stage_key *k, char out[static STAGE_NAME_LEN]);

/**
 * stage_open() - Open a staging directory: remove leftovers of interrupted staging, load
 * the staged versions already there (oldest first by mtime, then name) and their usage,
 * or remove them all if the last stage on it was not closed; put the marker ".unsynced"
 * in place (durably). Files whose names are not staged-version names are left alone and
 * not counted.
 * @o:   options
 * @out: receives the staging area
 *
 * Thread: any.
 * Ownership: caller frees it with stage_close() (NULL-safe), after closing every
 * stage_version opened on it.
 * Return: 0, -ENOTDIR, -ENOMEM, or the -errno of opening or reading the directory.
 */
int stage_open(const struct stage_opts *o, struct stage **out);

/* stage_close() - syncfs() the staging directory's filesystem, then remove the marker:
 * the staged versions are kept for the next stage_open(). NULL-safe. */
void stage_close(struct stage *s);

/* Bytes used by staged versions, and how many there are. Thread: any. */
uint64_t stage_used(struct stage *s);
size_t stage_count(struct stage *s);
bool stage_has(struct stage *s, const struct stage_key *k);

/**
 * stage_file() - Stage the data of @fd as version @k, then run the quota check.
 * @s:      staging area
 * @k:      the version
 * @fd:     readable descriptor of the regular file (borrowed; read with pread())
 * @expect: the content digest the version must have (the record's), or NULL
 *
 * The file's size, mtime and ctime are compared before and after reading, and the digest
 * of what was read with @expect: if the file changed, nothing is published. A version
 * that is already staged is not staged again. The quota check that follows never removes
 * the version just staged (it is about to be served), so usage may exceed the quota
 * afterwards (it is soft): the events tell. A later cleanup (another stage_file(),
 * stage_cleanup()) may remove it unless it is pinned: pin it, or open it, before relying
 * on it (stage_pin() returns -ENOENT if it is already gone).
 *
 * Thread: any. Blocks on disk.
 * Return: 0, -EAGAIN if the file changed during staging (or does not match @expect),
 *         -EINVAL if @fd is not a regular file, -EFBIG (too many chunks), -ENOSPC, -EIO,
 *         -ENOMEM, or another -errno of reading or writing.
 */
int stage_file(struct stage *s, const struct stage_key *k, int fd, const uint8_t *expect);

/**
 * stage_pin() / stage_unpin() - Mark version @k in use (not removed by quota cleanup or
 * stage_remove()) or no longer. Pins count: each stage_pin() needs one stage_unpin().
 * Thread: any.
 * Return: 0, -ENOENT if @k is not staged (stage_unpin(): or not pinned).
 */
int stage_pin(struct stage *s, const struct stage_key *k);
int stage_unpin(struct stage *s, const struct stage_key *k);

/**
 * stage_remove() - Remove staged version @k (e.g. superseded by a newer version).
 * Thread: any.
 * Return: 0, -ENOENT, -EBUSY if it is in use, or the -errno of unlinkat().
 */
int stage_remove(struct stage *s, const struct stage_key *k);

/**
 * stage_cleanup() - Run the quota check now (stage_file() runs it after each staging).
 * Nothing happens at or under the high watermark.
 * Thread: any.
 * Return: 0 (nothing to do, or now under the low watermark), -EBUSY if the staged versions
 *         left are all in use, or the -errno of a removal that failed.
 */
int stage_cleanup(struct stage *s);

/**
 * stage_set_quota() - Change the quota (`dfsr reload`), then run the quota check at once:
 * a lower quota takes effect without waiting for the next staging.
 * @quota: bytes; 0 means CONFIG_DEFAULT_STAGING_QUOTA
 * Thread: any.
 * Return: as stage_cleanup().
 */
int stage_set_quota(struct stage *s, uint64_t quota);

/* ---- reading a staged version ---------------------------------------------------- */

struct stage_version;

/**
 * stage_version_open() - Open staged version @k for reading, and pin it until closed.
 * The file is checked: footer, key, chunk list (decoded as untrusted), index.
 * @out: receives the open version
 *
 * Thread: any.
 * Ownership: caller closes it with stage_version_close() (NULL-safe), before stage_close().
 * Return: 0, -ENOENT if not staged, -EBADMSG if the staged file is malformed, -ENOMEM,
 *         -EIO.
 */
int stage_version_open(struct stage *s, const struct stage_key *k, struct stage_version **out);

/**
 * stage_memory() - Stage the data of @fd as version @k in memory instead of in the
 * staging directory: for a small file, served once and dropped, reading it again is
 * cheaper than writing a staged file and reading that back. Chunked, compressed and
 * checked exactly as stage_file() does (same @expect, same -EAGAIN when the file changed
 * while it was read).
 * @out: receives the version, open; not pinned and not counted in the quota (the caller
 *       holds its memory, about the file's size, until stage_version_close())
 *
 * Thread: any. Blocks on disk.
 * Return: 0, -EAGAIN, -EINVAL if @fd is not a regular file, -EFBIG, -ENOMEM, -EIO, or
 *         another -errno of reading.
 */
int stage_memory(const struct stage_key *k, int fd, const uint8_t *expect,
		 struct stage_version **out);

void stage_version_close(struct stage_version *v);

/**
 * stage_version_stored() - Chunk @i as stored, in place, if @v is in memory
 * (stage_memory()): the bytes stay valid until stage_version_close().
 * @len:   receives the stored length
 * @codec: receives enum stage_codec
 *
 * Thread: any holder of @v.
 * Return: the stored bytes; NULL if @v is a staged file or @i is out of range.
 */
const uint8_t *stage_version_stored(const struct stage_version *v, size_t i, uint32_t *len,
				    uint8_t *codec);

/* The version's chunk list (borrowed from @v). */
const struct chunk_list *stage_version_list(const struct stage_version *v);

/**
 * stage_version_read() - Chunk @i, decompressed and verified against its SHA-256.
 * @buf: at least CHUNK_MAX bytes
 * @len: receives the chunk's length
 *
 * Thread: the version's owner. Blocks on disk.
 * Return: 0, -EINVAL if @i is out of range, -EBADMSG if the stored chunk is corrupt (does
 *         not decompress to its length or its SHA-256 differs), -ENOMEM, -EIO.
 */
int stage_version_read(struct stage_version *v, size_t i, uint8_t *buf, uint32_t *len);

/**
 * stage_version_read_stored() - Chunk @i as stored (to send without recompressing; the
 * receiver verifies it with stage_asm_put_stored()).
 * @buf:   at least STAGE_STORED_MAX bytes
 * @len:   receives the stored length
 * @codec: receives enum stage_codec
 *
 * Return: 0, -EINVAL if @i is out of range, -EIO (short file).
 */
int stage_version_read_stored(struct stage_version *v, size_t i, uint8_t *buf, uint32_t *len,
			      uint8_t *codec);

/* ---- assembling a downloaded version (downstream) ---------------------------------- */

struct stage_asm;

/* "<stage name without .stg>.part": the assembler's file in the Installing directory. */
void stage_asm_name(const struct stage_key *k, char out[static STAGE_ASM_NAME_LEN]);

/**
 * stage_asm_open() - Start or resume assembling version @k from chunk list @l.
 * @dir_fd: the Installing directory (O_PATH is enough); borrowed (the assembler opens
 *          its own descriptor of it, and one of its file)
 * @k:      the version
 * @l:      its chunk list (validated; borrowed, copied)
 * @out:    receives the assembler
 *
 * If the file exists with the right size, every chunk in it is read and those whose
 * SHA-256 matches count as received (so an interrupted download resumes); otherwise it
 * is (re)created empty at the right size.
 * Thread: any. Blocks on disk.
 * Ownership: free with stage_asm_free() (keeps the file for resuming) or stage_asm_abort()
 * (removes it).
 * Return: 0, -EINVAL if @l is not a valid list, -ENOMEM, -ENOSPC, -EIO, another -errno.
 */
int stage_asm_open(int dir_fd, const struct stage_key *k, const struct chunk_list *l,
		   struct stage_asm **out);

/* Frees the assembler and leaves its file for a later resume. NULL-safe. */
void stage_asm_free(struct stage_asm *a);

/* Removes the file and frees the assembler. NULL-safe. Return: 0 or unlinkat's -errno. */
int stage_asm_abort(struct stage_asm *a);

bool stage_asm_have(const struct stage_asm *a, size_t i);
/* Number of chunks not yet received. */
size_t stage_asm_missing(const struct stage_asm *a);

/**
 * stage_asm_put() - Write chunk @i.
 * @data: the chunk's bytes (untrusted)
 * @len:  their length
 *
 * A chunk already received is accepted again without writing.
 * Thread: the assembler's owner. Blocks on disk.
 * Return: 0, -EINVAL if @i is out of range, -EBADMSG if @len or the SHA-256 does not match
 *         the list (nothing written), -ENOSPC, -EIO.
 */
int stage_asm_put(struct stage_asm *a, size_t i, const void *data, size_t len);

/**
 * stage_asm_put_stored() - As stage_asm_put() for a chunk as stored (enum stage_codec),
 * decompressed first.
 * Return: as stage_asm_put(), and -EBADMSG for an unknown codec or data that does not
 *         decompress to exactly the chunk's length.
 */
int stage_asm_put_stored(struct stage_asm *a, size_t i, uint8_t codec, const void *data,
			 size_t len);

/**
 * stage_asm_put_hash() - Write @data (a chunk found elsewhere, e.g. in a local file
 * through the chunk index) at every missing position whose SHA-256 is its hash.
 * @written: receives how many positions were written (0 if none needed it)
 * Return: 0, -EINVAL if @len is outside [1, CHUNK_MAX], -ENOSPC, -EIO, -ENOMEM.
 */
int stage_asm_put_hash(struct stage_asm *a, const void *data, size_t len, size_t *written);

/**
 * stage_asm_seed() - Fill missing chunks from a local file: the data of @fd (typically the
 * previous version of the same file) is chunked like any file, and each of its chunks
 * whose SHA-256 the list names is written wherever it is still missing. A small edit of a
 * large file then leaves only the chunks around the edit to download.
 * @fd:    readable descriptor of a regular file; borrowed, read with pread()
 * @found: receives how many positions were filled
 *
 * Thread: the assembler's owner. Blocks on disk.
 * Return: 0, -EIO, -ENOSPC, -ENOMEM, or the -errno of reading @fd.
 */
int stage_asm_seed(struct stage_asm *a, int fd, size_t *found);

/**
 * stage_asm_finish() - Once every chunk is in: check the SHA-256 of all of it against
 * the list's digest. The file is not fsync'd: whoever installs it does (replica_install()).
 * @fd_out: receives a new O_RDWR descriptor of the file (still named stage_asm_name() in
 *          the Installing directory), ready to install; the caller closes it
 *
 * Thread: the assembler's owner. Blocks on disk.
 * Return: 0, -EAGAIN if chunks are missing, -EBADMSG if the whole-file digest differs
 *         (the file is then removed, because the list itself was wrong: free the
 *         assembler and start again from a fresh list), -EIO, -ENOMEM.
 */
int stage_asm_finish(struct stage_asm *a, int *fd_out);

/* The whole-file SHA-256 of the assembler's list: the data's, once stage_asm_finish()
 * returned 0. Thread: the assembler's owner. */
const uint8_t *stage_asm_digest(const struct stage_asm *a);

#endif
