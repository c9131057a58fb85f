/*
 * space.h - room on the local path's disk kept for the folder's database.
 *
 * The database (DfsrPrivate/db) shares the disk with the files. RocksDB takes no write
 * again, until it is reopened, once an append to its write-ahead log failed; so on a disk
 * that fills, the member could record no change until a restart. dfsr's own writes of file
 * data therefore leave the database a reserve: writes through the mount, downloads from
 * partners and staging (when it is on this disk) ask space_take() first and fail with
 * ENOSPC, as on a full disk, while less than the reserve would stay free. The database
 * goes on recording changes (a delete that makes room, too), and the member catches up
 * the moment there is room. Writers behind the mount are not held back, and the reserve
 * counts blocks free for root (dfsr runs as root; f_bfree).
 *
 * The reserve is 1/64 of the filesystem, at least 32 MiB (a write buffer's log and its flush,
 * core/db.c) and at most 128 MiB.
 *
 * Cost: an atomic subtraction per call; the disk is measured (fstatvfs) at most once a
 * second while more than twice the reserve is free, and at every call below that.
 *
 * Thread: any.
 */
#ifndef DFSR_CORE_SPACE_H
#define DFSR_CORE_SPACE_H

#include <stdint.h>

#define SPACE_RESERVE_MIN (32ull << 20)
#define SPACE_RESERVE_MAX (128ull << 20)

struct space;

/**
 * space_new() - A guard for the filesystem of @fd.
 * @fd:  any descriptor on that filesystem (O_PATH is enough); borrowed, only during the call
 * @out: receives the guard
 *
 * Return: 0, -ENOMEM, or the -errno of fstatvfs()/dup.
 */
int space_new(int fd, struct space **out);

/* NULL-safe. */
void space_free(struct space *sp);

/**
 * space_take() - Before dfsr writes up to @bytes of file data on the disk.
 * @sp:    the guard; NULL means no guard (0)
 * @bytes: at most what the write may allocate
 *
 * Return: 0, or -ENOSPC when fewer than @bytes plus the reserve are free. A disk that
 * cannot be measured is not refused (the write itself tells).
 */
int space_take(struct space *sp, uint64_t bytes);

/* The reserve in bytes. */
uint64_t space_reserve(const struct space *sp);

/* Called (from the refusing thread) when space_take() refuses, at most once a minute: what
 * was free, the reserve. */
typedef void (*space_refused_fn)(void *arg, uint64_t free_bytes, uint64_t reserve);

/* Set once, before the guard is shared. */
void space_set_notify(struct space *sp, space_refused_fn fn, void *arg);

#endif /* DFSR_CORE_SPACE_H */
