/*
 * util.h - project-wide helpers of dfsr: UIDs, error codes, time, small macros.
 *
 * Everything here is dependency-free and usable from every layer. Errors follow the house
 * rule: 0 on success, negative errno on failure; dfsr's own domain codes live from -5000
 * down (DFSR_E*), clear of libuv's ranges, and dfsr_strerror() knows both.
 *
 * Thread: every function here is safe from any thread.
 */
#ifndef DFSR_CORE_UTIL_H
#define DFSR_CORE_UTIL_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DFSR_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define DFSR_NODISCARD    __attribute__((warn_unused_result))
#define DFSR_UNUSED       __attribute__((unused))

#define DFSR_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
/* Casts through void * so that -Wcast-align stays quiet (STYLE rule 15). */
#define dfsr_container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr)-offsetof(type, member)))
/* The same from a pointer to const, giving a pointer to const (-Wcast-qual). */
#define dfsr_container_of_const(ptr, type, member) \
	((const type *)(const void *)((const char *)(ptr)-offsetof(type, member)))

/* Domain error codes (STYLE rule 6). Never passed to fuse_reply_err(). */
#define DFSR_ECONFLICT   (-5001) /* concurrent edits; loser kept as a conflict copy */
#define DFSR_ESTALEVER   (-5002) /* version vector older than the one stored */
#define DFSR_ECONFIG     (-5003) /* configuration invalid (the message was already printed) */
#define DFSR_EFILTERED   (-5004) /* the name is excluded by a file or subfolder filter */
#define DFSR_ECORRUPT    (-5005) /* a stored record does not decode */
#define DFSR_ENOTRUNNING (-5006) /* no member answers on the control socket */

/**
 * dfsr_strerror() - Text for a negative errno or a DFSR_E* code.
 * @err: a negative error code
 *
 * Thread: any.
 * Return: a static string; never NULL.
 */
const char *dfsr_strerror(int err);

#define DFSR_UID_LEN 16

/* 128-bit identity of a file or folder (and of a database), stable across renames. */
struct dfsr_uid {
	uint8_t b[DFSR_UID_LEN];
};

/* Text forms: 32 lower-case hex digits, or the GUID form used in preserved names. */
#define DFSR_UID_HEX_LEN  33 /* 32 digits + NUL */
#define DFSR_UID_GUID_LEN 37 /* 8-4-4-4-12 + NUL, upper case as DFSR writes it */

/**
 * dfsr_uid_random() - A new random UID (libsodium's randombytes_buf).
 * @out: receives the UID, never all zero
 *
 * The random bytes are fetched for 16 UIDs at a time into a pool of the calling thread's
 * own (one getrandom() per 16 records; each byte used once; emptied in a forked child),
 * which leaves UIDs as unique and random as fetching each alone (util.c says why).
 *
 * Thread: any (sodium_init() ran in main).
 */
void dfsr_uid_random(struct dfsr_uid *out);

/* The all-zero UID means "not replicated" (filtered or outside any record). */
bool dfsr_uid_is_zero(const struct dfsr_uid *u);
bool dfsr_uid_equal(const struct dfsr_uid *a, const struct dfsr_uid *b);
int dfsr_uid_cmp(const struct dfsr_uid *a, const struct dfsr_uid *b);
void dfsr_uid_hex(const struct dfsr_uid *u, char out[static DFSR_UID_HEX_LEN]);

/*
 * A set of UIDs: open addressing over a power-of-two table (UIDs are random, so their
 * first bytes are the hash), a zero UID marking an empty slot (so the zero UID cannot be
 * a member). Zero-initialise (= { 0 }); free with dfsr_uid_set_release().
 * Thread: one owner at a time.
 */
struct dfsr_uid_set {
	struct dfsr_uid *v;
	size_t n, cap;
};

bool dfsr_uid_set_has(const struct dfsr_uid_set *s, const struct dfsr_uid *u);
/* Add @u (nothing if it is there already, or is zero). Return: 0 or -ENOMEM. */
int dfsr_uid_set_add(struct dfsr_uid_set *s, const struct dfsr_uid *u);
/* Frees the table; @s is empty and reusable afterwards. */
void dfsr_uid_set_release(struct dfsr_uid_set *s);

void dfsr_uid_guid(const struct dfsr_uid *u, char out[static DFSR_UID_GUID_LEN]);

/**
 * dfsr_uid_parse() - Parse the hex or the GUID form (with or without braces).
 * @s:   text
 * @out: receives the UID on success
 *
 * Return: 0, or -EINVAL if @s is neither form.
 */
int dfsr_uid_parse(const char *s, struct dfsr_uid *out);

/* Wall-clock time in nanoseconds since the epoch (CLOCK_REALTIME). */
int64_t dfsr_now_ns(void);
/* Monotonic time in nanoseconds (CLOCK_MONOTONIC), for deadlines and rates. */
int64_t dfsr_mono_ns(void);

/**
 * dfsr_time_iso() - Format nanoseconds since the epoch as "2026-11-21T10:00:00Z" (UTC).
 * @ns:  time
 * @buf: receives the text
 * @len: size of @buf; 32 is always enough
 */
void dfsr_time_iso(int64_t ns, char *buf, size_t len);

