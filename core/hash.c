/*
 * hash.c - the replication hash (core/hash.h has the canonical encoding).
 *
 * Two digests are taken: the content digest (SHA-256 of the data or the link target) and
 * the replication hash over the type, permission bits, owner, size, content digest and the
 * sorted extended attributes. Keeping them apart lets a chmod, chown or setfacl produce a
 * new hash from the stored content digest without reading the data again.
 *
 * A regular file is read through pread(2), so the caller's offset is untouched: a file
 * under 64 KiB through a buffer on the stack, a larger one with a 1 MiB buffer; O_PATH or
 * write-only descriptors (pread() says EBADF) are reopened read-only through
 * /proc/self/fd/N (O_NOATIME where the kernel allows it, so hashing never dirties the
 * inode). The file is stat'ed before and after the read: if the size or mtime moved, or
 * the bytes read disagree with the size, the read is repeated, three times at most, and
 * then -EAGAIN: a hash never mixes two versions of a file. A small file costs one stat,
 * one read and one stat (hash_fd_stat() takes the first stat from the caller): a short
 * read that reaches the size the first stat gave ends the pass (read_pass()).
 *
 * Attributes are read with f*xattr(2) on a real descriptor; an O_PATH descriptor (always
 * the case for a symbolic link) goes through the /proc/self/fd magic link with the
 * following variants, which land on the object itself and go no further.
 *
 * Names and timestamps are deliberately absent: the same tree hashes the same after
 * `cp -a` or a rename. SHA-256 comes from OpenSSL's EVP interface, which uses the CPU's SHA
 * extensions where present.
 */
#include "core/hash.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core/util.h"

#define HASH_READ_BUF  (1024 * 1024)
#define HASH_SMALL_BUF (64 * 1024) /* on the stack: a small file needs no heap buffer */
#define HASH_TRIES     3
#define HASH_MAGIC     "dfsr-hash-1" /* the NUL is part of the encoding */
#define HASH_LIST_MAX  (1024 * 1024) /* bytes of xattr names we accept */
#define HASH_PROC_PATH 32

/* How to reach an object's attributes: its descriptor, or its /proc/self/fd path. */
struct xa_src {
	int fd;
	bool by_path;
	char path[HASH_PROC_PATH];
};

void hash_hex(const uint8_t hash[HASH_LEN], char out[static HASH_HEX_LEN])
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < HASH_LEN; i++) {
		out[2 * i] = digits[hash[i] >> 4];
		out[2 * i + 1] = digits[hash[i] & 0xf];
	}
	out[2 * HASH_LEN] = '\0';
}

bool hash_xattr_excluded(const char *name)
{
	return strncmp(name, "user.dfsr.", 10) == 0 || strncmp(name, "trusted.dfsr.", 13) == 0 ||
	       strcmp(name, "security.selinux") == 0;
}

static void proc_path(int fd, char out[static HASH_PROC_PATH])
{
	snprintf(out, HASH_PROC_PATH, "/proc/self/fd/%d", fd);
}

static const EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

const EVP_MD *hash_sha256(void)
{
	pthread_once(&sha256_once, sha256_fetch);
	return sha256_md ? sha256_md : EVP_sha256();
}

