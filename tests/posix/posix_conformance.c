/*
 * posix_conformance.c - run the same POSIX cases in two directories and demand identical
 * results.
 *
 *     posix_conformance DIR_A DIR_B [--as-user UID:GID] [--other UID:GID] [--verbose]
 *                       [--only NAME]
 *
 * A filesystem that claims to be a transparent view of another one (dfsr's FUSE mount over
 * its local path) is best tested by comparison rather than by a list of expected values:
 * whatever the kernel and the backing filesystem do natively is, by definition, what a user
 * of the mount must see. So every case writes a transcript: one line per operation with its
 * return value and errno name, and one line per object looked at with the stat fields that
 * must be equal (type and mode, link count, size for non-directories, owner, group), data
 * digests, directory listings and xattr lists. Times and inode numbers are not compared,
 * except where a case sets times explicitly. Each case runs in a fresh directory under a
 * fresh subdirectory of DIR_A, then of DIR_B; the two transcripts must be identical.
 *
 * Non-owner rules (chmod/chown by someone else, sticky directories, search permission) need
 * a second identity: when run as root, a case forks a child that drops to --other (default
 * 65534:65534, no supplementary groups) and records what it sees through a pipe.
 * --as-user runs every case as that identity instead of root (the fresh subdirectories are
 * made by root and given to it); non-owner steps then record that they were skipped, on
 * both sides alike.
 *
 * Output: one line per case ("ok" or "FAIL", with the first differing lines of the two
 * transcripts), then "N passed, N failed". Exit 0 only if every case matched; 2 on bad usage
 * or when the directories cannot be prepared.
 *
 * This program deliberately uses no project library: it must judge the mount from outside.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

struct pc {
	char *buf; /* the transcript of the running case */
	size_t len;
	size_t cap;
	int sink; /* -1: append to buf; otherwise write lines to this fd (child) */
	bool root;
	bool verbose;
	uid_t other_uid;
	gid_t other_gid;
};

struct pc_case {
	const char *name;
	void (*fn)(struct pc *c);
};

/* ---- the transcript ---------------------------------------------------------------- */

static void rec(struct pc *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void rec(struct pc *c, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	line[n] = '\0';
	if (c->sink >= 0) {
		if (write(c->sink, line, (size_t)n) != n)
			_exit(3);
		return;
	}
	if (c->len + (size_t)n + 1 > c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 4096;
		char *nb;

		while (cap < c->len + (size_t)n + 1)
			cap *= 2;
		nb = realloc(c->buf, cap);
		if (!nb) {
			fprintf(stderr, "posix_conformance: out of memory\n");
			exit(2);
		}
		c->buf = nb;
		c->cap = cap;
	}
	memcpy(c->buf + c->len, line, (size_t)n + 1);
	c->len += (size_t)n;
}

static const char *errname(int e)
{
	const char *s = strerrorname_np(e);

	return s ? s : "E?";
}

static void rec_rc(struct pc *c, const char *what, long r, int e, bool is_fd)
{
	if (r < 0)
		rec(c, "%s = -1 %s", what, errname(e));
	else if (is_fd)
		rec(c, "%s = fd", what);
	else
		rec(c, "%s = %ld", what, r);
}

/* T(): run a call, record its value or errno. TF(): the same for a call returning an fd. */
#define T(c, expr)                                 \
	do {                                       \
		long r_;                           \
		int e_;                            \
		errno = 0;                         \
		r_ = (long)(expr);                 \
		e_ = errno;                        \
		rec_rc((c), #expr, r_, e_, false); \
	} while (0)

#define TF(c, var, expr)                             \
	do {                                         \
		int e_;                              \
		errno = 0;                           \
		(var) = (expr);                      \
		e_ = errno;                          \
		rec_rc((c), #expr, (var), e_, true); \
	} while (0)

static void rec_stat(struct pc *c, const char *what, const struct stat *st)
{
	if (S_ISDIR(st->st_mode))
		rec(c, "%s: mode=%o nlink=%lu uid=%u gid=%u", what, (unsigned)st->st_mode,
		    (unsigned long)st->st_nlink, (unsigned)st->st_uid, (unsigned)st->st_gid);
	else if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))
		rec(c, "%s: mode=%o nlink=%lu rdev=%u:%u uid=%u gid=%u", what,
		    (unsigned)st->st_mode, (unsigned long)st->st_nlink, major(st->st_rdev),
		    minor(st->st_rdev), (unsigned)st->st_uid, (unsigned)st->st_gid);
	else
		rec(c, "%s: mode=%o nlink=%lu size=%lld uid=%u gid=%u", what, (unsigned)st->st_mode,
		    (unsigned long)st->st_nlink, (long long)st->st_size, (unsigned)st->st_uid,
		    (unsigned)st->st_gid);
}

/* lstat */
static void ST(struct pc *c, const char *path)
{
	struct stat st;
	char what[PATH_MAX + 16];

	snprintf(what, sizeof(what), "lstat %s", path);
	if (lstat(path, &st) < 0)
		rec(c, "%s = -1 %s", what, errname(errno));
	else
		rec_stat(c, what, &st);
}

/* stat, following symlinks */
static void STF(struct pc *c, const char *path)
{
	struct stat st;
	char what[PATH_MAX + 16];

	snprintf(what, sizeof(what), "stat %s", path);
	if (stat(path, &st) < 0)
		rec(c, "%s = -1 %s", what, errname(errno));
	else
		rec_stat(c, what, &st);
}

static void FST(struct pc *c, const char *label, int fd)
{
	struct stat st;
	char what[256];

	snprintf(what, sizeof(what), "fstat %s", label);
	if (fstat(fd, &st) < 0)
		rec(c, "%s = -1 %s", what, errname(errno));
	else
		rec_stat(c, what, &st);
}

static void rec_times(struct pc *c, const char *path, int flags)
{
	struct stat st;

	if (fstatat(AT_FDCWD, path, &st, flags) < 0) {
		rec(c, "times %s = -1 %s", path, errname(errno));
		return;
	}
	rec(c, "times %s: atime=%lld.%09ld mtime=%lld.%09ld", path, (long long)st.st_atim.tv_sec,
	    st.st_atim.tv_nsec, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* Size and digest of what reading @fd from its current offset to EOF returns. */
static void rec_fd_data(struct pc *c, const char *label, int fd)
{
	unsigned char b[65536], head[17] = { 0 };
	uint64_t h = 0xcbf29ce484222325ULL;
	long long total = 0;
	ssize_t n;

	while ((n = read(fd, b, sizeof(b))) > 0) {
		if (total < 16)
			for (ssize_t i = 0; i < n && total + i < 16; i++)
				head[total + i] = (b[i] >= 32 && b[i] < 127) ? b[i] : '.';
		h = fnv(h, b, (size_t)n);
		total += n;
	}
	if (n < 0) {
		rec(c, "data %s = -1 %s", label, errname(errno));
		return;
	}
	rec(c, "data %s: %lld bytes fnv=%016llx head='%s'", label, total, (unsigned long long)h,
	    (char *)head);
}

static void DATA(struct pc *c, const char *path)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW);

	if (fd < 0) {
		rec(c, "data %s = -1 %s", path, errname(errno));
		return;
	}
	rec_fd_data(c, path, fd);
	close(fd);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names (without . and ..) with their d_type. */
static void LS(struct pc *c, const char *path)
{
	char *names[512];
	size_t n = 0;
	struct dirent *de;
	DIR *d = opendir(path);
	int dots = 0;

	if (!d) {
		rec(c, "ls %s = -1 %s", path, errname(errno));
		return;
	}
	while ((de = readdir(d)) && n < 512) {
		char tmp[300];

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) {
			dots++;
			continue;
		}
		snprintf(tmp, sizeof(tmp), "%s/%d", de->d_name, (int)de->d_type);
		names[n++] = strdup(tmp);
	}
	closedir(d);
	qsort(names, n, sizeof(names[0]), cmp_str);
	rec(c, "ls %s: %zu entries, %d dots", path, n, dots);
	for (size_t i = 0; i < n; i++) {
		rec(c, "  %s", names[i] ? names[i] : "(oom)");
		free(names[i]);
	}
}

/* Sorted xattr names in the user., trusted. and system.posix_acl namespaces. */
static void XL(struct pc *c, const char *path, bool follow)
{
	char list[4096];
	char *names[64];
	size_t n = 0;
	ssize_t len = follow ? listxattr(path, list, sizeof(list))
			     : llistxattr(path, list, sizeof(list));

	if (len < 0) {
		rec(c, "listxattr %s = -1 %s", path, errname(errno));
		return;
	}
	for (char *p = list; p < list + len && n < 64; p += strlen(p) + 1)
		if (!strncmp(p, "user.", 5) || !strncmp(p, "trusted.", 8) ||
		    !strncmp(p, "system.posix_acl", 16))
			names[n++] = p;
	qsort(names, n, sizeof(names[0]), cmp_str);
	rec(c, "listxattr %s: %zu names", path, n);
	for (size_t i = 0; i < n; i++)
		rec(c, "  %s", names[i]);
}

static void XG(struct pc *c, const char *path, const char *name)
{
	char v[256];
	ssize_t n = getxattr(path, name, v, sizeof(v) - 1);

	if (n < 0) {
		rec(c, "getxattr %s %s = -1 %s", path, name, errname(errno));
		return;
	}
	v[n] = '\0';
	rec(c, "getxattr %s %s = %zd '%s'", path, name, n, v);
}

static int put(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, text, strlen(text));
	if (close(fd) < 0 || n != (ssize_t)strlen(text))
		return -1;
	return 0;
}

