/*
 * fs.c - one mount's life: check the mount point, create and mount the FUSE session, run
 * the multi-threaded loop, stop and unmount.
 *
 * The session is created with allow_other and default_permissions (the daemon runs as
 * root and lets the kernel check every access against the local path's own permissions
 * and ACLs), fsname=dfsr:<folder> and subtype dfsr, so `mount` shows "dfsr:<folder> on
 * <mount> type fuse.dfsr". The mount point must be an empty directory that is not already
 * a mount, or the local path itself: then the mount covers the real files, which stay
 * reachable below it through the O_PATH descriptor opened before mounting.
 *
 * Stopping: fs_stop() may run on any thread (the signal-handling one). It marks the
 * session exited and unmounts; the kernel then ends the connection and every worker's read
 * of /dev/fuse returns, so fs_run() returns. If the mount is busy it is detached lazily and
 * one worker is woken by a request (wake_worker()), so that the loop ends even while a
 * process keeps a file or a working directory inside the mount (those then see ENOTCONN).
 *
 * libfuse's own messages go to the system log as event 2001 (fuse_set_log_func).
 */
#include "fs/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/event.h"
#include "fs/internal.h"

/*
 * Default worker threads: one per CPU, at least 2 (so that a release that hashes a large
 * file does not stall every other request) and at most 4. More threads than CPUs only add
 * wake-ups on other CPUs: on a 2-CPU VM a round trip took 8.5 us with 1 thread, 10 us with
 * 2 and 18 us with 4, because the kernel hands requests to waiting threads in turn.
 */
#define FS_MIN_THREADS   2
#define FS_MAX_THREADS   4
#define FS_CACHE_TIMEOUT 3600.0 /* seconds: every change to the view passes through us */
#define FS_OPTS_LEN      512

__attribute__((format(printf, 2, 0))) static void fs_log(enum fuse_log_level level, const char *fmt,
							 va_list ap)
{
	char msg[EVENT_MSG_MAX / 2];
	size_t len;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	len = strlen(msg);
	while (len > 0 && msg[len - 1] == '\n')
		msg[--len] = '\0';
	if (level == FUSE_LOG_DEBUG) {
		/* Only printed with -d (fs_opts.debug): a line per request, not for syslog. */
		fprintf(stderr, "%s\n", msg);
		return;
	}
	event_log(EV_FUSE_MESSAGE, "level=%d msg=\"%s\"", (int)level, msg);
}

/* Is @path the root of a mount? */
static int is_mount_root(const char *path, bool *out)
{
	struct statx stx;

	if (statx(AT_FDCWD, path, AT_NO_AUTOMOUNT, STATX_INO, &stx) < 0)
		return -errno;
	*out = (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
	       (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
	return 0;
}

static int dir_is_empty(const char *path, bool *out)
{
	DIR *d = opendir(path);
	struct dirent *de;

	if (!d)
		return -errno;
	*out = true;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
			*out = false;
			break;
		}
	}
	closedir(d);
	return 0;
}

/* True if @mp lies strictly below @path (both resolved, so symlinks cannot hide it). */
static bool mount_inside_path(const char *mp, const char *path)
{
	char *rm = realpath(mp, NULL), *rp = realpath(path, NULL);
	bool inside = false;
	size_t n;

	if (rm && rp) {
		n = strlen(rp);
		inside = strncmp(rm, rp, n) == 0 && (rm[n] == '/' || (n == 1 && rm[1]));
	}
	free(rm);
	free(rp);
	return inside;
}

static int check_mountpoint(const struct fs_opts *o, char err[static FS_ERR_LEN])
{
	const char *mp = o->folder->mount;
	struct stat mst, rst;
	bool flag = false;
	int rc;

	if (stat(mp, &mst) < 0) {
		rc = -errno;
		snprintf(err, FS_ERR_LEN, "mount point %s: %s", mp, strerror(-rc));
		return rc;
	}
	if (!S_ISDIR(mst.st_mode)) {
		snprintf(err, FS_ERR_LEN, "mount point %s is not a directory", mp);
		return -ENOTDIR;
	}
	if (fstat(o->root_fd, &rst) < 0) {
		rc = -errno;
		snprintf(err, FS_ERR_LEN, "local path %s: %s", o->folder->path, strerror(-rc));
		return rc;
	}
	if (mst.st_dev == rst.st_dev && mst.st_ino == rst.st_ino)
		return 0; /* mounting over the local path itself */
	if (mount_inside_path(mp, o->folder->path)) {
		/* The mount would appear in its own backing tree: every walk of the local path
		 * (scan, lookups through root_fd) would cross into the mount and recurse. */
		snprintf(err, FS_ERR_LEN, "mount point %s is inside the local path %s", mp,
			 o->folder->path);
		return -EINVAL;
	}
	rc = is_mount_root(mp, &flag);
	if (rc == 0 && flag) {
		snprintf(err, FS_ERR_LEN, "mount point %s is already a mount", mp);
		return -EBUSY;
	}
	rc = dir_is_empty(mp, &flag);
	if (rc < 0) {
		snprintf(err, FS_ERR_LEN, "mount point %s: %s", mp, strerror(-rc));
		return rc;
	}
	if (!flag) {
		snprintf(err, FS_ERR_LEN, "mount point %s is not empty", mp);
		return -ENOTEMPTY;
	}
	return 0;
}

