/*
 * util.c - the small things every layer needs: error text, UIDs, clocks, sizes, a byte
 * buffer and JSON string quoting.
 *
 * Nothing here keeps state but the per-thread pool of random bytes UIDs are drawn from.
 * dfsr_strerror() must be safe from any thread, so it never uses strerror(3)'s shared buffer for
 * unknown codes: the DFSR_E* codes come from a switch, and errno values from strerrordesc_np(3),
 * which returns a pointer into glibc's constant table. UIDs are 16 random bytes from libsodium
 * (through a small pool per thread, see dfsr_uid_random()); their text forms are the lower-case hex
 * used in the database and logs, and the upper-case GUID form that Windows DFSR writes into
 * preserved names ("name-{8-4-4-4-12}").
 *
 * dfsr_buf is a reduced git strbuf: always NUL-terminated, grows geometrically, and an
 * allocation failure leaves the previous contents intact, so a caller can bail out with
 * -ENOMEM and still release what it had.
 */
#include "core/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

const char *dfsr_strerror(int err)
{
	const char *s;

	switch (err) {
	case 0:
		return "Success";
	case DFSR_ECONFLICT:
		return "Conflicting concurrent updates";
	case DFSR_ESTALEVER:
		return "Version older than the one stored";
	case DFSR_ECONFIG:
		return "Invalid configuration";
	case DFSR_EFILTERED:
		return "Name excluded by a filter";
	case DFSR_ECORRUPT:
		return "Stored record is corrupt";
	case DFSR_ENOTRUNNING:
		return "No dfsr member is running";
	/* libuv's own codes on Linux (uv/errno.h); core does not include uv.h */
	case -4095:
		return "End of file";
	case -4080:
		return "Invalid Unicode character";
	case -4028:
		return "Inappropriate file type or format";
	case -3001:
		return "Temporary failure in name resolution";
	case -3008:
		return "Unknown node or service";
	default:
		break;
	}
	if (err <= -3000 && err > -3100)
		return "Address lookup failed";
	if (err < 0 && err > -4096) {
		s = strerrordesc_np(-err);
		if (s)
			return s;
	}
	return "Unknown error";
}

/*
 * UIDs are drawn from a small pool of random bytes per thread, refilled from libsodium
 * (randombytes_buf(): the kernel's getrandom()) DFSR_UID_POOL UIDs at a time, so that a
 * new record costs a system call only every DFSR_UID_POOL records. They are exactly as
 * unique and as random as UIDs drawn one by one: the bytes are the same generator's
 * output, and each byte is handed out once. The pool is the thread's own (no two threads
 * can take the same bytes, no lock), its cursor only moves forward, and a fork, which
 * would give the child a copy of the parent's unused bytes, empties the child's pool
 * (pthread_atfork(); the thread that forked is the only one a child has). UIDs are not
 * secret (every partner receives them), so bytes waiting in the pool disclose nothing.
 */
#define DFSR_UID_POOL 16

static _Thread_local struct {
	uint8_t b[DFSR_UID_POOL * DFSR_UID_LEN];
	size_t left; /* unused bytes, at the end of b; 0 (the initial value): empty */
} uid_pool;

static pthread_once_t uid_pool_once = PTHREAD_ONCE_INIT;

static void uid_pool_drop(void)
{
	uid_pool.left = 0;
}

static void uid_pool_setup(void)
{
	(void)pthread_atfork(NULL, NULL, uid_pool_drop);
}

void dfsr_uid_random(struct dfsr_uid *out)
{
	pthread_once(&uid_pool_once, uid_pool_setup);
	do {
		if (uid_pool.left < sizeof(out->b)) {
			randombytes_buf(uid_pool.b, sizeof(uid_pool.b));
			uid_pool.left = sizeof(uid_pool.b);
		}
		memcpy(out->b, uid_pool.b + sizeof(uid_pool.b) - uid_pool.left, sizeof(out->b));
		uid_pool.left -= sizeof(out->b);
	} while (dfsr_uid_is_zero(out));
}

bool dfsr_uid_is_zero(const struct dfsr_uid *u)
{
	uint8_t acc = 0;

	for (size_t i = 0; i < DFSR_UID_LEN; i++)
		acc |= u->b[i];
	return acc == 0;
}

bool dfsr_uid_equal(const struct dfsr_uid *a, const struct dfsr_uid *b)
{
	return memcmp(a->b, b->b, DFSR_UID_LEN) == 0;
}

int dfsr_uid_cmp(const struct dfsr_uid *a, const struct dfsr_uid *b)
{
	int c = memcmp(a->b, b->b, DFSR_UID_LEN);

	return c < 0 ? -1 : c > 0 ? 1 : 0;
}

