/*
 * test_stage.c - core/stage.c on real directories: stage a version and read it back chunk
 * by chunk (raw and zstd chunks both), a corrupt staged chunk or file is refused, a file
 * that changes while it is staged is not published, quota cleanup removes the oldest
 * versions not in use and reports 4202/4204/4206/4208, pins survive it, and the assembler
 * builds a file from chunks in any order, resumes after a restart, refuses wrong chunks
 * and checks the whole-file digest.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* cmocka.h needs setjmp.h, stdarg.h, stddef.h and stdint.h before it */
/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#include <sodium.h>

#include "core/stage.h"
#include "tests/unit/tmpdir.h"

#define MAX_EVENTS 32

struct env {
	char dir[64];
	int fd;   /* O_PATH of dir: the source files live here */
	int stg;  /* O_PATH of dir/Staging */
	int inst; /* O_PATH of dir/Installing */
	int events[MAX_EVENTS];
	int nevents;
};

static int open_sub(int dirfd, const char *name)
{
	if (mkdirat(dirfd, name, 0700) < 0)
		return -1;
	return openat(dirfd, name, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

static int setup(void **state)
{
	struct env *t = calloc(1, sizeof(*t));

	if (!t)
		return -1;
	if (test_tmpdir_make(t->dir, sizeof(t->dir), "stage", &t->fd) < 0)
		return -1;
	t->stg = open_sub(t->fd, "Staging");
	t->inst = open_sub(t->fd, "Installing");
	if (t->stg < 0 || t->inst < 0)
		return -1;
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct env *t = *state;

	close(t->stg);
	close(t->inst);
	close(t->fd);
	if (test_tmpdir_remove(t->dir) < 0)
		return -1;
	free(t);
	return 0;
}

static void on_event(void *arg, enum dfsr_event ev, const char *details)
{
	struct env *t = arg;

	assert_non_null(details);
	if (t->nevents < MAX_EVENTS)
		t->events[t->nevents++] = (int)ev;
}

static struct stage *open_stage(struct env *t, uint64_t quota)
{
	struct stage *s = NULL;

	assert_int_equal(stage_open(&(struct stage_opts){ .dir_fd = t->stg,
							  .quota = quota,
							  .event_fn = on_event,
							  .event_arg = t },
				    &s),
			 0);
	return s;
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		p[i] = (uint8_t)((x * 0x2545f4914f6cdd1dULL) >> 56);
	}
}

/* Half random, half text: some chunks stay raw, others compress. */
static uint8_t *make_data(size_t len, uint64_t seed)
{
	uint8_t *d = malloc(len ? len : 1);

	assert_non_null(d);
	fill_random(d, len / 2, seed);
	for (size_t i = len / 2; i < len; i++)
		d[i] = (uint8_t) "the quick brown fox jumps over the lazy dog\n"[i % 44];
	return d;
}

static int write_file(int dirfd, const char *name, const void *data, size_t len)
{
	int fd = openat(dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	if (len)
		assert_int_equal(pwrite(fd, data, len, 0), (ssize_t)len);
	return fd;
}

static struct stage_key key_of(uint8_t n)
{
	struct stage_key k;

	memset(&k, 0, sizeof(k));
	memset(k.uid.b, 0x10 + n, DFSR_UID_LEN);
	memset(k.gvsn.db.b, 0xd0, DFSR_UID_LEN);
	k.gvsn.counter = 1000u + n;
	return k;
}

/* Entries of the directory @dirfd, "." and ".." excluded, and the marker of an open stage
 * (".unsynced"). */
static size_t count_entries(int dirfd)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fdopendir(fd);
	struct dirent *de;
	size_t n = 0;

	assert_non_null(d);
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		    strcmp(de->d_name, ".unsynced"))
			n++;
	}
	closedir(d);
	return n;
}

/* Read every chunk of a staged version and compare with @data. */
static void check_version(struct stage *s, const struct stage_key *k, const uint8_t *data,
			  size_t len, size_t *n_zstd)
{
	struct stage_version *v;
	const struct chunk_list *l;
	uint8_t *buf = malloc(CHUNK_MAX), codec;
	uint32_t clen;
	size_t off = 0;

	assert_non_null(buf);
	assert_int_equal(stage_version_open(s, k, &v), 0);
	l = stage_version_list(v);
	assert_int_equal(l->size, len);
	for (size_t i = 0; i < l->n; i++) {
		assert_int_equal(stage_version_read(v, i, buf, &clen), 0);
		assert_int_equal(clen, l->v[i].len);
		assert_memory_equal(buf, data + off, clen);
		off += clen;
		assert_int_equal(stage_version_read_stored(v, i, buf, &clen, &codec), 0);
		if (n_zstd && codec == STAGE_CODEC_ZSTD)
			(*n_zstd)++;
	}
	assert_int_equal(off, len);
	assert_int_equal(stage_version_read(v, l->n, buf, &clen), -EINVAL);
	stage_version_close(v);
	free(buf);
}

static void round_trip(void **state)
{
	struct env *t = *state;
	size_t len = 3u << 20, n_zstd = 0;
	uint8_t *d = make_data(len, 1);
	struct stage_key k = key_of(1), other = key_of(2);
	char name[STAGE_NAME_LEN];
	struct stage *s = open_stage(t, 0);
	struct chunk_list l;
	struct stat st;
	int fd = write_file(t->fd, "f", d, len);

	chunk_list_init(&l);
	assert_int_equal(chunk_list_from_fd(fd, &l), 0);
	assert_false(stage_has(s, &k));
	assert_int_equal(stage_file(s, &k, fd, l.digest), 0);
	assert_true(stage_has(s, &k));
	assert_false(stage_has(s, &other));
	assert_int_equal(stage_count(s), 1);
	stage_name(&k, name);
	assert_int_equal(fstatat(t->stg, name, &st, 0), 0);
	assert_int_equal(stage_used(s), (uint64_t)st.st_size);
	/* Compression paid: the text half shrank. */
	assert_true((uint64_t)st.st_size < len * 3 / 4);
	check_version(s, &k, d, len, &n_zstd);
	assert_true(n_zstd > 0 && n_zstd < l.n);
	/* Staging the same version again is a no-op. */
	assert_int_equal(stage_file(s, &k, fd, NULL), 0);
	assert_int_equal(stage_count(s), 1);
	assert_int_equal(count_entries(t->stg), 1);
	assert_int_equal(stage_version_open(s, &other, &(struct stage_version *){ NULL }), -ENOENT);
	stage_close(s);
	/* Reopening finds it again, with the same usage. */
	s = open_stage(t, 0);
	assert_int_equal(stage_count(s), 1);
	assert_int_equal(stage_used(s), (uint64_t)st.st_size);
	check_version(s, &k, d, len, NULL);
	stage_close(s);
	chunk_list_release(&l);
	close(fd);
	free(d);
}

