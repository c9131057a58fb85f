/*
 * db.h - the folder database: the one place that speaks RocksDB (STYLE rule 16).
 *
 * Column families (one per kind of row; keys are big-endian so range scans are ordered):
 *   records  uid (16)                         -> Record (core/record.h)
 *   names    parent uid (16) || name bytes    -> uid (16); live records only
 *   journal  be64 seq                         -> JournalEntry
 *   meta     short ASCII key ("folder")       -> Meta
 *   events   be64 (time_ns ^ 1<<63) || be64 n -> Event
 * Every multi-row change goes through one struct db_batch, committed atomically. The WAL is
 * on (a crash of the process never loses a committed batch) but not synced per write;
 * db_close() flushes the memtables.
 *
 * Memory is kept modest on purpose: an 8 MiB block cache shared by all column families,
 * 8 MiB write buffers, 16 MiB of memtables in total, 256 open files.
 *
 * Thread: a struct db is safe from any thread (RocksDB is); a batch, an iterator or a
 * snapshot belongs to one thread at a time.
 */
#ifndef DFSR_CORE_DB_H
#define DFSR_CORE_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

#define DB_ERR_LEN       512
#define DB_KEY_NAME_MAX  (DFSR_UID_LEN + 255) /* parent uid || name */
#define DB_KEY_EVENT_LEN 16

enum db_cf {
	DB_CF_RECORDS = 0,
	DB_CF_NAMES = 1,
	DB_CF_JOURNAL = 2,
	DB_CF_META = 3,
	DB_CF_EVENTS = 4,
	DB_CF_COUNT = 5
};

struct db;
struct db_batch;
struct db_iter;
struct db_snapshot;

/**
 * db_open() - Open (or, unless @read_only, create) the database at @path.
 * @path:      directory of the database (its parent must exist)
 * @read_only: open without the lock, for commands while a member runs
 * @out:       receives the database
 * @err:       receives one line saying what failed
 *
 * Thread: init.
 * Return: 0, -EBUSY if another process (or this one) holds the lock, -ENOENT if read-only
 *         and there is no database, -EIO, -ENOMEM.
 */
int db_open(const char *path, bool read_only, struct db **out, char err[static DB_ERR_LEN]);

/* Flush the memtables (if writable) and close. NULL-safe. Thread: init. */
void db_close(struct db *db);

bool db_read_only(const struct db *db);

/**
 * db_get() - Read one value.
 * @snap: snapshot to read from, or NULL for the latest data
 * @val:  receives the value (replacing its contents)
 *
 * Return: 0, -ENOENT, -EIO, -ENOMEM.
 */
int db_get(struct db *db, const struct db_snapshot *snap, enum db_cf cf, const void *key,
	   size_t klen, struct dfsr_buf *val);

/* A new empty batch for @db. Return: the batch, or NULL (-ENOMEM). */
struct db_batch *db_batch_new(struct db *db);
void db_batch_free(struct db_batch *b); /* NULL-safe */
void db_batch_clear(struct db_batch *b);
void db_batch_put(struct db_batch *b, enum db_cf cf, const void *key, size_t klen, const void *val,
		  size_t vlen);
void db_batch_delete(struct db_batch *b, enum db_cf cf, const void *key, size_t klen);
size_t db_batch_count(const struct db_batch *b);

/**
 * db_batch_commit() - Apply the batch atomically (WAL written, not synced unless @sync).
 * Return: 0, -ENOSPC, -EROFS (read-only database), -EIO.
 */
int db_batch_commit(struct db_batch *b, bool sync);

/* A consistent view of the database. Return: the snapshot, or NULL (-ENOMEM). */
struct db_snapshot *db_snapshot_new(struct db *db);
void db_snapshot_free(struct db *db, struct db_snapshot *s); /* NULL-safe */

/*
 * Iterators: an iterator reads one column family from @snap (or from an implicit snapshot
 * taken when it is made). Usage: seek, then while db_iter_valid(): key/value, next; at the
 * end db_iter_status() tells an error from the end of data.
 */
struct db_iter *db_iter_new(struct db *db, const struct db_snapshot *snap, enum db_cf cf);
void db_iter_free(struct db_iter *it); /* NULL-safe */
void db_iter_seek(struct db_iter *it, const void *key, size_t klen);
void db_iter_seek_first(struct db_iter *it);
bool db_iter_valid(const struct db_iter *it);
void db_iter_next(struct db_iter *it);
const uint8_t *db_iter_key(const struct db_iter *it, size_t *len);
const uint8_t *db_iter_value(const struct db_iter *it, size_t *len);
/* Return: 0 or -EIO. */
int db_iter_status(const struct db_iter *it);

/* Flush memtables to disk. Return: 0 or -EIO. */
int db_flush(struct db *db);

/**
 * db_checkpoint() - A consistent copy of the whole database in @dir (RocksDB checkpoint:
 * the live SST files hard-linked when @dir is on the same filesystem, copied otherwise,
 * the memtables flushed first), for `dfsr clone export` (core/clone.h).
 * @dir: must not exist yet; its parent must
 * @err: receives one line saying what failed
 *
 * Thread: any.
 * Return: 0, -EEXIST, -ENOSPC, -EIO, -ENOMEM.
 */
int db_checkpoint(struct db *db, const char *dir, char err[static DB_ERR_LEN]);

/* ---- key encoders (the only place keys are built) ----------------------------------- */

void db_put_be64(uint8_t out[8], uint64_t v);
uint64_t db_get_be64(const uint8_t in[8]);

/**
 * db_key_name() - parent uid || name.
 * Return: the key length; 0 if @name is longer than 255 bytes.
 */
size_t db_key_name(uint8_t out[static DB_KEY_NAME_MAX], const struct dfsr_uid *parent,
		   const char *name);

/* be64 (time ^ sign bit) || be64 n: orders all int64 times correctly. */
void db_key_event(uint8_t out[static DB_KEY_EVENT_LEN], int64_t time_ns, uint64_t n);
int64_t db_key_event_time(const uint8_t in[static DB_KEY_EVENT_LEN]);

#endif
