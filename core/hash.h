/*
 * hash.h - the replication hash (DESIGN.md, "The replication hash"; docs/on-disk.md has the
 * exact canonical encoding).
 *
 * Two levels, so that a metadata change never re-reads a file's data:
 *
 *   content = SHA-256(file data)          for a regular file
 *           = SHA-256(link target bytes)  for a symbolic link
 *           = 32 zero bytes               for a directory
 *   hash    = SHA-256("dfsr-hash-1\0" || type byte 'f' | 'd' | 'l'
 *                     || be32 permission bits (mode & 07777)
 *                     || be32 owner uid || be32 group gid
 *                     || be64 size (data bytes, target length, 0 for a directory)
 *                     || content
 *                     || be32 number of xattrs
 *                     || for each xattr, sorted by name (bytewise):
 *                          be32 name length || name || be32 value length || value)
 *
 * Names and timestamps are not part of it: the same tree hashes the same after `cp -a`,
 * `rsync -aAX` or a rename. POSIX ACLs are the xattrs system.posix_acl_access and
 * system.posix_acl_default and so are covered. dfsr's own xattrs ("user.dfsr.*",
 * "trusted.dfsr.*") and security.selinux (a property of the machine, not the file) are
 * excluded. SHA-256 is OpenSSL's libcrypto (it uses the CPU's SHA instructions).
 *
 * Thread: any; no shared state.
 */
#ifndef DFSR_CORE_HASH_H
#define DFSR_CORE_HASH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#define HASH_LEN       32
#define HASH_HEX_LEN   65
#define HASH_XATTR_MAX (64 * 1024) /* bytes of one xattr value we accept */

struct hash_result {
	uint8_t hash[HASH_LEN];    /* the replication hash */
	uint8_t content[HASH_LEN]; /* SHA-256 of the data or link target; zero for directories */
	struct stat st;            /* lstat of the object the hash was taken from */
};

/**
 * hash_fd() - Replication hash of the object @fd refers to.
 * @fd:      any descriptor of the object, O_PATH included (regular files are reopened
 *           read-only through /proc/self/fd with O_NOATIME where allowed; symbolic links
 *           must be O_PATH|O_NOFOLLOW descriptors)
 * @content: the object's known content digest to reuse instead of reading the data or the
 *           link target, or NULL to read it (pass it only when the data is known unchanged;
 *           a symbolic link's target never changes in place)
 * @out:     receives the hashes and the stat the hash describes
 *
 * A file whose size or mtime changes while it is read is read again (up to 3 times), so
 * the result never mixes two versions.
 *
 * Thread: any. Blocks on disk: never call it on the loop thread.
 * Return: 0, -ENOENT if it vanished, -EAGAIN if it kept changing, -ENOTSUP for a type that
 *         is not a regular file, directory or symbolic link, or another -errno.
 */
int hash_fd(int fd, const uint8_t content[HASH_LEN], struct hash_result *out);

/**
 * hash_fd_stat() - hash_fd() given the caller's stat of the object.
 * @st: lstat of @fd's object taken by the caller just before the call (any descriptor of the
 *      same object), or NULL to take it here. It stands for hash_fd()'s own first stat, so
 *      it must be no older than a stat taken here would be: a file is read only after it,
 *      and the read is checked against a fresh stat afterwards as always.
 *
 * Saves one fstatat() per object for callers that had to stat it anyway (to tell its type).
 */
int hash_fd_stat(int fd, const struct stat *st, const uint8_t content[HASH_LEN],
		 struct hash_result *out);

/**
 * hash_at() - As hash_fd() for @name relative to directory @dirfd (never follows a final
 * symbolic link). @name may be "" with AT_EMPTY_PATH semantics.
 */
int hash_at(int dirfd, const char *name, struct hash_result *out);

/*
 * OpenSSL's SHA-256, fetched once: EVP_sha256() in every digest makes OpenSSL 3 look the
 * implementation up again each time. Use it wherever dfsr takes a SHA-256 (an EVP_MD *).
 * Thread: any.
 */
struct evp_md_st;
const struct evp_md_st *hash_sha256(void);

/* Lower-case hex of a 32-byte hash. */
void hash_hex(const uint8_t hash[HASH_LEN], char out[static HASH_HEX_LEN]);

/* True for xattr names that are dfsr's own or machine-local and so never hashed. */
bool hash_xattr_excluded(const char *name);

#endif