/**
 * dfsr_parse_size() - Parse a size with an optional K, M, G or T suffix (powers of 1024).
 * @s:   text; must start with a digit, no spaces, no sign
 * @out: receives bytes on success
 *
 * Return: 0, -EINVAL on bad text, -ERANGE on overflow.
 */
int dfsr_parse_size(const char *s, uint64_t *out);

/**
 * dfsr_write_all() - write(2) until done, retrying on EINTR and short writes.
 * Return: 0 or -errno.
 */
int dfsr_write_all(int fd, const void *buf, size_t len);

/**
 * dfsr_json_str() - Append @s to @out as a JSON string literal (quotes and escapes).
 * @out: buffer
 * @s:   NUL-terminated UTF-8 (invalid bytes are written as \u00XX)
 *
 * Return: 0 or -ENOMEM.
 */
struct dfsr_buf;
int dfsr_json_str(struct dfsr_buf *out, const char *s);

/**
 * dfsr_text_line() - @s made fit for one line of text output (a file name in `dfsr
 * journal`, an event message): each control character (below 0x20, and 0x7f) is written
 * \n, \r, \t or \xHH, so a name can neither break a line nor forge one. Other bytes are
 * copied. Truncated to @len - 1 bytes, never inside an escape.
 * Return: @out.
 */
const char *dfsr_text_line(const char *s, char *out, size_t len);

/*
 * A growable byte buffer, always NUL-terminated (git's strbuf, reduced). Ownership: the
 * buffer owns ->p; dfsr_buf_release() frees it and leaves the buffer empty and reusable;
 * dfsr_buf_detach() hands ->p to the caller, who free()s it.
 */
struct dfsr_buf {
	char *p;
	size_t len;
	size_t cap;
};

void dfsr_buf_init(struct dfsr_buf *b);
void dfsr_buf_release(struct dfsr_buf *b);
char *dfsr_buf_detach(struct dfsr_buf *b, size_t *len);
int dfsr_buf_add(struct dfsr_buf *b, const void *data, size_t len);
int dfsr_buf_addf(struct dfsr_buf *b, const char *fmt, ...) DFSR_PRINTF(2, 3);

/**
 * dfsr_read_small() - Append the whole of the small file @name in @dirfd (not following a
 * link) to @out, for documents read as untrusted input (manifests, clone descriptions).
 * Return: 0; -EBADMSG if it is a link, a directory, or longer than @max bytes; -ENOENT,
 *         -ENOMEM, or another -errno of opening or reading.
 */
int dfsr_read_small(int dirfd, const char *name, size_t max, struct dfsr_buf *out);

/* fsync() the directory @dirfd (an O_PATH descriptor will do: "." is opened). Return: 0 or
 * -errno. */
int dfsr_fsync_dir(int dirfd);

/* Copy the rest of @in into @out from their file offsets: copy_file_range() (the kernel
 * may share blocks), or read() and write() where it cannot (another filesystem).
 * Return: 0 or -errno. */
int dfsr_copy_data(int in, int out);

/* A directory stream on @name in @dfd ("." for @dfd itself), not following a symlink; its
 * descriptor is the stream's. NULL with errno set. */
DIR *dfsr_opendir_at(int dfd, const char *name);

/* Remove @name in @dfd and everything below it, never following a link; a missing @name
 * is not an error. Return: 0, -ELOOP past DFSR_TREE_DEPTH_MAX levels, or another -errno. */
#define DFSR_TREE_DEPTH_MAX 4096
int dfsr_remove_tree(int dfd, const char *name);

/**
 * dfsr_xattr_names() - The NUL-separated extended attribute names of an object.
 * @fd:     a descriptor of it (flistxattr()), or -1 to use @path
 * @path:   with @fd < 0, its path
 * @follow: with @path, follow a final symbolic link (listxattr(), as a /proc/self/fd/N path
 *          of an O_PATH descriptor needs) or not (llistxattr())
 * @max:    the longest list accepted
 * @out:    receives the malloc'ed list, NUL-terminated after its last name, or NULL when
 *          there is none (also where the filesystem has no xattrs at all)
 * @len:    receives its length in bytes
 *
 * Most objects have no attribute or a few: one call into a small buffer answers those, and
 * only a longer list costs a size query first.
 * Return: 0, -E2BIG past @max, -EAGAIN if the list kept growing between the calls, -ENOMEM,
 *         or the call's -errno (-EBADF for an O_PATH @fd).
 */
int dfsr_xattr_names(int fd, const char *path, bool follow, size_t max, char **out, size_t *len);

/* Big-endian integers in byte buffers: the one encoding of dfsr's disk and wire formats
 * (no struct is ever cast onto a buffer; STYLE rule 17). */
static inline void dfsr_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void dfsr_put_be64(uint8_t *p, uint64_t v)
{
	dfsr_put_be32(p, (uint32_t)(v >> 32));
	dfsr_put_be32(p + 4, (uint32_t)v);
}

static inline uint32_t dfsr_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint64_t dfsr_get_be64(const uint8_t *p)
{
	return (uint64_t)dfsr_get_be32(p) << 32 | dfsr_get_be32(p + 4);
}

#endif