/* Record what reading up to 64 bytes at @off of @fd returns. */
static void PREAD(struct pc *c, const char *label, int fd, off_t off)
{
	char b[65];
	ssize_t n = pread(fd, b, 64, off);

	if (n < 0) {
		rec(c, "pread %s @%lld = -1 %s", label, (long long)off, errname(errno));
		return;
	}
	for (ssize_t i = 0; i < n; i++)
		if (b[i] < 32 || b[i] >= 127)
			b[i] = '.';
	b[n] = '\0';
	rec(c, "pread %s @%lld = %zd '%s'", label, (long long)off, n, b);
}

/* ---- the other identity ------------------------------------------------------------ */

static int drop_to(uid_t uid, gid_t gid)
{
	if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
		return -1;
	return 0;
}

/*
 * Run @fn in a child that has dropped to the other identity, in the same directory; its
 * transcript lines arrive through a pipe and are appended to ours.
 */
static void as_other(struct pc *c, void (*fn)(struct pc *c))
{
	int p[2];
	pid_t pid;
	int status;
	char b[4096];
	ssize_t n;

	if (!c->root) {
		rec(c, "as-other: skipped (not root)");
		return;
	}
	if (pipe(p) < 0) {
		rec(c, "as-other: pipe failed");
		return;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		rec(c, "as-other: fork failed");
		close(p[0]);
		close(p[1]);
		return;
	}
	if (pid == 0) {
		close(p[0]);
		c->sink = p[1];
		if (drop_to(c->other_uid, c->other_gid) < 0) {
			rec(c, "as-other: drop failed %s", errname(errno));
			_exit(4);
		}
		umask(022);
		fn(c);
		_exit(0);
	}
	close(p[1]);
	while ((n = read(p[0], b, sizeof(b) - 1)) > 0) {
		b[n] = '\0';
		/* lines arrive whole or split; append raw */
		for (char *s = b, *e; *s; s = e + 1) {
			e = strchr(s, '\n');
			if (!e) {
				rec(c, "%s", s);
				break;
			}
			*e = '\0';
			rec(c, "%s", s);
		}
	}
	close(p[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		rec(c, "as-other: child status %d", status);
}

/* ---- the cases ------------------------------------------------------------------------ */

static void case_create_modes(struct pc *c)
{
	static const mode_t masks[] = { 022, 077, 0, 027, 0777 };
	char n[64];
	int fd;

	for (size_t i = 0; i < sizeof(masks) / sizeof(masks[0]); i++) {
		umask(masks[i]);
		rec(c, "umask %03o", (unsigned)masks[i]);
		snprintf(n, sizeof(n), "f%03o", (unsigned)masks[i]);
		TF(c, fd, open(n, O_WRONLY | O_CREAT, 0666));
		if (fd >= 0)
			close(fd);
		ST(c, n);
		snprintf(n, sizeof(n), "x%03o", (unsigned)masks[i]);
		TF(c, fd, open(n, O_WRONLY | O_CREAT, 06777));
		if (fd >= 0)
			close(fd);
		ST(c, n);
		snprintf(n, sizeof(n), "d%03o", (unsigned)masks[i]);
		T(c, mkdir(n, 0777));
		ST(c, n);
		snprintf(n, sizeof(n), "s%03o", (unsigned)masks[i]);
		T(c, mkdir(n, 01777));
		ST(c, n);
		snprintf(n, sizeof(n), "p%03o", (unsigned)masks[i]);
		T(c, mkfifo(n, 0666));
		ST(c, n);
	}
	umask(022);
	TF(c, fd, creat("creat", 0640));
	if (fd >= 0) {
		FST(c, "creat", fd);
		close(fd);
	}
	ST(c, ".");
}

static void sgid_child(struct pc *c)
{
	int fd;

	TF(c, fd, open("g/byother", O_WRONLY | O_CREAT, 0666));
	if (fd >= 0)
		close(fd);
	ST(c, "g/byother");
	T(c, mkdir("g/otherdir", 0777));
	ST(c, "g/otherdir");
	T(c, mkdir("open/mine", 0755));
	ST(c, "open/mine");
	TF(c, fd, open("open/minef", O_WRONLY | O_CREAT, 0640));
	if (fd >= 0)
		close(fd);
	ST(c, "open/minef");
	T(c, symlink("target", "open/minel"));
	ST(c, "open/minel");
	T(c, mkfifo("open/minep", 0600));
	ST(c, "open/minep");
}

/* New objects' owner and group: the creator's, or the directory's group when setgid. */
static void case_ownership(struct pc *c)
{
	int fd;

	T(c, mkdir("g", 0777));
	T(c, chown("g", 0, c->other_gid));
	T(c, chmod("g", 02777));
	ST(c, "g");
	TF(c, fd, open("g/byroot", O_WRONLY | O_CREAT, 0666));
	if (fd >= 0)
		close(fd);
	ST(c, "g/byroot");
	T(c, mkdir("g/sub", 0755));
	ST(c, "g/sub");
	T(c, mkdir("open", 0777));
	T(c, chmod("open", 0777));
	as_other(c, sgid_child);
}

static void case_excl(struct pc *c)
{
	int fd;

	T(c, put("f", "x"));
	TF(c, fd, open("f", O_WRONLY | O_CREAT | O_EXCL, 0644));
	if (fd >= 0)
		close(fd);
	T(c, symlink("nothere", "dangling"));
	TF(c, fd, open("dangling", O_WRONLY | O_CREAT | O_EXCL, 0644));
	if (fd >= 0)
		close(fd);
	ST(c, "nothere");
	TF(c, fd, open("dangling", O_WRONLY | O_CREAT, 0600));
	if (fd >= 0)
		close(fd);
	ST(c, "nothere");
	ST(c, "dangling");
	TF(c, fd, open("new", O_RDWR | O_CREAT | O_EXCL, 0600));
	if (fd >= 0) {
		FST(c, "new", fd);
		close(fd);
	}
	T(c, mkdir("d", 0755));
	TF(c, fd, open("d", O_RDONLY | O_CREAT | O_EXCL, 0644));
	if (fd >= 0)
		close(fd);
	TF(c, fd, open("missing/x", O_RDWR | O_CREAT | O_EXCL, 0600));
	if (fd >= 0)
		close(fd);
}

static void case_trunc(struct pc *c)
{
	int fd;

	T(c, put("f", "hello world"));
	TF(c, fd, open("f", O_WRONLY | O_TRUNC));
	if (fd >= 0) {
		FST(c, "f", fd);
		close(fd);
	}
	ST(c, "f");
	T(c, put("g", "0123456789"));
	TF(c, fd, open("g", O_RDWR | O_TRUNC));
	if (fd >= 0) {
		T(c, write(fd, "ab", 2));
		T(c, lseek(fd, 0, SEEK_CUR));
		close(fd);
	}
	DATA(c, "g");
	TF(c, fd, open("new", O_WRONLY | O_CREAT | O_TRUNC, 0644));
	if (fd >= 0)
		close(fd);
	ST(c, "new");
	T(c, put("ro", "data"));
	T(c, chmod("ro", 0444));
	TF(c, fd, open("ro", O_RDONLY | O_TRUNC));
	if (fd >= 0)
		close(fd);
	ST(c, "ro");
}

static void case_append(struct pc *c)
{
	int fd;

	T(c, put("f", "abc"));
	TF(c, fd, open("f", O_WRONLY | O_APPEND));
	if (fd >= 0) {
		T(c, lseek(fd, 0, SEEK_CUR));
		T(c, write(fd, "def", 3));
		T(c, lseek(fd, 0, SEEK_CUR));
		T(c, lseek(fd, 0, SEEK_SET));
		T(c, write(fd, "gh", 2));
		T(c, pwrite(fd, "X", 1, 0));
		T(c, lseek(fd, 0, SEEK_CUR));
		close(fd);
	}
	DATA(c, "f");
	TF(c, fd, open("f", O_RDWR | O_APPEND));
	if (fd >= 0) {
		T(c, write(fd, "!", 1));
		PREAD(c, "f", fd, 0);
		close(fd);
	}
	ST(c, "f");
}

static void chmod_child(struct pc *c)
{
	int fd;

	T(c, chmod("rootfile", 0777));
	T(c, chown("rootfile", c->other_uid, c->other_gid));
	T(c, chown("rootfile", (uid_t)-1, (gid_t)-1));
	T(c, chmod("given", 0600));
	ST(c, "given");
	T(c, chmod("given", 02755));
	ST(c, "given");
	T(c, chown("given", 0, (gid_t)-1));
	T(c, chown("given", (uid_t)-1, 0));
	T(c, chown("given", (uid_t)-1, c->other_gid));
	ST(c, "given");
	T(c, chmod("given", 06755));
	ST(c, "given");
	T(c, chown("given", c->other_uid, c->other_gid));
	ST(c, "given");
	TF(c, fd, open("suidw", O_WRONLY));
	if (fd >= 0) {
		T(c, write(fd, "x", 1));
		close(fd);
	}
	ST(c, "suidw");
	TF(c, fd, open("given", O_RDONLY));
	if (fd >= 0) {
		T(c, fchmod(fd, 0640));
		FST(c, "given", fd);
		close(fd);
	}
	T(c, chmod("missing", 0644));
	T(c, lchown("link", c->other_uid, c->other_gid));
}

static void case_chmod_chown(struct pc *c)
{
	T(c, put("rootfile", "r"));
	T(c, chmod("rootfile", 0644));
	T(c, chmod("rootfile", 07777));
	ST(c, "rootfile");
	T(c, chmod("rootfile", 0644));
	T(c, put("given", "g"));
	T(c, chown("given", c->other_uid, 0));
	ST(c, "given");
	T(c, put("suidw", "s"));
	T(c, chmod("suidw", 06777));
	ST(c, "suidw");
	T(c, put("chowned", "c"));
	T(c, chmod("chowned", 06755));
	T(c, chown("chowned", c->other_uid, c->other_gid));
	ST(c, "chowned");
	T(c, chmod("chowned", 02745));
	T(c, chown("chowned", 0, 0));
	ST(c, "chowned");
	T(c, symlink("rootfile", "link"));
	T(c, lchown("link", c->other_uid, c->other_gid));
	ST(c, "link");
	ST(c, "rootfile");
	T(c, chown("link", 0, c->other_gid));
	ST(c, "link");
	ST(c, "rootfile");
	T(c, mkdir("d", 02755));
	T(c, chown("d", c->other_uid, c->other_gid));
	ST(c, "d");
	as_other(c, chmod_child);
	ST(c, "rootfile");
}

static void sticky_child(struct pc *c)
{
	int fd;

	TF(c, fd, open("s/mine", O_WRONLY | O_CREAT, 0644));
	if (fd >= 0)
		close(fd);
	TF(c, fd, open("s/mine2", O_WRONLY | O_CREAT, 0644));
	if (fd >= 0)
		close(fd);
	T(c, unlink("s/rootfile"));
	T(c, rename("s/rootfile", "s/stolen"));
	T(c, rename("s/mine", "s/rootfile"));
	T(c, rmdir("s/rootdir"));
	T(c, rename("s/mine", "s/mine3"));
	T(c, unlink("s/mine2"));
	T(c, unlink("o/rootfile"));
	T(c, rename("o/rootfile2", "o/moved"));
	T(c, unlink("s/writable"));
	T(c, rename("s/mine3", "o/mine3"));
	LS(c, "s");
	LS(c, "o");
}

static void case_sticky(struct pc *c)
{
	T(c, mkdir("s", 0777));
	T(c, chmod("s", 01777));
	ST(c, "s");
	T(c, put("s/rootfile", "r"));
	T(c, put("s/writable", "w"));
	T(c, chmod("s/writable", 0666));
	T(c, mkdir("s/rootdir", 0777));
	T(c, mkdir("o", 0777));
	T(c, chmod("o", 0777));
	T(c, put("o/rootfile", "r"));
	T(c, put("o/rootfile2", "r"));
	as_other(c, sticky_child);
	T(c, unlink("s/mine3"));
	T(c, unlink("s/rootfile"));
	LS(c, "s");
}

static void case_links(struct pc *c)
{
	int fd;

	ST(c, ".");
	T(c, put("f", "data"));
	ST(c, "f");
	T(c, link("f", "g"));
	ST(c, "f");
	ST(c, "g");
	TF(c, fd, open("f", O_RDONLY));
	if (fd >= 0) {
		FST(c, "f", fd);
		T(c, link("g", "h"));
		FST(c, "f", fd);
		T(c, unlink("g"));
		FST(c, "f", fd);
		close(fd);
	}
	ST(c, "h");
	T(c, link("f", "h"));
	T(c, link("missing", "x"));
	T(c, mkdir("d", 0755));
	ST(c, ".");
	ST(c, "d");
	T(c, mkdir("d/e", 0755));
	ST(c, "d");
	T(c, link("d", "dl"));
	T(c, mkdir("d2", 0755));
	ST(c, ".");
	T(c, rename("d/e", "d2/e"));
	ST(c, "d");
	ST(c, "d2");
	T(c, rmdir("d2/e"));
	ST(c, "d2");
	T(c, rmdir("d2"));
	ST(c, ".");
	T(c, symlink("f", "sl"));
	T(c, linkat(AT_FDCWD, "sl", AT_FDCWD, "sl2", 0));
	ST(c, "sl");
	ST(c, "sl2");
	T(c, linkat(AT_FDCWD, "sl", AT_FDCWD, "f2", AT_SYMLINK_FOLLOW));
	ST(c, "f");
	T(c, unlink("f"));
	T(c, unlink("h"));
	ST(c, "f2");
	LS(c, ".");
}

static void case_rename(struct pc *c)
{
	T(c, put("a", "aaa"));
	T(c, put("b", "bbbbb"));
	T(c, rename("a", "b"));
	ST(c, "a");
	DATA(c, "b");
	T(c, mkdir("d", 0755));
	T(c, mkdir("e", 0755));
	T(c, put("e/x", "x"));
	T(c, mkdir("empty", 0755));
	T(c, rename("b", "d"));
	T(c, rename("d", "b"));
	T(c, rename("d", "e"));
	T(c, rename("d", "empty"));
	ST(c, "d");
	ST(c, "empty");
	T(c, rename("empty", "empty/sub"));
	T(c, mkdir("empty/sub", 0755));
	T(c, rename("empty", "empty/sub/deeper"));
	T(c, rename("b", "b"));
	T(c, link("b", "b2"));
	T(c, rename("b", "b2"));
	ST(c, "b");
	ST(c, "b2");
	T(c, rename("missing", "z"));
	T(c, rename("b/", "z"));
	T(c, rename("b", "z/"));
	T(c, rename("e/x", "e/x/y"));
	T(c, rename("e", "e2"));
	T(c, rename(".", "dot"));
	T(c, rename("e2/..", "dotdot"));
	T(c, rename("e2/x", "top"));
	ST(c, "e2");
	DATA(c, "top");
	T(c, symlink("e2", "sl"));
	T(c, rename("sl", "e2"));
	T(c, rename("e2", "sl"));
	ST(c, "sl");
	LS(c, ".");
}

static long renameat2_(const char *a, const char *b, unsigned flags)
{
	return syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, flags);
}

static void case_renameat2(struct pc *c)
{
	T(c, put("a", "aa"));
	T(c, put("b", "bbb"));
	T(c, mkdir("d", 0755));
	T(c, put("d/in", "in"));
	T(c, renameat2_("a", "b", RENAME_NOREPLACE));
	DATA(c, "a");
	T(c, renameat2_("a", "c", RENAME_NOREPLACE));
	ST(c, "a");
	DATA(c, "c");
	T(c, renameat2_("c", "b", RENAME_EXCHANGE));
	DATA(c, "c");
	DATA(c, "b");
	T(c, renameat2_("b", "d", RENAME_EXCHANGE));
	ST(c, "b");
	ST(c, "d");
	DATA(c, "b/in");
	DATA(c, "d");
	T(c, renameat2_("d", "nothere", RENAME_EXCHANGE));
	T(c, renameat2_("d", "b", RENAME_EXCHANGE | RENAME_NOREPLACE));
	T(c, renameat2_("d", "b", 1u << 7));
	T(c, mkdir("x", 0755));
	T(c, renameat2_("b", "x/b", RENAME_NOREPLACE));
	T(c, renameat2_("x/b/in", "c", RENAME_EXCHANGE));
	ST(c, "x/b");
	ST(c, ".");
	ST(c, "x");
	LS(c, ".");
	LS(c, "x/b");
}

static void case_unlink_open(struct pc *c)
{
	int fd, fd2;

	T(c, put("f", "data"));
	TF(c, fd, open("f", O_RDWR));
	TF(c, fd2, open("f", O_RDONLY));
	T(c, unlink("f"));
	ST(c, "f");
	if (fd >= 0) {
		FST(c, "f", fd);
		PREAD(c, "f", fd, 0);
		T(c, pwrite(fd, "more", 4, 4));
		FST(c, "f", fd);
		T(c, ftruncate(fd, 6));
		T(c, fchmod(fd, 0600));
		FST(c, "f", fd);
		close(fd);
	}
	if (fd2 >= 0) {
		PREAD(c, "f2", fd2, 0);
		FST(c, "f2", fd2);
		close(fd2);
	}
	T(c, put("g", "gg"));
	TF(c, fd, open("g", O_RDONLY));
	T(c, put("h", "hhh"));
	T(c, rename("h", "g"));
	if (fd >= 0) {
		PREAD(c, "old g", fd, 0);
		FST(c, "old g", fd);
		close(fd);
	}
	DATA(c, "g");
	LS(c, ".");
}

static void case_nametoolong(struct pc *c)
{
	char n255[256], n256[257], longpath[PATH_MAX + 64];
	int fd;

	memset(n255, 'a', 255);
	n255[255] = '\0';
	memset(n256, 'b', 256);
	n256[256] = '\0';
	TF(c, fd, open(n255, O_WRONLY | O_CREAT, 0644));
	if (fd >= 0)
		close(fd);
	ST(c, n255);
	TF(c, fd, open(n256, O_WRONLY | O_CREAT, 0644));
	if (fd >= 0)
		close(fd);
	rec(c, "lstat(n256)");
	ST(c, n256);
	T(c, mkdir(n256, 0755));
	T(c, symlink("x", n256));
	T(c, rename(n255, n256));
	T(c, link(n255, n256));
	T(c, unlink(n256));
	T(c, setxattr(n256, "user.x", "1", 1, 0));
	memset(longpath, 0, sizeof(longpath));
	for (size_t i = 0; i + 2 < sizeof(longpath); i += 2)
		memcpy(longpath + i, "./", 2);
	T(c, access(longpath, F_OK));
	TF(c, fd, open(longpath, O_RDONLY));
	if (fd >= 0)
		close(fd);
	{
		char target[PATH_MAX + 8];

		memset(target, 'x', sizeof(target) - 1);
		target[sizeof(target) - 1] = '\0';
		T(c, symlink(target, "longlink"));
		target[PATH_MAX - 1] = '\0';
		T(c, symlink(target, "longlink2"));
		ST(c, "longlink2");
	}
	T(c, unlink(n255));
	LS(c, ".");
}

static void case_enotempty_eexist(struct pc *c)
{
	T(c, mkdir("d", 0755));
	T(c, put("d/f", "f"));
	T(c, rmdir("d"));
	T(c, rmdir("d/f"));
	T(c, rmdir("."));
	T(c, rmdir("d/.."));
	T(c, rmdir("missing"));
	T(c, unlink("d"));
	T(c, mkdir("d", 0755));
	T(c, mkdir("d/f", 0755));
	T(c, symlink("x", "d"));
	T(c, symlink("x", "d/f"));
	T(c, mkfifo("d/f", 0644));
	T(c, mknod("d/f", S_IFREG | 0644, 0));
	T(c, symlink("nothere", "dangling"));
	T(c, mkdir("dangling", 0755));
	T(c, mkfifo("dangling", 0644));
	ST(c, "nothere");
	T(c, unlink("d/f"));
	T(c, rmdir("d"));
	ST(c, "d");
	T(c, mkdir("d", 0755));
	T(c, mkdir("d/sub", 0755));
	T(c, rmdir("d"));
	T(c, rmdir("d/sub/"));
	T(c, rmdir("d"));
	LS(c, ".");
}

static void case_eisdir_enotdir(struct pc *c)
{
	int fd;
	char b[8];

	T(c, mkdir("d", 0755));
	T(c, put("f", "f"));
	TF(c, fd, open("d", O_WRONLY));
	if (fd >= 0)
		close(fd);
	TF(c, fd, open("d", O_RDWR));
	if (fd >= 0)
		close(fd);
	TF(c, fd, open("d", O_WRONLY | O_CREAT, 0644));
	if (fd >= 0)
		close(fd);
	TF(c, fd, open("d", O_RDONLY));
	if (fd >= 0) {
		T(c, read(fd, b, sizeof(b)));
		T(c, write(fd, b, 1));
		close(fd);
	}
	TF(c, fd, open("d", O_RDONLY | O_TRUNC));
	if (fd >= 0)
		close(fd);
	TF(c, fd, open("f/x", O_RDONLY));
	if (fd >= 0)
		close(fd);
	TF(c, fd, open("f/x", O_WRONLY | O_CREAT, 0644));
	if (fd >= 0)
		close(fd);
	T(c, mkdir("f/x", 0755));
	TF(c, fd, open("f", O_RDONLY | O_DIRECTORY));
	if (fd >= 0)
		close(fd);
	TF(c, fd, open("f/", O_RDONLY));
	if (fd >= 0)
		close(fd);
	ST(c, "f/");
	ST(c, "f/.");
	T(c, unlink("f/"));
	T(c, truncate("d", 0));
	T(c, symlink("f", "lf"));
	TF(c, fd, open("lf/", O_RDONLY));
	if (fd >= 0)
		close(fd);
	T(c, symlink("d", "ld"));
	TF(c, fd, open("ld/", O_RDONLY | O_DIRECTORY));
	if (fd >= 0)
		close(fd);
	T(c, rmdir("ld"));
	T(c, unlink("ld/"));
	T(c, unlink("ld"));
	ST(c, "d");
}

static void case_eloop(struct pc *c)
{
	int fd;
	char a[16], b[16];

	T(c, symlink("b", "a"));
	T(c, symlink("a", "b"));
	T(c, symlink("self", "self"));
	TF(c, fd, open("a", O_RDONLY));
	if (fd >= 0)
		close(fd);
	STF(c, "a");
	ST(c, "a");
	TF(c, fd, open("a", O_WRONLY | O_CREAT, 0644));
	if (fd >= 0)
		close(fd);
	STF(c, "self");
	T(c, mkdir("self/x", 0755));
	T(c, put("f", "f"));
	T(c, symlink("f", "lf"));
	TF(c, fd, open("lf", O_RDONLY | O_NOFOLLOW));
	if (fd >= 0)
		close(fd);
	TF(c, fd, open("lf", O_PATH | O_NOFOLLOW));
	if (fd >= 0) {
		FST(c, "lf O_PATH", fd);
		close(fd);
	}
	TF(c, fd, open("f", O_RDONLY | O_NOFOLLOW));
	if (fd >= 0)
		close(fd);
	/* a chain of 40 links resolves, 41 do not */
	T(c, symlink("f", "c0"));
	for (int i = 1; i <= 40; i++) {
		snprintf(a, sizeof(a), "c%d", i - 1);
		snprintf(b, sizeof(b), "c%d", i);
		if (symlink(a, b) < 0)
			rec(c, "symlink %s = -1 %s", b, errname(errno));
	}
	STF(c, "c39");
	STF(c, "c40");
	T(c, chmod("a", 0644));
	T(c, truncate("a", 0));
	T(c, setxattr("a", "user.x", "1", 1, 0));
}

static void eacces_child(struct pc *c)
{
	int fd;
	DIR *d;

	ST(c, "p/f");
	TF(c, fd, open("p/f", O_RDONLY));
	if (fd >= 0)
		close(fd);
	d = opendir("p");
	rec(c, "opendir p = %s", d ? "ok" : errname(errno));
	if (d)
		closedir(d);
	T(c, chdir("p"));
	ST(c, "x/f");
	d = opendir("x");
	rec(c, "opendir x = %s", d ? "ok" : errname(errno));
	if (d)
		closedir(d);
	TF(c, fd, open("x/f", O_RDONLY));
	if (fd >= 0)
		close(fd);
	TF(c, fd, open("x/secret", O_RDONLY));
	if (fd >= 0)
		close(fd);
	TF(c, fd, open("x/f", O_WRONLY));
	if (fd >= 0)
		close(fd);
	TF(c, fd, open("x/new", O_WRONLY | O_CREAT, 0644));
	if (fd >= 0)
		close(fd);
	T(c, unlink("x/f"));
	T(c, mkdir("x/newdir", 0755));
	T(c, rename("x/f", "x/g"));
	T(c, access("x/f", R_OK));
	T(c, access("x/f", W_OK));
	T(c, access("x/f", X_OK));
	T(c, access("x/exe", X_OK));
	T(c, access("x/secret", R_OK));
	T(c, access("x", W_OK));
	TF(c, fd, open("ro/new", O_WRONLY | O_CREAT, 0644));
	if (fd >= 0)
		close(fd);
	T(c, symlink("t", "ro/l"));
	T(c, truncate("x/f", 0));
	T(c, truncate("w/f", 1));
	ST(c, "w/f");
	T(c, utimensat(AT_FDCWD, "x/f", NULL, 0));
	T(c, utimensat(AT_FDCWD, "w/f", NULL, 0));
	T(c, setxattr("w/f", "user.other", "o", 1, 0));
	T(c, setxattr("x/f", "user.other", "o", 1, 0));
	XG(c, "x/f", "user.root");
	XG(c, "x/secret", "user.root");
}

static void case_eacces(struct pc *c)
{
	T(c, mkdir("p", 0700));
	T(c, put("p/f", "f"));
	T(c, chmod("p", 0700));
	T(c, mkdir("p/x", 0755));
	T(c, chmod("p/x", 0711));
	T(c, put("p/x/f", "f"));
	T(c, chmod("p/x/f", 0644));
	T(c, setxattr("p/x/f", "user.root", "r", 1, 0));
	T(c, put("p/x/secret", "s"));
	T(c, chmod("p/x/secret", 0600));
	T(c, setxattr("p/x/secret", "user.root", "r", 1, 0));
	T(c, put("p/x/exe", "#!/bin/sh\n"));
	T(c, chmod("p/x/exe", 0755));
	T(c, mkdir("p/ro", 0555));
	T(c, chmod("p/ro", 0555));
	T(c, mkdir("p/w", 0755));
	T(c, put("p/w/f", "f"));
	T(c, chmod("p/w/f", 0666));
	T(c, chmod(".", 0755));
	as_other(c, eacces_child);
	T(c, chmod("p", 0711));
	as_other(c, eacces_child);
	/* root bypasses mode bits but not everything */
	T(c, put("p/ro/rootnew", "r"));
	T(c, access("p/x/secret", R_OK | W_OK));
	T(c, access("p/x/f", X_OK));
	T(c, access("p/x/exe", X_OK));
	LS(c, "p/x");
}

static void case_truncate(struct pc *c)
{
	char b[100];
	int fd;

	memset(b, 'a', sizeof(b));
	TF(c, fd, open("f", O_RDWR | O_CREAT, 0644));
	if (fd < 0)
		return;
	T(c, write(fd, b, sizeof(b)));
	T(c, truncate("f", 10));
	ST(c, "f");
	T(c, truncate("f", 5000));
	ST(c, "f");
	FST(c, "f", fd);
	PREAD(c, "f", fd, 0);
	PREAD(c, "f", fd, 4990);
	T(c, ftruncate(fd, 3));
	PREAD(c, "f", fd, 0);
	T(c, ftruncate(fd, 70000));
	FST(c, "f", fd);
	T(c, pwrite(fd, "end", 3, 69997));
	T(c, ftruncate(fd, -1));
	T(c, truncate("f", -1));
	close(fd);
	DATA(c, "f");
	TF(c, fd, open("f", O_RDONLY));
	if (fd >= 0) {
		T(c, ftruncate(fd, 0));
		close(fd);
	}
	T(c, truncate("missing", 0));
	T(c, symlink("f", "l"));
	T(c, truncate("l", 1));
	ST(c, "f");
	ST(c, "l");
	DATA(c, "f");
}

static void case_sparse(struct pc *c)
{
	int fd;
	const off_t far = 16 << 20;

	TF(c, fd, open("s", O_RDWR | O_CREAT, 0644));
	if (fd < 0)
		return;
	T(c, pwrite(fd, "x", 1, far));
	FST(c, "s", fd);
	PREAD(c, "s", fd, 1 << 20);
	PREAD(c, "s", fd, far - 2);
	/*
	 * SEEK_DATA/SEEK_HOLE are answered by the backing file. Through a FUSE mount with the
	 * writeback cache, data still in the kernel's page cache is not there yet (the kernel
	 * does not flush before FUSE_LSEEK), so probe holes once the data is flushed, as after
	 * close(). docs/architecture.md, "Known limits".
	 */
	T(c, fsync(fd));
	T(c, lseek(fd, 0, SEEK_DATA));
	T(c, lseek(fd, 0, SEEK_HOLE));
	T(c, lseek(fd, far, SEEK_HOLE));
	T(c, lseek(fd, far + 1, SEEK_DATA));
	T(c, lseek(fd, far + 10, SEEK_HOLE));
	T(c, lseek(fd, 0, SEEK_END));
	T(c, lseek(fd, -1, SEEK_SET));
	T(c, pwrite(fd, "head", 4, 0));
	T(c, fsync(fd));
	T(c, lseek(fd, 0, SEEK_DATA));
	T(c, lseek(fd, 0, SEEK_HOLE));
	close(fd);
	DATA(c, "s");
}

static void case_symlink(struct pc *c)
{
	char b[256];
	ssize_t n;

	T(c, symlink("target/with/some/length", "l"));
	ST(c, "l");
	n = readlink("l", b, sizeof(b));
	rec(c, "readlink l = %zd '%.*s'", n, n > 0 ? (int)n : 0, b);
	n = readlink("l", b, 6);
	rec(c, "readlink l (6) = %zd '%.*s'", n, n > 0 ? (int)n : 0, b);
	T(c, put("f", "f"));
	T(c, readlink("f", b, sizeof(b)));
	T(c, readlink("missing", b, sizeof(b)));
	T(c, symlink("", "empty"));
	T(c, symlink("f", "lf"));
	DATA(c, "lf");
	STF(c, "lf");
	T(c, mkdir("d", 0755));
	T(c, symlink("../f", "d/up"));
	DATA(c, "d/up");
	T(c, symlink("/etc/hostname", "abs"));
	n = readlink("abs", b, sizeof(b));
	rec(c, "readlink abs = %zd '%.*s'", n, n > 0 ? (int)n : 0, b);
	T(c, symlink("d", "ld"));
	T(c, put("ld/via", "via"));
	DATA(c, "d/via");
	ST(c, "ld");
	T(c, rename("ld", "ld2"));
	n = readlink("ld2", b, sizeof(b));
	rec(c, "readlink ld2 = %zd '%.*s'", n, n > 0 ? (int)n : 0, b);
	LS(c, ".");
}

/* A POSIX ACL in the kernel's xattr format (version 2; tag, perm, id per entry). */
struct acl_ent {
	uint16_t tag;
	uint16_t perm;
	uint32_t id;
};

static size_t acl_build(unsigned char *out, const struct acl_ent *e, size_t n)
{
	uint32_t version = 2;

	memcpy(out, &version, 4);
	for (size_t i = 0; i < n; i++)
		memcpy(out + 4 + 8 * i, &e[i], 8);
	return 4 + 8 * n;
}

static void acl_child(struct pc *c)
{
	int fd;

	TF(c, fd, open("acl", O_RDONLY));
	if (fd >= 0) {
		rec_fd_data(c, "acl", fd);
		close(fd);
	}
	TF(c, fd, open("acl", O_WRONLY));
	if (fd >= 0)
		close(fd);
	TF(c, fd, open("noacl", O_RDONLY));
	if (fd >= 0)
		close(fd);
}

static void case_xattr(struct pc *c)
{
	char v[64];
	unsigned char acl[64];
	size_t alen;
	int fd;

	T(c, put("f", "f"));
	XL(c, "f", false);
	T(c, setxattr("f", "user.a", "value-a", 7, 0));
	T(c, setxattr("f", "user.b", "", 0, 0));
	T(c, setxattr("f", "user.a", "x", 1, XATTR_CREATE));
	T(c, setxattr("f", "user.c", "x", 1, XATTR_REPLACE));
	T(c, setxattr("f", "user.a", "new-a", 5, XATTR_REPLACE));
	XG(c, "f", "user.a");
	XG(c, "f", "user.b");
	XG(c, "f", "user.none");
	T(c, getxattr("f", "user.a", NULL, 0));
	T(c, getxattr("f", "user.a", v, 2));
	XL(c, "f", false);
	T(c, listxattr("f", v, 1));
	T(c, removexattr("f", "user.a"));
	T(c, removexattr("f", "user.a"));
	XG(c, "f", "user.a");
	T(c, setxattr("f", "trusted.t", "t", 1, 0));
	XG(c, "f", "trusted.t");
	T(c, setxattr("f", "bogus.ns", "t", 1, 0));
	XL(c, "f", false);
	T(c, mkdir("d", 0755));
	T(c, setxattr("d", "user.dir", "d", 1, 0));
	XG(c, "d", "user.dir");
	T(c, symlink("f", "l"));
	T(c, lsetxattr("l", "user.l", "l", 1, 0));
	T(c, lsetxattr("l", "trusted.l", "l", 1, 0));
	XL(c, "l", false);
	XL(c, "l", true);
	TF(c, fd, open("f", O_RDONLY));
	if (fd >= 0) {
		T(c, fsetxattr(fd, "user.fd", "fd", 2, 0));
		T(c, fgetxattr(fd, "user.fd", v, sizeof(v)));
		T(c, fremovexattr(fd, "user.b"));
		close(fd);
	}
	XL(c, "f", false);
	/* ACLs: user::rw- user:OTHER:r-- group::--- mask::r-- other::--- */
	T(c, put("acl", "acl data"));
	T(c, put("noacl", "no acl"));
	T(c, chmod("noacl", 0600));
	alen = acl_build(acl,
			 (const struct acl_ent[]){ { 0x01, 6, (uint32_t)-1 },
						   { 0x02, 4, c->other_uid },
						   { 0x04, 0, (uint32_t)-1 },
						   { 0x10, 4, (uint32_t)-1 },
						   { 0x20, 0, (uint32_t)-1 } },
			 5);
	T(c, setxattr("acl", "system.posix_acl_access", acl, alen, 0));
	ST(c, "acl");
	T(c, getxattr("acl", "system.posix_acl_access", NULL, 0));
	XL(c, "acl", false);
	as_other(c, acl_child);
	T(c, chmod("acl", 0600));
	as_other(c, acl_child);
	ST(c, "acl");
	/* default ACL on a directory: group::r-x other::--- for new files */
	T(c, mkdir("dacl", 0777));
	alen = acl_build(acl,
			 (const struct acl_ent[]){ { 0x01, 7, (uint32_t)-1 },
						   { 0x04, 5, (uint32_t)-1 },
						   { 0x20, 0, (uint32_t)-1 } },
			 3);
	T(c, setxattr("dacl", "system.posix_acl_default", acl, alen, 0));
	umask(0);
	TF(c, fd, open("dacl/new", O_WRONLY | O_CREAT, 0666));
	if (fd >= 0)
		close(fd);
	T(c, mkdir("dacl/sub", 0777));
	umask(022);
	ST(c, "dacl/new");
	ST(c, "dacl/sub");
	XL(c, "dacl/sub", false);
	T(c, removexattr("acl", "system.posix_acl_access"));
	ST(c, "acl");
}

static void case_special(struct pc *c)
{
	int fd;

	T(c, mkfifo("fifo", 0640));
	ST(c, "fifo");
	TF(c, fd, open("fifo", O_RDONLY | O_NONBLOCK));
	if (fd >= 0) {
		FST(c, "fifo", fd);
		close(fd);
	}
	TF(c, fd, open("fifo", O_WRONLY | O_NONBLOCK));
	if (fd >= 0)
		close(fd);
	T(c, mknod("reg", S_IFREG | 0600, 0));
	ST(c, "reg");
	/* Device nodes are made and stat'ed, not opened: the mount is nodev (and nosuid) on
	 * purpose, so that a replicated device node or setuid file grants nothing. */
	T(c, mknod("null", S_IFCHR | 0666, makedev(1, 3)));
	ST(c, "null");
	T(c, mknod("fifo2", S_IFIFO | 0600, 0));
	ST(c, "fifo2");
	T(c, rename("fifo2", "fifo3"));
	T(c, link("fifo", "fifolink"));
	ST(c, "fifo");
	LS(c, ".");
}

static void case_fallocate(struct pc *c)
{
	int fd;
	char b[8192];

	TF(c, fd, open("f", O_RDWR | O_CREAT, 0644));
	if (fd < 0)
		return;
	T(c, fallocate(fd, 0, 0, 1 << 20));
	FST(c, "f", fd);
	T(c, fallocate(fd, FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20));
	FST(c, "f", fd);
	memset(b, 'z', sizeof(b));
	T(c, pwrite(fd, b, sizeof(b), 0));
	T(c, fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1024, 2048));
	PREAD(c, "f", fd, 1000);
	PREAD(c, "f", fd, 3060);
	FST(c, "f", fd);
	T(c, fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 10));
	T(c, fallocate(fd, 0, -1, 10));
	T(c, fallocate(fd, 0, 0, 0));
	T(c, posix_fallocate(fd, 0, 3 << 20) == 0 ? 0 : -1);
	FST(c, "f", fd);
	close(fd);
	TF(c, fd, open("f", O_RDONLY));
	if (fd >= 0) {
		T(c, fallocate(fd, 0, 0, 10));
		close(fd);
	}
	DATA(c, "f");
}

