/*
 * db.c - the RocksDB wrapper (STYLE rule 16): the only file that includes <rocksdb/c.h>.
 *
 * Duties: open the database with its column families and modest memory settings, turn
 * every errptr into a negative errno at once (and free it), build keys in one place, and
 * hand out batches, snapshots and iterators that hide RocksDB's types. Nothing here knows
 * what a record is; core/journal.c gives the rows their meaning.
 *
 * Error mapping: a LOCK failure at open is -EBUSY (another process, or this one, holds the
 * database), "No space" is -ENOSPC, a missing database opened read-only is -ENOENT,
 * everything else -EIO. The message itself goes to the caller's err buffer at open, and to
 * the log (event 1101) afterwards.
 */
#include "core/db.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <rocksdb/c.h>

#include "core/event.h"

#define DB_BLOCK_CACHE       (8u << 20)
#define DB_WRITE_BUFFER      (8u << 20)
#define DB_TOTAL_MEMTABLES   (16u << 20)
#define DB_MAX_OPEN_FILES    256
#define DB_MAX_LOG_FILE_SIZE (1u << 20)
#define DB_INFO_LOG_HEADER   5 /* rocksdb::InfoLogLevel::HEADER_LEVEL */

/* RocksDB's own "default" family must be opened too; ours follow it. */
static const char *const cf_names[DB_CF_COUNT + 1] = {
	"default", "records", "names", "journal", "meta", "events",
};

struct db {
	rocksdb_t *rdb;
	rocksdb_options_t *opts;
	rocksdb_cache_t *cache;
	rocksdb_block_based_table_options_t *bbto;
	rocksdb_readoptions_t *ropts;
	rocksdb_writeoptions_t *wopts;
	rocksdb_writeoptions_t *wopts_sync;
	rocksdb_column_family_handle_t *cf[DB_CF_COUNT + 1]; /* [0] is "default" */
	bool read_only;
	/* 1101 for the same error at most once a minute (a full disk fails every write) */
	pthread_mutex_t err_lock;
	char err_last[256];
	int64_t err_logged_ns;
	uint64_t err_repeats; /* not logged since */
};

struct db_batch {
	struct db *db;
	rocksdb_writebatch_t *wb;
};

struct db_snapshot {
	const rocksdb_snapshot_t *snap;
};

struct db_iter {
	rocksdb_iterator_t *it;
	rocksdb_readoptions_t *ropts;
};

/*
 * Consumes @e (RocksDB's malloc'd message) and logs 1101. With @db, the same message again
 * within a minute is only counted, and the next line logged says how often it came: once
 * a write fails on a full disk, every later write fails the same way.
 */
static int db_err(struct db *db, char *e, const char *what)
{
	int rc = strstr(e, "No space left") ? -ENOSPC : -EIO;
	uint64_t repeats = 0;
	bool log = true;

	if (db) {
		int64_t now = dfsr_mono_ns();

		pthread_mutex_lock(&db->err_lock);
		if (strncmp(db->err_last, e, sizeof(db->err_last) - 1) == 0 &&
		    now - db->err_logged_ns < 60 * (int64_t)1000000000) {
			db->err_repeats++;
			log = false;
		} else {
			snprintf(db->err_last, sizeof(db->err_last), "%s", e);
			db->err_logged_ns = now;
			repeats = db->err_repeats;
			db->err_repeats = 0;
		}
		pthread_mutex_unlock(&db->err_lock);
	}
	if (log && repeats)
		event_log(EV_DB_ERROR, "op=%s error=\"%s\" repeated=%" PRIu64, what, e, repeats);
	else if (log)
		event_log(EV_DB_ERROR, "op=%s error=\"%s\"", what, e);
	rocksdb_free(e);
	return rc;
}

static rocksdb_column_family_handle_t *cfh(const struct db *db, enum db_cf cf)
{
	return db->cf[(size_t)cf + 1];
}

static void free_opts(struct db *db)
{
	if (db->ropts)
		rocksdb_readoptions_destroy(db->ropts);
	if (db->wopts)
		rocksdb_writeoptions_destroy(db->wopts);
	if (db->wopts_sync)
		rocksdb_writeoptions_destroy(db->wopts_sync);
	if (db->opts)
		rocksdb_options_destroy(db->opts);
	if (db->bbto)
		rocksdb_block_based_options_destroy(db->bbto);
	if (db->cache)
		rocksdb_cache_destroy(db->cache);
}