/* "dfsr:<folder>" as the mount source, made a single harmless token. */
static void mount_source(const struct fs_opts *o, char out[static FS_OPTS_LEN])
{
	size_t i;

	snprintf(out, FS_OPTS_LEN, "dfsr:%s", o->folder->name ? o->folder->name : "folder");
	for (i = 0; out[i]; i++)
		if (out[i] == ',' || out[i] == '\\' || out[i] == ' ' || out[i] == '\t' ||
		    out[i] == '\n' || out[i] == '"')
			out[i] = '_';
}

static int session_create(struct fs *fs, const struct fs_opts *o, char err[static FS_ERR_LEN])
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	int rc = 0;

	if (fuse_opt_add_arg(&args, "dfsr") != 0 ||
	    (o->debug && fuse_opt_add_arg(&args, "-d") != 0)) {
		rc = -ENOMEM;
		snprintf(err, FS_ERR_LEN, "out of memory");
		goto out_free_args;
	}
	fs->se = fuse_session_new(&args, &fs__ops, sizeof(fs__ops), fs);
	if (!fs->se) {
		rc = -EIO;
		snprintf(err, FS_ERR_LEN, "cannot create the FUSE session (see the system log)");
	}
out_free_args:
	fuse_opt_free_args(&args);
	return rc;
}

/*
 * The device I/O of the session. Plain read/writev/splice, except for one thing: the reply
 * to INIT (always the first reply of a session) gets FUSE_HANDLE_KILLPRIV_V2 added, which
 * libfuse 3.14 cannot ask for. With it the kernel marks the superblock SB_NOSEC and stops
 * sending GETXATTR("security.capability") before every write(2) -- a round trip per write
 * that capped 4 KiB writes at a tenth of native speed. In exchange the server must kill
 * set-id bits on unprivileged writes and truncates: the backing filesystem already kills
 * capabilities (it always does, even for root), and fs/ops.c kills set-id bits itself
 * (kill_suid()), since we write as root, for whom the backing filesystem keeps them.
 */
static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	struct fs *fs = userdata;

	if (!atomic_exchange(&fs->init_replied, true) && count >= 2 &&
	    iov[0].iov_len == sizeof(struct fuse_out_header) &&
	    iov[1].iov_len >= offsetof(struct fuse_init_out, flags) + sizeof(uint32_t)) {
		const struct fuse_out_header *oh = iov[0].iov_base;
		struct fuse_init_out *init = iov[1].iov_base;

		if (oh->error == 0 && init->major == FUSE_KERNEL_VERSION) {
			init->flags |= FUSE_HANDLE_KILLPRIV_V2;
			fs->killpriv = true;
		}
	}
	return writev(fd, iov, count);
}

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata)
{
	(void)userdata;
	return read(fd, buf, len);
}

static ssize_t io_splice(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
			 unsigned int flags, void *userdata)
{
	(void)userdata;
	return splice(fdin, offin, fdout, offout, len, flags);
}

static const struct fuse_custom_io fs_io = {
	.writev = io_writev,
	.read = io_read,
	.splice_receive = io_splice,
	.splice_send = io_splice,
};

/*
 * Raise the readahead window of the new mount's bdi (named after the superblock's device,
 * "0:N") to FS_READAHEAD_KB. The device comes from a statx that asks for no attributes
 * and must not sync: it is answered from the inode without a request, which matters
 * because nobody serves the mount yet. Failing is harmless: the kernel's default stays.
 */
static void set_readahead(const struct fs *fs)
{
	char path[96], val[16];
	struct statx stx;
	int fd, len;

	if (statx(AT_FDCWD, fs->mountpoint, AT_STATX_DONT_SYNC | AT_NO_AUTOMOUNT, 0, &stx) < 0 ||
	    !(stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) ||
	    !(stx.stx_attributes & STATX_ATTR_MOUNT_ROOT))
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", stx.stx_dev_major,
		 stx.stx_dev_minor);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	len = snprintf(val, sizeof(val), "%u", FS_READAHEAD_KB);
	(void)!write(fd, val, (size_t)len);
	close(fd);
}