static void utimens_child(struct pc *c)
{
	struct timespec ts[2] = { { 1000000000, 0 }, { 1000000000, 0 } };

	T(c, utimensat(AT_FDCWD, "rw", NULL, 0));
	T(c, utimensat(AT_FDCWD, "rw", ts, 0));
	T(c, utimensat(AT_FDCWD, "ro", NULL, 0));
	T(c, utimensat(AT_FDCWD, "mine", ts, 0));
	rec_times(c, "mine", 0);
}

static void case_utimensat(struct pc *c)
{
	struct timespec ts[2] = { { 1000000000, 500000000 }, { 1234567890, 123456789 } };
	struct timespec omit[2] = { { 0, UTIME_OMIT }, { 2000000000, 1 } };
	struct timespec bad[2] = { { 0, 1000000000 }, { 0, 0 } };
	struct stat st;
	time_t before = time(NULL);

	T(c, put("f", "f"));
	T(c, utimensat(AT_FDCWD, "f", ts, 0));
	rec_times(c, "f", 0);
	T(c, utimensat(AT_FDCWD, "f", omit, 0));
	rec_times(c, "f", 0);
	T(c, utimensat(AT_FDCWD, "f", bad, 0));
	T(c, utimensat(AT_FDCWD, "f", NULL, 0));
	if (stat("f", &st) == 0)
		rec(c, "mtime now >= before: %d", st.st_mtim.tv_sec >= before);
	T(c, symlink("f", "l"));
	T(c, utimensat(AT_FDCWD, "l", ts, AT_SYMLINK_NOFOLLOW));
	rec_times(c, "l", AT_SYMLINK_NOFOLLOW);
	T(c, mkdir("d", 0755));
	T(c, utimensat(AT_FDCWD, "d", ts, 0));
	rec_times(c, "d", 0);
	T(c, put("d/x", "x"));
	if (stat("d", &st) == 0)
		rec(c, "dir mtime moved on create: %d", st.st_mtim.tv_sec != 1234567890);
	T(c, put("rw", "rw"));
	T(c, chmod("rw", 0666));
	T(c, put("ro", "ro"));
	T(c, put("mine", "m"));
	T(c, chown("mine", c->other_uid, c->other_gid));
	as_other(c, utimens_child);
	T(c, utimensat(AT_FDCWD, "missing", NULL, 0));
}