static int make_opts(struct db *db)
{
	db->opts = rocksdb_options_create();
	db->cache = rocksdb_cache_create_lru(DB_BLOCK_CACHE);
	db->bbto = rocksdb_block_based_options_create();
	db->ropts = rocksdb_readoptions_create();
	db->wopts = rocksdb_writeoptions_create();
	db->wopts_sync = rocksdb_writeoptions_create();
	if (!db->opts || !db->cache || !db->bbto || !db->ropts || !db->wopts || !db->wopts_sync)
		return -ENOMEM;
	rocksdb_block_based_options_set_block_cache(db->bbto, db->cache);
	rocksdb_options_set_block_based_table_factory(db->opts, db->bbto);
	rocksdb_options_set_create_if_missing(db->opts, 1);
	rocksdb_options_set_create_missing_column_families(db->opts, 1);
	rocksdb_options_set_write_buffer_size(db->opts, DB_WRITE_BUFFER);
	rocksdb_options_set_max_write_buffer_number(db->opts, 2);
	rocksdb_options_set_db_write_buffer_size(db->opts, DB_TOTAL_MEMTABLES);
	rocksdb_options_set_max_open_files(db->opts, DB_MAX_OPEN_FILES);
	rocksdb_options_set_max_log_file_size(db->opts, DB_MAX_LOG_FILE_SIZE);
	rocksdb_options_set_keep_log_file_num(db->opts, 3);
	rocksdb_options_set_max_total_wal_size(db->opts, 64u << 20);
	/* RocksDB's own text log (db/LOG) gets the header at open only. Debian's librocksdb
	 * keeps its assertions, and 7.8 asserts when that log is written again after a failed
	 * write (a full disk: the WAL append fails, the error handler logs it): the daemon
	 * would abort. Errors reach dfsr's own log as event 1101 anyway. */
	rocksdb_options_set_info_log_level(db->opts, DB_INFO_LOG_HEADER);
	rocksdb_writeoptions_set_sync(db->wopts, 0);
	rocksdb_writeoptions_set_sync(db->wopts_sync, 1);
	return 0;
}

static int open_rdb(struct db *db, const char *path, char err[static DB_ERR_LEN])
{
	const rocksdb_options_t *cfo[DB_CF_COUNT + 1];
	char *e = NULL;
	int rc;

	for (size_t i = 0; i <= DB_CF_COUNT; i++)
		cfo[i] = db->opts;
	if (db->read_only)
		db->rdb = rocksdb_open_for_read_only_column_families(
			db->opts, path, DB_CF_COUNT + 1, cf_names, cfo, db->cf, 0, &e);
	else
		db->rdb = rocksdb_open_column_families(db->opts, path, DB_CF_COUNT + 1, cf_names,
						       cfo, db->cf, &e);
	if (!e && db->rdb)
		return 0;
	if (!e)
		return -EIO;
	snprintf(err, DB_ERR_LEN, "%s: %s", path, e);
	if (strstr(e, "LOCK") || strstr(e, "lock hold"))
		rc = -EBUSY;
	else if (strstr(e, "No space left"))
		rc = -ENOSPC;
	else if (db->read_only && strstr(e, "No such file"))
		rc = -ENOENT;
	else
		rc = -EIO;
	if (rc == -EBUSY)
		snprintf(err, DB_ERR_LEN, "%s is locked by another dfsr process", path);
	rocksdb_free(e);
	return rc;
}