static void empty_file_round_trip(void **state)
{
	struct env *t = *state;
	struct stage_key k = key_of(3);
	struct stage *s = open_stage(t, 0);
	struct stage_version *v;
	int fd = write_file(t->fd, "empty", NULL, 0);

	assert_int_equal(stage_file(s, &k, fd, NULL), 0);
	assert_int_equal(stage_version_open(s, &k, &v), 0);
	assert_int_equal(stage_version_list(v)->n, 0);
	assert_int_equal(stage_version_list(v)->size, 0);
	stage_version_close(v);
	stage_close(s);
	close(fd);
}

/* A version read into memory: the same chunks as staged on disk, nothing in the staging
 * directory, no quota usage; the stored chunks assemble into the file. */
static void memory_version(void **state)
{
	struct env *t = *state;
	size_t len = 700000, n_zstd = 0, off = 0;
	uint8_t *d = make_data(len, 11), *buf = malloc(CHUNK_MAX), codec, wrong[HASH_LEN] = { 1 };
	struct stage_key k = key_of(12);
	struct stage *s = open_stage(t, 0);
	struct stage_version *v, *w = NULL;
	const struct chunk_list *l;
	struct stage_asm *a;
	struct chunk_list cl;
	const uint8_t *p;
	uint32_t clen;
	int fd = write_file(t->fd, "f", d, len), out;

	assert_non_null(buf);
	chunk_list_init(&cl);
	assert_int_equal(chunk_list_from_fd(fd, &cl), 0);
	assert_int_equal(stage_memory(&k, fd, wrong, &w), -EAGAIN);
	assert_null(w);
	assert_int_equal(stage_memory(&k, fd, cl.digest, &v), 0);
	assert_false(stage_has(s, &k));
	assert_int_equal(stage_used(s), 0);
	assert_int_equal(count_entries(t->stg), 0);
	l = stage_version_list(v);
	assert_int_equal(l->n, cl.n);
	assert_memory_equal(l->digest, cl.digest, HASH_LEN);
	assert_int_equal(stage_asm_open(t->inst, &k, l, &a), 0);
	for (size_t i = 0; i < l->n; i++) {
		assert_int_equal(stage_version_read(v, i, buf, &clen), 0);
		assert_memory_equal(buf, d + off, clen);
		off += clen;
		p = stage_version_stored(v, i, &clen, &codec);
		assert_non_null(p);
		n_zstd += codec == STAGE_CODEC_ZSTD;
		assert_int_equal(stage_asm_put_stored(a, i, codec, p, clen), 0);
		assert_int_equal(stage_version_read_stored(v, i, buf, &clen, &codec), 0);
		assert_memory_equal(buf, p, clen);
	}
	assert_int_equal(off, len);
	assert_true(n_zstd > 0 && n_zstd < l->n);
	assert_null(stage_version_stored(v, l->n, &clen, &codec));
	assert_int_equal(stage_asm_finish(a, &out), 0);
	{
		uint8_t *back = malloc(len + 1);

		assert_non_null(back);
		assert_int_equal(pread(out, back, len + 1, 0), (ssize_t)len);
		assert_memory_equal(back, d, len);
		free(back);
	}
	close(out);
	stage_asm_free(a);
	stage_version_close(v);
	/* A staged file is read through its descriptor: nothing to point at. */
	assert_int_equal(stage_file(s, &k, fd, cl.digest), 0);
	assert_int_equal(stage_version_open(s, &k, &v), 0);
	assert_null(stage_version_stored(v, 0, &clen, &codec));
	stage_version_close(v);
	stage_close(s);
	chunk_list_release(&cl);
	close(fd);
	free(buf);
	free(d);
}

/* A one-chunk file of @len bytes, @nrand random then text, or text then random (@text_first)
 * staged in memory: the codec its chunk was stored with. Seeds are tried until the chunker
 * makes one chunk of it. */
static uint8_t codec_of(struct env *t, size_t len, size_t nrand, bool text_first)
{
	uint8_t *d = malloc(len), codec = 0xff;
	struct stage_key k = key_of(20);

	assert_non_null(d);
	for (uint64_t seed = 1; seed < 200 && codec == 0xff; seed++) {
		size_t r0 = text_first ? len - nrand : 0;
		struct stage_version *v;
		struct chunk_list cl;
		uint32_t clen;
		int fd;

		for (size_t i = 0; i < len; i++)
			d[i] = (uint8_t) "the quick brown fox jumps over the lazy dog\n"[i % 44];
		fill_random(d + r0, nrand, seed);
		fd = write_file(t->fd, "one", d, len);
		chunk_list_init(&cl);
		assert_int_equal(chunk_list_from_fd(fd, &cl), 0);
		if (cl.n == 1) {
			assert_int_equal(stage_memory(&k, fd, cl.digest, &v), 0);
			assert_non_null(stage_version_stored(v, 0, &clen, &codec));
			stage_version_close(v);
		}
		chunk_list_release(&cl);
		close(fd);
	}
	free(d);
	assert_int_not_equal(codec, 0xff);
	return codec;
}