static void case_open_unlinked_dir(struct pc *c)
{
	int dfd, fd;
	DIR *d;
	int n = 0;

	T(c, mkdir("d", 0755));
	TF(c, dfd, open("d", O_RDONLY | O_DIRECTORY));
	if (dfd < 0)
		return;
	T(c, rmdir("d"));
	FST(c, "d", dfd);
	TF(c, fd, openat(dfd, "x", O_WRONLY | O_CREAT, 0644));
	if (fd >= 0)
		close(fd);
	T(c, mkdirat(dfd, "y", 0755));
	T(c, fchdir(dfd));
	TF(c, fd, open("z", O_WRONLY | O_CREAT, 0644));
	if (fd >= 0)
		close(fd);
	T(c, chdir(".."));
	d = fdopendir(dfd);
	if (d) {
		while (readdir(d))
			n++;
		closedir(d);
	} else {
		close(dfd);
	}
	rec(c, "entries of removed dir: %d", n);
	ST(c, "d");
	ST(c, ".");
}

static void case_rename_rw(struct pc *c)
{
	int fd, ffd;

	T(c, mkdir("d1", 0755));
	T(c, mkdir("d2", 0755));
	TF(c, fd, open("d1/f", O_RDWR | O_CREAT, 0644));
	if (fd < 0)
		return;
	T(c, write(fd, "a", 1));
	T(c, rename("d1/f", "g"));
	T(c, write(fd, "b", 1));
	T(c, rename("g", "d2/h"));
	T(c, write(fd, "c", 1));
	FST(c, "h", fd);
	T(c, fchmod(fd, 0600));
	T(c, fsetxattr(fd, "user.k", "v", 1, 0));
	close(fd);
	DATA(c, "d2/h");
	ST(c, "d2/h");
	XG(c, "d2/h", "user.k");
	TF(c, ffd, open("d2/h", O_RDONLY));
	T(c, rename("d2", "d3"));
	if (ffd >= 0) {
		rec_fd_data(c, "d3/h", ffd);
		close(ffd);
	}
	TF(c, fd, open("d3/h", O_WRONLY | O_APPEND));
	T(c, rename("d3", "d1/d3"));
	if (fd >= 0) {
		T(c, write(fd, "d", 1));
		close(fd);
	}
	DATA(c, "d1/d3/h");
	ST(c, "d1");
	ST(c, ".");
}