int db_open(const char *path, bool read_only, struct db **out, char err[static DB_ERR_LEN])
{
	struct db *db;
	int rc;

	err[0] = '\0';
	if (read_only) {
		char cur[4096];
		struct stat st;

		if ((size_t)snprintf(cur, sizeof(cur), "%s/CURRENT", path) >= sizeof(cur))
			return -ENAMETOOLONG;
		if (stat(cur, &st) < 0) {
			rc = -errno;
			snprintf(err, DB_ERR_LEN, "%s: no database (%s)", path, dfsr_strerror(rc));
			return rc == -ENOENT ? -ENOENT : rc;
		}
	}
	db = calloc(1, sizeof(*db));
	if (!db)
		return -ENOMEM;
	db->read_only = read_only;
	pthread_mutex_init(&db->err_lock, NULL);
	rc = make_opts(db);
	if (rc < 0) {
		snprintf(err, DB_ERR_LEN, "%s: out of memory", path);
		goto out_free;
	}
	rc = open_rdb(db, path, err);
	if (rc < 0)
		goto out_free;
	*out = db;
	return 0;
out_free:
	free_opts(db);
	pthread_mutex_destroy(&db->err_lock);
	free(db);
	return rc;
}

int db_flush(struct db *db)
{
	rocksdb_flushoptions_t *fo;
	int rc = 0;

	if (db->read_only)
		return 0;
	fo = rocksdb_flushoptions_create();
	if (!fo)
		return -ENOMEM;
	rocksdb_flushoptions_set_wait(fo, 1);
	for (size_t i = 0; i <= DB_CF_COUNT && rc == 0; i++) {
		char *e = NULL;

		rocksdb_flush_cf(db->rdb, fo, db->cf[i], &e);
		if (e)
			rc = db_err(db, e, "flush");
	}
	rocksdb_flushoptions_destroy(fo);
	return rc;
}

void db_close(struct db *db)
{
	if (!db)
		return;
	(void)db_flush(db);
	for (size_t i = 0; i <= DB_CF_COUNT; i++)
		if (db->cf[i])
			rocksdb_column_family_handle_destroy(db->cf[i]);
	rocksdb_close(db->rdb);
	free_opts(db);
	pthread_mutex_destroy(&db->err_lock);
	free(db);
}

bool db_read_only(const struct db *db)
{
	return db->read_only;
}

int db_get(struct db *db, const struct db_snapshot *snap, enum db_cf cf, const void *key,
	   size_t klen, struct dfsr_buf *val)
{
	rocksdb_readoptions_t *ro = db->ropts;
	char *e = NULL, *v;
	size_t vlen = 0;
	int rc;

	if (snap) {
		ro = rocksdb_readoptions_create();
		if (!ro)
			return -ENOMEM;
		rocksdb_readoptions_set_snapshot(ro, snap->snap);
	}
	v = rocksdb_get_cf(db->rdb, ro, cfh(db, cf), key, klen, &vlen, &e);
	if (snap)
		rocksdb_readoptions_destroy(ro);
	if (e)
		return db_err(db, e, "get");
	if (!v)
		return -ENOENT;
	val->len = 0;
	rc = dfsr_buf_add(val, v, vlen);
	rocksdb_free(v);
	return rc;
}

struct db_batch *db_batch_new(struct db *db)
{
	struct db_batch *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->db = db;
	b->wb = rocksdb_writebatch_create();
	if (!b->wb) {
		free(b);
		return NULL;
	}
	return b;
}

void db_batch_free(struct db_batch *b)
{
	if (!b)
		return;
	rocksdb_writebatch_destroy(b->wb);
	free(b);
}

void db_batch_clear(struct db_batch *b)
{
	rocksdb_writebatch_clear(b->wb);
}

void db_batch_put(struct db_batch *b, enum db_cf cf, const void *key, size_t klen, const void *val,
		  size_t vlen)
{
	rocksdb_writebatch_put_cf(b->wb, cfh(b->db, cf), key, klen, val, vlen);
}

void db_batch_delete(struct db_batch *b, enum db_cf cf, const void *key, size_t klen)
{
	rocksdb_writebatch_delete_cf(b->wb, cfh(b->db, cf), key, klen);
}

size_t db_batch_count(const struct db_batch *b)
{
	int n = rocksdb_writebatch_count(b->wb);

	return n > 0 ? (size_t)n : 0;
}

int db_batch_commit(struct db_batch *b, bool sync)
{
	char *e = NULL;

	if (b->db->read_only)
		return -EROFS;
	rocksdb_write(b->db->rdb, sync ? b->db->wopts_sync : b->db->wopts, b->wb, &e);
	if (e)
		return db_err(b->db, e, "write");
	return 0;
}