static const char hex_lower[] = "0123456789abcdef";
static const char hex_upper[] = "0123456789ABCDEF";

void dfsr_uid_hex(const struct dfsr_uid *u, char out[static DFSR_UID_HEX_LEN])
{
	for (size_t i = 0; i < DFSR_UID_LEN; i++) {
		out[2 * i] = hex_lower[u->b[i] >> 4];
		out[2 * i + 1] = hex_lower[u->b[i] & 0xf];
	}
	out[2 * DFSR_UID_LEN] = '\0';
}

void dfsr_uid_guid(const struct dfsr_uid *u, char out[static DFSR_UID_GUID_LEN])
{
	size_t o = 0;

	for (size_t i = 0; i < DFSR_UID_LEN; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex_upper[u->b[i] >> 4];
		out[o++] = hex_upper[u->b[i] & 0xf];
	}
	out[o] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Reads 32 hex digits from @s, skipping '-' exactly at the GUID positions if @guid. */
static int parse_digits(const char *s, size_t len, bool guid, struct dfsr_uid *out)
{
	struct dfsr_uid u;
	size_t pos = 0;

	for (size_t i = 0; i < DFSR_UID_LEN; i++) {
		int hi, lo;

		if (guid && (i == 4 || i == 6 || i == 8 || i == 10)) {
			if (pos >= len || s[pos] != '-')
				return -EINVAL;
			pos++;
		}
		if (pos + 2 > len)
			return -EINVAL;
		hi = hexval(s[pos]);
		lo = hexval(s[pos + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		u.b[i] = (uint8_t)((hi << 4) | lo);
		pos += 2;
	}
	if (pos != len)
		return -EINVAL;
	*out = u;
	return 0;
}

int dfsr_uid_parse(const char *s, struct dfsr_uid *out)
{
	size_t len;

	if (!s)
		return -EINVAL;
	len = strlen(s);
	if (len == 32)
		return parse_digits(s, len, false, out);
	if (len == 36)
		return parse_digits(s, len, true, out);
	if (len == 38 && s[0] == '{' && s[37] == '}')
		return parse_digits(s + 1, 36, true, out);
	return -EINVAL;
}

static int64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t dfsr_now_ns(void)
{
	return clock_ns(CLOCK_REALTIME);
}

int64_t dfsr_mono_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

void dfsr_time_iso(int64_t ns, char *buf, size_t len)
{
	int64_t sec = ns / 1000000000;
	time_t t;
	struct tm tm;

	if (!len)
		return;
	if (ns < 0 && ns % 1000000000)
		sec--;
	t = (time_t)sec;
	if (!gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "%s", "1970-01-01T00:00:00Z");
}

int dfsr_parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	unsigned shift = 0;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		uint64_t d = (uint64_t)(*s - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	switch (*s) {
	case '\0':
		break;
	case 'K':
	case 'k':
		shift = 10;
		break;
	case 'M':
	case 'm':
		shift = 20;
		break;
	case 'G':
	case 'g':
		shift = 30;
		break;
	case 'T':
	case 't':
		shift = 40;
		break;
	default:
		return -EINVAL;
	}
	if (shift) {
		s++;
		if (*s != '\0')
			return -EINVAL;
		if (v > (UINT64_MAX >> shift))
			return -ERANGE;
		v <<= shift;
	}
	*out = v;
	return 0;
}

int dfsr_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* --- dfsr_buf ----------------------------------------------------------------- */

/* Shared empty string so that an initialised buffer is NUL-terminated without allocating. */
static char buf_empty[1];

void dfsr_buf_init(struct dfsr_buf *b)
{
	b->p = buf_empty;
	b->len = 0;
	b->cap = 0;
}

void dfsr_buf_release(struct dfsr_buf *b)
{
	if (b->cap)
		free(b->p);
	dfsr_buf_init(b);
}

char *dfsr_buf_detach(struct dfsr_buf *b, size_t *len)
{
	char *p;

	if (len)
		*len = b->len;
	if (b->cap) {
		p = b->p;
	} else {
		p = calloc(1, 1);
		if (!p)
			return NULL;
	}
	dfsr_buf_init(b);
	return p;
}

/* Makes room for @extra more bytes plus the NUL. */
static int buf_grow(struct dfsr_buf *b, size_t extra)
{
	size_t need, cap;
	char *p;

	if (extra > SIZE_MAX - b->len - 1)
		return -ENOMEM;
	need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	p = realloc(b->cap ? b->p : NULL, cap);
	if (!p)
		return -ENOMEM;
	if (!b->cap)
		p[0] = '\0';
	b->p = p;
	b->cap = cap;
	return 0;
}

int dfsr_buf_add(struct dfsr_buf *b, const void *data, size_t len)
{
	int rc = buf_grow(b, len);

	if (rc < 0)
		return rc;
	if (len)
		memcpy(b->p + b->len, data, len);
	b->len += len;
	b->p[b->len] = '\0';
	return 0;
}

int dfsr_buf_addf(struct dfsr_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;
	int rc;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	rc = buf_grow(b, (size_t)n);
	if (rc < 0)
		return rc;
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->p[b->len] = '\0';
		return -EINVAL;
	}
	b->len += (size_t)n;
	return 0;
}

/* Length of the valid UTF-8 sequence at @s (1..4), or 0 if the bytes there are not one. */
static size_t utf8_seq_len(const unsigned char *s)
{
	unsigned c = s[0];
	size_t n;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3fu);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

const char *dfsr_text_line(const char *s, char *out, size_t len)
{
	size_t o = 0;

	if (!len)
		return out;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char esc[5];
		size_t n = 1;

		if (*p == '\n')
			n = (size_t)snprintf(esc, sizeof(esc), "\\n");
		else if (*p == '\r')
			n = (size_t)snprintf(esc, sizeof(esc), "\\r");
		else if (*p == '\t')
			n = (size_t)snprintf(esc, sizeof(esc), "\\t");
		else if (*p < 0x20 || *p == 0x7f)
			n = (size_t)snprintf(esc, sizeof(esc), "\\x%02x", *p);
		else
			esc[0] = (char)*p;
		if (o + n >= len)
			break;
		memcpy(out + o, esc, n);
		o += n;
	}
	out[o] = '\0';
	return out;
}

int dfsr_json_str(struct dfsr_buf *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	int rc;

	rc = dfsr_buf_add(out, "\"", 1);
	while (rc == 0 && *p) {
		unsigned char c = *p;
		size_t n;

		switch (c) {
		case '"':
			rc = dfsr_buf_add(out, "\\\"", 2);
			p++;
			continue;
		case '\\':
			rc = dfsr_buf_add(out, "\\\\", 2);
			p++;
			continue;
		case '\n':
			rc = dfsr_buf_add(out, "\\n", 2);
			p++;
			continue;
		case '\r':
			rc = dfsr_buf_add(out, "\\r", 2);
			p++;
			continue;
		case '\t':
			rc = dfsr_buf_add(out, "\\t", 2);
			p++;
			continue;
		default:
			break;
		}
		if (c < 0x20 || c == 0x7f) {
			rc = dfsr_buf_addf(out, "\\u%04x", c);
			p++;
			continue;
		}
		n = utf8_seq_len(p);
		if (n == 0) {
			rc = dfsr_buf_addf(out, "\\u%04x", c);
			p++;
			continue;
		}
		rc = dfsr_buf_add(out, p, n);
		p += n;
	}
	if (rc == 0)
		rc = dfsr_buf_add(out, "\"", 1);
	return rc;
}

/* ---- UID sets ---- */

static size_t uid_slot(const struct dfsr_uid *u, size_t cap)
{
	return (size_t)(dfsr_get_be64(u->b) ^ dfsr_get_be64(u->b + 8)) & (cap - 1);
}

bool dfsr_uid_set_has(const struct dfsr_uid_set *s, const struct dfsr_uid *u)
{
	if (!s->cap)
		return false;
	for (size_t i = uid_slot(u, s->cap);; i = (i + 1) & (s->cap - 1)) {
		if (dfsr_uid_is_zero(&s->v[i]))
			return false;
		if (dfsr_uid_equal(&s->v[i], u))
			return true;
	}
}

static void uid_set_put(struct dfsr_uid_set *s, const struct dfsr_uid *u)
{
	size_t i = uid_slot(u, s->cap);

	while (!dfsr_uid_is_zero(&s->v[i]))
		i = (i + 1) & (s->cap - 1);
	s->v[i] = *u;
	s->n++;
}

int dfsr_uid_set_add(struct dfsr_uid_set *s, const struct dfsr_uid *u)
{
	if (dfsr_uid_is_zero(u) || dfsr_uid_set_has(s, u))
		return 0;
	if ((s->n + 1) * 2 > s->cap) {
		struct dfsr_uid_set g = { .cap = s->cap ? s->cap * 2 : 64 };

		g.v = calloc(g.cap, sizeof(*g.v));
		if (!g.v)
			return -ENOMEM;
		for (size_t i = 0; i < s->cap; i++)
			if (!dfsr_uid_is_zero(&s->v[i]))
				uid_set_put(&g, &s->v[i]);
		free(s->v);
		*s = g;
	}
	uid_set_put(s, u);
	return 0;
}

void dfsr_uid_set_release(struct dfsr_uid_set *s)
{
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* ---- small files ---- */

int dfsr_read_small(int dirfd, const char *name, size_t max, struct dfsr_buf *out)
{
	char chunk[16384];
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	int rc = 0;

	if (fd < 0)
		return errno == ELOOP ? -EBADMSG : -errno;
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = errno == EISDIR ? -EBADMSG : -errno;
			break;
		}
		if (n == 0)
			break;
		if (out->len + (size_t)n > max) {
			rc = -EBADMSG;
			break;
		}
		rc = dfsr_buf_add(out, chunk, (size_t)n);
		if (rc < 0)
			break;
	}
	close(fd);
	return rc;
}