static void case_readdir(struct pc *c)
{
	int fd;
	char n[32];

	T(c, mkdir("d", 0755));
	T(c, put("f", "f"));
	T(c, symlink("f", "l"));
	T(c, mkfifo("p", 0644));
	T(c, put(".hidden", "h"));
	for (int i = 0; i < 300; i++) {
		snprintf(n, sizeof(n), "d/many-%03d", i);
		if (put(n, "") < 0)
			rec(c, "put %s failed", n);
	}
	LS(c, ".");
	LS(c, "d");
	for (int i = 0; i < 300; i += 2) {
		snprintf(n, sizeof(n), "d/many-%03d", i);
		unlink(n);
	}
	LS(c, "d");
	TF(c, fd, open("d", O_RDONLY | O_DIRECTORY));
	if (fd >= 0) {
		char b[16];

		T(c, read(fd, b, sizeof(b)));
		close(fd);
	}
}

static void case_rw_basic(struct pc *c)
{
	int fd;
	char *big = malloc(1 << 20);
	char b[16];

	if (!big)
		return;
	for (size_t i = 0; i < (1 << 20); i++)
		big[i] = (char)((i * 2654435761u) >> 13);
	TF(c, fd, open("big", O_RDWR | O_CREAT, 0644));
	if (fd >= 0) {
		T(c, write(fd, big, 1 << 20));
		T(c, pwrite(fd, "patch", 5, 123457));
		T(c, lseek(fd, 0, SEEK_CUR));
		T(c, read(fd, b, sizeof(b)));
		T(c, lseek(fd, -10, SEEK_END));
		T(c, read(fd, b, sizeof(b)));
		T(c, pread(fd, b, sizeof(b), 5 << 20));
		close(fd);
	}
	free(big);
	DATA(c, "big");
	TF(c, fd, open("big", O_RDONLY));
	if (fd >= 0) {
		T(c, write(fd, "x", 1));
		close(fd);
	}
	TF(c, fd, open("big", O_WRONLY));
	if (fd >= 0) {
		T(c, read(fd, b, 1));
		close(fd);
	}
	{
		int in, out;

		TF(c, in, open("big", O_RDONLY));
		TF(c, out, open("copy", O_WRONLY | O_CREAT, 0644));
		if (in >= 0 && out >= 0) {
			loff_t off_in = 100, off_out = 0;

			T(c, copy_file_range(in, &off_in, out, &off_out, 500000, 0));
		}
		if (in >= 0)
			close(in);
		if (out >= 0)
			close(out);
		DATA(c, "copy");
	}
}