struct db_snapshot *db_snapshot_new(struct db *db)
{
	struct db_snapshot *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->snap = rocksdb_create_snapshot(db->rdb);
	return s;
}

void db_snapshot_free(struct db *db, struct db_snapshot *s)
{
	if (!s)
		return;
	rocksdb_release_snapshot(db->rdb, s->snap);
	free(s);
}

struct db_iter *db_iter_new(struct db *db, const struct db_snapshot *snap, enum db_cf cf)
{
	struct db_iter *it = calloc(1, sizeof(*it));

	if (!it)
		return NULL;
	it->ropts = rocksdb_readoptions_create();
	if (!it->ropts) {
		free(it);
		return NULL;
	}
	if (snap)
		rocksdb_readoptions_set_snapshot(it->ropts, snap->snap);
	it->it = rocksdb_create_iterator_cf(db->rdb, it->ropts, cfh(db, cf));
	if (!it->it) {
		rocksdb_readoptions_destroy(it->ropts);
		free(it);
		return NULL;
	}
	return it;
}

void db_iter_free(struct db_iter *it)
{
	if (!it)
		return;
	rocksdb_iter_destroy(it->it);
	rocksdb_readoptions_destroy(it->ropts);
	free(it);
}

void db_iter_seek(struct db_iter *it, const void *key, size_t klen)
{
	rocksdb_iter_seek(it->it, key, klen);
}

void db_iter_seek_first(struct db_iter *it)
{
	rocksdb_iter_seek_to_first(it->it);
}

bool db_iter_valid(const struct db_iter *it)
{
	return rocksdb_iter_valid(it->it) != 0;
}

void db_iter_next(struct db_iter *it)
{
	rocksdb_iter_next(it->it);
}

const uint8_t *db_iter_key(const struct db_iter *it, size_t *len)
{
	return (const uint8_t *)rocksdb_iter_key(it->it, len);
}

const uint8_t *db_iter_value(const struct db_iter *it, size_t *len)
{
	return (const uint8_t *)rocksdb_iter_value(it->it, len);
}

int db_iter_status(const struct db_iter *it)
{
	char *e = NULL;

	rocksdb_iter_get_error(it->it, &e);
	if (e)
		return db_err(NULL, e, "iterate");
	return 0;
}

void db_put_be64(uint8_t out[8], uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		out[i] = (uint8_t)(v & 0xff);
		v >>= 8;
	}
}

uint64_t db_get_be64(const uint8_t in[8])
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | in[i];
	return v;
}

size_t db_key_name(uint8_t out[static DB_KEY_NAME_MAX], const struct dfsr_uid *parent,
		   const char *name)
{
	size_t n = strnlen(name, 256);

	if (n > 255)
		return 0;
	memcpy(out, parent->b, DFSR_UID_LEN);
	memcpy(out + DFSR_UID_LEN, name, n);
	return DFSR_UID_LEN + n;
}

void db_key_event(uint8_t out[static DB_KEY_EVENT_LEN], int64_t time_ns, uint64_t n)
{
	db_put_be64(out, (uint64_t)time_ns ^ (1ull << 63));
	db_put_be64(out + 8, n);
}

int64_t db_key_event_time(const uint8_t in[static DB_KEY_EVENT_LEN])
{
	return (int64_t)(db_get_be64(in) ^ (1ull << 63));
}

/* ---- checkpoints (clone export) ------------------------------------------------------- */

int db_checkpoint(struct db *db, const char *dir, char err[static DB_ERR_LEN])
{
	rocksdb_checkpoint_t *cp;
	struct stat st;
	char *e = NULL;
	int rc = 0;

	err[0] = '\0';
	if (lstat(dir, &st) == 0) {
		snprintf(err, DB_ERR_LEN, "%s exists already", dir);
		return -EEXIST;
	}
	cp = rocksdb_checkpoint_object_create(db->rdb, &e);
	if (!e) /* 0: always flush the memtables, so the copy needs no WAL replay */
		rocksdb_checkpoint_create(cp, dir, 0, &e);
	if (e) {
		snprintf(err, DB_ERR_LEN, "checkpoint into %s: %s", dir, e);
		rc = db_err(db, e, "checkpoint");
	}
	if (cp)
		rocksdb_checkpoint_object_destroy(cp);
	return rc;
}