int dfsr_fsync_dir(int dirfd)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* dfsr_copy_data() where the kernel cannot copy between the two files itself. */
static int copy_by_read(int in, int out)
{
	uint8_t buf[1 << 16];

	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));
		int rc;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : 0;
		rc = dfsr_write_all(out, buf, (size_t)n);
		if (rc < 0)
			return rc;
	}
}

int dfsr_copy_data(int in, int out)
{
	bool moved = false;

	for (;;) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, 1u << 30, 0);

		if (n < 0 && errno == EINTR)
			continue;
		/* across filesystems (e.g. into a FUSE mount), or not supported: copy by hand;
		 * both ways use and advance the same file offsets */
		if (n < 0 && !moved &&
		    (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP))
			return copy_by_read(in, out);
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		moved = true;
	}
}

DIR *dfsr_opendir_at(int dfd, const char *name)
{
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;

	if (!d && fd >= 0) {
		int e = errno;

		close(fd);
		errno = e;
	}
	return d;
}

static int remove_tree(int dfd, const char *name, int depth)
{
	struct dirent *de;
	int rc = 0;
	DIR *d;

	if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -errno;
	if (depth > DFSR_TREE_DEPTH_MAX)
		return -ELOOP;
	d = dfsr_opendir_at(dfd, name);
	if (!d)
		return -errno;
	while (rc == 0 && (de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			rc = remove_tree(dirfd(d), de->d_name, depth + 1);
	closedir(d);
	if (rc == 0 && unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		rc = -errno;
	return rc;
}

int dfsr_remove_tree(int dfd, const char *name)
{
	return remove_tree(dfd, name, 0);
}

#define XATTR_LIST_SMALL 1024 /* bytes of names listed without a size query */
#define XATTR_LIST_TRIES 3

static ssize_t xattr_list(int fd, const char *path, bool follow, char *buf, size_t size)
{
	if (fd >= 0)
		return flistxattr(fd, buf, size);
	return follow ? listxattr(path, buf, size) : llistxattr(path, buf, size);
}

int dfsr_xattr_names(int fd, const char *path, bool follow, size_t max, char **out, size_t *len)
{
	char small[XATTR_LIST_SMALL];
	ssize_t n = xattr_list(fd, path, follow, small, sizeof(small));

	*out = NULL;
	*len = 0;
	if (n < 0 && errno == ENOTSUP)
		return 0;
	if (n < 0 && errno != ERANGE)
		return -errno;
	if (n > 0 && (size_t)n > max)
		return -E2BIG;
	if (n > 0) {
		*out = malloc((size_t)n + 1);
		if (!*out)
			return -ENOMEM;
		memcpy(*out, small, (size_t)n);
		(*out)[n] = '\0';
		*len = (size_t)n;
	}
	for (int i = 0; n < 0 && i < XATTR_LIST_TRIES; i++) {
		char *buf;

		n = xattr_list(fd, path, follow, NULL, 0);
		if (n < 0)
			return -errno;
		if (n == 0) /* gone meanwhile (a call with size 0 would only ask the size again) */
			return 0;
		if ((size_t)n > max)
			return -E2BIG;
		buf = malloc((size_t)n + 1);
		if (!buf)
			return -ENOMEM;
		n = xattr_list(fd, path, follow, buf, (size_t)n);
		if (n < 0) {
			int rc = -errno;

			free(buf);
			if (rc != -ERANGE) /* ERANGE: it grew meanwhile, ask again */
				return rc;
			continue;
		}
		buf[n] = '\0';
		*out = buf;
		*len = (size_t)n;
	}
	return n < 0 ? -EAGAIN : 0;
}