static void case_mmap(struct pc *c)
{
	int fd;
	char *p;
	const size_t len = 3 * 4096 + 100;

	TF(c, fd, open("m", O_RDWR | O_CREAT, 0644));
	if (fd < 0)
		return;
	T(c, ftruncate(fd, (off_t)len));
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	rec(c, "mmap shared = %s", p == MAP_FAILED ? errname(errno) : "ok");
	if (p != MAP_FAILED) {
		for (size_t i = 0; i < len; i++)
			p[i] = (char)('a' + i % 26);
		T(c, msync(p, len, MS_SYNC));
		T(c, munmap(p, len));
	}
	close(fd);
	DATA(c, "m");
	ST(c, "m");
	TF(c, fd, open("m", O_RDONLY));
	if (fd >= 0) {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		rec(c, "mmap shared on O_RDONLY = %s", p == MAP_FAILED ? errname(errno) : "ok");
		if (p != MAP_FAILED)
			munmap(p, len);
		p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
		rec(c, "mmap read = %s", p == MAP_FAILED ? errname(errno) : "ok");
		if (p != MAP_FAILED) {
			rec(c, "mapped[5000] = %c", p[5000]);
			munmap(p, len);
		}
		close(fd);
	}
}

/* Which times move: ext4 and the mount must agree on what updates mtime, ctime and atime. */
static bool moved(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec != b->tv_sec || a->tv_nsec != b->tv_nsec;
}

static void rec_moves(struct pc *c, const char *what, const char *path, const struct stat *old)
{
	struct stat st;

	if (lstat(path, &st) < 0) {
		rec(c, "%s: lstat %s = -1 %s", what, path, errname(errno));
		return;
	}
	rec(c, "%s: %s mtime %s, ctime %s", what, path,
	    moved(&old->st_mtim, &st.st_mtim) ? "moved" : "kept",
	    moved(&old->st_ctim, &st.st_ctim) ? "moved" : "kept");
}

static void past(const char *path)
{
	struct timespec ts[2] = { { 1000000000, 0 }, { 1000000000, 0 } };

	utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW);
}

static bool later(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec > b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec > b->tv_nsec);
}

/*
 * Snapshot the times after moving them into the past; then wait until the coarse clock
 * (the one the kernel stamps ctime with) has ticked and is past the ctime snapped, so that
 * any change after this gets a later ctime. Ticking once is not enough on the mount: with
 * the writeback cache the kernel keeps a regular file's ctime itself, from the coarse
 * clock, and never moves it back, but after past() it holds the ctime the server reported,
 * the local path's (ext4's, fine-grained), which can be up to a tick ahead of the coarse
 * clock: a chmod, write or truncate within that tick kept ctime (4 % of runs). ext4 itself
 * has no such gap (multigrain timestamps).
 */