/* Incompressible data is found on a chunk's first 4 KiB: a chunk that starts random is
 * stored raw untried, even if text follows; one that starts as text is compressed whole. */
static void compression_sample(void **state)
{
	struct env *t = *state;

	assert_int_equal(codec_of(t, 20000, 4096, false), STAGE_CODEC_RAW);
	assert_int_equal(codec_of(t, 20000, 4096, true), STAGE_CODEC_ZSTD);
	assert_int_equal(codec_of(t, 20000, 20000, false), STAGE_CODEC_RAW);
	/* a chunk of at most 16 KiB is always tried whole */
	assert_int_equal(codec_of(t, 16000, 4096, false), STAGE_CODEC_ZSTD);
}

static void not_a_regular_file(void **state)
{
	struct env *t = *state;
	struct stage_key k = key_of(4);
	struct stage *s = open_stage(t, 0);
	int fd = openat(t->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	assert_int_equal(stage_file(s, &k, fd, NULL), -EINVAL);
	assert_int_equal(count_entries(t->stg), 0);
	stage_close(s);
	close(fd);
}

/* Damage one byte of a staged file at @off (negative: from the end). */
static void damage(struct env *t, const struct stage_key *k, int64_t off)
{
	char name[STAGE_NAME_LEN];
	uint8_t b;
	struct stat st;
	int fd;

	stage_name(k, name);
	fd = openat(t->stg, name, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	if (off < 0)
		off += st.st_size;
	assert_int_equal(pread(fd, &b, 1, off), 1);
	b ^= 0x5a;
	assert_int_equal(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

static void corrupt_chunk_is_ebadmsg(void **state)
{
	struct env *t = *state;
	size_t len = 1u << 20;
	uint8_t *d = make_data(len, 2), *buf = malloc(CHUNK_MAX);
	struct stage_key k = key_of(5);
	struct stage *s = open_stage(t, 0);
	struct stage_version *v;
	uint32_t clen;
	int fd = write_file(t->fd, "f", d, len);

	assert_non_null(buf);
	assert_int_equal(stage_file(s, &k, fd, NULL), 0);
	damage(t, &k, 8 + 1000); /* inside the first stored chunk (raw: random data) */
	assert_int_equal(stage_version_open(s, &k, &v), 0);
	assert_true(stage_version_list(v)->n >= 2);
	assert_int_equal(stage_version_read(v, 0, buf, &clen), -EBADMSG);
	assert_int_equal(stage_version_read(v, 1, buf, &clen), 0);
	/* The last chunk is text, so stored with zstd: damage in the middle of its frame. */
	{
		size_t last = stage_version_list(v)->n - 1;
		uint64_t off = 8;
		uint32_t slen = 0;
		uint8_t codec = 0;

		for (size_t i = 0; i <= last; i++) {
			assert_int_equal(stage_version_read_stored(v, i, buf, &slen, &codec), 0);
			off += i < last ? slen : 0;
		}
		assert_int_equal(codec, STAGE_CODEC_ZSTD);
		stage_version_close(v);
		damage(t, &k, (int64_t)(off + slen / 2));
		assert_int_equal(stage_version_open(s, &k, &v), 0);
		assert_int_equal(stage_version_read(v, last, buf, &clen), -EBADMSG);
		assert_int_equal(stage_version_read(v, last - 1, buf, &clen), 0);
	}
	stage_version_close(v);
	stage_close(s);
	close(fd);
	free(buf);
	free(d);
}

static void corrupt_trailer_is_ebadmsg(void **state)
{
	struct env *t = *state;
	size_t len = 300000;
	uint8_t *d = make_data(len, 3);
	struct stage_key k = key_of(6), k2 = key_of(7);
	struct stage *s = open_stage(t, 0);
	struct stage_version *v = NULL;
	char name[STAGE_NAME_LEN];
	int fd = write_file(t->fd, "f", d, len), sfd;

	assert_int_equal(stage_file(s, &k, fd, NULL), 0);
	damage(t, &k, -1); /* footer magic */
	assert_int_equal(stage_version_open(s, &k, &v), -EBADMSG);
	damage(t, &k, -1);
	assert_int_equal(stage_version_open(s, &k, &v), 0);
	stage_version_close(v);
	damage(t, &k, -64 - 1); /* the last stored length in the index */
	assert_int_equal(stage_version_open(s, &k, &v), -EBADMSG);
	/* A truncated file. */
	assert_int_equal(stage_file(s, &k2, fd, NULL), 0);
	stage_name(&k2, name);
	sfd = openat(t->stg, name, O_RDWR | O_CLOEXEC);
	assert_true(sfd >= 0);
	assert_int_equal(ftruncate(sfd, 5000), 0);
	close(sfd);
	assert_int_equal(stage_version_open(s, &k2, &v), -EBADMSG);
	/* A failed open leaves no pin behind. */
	assert_int_equal(stage_remove(s, &k2), 0);
	stage_close(s);
	close(fd);
	free(d);
}

static void wrong_digest_is_eagain(void **state)
{
	struct env *t = *state;
	size_t len = 500000;
	uint8_t *d = make_data(len, 4), wrong[HASH_LEN] = { 1 };
	struct stage_key k = key_of(8);
	struct stage *s = open_stage(t, 0);
	int fd = write_file(t->fd, "f", d, len);

	assert_int_equal(stage_file(s, &k, fd, wrong), -EAGAIN);
	assert_false(stage_has(s, &k));
	assert_int_equal(stage_used(s), 0);
	assert_int_equal(count_entries(t->stg), 0);
	stage_close(s);
	close(fd);
	free(d);
}

struct grower {
	int fd;
	atomic_bool stop;
	atomic_int appended;
};

/* Appends 4 KiB at a time, paced, until told to stop (or 64 MiB). */
static void *grow(void *arg)
{
	struct grower *g = arg;
	uint8_t block[4096];
	struct timespec pace = { 0, 200000 };

	memset(block, 'g', sizeof(block));
	while (!atomic_load(&g->stop) && atomic_load(&g->appended) < 16384) {
		off_t end = lseek(g->fd, 0, SEEK_END);

		if (pwrite(g->fd, block, sizeof(block), end) != (ssize_t)sizeof(block))
			break;
		atomic_fetch_add(&g->appended, 1);
		nanosleep(&pace, NULL);
	}
	return NULL;
}

static void file_changed_during_staging(void **state)
{
	struct env *t = *state;
	size_t len = 8u << 20;
	uint8_t *d = make_data(len, 5);
	struct stage_key k = key_of(9);
	struct stage *s = open_stage(t, 0);
	struct grower g = { .fd = write_file(t->fd, "f", d, len) };
	int64_t deadline = dfsr_mono_ns() + 10 * 1000000000LL;
	pthread_t th;
	int rc, before;

	assert_int_equal(pthread_create(&th, NULL, grow, &g), 0);
	while (atomic_load(&g.appended) == 0 && dfsr_mono_ns() < deadline)
		sched_yield();
	before = atomic_load(&g.appended);
	assert_true(before > 0);
	rc = stage_file(s, &k, g.fd, NULL);
	/* The writer appended during staging, so the size moved between the two looks. */
	assert_true(atomic_load(&g.appended) > before);
	atomic_store(&g.stop, true);
	pthread_join(th, NULL);
	assert_int_equal(rc, -EAGAIN);
	assert_false(stage_has(s, &k));
	assert_int_equal(stage_used(s), 0);
	assert_int_equal(count_entries(t->stg), 0);
	/* Once quiet, the same file stages fine. */
	assert_int_equal(stage_file(s, &k, g.fd, NULL), 0);
	assert_true(stage_has(s, &k));
	stage_close(s);
	close(g.fd);
	free(d);
}

#define MANY_LEN 105000

/* Stage @n versions (keys @first..) of MANY_LEN random bytes each; returns one's size. */
static uint64_t stage_many(struct env *t, struct stage *s, uint8_t first, uint8_t n)
{
	size_t len = MANY_LEN;
	uint64_t one = 0;

	for (uint8_t i = first; i < first + n; i++) {
		uint8_t *d = make_data(len * 2, i);
		struct stage_key k = key_of(i);
		int fd;

		fill_random(d, len, 100 + i); /* all random: every version the same size */
		fd = write_file(t->fd, "m", d, len);
		assert_int_equal(stage_file(s, &k, fd, NULL), 0);
		close(fd);
		free(d);
		if (!one)
			one = stage_used(s);
	}
	return one;
}

static void expect_events(struct env *t, const int *want, int n)
{
	assert_int_equal(t->nevents, n);
	for (int i = 0; i < n; i++)
		assert_int_equal(t->events[i], want[i]);
	t->nevents = 0;
}

static void quota_removes_oldest(void **state)
{
	struct env *t = *state;
	struct stage *s = open_stage(t, 1000000);
	static const int done[] = { 4202, 4204 };
	uint64_t one = stage_many(t, s, 20, 8), used;
	uint8_t first_left;

	/* 8 versions of about 105 KB: under 90 % of 1 MB, nothing happened. */
	assert_true(one > MANY_LEN && one < MANY_LEN + 2000);
	assert_int_equal(t->nevents, 0);
	assert_int_equal(stage_count(s), 8);
	/* Pin the oldest: it must survive. */
	{
		struct stage_key k20 = key_of(20);

		assert_int_equal(stage_pin(s, &k20), 0);
	}
	stage_many(t, s, 28, 1); /* 9 x ~105 KB > 900 KB: cleanup to under 600 KB */
	expect_events(t, done, 2);
	used = stage_used(s);
	assert_true(used < 600000);
	/* Survivors: the pinned oldest, then the newest ones; removed: 21, 22, ... in order. */
	{
		struct stage_key k20 = key_of(20), k28 = key_of(28);

		assert_true(stage_has(s, &k20));
		assert_true(stage_has(s, &k28));
		assert_int_equal(stage_unpin(s, &k20), 0);
		assert_int_equal(stage_unpin(s, &k20), -ENOENT);
	}
	for (first_left = 21; first_left < 28; first_left++) {
		struct stage_key k = key_of(first_left);

		if (stage_has(s, &k))
			break;
	}
	assert_int_equal(first_left, 25);
	for (uint8_t i = first_left; i <= 28; i++) {
		struct stage_key k = key_of(i);

		assert_true(stage_has(s, &k));
	}
	assert_int_equal(stage_count(s), (size_t)(1 + 28 - first_left + 1));
	assert_int_equal(count_entries(t->stg), stage_count(s));
	/* Nothing to do under the high watermark. */
	assert_int_equal(stage_cleanup(s), 0);
	assert_int_equal(t->nevents, 0);
	stage_close(s);
}

/* `dfsr reload` lowers the quota: the cleanup runs at once, not at the next staging. */
static void quota_lowered_applies_at_once(void **state)
{
	struct env *t = *state;
	struct stage *s = open_stage(t, 0);
	static const int done[] = { 4202, 4204 };

	stage_many(t, s, 60, 8); /* about 840 KB: nothing to do under the default 4 GiB */
	assert_int_equal(t->nevents, 0);
	assert_int_equal(stage_count(s), 8);
	/* raising it, or lowering it to above the usage, removes nothing */
	assert_int_equal(stage_set_quota(s, 8000000), 0);
	assert_int_equal(t->nevents, 0);
	assert_int_equal(stage_count(s), 8);
	/* under the usage: cleaned to under 60 % of the new quota, oldest first */
	assert_int_equal(stage_set_quota(s, 500000), 0);
	expect_events(t, done, 2);
	assert_true(stage_used(s) < 300000);
	{
		struct stage_key oldest = key_of(60), newest = key_of(67);

		assert_false(stage_has(s, &oldest));
		assert_true(stage_has(s, &newest));
	}
	assert_int_equal(count_entries(t->stg), stage_count(s));
	/* 0 is the default quota again: nothing more to remove */
	assert_int_equal(stage_set_quota(s, 0), 0);
	assert_int_equal(t->nevents, 0);
	stage_close(s);
}

/* A removal that fails is 4206 with its error, and not 4208 ("every entry is in use"). */
static void quota_removal_fails(void **state)
{
	struct env *t = *state;
	struct stage *s = open_stage(t, 0);
	static const int failed[] = { 4202, 4206 };
	struct stage_key oldest = key_of(70);
	char name[STAGE_NAME_LEN], sub[STAGE_NAME_LEN + 8];
	int fd;

	stage_many(t, s, 70, 4);
	/* the oldest version's file becomes a non-empty directory: unlinkat() fails */
	stage_name(&oldest, name);
	assert_int_equal(unlinkat(t->stg, name, 0), 0);
	assert_int_equal(mkdirat(t->stg, name, 0700), 0);
	snprintf(sub, sizeof(sub), "%s/x", name);
	fd = openat(t->stg, sub, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(stage_set_quota(s, 100000), -EISDIR);
	expect_events(t, failed, 2);
	assert_true(stage_has(s, &oldest));
	assert_int_equal(unlinkat(t->stg, sub, 0), 0);
	assert_int_equal(unlinkat(t->stg, name, AT_REMOVEDIR), 0);
	stage_close(s);
}

/* Set the mtime of staged version @i to @sec (to order the versions found at open). */
static void set_age(struct env *t, uint8_t i, time_t sec)
{
	struct stage_key k = key_of(i);
	char name[STAGE_NAME_LEN];
	struct timespec ts[2] = { { sec, 0 }, { sec, 0 } };

	stage_name(&k, name);
	assert_int_equal(utimensat(t->stg, name, ts, 0), 0);
}

static void quota_all_in_use(void **state)
{
	struct env *t = *state;
	static const int stuck[] = { 4202, 4206, 4208 }, done[] = { 4202, 4204 };
	struct stage *s = open_stage(t, 0);
	struct stage_version *v;
	uint64_t used;
	int fd;

	stage_many(t, s, 40, 10);
	stage_close(s);
	/* Ages opposite to the staging order: 49 is the oldest after reopening. */
	for (uint8_t i = 40; i < 50; i++)
		set_age(t, i, 1700000000 + (50 - i) * 10);
	assert_int_equal(mkdirat(t->stg, "not-a-version", 0700), 0);
	fd = openat(t->stg, ".tmp.1.2.leftover", O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	s = open_stage(t, 1000000);
	/* The leftover is gone, the foreign directory is left alone and not counted. */
	assert_int_equal(stage_count(s), 10);
	assert_int_equal(count_entries(t->stg), 11);
	used = stage_used(s);
	assert_true(used > 1000000);
	for (uint8_t i = 40; i < 50; i++) {
		struct stage_key k = key_of(i);

		assert_int_equal(stage_pin(s, &k), 0);
	}
	assert_int_equal(stage_cleanup(s), -EBUSY);
	expect_events(t, stuck, 3);
	assert_int_equal(stage_used(s), used);
	/* A version staged now is spared by the cleanup it triggers, and then removable. */
	stage_many(t, s, 50, 1);
	expect_events(t, stuck, 3);
	{
		struct stage_key k50 = key_of(50);

		assert_true(stage_has(s, &k50));
		assert_int_equal(stage_remove(s, &k50), 0);
	}
	assert_int_equal(stage_used(s), used);
	{
		struct stage_key k = key_of(45);

		assert_int_equal(stage_remove(s, &k), -EBUSY);
	}
	/* Release all but 40 (pinned) and 41 (held open by a reader). */
	for (uint8_t i = 41; i < 50; i++) {
		struct stage_key k = key_of(i);

		assert_int_equal(stage_unpin(s, &k), 0);
	}
	{
		struct stage_key k41 = key_of(41);

		assert_int_equal(stage_version_open(s, &k41, &v), 0);
	}
	assert_int_equal(stage_cleanup(s), 0);
	expect_events(t, done, 2);
	assert_true(stage_used(s) < 600000);
	/* Oldest first by the restored ages: 49, 48, ... went; 40 and 41 stayed. */
	for (uint8_t i = 40; i < 50; i++) {
		struct stage_key k = key_of(i);
		bool has = stage_has(s, &k);

		if (i <= 41)
			assert_true(has);
		if (i == 49 || i == 48)
			assert_false(has);
	}
	{
		struct stage_key k40 = key_of(40), k42 = key_of(42);

		assert_true(stage_has(s, &k42));
		stage_version_close(v);
		assert_int_equal(stage_unpin(s, &k40), 0);
		assert_int_equal(stage_remove(s, &k40), 0);
		assert_int_equal(stage_remove(s, &k40), -ENOENT);
	}
	stage_close(s);
}

struct racer {
	struct stage *s;
	int fd;
	uint8_t first;
	int rc;
};

/* Stages keys first..first+3 and then the shared key 90. */
static void *race(void *arg)
{
	struct racer *r = arg;

	for (uint8_t i = r->first; i < r->first + 4 && r->rc == 0; i++) {
		struct stage_key k = key_of(i);

		r->rc = stage_file(r->s, &k, r->fd, NULL);
	}
	if (r->rc == 0) {
		struct stage_key shared = key_of(90);

		r->rc = stage_file(r->s, &shared, r->fd, NULL);
	}
	return NULL;
}

/* Threads staging at once: every version counted once, usage equals the files on disk. */
static void concurrent_staging(void **state)
{
	struct env *t = *state;
	size_t len = 400000;
	uint8_t *d = make_data(len, 70);
	struct stage *s = open_stage(t, 0);
	struct racer r[3];
	pthread_t th[3];
	uint64_t sum = 0;
	int fd = write_file(t->fd, "f", d, len);

	for (int i = 0; i < 3; i++) {
		r[i] = (struct racer){ .s = s, .fd = fd, .first = (uint8_t)(70 + 4 * i) };
		assert_int_equal(pthread_create(&th[i], NULL, race, &r[i]), 0);
	}
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(r[i].rc, 0);
	}
	assert_int_equal(stage_count(s), 13);
	assert_int_equal(count_entries(t->stg), 13);
	for (uint8_t i = 70; i < 82; i++) {
		struct stage_key k = key_of(i);
		char name[STAGE_NAME_LEN];
		struct stat st;

		stage_name(&k, name);
		assert_int_equal(fstatat(t->stg, name, &st, 0), 0);
		sum += (uint64_t)st.st_size;
	}
	assert_int_equal(stage_used(s), sum + sum / 12);
	{
		struct stage_key shared = key_of(90);

		check_version(s, &shared, d, len, NULL);
	}
	stage_close(s);
	close(fd);
	free(d);
}

/* ---- assembler ---------------------------------------------------------------------- */

struct src {
	uint8_t *d;
	size_t len;
	struct chunk_list l;
};

static void make_src(struct env *t, struct src *x, size_t len, uint64_t seed)
{
	int fd;

	x->d = make_data(len, seed);
	x->len = len;
	fd = write_file(t->fd, "src", x->d, len);
	chunk_list_init(&x->l);
	assert_int_equal(chunk_list_from_fd(fd, &x->l), 0);
	close(fd);
}

static void free_src(struct src *x)
{
	chunk_list_release(&x->l);
	free(x->d);
}

static void put(struct stage_asm *a, const struct src *x, size_t i)
{
	assert_int_equal(stage_asm_put(a, i, x->d + x->l.v[i].off, x->l.v[i].len), 0);
	assert_true(stage_asm_have(a, i));
}

static void check_fd(int fd, const struct src *x)
{
	uint8_t *back = malloc(x->len ? x->len : 1);
	struct stat st;

	assert_non_null(back);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, x->len);
	assert_int_equal(pread(fd, back, x->len, 0), (ssize_t)x->len);
	assert_memory_equal(back, x->d, x->len);
	free(back);
}

static void asm_out_of_order(void **state)
{
	struct env *t = *state;
	struct stage_key k = key_of(60);
	struct stage_asm *a;
	struct src x;
	int fd = -1;

	make_src(t, &x, 2u << 20, 60);
	assert_true(x.l.n >= 8);
	assert_int_equal(stage_asm_open(t->inst, &k, &x.l, &a), 0);
	assert_int_equal(stage_asm_missing(a), x.l.n);
	/* Odd indices backwards, then even ones. */
	for (size_t i = x.l.n; i-- > 0;) {
		if (i & 1)
			put(a, &x, i);
	}
	assert_int_equal(stage_asm_finish(a, &fd), -EAGAIN);
	for (size_t i = 0; i < x.l.n; i += 2)
		put(a, &x, i);
	assert_int_equal(stage_asm_missing(a), 0);
	put(a, &x, 3); /* again: accepted, nothing changes */
	assert_int_equal(stage_asm_finish(a, &fd), 0);
	check_fd(fd, &x);
	close(fd);
	stage_asm_free(a);
	free_src(&x);
}

static void asm_rejects_wrong_chunks(void **state)
{
	struct env *t = *state;
	struct stage_key k = key_of(61);
	struct stage_asm *a;
	struct src x;
	uint8_t *bad;

	make_src(t, &x, 1u << 20, 61);
	assert_int_equal(stage_asm_open(t->inst, &k, &x.l, &a), 0);
	/* Chunk 1's bytes offered as chunk 0; a flipped byte; a wrong length; bad index. */
	assert_int_equal(stage_asm_put(a, 0, x.d + x.l.v[1].off, x.l.v[1].len), -EBADMSG);
	bad = malloc(x.l.v[0].len);
	assert_non_null(bad);
	memcpy(bad, x.d, x.l.v[0].len);
	bad[17] ^= 1;
	assert_int_equal(stage_asm_put(a, 0, bad, x.l.v[0].len), -EBADMSG);
	assert_int_equal(stage_asm_put(a, 0, x.d, x.l.v[0].len - 1), -EBADMSG);
	assert_int_equal(stage_asm_put(a, x.l.n, x.d, x.l.v[0].len), -EINVAL);
	assert_int_equal(stage_asm_put_stored(a, 0, 7, x.d, x.l.v[0].len), -EBADMSG);
	assert_int_equal(stage_asm_put_stored(a, 0, STAGE_CODEC_ZSTD, bad, 100), -EBADMSG);
	assert_false(stage_asm_have(a, 0));
	assert_int_equal(stage_asm_missing(a), x.l.n);
	free(bad);
	assert_int_equal(stage_asm_abort(a), 0);
	assert_int_equal(count_entries(t->inst), 0);
	free_src(&x);
}

static void asm_resumes_after_restart(void **state)
{
	struct env *t = *state;
	struct stage_key k = key_of(62);
	char name[STAGE_ASM_NAME_LEN];
	struct stage_asm *a;
	struct src x;
	size_t half;
	uint8_t junk[64];
	int fd, pfd;

	make_src(t, &x, 3u << 20, 62);
	half = x.l.n / 2;
	assert_int_equal(stage_asm_open(t->inst, &k, &x.l, &a), 0);
	for (size_t i = 0; i < half; i++)
		put(a, &x, i);
	stage_asm_free(a); /* "crash" */
	/* A torn write in chunk 1 before the crash: it must be asked for again. */
	stage_asm_name(&k, name);
	pfd = openat(t->inst, name, O_RDWR | O_CLOEXEC);
	assert_true(pfd >= 0);
	memset(junk, 0xee, sizeof(junk));
	assert_int_equal(pwrite(pfd, junk, sizeof(junk), (off_t)x.l.v[1].off + 10), 64);
	close(pfd);
	assert_int_equal(stage_asm_open(t->inst, &k, &x.l, &a), 0);
	assert_int_equal(stage_asm_missing(a), x.l.n - half + 1);
	for (size_t i = 0; i < x.l.n; i++)
		assert_true(stage_asm_have(a, i) == (i < half && i != 1));
	for (size_t i = 0; i < x.l.n; i++) {
		if (!stage_asm_have(a, i))
			put(a, &x, i);
	}
	assert_int_equal(stage_asm_finish(a, &fd), 0);
	check_fd(fd, &x);
	close(fd);
	stage_asm_free(a);
	free_src(&x);
}

static void asm_checks_whole_digest(void **state)
{
	struct env *t = *state;
	struct stage_key k = key_of(63);
	struct stage_asm *a;
	struct src x;
	int fd = -1;

	make_src(t, &x, 600000, 63);
	x.l.digest[0] ^= 1; /* a list whose chunks are right but whose digest is not */
	assert_int_equal(stage_asm_open(t->inst, &k, &x.l, &a), 0);
	for (size_t i = 0; i < x.l.n; i++)
		put(a, &x, i);
	assert_int_equal(stage_asm_finish(a, &fd), -EBADMSG);
	assert_int_equal(fd, -1);
	assert_int_equal(count_entries(t->inst), 0);
	stage_asm_free(a);
	/* An invalid list is refused up front. */
	x.l.size++;
	assert_int_equal(stage_asm_open(t->inst, &k, &x.l, &a), -EINVAL);
	free_src(&x);
	/* The same with a file of one chunk, whose digest is its chunk's hash. */
	make_src(t, &x, 5000, 64);
	assert_int_equal(x.l.n, 1);
	assert_memory_equal(x.l.digest, x.l.v[0].hash, HASH_LEN);
	x.l.digest[0] ^= 1;
	assert_int_equal(stage_asm_open(t->inst, &k, &x.l, &a), 0);
	put(a, &x, 0);
	assert_int_equal(stage_asm_finish(a, &fd), -EBADMSG);
	assert_int_equal(fd, -1);
	stage_asm_free(a);
	x.l.digest[0] ^= 1;
	assert_int_equal(stage_asm_open(t->inst, &k, &x.l, &a), 0);
	put(a, &x, 0);
	assert_int_equal(stage_asm_finish(a, &fd), 0);
	check_fd(fd, &x);
	close(fd);
	stage_asm_free(a);
	free_src(&x);
}

/* Upstream staged file -> stored chunks -> downstream assembler; repeated chunks by hash. */
static void asm_from_staged_and_by_hash(void **state)
{
	struct env *t = *state;
	struct stage_key k = key_of(64);
	struct stage *s = open_stage(t, 0);
	struct stage_version *v;
	struct stage_asm *a;
	uint8_t *buf = malloc(STAGE_STORED_MAX), codec;
	uint32_t slen;
	size_t written;
	struct src x;
	int fd;

	assert_non_null(buf);
	make_src(t, &x, 2u << 20, 64);
	fd = openat(t->fd, "src", O_RDONLY | O_CLOEXEC);
	assert_int_equal(stage_file(s, &k, fd, x.l.digest), 0);
	close(fd);
	assert_int_equal(stage_version_open(s, &k, &v), 0);
	assert_int_equal(stage_asm_open(t->inst, &k, stage_version_list(v), &a), 0);
	for (size_t i = 0; i < x.l.n; i++) {
		assert_int_equal(stage_version_read_stored(v, i, buf, &slen, &codec), 0);
		assert_int_equal(stage_asm_put_stored(a, i, codec, buf, slen), 0);
	}
	assert_int_equal(stage_asm_finish(a, &fd), 0);
	check_fd(fd, &x);
	close(fd);
	stage_asm_free(a);
	stage_version_close(v);
	stage_close(s);
	free_src(&x);

	/* Zeros cut at CHUNK_MAX: six chunks share one hash, and one put fills them all. */
	x.len = 6 * CHUNK_MAX;
	x.d = calloc(1, x.len);
	assert_non_null(x.d);
	fd = write_file(t->fd, "zeros", x.d, x.len);
	chunk_list_init(&x.l);
	assert_int_equal(chunk_list_from_fd(fd, &x.l), 0);
	close(fd);
	assert_int_equal(x.l.n, 6);
	k = key_of(65);
	assert_int_equal(stage_asm_open(t->inst, &k, &x.l, &a), 0);
	assert_int_equal(stage_asm_put_hash(a, x.d, CHUNK_MAX - 1, &written), 0);
	assert_int_equal(written, 0);
	assert_int_equal(stage_asm_put_hash(a, x.d, CHUNK_MAX, &written), 0);
	assert_int_equal(written, 6);
	assert_int_equal(stage_asm_finish(a, &fd), 0);
	check_fd(fd, &x);
	close(fd);
	stage_asm_free(a);
	free_src(&x);
	free(buf);
}

/* A 100-byte insertion in the middle of a 3 MiB file: the old file supplies the rest. */
static void asm_seeded_from_old_version(void **state)
{
	struct env *t = *state;
	struct stage_key k = key_of(67);
	size_t len = 3u << 20, ins = 100, found = 0;
	uint8_t *old = make_data(len, 67);
	struct stage_asm *a;
	struct src x;
	int ofd, fd;

	x.len = len + ins;
	x.d = malloc(x.len);
	assert_non_null(x.d);
	memcpy(x.d, old, len / 3);
	fill_random(x.d + len / 3, ins, 68);
	memcpy(x.d + len / 3 + ins, old + len / 3, len - len / 3);
	fd = write_file(t->fd, "new", x.d, x.len);
	chunk_list_init(&x.l);
	assert_int_equal(chunk_list_from_fd(fd, &x.l), 0);
	close(fd);
	ofd = write_file(t->fd, "old", old, len);
	assert_int_equal(stage_asm_open(t->inst, &k, &x.l, &a), 0);
	assert_int_equal(stage_asm_seed(a, ofd, &found), 0);
	close(ofd);
	assert_true(found + 3 >= x.l.n);
	assert_true(stage_asm_missing(a) >= 1 && stage_asm_missing(a) <= 3);
	assert_int_equal(stage_asm_missing(a), x.l.n - found);
	for (size_t i = 0; i < x.l.n; i++) {
		if (!stage_asm_have(a, i))
			put(a, &x, i);
	}
	assert_int_equal(stage_asm_finish(a, &fd), 0);
	check_fd(fd, &x);
	close(fd);
	stage_asm_free(a);
	free_src(&x);
	free(old);
}

static void asm_empty_file(void **state)
{
	struct env *t = *state;
	struct stage_key k = key_of(66);
	struct stage_asm *a;
	struct src x;
	int fd;

	make_src(t, &x, 0, 66);
	assert_int_equal(stage_asm_open(t->inst, &k, &x.l, &a), 0);
	assert_int_equal(stage_asm_missing(a), 0);
	assert_int_equal(stage_asm_finish(a, &fd), 0);
	check_fd(fd, &x);
	close(fd);
	stage_asm_free(a);
	free_src(&x);
}

/*
 * The table's hash index with thousands of versions: every one found, removals in a
 * scattered order (each moves the last entry into the hole and shifts probe runs back)
 * leave exactly the others, and a reopen finds them again.
 */
static void many_versions_index(void **state)
{
	const uint32_t N = 3000;
	struct env *t = *state;
	struct stage *s;
	char name[STAGE_NAME_LEN];
	size_t left = N;

	for (uint32_t i = 0; i < N; i++) {
		struct stage_key k = key_of(0);
		int fd;

		dfsr_put_be32(k.uid.b, i); /* close keys: the hash must spread them */
		k.gvsn.counter = i % 7;
		stage_name(&k, name);
		fd = openat(t->stg, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		assert_true(fd >= 0);
		close(fd);
	}
	s = open_stage(t, 0);
	assert_int_equal(stage_count(s), N);
	for (uint32_t round = 0; round < 2; round++) {
		for (uint32_t i = 0; i < N; i++) {
			struct stage_key k = key_of(0);
			bool removed = (i * 7919u) % 5 < 2 + round; /* 2/5, then 3/5 in all */

			dfsr_put_be32(k.uid.b, i);
			k.gvsn.counter = i % 7;
			if (removed && stage_has(s, &k)) {
				assert_int_equal(stage_remove(s, &k), 0);
				left--;
			}
			assert_int_equal(stage_has(s, &k), !removed);
			k.gvsn.counter++; /* a version never staged */
			assert_false(stage_has(s, &k));
		}
		assert_int_equal(stage_count(s), left);
	}
	stage_close(s);
	s = open_stage(t, 0);
	assert_int_equal(stage_count(s), left);
	assert_int_equal(count_entries(t->stg), left);
	stage_close(s);
}

/* Staged versions are not fsync'd: a stage not closed (a crash) leaves its marker, and
 * the next open removes everything it may have left torn; a clean close keeps them. */
static void unclean_close_drops_versions(void **state)
{
	struct env *t = *state;
	struct stage_key k = key_of(5), k2 = key_of(6);
	uint8_t *d = make_data(100000, 5);
	int fd = write_file(t->fd, "src", d, 100000);
	struct stage *s = open_stage(t, 0), *crashed;

	assert_int_equal(stage_file(s, &k, fd, NULL), 0);
	stage_close(s);
	assert_int_equal(faccessat(t->stg, ".unsynced", F_OK, 0), -1);
	crashed = open_stage(t, 0); /* left open: the process "dies" */
	assert_int_equal(stage_count(crashed), 1);
	assert_int_equal(faccessat(t->stg, ".unsynced", F_OK, 0), 0);
	assert_int_equal(stage_file(crashed, &k2, fd, NULL), 0);
	s = open_stage(t, 0);
	assert_int_equal(stage_count(s), 0);
	assert_int_equal(count_entries(t->stg), 0);
	assert_false(stage_has(s, &k));
	assert_int_equal(stage_file(s, &k, fd, NULL), 0); /* staged again on demand */
	check_version(s, &k, d, 100000, NULL);
	stage_close(s);
	stage_close(crashed);
	close(fd);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(empty_file_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(compression_sample, setup, teardown),
		cmocka_unit_test_setup_teardown(memory_version, setup, teardown),
		cmocka_unit_test_setup_teardown(not_a_regular_file, setup, teardown),
		cmocka_unit_test_setup_teardown(corrupt_chunk_is_ebadmsg, setup, teardown),
		cmocka_unit_test_setup_teardown(corrupt_trailer_is_ebadmsg, setup, teardown),
		cmocka_unit_test_setup_teardown(wrong_digest_is_eagain, setup, teardown),
		cmocka_unit_test_setup_teardown(file_changed_during_staging, setup, teardown),
		cmocka_unit_test_setup_teardown(quota_removes_oldest, setup, teardown),
		cmocka_unit_test_setup_teardown(quota_all_in_use, setup, teardown),
		cmocka_unit_test_setup_teardown(quota_lowered_applies_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(quota_removal_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(concurrent_staging, setup, teardown),
		cmocka_unit_test_setup_teardown(asm_out_of_order, setup, teardown),
		cmocka_unit_test_setup_teardown(asm_rejects_wrong_chunks, setup, teardown),
		cmocka_unit_test_setup_teardown(asm_resumes_after_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(asm_checks_whole_digest, setup, teardown),
		cmocka_unit_test_setup_teardown(asm_from_staged_and_by_hash, setup, teardown),
		cmocka_unit_test_setup_teardown(asm_seeded_from_old_version, setup, teardown),
		cmocka_unit_test_setup_teardown(asm_empty_file, setup, teardown),
		cmocka_unit_test_setup_teardown(many_versions_index, setup, teardown),
		cmocka_unit_test_setup_teardown(unclean_close_drops_versions, setup, teardown),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