/*
 * Mount by hand (we are root): open /dev/fuse, mount(2) it with the kernel's options, and
 * hand the descriptor to the session with our device I/O.
 */
static int session_mount(struct fs *fs, const struct fs_opts *o, char err[static FS_ERR_LEN])
{
	char source[FS_OPTS_LEN], opts[FS_OPTS_LEN];
	int fd, rc;

	fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, FS_ERR_LEN, "/dev/fuse: %s", strerror(-rc));
		return rc == -ENOENT ? -ENOENT : -EACCES;
	}
	mount_source(o, source);
	snprintf(opts, sizeof(opts),
		 "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions", fd);
	/* A read-only member (read_only = yes): the kernel refuses every change with EROFS
	 * before a request reaches us (CONTRACT.md). Installs write the local path, not this. */
	if (mount(source, fs->mountpoint, "fuse.dfsr",
		  MS_NOSUID | MS_NODEV | (o->folder->read_only ? MS_RDONLY : 0UL), opts) < 0) {
		rc = -errno;
		snprintf(err, FS_ERR_LEN, "cannot mount on %s: %s", fs->mountpoint, strerror(-rc));
		close(fd);
		return rc == -EBUSY ? -EBUSY : rc == -EACCES || rc == -EPERM ? -EACCES : -EIO;
	}
	fs->mounted = true;
	set_readahead(fs);
	rc = fuse_session_custom_io(fs->se, &fs_io, fd);
	if (rc < 0) {
		close(fd);
		snprintf(err, FS_ERR_LEN, "cannot attach the FUSE device: %s", strerror(-rc));
		return -EIO;
	}
	return 0;
}

static unsigned default_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < FS_MIN_THREADS)
		return FS_MIN_THREADS;
	return n > FS_MAX_THREADS ? FS_MAX_THREADS : (unsigned)n;
}

int fs_new(const struct fs_opts *o, struct fs **out, char err[static FS_ERR_LEN])
{
	struct fs *fs;
	int rc;

	err[0] = '\0';
	rc = check_mountpoint(o, err);
	if (rc < 0)
		return rc;
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->journal = o->journal;
	fs->folder = o->folder;
	fs->threads = o->threads ? o->threads : default_threads();
	fs->timeout = FS_CACHE_TIMEOUT;
	atomic_init(&fs->stopping, false);
	fs->root.fd = -1;
	fs->handles.next = fs->handles.prev = &fs->handles;
	fs->pending.next = fs->pending.prev = &fs->pending;
	atomic_init(&fs->npending, 0);
	atomic_init(&fs->unsaved, 0);
	fs->mountpoint = strdup(o->folder->mount);
	if (!fs->mountpoint) {
		rc = -ENOMEM;
		goto out_free;
	}
	rc = pthread_mutex_init(&fs->lock, NULL);
	if (rc != 0) {
		rc = -rc;
		goto out_free;
	}
	rc = pthread_mutex_init(&fs->pending_lock, NULL);
	if (rc != 0) {
		rc = -rc;
		goto out_mutex;
	}
	rc = pthread_cond_init(&fs->pending_done, NULL);
	if (rc != 0) {
		rc = -rc;
		goto out_pending_lock;
	}
	fs->root.fd = fcntl(o->root_fd, F_DUPFD_CLOEXEC, 3);
	if (fs->root.fd < 0) {
		rc = -errno;
		snprintf(err, FS_ERR_LEN, "local path %s: %s", o->folder->path, strerror(-rc));
		goto out_pending_cond;
	}
	rc = fs__itable_init(fs, journal_root_uid(o->journal));
	if (rc < 0) {
		snprintf(err, FS_ERR_LEN, "local path %s: %s", o->folder->path, strerror(-rc));
		goto out_close_root;
	}
	fuse_set_log_func(fs_log);
	rc = session_create(fs, o, err);
	if (rc < 0)
		goto out_itable;
	rc = session_mount(fs, o, err);
	if (rc < 0)
		goto out_unmount;
	*out = fs;
	return 0;
out_unmount:
	if (fs->mounted)
		umount2(fs->mountpoint, MNT_DETACH | UMOUNT_NOFOLLOW);
	fuse_session_destroy(fs->se);
out_itable:
	fs__itable_release(fs);
out_close_root:
	close(fs->root.fd);
out_pending_cond:
	pthread_cond_destroy(&fs->pending_done);
out_pending_lock:
	pthread_mutex_destroy(&fs->pending_lock);
out_mutex:
	pthread_mutex_destroy(&fs->lock);
out_free:
	if (rc == -ENOMEM && !err[0])
		snprintf(err, FS_ERR_LEN, "out of memory");
	free(fs->mountpoint);
	free(fs);
	return rc;
}