static void snap(const char *path, struct stat *st)
{
	struct timespec t0, t1;

	past(path);
	lstat(path, st);
	clock_gettime(CLOCK_REALTIME_COARSE, &t0);
	do
		clock_gettime(CLOCK_REALTIME_COARSE, &t1);
	while (!moved(&t0, &t1) || !later(&t1, &st->st_ctim));
}

static void case_time_updates(struct pc *c)
{
	struct stat st;
	int fd;
	char b[4];

	T(c, put("f", "data"));
	T(c, mkdir("d", 0755));
	snap("f", &st);
	T(c, put("f", "more data"));
	rec_moves(c, "rewrite", "f", &st);
	snap("f", &st);
	T(c, chmod("f", 0600));
	rec_moves(c, "chmod", "f", &st);
	snap("f", &st);
	T(c, truncate("f", 2));
	rec_moves(c, "truncate", "f", &st);
	/* Not compared: truncate() to the same size (Linux moves the times, POSIX need not). */
	snap("f", &st);
	T(c, setxattr("f", "user.t", "1", 1, 0));
	rec_moves(c, "setxattr", "f", &st);
	snap("f", &st);
	T(c, link("f", "g"));
	rec_moves(c, "link", "f", &st);
	snap("f", &st);
	T(c, rename("g", "h"));
	rec_moves(c, "rename", "f", &st);
	snap("f", &st);
	TF(c, fd, open("f", O_RDONLY));
	if (fd >= 0) {
		T(c, read(fd, b, sizeof(b)));
		close(fd);
	}
	rec_moves(c, "read", "f", &st);
	snap("f", &st);
	TF(c, fd, open("f", O_WRONLY));
	if (fd >= 0) {
		T(c, pwrite(fd, "x", 1, 0));
		FST(c, "f", fd);
		close(fd);
	}
	rec_moves(c, "pwrite", "f", &st);
	snap("d", &st);
	T(c, put("d/new", "n"));
	rec_moves(c, "create in", "d", &st);
	snap("d", &st);
	T(c, rename("d/new", "d/new2"));
	rec_moves(c, "rename in", "d", &st);
	snap("d", &st);
	T(c, unlink("d/new2"));
	rec_moves(c, "unlink in", "d", &st);
	snap("d", &st);
	T(c, chmod("d", 0700));
	rec_moves(c, "chmod", "d", &st);
}

static void lock_child(struct pc *c)
{
	int fd = open("l", O_RDWR);
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10 };

	if (fd < 0) {
		rec(c, "child open = -1 %s", errname(errno));
		return;
	}
	T(c, fcntl(fd, F_SETLK, &fl));
	fl.l_start = 100;
	T(c, fcntl(fd, F_SETLK, &fl));
	fl.l_start = 0;
	T(c, fcntl(fd, F_GETLK, &fl));
	rec(c, "F_GETLK type=%d start=%lld len=%lld", fl.l_type, (long long)fl.l_start,
	    (long long)fl.l_len);
	T(c, flock(fd, LOCK_EX | LOCK_NB));
	T(c, flock(fd, LOCK_SH | LOCK_NB));
	close(fd);
}

static void case_locks(struct pc *c)
{
	int fd;
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10 };

	T(c, put("l", "0123456789abcdefghij"));
	T(c, chmod("l", 0666));
	TF(c, fd, open("l", O_RDWR));
	if (fd < 0)
		return;
	T(c, fcntl(fd, F_SETLK, &fl));
	T(c, flock(fd, LOCK_SH));
	as_other(c, lock_child);
	T(c, flock(fd, LOCK_UN));
	as_other(c, lock_child);
	close(fd);
}

static void case_unix_socket(struct pc *c)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s, cl, a;
	char b[8] = { 0 };

	snprintf(sa.sun_path, sizeof(sa.sun_path), "sock");
	TF(c, s, socket(AF_UNIX, SOCK_STREAM, 0));
	if (s < 0)
		return;
	T(c, bind(s, (struct sockaddr *)&sa, sizeof(sa)));
	T(c, listen(s, 1));
	ST(c, "sock");
	TF(c, cl, socket(AF_UNIX, SOCK_STREAM, 0));
	T(c, connect(cl, (struct sockaddr *)&sa, sizeof(sa)));
	TF(c, a, accept(s, NULL, NULL));
	T(c, write(cl, "ping", 4));
	if (a >= 0) {
		T(c, read(a, b, 4));
		rec(c, "received '%s'", b);
		close(a);
	}
	close(cl);
	close(s);
	TF(c, s, socket(AF_UNIX, SOCK_STREAM, 0));
	if (s >= 0) {
		T(c, bind(s, (struct sockaddr *)&sa, sizeof(sa)));
		close(s);
	}
	T(c, unlink("sock"));
	T(c, rename("sock", "sock2"));
}

static int copy_file(const char *from, const char *to, mode_t mode)
{
	int in = open(from, O_RDONLY), out;
	char b[65536];
	ssize_t n;
	int rc = 0;

	if (in < 0)
		return -1;
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (out < 0) {
		close(in);
		return -1;
	}
	while ((n = read(in, b, sizeof(b))) > 0)
		if (write(out, b, (size_t)n) != n)
			rc = -1;
	if (n < 0 || close(out) < 0)
		rc = -1;
	close(in);
	return rc;
}