static int md_init(EVP_MD_CTX **ctx)
{
	*ctx = EVP_MD_CTX_new();
	if (!*ctx)
		return -ENOMEM;
	if (EVP_DigestInit_ex(*ctx, hash_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(*ctx);
		*ctx = NULL;
		return -EIO;
	}
	return 0;
}

static int md_update(EVP_MD_CTX *ctx, const void *p, size_t len)
{
	return EVP_DigestUpdate(ctx, p, len) == 1 ? 0 : -EIO;
}

static int md_final(EVP_MD_CTX *ctx, uint8_t out[HASH_LEN])
{
	unsigned int len = 0;

	if (EVP_DigestFinal_ex(ctx, out, &len) != 1 || len != HASH_LEN)
		return -EIO;
	return 0;
}

static int sha256(const void *p, size_t len, uint8_t out[HASH_LEN])
{
	EVP_MD_CTX *ctx;
	int rc = md_init(&ctx);

	if (rc < 0)
		return rc;
	rc = md_update(ctx, p, len);
	if (rc == 0)
		rc = md_final(ctx, out);
	EVP_MD_CTX_free(ctx);
	return rc;
}

static int stat_fd(int fd, struct stat *st)
{
	if (fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return 0;
}

/* A read-only reopen of @fd (an O_PATH or write-only descriptor, which pread() refuses). */
static int reopen_ro(int fd)
{
	char path[HASH_PROC_PATH];
	int rfd;

	proc_path(fd, path);
	rfd = open(path, O_RDONLY | O_NOATIME | O_CLOEXEC | O_NOCTTY);
	if (rfd < 0 && errno == EPERM)
		rfd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	return rfd < 0 ? -errno : rfd;
}

/*
 * One pass over the data: digest into @content, bytes read into @nread. The pass ends at a
 * read returning 0, or at a short read once @expect bytes (the size before the pass) are
 * in: a read of a regular file falls short only at its end, and a file that grew or shrank
 * meanwhile has another size or mtime when the caller stats it again. So a small file
 * costs one read, not a second one that returns 0.
 */
static int read_pass(int fd, uint8_t *buf, size_t cap, uint64_t expect, uint8_t content[HASH_LEN],
		     uint64_t *nread)
{
	EVP_MD_CTX *ctx;
	uint64_t off = 0;
	int rc = md_init(&ctx);

	if (rc < 0)
		return rc;
	for (;;) {
		ssize_t n = pread(fd, buf, cap, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			goto out_free_ctx;
		}
		if (n == 0)
			break;
		rc = md_update(ctx, buf, (size_t)n);
		if (rc < 0)
			goto out_free_ctx;
		off += (uint64_t)n;
		if ((size_t)n < cap && off >= expect)
			break;
	}
	rc = md_final(ctx, content);
	*nread = off;
out_free_ctx:
	EVP_MD_CTX_free(ctx);
	return rc;
}

static bool same_version(const struct stat *a, const struct stat *b)
{
	return a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec && a->st_ino == b->st_ino;
}

/*
 * Content digest of a regular file. @st holds a stat of it taken just before (the first
 * pass's "before"); it receives the stat that matches what was read. The data is read
 * through @fd itself; a descriptor pread() refuses (EBADF: O_PATH or write-only) is
 * reopened read-only once, which costs no fcntl() up front to tell.
 */
static int hash_file_data(int fd, uint8_t content[HASH_LEN], struct stat *st)
{
	uint8_t small[HASH_SMALL_BUF], *buf = small, *big = NULL;
	size_t cap = sizeof(small);
	struct stat pre = *st, post;
	int rfd = fd, rc = -EAGAIN;

	for (int i = 0; i < HASH_TRIES; i++) {
		uint64_t nread = 0;
		int r = 0;

		if (i > 0)
			r = stat_fd(fd, &pre);
		if (r == 0 && !big && (uint64_t)pre.st_size >= sizeof(small)) {
			big = malloc(HASH_READ_BUF); /* larger reads, fewer system calls */
			if (!big)
				r = -ENOMEM;
			buf = big;
			cap = HASH_READ_BUF;
			if (big)
				(void)posix_fadvise(rfd, 0, 0, POSIX_FADV_SEQUENTIAL);
		}
		if (r == 0)
			r = read_pass(rfd, buf, cap, (uint64_t)pre.st_size, content, &nread);
		if (r == -EBADF && rfd == fd) {
			rfd = reopen_ro(fd);
			if (rfd < 0) {
				rc = rfd;
				rfd = fd;
				break;
			}
			if (big)
				(void)posix_fadvise(rfd, 0, 0, POSIX_FADV_SEQUENTIAL);
			r = read_pass(rfd, buf, cap, (uint64_t)pre.st_size, content, &nread);
		}
		if (r == 0)
			r = stat_fd(fd, &post);
		if (r < 0) {
			rc = r;
			break;
		}
		if (nread == (uint64_t)pre.st_size && same_version(&pre, &post)) {
			*st = post;
			rc = 0;
			break;
		}
	}
	free(big);
	if (rfd != fd)
		close(rfd);
	return rc;
}

/* Content digest of a symbolic link's target; @st is updated to the lstat that matches. */
static int hash_link_data(int fd, uint8_t content[HASH_LEN], struct stat *st)
{
	for (int i = 0; i < HASH_TRIES; i++) {
		size_t cap = (size_t)st->st_size + 1;
		char *target = malloc(cap);
		ssize_t n;
		int rc;

		if (!target)
			return -ENOMEM;
		n = readlinkat(fd, "", target, cap);
		if (n < 0) {
			rc = -errno;
			free(target);
			return rc;
		}
		if ((size_t)n == (size_t)st->st_size) {
			rc = sha256(target, (size_t)n, content);
			free(target);
			return rc;
		}
		free(target);
		rc = stat_fd(fd, st);
		if (rc < 0)
			return rc;
	}
	return -EAGAIN;
}

static ssize_t xa_get(const struct xa_src *x, const char *name, void *buf, size_t size)
{
	return x->by_path ? getxattr(x->path, name, buf, size) : fgetxattr(x->fd, name, buf, size);
}

/* The NUL-separated attribute names into @out (*out is malloc'ed; may be NULL when empty).
 * An O_PATH descriptor has no xattr calls of its own (EBADF): the first call that fails so
 * switches @x to the descriptor's /proc/self/fd path (no fcntl() up front to tell). */
static int xa_names(struct xa_src *x, char **out, size_t *len)
{
	int rc;

	if (!x->by_path) {
		rc = dfsr_xattr_names(x->fd, NULL, false, HASH_LIST_MAX, out, len);
		if (rc != -EBADF)
			return rc;
		x->by_path = true;
		proc_path(x->fd, x->path);
	}
	return dfsr_xattr_names(-1, x->path, true, HASH_LIST_MAX, out, len);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Splits @list into the sorted, non-excluded names. */
static int xa_sorted(const char *list, size_t len, const char ***names, size_t *count)
{
	const char **v;
	size_t n = 0, k = 0;

	for (size_t off = 0; off < len; off += strlen(list + off) + 1)
		n++;
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t off = 0; off < len; off += strlen(list + off) + 1)
		if (list[off] && !hash_xattr_excluded(list + off))
			v[k++] = list + off;
	qsort(v, k, sizeof(*v), cmp_name);
	*names = v;
	*count = k;
	return 0;
}

/* Appends "be32 len || name || be32 len || value" for every name to @enc. */
static int xa_encode(const struct xa_src *x, const char **names, size_t count, struct dfsr_buf *enc)
{
	uint8_t *val;
	int rc = 0;

	if (count == 0)
		return 0;
	val = malloc(HASH_XATTR_MAX);
	if (!val)
		return -ENOMEM;
	for (size_t i = 0; i < count && rc == 0; i++) {
		size_t nlen = strlen(names[i]);
		ssize_t vlen = xa_get(x, names[i], val, HASH_XATTR_MAX);
		uint8_t be[4];

		if (vlen < 0) {
			/* ENODATA: it went away after the list; ERANGE: over our limit. */
			rc = errno == ENODATA ? -EAGAIN : errno == ERANGE ? -E2BIG : -errno;
			break;
		}
		dfsr_put_be32(be, (uint32_t)nlen);
		rc = dfsr_buf_add(enc, be, 4);
		if (rc == 0)
			rc = dfsr_buf_add(enc, names[i], nlen);
		dfsr_put_be32(be, (uint32_t)vlen);
		if (rc == 0)
			rc = dfsr_buf_add(enc, be, 4);
		if (rc == 0)
			rc = dfsr_buf_add(enc, val, (size_t)vlen);
	}
	free(val);
	return rc;
}

/* The attribute part of the encoding: be32 count, then the sorted entries. */
static int hash_xattrs(struct xa_src *x, EVP_MD_CTX *ctx)
{
	int rc = -EAGAIN;

	for (int i = 0; i < HASH_TRIES && rc == -EAGAIN; i++) {
		struct dfsr_buf enc;
		const char **names = NULL;
		char *list = NULL;
		size_t len = 0, count = 0;
		uint8_t be[4];

		rc = xa_names(x, &list, &len);
		if (rc < 0)
			return rc;
		rc = xa_sorted(list, len, &names, &count);
		if (rc < 0) {
			free(list);
			return rc;
		}
		dfsr_buf_init(&enc);
		rc = xa_encode(x, names, count, &enc);
		if (rc == 0) {
			dfsr_put_be32(be, (uint32_t)count);
			rc = md_update(ctx, be, 4);
		}
		if (rc == 0)
			rc = md_update(ctx, enc.p, enc.len);
		dfsr_buf_release(&enc);
		free(names);
		free(list);
	}
	return rc;
}

/* The replication hash over the header fields, @content and the attributes. */
static int hash_final(struct xa_src *x, char type, const struct stat *st,
		      const uint8_t content[HASH_LEN], uint8_t out[HASH_LEN])
{
	uint8_t hdr[sizeof(HASH_MAGIC) + 1 + 4 + 4 + 4 + 8];
	uint64_t size = type == 'd' ? 0 : (uint64_t)st->st_size;
	EVP_MD_CTX *ctx;
	uint8_t *p = hdr;
	int rc;

	memcpy(p, HASH_MAGIC, sizeof(HASH_MAGIC));
	p += sizeof(HASH_MAGIC);
	*p++ = (uint8_t)type;
	dfsr_put_be32(p, (uint32_t)(st->st_mode & 07777));
	dfsr_put_be32(p + 4, (uint32_t)st->st_uid);
	dfsr_put_be32(p + 8, (uint32_t)st->st_gid);
	dfsr_put_be64(p + 12, size);
	rc = md_init(&ctx);
	if (rc < 0)
		return rc;
	rc = md_update(ctx, hdr, sizeof(hdr));
	if (rc == 0)
		rc = md_update(ctx, content, HASH_LEN);
	if (rc == 0)
		rc = hash_xattrs(x, ctx);
	if (rc == 0)
		rc = md_final(ctx, out);
	EVP_MD_CTX_free(ctx);
	return rc;
}

_Static_assert(sizeof(HASH_MAGIC) == 12, "the magic is 11 characters and a NUL");

int hash_fd_stat(int fd, const struct stat *st, const uint8_t content[HASH_LEN],
		 struct hash_result *out)
{
	struct hash_result r;
	struct xa_src x = { .fd = fd };
	int rc = 0;
	char type;

	memset(&r, 0, sizeof(r));
	if (st)
		r.st = *st;
	else
		rc = stat_fd(fd, &r.st);
	if (rc < 0)
		return rc;
	if (S_ISREG(r.st.st_mode)) {
		type = 'f';
		if (content)
			memcpy(r.content, content, HASH_LEN);
		else
			rc = hash_file_data(fd, r.content, &r.st);
	} else if (S_ISLNK(r.st.st_mode)) {
		type = 'l';
		/* A link's target never changes in place (a new target is a new inode), so a
		 * known digest is always current; reusing it also leaves the link's atime alone. */
		if (content)
			memcpy(r.content, content, HASH_LEN);
		else
			rc = hash_link_data(fd, r.content, &r.st);
	} else if (S_ISDIR(r.st.st_mode)) {
		type = 'd';
	} else {
		return -ENOTSUP;
	}
	if (rc < 0)
		return rc;
	rc = hash_final(&x, type, &r.st, r.content, r.hash);
	if (rc < 0)
		return rc;
	*out = r;
	return 0;
}

int hash_fd(int fd, const uint8_t content[HASH_LEN], struct hash_result *out)
{
	return hash_fd_stat(fd, NULL, content, out);
}

int hash_at(int dirfd, const char *name, struct hash_result *out)
{
	int fd, rc;

	if (!name[0])
		return hash_fd(dirfd, NULL, out);
	fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = hash_fd(fd, NULL, out);
	close(fd);
	return rc;
}