int fs_run(struct fs *fs)
{
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	int rc;

	if (!cfg)
		return -ENOMEM;
	/* One /dev/fuse clone per worker: requests are answered on the thread that read them. */
	fuse_loop_cfg_set_clone_fd(cfg, 1);
	fuse_loop_cfg_set_max_threads(cfg, fs->threads);
	fuse_loop_cfg_set_idle_threads(cfg, fs->threads);
	rc = fuse_session_loop_mt(fs->se, cfg);
	fuse_loop_cfg_destroy(cfg);
	if (atomic_load(&fs->stopping))
		return 0;
	return rc < 0 ? rc : 0;
}

/*
 * Wake one worker after a lazy unmount: a lookup of a name nobody uses, through a
 * descriptor of the mount root taken before the detach (opening the root with O_PATH sends
 * no request). The worker answers it, sees the session exited and ends the loop, which
 * cancels the other workers; fs_free() then closes the device, aborting the connection for
 * the processes that still hold files in the detached mount.
 *
 * It runs on a thread of its own, detached: if every worker already left the loop, nobody
 * answers the lookup until fs_free() closes the device (the lookup then fails with
 * ENOTCONN), and the thread that called fs_stop() (main, on SIGTERM) must not wait for it.
 */
static void *wake_worker(void *arg)
{
	int root_fd = (int)(intptr_t)arg;
	int fd = openat(root_fd, ".dfsr-stop-wakeup", O_PATH | O_NOFOLLOW | O_CLOEXEC);

	if (fd >= 0)
		close(fd);
	close(root_fd);
	return NULL;
}

static void wake_worker_async(int root_fd)
{
	pthread_attr_t attr;
	pthread_t t;

	if (pthread_attr_init(&attr) != 0) {
		close(root_fd);
		return;
	}
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, wake_worker, (void *)(intptr_t)root_fd) != 0)
		close(root_fd);
	pthread_attr_destroy(&attr);
}

void fs_stop(struct fs *fs)
{
	int root_fd;

	if (atomic_exchange(&fs->stopping, true))
		return;
	fuse_session_exit(fs->se);
	/* A plain unmount ends the connection at once (nothing of ours may hold the mount). */
	if (umount2(fs->mountpoint, UMOUNT_NOFOLLOW) == 0 || errno != EBUSY)
		return;
	/* Busy: detach lazily, and wake a worker so that the loop sees the exit. */
	root_fd = open(fs->mountpoint, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (umount2(fs->mountpoint, MNT_DETACH | UMOUNT_NOFOLLOW) == 0 && root_fd >= 0)
		wake_worker_async(root_fd);
	else if (root_fd >= 0)
		close(root_fd);
}

void fs_invalidate(struct fs *fs, const struct stat *parent, const char *name,
		   const struct stat *obj)
{
	uint64_t id;

	if (parent && name) {
		id = fs__inode_id(fs, parent->st_dev, parent->st_ino);
		if (id)
			(void)fuse_lowlevel_notify_inval_entry(fs->se, id, name, strlen(name));
	}
	if (obj) {
		id = fs__inode_id(fs, obj->st_dev, obj->st_ino);
		if (id)
			(void)fuse_lowlevel_notify_inval_inode(fs->se, id, 0, 0);
	}
}

void fs_preserved(struct fs *fs, const struct stat *st)
{
	fs__inode_mark_preserved(fs, st->st_dev, st->st_ino);
}

void fs_adopted(struct fs *fs, const struct stat *st, const struct dfsr_uid *old,
		const struct dfsr_uid *uid)
{
	fs__inode_adopted(fs, st->st_dev, st->st_ino, old, uid);
}

unsigned fs_unsaved(struct fs *fs)
{
	return atomic_load(&fs->unsaved) + atomic_load(&fs->npending);
}

bool fs_busy(struct fs *fs, const struct stat *st)
{
	return fs__inode_writers_of(fs, st->st_dev, st->st_ino) > 0;
}

void fs_free(struct fs *fs)
{
	if (!fs)
		return;
	if (fs->se) {
		/* After fs_stop() or an external unmount this fails harmlessly (EINVAL). */
		if (fs->mounted)
			umount2(fs->mountpoint, MNT_DETACH | UMOUNT_NOFOLLOW);
		fuse_session_destroy(fs->se);
	}
	fs__handles_release(fs);
	fs__itable_release(fs);
	if (fs->root.fd >= 0)
		close(fs->root.fd);
	pthread_cond_destroy(&fs->pending_done);
	pthread_mutex_destroy(&fs->pending_lock);
	pthread_mutex_destroy(&fs->lock);
	free(fs->mountpoint);
	free(fs);
}
