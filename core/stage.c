/*
 * stage.c - staged file versions (upstream) and the assembler (downstream).
 *
 * A staged version is one file, written front to back in a single pass over the source
 * (so that staging needs one read of the file and bounded memory, whatever its size):
 *
 *   "DFSRSTG1"                       8-byte header
 *   stored chunk 0, 1, ... n-1       zstd frames or raw bytes, back to back
 *   chunk list                       chunk_list_encode(), list_len bytes  <- trailer_off
 *   index: n x (u8 codec, be32 stored length)
 *   footer, 64 bytes: be64 trailer_off | be32 list_len | be32 0 | uid[16] | gvsn db[16]
 *                     | be64 gvsn counter | "DFSRSTGE"
 *
 * The chunk list and the index go last because they are known only once the whole file
 * has been read; the fixed-size footer finds them. Offsets of stored chunks are implied
 * by the index (8 + sum of the stored lengths before them) and must add up exactly to
 * trailer_off, so a truncated or padded file is refused. A staged file is local, but it
 * is decoded as strictly as anything from the network: a disk can lie too, and every
 * chunk is verified against its SHA-256 when read.
 *
 * The file is written under ".tmp.<pid>.<n>.<name>" and renamed into place: a version is
 * either fully staged or absent. Staging is a cache (any version can be staged again from
 * the file), so it is not fsync'd: while the stage is open, the marker file ".unsynced" is
 * in the directory (created and made durable by stage_open() before anything is staged,
 * removed by stage_close() after syncfs()). A stage opened with the marker present was
 * not closed cleanly, its files may be torn by a crash, and they are all removed. If the
 * marker cannot be made, every version is fsync'd (file and directory) as it is staged.
 * The source is checked
 * for change (size, mtime, ctime, inode before and after; digest against the record's)
 * before publishing; a file that changed is not staged (-EAGAIN) and the journal will
 * record the new version when it is closed.
 *
 * The quota table (struct stage) is an array with one entry per staged version, found by
 * key through an open-addressing hash index (linear probing, backward-shift deletion) of
 * array positions: with small files the table holds tens of thousands of versions, and
 * a linear search per lookup (several per served file) showed in profiles. Only the
 * quota cleanup walks the array (oldest unpinned first), and only over the watermark.
 * Age is the staging order (a sequence number), not the mtime, so that two versions
 * staged within one timestamp tick still have an order; after a restart the order is
 * rebuilt from (mtime, name).
 *
 * The assembler writes chunks with pwrite() at their offsets into a file preallocated at
 * the final size, without fsync per chunk: after a crash, stage_asm_open() re-hashes
 * every chunk region and keeps exactly those that match, so a torn chunk is simply asked
 * for again. The whole-file digest is checked once at the end.
 */
#include "core/stage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <zstd.h>

#include "core/config.h"
#include "core/space.h"

#define HDR_MAGIC    "DFSRSTG1"
#define FOOTER_MAGIC "DFSRSTGE"
#define HDR_LEN      8u
#define FOOTER_LEN   64u
#define INDEX_ENT    5u
#define TMP_PREFIX   ".tmp."
#define UNSYNCED     ".unsynced"
#define TMP_NAME_LEN 160

_Static_assert(STAGE_STORED_MAX == CHUNK_MAX, "stored chunks are never larger");

/* ---- small helpers ---------------------------------------------------------------- */

