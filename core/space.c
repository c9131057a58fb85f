/*
 * space.c - the database's reserve on the local path's disk (see space.h).
 *
 * @est is the free space as last measured minus what was taken since; it only decides
 * when to measure again, never to refuse: a refusal always follows a fresh fstatvfs().
 */
#include "core/space.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/util.h"

#define SPACE_MEASURE_NS 1000000000LL  /* while far from the reserve */
#define SPACE_NOTIFY_NS  60000000000LL /* refusals told at most this often */

struct space {
	int fd; /* O_PATH on the filesystem; owned */
	uint64_t reserve;
	_Atomic int64_t est;         /* bytes free as measured, minus takes since */
	_Atomic int64_t measured_ns; /* monotonic */
	space_refused_fn refused_fn;
	void *refused_arg;
	_Atomic int64_t refused_ns; /* the last refused_fn call; 0: never */
};

static int measure(struct space *sp, int64_t *free_bytes)
{
	struct statvfs v;

	if (fstatvfs(sp->fd, &v) < 0)
		return -errno;
	*free_bytes = (int64_t)((uint64_t)v.f_bfree * v.f_frsize);
	return 0;
}

int space_new(int fd, struct space **out)
{
	struct space *sp = calloc(1, sizeof(*sp));
	struct statvfs v;
	uint64_t size;

	if (!sp)
		return -ENOMEM;
	sp->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (sp->fd < 0 || fstatvfs(sp->fd, &v) < 0) {
		int rc = -errno;

		if (sp->fd >= 0)
			close(sp->fd);
		free(sp);
		return rc;
	}
	size = (uint64_t)v.f_blocks * v.f_frsize;
	sp->reserve = size / 64;
	if (sp->reserve < SPACE_RESERVE_MIN)
		sp->reserve = SPACE_RESERVE_MIN;
	if (sp->reserve > SPACE_RESERVE_MAX)
		sp->reserve = SPACE_RESERVE_MAX;
	atomic_store(&sp->est, (int64_t)((uint64_t)v.f_bfree * v.f_frsize));
	atomic_store(&sp->measured_ns, dfsr_mono_ns());
	*out = sp;
	return 0;
}

void space_free(struct space *sp)
{
	if (!sp)
		return;
	close(sp->fd);
	free(sp);
}

int space_take(struct space *sp, uint64_t bytes)
{
	int64_t want, left, now, free_bytes = 0;

	if (!sp)
		return 0;
	want = bytes > (uint64_t)INT64_MAX / 2 ? INT64_MAX / 2 : (int64_t)bytes;
	left = atomic_fetch_sub(&sp->est, want) - want;
	now = dfsr_mono_ns();
	if (left >= 2 * (int64_t)sp->reserve &&
	    now - atomic_load(&sp->measured_ns) < SPACE_MEASURE_NS)
		return 0;
	if (measure(sp, &free_bytes) < 0)
		return 0;
	atomic_store(&sp->est, free_bytes);
	atomic_store(&sp->measured_ns, now);
	if (free_bytes - want >= (int64_t)sp->reserve)
		return 0;
	if (sp->refused_fn) {
		int64_t last = atomic_load(&sp->refused_ns);

		if ((last == 0 || now - last >= SPACE_NOTIFY_NS) &&
		    atomic_compare_exchange_strong(&sp->refused_ns, &last, now))
			sp->refused_fn(sp->refused_arg, free_bytes > 0 ? (uint64_t)free_bytes : 0,
				       sp->reserve);
	}
	return -ENOSPC;
}

void space_set_notify(struct space *sp, space_refused_fn fn, void *arg)
{
	sp->refused_fn = fn;
	sp->refused_arg = arg;
}

uint64_t space_reserve(const struct space *sp)
{
	return sp->reserve;
}