static void case_exec(struct pc *c)
{
	pid_t pid;
	int status, fd;

	T(c, put("script", "#!/bin/sh\nexit 7\n"));
	T(c, chmod("script", 0755));
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		execl("./script", "script", (char *)NULL);
		_exit(99);
	}
	if (pid > 0 && waitpid(pid, &status, 0) == pid)
		rec(c, "./script exit status %d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	T(c, put("noexec", "#!/bin/sh\nexit 0\n"));
	T(c, access("noexec", X_OK));
	pid = fork();
	if (pid == 0) {
		execl("./noexec", "noexec", (char *)NULL);
		_exit(100 + errno % 100);
	}
	if (pid > 0 && waitpid(pid, &status, 0) == pid)
		rec(c, "exec of a 0644 file: exit status %d (100 + errno)",
		    WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	T(c, copy_file("/bin/sleep", "sleep", 0755));
	pid = fork();
	if (pid == 0) {
		execl("./sleep", "sleep", "20", (char *)NULL);
		_exit(99);
	}
	if (pid < 0)
		return;
	/* poll until the child runs ./sleep: opening it for writing then fails with ETXTBSY */
	for (int i = 0; i < 10000; i++) {
		char exe[64], target[PATH_MAX];
		ssize_t n;

		snprintf(exe, sizeof(exe), "/proc/%d/exe", (int)pid);
		n = readlink(exe, target, sizeof(target) - 1);
		if (n > 6 && !memcmp(target + n - 6, "/sleep", 6) && strstr(target, "posix."))
			break;
		usleep(1000);
	}
	TF(c, fd, open("sleep", O_WRONLY));
	if (fd >= 0)
		close(fd);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	T(c, unlink("sleep"));
}

static void case_names(struct pc *c)
{
	static const char *const names[] = {
		"with space", "new\nline", "back\\slash",       "-dash",
		"...",        ".hidden",   "\xc3\xa9t\xc3\xa9", "\xe2\x9c\x93",
		"tab\there",  "*?[glob]",  "quote'\"",
	};
	char n[300];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (put(names[i], names[i]) < 0)
			rec(c, "create #%zu = -1 %s", i, errname(errno));
	/* 255 bytes of two-byte UTF-8 characters plus one byte */
	for (size_t i = 0; i < 254; i += 2)
		memcpy(n + i, "\xc3\xa4", 2);
	n[254] = 'x';
	n[255] = '\0';
	T(c, put(n, "long utf8"));
	T(c, mkdir("dir with space", 0755));
	T(c, rename("new\nline", "dir with space/new\nline"));
	LS(c, ".");
	LS(c, "dir with space");
	DATA(c, "\xe2\x9c\x93");
}

static void case_io_extra(struct pc *c)
{
	int fd, dfd;
	void *buf = NULL;
	char big[5000];

	T(c, posix_memalign(&buf, 4096, 8192));
	if (!buf)
		return;
	memset(buf, 'D', 8192);
	TF(c, fd, open("direct", O_RDWR | O_CREAT | O_DIRECT, 0644));
	if (fd >= 0) {
		T(c, pwrite(fd, buf, 8192, 0));
		T(c, pread(fd, buf, 4096, 4096));
		T(c, fsync(fd));
		T(c, fdatasync(fd));
		close(fd);
	}
	free(buf);
	DATA(c, "direct");
	TF(c, dfd, open(".", O_RDONLY | O_DIRECTORY));
	if (dfd >= 0) {
		T(c, fsync(dfd));
		close(dfd);
	}
	T(c, put("x", "x"));
	memset(big, 'v', sizeof(big));
	T(c, setxattr("x", "user.big", big, 4000, 0));
	T(c, getxattr("x", "user.big", big, sizeof(big)));
	T(c, setxattr("x", "user.huge", big, sizeof(big), 0) < 0 ? -1 : 0);
	TF(c, fd, open("x", O_RDONLY | O_NOATIME));
	if (fd >= 0)
		close(fd);
	TF(c, fd, open("x", O_WRONLY | O_APPEND));
	if (fd >= 0) {
		int fd2 = open("x", O_WRONLY | O_APPEND);

		T(c, write(fd, "1", 1));
		T(c, write(fd2, "2", 1));
		T(c, write(fd, "3", 1));
		close(fd2);
		close(fd);
	}
	DATA(c, "x");
	TF(c, fd, open("x", O_RDONLY));
	if (fd >= 0) {
		T(c, chmod("x", 0));
		PREAD(c, "x after chmod 0", fd, 0);
		close(fd);
	}
}

static const struct pc_case pc_cases[] = {
	{ "create_modes", case_create_modes },
	{ "ownership", case_ownership },
	{ "excl", case_excl },
	{ "trunc", case_trunc },
	{ "append", case_append },
	{ "chmod_chown", case_chmod_chown },
	{ "sticky", case_sticky },
	{ "links", case_links },
	{ "rename", case_rename },
	{ "renameat2", case_renameat2 },
	{ "unlink_open", case_unlink_open },
	{ "nametoolong", case_nametoolong },
	{ "enotempty_eexist", case_enotempty_eexist },
	{ "eisdir_enotdir", case_eisdir_enotdir },
	{ "eloop", case_eloop },
	{ "eacces", case_eacces },
	{ "truncate", case_truncate },
	{ "sparse", case_sparse },
	{ "symlink", case_symlink },
	{ "xattr", case_xattr },
	{ "special", case_special },
	{ "fallocate", case_fallocate },
	{ "utimensat", case_utimensat },
	{ "open_unlinked_dir", case_open_unlinked_dir },
	{ "rename_rw", case_rename_rw },
	{ "readdir", case_readdir },
	{ "rw_basic", case_rw_basic },
	{ "mmap", case_mmap },
	{ "time_updates", case_time_updates },
	{ "locks", case_locks },
	{ "unix_socket", case_unix_socket },
	{ "exec", case_exec },
	{ "names", case_names },
	{ "io_extra", case_io_extra },
};

/* ---- running ---------------------------------------------------------------------------- */

/* Remove everything below (and including) @name in @dirfd; makes directories writable first. */
static void rm_tree(int parent, const char *name)
{
	struct stat st;
	int fd;
	DIR *d;
	struct dirent *de;

	if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	if (!S_ISDIR(st.st_mode)) {
		unlinkat(parent, name, 0);
		return;
	}
	(void)!fchmodat(parent, name, 0700, 0); /* best effort: removal below reports */
	fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
	if (fd < 0)
		return;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			rm_tree(dirfd(d), de->d_name);
	closedir(d);
	unlinkat(parent, name, AT_REMOVEDIR);
}

struct pc_side {
	const char *dir;
	char base[PATH_MAX]; /* the fresh subdirectory */
	int fd;              /* O_DIRECTORY of base */
};

static int side_prepare(struct pc_side *s, uid_t uid, gid_t gid, bool chown_base)
{
	if (snprintf(s->base, sizeof(s->base), "%s/posix.XXXXXX", s->dir) >= (int)sizeof(s->base))
		return -1;
	if (!mkdtemp(s->base)) {
		fprintf(stderr, "posix_conformance: cannot create a directory in %s: %s\n", s->dir,
			strerror(errno));
		return -1;
	}
	if (chmod(s->base, 0755) < 0 || (chown_base && chown(s->base, uid, gid) < 0)) {
		fprintf(stderr, "posix_conformance: cannot prepare %s: %s\n", s->base,
			strerror(errno));
		return -1;
	}
	s->fd = open(s->base, O_RDONLY | O_DIRECTORY);
	if (s->fd < 0) {
		fprintf(stderr, "posix_conformance: cannot open %s: %s\n", s->base,
			strerror(errno));
		return -1;
	}
	return 0;
}

/* Run case @k in a fresh directory of @s; the transcript is left in c->buf. */
static void run_case(struct pc *c, const struct pc_side *s, const struct pc_case *k)
{
	c->len = 0;
	if (c->buf)
		c->buf[0] = '\0';
	umask(022);
	if (fchdir(s->fd) < 0 || mkdir(k->name, 0755) < 0 || chmod(k->name, 0755) < 0 ||
	    chdir(k->name) < 0) {
		rec(c, "cannot enter a fresh case directory: %s", errname(errno));
		return;
	}
	k->fn(c);
	umask(022);
	if (fchdir(s->fd) < 0)
		rec(c, "cannot leave the case directory: %s", errname(errno));
}

static char *next_line(char **p)
{
	char *s = *p, *e;

	if (!s || !*s)
		return NULL;
	e = strchr(s, '\n');
	if (e) {
		*e = '\0';
		*p = e + 1;
	} else {
		*p = s + strlen(s);
	}
	return s;
}

/* Print the first difference of two transcripts (destroys both). */
static void show_diff(char *a, char *b)
{
	char *pa = a, *pb = b, *la, *lb, *prev = NULL;
	int line = 1;

	for (;; line++) {
		la = next_line(&pa);
		lb = next_line(&pb);
		if (!la && !lb)
			return;
		if (!la || !lb || strcmp(la, lb)) {
			if (prev)
				printf("     after: %s\n", prev);
			printf("     line %d\n       A: %s\n       B: %s\n", line,
			       la ? la : "(end)", lb ? lb : "(end)");
			return;
		}
		prev = la;
	}
}

static int parse_ids(const char *s, uid_t *uid, gid_t *gid)
{
	unsigned long u, g;
	char *end;

	errno = 0;
	u = strtoul(s, &end, 10);
	if (errno || *end != ':')
		return -1;
	g = strtoul(end + 1, &end, 10);
	if (errno || *end || u > 0xfffffffeUL || g > 0xfffffffeUL)
		return -1;
	*uid = (uid_t)u;
	*gid = (gid_t)g;
	return 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: posix_conformance DIR_A DIR_B [--as-user UID:GID] "
			"[--other UID:GID] [--only CASE] [--verbose] [--keep]\n");
	return 2;
}

struct pc_args {
	const char *dir[2];
	bool as_user;
	uid_t uid;
	gid_t gid;
	const char *only;
	bool keep;
};

static int parse_args(int argc, char **argv, struct pc *c, struct pc_args *a)
{
	int ndirs = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--as-user") && i + 1 < argc) {
			if (parse_ids(argv[++i], &a->uid, &a->gid) < 0)
				return -1;
			a->as_user = true;
		} else if (!strcmp(argv[i], "--other") && i + 1 < argc) {
			if (parse_ids(argv[++i], &c->other_uid, &c->other_gid) < 0)
				return -1;
		} else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
			a->only = argv[++i];
		} else if (!strcmp(argv[i], "--verbose")) {
			c->verbose = true;
		} else if (!strcmp(argv[i], "--keep")) {
			a->keep = true;
		} else if (argv[i][0] != '-' && ndirs < 2) {
			a->dir[ndirs++] = argv[i];
		} else {
			return -1;
		}
	}
	return ndirs == 2 ? 0 : -1;
}

static int run_all(struct pc *c, struct pc_side *side, const struct pc_args *a)
{
	int passed = 0, failed = 0;

	for (size_t i = 0; i < sizeof(pc_cases) / sizeof(pc_cases[0]); i++) {
		const struct pc_case *k = &pc_cases[i];
		char *ta;

		if (a->only && strcmp(a->only, k->name))
			continue;
		run_case(c, &side[0], k);
		ta = strdup(c->buf ? c->buf : "");
		run_case(c, &side[1], k);
		if (!ta) {
			fprintf(stderr, "posix_conformance: out of memory\n");
			exit(2);
		}
		if (!strcmp(ta, c->buf ? c->buf : "")) {
			printf("ok   %s\n", k->name);
			passed++;
		} else {
			printf("FAIL %s\n", k->name);
			failed++;
		}
		if (c->verbose)
			printf("---- A:\n%s---- B:\n%s----\n", ta, c->buf ? c->buf : "");
		if (strcmp(ta, c->buf ? c->buf : ""))
			show_diff(ta, c->buf ? c->buf : ta);
		free(ta);
		fflush(stdout);
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed;
}

/* --as-user: run every case in a child that has become that user; root cleans up after. */
static int run_as_user(struct pc *c, struct pc_side *side, const struct pc_args *a)
{
	pid_t pid;
	int status;

	if (!c->root) {
		fprintf(stderr, "posix_conformance: --as-user needs root\n");
		return 1;
	}
	pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		if (drop_to(a->uid, a->gid) < 0) {
			fprintf(stderr, "posix_conformance: cannot become %u:%u: %s\n",
				(unsigned)a->uid, (unsigned)a->gid, strerror(errno));
			_exit(2);
		}
		c->root = false;
		printf("note: running as %u:%u; non-owner steps are skipped on both sides\n",
		       (unsigned)a->uid, (unsigned)a->gid);
		status = run_all(c, side, a);
		fflush(stdout);
		_exit(status ? 1 : 0);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int main(int argc, char **argv)
{
	struct pc c = { .sink = -1, .other_uid = 65534, .other_gid = 65534 };
	struct pc_args a = { 0 };
	struct pc_side side[2] = { { 0 }, { 0 } };
	int failed;

	if (parse_args(argc, argv, &c, &a) < 0)
		return usage();
	c.root = geteuid() == 0;
	for (int i = 0; i < 2; i++) {
		side[i].dir = a.dir[i];
		if (side_prepare(&side[i], a.uid, a.gid, a.as_user && c.root) < 0)
			return 2;
	}
	printf("A: %s\nB: %s\n", side[0].base, side[1].base);
	fflush(stdout);
	if (a.as_user)
		failed = run_as_user(&c, side, &a);
	else {
		if (!c.root)
			printf("note: not root; non-owner steps are skipped on both sides\n");
		failed = run_all(&c, side, &a);
	}
	if (!failed && !a.keep) {
		for (int i = 0; i < 2; i++) {
			char *slash = strrchr(side[i].base, '/');
			int dfd;

			*slash = '\0';
			dfd = open(side[i].base[0] ? side[i].base : "/", O_RDONLY | O_DIRECTORY);
			if (dfd >= 0) {
				rm_tree(dfd, slash + 1);
				close(dfd);
			}
		}
	}
	free(c.buf);
	return failed ? 1 : 0;
}