/* pread() exactly @len bytes at @off; a short file is -EIO. */
static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t r = pread(fd, p, len, (off_t)off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		p += r;
		len -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t r = pwrite(fd, p, len, (off_t)off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		p += r;
		len -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

/* A fresh O_RDONLY descriptor of the directory @fd (which may be O_PATH). */
static int reopen_dir(int fd)
{
	int d = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	return d < 0 ? -errno : d;
}

static bool key_equal(const struct stage_key *a, const struct stage_key *b)
{
	return dfsr_uid_equal(&a->uid, &b->uid) && dfsr_uid_equal(&a->gvsn.db, &b->gvsn.db) &&
	       a->gvsn.counter == b->gvsn.counter;
}

void stage_name(const struct stage_key *k, char out[static STAGE_NAME_LEN])
{
	char u[DFSR_UID_HEX_LEN], d[DFSR_UID_HEX_LEN];

	dfsr_uid_hex(&k->uid, u);
	dfsr_uid_hex(&k->gvsn.db, d);
	snprintf(out, STAGE_NAME_LEN, "%s-%s-%016" PRIx64 ".stg", u, d, k->gvsn.counter);
}

void stage_asm_name(const struct stage_key *k, char out[static STAGE_ASM_NAME_LEN])
{
	char u[DFSR_UID_HEX_LEN], d[DFSR_UID_HEX_LEN];

	dfsr_uid_hex(&k->uid, u);
	dfsr_uid_hex(&k->gvsn.db, d);
	snprintf(out, STAGE_ASM_NAME_LEN, "%s-%s-%016" PRIx64 ".part", u, d, k->gvsn.counter);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static bool parse_hex(const char *s, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

/* Parse exactly the form stage_name() writes (lower-case hex only). */
static bool parse_name(const char *name, struct stage_key *k)
{
	uint8_t ctr[8];

	if (strlen(name) != STAGE_NAME_LEN - 2 || name[32] != '-' || name[65] != '-' ||
	    strcmp(name + 82, ".stg") != 0)
		return false;
	if (!parse_hex(name, k->uid.b, DFSR_UID_LEN) ||
	    !parse_hex(name + 33, k->gvsn.db.b, DFSR_UID_LEN) || !parse_hex(name + 66, ctr, 8))
		return false;
	k->gvsn.counter = dfsr_get_be64(ctr);
	return true;
}

/* ---- the table of staged versions -------------------------------------------------- */

struct entry {
	struct stage_key key;
	uint64_t bytes;
	uint64_t seq;     /* staging order: smaller is older */
	int64_t mtime_ns; /* only to order the entries found by stage_open() */
	uint32_t pins;
	char name[STAGE_NAME_LEN];
};

struct stage {
	int dir_fd;          /* O_RDONLY directory; immutable */
	struct space *space; /* borrowed, immutable; NULL: none */
	uint64_t quota;
	stage_event_fn event_fn;
	void *event_arg;
	pthread_mutex_t lock; /* protects everything below; never held across a callback */
	struct entry *v;
	size_t n;
	size_t cap;
	size_t *idx;    /* hash index: position in v + 1, 0 = empty slot */
	size_t idx_cap; /* a power of two, 0 or at least twice n */
	uint64_t used;
	uint64_t next_seq;
	uint64_t tmp_seq;
	bool discard;  /* stage_open(): the marker was there, remove every staged version */
	bool unsynced; /* the marker is in place: staged versions are not fsync'd */
};

static size_t key_hash(const struct stage_key *k)
{
	uint64_t a, b, c;

	memcpy(&a, k->uid.b, 8);
	memcpy(&b, k->uid.b + 8, 8);
	memcpy(&c, k->gvsn.db.b, 8);
	a ^= b * 0x9e3779b97f4a7c15ull ^ c * 0xc2b2ae3d27d4eb4full ^ k->gvsn.counter;
	a ^= a >> 31;
	a *= 0xbf58476d1ce4e5b9ull;
	a ^= a >> 29;
	return (size_t)a;
}

/* The index slot that holds position @pos (+ 1) of s->v, or of @k if pos is SIZE_MAX;
 * the empty slot where @k would go if absent. */
static size_t slot_of(const struct stage *s, const struct stage_key *k, size_t pos)
{
	size_t mask = s->idx_cap - 1, i = key_hash(k) & mask;

	while (s->idx[i]) {
		if (pos == SIZE_MAX ? key_equal(&s->v[s->idx[i] - 1].key, k) : s->idx[i] == pos + 1)
			break;
		i = (i + 1) & mask;
	}
	return i;
}

/* Rebuild the index with @cap slots (a power of two > n). */
static int index_build(struct stage *s, size_t cap)
{
	size_t *idx = calloc(cap, sizeof(*idx));

	if (!idx)
		return -ENOMEM;
	free(s->idx);
	s->idx = idx;
	s->idx_cap = cap;
	for (size_t i = 0; i < s->n; i++)
		s->idx[slot_of(s, &s->v[i].key, SIZE_MAX)] = i + 1;
	return 0;
}

/* Remove slot @i, shifting back the entries of its probe run (no tombstones). */
static void index_del(struct stage *s, size_t i)
{
	size_t mask = s->idx_cap - 1, j = i;

	for (;;) {
		size_t home;

		s->idx[i] = 0;
		for (;;) {
			j = (j + 1) & mask;
			if (!s->idx[j])
				return;
			home = key_hash(&s->v[s->idx[j] - 1].key) & mask;
			/* j's entry may move to i unless its home lies cyclically in (i, j] */
			if (i <= j ? (home <= i || home > j) : (home <= i && home > j))
				break;
		}
		s->idx[i] = s->idx[j];
		i = j;
	}
}

static struct entry *find_locked(struct stage *s, const struct stage_key *k)
{
	size_t i;

	if (!s->idx_cap)
		return NULL;
	i = slot_of(s, k, SIZE_MAX);
	return s->idx[i] ? &s->v[s->idx[i] - 1] : NULL;
}

static int add_locked(struct stage *s, const struct entry *e)
{
	if ((s->n + 1) * 2 > s->idx_cap) {
		size_t cap = s->idx_cap ? s->idx_cap * 2 : 64;
		int rc;

		if (cap < s->idx_cap || cap > SIZE_MAX / sizeof(size_t))
			return -EOVERFLOW;
		rc = index_build(s, cap);
		if (rc < 0)
			return rc;
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 32, bytes;
		struct entry *v;

		if (__builtin_mul_overflow(cap, sizeof(*v), &bytes))
			return -EOVERFLOW;
		v = realloc(s->v, bytes);
		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	s->idx[slot_of(s, &e->key, SIZE_MAX)] = s->n + 1;
	s->v[s->n++] = *e;
	s->used += e->bytes;
	return 0;
}

static void drop_locked(struct stage *s, struct entry *e)
{
	size_t pos = (size_t)(e - s->v), last = s->n - 1;

	s->used -= e->bytes;
	index_del(s, slot_of(s, &e->key, pos));
	if (pos != last) {
		s->idx[slot_of(s, &s->v[last].key, last)] = pos + 1;
		*e = s->v[last];
	}
	s->n--;
}

static int cmp_loaded(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;

	if (x->mtime_ns != y->mtime_ns)
		return x->mtime_ns < y->mtime_ns ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int load_one(struct stage *s, const char *name)
{
	struct entry e = { 0 };
	struct stat st;

	if (strncmp(name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0) {
		/* Leftover of staging interrupted by a crash: never published. */
		if (unlinkat(s->dir_fd, name, 0) < 0 && errno != ENOENT)
			return -errno;
		return 0;
	}
	if (!parse_name(name, &e.key))
		return 0;
	if (s->discard) {
		/* Staged without fsync before a crash: maybe torn. */
		if (unlinkat(s->dir_fd, name, 0) < 0 && errno != ENOENT)
			return -errno;
		return 0;
	}
	if (fstatat(s->dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISREG(st.st_mode))
		return 0;
	e.bytes = (uint64_t)st.st_size;
	e.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	snprintf(e.name, sizeof(e.name), "%s", name);
	return add_locked(s, &e);
}

static int load(struct stage *s)
{
	struct dirent *de;
	DIR *dir;
	int fd, rc = 0;

	fd = reopen_dir(s->dir_fd);
	if (fd < 0)
		return fd;
	dir = fdopendir(fd);
	if (!dir) {
		rc = -errno;
		close(fd);
		return rc;
	}
	while (rc == 0) {
		errno = 0;
		de = readdir(dir);
		if (!de) {
			rc = -errno;
			break;
		}
		rc = load_one(s, de->d_name);
	}
	closedir(dir);
	if (rc < 0)
		return rc;
	if (s->n)
		qsort(s->v, s->n, sizeof(*s->v), cmp_loaded);
	for (size_t i = 0; i < s->n; i++)
		s->v[i].seq = s->next_seq++;
	return s->idx_cap ? index_build(s, s->idx_cap) : 0; /* positions moved */
}

/* Put the marker in place, durably, before anything is staged without fsync. */
static void unsynced_start(struct stage *s)
{
	int fd = openat(s->dir_fd, UNSYNCED, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd < 0)
		return;
	s->unsynced = fsync(fd) == 0 && fsync(s->dir_fd) == 0;
	close(fd);
}

int stage_open(const struct stage_opts *o, struct stage **out)
{
	struct stage *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return -ENOMEM;
	s->quota = o->quota ? o->quota : CONFIG_DEFAULT_STAGING_QUOTA;
	s->space = o->space;
	s->event_fn = o->event_fn;
	s->event_arg = o->event_arg;
	s->dir_fd = reopen_dir(o->dir_fd);
	if (s->dir_fd < 0) {
		rc = s->dir_fd;
		goto out_free;
	}
	rc = -pthread_mutex_init(&s->lock, NULL);
	if (rc < 0)
		goto out_close;
	s->discard = faccessat(s->dir_fd, UNSYNCED, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
	rc = load(s);
	if (rc < 0)
		goto out_mutex;
	s->discard = false;
	unsynced_start(s); /* kept if it was there: its removal waits for a clean close */
	*out = s;
	return 0;
out_mutex:
	pthread_mutex_destroy(&s->lock);
out_close:
	close(s->dir_fd);
out_free:
	free(s->v);
	free(s->idx);
	free(s);
	return rc;
}

void stage_close(struct stage *s)
{
	if (!s)
		return;
	/* Everything staged is durable before the marker goes (else: all removed at open). */
	if (s->unsynced && syncfs(s->dir_fd) == 0 && unlinkat(s->dir_fd, UNSYNCED, 0) == 0)
		(void)fsync(s->dir_fd);
	pthread_mutex_destroy(&s->lock);
	close(s->dir_fd);
	free(s->v);
	free(s->idx);
	free(s);
}

uint64_t stage_used(struct stage *s)
{
	uint64_t used;

	pthread_mutex_lock(&s->lock);
	used = s->used;
	pthread_mutex_unlock(&s->lock);
	return used;
}

size_t stage_count(struct stage *s)
{
	size_t n;

	pthread_mutex_lock(&s->lock);
	n = s->n;
	pthread_mutex_unlock(&s->lock);
	return n;
}

bool stage_has(struct stage *s, const struct stage_key *k)
{
	bool has;

	pthread_mutex_lock(&s->lock);
	has = find_locked(s, k) != NULL;
	pthread_mutex_unlock(&s->lock);
	return has;
}

int stage_pin(struct stage *s, const struct stage_key *k)
{
	struct entry *e;
	int rc = -ENOENT;

	pthread_mutex_lock(&s->lock);
	e = find_locked(s, k);
	if (e) {
		e->pins++;
		rc = 0;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int stage_unpin(struct stage *s, const struct stage_key *k)
{
	struct entry *e;
	int rc = -ENOENT;

	pthread_mutex_lock(&s->lock);
	e = find_locked(s, k);
	if (e && e->pins) {
		e->pins--;
		rc = 0;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int stage_remove(struct stage *s, const struct stage_key *k)
{
	struct entry *e;
	int rc = 0;

	pthread_mutex_lock(&s->lock);
	e = find_locked(s, k);
	if (!e)
		rc = -ENOENT;
	else if (e->pins)
		rc = -EBUSY;
	else if (unlinkat(s->dir_fd, e->name, 0) < 0 && errno != ENOENT)
		rc = -errno;
	else
		drop_locked(s, e);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

/* ---- quota cleanup ---------------------------------------------------------------- */

struct evq {
	int n;
	enum dfsr_event ev[3];
	char det[3][192];
};

static void evq_push(struct evq *q, enum dfsr_event ev, const char *fmt, ...) DFSR_PRINTF(3, 4);

static void evq_push(struct evq *q, enum dfsr_event ev, const char *fmt, ...)
{
	va_list ap;

	if (q->n >= (int)DFSR_ARRAY_SIZE(q->ev))
		return;
	va_start(ap, fmt);
	vsnprintf(q->det[q->n], sizeof(q->det[q->n]), fmt, ap);
	va_end(ap);
	q->ev[q->n++] = ev;
}

static void evq_emit(struct stage *s, const struct evq *q)
{
	for (int i = 0; i < q->n; i++) {
		if (s->event_fn)
			s->event_fn(s->event_arg, q->ev[i], q->det[i]);
		else
			event_log(q->ev[i], "%s", q->det[i]);
	}
}

/* @pct percent of the quota, without overflow for any quota. */
static uint64_t watermark(uint64_t quota, unsigned pct)
{
	return quota / 100 * pct + quota % 100 * pct / 100;
}

/* The oldest version not in use, other than @spare (may be NULL). */
static struct entry *oldest_unpinned_locked(struct stage *s, const struct stage_key *spare)
{
	struct entry *best = NULL;

	for (size_t i = 0; i < s->n; i++) {
		if (s->v[i].pins || (spare && key_equal(&s->v[i].key, spare)))
			continue;
		if (!best || s->v[i].seq < best->seq)
			best = &s->v[i];
	}
	return best;
}

static size_t pinned_locked(const struct stage *s)
{
	size_t n = 0;

	for (size_t i = 0; i < s->n; i++)
		n += s->v[i].pins ? 1 : 0;
	return n;
}

static int cleanup_locked(struct stage *s, const struct stage_key *spare, struct evq *q)
{
	uint64_t high = watermark(s->quota, STAGE_HIGH_PCT),
		 low = watermark(s->quota, STAGE_LOW_PCT);
	size_t removed = 0;
	struct entry *e;
	int rc = 0;

	if (s->used <= high)
		return 0;
	evq_push(q, EV_STAGING_HIGH_WATERMARK, "used=%" PRIu64 " quota=%" PRIu64, s->used,
		 s->quota);
	while (s->used >= low && (e = oldest_unpinned_locked(s, spare))) {
		if (unlinkat(s->dir_fd, e->name, 0) < 0 && errno != ENOENT) {
			rc = -errno;
			break;
		}
		drop_locked(s, e);
		removed++;
	}
	if (s->used < low) {
		evq_push(q, EV_STAGING_CLEANUP_DONE, "removed=%zu used=%" PRIu64 " quota=%" PRIu64,
			 removed, s->used, s->quota);
		return 0;
	}
	evq_push(q, EV_STAGING_CLEANUP_FAILED,
		 "removed=%zu used=%" PRIu64 " quota=%" PRIu64 " in_use=%zu err=%s", removed,
		 s->used, s->quota, pinned_locked(s), rc ? dfsr_strerror(rc) : "all-in-use");
	/* 4208 says every entry is in use: not after a removal that failed (4206 says why) */
	if (rc == 0 && s->used > s->quota)
		evq_push(q, EV_STAGING_OVER_QUOTA, "used=%" PRIu64 " quota=%" PRIu64 " in_use=%zu",
			 s->used, s->quota, pinned_locked(s));
	return rc ? rc : -EBUSY;
}

static int cleanup(struct stage *s, const struct stage_key *spare)
{
	struct evq q = { 0 };
	int rc;

	pthread_mutex_lock(&s->lock);
	rc = cleanup_locked(s, spare, &q);
	pthread_mutex_unlock(&s->lock);
	evq_emit(s, &q);
	return rc;
}

int stage_cleanup(struct stage *s)
{
	return cleanup(s, NULL);
}

int stage_set_quota(struct stage *s, uint64_t quota)
{
	pthread_mutex_lock(&s->lock);
	s->quota = quota ? quota : CONFIG_DEFAULT_STAGING_QUOTA;
	pthread_mutex_unlock(&s->lock);
	return cleanup(s, NULL);
}

/* ---- staging a version ------------------------------------------------------------ */

/*
 * Incompressible data (media, archives, encrypted or already compressed files: common on a
 * file server) costs zstd nearly as much time to find out as text costs to compress (1.7
 * GB/s at level 3 on this kind of machine). So a chunk larger than 4 * STAGE_Z_SAMPLE is
 * first tried on its first STAGE_Z_SAMPLE bytes (about a tenth of the time), and stored raw
 * if those do not shrink at all. A chunk that starts incompressible and turns compressible
 * further on is stored raw: a little space, never correctness. The sample is tried at
 * zstd's level 1 (STAGE_Z_PROBE_LEVEL): a sample that level 1 cannot shrink at all would
 * gain next to nothing at level 3, and the probe costs half as much (a 4 KiB sample of
 * random data: 5-6 us of CPU against 9-12 us at level 3, where zstd's setup for each call
 * is most of the time). The chunk itself is then compressed at STAGE_LEVEL as before.
 */
#define STAGE_Z_SAMPLE      4096
#define STAGE_Z_PROBE_LEVEL 1

/* What one pass over the source produced. */
struct writer {
	int out;                /* the temporary file */
	uint64_t off;           /* bytes written so far */
	struct chunk_list list; /* chunk lengths and hashes; size and digest at the end */
	struct dfsr_buf index;  /* INDEX_ENT bytes per chunk */
	ZSTD_CCtx *cctx;
	uint8_t *zbuf;        /* STAGE_STORED_MAX */
	bool sync;            /* fsync the file (no marker, see the top) */
	struct dfsr_buf *mem; /* stage_memory(): the stored chunks go here, not to out */
	struct space *space;  /* asked before each write to out; NULL: none */
};

/* The stored bytes of the version being written, to the file or to memory. */
static int writer_put(struct writer *w, const void *p, size_t len)
{
	int rc;

	if (w->mem)
		return dfsr_buf_add(w->mem, p, len);
	rc = space_take(w->space, len);
	return rc < 0 ? rc : dfsr_write_all(w->out, p, len);
}

static int write_chunk(struct writer *w, const struct chunk_piece *pc)
{
	uint8_t ent[INDEX_ENT];
	const void *src = pc->data;
	size_t stored = pc->len;
	bool try = true;
	size_t z;
	int rc;

	ent[0] = STAGE_CODEC_RAW;
	/* A chunk whose first STAGE_Z_SAMPLE bytes do not shrink is stored raw untried. */
	if (pc->len > 4 * STAGE_Z_SAMPLE) {
		z = ZSTD_compressCCtx(w->cctx, w->zbuf, STAGE_STORED_MAX, pc->data, STAGE_Z_SAMPLE,
				      STAGE_Z_PROBE_LEVEL);
		try = !ZSTD_isError(z) && z < STAGE_Z_SAMPLE;
	}
	z = try ? ZSTD_compressCCtx(w->cctx, w->zbuf, STAGE_STORED_MAX, pc->data, pc->len,
				    STAGE_LEVEL)
		: pc->len;
	/* Kept only if it helps; an error here is most often "does not fit": store raw. */
	if (!ZSTD_isError(z) && z < pc->len) {
		ent[0] = STAGE_CODEC_ZSTD;
		src = w->zbuf;
		stored = z;
	}
	dfsr_put_be32(ent + 1, (uint32_t)stored);
	rc = chunk_list_add(&w->list, pc->len, pc->hash);
	if (rc == 0)
		rc = dfsr_buf_add(&w->index, ent, sizeof(ent));
	if (rc == 0)
		rc = writer_put(w, src, stored);
	if (rc == 0)
		w->off += stored;
	return rc;
}

/* @limit: the size the source had before; reading past it means it is growing. */
static int write_body(struct writer *w, int src, uint64_t limit)
{
	struct chunk_stream *cs;
	struct chunk_piece pc;
	uint64_t size;
	int rc;

	if (!w->mem) {
		rc = dfsr_write_all(w->out, HDR_MAGIC, HDR_LEN);
		if (rc < 0)
			return rc;
		w->off = HDR_LEN;
	}
	rc = chunk_stream_new(src, &cs);
	if (rc < 0)
		return rc;
	while ((rc = chunk_stream_next(cs, &pc)) > 0) {
		rc = pc.off + pc.len > limit ? -EAGAIN : write_chunk(w, &pc);
		if (rc < 0)
			break;
	}
	if (rc == 0)
		rc = chunk_stream_finish(cs, w->list.digest, &size);
	if (rc == 0 && size != w->list.size)
		rc = -EIO;
	chunk_stream_free(cs);
	return rc;
}

static int write_trailer(struct writer *w, const struct stage_key *k)
{
	uint8_t foot[FOOTER_LEN] = { 0 };
	struct dfsr_buf enc;
	int rc;

	dfsr_buf_init(&enc);
	rc = chunk_list_encode(&w->list, &enc);
	if (rc < 0)
		goto out_release;
	dfsr_put_be64(foot, w->off);
	dfsr_put_be32(foot + 8, (uint32_t)enc.len);
	memcpy(foot + 16, k->uid.b, DFSR_UID_LEN);
	memcpy(foot + 32, k->gvsn.db.b, DFSR_UID_LEN);
	dfsr_put_be64(foot + 48, k->gvsn.counter);
	memcpy(foot + 56, FOOTER_MAGIC, 8);
	rc = dfsr_write_all(w->out, enc.p, enc.len);
	if (rc == 0)
		rc = dfsr_write_all(w->out, w->index.p, w->index.len);
	if (rc == 0)
		rc = dfsr_write_all(w->out, foot, sizeof(foot));
	if (rc == 0 && w->sync && fsync(w->out) < 0)
		rc = -errno;
out_release:
	dfsr_buf_release(&enc);
	return rc;
}

static bool same_file_state(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Read, chunk, compress and write the version into w->out; -EAGAIN if the source moved. */
static int write_version(struct writer *w, const struct stage_key *k, int src,
			 const uint8_t *expect)
{
	struct stat before, after;
	int rc;

	if (fstat(src, &before) < 0)
		return -errno;
	if (!S_ISREG(before.st_mode))
		return -EINVAL;
	rc = write_body(w, src, (uint64_t)before.st_size);
	if (rc < 0)
		return rc;
	if (fstat(src, &after) < 0)
		return -errno;
	if (!same_file_state(&before, &after) || w->list.size != (uint64_t)after.st_size)
		return -EAGAIN;
	if (expect && crypto_verify_32(expect, w->list.digest) != 0)
		return -EAGAIN;
	return w->mem ? 0 : write_trailer(w, k);
}

/* Rename the finished temporary file into place and account for it. */
static int publish(struct stage *s, const struct stage_key *k, const char *tmp, uint64_t bytes)
{
	struct entry e = { .key = *k, .bytes = bytes };
	struct entry *old;
	int rc = 0;

	stage_name(k, e.name);
	pthread_mutex_lock(&s->lock);
	/* Renamed under the lock so that a cleanup never sees the name without its entry. */
	if (renameat(s->dir_fd, tmp, s->dir_fd, e.name) < 0) {
		rc = -errno;
		goto out_unlock;
	}
	old = find_locked(s, k);
	if (old) {
		/* Staged concurrently by another thread: same content, replaced in place. */
		s->used = s->used - old->bytes + bytes;
		old->bytes = bytes;
		goto out_unlock;
	}
	e.seq = s->next_seq++;
	rc = add_locked(s, &e);
out_unlock:
	pthread_mutex_unlock(&s->lock);
	if (rc == 0 && !s->unsynced && fsync(s->dir_fd) < 0)
		rc = -errno;
	return rc;
}

/*
 * A compression context and its output buffer per thread, made at the thread's first
 * staging and freed when the thread ends: a new context per staged version (zeroing its
 * tables, mapping a fresh buffer) cost more than compressing a small file.
 */
struct zctx {
	ZSTD_CCtx *cctx;
	uint8_t *zbuf; /* STAGE_STORED_MAX */
};

static pthread_key_t zctx_key;
static pthread_once_t zctx_once = PTHREAD_ONCE_INIT;
static bool zctx_keyed;

static void zctx_free(void *p)
{
	struct zctx *z = p;

	ZSTD_freeCCtx(z->cctx);
	free(z->zbuf);
	free(z);
}

static void zctx_key_make(void)
{
	zctx_keyed = pthread_key_create(&zctx_key, zctx_free) == 0;
}

static struct zctx *zctx_get(void)
{
	struct zctx *z;

	pthread_once(&zctx_once, zctx_key_make);
	if (!zctx_keyed)
		return NULL;
	z = pthread_getspecific(zctx_key);
	if (z)
		return z;
	z = calloc(1, sizeof(*z));
	if (!z)
		return NULL;
	z->cctx = ZSTD_createCCtx();
	z->zbuf = malloc(STAGE_STORED_MAX);
	if (!z->cctx || !z->zbuf || pthread_setspecific(zctx_key, z) != 0) {
		zctx_free(z);
		return NULL;
	}
	return z;
}

static int writer_init(struct writer *w)
{
	struct zctx *z = zctx_get();

	memset(w, 0, sizeof(*w));
	w->out = -1;
	chunk_list_init(&w->list);
	dfsr_buf_init(&w->index);
	if (!z)
		return -ENOMEM;
	w->cctx = z->cctx; /* the thread's, borrowed until writer_release() */
	w->zbuf = z->zbuf;
	return 0;
}

static void writer_release(struct writer *w)
{
	chunk_list_release(&w->list);
	dfsr_buf_release(&w->index);
}

int stage_file(struct stage *s, const struct stage_key *k, int fd, const uint8_t *expect)
{
	char name[STAGE_NAME_LEN], tmp[TMP_NAME_LEN];
	struct writer w;
	uint64_t seq;
	int rc;

	if (stage_has(s, k))
		return 0;
	rc = writer_init(&w);
	if (rc < 0)
		return rc;
	w.sync = !s->unsynced;
	w.space = s->space;
	stage_name(k, name);
	pthread_mutex_lock(&s->lock);
	seq = s->tmp_seq++;
	pthread_mutex_unlock(&s->lock);
	snprintf(tmp, sizeof(tmp), TMP_PREFIX "%d.%" PRIu64 ".%s", (int)getpid(), seq, name);
	w.out = openat(s->dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (w.out < 0) {
		rc = -errno;
		goto out_release;
	}
	rc = write_version(&w, k, fd, expect);
	if (rc == 0)
		rc = publish(s, k, tmp,
			     w.off + w.index.len + chunk_list_encoded_len(w.list.n) + FOOTER_LEN);
	close(w.out);
	if (rc < 0)
		unlinkat(s->dir_fd, tmp, 0);
out_release:
	writer_release(&w);
	if (rc == 0)
		cleanup(s, k); /* never the version just staged: it is about to be served */
	return rc;
}

/* ---- reading a staged version ----------------------------------------------------- */

struct stored {
	uint64_t off;
	uint32_t len;
	uint8_t codec;
};

struct stage_version {
	struct stage *s; /* borrowed; pinned while open (NULL: in memory, stage_memory()) */
	struct stage_key key;
	int fd;       /* the staged file; -1 in memory */
	uint8_t *mem; /* in memory: the stored chunks, back to back */
	struct chunk_list list;
	struct stored *st; /* list.n entries */
	ZSTD_DCtx *dctx;
	uint8_t *zbuf; /* STAGE_STORED_MAX */
};

/* Footer: where the trailer is and whose version this is. */
static int check_footer(const uint8_t *f, const struct stage_key *k, uint64_t size, uint64_t *toff,
			uint32_t *llen)
{
	struct stage_key got;

	memcpy(got.uid.b, f + 16, DFSR_UID_LEN);
	memcpy(got.gvsn.db.b, f + 32, DFSR_UID_LEN);
	got.gvsn.counter = dfsr_get_be64(f + 48);
	if (memcmp(f + 56, FOOTER_MAGIC, 8) != 0 || dfsr_get_be32(f + 12) != 0 ||
	    !key_equal(&got, k))
		return -EBADMSG;
	*toff = dfsr_get_be64(f);
	*llen = dfsr_get_be32(f + 8);
	if (*toff < HDR_LEN || *toff > size - FOOTER_LEN || *llen > size - FOOTER_LEN - *toff)
		return -EBADMSG;
	return 0;
}

/* Index after the list: codecs and stored lengths, which must tile [@base, @toff). */
static int parse_index(struct stage_version *v, const uint8_t *p, size_t len, uint64_t base,
		       uint64_t toff)
{
	uint64_t off = base;
	size_t bytes;

	if (len != v->list.n * INDEX_ENT)
		return -EBADMSG;
	if (__builtin_mul_overflow(v->list.n ? v->list.n : 1, sizeof(*v->st), &bytes))
		return -EBADMSG;
	v->st = calloc(1, bytes);
	if (!v->st)
		return -ENOMEM;
	for (size_t i = 0; i < v->list.n; i++, p += INDEX_ENT) {
		struct stored *e = &v->st[i];

		e->codec = p[0];
		e->len = dfsr_get_be32(p + 1);
		e->off = off;
		if (e->codec == STAGE_CODEC_RAW ? e->len != v->list.v[i].len
						: e->codec != STAGE_CODEC_ZSTD || e->len == 0 ||
							  e->len >= v->list.v[i].len)
			return -EBADMSG;
		off += e->len;
	}
	return off == toff ? 0 : -EBADMSG;
}

static int parse_version(struct stage_version *v)
{
	uint8_t hdr[HDR_LEN], foot[FOOTER_LEN];
	uint64_t size, toff, tlen;
	uint8_t *trailer;
	uint32_t llen;
	struct stat st;
	int rc;

	if (fstat(v->fd, &st) < 0)
		return -errno;
	size = (uint64_t)st.st_size;
	if (size < HDR_LEN + FOOTER_LEN)
		return -EBADMSG;
	rc = pread_all(v->fd, hdr, HDR_LEN, 0);
	if (rc == 0)
		rc = pread_all(v->fd, foot, FOOTER_LEN, size - FOOTER_LEN);
	if (rc < 0)
		return rc;
	if (memcmp(hdr, HDR_MAGIC, HDR_LEN) != 0)
		return -EBADMSG;
	rc = check_footer(foot, &v->key, size, &toff, &llen);
	if (rc < 0)
		return rc;
	tlen = size - FOOTER_LEN - toff;
	if (tlen > chunk_list_encoded_len(CHUNK_LIST_MAX) + (uint64_t)CHUNK_LIST_MAX * INDEX_ENT)
		return -EBADMSG;
	trailer = malloc(tlen ? (size_t)tlen : 1);
	if (!trailer)
		return -ENOMEM;
	rc = pread_all(v->fd, trailer, (size_t)tlen, toff);
	if (rc == 0)
		rc = chunk_list_decode(trailer, llen, &v->list);
	if (rc == 0)
		rc = parse_index(v, trailer + llen, (size_t)(tlen - llen), HDR_LEN, toff);
	free(trailer);
	return rc;
}

int stage_version_open(struct stage *s, const struct stage_key *k, struct stage_version **out)
{
	char name[STAGE_NAME_LEN];
	struct stage_version *v;
	int rc;

	rc = stage_pin(s, k);
	if (rc < 0)
		return rc;
	v = calloc(1, sizeof(*v));
	if (!v) {
		rc = -ENOMEM;
		goto out_unpin;
	}
	v->s = s;
	v->key = *k;
	chunk_list_init(&v->list);
	stage_name(k, name);
	v->fd = openat(s->dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (v->fd < 0) {
		rc = -errno;
		goto out_free;
	}
	/* dctx and zbuf are made when a compressed chunk is first decompressed: serving sends
	 * chunks as stored (stage_version_read_stored()) and needs neither */
	rc = parse_version(v);
	if (rc < 0)
		goto out_close;
	*out = v;
	return 0;
out_close:
	close(v->fd);
out_free:
	ZSTD_freeDCtx(v->dctx);
	free(v->zbuf);
	free(v->st);
	chunk_list_release(&v->list);
	free(v);
out_unpin:
	stage_unpin(s, k);
	return rc;
}

int stage_memory(const struct stage_key *k, int fd, const uint8_t *expect,
		 struct stage_version **out)
{
	struct stage_version *v;
	struct dfsr_buf mem;
	struct writer w;
	int rc;

	rc = writer_init(&w);
	if (rc < 0)
		return rc;
	dfsr_buf_init(&mem);
	w.mem = &mem;
	rc = write_version(&w, k, fd, expect);
	if (rc < 0)
		goto out_release;
	v = calloc(1, sizeof(*v));
	if (!v) {
		rc = -ENOMEM;
		goto out_release;
	}
	v->key = *k;
	v->fd = -1;
	v->list = w.list; /* moved */
	chunk_list_init(&w.list);
	rc = parse_index(v, (const uint8_t *)w.index.p, w.index.len, 0, mem.len);
	if (rc < 0) {
		stage_version_close(v);
		goto out_release;
	}
	v->mem = (uint8_t *)dfsr_buf_detach(&mem, NULL);
	if (!v->mem) {
		stage_version_close(v);
		rc = -ENOMEM;
		goto out_release;
	}
	*out = v;
out_release:
	dfsr_buf_release(&mem);
	writer_release(&w);
	return rc;
}

const uint8_t *stage_version_stored(const struct stage_version *v, size_t i, uint32_t *len,
				    uint8_t *codec)
{
	if (!v->mem || i >= v->list.n)
		return NULL;
	*len = v->st[i].len;
	*codec = v->st[i].codec;
	return v->mem + v->st[i].off;
}

/* The stored bytes at @off, from the staged file or from memory. */
static int version_pread(struct stage_version *v, void *buf, size_t len, uint64_t off)
{
	if (!v->mem)
		return pread_all(v->fd, buf, len, off);
	memcpy(buf, v->mem + off, len);
	return 0;
}

void stage_version_close(struct stage_version *v)
{
	if (!v)
		return;
	if (v->s)
		stage_unpin(v->s, &v->key);
	if (v->fd >= 0)
		close(v->fd);
	free(v->mem);
	ZSTD_freeDCtx(v->dctx);
	free(v->zbuf);
	free(v->st);
	chunk_list_release(&v->list);
	free(v);
}

const struct chunk_list *stage_version_list(const struct stage_version *v)
{
	return &v->list;
}

int stage_version_read_stored(struct stage_version *v, size_t i, uint8_t *buf, uint32_t *len,
			      uint8_t *codec)
{
	int rc;

	if (i >= v->list.n)
		return -EINVAL;
	rc = version_pread(v, buf, v->st[i].len, v->st[i].off);
	if (rc < 0)
		return rc;
	*len = v->st[i].len;
	*codec = v->st[i].codec;
	return 0;
}

/* Decompress (or copy) stored bytes into @out, which must come out exactly @want bytes.
 * *@dctx is made on first use. */
static int unstore(ZSTD_DCtx **dctx, uint8_t codec, const void *src, size_t len, uint8_t *out,
		   size_t want)
{
	size_t z;

	if (codec == STAGE_CODEC_RAW) {
		if (len != want)
			return -EBADMSG;
		if (src != out)
			memcpy(out, src, len);
		return 0;
	}
	if (codec != STAGE_CODEC_ZSTD)
		return -EBADMSG;
	if (!*dctx && !(*dctx = ZSTD_createDCtx()))
		return -ENOMEM;
	z = ZSTD_decompressDCtx(*dctx, out, want, src, len);
	if (ZSTD_isError(z) || z != want)
		return -EBADMSG;
	return 0;
}

static int verify(const void *p, size_t len, const uint8_t hash[HASH_LEN])
{
	uint8_t got[HASH_LEN];
	int rc = chunk_sha256(p, len, got);

	if (rc < 0)
		return rc;
	return crypto_verify_32(got, hash) == 0 ? 0 : -EBADMSG;
}

int stage_version_read(struct stage_version *v, size_t i, uint8_t *buf, uint32_t *len)
{
	const struct chunk_entry *e;
	uint8_t *src;
	int rc;

	if (i >= v->list.n)
		return -EINVAL;
	e = &v->list.v[i];
	if (v->st[i].codec != STAGE_CODEC_RAW && !v->zbuf && !(v->zbuf = malloc(STAGE_STORED_MAX)))
		return -ENOMEM;
	src = v->st[i].codec == STAGE_CODEC_RAW ? buf : v->zbuf;
	rc = version_pread(v, src, v->st[i].len, v->st[i].off);
	if (rc == 0)
		rc = unstore(&v->dctx, v->st[i].codec, src, v->st[i].len, buf, e->len);
	if (rc == 0)
		rc = verify(buf, e->len, e->hash);
	if (rc < 0)
		return rc;
	*len = e->len;
	return 0;
}

/* ---- assembler (downstream) ------------------------------------------------------- */

struct stage_asm {
	int dir_fd; /* O_RDONLY descriptor of the Installing directory */
	int fd;     /* the .part file, O_RDWR */
	char name[STAGE_ASM_NAME_LEN];
	struct chunk_list list;
	bool *have; /* list.n flags */
	size_t missing;
	ZSTD_DCtx *dctx;
	uint8_t *buf; /* CHUNK_MAX scratch */
	/* SHA-256 of chunks 0 .. in_order - 1, fed as they are written in order, so that
	 * stage_asm_finish() need not read the file again (NULL: not usable; in_order
	 * SIZE_MAX: finished, the digest is in digest[]) */
	EVP_MD_CTX *md;
	size_t in_order;
	uint8_t digest[HASH_LEN];
};

static int copy_list(struct chunk_list *dst, const struct chunk_list *src)
{
	int rc = 0;

	chunk_list_init(dst);
	for (size_t i = 0; rc == 0 && i < src->n; i++)
		rc = chunk_list_add(dst, src->v[i].len, src->v[i].hash);
	if (rc < 0) {
		chunk_list_release(dst);
		return rc;
	}
	memcpy(dst->digest, src->digest, HASH_LEN);
	return 0;
}

/* Resume: every chunk region of an existing file whose SHA-256 matches is already in. */
static int rescan(struct stage_asm *a)
{
	for (size_t i = 0; i < a->list.n; i++) {
		const struct chunk_entry *e = &a->list.v[i];
		int rc = pread_all(a->fd, a->buf, e->len, e->off);

		if (rc < 0)
			return rc;
		rc = verify(a->buf, e->len, e->hash);
		if (rc == -EBADMSG)
			continue;
		if (rc < 0)
			return rc;
		a->have[i] = true;
		a->missing--;
	}
	return 0;
}

static int asm_prepare_file(struct stage_asm *a)
{
	struct stat st;

	a->fd = openat(a->dir_fd, a->name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (a->fd < 0)
		return -errno;
	if (fstat(a->fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	if ((uint64_t)st.st_size == a->list.size)
		return rescan(a);
	/* Not ours, or from a list of another size: start over, at the final size, so that a
	 * resume finds the chunks written so far (a new file is empty already). A file of one
	 * chunk is written whole at once: a short one is simply not ours next time. */
	if (st.st_size != 0 && ftruncate(a->fd, 0) < 0)
		return -errno;
	if (a->list.n > 1 && ftruncate(a->fd, (off_t)a->list.size) < 0)
		return -errno;
	return 0;
}

int stage_asm_open(int dir_fd, const struct stage_key *k, const struct chunk_list *l,
		   struct stage_asm **out)
{
	struct stage_asm *a;
	int rc;

	if (!chunk_list_valid(l))
		return -EINVAL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->fd = -1;
	stage_asm_name(k, a->name);
	rc = copy_list(&a->list, l);
	if (rc < 0)
		goto out_free;
	a->missing = l->n;
	a->have = calloc(l->n ? l->n : 1, sizeof(*a->have));
	a->buf = malloc(CHUNK_MAX);
	a->md = EVP_MD_CTX_new(); /* optional */
	if (a->md && EVP_DigestInit_ex(a->md, hash_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(a->md);
		a->md = NULL;
	}
	if (!a->have || !a->buf) { /* a->dctx: on the first compressed chunk */
		rc = -ENOMEM;
		goto out_free;
	}
	a->dir_fd = reopen_dir(dir_fd);
	if (a->dir_fd < 0) {
		rc = a->dir_fd;
		goto out_free;
	}
	rc = asm_prepare_file(a);
	if (rc < 0)
		goto out_close;
	*out = a;
	return 0;
out_close:
	if (a->fd >= 0)
		close(a->fd);
	close(a->dir_fd);
out_free:
	ZSTD_freeDCtx(a->dctx);
	free(a->buf);
	free(a->have);
	chunk_list_release(&a->list);
	free(a);
	return rc;
}

void stage_asm_free(struct stage_asm *a)
{
	if (!a)
		return;
	close(a->fd);
	close(a->dir_fd);
	ZSTD_freeDCtx(a->dctx);
	EVP_MD_CTX_free(a->md);
	free(a->buf);
	free(a->have);
	chunk_list_release(&a->list);
	free(a);
}

int stage_asm_abort(struct stage_asm *a)
{
	int rc = 0;

	if (!a)
		return 0;
	if (unlinkat(a->dir_fd, a->name, 0) < 0 && errno != ENOENT)
		rc = -errno;
	stage_asm_free(a);
	return rc;
}

bool stage_asm_have(const struct stage_asm *a, size_t i)
{
	return i < a->list.n && a->have[i];
}

size_t stage_asm_missing(const struct stage_asm *a)
{
	return a->missing;
}

/* Write verified data for chunk @i. */
static int asm_write(struct stage_asm *a, size_t i, const void *data)
{
	const struct chunk_entry *e = &a->list.v[i];
	int rc;

	if (a->have[i])
		return 0;
	rc = pwrite_all(a->fd, data, e->len, e->off);
	if (rc < 0)
		return rc;
	a->have[i] = true;
	a->missing--;
	if (a->list.n == 1)
		return 0; /* the digest is the chunk's hash (stage_asm_finish()) */
	if (a->md && i == a->in_order) {
		if (EVP_DigestUpdate(a->md, data, e->len) == 1) {
			a->in_order++;
		} else {
			EVP_MD_CTX_free(a->md);
			a->md = NULL;
		}
	}
	return 0;
}

int stage_asm_put(struct stage_asm *a, size_t i, const void *data, size_t len)
{
	int rc;

	if (i >= a->list.n)
		return -EINVAL;
	if (len != a->list.v[i].len)
		return -EBADMSG;
	rc = verify(data, len, a->list.v[i].hash);
	if (rc < 0)
		return rc;
	return asm_write(a, i, data);
}

int stage_asm_put_stored(struct stage_asm *a, size_t i, uint8_t codec, const void *data, size_t len)
{
	int rc;

	if (i >= a->list.n)
		return -EINVAL;
	if (len > STAGE_STORED_MAX)
		return -EBADMSG;
	if (codec == STAGE_CODEC_RAW) /* verified and written from where it is */
		return len == a->list.v[i].len ? stage_asm_put(a, i, data, len) : -EBADMSG;
	rc = unstore(&a->dctx, codec, data, len, a->buf, a->list.v[i].len);
	if (rc < 0)
		return rc;
	return stage_asm_put(a, i, a->buf, a->list.v[i].len);
}

int stage_asm_put_hash(struct stage_asm *a, const void *data, size_t len, size_t *written)
{
	uint8_t hash[HASH_LEN];
	size_t n = 0;
	int rc;

	if (len == 0 || len > CHUNK_MAX)
		return -EINVAL;
	rc = chunk_sha256(data, len, hash);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < a->list.n; i++) {
		const struct chunk_entry *e = &a->list.v[i];

		if (a->have[i] || e->len != len || memcmp(e->hash, hash, HASH_LEN) != 0)
			continue;
		rc = asm_write(a, i, data);
		if (rc < 0)
			return rc;
		n++;
	}
	*written = n;
	return 0;
}

int stage_asm_seed(struct stage_asm *a, int fd, size_t *found)
{
	struct chunk_stream *cs;
	struct chunk_piece pc;
	size_t total = 0, n;
	int rc;

	rc = chunk_stream_new(fd, &cs);
	if (rc < 0)
		return rc;
	/* A local file past CHUNK_LIST_MAX chunks (-EFBIG) has simply given all it can. */
	while (a->missing && (rc = chunk_stream_next(cs, &pc)) > 0) {
		rc = stage_asm_put_hash(a, pc.data, pc.len, &n);
		if (rc < 0)
			break;
		total += n;
	}
	chunk_stream_free(cs);
	if (rc < 0 && rc != -EFBIG)
		return rc;
	*found = total;
	return 0;
}

/* SHA-256 of the whole file, read front to back through the scratch buffer. */
static int digest_file(struct stage_asm *a, uint8_t out[HASH_LEN])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned int olen = 0;
	uint64_t off = 0;
	int rc = 0;

	if (!md)
		return -ENOMEM;
	if (EVP_DigestInit_ex(md, hash_sha256(), NULL) != 1)
		rc = -EIO;
	while (rc == 0 && off < a->list.size) {
		size_t n = a->list.size - off < CHUNK_MAX ? (size_t)(a->list.size - off)
							  : CHUNK_MAX;

		rc = pread_all(a->fd, a->buf, n, off);
		if (rc == 0 && EVP_DigestUpdate(md, a->buf, n) != 1)
			rc = -EIO;
		off += n;
	}
	if (rc == 0 && (EVP_DigestFinal_ex(md, out, &olen) != 1 || olen != HASH_LEN))
		rc = -EIO;
	EVP_MD_CTX_free(md);
	return rc;
}

const uint8_t *stage_asm_digest(const struct stage_asm *a)
{
	return a->list.digest;
}

int stage_asm_finish(struct stage_asm *a, int *fd_out)
{
	uint8_t got[HASH_LEN];
	int fd, rc;

	if (a->missing)
		return -EAGAIN;
	/* No fsync here, of the file or of Installing: replica_install() fsyncs the file
	 * (after applying its metadata) before it is renamed into place, and an assembly lost
	 * in a crash before that is only downloaded again (stage_asm_open() keeps what
	 * survived). One flush per installed file instead of three. */
	if (a->list.n == 1) {
		/* one chunk, verified against its hash: that is the whole file's SHA-256 */
		memcpy(a->digest, a->list.v[0].hash, HASH_LEN);
		a->in_order = SIZE_MAX;
	} else if (a->md && a->in_order == a->list.n) {
		/* every chunk written in order: the digest needs no second read */
		unsigned int olen = 0;

		if (EVP_DigestFinal_ex(a->md, a->digest, &olen) == 1 && olen == HASH_LEN)
			a->in_order = SIZE_MAX;
	}
	EVP_MD_CTX_free(a->md);
	a->md = NULL;
	if (a->in_order == SIZE_MAX) {
		memcpy(got, a->digest, HASH_LEN);
		rc = 0;
	} else {
		rc = digest_file(a, got);
	}
	if (rc < 0)
		return rc;
	if (crypto_verify_32(got, a->list.digest) != 0) {
		/* Every chunk matched its hash, so the list's digest is what is wrong. */
		unlinkat(a->dir_fd, a->name, 0);
		return -EBADMSG;
	}
	fd = fcntl(a->fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	*fd_out = fd;
	return 0;
}
