/*
 * dfsr.c - the dfsr program: the mount daemon and every command (CONTRACT.md, "Commands").
 *
 * This is the one file that knows every layer. `dfsr mount` wires them together: it loads
 * the config and the key, opens each folder's database (core/journal), brings it up to date
 * with the local path (core/scan), starts the libuv loop thread with the control socket
 * (net/), mounts each folder (fs/) on a thread of its own, and then waits for a signal on
 * the main thread. Every other command is a short client: it asks the running member over
 * the control socket, or, for the commands that must work without one (events, journal),
 * opens the folder databases read-only itself.
 *
 * What a command prints is rendered here, in one place, for both paths: the daemon renders
 * status, events and journal replies on the thread pool and the client prints them as they
 * come, so the JSON shapes of CONTRACT.md are written by exactly one set of functions.
 *
 * Threads of a running member: main (startup, then sigwait for SIGTERM/SIGINT/SIGHUP and
 * the internal stop signal), the loop thread (net/loop.c), libuv's thread pool (control
 * requests), and one thread per folder running fs_run() with libfuse's workers below it.
 * Every signal is blocked in every thread before the first thread starts; only the main
 * thread takes them, with sigwait(). Anything that wants the member to stop (a mount that
 * ended, a `stop` request) sends SIGUSR1 to the main thread, so there is exactly one place
 * where the member stops, in one order: mounts, loop, databases.
 *
 * Errors: every failing command prints one line "dfsr: ..." on stderr and exits 1; a usage
 * error exits 2.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "core/clone.h"
#include "core/config.h"
#include "core/event.h"
#include "core/hash.h"
#include "core/journal.h"
#include "core/layout.h"
#include "core/outbound.h"
#include "core/replica.h"
#include "core/scan.h"
#include "core/stage.h"
#include "core/util.h"
#include "fs/fs.h"
#include "net/control.h"
#include "net/loop.h"
#include "net/session.h"

#define KEY_LEN            crypto_box_SECRETKEYBYTES
#define KEY_B64_LEN        sodium_base64_ENCODED_LEN(KEY_LEN, sodium_base64_VARIANT_ORIGINAL)
#define FUSE_SUPER_MAGIC   0x65735546
#define CONTROL_TIMEOUT_MS 30000 /* a request's answer */
#define PING_TIMEOUT_MS    5000  /* is it running? (mount, umount) */
#define STOP_TIMEOUT_S     120

_Static_assert(crypto_box_SECRETKEYBYTES == 32 && crypto_box_PUBLICKEYBYTES == 32,
	       "X25519 keys are 32 bytes");

/* ---- command line ------------------------------------------------------------------------ */

enum cli_opt {
	OPT_CONFIG = 1u << 0,
	OPT_FOLDER = 1u << 1,
	OPT_JSON = 1u << 2,
	OPT_WATCH = 1u << 3,
	OPT_FOREGROUND = 1u << 4,
	OPT_DEBUG = 1u << 5,
	OPT_RECURSIVE = 1u << 6,
	OPT_SINCE = 1u << 7,
	OPT_FROM = 1u << 8,
	OPT_LIST = 1u << 9,
	OPT_PREEXISTING = 1u << 10,
	OPT_TIMEOUT = 1u << 11,
	OPT_PEER = 1u << 12,
	OPT_TO = 1u << 13,
	OPT_COPY = 1u << 14,
	OPT_ALL = 1u << 15,
	OPT_VALIDATION = 1u << 16,
};

struct cli {
	const char *cmd;
	const char *usage; /* the command's usage line, for cli_usage_error() */
	const char *config;
	const char *folder;
	const char *since;
	const char *peer;
	const char *to;
	const char *sub;        /* clone: "export" or "import" */
	const char *validation; /* clone import */
	bool copy, all;
	bool json, watch, foreground, debug, recursive, preexisting;
	uint64_t from;
	uint64_t list;
	uint64_t timeout; /* seconds; 0 = wait for ever */
	int argc;         /* positional arguments */
	char **argv;
};

struct command {
	const char *name;
	int (*run)(struct cli *c);
	unsigned opts; /* enum cli_opt bits accepted */
	int min_args, max_args;
	const char *usage;
	const char *help;
};

static int dfsr_err(const char *fmt, ...) DFSR_PRINTF(1, 2);

/* One line "dfsr: ..." on stderr. Return: 1, the exit code of a failed command. */
static int dfsr_err(const char *fmt, ...)
{
	va_list ap;

	fputs("dfsr: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

static int cli_usage_error(const struct cli *c, const char *fmt, ...) DFSR_PRINTF(2, 3);

/*
 * A bad command line found by the command itself (a required option or operand missing,
 * options that exclude each other): "dfsr: <what> (usage: ...)" on one line, as
 * parse_opts() prints. Return: 2, the exit code of a bad command line (dfsr.1).
 */
static int cli_usage_error(const struct cli *c, const char *fmt, ...)
{
	va_list ap;

	fputs("dfsr: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (usage: dfsr %s)\n", c->usage);
	return 2;
}

/* Append @s to @o for a line of text output: control characters escaped (dfsr_text_line()). */
static int add_text(struct dfsr_buf *o, const char *s)
{
	size_t len = 4 * strlen(s) + 1;
	char *t = malloc(len);
	int rc;

	if (!t)
		return -ENOMEM;
	rc = dfsr_buf_addf(o, "%s", dfsr_text_line(s, t, len));
	free(t);
	return rc;
}

/* Strict unsigned decimal (STYLE rule 19). */
static int parse_u64(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (s[0] < '0' || s[0] > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

/* ---- keys: keygen, pubkey, and the check `dfsr mount` makes --------------------------- */

/**
 * key_load() - Read a secret key file: base64 (sodium's original variant) of 32 bytes and
 * one optional "\n".
 * @strict: refuse a file that group or others may read (what `mount` requires)
 * @sk:     receives the key on success; wiped on failure
 *
 * Return: 0, or 1 after printing one line saying what is wrong.
 */
static int key_load(const char *path, bool strict, uint8_t sk[static KEY_LEN])
{
	char buf[128];
	size_t len = 0, binlen = 0;
	const char *end = NULL;
	struct stat st;
	ssize_t n;
	int fd, rc = 1;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return dfsr_err("key file %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		dfsr_err("key file %s: not a regular file", path);
		goto out_close;
	}
	if (strict && (st.st_mode & 077)) {
		dfsr_err("key file %s is readable by group or others (chmod 600 %s)", path, path);
		goto out_close;
	}
	while (len < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - len)) > 0)
		len += (size_t)n;
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len == 0 || len >= sizeof(buf) ||
	    sodium_base642bin(sk, KEY_LEN, buf, len, NULL, &binlen, &end,
			      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    binlen != KEY_LEN || end != buf + len) {
		sodium_memzero(sk, KEY_LEN);
		dfsr_err("key file %s: not a dfsr secret key (base64 of 32 bytes)", path);
		goto out_close;
	}
	rc = 0;
out_close:
	sodium_memzero(buf, sizeof(buf));
	close(fd);
	return rc;
}

static void print_public(const uint8_t sk[static KEY_LEN])
{
	uint8_t pk[crypto_box_PUBLICKEYBYTES];
	char b64[KEY_B64_LEN];

	crypto_scalarmult_base(pk, sk);
	sodium_bin2base64(b64, sizeof(b64), pk, sizeof(pk), sodium_base64_VARIANT_ORIGINAL);
	printf("%s\n", b64);
}

static int cmd_keygen(struct cli *c)
{
	const char *path = c->argv[0];
	uint8_t pk[crypto_box_PUBLICKEYBYTES], sk[KEY_LEN];
	char b64[KEY_B64_LEN + 1];
	int fd, rc = 1;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 && errno == EEXIST)
		return dfsr_err("%s already exists; not overwriting a key", path);
	if (fd < 0)
		return dfsr_err("%s: %s", path, strerror(errno));
	crypto_box_keypair(pk, sk);
	sodium_bin2base64(b64, KEY_B64_LEN, sk, sizeof(sk), sodium_base64_VARIANT_ORIGINAL);
	strcat(b64, "\n");
	if (fchmod(fd, 0600) < 0 || dfsr_write_all(fd, b64, strlen(b64)) < 0 || fsync(fd) < 0) {
		dfsr_err("%s: %s", path, strerror(errno));
		unlink(path);
		goto out_wipe;
	}
	print_public(sk);
	rc = 0;
out_wipe:
	close(fd);
	sodium_memzero(sk, sizeof(sk));
	sodium_memzero(b64, sizeof(b64));
	return rc;
}

static int cmd_pubkey(struct cli *c)
{
	uint8_t sk[KEY_LEN];

	if (key_load(c->argv[0], false, sk))
		return 1;
	print_public(sk);
	sodium_memzero(sk, sizeof(sk));
	return 0;
}

/* ---- dfsr hash ------------------------------------------------------------------------- */

struct hash_item {
	char *path;
	char hex[HASH_HEX_LEN];
};

struct hash_list {
	struct hash_item *v;
	size_t n, cap;
	bool failed; /* an entry could not be hashed (reported, walk goes on) */
};

static int hash_list_add(struct hash_list *l, const char *path, const uint8_t h[HASH_LEN])
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 256;
		struct hash_item *v = reallocarray(l->v, cap, sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n].path = strdup(path);
	if (!l->v[l->n].path)
		return -ENOMEM;
	hash_hex(h, l->v[l->n].hex);
	l->n++;
	return 0;
}

static int hash_walk(int dirfd, const char *prefix, bool root, struct hash_list *l);

/* One entry of a directory: hash it, list it, descend into directories. */
static int hash_entry(int dfd, const char *prefix, const char *name, struct hash_list *l)
{
	struct hash_result r;
	char *rel = NULL;
	int rc = hash_at(dfd, name, &r);

	if (rc == -ENOTSUP)
		return 0; /* sockets, fifos, devices: never replicated */
	if (rc < 0) {
		dfsr_err("%s%s: %s", prefix, name, dfsr_strerror(rc));
		l->failed = true;
		return 0;
	}
	if (asprintf(&rel, "%s%s%s", prefix, name, S_ISDIR(r.st.st_mode) ? "/" : "") < 0)
		return -ENOMEM;
	rc = hash_list_add(l, rel, r.hash);
	if (rc == 0 && S_ISDIR(r.st.st_mode)) {
		int sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

		if (sub < 0) {
			dfsr_err("%s: %s", rel, strerror(errno));
			l->failed = true;
		} else {
			rc = hash_walk(sub, rel, false, l);
		}
	}
	free(rel);
	return rc;
}

/* Takes @dirfd (closes it). */
static int hash_walk(int dirfd, const char *prefix, bool root, struct hash_list *l)
{
	DIR *d = fdopendir(dirfd);
	struct dirent *de;
	int rc = 0;

	if (!d) {
		close(dirfd);
		return -errno;
	}
	while (rc == 0 && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (root && !strcmp(de->d_name, LAYOUT_PRIVATE))
			continue;
		rc = hash_entry(dirfd, prefix, de->d_name, l);
	}
	closedir(d);
	return rc;
}

static int cmp_hash_item(const void *a, const void *b)
{
	const struct hash_item *x = a, *y = b;

	return strcmp(x->path, y->path);
}

/*
 * One "HEX  PATH" line. As sha256sum(1) does, a path holding a newline, a carriage return
 * or a backslash is written escaped (\n, \r, \\) on a line that starts with a backslash,
 * so every file stays one line and two listings still diff line by line.
 */
static void hash_print(const char *hex, const char *path)
{
	if (!strpbrk(path, "\n\r\\")) {
		printf("%s  %s\n", hex, path);
		return;
	}
	printf("\\%s  ", hex);
	for (const char *p = path; *p; p++) {
		if (*p == '\n')
			fputs("\\n", stdout);
		else if (*p == '\r')
			fputs("\\r", stdout);
		else if (*p == '\\')
			fputs("\\\\", stdout);
		else
			putchar(*p);
	}
	putchar('\n');
}

static int hash_tree(const char *arg, struct hash_list *l)
{
	int fd = open(arg, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -errno;
	rc = hash_walk(fd, "", true, l);
	if (rc < 0)
		return rc;
	if (l->n)
		qsort(l->v, l->n, sizeof(*l->v), cmp_hash_item);
	for (size_t i = 0; i < l->n; i++)
		hash_print(l->v[i].hex, l->v[i].path);
	return 0;
}

static int hash_one(const char *arg, bool recursive, bool *failed)
{
	struct hash_list l = { 0 };
	struct hash_result r;
	char hex[HASH_HEX_LEN];
	int rc = hash_at(AT_FDCWD, arg, &r);

	if (rc == 0 && recursive && S_ISDIR(r.st.st_mode)) {
		rc = hash_tree(arg, &l);
		*failed |= l.failed;
	} else if (rc == 0) {
		hash_hex(r.hash, hex);
		hash_print(hex, arg);
	}
	for (size_t i = 0; i < l.n; i++)
		free(l.v[i].path);
	free(l.v);
	return rc;
}

static int cmd_hash(struct cli *c)
{
	bool failed = false;

	for (int i = 0; i < c->argc; i++) {
		int rc = hash_one(c->argv[i], c->recursive, &failed);

		if (rc < 0) {
			dfsr_err("%s: %s", c->argv[i], dfsr_strerror(rc));
			failed = true;
		}
	}
	if (fflush(stdout) != 0)
		return dfsr_err("writing the output: %s", strerror(errno));
	return failed ? 1 : 0;
}

/* ---- the member's state ------------------------------------------------------------------ */

#define USAGE_CACHE_NS (3 * 1000000000LL) /* a walk of Staging per status is wasteful */

struct member;

struct folder_rt {
	struct member *m;
	const struct config_folder *_Atomic cf; /* replaced whole by a reload */
	int root_fd; /* O_PATH|O_DIRECTORY of the local path, opened before the mount */
	struct journal *j;
	struct fs *fs;
	struct stage *stage; /* staging of this folder (replication) */
	struct replica *r;   /* downstream side of replication */
	size_t index;        /* in m->f, for net_sessions_wake() */
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t usage_lock; /* protects the four fields below */
	int64_t usage_at_ns;        /* mono time of the last walk; 0 = never */
	uint64_t staging_used, conflict_used;
	int64_t sync_started_ns; /* mono time initial sync started (status's rate); 0 = not */
};

struct member {
	struct config cfg;
	struct folder_rt *f;
	size_t n;
	struct net_loop *loop;
	struct net_control *ctl;
	/* Replication: the sessions (NULL until the mounts are up) and the config they run
	 * with (peers, listen: replaced by a reload). Readers (control requests, the journal
	 * hook) hold repl_lock for reading while they use either; start, stop and reload swap
	 * them under the write lock, and stop the old sessions after releasing it. */
	pthread_rwlock_t repl_lock;
	struct net_sessions *sessions;
	const struct config *pcfg;
	bool replicating; /* under repl_lock: every m->f[i].r is set and stays until false */
	pthread_t main_thread;
	bool foreground, debug, read_only;
	bool running; /* every folder mounted: a stop from now on is logged as one */
	int ready_fd; /* pipe to the parent waiting in `dfsr mount`; -1 when none */
	uint8_t sk[KEY_LEN];
	struct config **reloaded; /* configs applied by reloads; kept until exit (main only) */
	size_t nreloaded;
};

/* The folder named @name, or all (-1 in *idx) for NULL. Return: 0 or -ENOENT. */
static int member_pick(const struct member *m, const char *name, ssize_t *idx)
{
	*idx = -1;
	if (!name)
		return 0;
	for (size_t i = 0; i < m->n; i++) {
		if (!strcmp(m->f[i].cf->name, name)) {
			*idx = (ssize_t)i;
			return 0;
		}
	}
	return -ENOENT;
}

static bool picked(ssize_t idx, size_t i)
{
	return idx < 0 || (size_t)idx == i;
}

/* ---- DfsrPrivate usage (pool thread) ----------------------------------------------------- */

/* Bytes of regular files under @fd (taken, closed). Unreadable entries count as 0. */
static uint64_t dir_usage(int fd)
{
	DIR *d = fdopendir(fd);
	struct dirent *de;
	uint64_t sum = 0;

	if (!d) {
		close(fd);
		return 0;
	}
	while ((de = readdir(d))) {
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISREG(st.st_mode)) {
			sum += (uint64_t)st.st_size;
		} else if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd(d), de->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			if (sub >= 0)
				sum += dir_usage(sub);
		}
	}
	closedir(d);
	return sum;
}

static uint64_t usage_at(int root_fd, const char *abs, const char *rel)
{
	int fd = abs ? open(abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
		     : openat(root_fd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	return fd < 0 ? 0 : dir_usage(fd);
}

static void folder_usage(struct folder_rt *fr, uint64_t *staging, uint64_t *conflict)
{
	int64_t now = dfsr_mono_ns();

	pthread_mutex_lock(&fr->usage_lock);
	if (!fr->usage_at_ns || now - fr->usage_at_ns > USAGE_CACHE_NS) {
		fr->staging_used = usage_at(fr->root_fd, fr->cf->staging_path,
					    LAYOUT_PRIVATE "/" LAYOUT_STAGING);
		fr->conflict_used = usage_at(fr->root_fd, NULL, LAYOUT_PRIVATE "/" LAYOUT_CONFLICT);
		fr->usage_at_ns = now;
	}
	*staging = fr->staging_used;
	*conflict = fr->conflict_used;
	pthread_mutex_unlock(&fr->usage_lock);
}

/*
 * When the folder's initial sync started (for the rate of `dfsr status`'s bar): set when
 * replication starts in initial-sync, else when status first sees that state (a stale
 * folder syncing again); cleared once it is over. Return: mono ns, or 0.
 */
static int64_t sync_started(struct folder_rt *fr, enum journal_state state)
{
	int64_t t;

	pthread_mutex_lock(&fr->usage_lock);
	if (state != JOURNAL_STATE_INITIAL_SYNC)
		fr->sync_started_ns = 0;
	else if (!fr->sync_started_ns)
		fr->sync_started_ns = dfsr_mono_ns();
	t = fr->sync_started_ns;
	pthread_mutex_unlock(&fr->usage_lock);
	return t;
}

/* ---- status: one snapshot, rendered as JSON or as text --------------------------------- */

struct status_snap {
	const struct config_folder *cf;
	struct journal_status st;
	uint64_t staging_used, conflict_used;
	struct net_session_peer_status *peers; /* cfg->npeers; zero while not replicating */
	struct net_session_peer_status sync;   /* initial sync progress, summed over peers */
	int64_t sync_started_ns;               /* mono; 0 when not in initial sync */
};

static void status_build_counts(const struct status_snap *s, uint64_t v[4])
{
	/* While a scan runs its live counters; afterwards the finished build. */
	if (s->st.scanning) {
		v[0] = s->st.scan_files_done;
		v[1] = s->st.scan_bytes_done;
		v[2] = s->st.scan_files_total;
		v[3] = s->st.scan_bytes_total;
	} else {
		v[0] = v[2] = s->st.files + s->st.folders;
		v[1] = v[3] = s->st.bytes;
	}
}

static int status_json_peers(const struct config *cfg, const struct status_snap *s,
			     struct dfsr_buf *o)
{
	int rc = dfsr_buf_addf(o, "\"peers\": [");

	for (size_t i = 0; rc == 0 && i < cfg->npeers; i++) {
		const struct net_session_peer_status *p = &s->peers[i];

		rc = dfsr_buf_addf(o, "%s{\"name\": ", i ? ", " : "");
		if (rc == 0)
			rc = dfsr_json_str(o, cfg->peers[i].name);
		if (rc == 0)
			rc = dfsr_buf_addf(
				o,
				", \"connected\": %s, \"backlog_out\": %" PRIu64
				", \"backlog_in\": %" PRIu64 ", \"bytes_sent\": %" PRIu64
				", \"bytes_received\": %" PRIu64 ", \"transfers\": %" PRIu64
				", \"busy_serves\": %" PRIu64
				", \"initial_sync\": {\"files_done\": %" PRIu64
				", \"files_total\": %" PRIu64 ", \"bytes_done\": %" PRIu64
				", \"bytes_total\": %" PRIu64 "}}",
				p->connected ? "true" : "false", p->backlog_out, p->backlog_in,
				p->bytes_sent, p->bytes_received, p->transfers, p->busy_serves,
				p->files_done, p->files_total, p->bytes_done, p->bytes_total);
	}
	return rc ? rc : dfsr_buf_addf(o, "]");
}

static int status_json_folder(const struct config *cfg, const struct status_snap *s,
			      struct dfsr_buf *o)
{
	uint64_t b[4];
	int rc = dfsr_buf_addf(o, "{\"name\": ");

	status_build_counts(s, b);
	if (rc == 0)
		rc = dfsr_json_str(o, s->cf->name);
	if (rc == 0)
		rc = dfsr_buf_addf(
			o,
			", \"state\": \"%s\", \"files\": %" PRIu64 ", \"folders\": %" PRIu64
			", \"bytes\": %" PRIu64 ", \"journal\": %" PRIu64
			", \"tombstones\": %" PRIu64 ", \"scanning\": %s, \"stale\": %s"
			", \"staging\": {\"used\": %" PRIu64 ", \"quota\": %" PRIu64 "}"
			", \"conflict\": {\"used\": %" PRIu64 ", \"quota\": %" PRIu64 "}"
			", \"initial_build\": {\"files_done\": %" PRIu64
			", \"bytes_done\": %" PRIu64 ", \"files_total\": %" PRIu64
			", \"bytes_total\": %" PRIu64 "}"
			", \"initial_sync\": {\"files_done\": %" PRIu64
			", \"files_total\": %" PRIu64 ", \"bytes_done\": %" PRIu64
			", \"bytes_total\": %" PRIu64 "}, ",
			journal_state_name(s->st.state), s->st.files, s->st.folders, s->st.bytes,
			s->st.journal, s->st.tombstones, s->st.scanning ? "true" : "false",
			s->st.stale ? "true" : "false", s->staging_used, s->cf->staging_quota,
			s->conflict_used, s->cf->conflict_quota, b[0], b[1], b[2], b[3],
			s->sync.files_done, s->sync.files_total, s->sync.bytes_done,
			s->sync.bytes_total);
	if (rc == 0 && s->st.last_sync_ns) {
		char when[32];

		dfsr_time_iso(s->st.last_sync_ns, when, sizeof(when));
		rc = dfsr_buf_addf(o, "\"last_sync\": \"%s\", ", when);
	} else if (rc == 0) {
		rc = dfsr_buf_addf(o, "\"last_sync\": null, ");
	}
	if (rc == 0)
		rc = status_json_peers(cfg, s, o);
	return rc ? rc : dfsr_buf_addf(o, "}");
}

static int status_json(const struct config *cfg, const struct status_snap *v, size_t n,
		       struct dfsr_buf *o)
{
	int rc = dfsr_buf_addf(o, "{\"member\": ");

	if (rc == 0)
		rc = dfsr_json_str(o, cfg->member_name);
	if (rc == 0)
		rc = dfsr_buf_addf(o, ", \"pid\": %d, \"folders\": [", (int)getpid());
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (i)
			rc = dfsr_buf_addf(o, ", ");
		if (rc == 0)
			rc = status_json_folder(cfg, &v[i], o);
	}
	return rc ? rc : dfsr_buf_addf(o, "]}\n");
}

/* "5.0 MiB" */
static void human(uint64_t v, char *buf, size_t len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double d = (double)v;
	size_t u = 0;

	while (d >= 1024.0 && u + 1 < DFSR_ARRAY_SIZE(unit)) {
		d /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 " B", v);
	else
		snprintf(buf, len, "%.1f %s", d, unit[u]);
}

/*
 * Progress weighs a file as PROGRESS_FILE_COST bytes on top of its size: a tree of many
 * small files costs per file (a stat, a record), a few large ones per byte, and either
 * measure alone makes the bar jump.
 */
#define PROGRESS_FILE_COST 65536.0

/* What a progress bar shows: files and bytes done and in all, and seconds so far. */
struct progress {
	const char *what; /* "initial-build", "initial-sync" */
	uint64_t files_done, files_total, bytes_done, bytes_total;
	double secs;
};

/* "  WHAT: [#######.............]  35%  1200/3400 files  12.3 MiB/s  0:42 left" */
static int progress_bar(const struct progress *p, struct dfsr_buf *o)
{
	double secs = p->secs;
	double done = (double)p->bytes_done + PROGRESS_FILE_COST * (double)p->files_done;
	double total = (double)p->bytes_total + PROGRESS_FILE_COST * (double)p->files_total;
	double frac = total > 0.0 ? done / total : 0.0;
	double rate = secs > 0.0 ? (double)p->bytes_done / secs : 0.0;
	char bar[41], r[32], left[32] = "?";

	if (frac > 1.0)
		frac = 1.0;
	for (size_t i = 0; i < sizeof(bar) - 1; i++)
		bar[i] = (double)i < frac * (double)(sizeof(bar) - 1) ? '#' : '.';
	bar[sizeof(bar) - 1] = '\0';
	human((uint64_t)rate, r, sizeof(r));
	if (secs > 0.0 && done > 0.0 && total > 0.0) {
		uint64_t t = (uint64_t)((total - done) * secs / done);

		snprintf(left, sizeof(left), "%" PRIu64 ":%02" PRIu64, t / 60, t % 60);
	}
	return dfsr_buf_addf(o, "  %s: [%s] %3d%%  %" PRIu64 "/%" PRIu64 " files  %s/s  %s left\n",
			     p->what, bar, (int)(frac * 100.0), p->files_done, p->files_total, r,
			     left);
}

/* The initial build's (or a consistency scan's) bar. */
static int status_progress(const struct status_snap *s, struct dfsr_buf *o)
{
	const struct journal_status *st = &s->st;
	struct progress p = {
		.what = journal_state_name(st->state),
		.files_done = st->scan_files_done,
		.files_total = st->scan_files_total,
		.bytes_done = st->scan_bytes_done,
		.bytes_total = st->scan_bytes_total,
		.secs = (double)(dfsr_now_ns() - st->scan_started_ns) / 1e9,
	};

	return progress_bar(&p, o);
}

/* The line that explains a stale folder (docs/conflicts.md §12): what it waits for, and
 * the administrator's way out when no partner is normal. */
static int status_stale(const struct config_folder *cf, const struct journal_status *st,
			struct dfsr_buf *o)
{
	char when[32];

	dfsr_time_iso(st->last_sync_ns, when, sizeof(when));
	return dfsr_buf_addf(o,
			     "  stale: last sync %s, longer ago than tombstone_days = %" PRIu32
			     " (event 4012); syncing again from a normal partner (if none is, see "
			     "dfsr.conf(5), tombstone_days)\n",
			     when, cf->tombstone_days);
}

static int status_text_folder(const struct status_snap *s, bool tty, struct dfsr_buf *o)
{
	char b[32], su[32], sq[32], cu[32], cq[32];
	int rc;

	human(s->st.bytes, b, sizeof(b));
	human(s->staging_used, su, sizeof(su));
	human(s->cf->staging_quota, sq, sizeof(sq));
	human(s->conflict_used, cu, sizeof(cu));
	human(s->cf->conflict_quota, cq, sizeof(cq));
	rc = dfsr_buf_addf(o,
			   "%-16s %-13s %9" PRIu64 " %8" PRIu64 " %11s %8" PRIu64 " %10" PRIu64
			   "  %s / %s  %s / %s\n",
			   s->cf->name, journal_state_name(s->st.state), s->st.files, s->st.folders,
			   b, s->st.journal, s->st.tombstones, su, sq, cu, cq);
	if (rc == 0 && s->st.scanning && tty)
		rc = status_progress(s, o);
	else if (rc == 0 && s->st.scanning)
		rc = dfsr_buf_addf(o, "  scanning: %" PRIu64 "/%" PRIu64 " files\n",
				   s->st.scan_files_done, s->st.scan_files_total);
	if (rc == 0 && s->st.stale)
		rc = status_stale(s->cf, &s->st, o);
	return rc;
}

static int status_text_peers(const struct config *cfg, const struct status_snap *s, bool tty,
			     struct dfsr_buf *o)
{
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < cfg->npeers; i++) {
		const struct net_session_peer_status *p = &s->peers[i];
		char sent[32], recv[32];

		human(p->bytes_sent, sent, sizeof(sent));
		human(p->bytes_received, recv, sizeof(recv));
		if (!p->connected)
			rc = dfsr_buf_addf(o, "  peer %-12s %-22s not connected\n",
					   cfg->peers[i].name, cfg->peers[i].address.text);
		else
			rc = dfsr_buf_addf(o,
					   "  peer %-12s %-22s connected  backlog out %" PRIu64
					   " in %" PRIu64 "  sent %s  received %s\n",
					   cfg->peers[i].name, cfg->peers[i].address.text,
					   p->backlog_out, p->backlog_in, sent, recv);
	}
	if (rc == 0 && s->st.state == JOURNAL_STATE_INITIAL_SYNC && s->sync.files_total && tty) {
		struct progress p = {
			.what = "initial-sync",
			.files_done = s->sync.files_done,
			.files_total = s->sync.files_total,
			.bytes_done = s->sync.bytes_done,
			.bytes_total = s->sync.bytes_total,
			.secs = s->sync_started_ns
					? (double)(dfsr_mono_ns() - s->sync_started_ns) / 1e9
					: 0.0,
		};

		rc = progress_bar(&p, o);
	} else if (rc == 0 && s->st.state == JOURNAL_STATE_INITIAL_SYNC && s->sync.files_total) {
		rc = dfsr_buf_addf(o, "  initial sync: %" PRIu64 "/%" PRIu64 " files\n",
				   s->sync.files_done, s->sync.files_total);
	}
	return rc;
}

static int status_text(const struct config *cfg, const struct status_snap *v, size_t n, bool tty,
		       struct dfsr_buf *o)
{
	int rc = dfsr_buf_addf(o, "member %s (pid %d)\n", cfg->member_name, (int)getpid());

	if (rc == 0)
		rc = dfsr_buf_addf(o, "%-16s %-13s %9s %8s %11s %8s %10s  %s  %s\n", "FOLDER",
				   "STATE", "FILES", "FOLDERS", "BYTES", "JOURNAL", "TOMBSTONES",
				   "STAGING", "CONFLICT");
	for (size_t i = 0; rc == 0 && i < n; i++) {
		rc = status_text_folder(&v[i], tty, o);
		if (rc == 0)
			rc = status_text_peers(cfg, &v[i], tty, o);
	}
	return rc;
}

/* Partner figures of folder @i (zero while not replicating) and their initial-sync sum. */
static void status_peers(struct member *m, size_t i, struct status_snap *s)
{
	struct net_sessions *ns = m->sessions;

	memset(&s->sync, 0, sizeof(s->sync));
	if (!ns)
		return;
	net_sessions_status(ns, i, s->peers);
	for (size_t k = 0; k < m->pcfg->npeers; k++) {
		s->sync.files_done += s->peers[k].files_done;
		s->sync.files_total += s->peers[k].files_total;
		s->sync.bytes_done += s->peers[k].bytes_done;
		s->sync.bytes_total += s->peers[k].bytes_total;
	}
}

static int render_status(struct member *m, ssize_t idx, bool json, bool tty, struct dfsr_buf *o)
{
	size_t np = m->pcfg->npeers ? m->pcfg->npeers : 1;
	struct status_snap *v = calloc(m->n ? m->n : 1, sizeof(*v));
	struct net_session_peer_status *peers = calloc((m->n ? m->n : 1) * np, sizeof(*peers));
	size_t n = 0;
	int rc = -ENOMEM;

	if (!v || !peers)
		goto out_free;
	for (size_t i = 0; i < m->n; i++) {
		if (!picked(idx, i))
			continue;
		v[n].cf = m->f[i].cf;
		v[n].peers = peers + n * np;
		journal_get_status(m->f[i].j, &v[n].st);
		folder_usage(&m->f[i], &v[n].staging_used, &v[n].conflict_used);
		v[n].sync_started_ns = sync_started(&m->f[i], v[n].st.state);
		status_peers(m, i, &v[n]);
		n++;
	}
	rc = json ? status_json(m->pcfg, v, n, o) : status_text(m->pcfg, v, n, tty, o);
out_free:
	free(peers);
	free(v);
	return rc;
}

/*
 * What `dfsr wait` still waits for: one line per folder that is not normal or holds files
 * written through the mount and not journaled yet (fs_unsaved(): still open, or closed a
 * moment ago), and per connected partner with updates pending either way, transfers in
 * flight, or changes not settled yet (net_sessions_status(): unsettled); empty when in sync.
 */
static int render_pending(struct member *m, struct dfsr_buf *o)
{
	size_t np = m->pcfg->npeers ? m->pcfg->npeers : 1;
	struct status_snap s = { .peers = calloc(np, sizeof(*s.peers)) };
	int rc = s.peers ? 0 : -ENOMEM;

	for (size_t i = 0; i < m->n && rc == 0; i++) {
		journal_get_status(m->f[i].j, &s.st);
		if (s.st.state != JOURNAL_STATE_NORMAL)
			rc = dfsr_buf_addf(o, "folder %s is %s%s\n", m->f[i].cf->name,
					   journal_state_name(s.st.state),
					   s.st.stale ? " (stale: content too old, event 4012)"
						      : "");
		if (rc == 0 && m->f[i].fs && fs_unsaved(m->f[i].fs))
			rc = dfsr_buf_addf(o, "folder %s: files written and not closed yet\n",
					   m->f[i].cf->name);
		status_peers(m, i, &s);
		for (size_t k = 0; k < m->pcfg->npeers && rc == 0; k++) {
			const struct net_session_peer_status *p = &s.peers[k];

			if (p->connected &&
			    (p->backlog_out || p->backlog_in || p->transfers || p->unsettled))
				rc = dfsr_buf_addf(o,
						   "folder %s: peer %s: backlog out %" PRIu64
						   " in %" PRIu64 ", %" PRIu64 " transfers%s\n",
						   m->f[i].cf->name, m->pcfg->peers[k].name,
						   p->backlog_out, p->backlog_in, p->transfers,
						   p->unsettled ? ", changes being counted" : "");
		}
	}
	free(s.peers);
	return rc;
}

/* ---- control requests: one line of words ------------------------------------------------ */

struct request {
	const char *verb;
	bool json, tty;
	const char *folder;
	const char *peer;
	const char *kind; /* unpreserve: "conflict" or "preexisting" */
	char *name;       /* unpreserve: percent-decoded in place */
	char *dir;        /* clone-export: absolute path, percent-decoded in place */
	int64_t since;
	uint64_t from, list;
};

/* Request words are split at spaces: a value that may hold any byte travels as %XX. */
static void pct_encode(const char *in, char *out, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < len; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("._-{}~", *p)) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	out[o] = '\0';
}

/* Decodes in place. Return: 0, or -EINVAL for a bad escape or an encoded NUL. */
static int pct_decode(char *s)
{
	char *o = s;

	for (; *s; s++) {
		unsigned v;

		if (*s != '%') {
			*o++ = *s;
			continue;
		}
		if (sscanf(s + 1, "%2x", &v) != 1 || !isxdigit((unsigned char)s[1]) ||
		    !isxdigit((unsigned char)s[2]) || v == 0)
			return -EINVAL;
		*o++ = (char)v;
		s += 2;
	}
	*o = '\0';
	return 0;
}

/* ---- backlog: what a partner lacks, counted against the knowledge it acknowledged ------- */

struct bl_ctx {
	struct journal *j;
	struct dfsr_buf *o;
	bool json;
	size_t n;
};

static int bl_entry(void *arg, const struct record *r)
{
	struct bl_ctx *c = arg;
	char uid[DFSR_UID_HEX_LEN], db[DFSR_UID_HEX_LEN];
	struct dfsr_buf path;
	int rc;

	dfsr_buf_init(&path);
	if (r->tombstone || journal_path(c->j, &r->uid, &path) < 0) {
		path.len = 0;
		rc = dfsr_buf_addf(&path, "%s", r->name);
		if (rc < 0)
			goto out_release;
	}
	dfsr_uid_hex(&r->uid, uid);
	dfsr_uid_hex(&r->gvsn.db, db);
	if (c->json) {
		rc = dfsr_buf_addf(c->o, "%s{\"path\": ", c->n++ ? ", " : "");
		if (rc == 0)
			rc = dfsr_json_str(c->o, path.p);
		if (rc == 0)
			rc = dfsr_buf_addf(c->o,
					   ", \"uid\": \"%s\", \"gvsn\": \"%s-v%" PRIu64
					   "\", \"type\": \"%c\", \"deleted\": %s}",
					   uid, db, r->gvsn.counter, r->type,
					   r->tombstone ? "true" : "false");
	} else {
		rc = dfsr_buf_addf(c->o, "  ");
		if (rc == 0)
			rc = add_text(c->o, path.p);
		if (rc == 0)
			rc = dfsr_buf_addf(c->o, "%s  %s-v%" PRIu64 "\n",
					   r->tombstone ? " (deleted)" : "", db, r->gvsn.counter);
	}
out_release:
	dfsr_buf_release(&path);
	return rc;
}

static int render_backlog(struct member *m, ssize_t idx, const struct request *r,
			  struct dfsr_buf *o)
{
	struct net_sessions *ns = m->sessions;
	const struct config *pc = m->pcfg;
	size_t peer = pc->npeers;
	int rc = 0;

	for (size_t k = 0; k < pc->npeers; k++)
		if (!strcmp(pc->peers[k].name, r->peer))
			peer = k;
	if (peer == pc->npeers) {
		o->len = 0;
		return dfsr_buf_addf(o, "error no peer '%s' in this member\n", r->peer);
	}
	if (r->json)
		rc = dfsr_buf_addf(o, "{\"member\": \"%s\", \"peer\": \"%s\", \"folders\": [",
				   m->cfg.member_name, pc->peers[peer].name);
	for (size_t i = 0, n = 0; rc == 0 && i < m->n; i++) {
		struct version_vector pk;
		struct bl_ctx c = { .j = m->f[i].j, .o = o, .json = r->json };
		struct dfsr_buf list;
		struct dfsr_buf *main_o = o;
		uint64_t count = 0;

		if (!picked(idx, i))
			continue;
		version_vector_init(&pk);
		dfsr_buf_init(&list);
		c.o = &list;
		if (ns)
			rc = net_sessions_partner_knowledge(ns, i, peer, &pk);
		if (rc == 0)
			rc = outbound_backlog(m->f[i].j, &pk, &count, (size_t)r->list,
					      r->list ? bl_entry : NULL, &c);
		if (rc == 0 && r->json)
			rc = dfsr_buf_addf(
				main_o,
				"%s{\"name\": \"%s\", \"backlog\": %" PRIu64 ", \"updates\": [%s]}",
				n++ ? ", " : "", m->f[i].cf->name, count, list.len ? list.p : "");
		else if (rc == 0)
			rc = dfsr_buf_addf(main_o,
					   "%s: %" PRIu64 " updates not yet installed by %s\n%s",
					   m->f[i].cf->name, count, pc->peers[peer].name,
					   list.len ? list.p : "");
		dfsr_buf_release(&list);
		version_vector_release(&pk);
	}
	if (rc == 0 && r->json)
		rc = dfsr_buf_addf(o, "]}\n");
	return rc;
}

/* ---- events: gathered from every folder's log, merged by time --------------------------- */

struct ev_item {
	int64_t time_ns;
	size_t order; /* keeps the logs' own order for equal times */
	int id;
	char *folder;
	char *message;
};

struct ev_list {
	struct ev_item *v;
	size_t n, cap;
	const char *folder; /* the folder being read */
};

static int ev_collect(void *arg, const struct journal_event_info *e)
{
	struct ev_list *l = arg;
	struct ev_item *it;

	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		struct ev_item *v = reallocarray(l->v, cap, sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	it = &l->v[l->n];
	it->time_ns = e->time_ns;
	it->order = l->n;
	it->id = e->id;
	it->folder = strdup(e->folder ? e->folder : l->folder);
	it->message = strdup(e->message ? e->message : "");
	if (!it->folder || !it->message) {
		free(it->folder);
		free(it->message);
		return -ENOMEM;
	}
	l->n++;
	return 0;
}

static int cmp_ev(const void *a, const void *b)
{
	const struct ev_item *x = a, *y = b;

	if (x->time_ns != y->time_ns)
		return x->time_ns < y->time_ns ? -1 : 1;
	return x->order < y->order ? -1 : (x->order > y->order);
}

static int ev_render(const struct ev_list *l, bool json, struct dfsr_buf *o)
{
	char t[32];
	int rc = json ? dfsr_buf_addf(o, "[") : 0;

	for (size_t i = 0; rc == 0 && i < l->n; i++) {
		const struct ev_item *e = &l->v[i];

		dfsr_time_iso(e->time_ns, t, sizeof(t));
		if (!json) {
			rc = dfsr_buf_addf(o, "%s %d %s: %s\n", t, e->id, e->folder, e->message);
			continue;
		}
		rc = dfsr_buf_addf(o,
				   "%s{\"time\": \"%s\", \"id\": %d, \"folder\": ", i ? ", " : "",
				   t, e->id);
		if (rc == 0)
			rc = dfsr_json_str(o, e->folder);
		if (rc == 0)
			rc = dfsr_buf_addf(o, ", \"message\": ");
		if (rc == 0)
			rc = dfsr_json_str(o, e->message);
		if (rc == 0)
			rc = dfsr_buf_addf(o, "}");
	}
	return rc == 0 && json ? dfsr_buf_addf(o, "]\n") : rc;
}

static int render_events(struct member *m, ssize_t idx, int64_t since, bool json,
			 struct dfsr_buf *o)
{
	struct ev_list l = { 0 };
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < m->n; i++) {
		if (!picked(idx, i) || !m->f[i].j)
			continue;
		l.folder = m->f[i].cf->name;
		rc = journal_list_events(m->f[i].j, since, ev_collect, &l);
	}
	if (rc == 0) {
		if (l.n)
			qsort(l.v, l.n, sizeof(*l.v), cmp_ev);
		rc = ev_render(&l, json, o);
	}
	for (size_t i = 0; i < l.n; i++) {
		free(l.v[i].folder);
		free(l.v[i].message);
	}
	free(l.v);
	return rc;
}

/* ---- journal: the outbound journal of one folder ----------------------------------------- */

struct jl_ctx {
	struct dfsr_buf *o;
	bool json;
	size_t n;
};

static int jl_entry(void *arg, const struct journal_entry_info *e)
{
	struct jl_ctx *c = arg;
	char uid[DFSR_UID_HEX_LEN], db[DFSR_UID_HEX_LEN], t[32];
	int rc;

	if (!c->json) {
		rc = dfsr_buf_addf(c->o, "%" PRIu64 " %s %c ", e->seq, journal_op_name(e->op),
				   e->type);
		if (rc == 0)
			rc = add_text(c->o, e->path);
		return rc ? rc : dfsr_buf_addf(c->o, "\n");
	}
	dfsr_uid_hex(&e->uid, uid);
	dfsr_uid_hex(&e->gvsn_db, db);
	dfsr_time_iso(e->time_ns, t, sizeof(t));
	rc = dfsr_buf_addf(c->o,
			   "%s{\"seq\": %" PRIu64 ", \"op\": \"%s\", \"type\": \"%c\", \"path\": ",
			   c->n++ ? ", " : "", e->seq, journal_op_name(e->op), e->type);
	if (rc == 0)
		rc = dfsr_json_str(c->o, e->path);
	if (rc == 0)
		rc = dfsr_buf_addf(
			c->o, ", \"uid\": \"%s\", \"gvsn\": \"%s-v%" PRIu64 "\", \"time\": \"%s\"}",
			uid, db, e->gvsn_counter, t);
	return rc;
}

static int render_journal(struct journal *j, uint64_t from, uint64_t max, bool json,
			  struct dfsr_buf *o)
{
	struct jl_ctx c = { .o = o, .json = json };
	int rc = json ? dfsr_buf_addf(o, "[") : 0;

	if (rc == 0)
		rc = journal_list(j, from, (size_t)max, jl_entry, &c);
	return rc == 0 && json ? dfsr_buf_addf(o, "]\n") : rc;
}

/* ---- control requests (libuv thread pool) ------------------------------------------------- */

/*
 * A request is one line of words: a verb, then flags and key=value pairs:
 *   ping | stop | reload | status [json] [tty] [folder=N] | events [json] [folder=N]
 *   [since=NS] | journal [json] folder=N [from=SEQ] [list=N] | pending
 *   | backlog peer=P [json] [folder=N] [list=N]
 *   | unpreserve folder=N kind=conflict|preexisting name=PRESERVED (%XX-encoded)
 *   | clone-export [folder=N] dir=ABSPATH (%XX-encoded)
 */
enum {
	AFTER_STOP = 1,
	AFTER_RELOAD = 2
};

static int request_word(struct request *r, char *w)
{
	uint64_t v;

	if (!strcmp(w, "json"))
		r->json = true;
	else if (!strcmp(w, "tty"))
		r->tty = true;
	else if (!strncmp(w, "folder=", 7))
		r->folder = w + 7;
	else if (!strncmp(w, "peer=", 5))
		r->peer = w + 5;
	else if (!strncmp(w, "kind=", 5))
		r->kind = w + 5;
	else if (!strncmp(w, "name=", 5) && pct_decode(w + 5) == 0)
		r->name = w + 5;
	else if (!strncmp(w, "dir=", 4) && pct_decode(w + 4) == 0)
		r->dir = w + 4;
	else if (!strncmp(w, "since=", 6) && parse_u64(w + 6, &v) == 0 && v <= INT64_MAX)
		r->since = (int64_t)v;
	else if (!strncmp(w, "from=", 5) && parse_u64(w + 5, &v) == 0)
		r->from = v;
	else if (!strncmp(w, "list=", 5) && parse_u64(w + 5, &v) == 0)
		r->list = v;
	else
		return -EINVAL;
	return 0;
}

/* Splits @line in place. Return: 0 or -EINVAL. */
static int request_parse(char *line, struct request *r)
{
	char *save = NULL, *w;

	memset(r, 0, sizeof(*r));
	r->verb = strtok_r(line, " ", &save);
	if (!r->verb)
		return -EINVAL;
	while ((w = strtok_r(NULL, " ", &save)))
		if (request_word(r, w) < 0)
			return -EINVAL;
	return 0;
}

/* @s with control characters as '?' (a name in a one-line error), at most @len - 1 bytes. */
static const char *printable(const char *s, char *out, size_t len)
{
	size_t i = 0;

	for (; s[i] && i + 1 < len; i++)
		out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	out[i] = '\0';
	return out;
}

/*
 * unpreserve: `dfsr restore` put a preserved object back; remove it and its manifest entry
 * (replica_unpreserve(), under the journal's lock). The name is untrusted.
 */
static int run_unpreserve(struct member *m, ssize_t idx, const struct request *r,
			  struct dfsr_buf *o)
{
	enum manifest_kind kind;
	struct folder_rt *fr;
	const char *store;
	char name[3 * 255 + 1];
	int rc;

	if (idx < 0 || !r->kind || !r->name)
		return -EINVAL;
	if (!strcmp(r->kind, "conflict"))
		kind = MANIFEST_CONFLICT;
	else if (!strcmp(r->kind, "preexisting"))
		kind = MANIFEST_PREEXISTING;
	else
		return -EINVAL;
	fr = &m->f[idx];
	store = kind == MANIFEST_CONFLICT ? LAYOUT_CONFLICT : LAYOUT_PREEXISTING;
	printable(r->name, name, sizeof(name));
	o->len = 0;
	/* repl_lock is held for reading: fr->r stays while m->replicating */
	if (!m->replicating || !fr->r)
		return dfsr_buf_addf(o, "error folder %s: not replicating yet; try again\n",
				     fr->cf->name);
	rc = replica_unpreserve(fr->r, kind, r->name);
	pthread_mutex_lock(&fr->usage_lock);
	fr->usage_at_ns = 0; /* `dfsr status` counts again */
	pthread_mutex_unlock(&fr->usage_lock);
	if (rc == 0)
		return dfsr_buf_addf(o, "ok\n");
	if (rc == -EINVAL)
		return dfsr_buf_addf(o,
				     "error '%s' is not a preserved name (one name: not empty, "
				     "no '/', not '.' or '..')\n",
				     name);
	if (rc == -ENOENT)
		return dfsr_buf_addf(o, "error no '%s' in the %s manifest of folder %s\n", name,
				     store, fr->cf->name);
	return dfsr_buf_addf(o, "error folder %s: removing %s/%s: %s\n", fr->cf->name, store, name,
			     dfsr_strerror(rc));
}

/*
 * clone-export: a consistent copy of a folder's database into an absolute directory, made
 * by this member (it holds the database open), core/clone.h.
 */
static int run_clone_export(struct member *m, ssize_t idx, const struct request *r,
			    struct dfsr_buf *o)
{
	char err[CLONE_ERR_LEN], guid[DFSR_UID_GUID_LEN];
	struct folder_rt *fr;
	struct clone_info ci;
	enum journal_state st;
	int rc;

	if (!r->dir)
		return -EINVAL;
	o->len = 0;
	if (idx < 0 && m->n != 1)
		return dfsr_buf_addf(o, "error name the folder to export (--folder)\n");
	fr = &m->f[idx < 0 ? 0 : idx];
	st = journal_state(fr->j);
	if (st != JOURNAL_STATE_NORMAL)
		return dfsr_buf_addf(o,
				     "error folder %s is %s: export the database of a member "
				     "whose folder is normal\n",
				     fr->cf->name, journal_state_name(st));
	rc = clone_export(fr->j, m->cfg.member_name, r->dir, &ci, err);
	if (rc < 0)
		return dfsr_buf_addf(o, "error folder %s: clone export: %s\n", fr->cf->name, err);
	dfsr_uid_guid(&ci.db_id, guid);
	return dfsr_buf_addf(o,
			     "ok\nexported folder %s of member %s to %s: %" PRIu64
			     " records (%" PRIu64 " files, %" PRIu64 " folders, %" PRIu64
			     " tombstones), database {%s}\n",
			     fr->cf->name, m->cfg.member_name, r->dir, ci.records, ci.files,
			     ci.folders, ci.tombstones, guid);
}

static int request_run(struct member *m, const struct request *r, ssize_t idx,
		       struct dfsr_buf *reply)
{
	if (!strcmp(r->verb, "ping"))
		return dfsr_buf_addf(reply, "pid %d\n", (int)getpid());
	if (!strcmp(r->verb, "stop"))
		return AFTER_STOP;
	if (!strcmp(r->verb, "reload"))
		return AFTER_RELOAD;
	if (!strcmp(r->verb, "status"))
		return render_status(m, idx, r->json, r->tty, reply);
	if (!strcmp(r->verb, "pending"))
		return render_pending(m, reply);
	if (!strcmp(r->verb, "backlog") && r->peer)
		return render_backlog(m, idx, r, reply);
	if (!strcmp(r->verb, "events"))
		return render_events(m, idx, r->since, r->json, reply);
	if (!strcmp(r->verb, "journal") && (idx >= 0 || m->n == 1))
		return render_journal(m->f[idx < 0 ? 0 : idx].j, r->from, r->list, r->json, reply);
	if (!strcmp(r->verb, "unpreserve"))
		return run_unpreserve(m, idx, r, reply);
	if (!strcmp(r->verb, "clone-export"))
		return run_clone_export(m, idx, r, reply);
	return -EINVAL;
}

static int control_handle(void *arg, const char *line, struct dfsr_buf *reply)
{
	struct member *m = arg;
	struct request r;
	char *copy = strdup(line);
	ssize_t idx = -1;
	int rc;

	if (!copy)
		return -ENOMEM;
	rc = request_parse(copy, &r);
	if (rc == 0 && member_pick(m, r.folder, &idx) < 0) {
		rc = dfsr_buf_addf(reply, "error no folder '%s' in this member\n", r.folder);
		goto out_free;
	}
	if (rc == 0)
		rc = dfsr_buf_addf(reply, "ok\n");
	if (rc == 0) {
		pthread_rwlock_rdlock(&m->repl_lock);
		rc = request_run(m, &r, idx, reply);
		pthread_rwlock_unlock(&m->repl_lock);
	}
	if (rc == -EINVAL) {
		reply->len = 0;
		rc = dfsr_buf_addf(reply, "error bad request '%s'\n", line);
	}
out_free:
	free(copy);
	return rc;
}

static void control_after(void *arg, int what)
{
	struct member *m = arg;

	/* SIGTERM, not SIGUSR1: it also ends an initial build (member_scan_killable()). */
	pthread_kill(m->main_thread, what == AFTER_STOP ? SIGTERM : SIGHUP);
}

/* ---- the member: start-up ------------------------------------------------------------------ */

static int member_fail(struct member *m, const char *fmt, ...) DFSR_PRINTF(2, 3);

/*
 * A start-up error: one line, to the parent waiting in `dfsr mount` when detached, else to
 * stderr. Return: 1.
 */
static int member_fail(struct member *m, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (m->ready_fd < 0)
		return dfsr_err("%s", line);
	dprintf(m->ready_fd, "E%s\n", line);
	close(m->ready_fd);
	m->ready_fd = -1;
	return 1;
}

static int folder_open(struct member *m, struct folder_rt *fr)
{
	char err[JOURNAL_ERR_LEN];
	struct journal_opts o = { .cfg = &m->cfg, .folder = fr->cf, .read_only = m->read_only };
	int rc;

	fr->root_fd = open(fr->cf->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fr->root_fd < 0)
		return member_fail(m, "folder %s: local path %s: %s", fr->cf->name, fr->cf->path,
				   strerror(errno));
	o.root_fd = fr->root_fd;
	if (!m->read_only && layout_prepare(fr->root_fd, err) < 0)
		return member_fail(m, "folder %s: %s", fr->cf->name, err);
	rc = journal_open(&o, &fr->j, err);
	if (rc == -EBUSY)
		return member_fail(
			m,
			"folder %s: database %s/" LAYOUT_PRIVATE
			"/db is in use by another dfsr process (one member per local path)",
			fr->cf->name, fr->cf->path);
	if (rc == -ENOENT && m->read_only)
		return member_fail(m, "folder %s: no database yet (the member never started)",
				   fr->cf->name);
	if (rc < 0)
		return member_fail(m, "folder %s: %s", fr->cf->name, err);
	return 0;
}

/* Fills m->f from the config and opens the folder @idx, or all (-1). Return: 0 or 1. */
static int member_open(struct member *m, ssize_t idx)
{
	m->pcfg = &m->cfg;
	pthread_rwlock_init(&m->repl_lock, NULL);
	m->f = calloc(m->cfg.nfolders, sizeof(*m->f));
	if (!m->f)
		return member_fail(m, "out of memory");
	m->n = m->cfg.nfolders;
	for (size_t i = 0; i < m->n; i++) {
		m->f[i].m = m;
		m->f[i].cf = &m->cfg.folders[i];
		m->f[i].root_fd = -1;
		m->f[i].index = i;
		pthread_mutex_init(&m->f[i].usage_lock, NULL);
	}
	for (size_t i = 0; i < m->n; i++)
		if (picked(idx, i) && folder_open(m, &m->f[i]))
			return 1;
	return 0;
}

/* Closes what member_open() opened (databases last). NULL-safe per folder. */
static void member_close(struct member *m)
{
	for (size_t i = 0; i < m->n; i++) {
		struct folder_rt *fr = &m->f[i];

		if (fr->j && m->running)
			journal_event(fr->j, EV_MEMBER_STOPPED, "pid=%d", (int)getpid());
		journal_close(fr->j);
		if (fr->root_fd >= 0)
			close(fr->root_fd);
		pthread_mutex_destroy(&fr->usage_lock);
	}
	free(m->f);
	m->f = NULL;
	m->n = 0;
	pthread_rwlock_destroy(&m->repl_lock);
}

static int member_scan(struct member *m)
{
	for (size_t i = 0; i < m->n; i++) {
		struct folder_rt *fr = &m->f[i];
		bool unclean = journal_was_unclean(fr->j);
		int rc;

		journal_event(fr->j, EV_MEMBER_STARTED, "pid=%d", (int)getpid());
		if (unclean)
			journal_event(fr->j, EV_UNCLEAN_STOP, NULL);
		rc = scan_folder(fr->j, NULL);
		if (rc < 0)
			return member_fail(m, "folder %s: scan of %s failed: %s", fr->cf->name,
					   fr->cf->path, dfsr_strerror(rc));
		if (unclean)
			journal_event(fr->j, EV_RECOVERED, NULL);
		/* §12: tombstones past their lifetime go; content that old must not replicate */
		if (m->cfg.npeers && !m->read_only) {
			rc = journal_tombstone_care(fr->j, fr->cf->tombstone_days);
			if (rc < 0)
				return member_fail(m, "folder %s: tombstone lifetime: %s",
						   fr->cf->name, dfsr_strerror(rc));
		}
	}
	return 0;
}

static int member_start_control(struct member *m)
{
	struct net_control_opts o = {
		.path = m->cfg.control_path,
		.handle = control_handle,
		.after = control_after,
		.arg = m,
	};
	int rc = net_loop_new(&m->loop);

	if (rc == 0)
		rc = net_loop_start(m->loop);
	if (rc == 0)
		rc = net_control_start(m->loop, &o, &m->ctl);
	if (rc < 0)
		return member_fail(m, "control socket %s: %s", m->cfg.control_path,
				   dfsr_strerror(rc));
	return 0;
}

static void *folder_main(void *arg)
{
	struct folder_rt *fr = arg;
	int rc = fs_run(fr->fs);

	if (rc < 0)
		journal_event(fr->j, EV_FATAL, "mount=%s error=%s", fr->cf->mount,
			      dfsr_strerror(rc));
	/* Any mount that ends stops the member (CONTRACT.md: fusermount3 -u stops cleanly). */
	pthread_kill(fr->m->main_thread, SIGUSR1);
	return NULL;
}

static int member_mount(struct member *m)
{
	for (size_t i = 0; i < m->n; i++) {
		struct folder_rt *fr = &m->f[i];
		struct fs_opts o = { .journal = fr->j,
				     .folder = fr->cf,
				     .root_fd = fr->root_fd,
				     .debug = m->debug };
		char err[FS_ERR_LEN];
		int rc = fs_new(&o, &fr->fs, err);

		if (rc < 0)
			return member_fail(m, "folder %s: mount on %s: %s", fr->cf->name,
					   fr->cf->mount, err);
		journal_event(fr->j, EV_MOUNTED, "mount=%s", fr->cf->mount);
	}
	for (size_t i = 0; i < m->n; i++) {
		struct folder_rt *fr = &m->f[i];
		int rc = pthread_create(&fr->thread, NULL, folder_main, fr);

		if (rc != 0)
			return member_fail(m, "cannot start a thread: %s", strerror(rc));
		fr->thread_started = true;
	}
	return 0;
}

/* ---- replication: staging, the downstream side, sessions ---------------------------------- */

/* The replica's view of the mount: installs invalidate the kernel's caches. */
static void repl_invalidate(void *arg, const struct stat *parent, const char *name,
			    const struct stat *obj)
{
	struct folder_rt *fr = arg;

	if (fr->fs)
		fs_invalidate(fr->fs, parent, name, obj);
}

/* An install must not replace a file an application is writing (conflicts.md §8). */
static bool repl_busy(void *arg, const struct stat *st)
{
	struct folder_rt *fr = arg;

	return fr->fs && fs_busy(fr->fs, st);
}

/* A file moved into ConflictAndDeleted or PreExisting: no writer through its old node. */
static void repl_preserved(void *arg, const struct stat *st)
{
	struct folder_rt *fr = arg;

	if (fr->fs)
		fs_preserved(fr->fs, st);
}

static void repl_adopted(void *arg, const struct stat *st, const struct dfsr_uid *old,
			 const struct dfsr_uid *uid)
{
	struct folder_rt *fr = arg;

	if (fr->fs)
		fs_adopted(fr->fs, st, old, uid);
}

/* The journal grew: the sessions send the new updates. Thread: any. */
static void repl_changed(void *arg)
{
	struct folder_rt *fr = arg;
	struct member *m = fr->m;

	pthread_rwlock_rdlock(&m->repl_lock);
	if (m->sessions)
		net_sessions_wake(m->sessions, fr->index);
	pthread_rwlock_unlock(&m->repl_lock);
}

/* The staging quota events (4202-4208) go to the folder's event log, as every folder event. */
static void stage_event(void *arg, enum dfsr_event ev, const char *details)
{
	struct folder_rt *fr = arg;

	journal_event(fr->j, ev, "%s", details);
}

static int folder_open_staging(struct member *m, struct folder_rt *fr)
{
	const struct config_folder *cf = fr->cf;
	struct stage_opts so = { .quota = cf->staging_quota,
				 .event_fn = stage_event,
				 .event_arg = fr };
	struct stat sd, sr;
	int dir, rc;

	if (cf->staging_path)
		dir = open(cf->staging_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	else
		dir = openat(fr->root_fd, LAYOUT_PRIVATE "/" LAYOUT_STAGING,
			     O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dir < 0)
		return member_fail(m, "folder %s: staging directory %s: %s", cf->name,
				   cf->staging_path ? cf->staging_path : "DfsrPrivate/Staging",
				   strerror(errno));
	so.dir_fd = dir;
	/* staging on the local path's disk leaves the database its reserve */
	if (fstat(dir, &sd) == 0 && fstat(fr->root_fd, &sr) == 0 && sd.st_dev == sr.st_dev)
		so.space = journal_space(fr->j);
	rc = stage_open(&so, &fr->stage);
	close(dir);
	if (rc < 0)
		return member_fail(m, "folder %s: staging: %s", cf->name, dfsr_strerror(rc));
	return 0;
}

/*
 * Starts sessions with @cfg's listener and peers. A member without partners listens to
 * nobody (*@out stays NULL): the listener only ever admits configured peers.
 * Return: 0 or -errno.
 */
static int sessions_start(struct member *m, const struct config *cfg, struct net_sessions **out)
{
	struct net_session_folder *sf;
	struct net_sessions_opts so = {
		.loop = m->loop, .cfg = cfg, .secret_key = m->sk, .nfolders = m->n
	};
	int rc;

	*out = NULL;
	if (cfg->npeers == 0)
		return 0;
	sf = calloc(m->n, sizeof(*sf));
	if (!sf)
		return -ENOMEM;
	so.folders = sf;
	for (size_t i = 0; i < m->n; i++)
		sf[i] = (struct net_session_folder){ .name = m->f[i].cf->name,
						     .j = m->f[i].j,
						     .r = m->f[i].r,
						     .stage = m->f[i].stage,
						     .read_only = m->f[i].cf->read_only,
						     .tombstone_days = m->f[i].cf->tombstone_days };
	rc = net_sessions_start(&so, out);
	free(sf);
	return rc;
}

/* Makes @s (running with @cfg) the member's sessions; returns the previous ones. */
static struct net_sessions *sessions_swap(struct member *m, struct net_sessions *s,
					  const struct config *cfg)
{
	struct net_sessions *old;

	pthread_rwlock_wrlock(&m->repl_lock);
	old = m->sessions;
	m->sessions = s;
	m->pcfg = cfg;
	pthread_rwlock_unlock(&m->repl_lock);
	return old;
}

/*
 * After the mounts: staging and the replica of every folder, then the listener, the dialers
 * and the sessions. A read-only member (commands) never gets here.
 */
static int member_start_replication(struct member *m)
{
	struct net_sessions *s = NULL;
	int rc = 0;

	for (size_t i = 0; i < m->n; i++) {
		struct folder_rt *fr = &m->f[i];
		struct replica_opts ro = {
			.j = fr->j,
			.invalidate = repl_invalidate,
			.busy = repl_busy,
			.preserved = repl_preserved,
			.adopted = repl_adopted,
			.arg = fr,
		};

		if (folder_open_staging(m, fr))
			return 1;
		ro.stage = fr->stage;
		rc = replica_new(&ro, &fr->r);
		if (rc < 0)
			return member_fail(m, "folder %s: replication: %s", fr->cf->name,
					   dfsr_strerror(rc));
		if (journal_state(fr->j) == JOURNAL_STATE_INITIAL_SYNC) {
			(void)sync_started(fr, JOURNAL_STATE_INITIAL_SYNC);
			journal_event(fr->j, EV_INITIAL_SYNC_STARTED, "peers=%zu", m->cfg.npeers);
		}
	}
	rc = sessions_start(m, &m->cfg, &s);
	if (rc < 0)
		return member_fail(m, "listen on %s: %s", m->cfg.listen.text, dfsr_strerror(rc));
	sessions_swap(m, s, &m->cfg);
	pthread_rwlock_wrlock(&m->repl_lock);
	m->replicating = true;
	pthread_rwlock_unlock(&m->repl_lock);
	for (size_t i = 0; i < m->n; i++) {
		journal_set_changed(m->f[i].j, repl_changed, &m->f[i]);
		repl_changed(&m->f[i]); /* changes made before the sessions existed */
	}
	return 0;
}

/*
 * A reload changed the partners or the listener: every connection is closed and the
 * sessions start again with @nc (which the member keeps alive until exit).
 * Return: 0, or -errno (then the old sessions are gone: the member runs without partners
 * until the next reload or restart, and says so in the reload event).
 */
static int member_restart_sessions(struct member *m, const struct config *nc)
{
	struct net_sessions *s = NULL;
	int rc;

	net_sessions_stop(sessions_swap(m, NULL, m->pcfg));
	rc = sessions_start(m, nc, &s);
	sessions_swap(m, rc < 0 ? NULL : s, nc);
	for (size_t i = 0; rc == 0 && i < m->n; i++)
		repl_changed(&m->f[i]);
	return rc;
}

/* Sessions first (no install runs after this), then the replicas and staging. */
static void member_stop_replication(struct member *m)
{
	struct net_sessions *s = sessions_swap(m, NULL, m->pcfg);

	pthread_rwlock_wrlock(&m->repl_lock);
	m->replicating = false; /* no control request uses a replica from now on */
	pthread_rwlock_unlock(&m->repl_lock);
	for (size_t i = 0; i < m->n; i++)
		if (m->f[i].j)
			journal_set_changed(m->f[i].j, NULL, NULL);
	net_sessions_stop(s);
	for (size_t i = 0; i < m->n; i++) {
		replica_free(m->f[i].r);
		m->f[i].r = NULL;
		stage_close(m->f[i].stage);
		m->f[i].stage = NULL;
	}
}

/* Tell the waiting parent that every folder is mounted, then leave the terminal. */
static void member_ready(struct member *m)
{
	int null;

	if (m->ready_fd < 0)
		return;
	if (dfsr_write_all(m->ready_fd, "OK\n", 3) < 0) {
		/* The parent is gone; nothing else to tell. */
	}
	close(m->ready_fd);
	m->ready_fd = -1;
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		close(null);
	}
}

/* Unmount, stop the loop, close the databases: in that order, whatever was started. */
static void member_stop(struct member *m)
{
	member_stop_replication(m);
	for (size_t i = 0; i < m->n; i++)
		if (m->f[i].fs)
			fs_stop(m->f[i].fs);
	for (size_t i = 0; i < m->n; i++) {
		struct folder_rt *fr = &m->f[i];

		if (fr->thread_started)
			pthread_join(fr->thread, NULL);
		fr->thread_started = false;
		if (fr->fs) {
			fs_free(fr->fs);
			fr->fs = NULL;
			journal_event(fr->j, EV_UNMOUNTED, "mount=%s", fr->cf->mount);
		}
	}
	net_control_stop(m->ctl);
	m->ctl = NULL;
	net_loop_free(m->loop);
	m->loop = NULL;
	member_close(m);
}

/* ---- reload (SIGHUP) ------------------------------------------------------------------------ */

static int changed(struct dfsr_buf *b, bool differs, const char *what)
{
	return differs ? dfsr_buf_addf(b, "%s%s", b->len ? "," : "", what) : 0;
}

enum folder_change {
	FOLDER_CHANGED_PATH = 1u << 0,    /* path or mount: needs a restart */
	FOLDER_CHANGED_QUOTA = 1u << 1,   /* applied live */
	FOLDER_CHANGED_FILTER = 1u << 2,  /* applied live */
	FOLDER_CHANGED_OPTIONS = 1u << 3, /* primary, read_only, tombstone_days: a restart */
};

static unsigned folder_diff(const struct config_folder *a, const struct config_folder *b)
{
	unsigned d = 0;

	if (strcmp(a->path, b->path) || strcmp(a->mount, b->mount))
		d |= FOLDER_CHANGED_PATH;
	if (a->staging_quota != b->staging_quota || a->conflict_quota != b->conflict_quota)
		d |= FOLDER_CHANGED_QUOTA;
	if (strcmp(a->file_filter_text, b->file_filter_text) ||
	    strcmp(a->subfolder_filter_text, b->subfolder_filter_text))
		d |= FOLDER_CHANGED_FILTER;
	if (a->primary != b->primary || a->read_only != b->read_only ||
	    a->tombstone_days != b->tombstone_days)
		d |= FOLDER_CHANGED_OPTIONS;
	return d;
}

/* True if partners were added, removed or changed (address, key, bandwidth). */
static bool peers_differ(const struct config *a, const struct config *b)
{
	if (a->npeers != b->npeers)
		return true;
	for (size_t i = 0; i < a->npeers; i++) {
		const struct config_peer *p = &a->peers[i], *q = &b->peers[i];

		if (strcmp(p->name, q->name) || strcmp(p->address.text, q->address.text) ||
		    sodium_memcmp(p->public_key, q->public_key, sizeof(p->public_key)) != 0 ||
		    p->bandwidth != q->bandwidth)
			return true;
	}
	return false;
}

/*
 * A folder whose quotas or filters changed takes its new settings at once (the journal and
 * the status read them through one atomic pointer). Changed partners, bandwidths or listen
 * address restart the sessions (every connection is redialled). Other changes (member,
 * folders added or removed, paths, primary, read_only) need a restart; the event names
 * them.
 * Return: true if @nc was applied to at least one folder (the member then keeps it).
 */
static bool reload_apply(struct member *m, const struct config *nc, struct dfsr_buf *applied,
			 struct dfsr_buf *deferred)
{
	bool used = false;

	changed(deferred,
		strcmp(nc->member_name, m->cfg.member_name) ||
			strcmp(nc->control_path, m->cfg.control_path) ||
			strcmp(nc->key_path, m->cfg.key_path),
		"member");
	if (peers_differ(m->pcfg, nc) || strcmp(m->pcfg->listen.text, nc->listen.text)) {
		bool same_member = !strcmp(nc->member_name, m->cfg.member_name) &&
				   !strcmp(nc->key_path, m->cfg.key_path);

		if (same_member && m->running) {
			/* the sessions borrow @nc from now on, even if they failed to start */
			used = true;
			if (member_restart_sessions(m, nc) == 0)
				changed(applied, true, "peers");
			else
				changed(deferred, true, "peers(listen-failed)");
		} else {
			changed(deferred, true, "peers");
		}
	}
	changed(deferred, nc->nfolders != m->cfg.nfolders, "folders");
	for (size_t i = 0; i < m->n; i++) {
		const struct config_folder *cur = m->f[i].cf;
		const struct config_folder *nf = config_folder(nc, cur->name);
		unsigned d;

		if (!nf) {
			changed(deferred, true, "folders");
			continue;
		}
		d = folder_diff(cur, nf);
		changed(deferred, d & FOLDER_CHANGED_PATH, "path");
		changed(deferred, d & FOLDER_CHANGED_OPTIONS, "folder-options");
		if ((d & (FOLDER_CHANGED_QUOTA | FOLDER_CHANGED_FILTER)) &&
		    !(d & FOLDER_CHANGED_PATH)) {
			journal_set_folder(m->f[i].j, nf);
			m->f[i].cf = nf;
			/* the staging area keeps its own copy of the quota */
			if ((d & FOLDER_CHANGED_QUOTA) && m->f[i].stage &&
			    cur->staging_quota != nf->staging_quota)
				(void)stage_set_quota(m->f[i].stage, nf->staging_quota);
			used = true;
			changed(applied, d & FOLDER_CHANGED_QUOTA, "quota");
			changed(applied, d & FOLDER_CHANGED_FILTER, "filter");
		}
	}
	return used;
}

/* Reads the config again and applies what can be applied live (reload_apply()). */
static void member_reload(struct member *m, const char *path)
{
	char err[CONFIG_ERR_LEN];
	struct dfsr_buf applied, deferred;
	struct config *nc = calloc(1, sizeof(*nc));
	struct config **keep;

	if (!nc || config_load(nc, path, err) < 0) {
		for (size_t i = 0; i < m->n; i++)
			journal_event(m->f[i].j, EV_RELOADED, "result=rejected error=\"%s\"",
				      nc ? err : "out of memory");
		free(nc);
		return;
	}
	dfsr_buf_init(&applied);
	dfsr_buf_init(&deferred);
	keep = realloc(m->reloaded, (m->nreloaded + 1) * sizeof(*keep));
	if (keep)
		m->reloaded = keep;
	if (keep && reload_apply(m, nc, &applied, &deferred)) {
		m->reloaded[m->nreloaded++] = nc;
		nc = NULL;
	}
	for (size_t i = 0; i < m->n; i++)
		journal_event(m->f[i].j, EV_RELOADED, "result=%s applied=%s deferred-to-restart=%s",
			      applied.len || deferred.len ? "changed" : "unchanged",
			      applied.len ? applied.p : "none", deferred.len ? deferred.p : "none");
	dfsr_buf_release(&applied);
	dfsr_buf_release(&deferred);
	if (nc)
		config_release(nc);
	free(nc);
}

/* Frees the configs that reloads applied (after every thread stopped). */
static void member_release_reloaded(struct member *m)
{
	for (size_t i = 0; i < m->nreloaded; i++) {
		config_release(m->reloaded[i]);
		free(m->reloaded[i]);
	}
	free(m->reloaded);
	m->reloaded = NULL;
	m->nreloaded = 0;
}

/* ---- the member: run ------------------------------------------------------------------------ */

/* Waits for SIGTERM/SIGINT/SIGUSR1 (stop) while SIGHUP reloads. */
static void member_wait(struct member *m, const char *conf)
{
	sigset_t set;
	int sig = 0;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig != SIGHUP)
			return;
		member_reload(m, conf);
	}
}

/*
 * The scan cannot be interrupted, and an initial build may take long: while it runs,
 * SIGTERM and SIGINT keep their default action on the main thread (every other thread
 * blocks them), so `dfsr umount`, Ctrl-C or a service manager can still stop the member.
 * That stop is unclean, which is safe: every record is committed in atomic batches and the
 * next start logs 2212 and scans again. Nothing is mounted yet, so nothing is left behind
 * but the control socket file, which the next start replaces.
 */
static int member_scan_killable(struct member *m)
{
	sigset_t stop;
	int rc;

	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_UNBLOCK, &stop, NULL);
	rc = member_scan(m);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	return rc;
}

/*
 * The filesystem keeps an O_PATH descriptor for every inode the kernel remembers, so a tree
 * of 100,000 files walked by `find` needs as many. Raise the limit as far as the kernel
 * allows (fs.nr_open), or at least to the hard limit, before any thread starts.
 */
static void raise_fd_limit(void)
{
	struct rlimit rl = { 0 };
	unsigned long nr_open = 0;
	FILE *f = fopen("/proc/sys/fs/nr_open", "re");

	if (f) {
		if (fscanf(f, "%lu", &nr_open) != 1)
			nr_open = 0;
		fclose(f);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (nr_open > rl.rlim_max) {
		struct rlimit want = { .rlim_cur = nr_open, .rlim_max = nr_open };

		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			return;
	}
	rl.rlim_cur = rl.rlim_max;
	(void)setrlimit(RLIMIT_NOFILE, &rl);
}

/* The member from the first database open to the clean stop. Return: exit code. */
static int member_run(struct member *m, const char *conf)
{
	sigset_t all;
	int rc;

	raise_fd_limit();
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL); /* every thread inherits it */
	m->main_thread = pthread_self();
	rc = member_open(m, -1);
	if (rc == 0)
		rc = member_start_control(m);
	if (rc == 0)
		rc = member_scan_killable(m);
	if (rc == 0)
		rc = member_mount(m);
	if (rc == 0)
		rc = member_start_replication(m);
	if (rc == 0) {
		m->running = true;
		member_ready(m);
		member_wait(m, conf);
	}
	member_stop(m);
	net_loop_shutdown(); /* the process ends here: libuv's pool threads end first */
	return rc;
}

/* ---- dfsr mount ------------------------------------------------------------------------------ */

static bool dir_is_empty(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	bool empty = true;

	if (!d)
		return false;
	while (empty && (de = readdir(d)))
		empty = !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..");
	closedir(d);
	return empty;
}

static bool is_mounted(const char *path)
{
	struct statfs sf;
	struct stat st, up;
	char *parent = NULL;
	bool mounted;

	if (statfs(path, &sf) == 0 && sf.f_type == FUSE_SUPER_MAGIC)
		return true;
	if (asprintf(&parent, "%s/..", path) < 0)
		return false;
	mounted = stat(path, &st) == 0 && stat(parent, &up) == 0 &&
		  (st.st_dev != up.st_dev || st.st_ino == up.st_ino);
	free(parent);
	return mounted;
}

/*
 * A FUSE mount whose daemon died (kill -9, a crash) answers ENOTCONN until it is
 * unmounted. It is ours and dead: detach it, so that a restart after a crash just works.
 */
static void clear_dead_mount(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0 && errno == ENOTCONN)
		umount2(path, MNT_DETACH);
}

static int check_folder_paths(const struct config_folder *f)
{
	struct stat st;

	clear_dead_mount(f->mount);
	if (stat(f->path, &st) < 0)
		return dfsr_err("folder %s: local path %s: %s", f->name, f->path, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return dfsr_err("folder %s: local path %s is not a directory", f->name, f->path);
	if (!strcmp(f->mount, f->path)) {
		struct statfs sf;

		/* The local path may be a file system of its own; only a FUSE mount is wrong. */
		if (statfs(f->path, &sf) == 0 && sf.f_type == FUSE_SUPER_MAGIC)
			return dfsr_err("folder %s: %s is already mounted", f->name, f->path);
		return 0;
	}
	if (stat(f->mount, &st) < 0)
		return dfsr_err("folder %s: mount point %s: %s", f->name, f->mount,
				strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return dfsr_err("folder %s: mount point %s is not a directory", f->name, f->mount);
	if (is_mounted(f->mount))
		return dfsr_err("folder %s: mount point %s is already mounted", f->name, f->mount);
	if (!dir_is_empty(f->mount))
		return dfsr_err("folder %s: mount point %s is not empty", f->name, f->mount);
	return 0;
}

/*
 * member_ping() - Ask the member at cfg->control_path whether it runs, and its pid.
 * Every command that needs to know goes through here, and reports a failure with
 * member_err(), so "not running" is said only when no member runs.
 * Return: 0 and *@pid when it answered within @timeout_ms; DFSR_ENOTRUNNING when no
 * member runs (no socket file, or nothing listens on it); -ETIMEDOUT when something holds
 * the socket but does not answer in time (a member that hangs, is stopped, or is
 * overloaded); -EBADMSG for a reply without a pid; another -errno (-EACCES...).
 */
static int member_ping(const struct config *cfg, int timeout_ms, pid_t *pid)
{
	struct dfsr_buf r;
	int p = 0, rc;

	dfsr_buf_init(&r);
	rc = net_control_request(cfg->control_path, "ping", timeout_ms, &r);
	if (rc == 0 && (sscanf(r.p, "pid %d", &p) != 1 || p <= 0))
		rc = -EBADMSG;
	dfsr_buf_release(&r);
	if (rc == 0)
		*pid = p;
	return rc;
}

/*
 * member_err() - The one-line error for a request to the member that failed with @rc
 * (net_control_request(), member_ping()): not running (DFSR_ENOTRUNNING), does not answer
 * within @timeout_ms (-ETIMEDOUT: with what to look at and how to stop it by hand), the
 * member's own error text (-EREMOTEIO, in @r), or the error.
 * Return: 1, the exit status (dfsr_err()).
 */
static int member_err(const struct config *cfg, int rc, const struct dfsr_buf *r, int timeout_ms)
{
	if (rc == DFSR_ENOTRUNNING)
		return dfsr_err("member %s is not running", cfg->member_name);
	if (rc == -ETIMEDOUT)
		return dfsr_err(
			"member %s does not answer on %s (nothing within %d s): it may be "
			"hung, stopped or overloaded; see its events (journalctl -u dfsr); "
			"if it stays so, kill it and unmount its folders (fusermount3 -u MOUNT)",
			cfg->member_name, cfg->control_path, (timeout_ms + 999) / 1000);
	if (rc == -EREMOTEIO && r && r->p)
		return dfsr_err("member %s: %s", cfg->member_name, r->p);
	return dfsr_err("member %s: %s", cfg->member_name, dfsr_strerror(rc));
}

/* The checks that need nothing but reading (config, key, running, paths). Return: 0 or 1. */
static int mount_precheck(struct member *m, const char *conf)
{
	char err[CONFIG_ERR_LEN];
	pid_t pid;
	int rc;

	if (config_load(&m->cfg, conf, err) < 0)
		return dfsr_err("%s", err);
	if (key_load(m->cfg.key_path, true, m->sk))
		return 1;
	/* Before the mount points: a running member's mounts would be reported as busy. One
	 * that does not answer runs too: its control socket is not ours to replace. */
	rc = member_ping(&m->cfg, PING_TIMEOUT_MS, &pid);
	if (rc == 0)
		return dfsr_err("member %s is already running (pid %d)", m->cfg.member_name,
				(int)pid);
	if (rc == -ETIMEDOUT)
		return member_err(&m->cfg, rc, NULL, PING_TIMEOUT_MS);
	for (size_t i = 0; i < m->cfg.nfolders; i++)
		if (check_folder_paths(&m->cfg.folders[i]))
			return 1;
	return 0;
}

/* Parent side of a detached mount: the child's one line, "OK" or "E<error>". */
static int mount_wait_child(const struct config *cfg, int rfd, pid_t child)
{
	char line[1100];
	size_t len = 0;
	ssize_t n;

	while (len < sizeof(line) - 1 && (n = read(rfd, line + len, sizeof(line) - 1 - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		len += (size_t)n;
		if (memchr(line, '\n', len))
			break;
	}
	line[len] = '\0';
	line[strcspn(line, "\n")] = '\0';
	if (strcmp(line, "OK") != 0) {
		int status = 0;

		waitpid(child, &status, 0);
		if (line[0] == 'E')
			return dfsr_err("%s", line + 1);
		if (WIFSIGNALED(status))
			return dfsr_err("member %s was stopped during start-up (%s)",
					cfg->member_name, strsignal(WTERMSIG(status)));
		return dfsr_err("member %s exited during start-up", cfg->member_name);
	}
	/* Ready means every mount answers: a statfs that the FUSE file system itself serves. */
	for (size_t i = 0; i < cfg->nfolders; i++) {
		struct statfs sf;

		if (statfs(cfg->folders[i].mount, &sf) < 0 || sf.f_type != FUSE_SUPER_MAGIC)
			return dfsr_err("folder %s: %s does not answer after mounting",
					cfg->folders[i].name, cfg->folders[i].mount);
	}
	return 0;
}

static int mount_detached(struct member *m, const char *conf)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return dfsr_err("pipe: %s", strerror(errno));
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return dfsr_err("fork: %s", strerror(errno));
	if (pid > 0) {
		close(p[1]);
		int rc = mount_wait_child(&m->cfg, p[0], pid);

		close(p[0]);
		return rc;
	}
	close(p[0]);
	m->ready_fd = p[1];
	setsid();
	if (chdir("/") < 0) {
		/* keep the old directory; every path of the config is absolute */
	}
	return member_run(m, conf); /* the child: cleans up in cmd_mount() */
}

static int cmd_mount(struct cli *c)
{
	struct member m = { .ready_fd = -1, .foreground = c->foreground, .debug = c->debug };
	char *conf = realpath(c->config, NULL);
	int rc;

	rc = mount_precheck(&m, c->config);
	if (rc == 0 && !conf)
		rc = dfsr_err("%s: %s", c->config, strerror(errno));
	if (rc == 0) {
		event_init("dfsr", c->foreground);
		rc = c->foreground ? member_run(&m, conf) : mount_detached(&m, conf);
	}
	sodium_memzero(m.sk, sizeof(m.sk));
	member_release_reloaded(&m);
	config_release(&m.cfg);
	free(conf);
	return rc;
}

/* ---- client commands --------------------------------------------------------------------------
 */

static int client_config(const struct cli *c, struct config *cfg)
{
	char err[CONFIG_ERR_LEN];

	if (config_load(cfg, c->config, err) < 0)
		return dfsr_err("%s", err);
	if (c->folder && !config_folder(cfg, c->folder)) {
		dfsr_err("no folder '%s' in %s", c->folder, c->config);
		config_release(cfg);
		return 1;
	}
	return 0;
}

/*
 * Sends @req to the member and prints the payload on stdout.
 * Return: 0, 1 after printing an error, or DFSR_ENOTRUNNING (nothing printed) when
 * @quiet_not_running.
 */
static int client_ask(const struct config *cfg, const char *req, bool quiet_not_running)
{
	struct dfsr_buf r;
	int rc;

	dfsr_buf_init(&r);
	rc = net_control_request(cfg->control_path, req, CONTROL_TIMEOUT_MS, &r);
	if (rc == 0 && r.len)
		fwrite(r.p, 1, r.len, stdout);
	if (rc == 0 || (rc == DFSR_ENOTRUNNING && quiet_not_running))
		; /* nothing to report */
	else
		rc = member_err(cfg, rc, &r, CONTROL_TIMEOUT_MS);
	dfsr_buf_release(&r);
	if (rc == 0 && fflush(stdout) != 0)
		rc = dfsr_err("writing the output: %s", strerror(errno));
	return rc;
}

static bool pid_alive(pid_t pid)
{
	char path[64], buf[512];
	FILE *f;
	char *p;
	bool alive;

	if (kill(pid, 0) < 0 && errno == ESRCH)
		return false;
	/* A zombie nobody reaped yet has stopped too. */
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	alive = fgets(buf, sizeof(buf), f) != NULL;
	fclose(f);
	p = alive ? strrchr(buf, ')') : NULL;
	return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

static int cmd_umount(struct cli *c)
{
	struct config cfg;
	int64_t deadline = dfsr_mono_ns() + STOP_TIMEOUT_S * 1000000000LL;
	pid_t pid = 0, again;
	int rc;

	if (client_config(c, &cfg))
		return 1;
	rc = member_ping(&cfg, PING_TIMEOUT_MS, &pid);
	rc = rc == 0 ? client_ask(&cfg, "stop", false)
		     : member_err(&cfg, rc, NULL, PING_TIMEOUT_MS);
	while (rc == 0 && (member_ping(&cfg, PING_TIMEOUT_MS, &again) == 0 || pid_alive(pid))) {
		if (dfsr_mono_ns() > deadline) {
			rc = dfsr_err("member %s (pid %d) did not stop within %d s",
				      cfg.member_name, (int)pid, STOP_TIMEOUT_S);
			break;
		}
		struct timespec ts = { 0, 20 * 1000000 };

		nanosleep(&ts, NULL); /* polling a process we cannot wait for */
	}
	config_release(&cfg);
	return rc;
}

static int cmd_reload(struct cli *c)
{
	struct config cfg;
	int rc;

	if (client_config(c, &cfg))
		return 1;
	rc = client_ask(&cfg, "reload", false);
	config_release(&cfg);
	return rc;
}

/* "2026-11-21T10:00:00Z", "2026-11-21" (UTC), or "10s", "10m", "2h", "3d" ago. */
static int parse_since(const char *s, int64_t *out)
{
	static const struct {
		char unit;
		int64_t ns;
	} rel[] = { { 's', 1000000000LL },
		    { 'm', 60000000000LL },
		    { 'h', 3600000000000LL },
		    { 'd', 86400000000000LL } };

	size_t len = strlen(s);
	struct tm tm;
	const char *end;

	for (size_t i = 0; len > 1 && i < DFSR_ARRAY_SIZE(rel); i++) {
		char num[32];
		uint64_t v;

		if (s[len - 1] != rel[i].unit || len >= sizeof(num))
			continue;
		memcpy(num, s, len - 1);
		num[len - 1] = '\0';
		if (parse_u64(num, &v) < 0 || v > (uint64_t)(INT64_MAX / rel[i].ns))
			return -EINVAL;
		*out = dfsr_now_ns() - (int64_t)v * rel[i].ns;
		return 0;
	}
	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (!end || *end) {
		memset(&tm, 0, sizeof(tm));
		end = strptime(s, "%Y-%m-%d", &tm);
	}
	if (!end || *end)
		return -EINVAL;
	*out = (int64_t)timegm(&tm) * 1000000000LL;
	return 0;
}

/* events/journal without a running member: read the databases directly, read-only. */
static int offline_render(struct cli *c, struct config *cfg, const struct request *r)
{
	struct member m = { .ready_fd = -1, .read_only = true };
	struct dfsr_buf o;
	ssize_t idx = -1;
	int rc;

	m.cfg = *cfg; /* borrowed: released by the caller */
	for (size_t i = 0; c->folder && i < cfg->nfolders; i++)
		if (!strcmp(cfg->folders[i].name, c->folder))
			idx = (ssize_t)i;
	dfsr_buf_init(&o);
	rc = member_open(&m, idx);
	if (rc == 0 && !strcmp(r->verb, "events"))
		rc = render_events(&m, idx, r->since, r->json, &o);
	else if (rc == 0)
		rc = render_journal(m.f[idx < 0 ? 0 : idx].j, r->from, r->list, r->json, &o);
	if (rc < 0)
		rc = dfsr_err("%s: %s", r->verb, dfsr_strerror(rc));
	if (rc == 0 && o.len)
		fwrite(o.p, 1, o.len, stdout);
	dfsr_buf_release(&o);
	member_close(&m);
	return rc;
}

static int cmd_events(struct cli *c)
{
	struct request r = { .verb = "events", .json = c->json };
	struct config cfg;
	char req[256];
	int rc;

	if (c->since && parse_since(c->since, &r.since) < 0)
		return dfsr_err("--since '%s': use 2026-11-21T10:00:00Z, 2026-11-21, 10m, 2h or 3d",
				c->since);
	if (client_config(c, &cfg))
		return 1;
	snprintf(req, sizeof(req), "events%s since=%" PRId64 "%s%s", c->json ? " json" : "",
		 r.since < 0 ? 0 : r.since, c->folder ? " folder=" : "",
		 c->folder ? c->folder : "");
	rc = client_ask(&cfg, req, true);
	if (rc == DFSR_ENOTRUNNING)
		rc = offline_render(c, &cfg, &r);
	config_release(&cfg);
	return rc;
}

static int cmd_journal(struct cli *c)
{
	struct request r = { .verb = "journal", .json = c->json, .from = c->from, .list = c->list };
	struct config cfg;
	char req[256];
	int rc;

	if (client_config(c, &cfg))
		return 1;
	if (!c->folder && cfg.nfolders > 1) {
		config_release(&cfg);
		return dfsr_err("%s has several folders: use --folder NAME", c->config);
	}
	snprintf(req, sizeof(req), "journal%s from=%" PRIu64 " list=%" PRIu64 " folder=%s",
		 c->json ? " json" : "", c->from, c->list,
		 c->folder ? c->folder : cfg.folders[0].name);
	rc = client_ask(&cfg, req, true);
	if (rc == DFSR_ENOTRUNNING)
		rc = offline_render(c, &cfg, &r);
	config_release(&cfg);
	return rc;
}

static int cmd_status(struct cli *c)
{
	bool tty = isatty(STDOUT_FILENO);
	struct config cfg;
	char req[256];
	int rc;

	if (client_config(c, &cfg))
		return 1;
	snprintf(req, sizeof(req), "status%s%s%s%s", c->json ? " json" : "", tty ? " tty" : "",
		 c->folder ? " folder=" : "", c->folder ? c->folder : "");
	for (;;) {
		if (c->watch && tty)
			fputs("\033[H\033[2J", stdout); /* home, clear: redraw in place */
		rc = client_ask(&cfg, req, false);
		if (rc != 0 || !c->watch)
			break;
		struct timespec ts = { 1, 0 };

		nanosleep(&ts, NULL); /* --watch: once a second until SIGINT */
	}
	config_release(&cfg);
	return rc;
}

/* ---- dfsr conflicts: the manifests, read directly (no member needed) ------------------------- */

struct mf_ctx {
	struct dfsr_buf *o;
	const char *folder;
	bool json;
	size_t n;
};

static int mf_entry(void *arg, const struct manifest_entry *e)
{
	struct mf_ctx *c = arg;
	char t[32], uid[DFSR_UID_HEX_LEN], db[DFSR_UID_HEX_LEN];
	int rc;

	dfsr_time_iso(e->time_ns, t, sizeof(t));
	if (!c->json) {
		rc = dfsr_buf_addf(c->o, "%s %s %s: ", t, manifest_type_name(e->type), c->folder);
		if (rc == 0)
			rc = add_text(c->o, e->path);
		if (rc == 0)
			rc = dfsr_buf_addf(c->o, " -> ");
		if (rc == 0)
			rc = add_text(c->o, e->preserved);
		return rc ? rc : dfsr_buf_addf(c->o, " (%" PRIu64 " bytes)\n", e->size);
	}
	dfsr_uid_hex(&e->uid, uid);
	dfsr_uid_hex(&e->gvsn_db, db);
	rc = dfsr_buf_addf(c->o, "%s{\"time\": \"%s\", \"type\": \"%s\", \"folder\": ",
			   c->n++ ? ", " : "", t, manifest_type_name(e->type));
	if (rc == 0)
		rc = dfsr_json_str(c->o, c->folder);
	if (rc == 0)
		rc = dfsr_buf_addf(c->o, ", \"path\": ");
	if (rc == 0)
		rc = dfsr_json_str(c->o, e->path);
	if (rc == 0)
		rc = dfsr_buf_addf(c->o, ", \"preserved\": ");
	if (rc == 0)
		rc = dfsr_json_str(c->o, e->preserved);
	if (rc == 0)
		rc = dfsr_buf_addf(c->o,
				   ", \"uid\": \"%s\", \"gvsn\": \"%s-v%" PRIu64
				   "\", \"size\": %" PRIu64 "}",
				   uid, db, e->gvsn_counter, e->size);
	return rc;
}

/* One folder's manifest. A folder that never started has none: nothing to list. */
static int manifest_render(const struct config_folder *f, enum manifest_kind kind, struct mf_ctx *c)
{
	int root = open(f->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	int priv, rc;

	if (root < 0)
		return -errno;
	priv = openat(root, LAYOUT_PRIVATE, O_PATH | O_DIRECTORY | O_CLOEXEC);
	close(root);
	if (priv < 0)
		return errno == ENOENT ? 0 : -errno;
	c->folder = f->name;
	rc = manifest_list(priv, kind, mf_entry, c);
	close(priv);
	return rc == -ENOENT ? 0 : rc;
}

static int cmd_conflicts(struct cli *c)
{
	enum manifest_kind kind = c->preexisting ? MANIFEST_PREEXISTING : MANIFEST_CONFLICT;
	struct dfsr_buf o;
	struct mf_ctx mc = { .o = &o, .json = c->json };
	struct config cfg;
	int rc = 0;

	if (client_config(c, &cfg))
		return 1;
	dfsr_buf_init(&o);
	if (c->json)
		rc = dfsr_buf_addf(&o, "[");
	for (size_t i = 0; rc == 0 && i < cfg.nfolders; i++)
		if (!c->folder || !strcmp(c->folder, cfg.folders[i].name))
			rc = manifest_render(&cfg.folders[i], kind, &mc);
	if (rc == 0 && c->json)
		rc = dfsr_buf_addf(&o, "]\n");
	if (rc < 0)
		rc = dfsr_err("reading the manifest: %s", dfsr_strerror(rc));
	else if (o.len)
		fwrite(o.p, 1, o.len, stdout);
	dfsr_buf_release(&o);
	config_release(&cfg);
	return rc;
}

/* Polls the member's "pending" list until it is empty or the deadline passes. */
static int cmd_wait(struct cli *c)
{
	int64_t deadline = dfsr_mono_ns() + (int64_t)c->timeout * 1000000000;
	struct config cfg;
	struct dfsr_buf r;
	int rc;

	if (client_config(c, &cfg))
		return 1;
	dfsr_buf_init(&r);
	for (;;) {
		int64_t left = (deadline - dfsr_mono_ns()) / 1000000;
		/* With --timeout, a member that does not answer is not waited for longer (at
		 * least a second: a busy member may take that long to answer). */
		int ms = !c->timeout || left >= CONTROL_TIMEOUT_MS ? CONTROL_TIMEOUT_MS
			 : left < 1000                             ? 1000
								   : (int)left;

		dfsr_buf_release(&r);
		rc = net_control_request(cfg.control_path, "pending", ms, &r);
		if (rc < 0) {
			rc = member_err(&cfg, rc, &r, ms);
			break;
		}
		if (r.len == 0)
			break; /* in sync */
		if (c->timeout && dfsr_mono_ns() >= deadline) {
			r.p[strcspn(r.p, "\n")] = '\0';
			rc = dfsr_err("timed out after %" PRIu64 " s: %s", c->timeout, r.p);
			break;
		}
		struct timespec ts = { 0, 100000000 };

		nanosleep(&ts, NULL); /* a 100 ms poll: the member pushes nothing to us */
	}
	dfsr_buf_release(&r);
	config_release(&cfg);
	return rc;
}

static int cmd_backlog(struct cli *c)
{
	struct config cfg;
	char req[512];
	int rc;

	if (!c->peer)
		return cli_usage_error(c, "backlog: --peer NAME is required");
	if (!*c->peer || strpbrk(c->peer, " \t\n"))
		return dfsr_err("backlog: bad peer name '%s'", c->peer);
	if (client_config(c, &cfg))
		return 1;
	snprintf(req, sizeof(req), "backlog peer=%s list=%" PRIu64 "%s%s%s", c->peer, c->list,
		 c->json ? " json" : "", c->folder ? " folder=" : "", c->folder ? c->folder : "");
	rc = client_ask(&cfg, req, false);
	config_release(&cfg);
	return rc;
}

/* ---- dfsr restore: preserved objects back through the mount ------------------------------- */

struct rs_entry {
	char *path;
	char *preserved;
};

struct rs_list {
	struct rs_entry *v;
	size_t n, cap;
};

static int rs_collect(void *arg, const struct manifest_entry *e)
{
	struct rs_list *l = arg;

	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		struct rs_entry *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n].path = strdup(e->path);
	l->v[l->n].preserved = strdup(e->preserved);
	if (!l->v[l->n].path || !l->v[l->n].preserved) {
		free(l->v[l->n].path);
		free(l->v[l->n].preserved);
		return -ENOMEM;
	}
	l->n++;
	return 0;
}

static void rs_list_release(struct rs_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].path);
		free(l->v[i].preserved);
	}
	free(l->v);
}

/* Copies the xattrs of @src to @dst (both real descriptors), skipping dfsr's own. */
static int copy_xattrs(int src, int dst)
{
	char names[65536];
	ssize_t n = flistxattr(src, names, sizeof(names));

	if (n < 0)
		return errno == ENOTSUP ? 0 : -errno;
	for (char *p = names; p < names + n; p += strlen(p) + 1) {
		uint8_t val[HASH_XATTR_MAX];
		ssize_t v;

		if (hash_xattr_excluded(p))
			continue;
		v = fgetxattr(src, p, val, sizeof(val));
		if (v < 0 || fsetxattr(dst, p, val, (size_t)v, 0) < 0)
			return -errno;
	}
	return 0;
}

/* Owner, mode, xattrs and times of @st onto the open object @fd. */
static int copy_meta(int src, int fd, const struct stat *st)
{
	struct timespec t[2] = { st->st_atim, st->st_mtim };
	int rc = 0;

	if (fchown(fd, st->st_uid, st->st_gid) < 0 || fchmod(fd, st->st_mode & 07777) < 0)
		rc = -errno;
	if (rc == 0)
		rc = copy_xattrs(src, fd);
	if (rc == 0 && futimens(fd, t) < 0)
		rc = -errno;
	return rc;
}

static int copy_obj(int sdir, const char *sname, int ddir, const char *dname);

static int copy_dir_entries(int src, int dst)
{
	int fd = dup(src);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	int rc = 0;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	while (rc == 0 && (de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			rc = copy_obj(src, de->d_name, dst, de->d_name);
	closedir(d);
	return rc;
}

/* Copies one object (recursively for a directory); the target must not exist. */
static int copy_obj(int sdir, const char *sname, int ddir, const char *dname)
{
	struct stat st;
	int src = -1, dst = -1, rc = 0;

	if (fstatat(sdir, sname, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlinkat(sdir, sname, target, sizeof(target) - 1);

		if (n < 0)
			return -errno;
		target[n] = '\0';
		if (symlinkat(target, ddir, dname) < 0 ||
		    fchownat(ddir, dname, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
		return 0;
	}
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
		return -EINVAL;
	src = openat(sdir, sname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (src < 0)
		return -errno;
	if (S_ISDIR(st.st_mode)) {
		if (mkdirat(ddir, dname, 0700) < 0)
			rc = -errno;
		else
			dst = openat(ddir, dname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (rc == 0 && dst < 0)
			rc = -errno;
		if (rc == 0)
			rc = copy_dir_entries(src, dst);
	} else {
		dst = openat(ddir, dname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			     0600);
		if (dst < 0)
			rc = -errno;
		if (rc == 0)
			rc = dfsr_copy_data(src, dst); /* into the mount: read and write */
	}
	if (rc == 0)
		rc = copy_meta(src, dst, &st);
	if (dst >= 0 && close(dst) < 0 && rc == 0)
		rc = -errno;
	close(src);
	return rc;
}

/*
 * Opens (making what is missing, mode 0755) the directories of relative path @rel below
 * @base, and points *@leaf at its last component. Components "", "." and ".." are refused.
 * Return: a descriptor of the parent directory, or -errno.
 */
static int open_parents(int base, char *rel, char **leaf)
{
	int fd = dup(base);
	char *save = NULL, *c = strtok_r(rel, "/", &save), *next;

	for (; fd >= 0 && c; c = next) {
		int sub;

		if (!strcmp(c, ".") || !strcmp(c, "..")) {
			close(fd);
			return -EINVAL;
		}
		next = strtok_r(NULL, "/", &save);
		if (!next) {
			*leaf = c;
			return fd;
		}
		if (mkdirat(fd, c, 0755) < 0 && errno != EEXIST) {
			sub = -errno;
			close(fd);
			return sub;
		}
		sub = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(fd);
		fd = sub;
	}
	if (fd >= 0)
		close(fd);
	return fd < 0 ? -errno : -EINVAL;
}

/* True if an entry newer than l->v[k] (later in the manifest) has the same original path. */
static bool rs_newer_same_path(const struct rs_list *l, size_t k)
{
	for (size_t i = k + 1; i < l->n; i++)
		if (!strcmp(l->v[i].path, l->v[k].path))
			return true;
	return false;
}

/*
 * Is l->v[k] to be restored? A preserved name picks its entry; an original path (and --all)
 * the newest entry of that path only: the older ones are reported as kept (*older). @hit
 * marks the ENTRY arguments that matched something.
 */
static bool rs_selected(const struct cli *c, const struct rs_list *l, size_t k, bool *hit,
			bool *older)
{
	const struct rs_entry *e = &l->v[k];
	bool by_name = false, by_path = false;

	*older = false;
	if (c->all) {
		by_path = true;
	} else {
		for (int i = 0; i < c->argc; i++) {
			if (!strcmp(c->argv[i], e->preserved)) {
				hit[i] = by_name = true;
			} else if (!strcmp(c->argv[i], e->path)) {
				hit[i] = true;
				by_path = true;
			}
		}
	}
	if (by_name)
		return true;
	if (by_path && rs_newer_same_path(l, k)) {
		*older = true;
		return false;
	}
	return by_path;
}

/* member_ping() with the time of a request. */
static int member_answers(const struct config *cfg)
{
	pid_t pid;

	return member_ping(cfg, CONTROL_TIMEOUT_MS, &pid);
}

/*
 * Restores one entry of folder @f into @dest (the mount, or --to DIR when @to_dir).
 * Return: 0 or -errno.
 */
static int rs_one(const struct config_folder *f, int store, int dest, bool to_dir,
		  const struct rs_entry *e)
{
	char *rel = strdup(e->path), *leaf = NULL;
	int parent, rc;

	if (!rel)
		return -ENOMEM;
	/* the manifest is not trusted either: the preserved name must be one component */
	if (!record_name_valid(e->preserved)) {
		free(rel);
		dfsr_err("restore: %s/%s: bad preserved name in the manifest", f->name, e->path);
		return -EINVAL;
	}
	parent = open_parents(dest, rel, &leaf);
	rc = parent < 0 ? parent : copy_obj(store, e->preserved, parent, leaf);
	if (rc == -EEXIST) {
		/* nothing of ours is there: the name was taken before we started */
		dfsr_err("restore: %s/%s exists%s; not overwritten%s", f->name, e->path,
			 to_dir ? " in the --to directory" : "", to_dir ? "" : " (use --to DIR)");
	} else if (rc < 0) {
		/* no half-restored object: what was copied goes again */
		if (parent >= 0)
			(void)dfsr_remove_tree(parent, leaf);
		dfsr_err("restore: %s/%s from %s: %s", f->name, e->path, e->preserved,
			 dfsr_strerror(rc));
	} else {
		printf("restored %s/%s from %s\n", f->name, e->path, e->preserved);
	}
	if (parent >= 0)
		close(parent);
	free(rel);
	return rc;
}

static int rs_folder(struct cli *c, const struct config *cfg, const struct config_folder *f,
		     bool *hit, size_t *matched)
{
	enum manifest_kind kind = c->preexisting ? MANIFEST_PREEXISTING : MANIFEST_CONFLICT;
	const char *store_name = c->preexisting ? LAYOUT_PRIVATE "/" LAYOUT_PREEXISTING
						: LAYOUT_PRIVATE "/" LAYOUT_CONFLICT;
	const char *dest_name = c->to ? c->to : f->mount;
	int root = -1, priv = -1, store = -1, dest = -1;
	struct rs_list l = { 0 };
	int rc = 0, failed = 0, ping;

	/* each open is checked at once, so the message names what is missing and why */
	root = open(f->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0) {
		rc = dfsr_err("restore: folder %s: local path %s: %s", f->name, f->path,
			      strerror(errno));
		goto out_close;
	}
	priv = openat(root, LAYOUT_PRIVATE, O_PATH | O_DIRECTORY | O_CLOEXEC);
	store = priv < 0 ? -1 : openat(root, store_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (store < 0 && errno == ENOENT) {
		/* never started: nothing was ever preserved (entries are reported by the caller) */
		rc = 0;
		goto out_close;
	}
	if (store < 0) {
		rc = dfsr_err("restore: folder %s: %s/%s: %s", f->name, f->path, store_name,
			      strerror(errno));
		goto out_close;
	}
	dest = open(dest_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dest < 0) {
		rc = dfsr_err("restore: folder %s: %s: %s", f->name, dest_name, strerror(errno));
		goto out_close;
	}
	rc = manifest_list(priv, kind, rs_collect, &l);
	if (rc < 0 && rc != -ENOENT) {
		rc = dfsr_err("restore: folder %s: manifest: %s", f->name, dfsr_strerror(rc));
		goto out_close;
	}
	rc = 0;
	/* newest first: a path's newest version wins, and a directory preserved whole comes
	 * back before the files deleted from it earlier go back into it */
	for (size_t i = l.n; i-- > 0;) {
		char req[1024], name[3 * 255 + 1];
		bool older;

		if (!rs_selected(c, &l, i, hit, &older)) {
			if (older)
				printf("kept %s: a newer entry of %s/%s is restored instead\n",
				       l.v[i].preserved, f->name, l.v[i].path);
			continue;
		}
		(*matched)++;
		if (rs_one(f, store, dest, c->to != NULL, &l.v[i]) < 0) {
			failed = 1;
			continue;
		}
		if (c->copy)
			continue;
		/* The member removes the preserved copy and its manifest entry (DfsrPrivate is
		 * read-only through the mount, and the manifest is the member's to write). */
		pct_encode(l.v[i].preserved, name, sizeof(name));
		snprintf(req, sizeof(req), "unpreserve folder=%s kind=%s name=%s", f->name,
			 c->preexisting ? "preexisting" : "conflict", name);
		ping = member_answers(cfg);
		if (ping == DFSR_ENOTRUNNING)
			printf("kept %s in DfsrPrivate (member %s is not running)\n",
			       l.v[i].preserved, cfg->member_name);
		else if (ping < 0)
			failed = member_err(cfg, ping, NULL, CONTROL_TIMEOUT_MS);
		else if (client_ask(cfg, req, false) != 0)
			failed = 1;
	}
out_close:
	rs_list_release(&l);
	if (dest >= 0)
		close(dest);
	if (store >= 0)
		close(store);
	if (priv >= 0)
		close(priv);
	if (root >= 0)
		close(root);
	return rc ? rc : failed;
}

/* mkdir -p @path (what is missing made with @mode). Return: 0 or -errno. */
static int make_dirs(const char *path, mode_t mode)
{
	char *p = strdup(path);
	int rc = 0;

	if (!p)
		return -ENOMEM;
	for (char *s = p + 1; rc == 0; s++) {
		char was = *s;

		if (was != '/' && was != '\0')
			continue;
		*s = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST)
			rc = -errno;
		*s = was;
		if (was == '\0')
			break;
	}
	free(p);
	return rc;
}

static int cmd_restore(struct cli *c)
{
	struct config cfg;
	size_t matched = 0;
	bool *hit;
	int rc = 0;

	if (!c->all && c->argc == 0)
		return cli_usage_error(
			c, "restore: name entries (preserved name or original path) or --all");
	if (c->all && c->argc)
		return cli_usage_error(c, "restore: --all takes no entries");
	for (int i = 0; i < c->argc; i++)
		if (!*c->argv[i])
			return dfsr_err("restore: empty entry name");
	if (c->to && !*c->to)
		return dfsr_err("restore: --to needs a directory");
	if (c->to && (rc = make_dirs(c->to, 0700)) < 0)
		return dfsr_err("restore: --to %s: %s", c->to, dfsr_strerror(rc));
	if (client_config(c, &cfg))
		return 1;
	rc = c->to ? 0 : member_answers(&cfg);
	if (rc < 0) {
		rc = rc == DFSR_ENOTRUNNING
			     ? dfsr_err("restore: member %s is not running; restore into its mount "
					"needs it (or use --to DIR)",
					cfg.member_name)
			     : member_err(&cfg, rc, NULL, CONTROL_TIMEOUT_MS);
		config_release(&cfg);
		return rc;
	}
	hit = calloc((size_t)c->argc + 1, sizeof(*hit));
	if (!hit) {
		config_release(&cfg);
		return dfsr_err("restore: out of memory");
	}
	for (size_t i = 0; i < cfg.nfolders; i++)
		if (!c->folder || !strcmp(c->folder, cfg.folders[i].name))
			rc |= rs_folder(c, &cfg, &cfg.folders[i], hit, &matched);
	for (int i = 0; i < c->argc; i++)
		if (!hit[i])
			rc |= dfsr_err("restore: no entry '%s' in the %s manifest", c->argv[i],
				       c->preexisting ? "PreExisting" : "ConflictAndDeleted");
	if (c->all && matched == 0)
		printf("nothing to restore: the %s manifest is empty\n",
		       c->preexisting ? "PreExisting" : "ConflictAndDeleted");
	free(hit);
	config_release(&cfg);
	return rc ? 1 : 0;
}

/* ---- clone export / import (core/clone.h) ------------------------------------------------- */

#define CLONE_USAGE \
	"clone export|import -c CONFIG [--folder NAME] [--validation none|basic|full] DIR"

static int clone_usage_error(const char *fmt, ...) DFSR_PRINTF(1, 2);

/* A usage error of `dfsr clone` (the command table comes later). Return: 2. */
static int clone_usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("dfsr: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (usage: dfsr %s)\n", CLONE_USAGE);
	return 2;
}

/* The folder a clone command is about: --folder, or the config's only one. */
static const struct config_folder *clone_folder(const struct cli *c, const struct config *cfg)
{
	if (c->folder)
		return config_folder(cfg, c->folder);
	if (cfg->nfolders == 1)
		return &cfg->folders[0];
	dfsr_err("clone %s: %s has %zu folders; name one with --folder NAME", c->sub, c->config,
		 cfg->nfolders);
	return NULL;
}

/* @path made absolute (the member resolves it, from another working directory). */
static int clone_abs_path(const char *path, char *out, size_t len)
{
	char *copy = strdup(path), *slash, *parent;
	const char *base, *dir = ".";
	int rc = 0;

	if (!copy)
		return -ENOMEM;
	while (strlen(copy) > 1 && copy[strlen(copy) - 1] == '/')
		copy[strlen(copy) - 1] = '\0';
	slash = strrchr(copy, '/');
	base = slash ? slash + 1 : copy;
	if (slash == copy) {
		dir = "/";
	} else if (slash) {
		*slash = '\0';
		dir = copy;
	}
	parent = realpath(dir, NULL);
	if (!parent)
		rc = -errno;
	else if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
		rc = -EINVAL;
	else if ((size_t)snprintf(out, len, "%s/%s", strcmp(parent, "/") ? parent : "", base) >=
		 len)
		rc = -ENAMETOOLONG;
	free(parent);
	free(copy);
	return rc;
}

/* True if @path is @top or below it (both absolute). */
static bool path_under(const char *path, const char *top)
{
	char *real = realpath(top, NULL);
	size_t n;
	bool under;

	if (!real)
		return false;
	n = strlen(real);
	under = strncmp(path, real, n) == 0 && (path[n] == '/' || path[n] == '\0' || n == 1);
	free(real);
	return under;
}

/*
 * An export inside a replicated tree would replicate (or, inside a mount, be written by the
 * member through its own FUSE mount); DfsrPrivate of a local path is fine.
 */
static bool clone_dir_ok(const struct config *cfg, const char *dir)
{
	for (size_t i = 0; i < cfg->nfolders; i++) {
		const struct config_folder *f = &cfg->folders[i];
		char priv[4096];

		snprintf(priv, sizeof(priv), "%s/%s", f->path, LAYOUT_PRIVATE);
		if (path_under(dir, f->mount) ||
		    (path_under(dir, f->path) && !path_under(dir, priv))) {
			dfsr_err("clone export: %s is inside folder %s (%s); export outside the "
				 "replicated tree",
				 dir, f->name, path_under(dir, f->mount) ? f->mount : f->path);
			return false;
		}
	}
	return true;
}

static int clone_export_cli(struct cli *c, const struct config *cfg, const struct config_folder *f)
{
	char dir[4096], enc[3 * 4096 + 1], req[3 * 4096 + 512];
	struct dfsr_buf r;
	int rc;

	rc = clone_abs_path(c->argv[0], dir, sizeof(dir));
	if (rc < 0)
		return dfsr_err("clone export: %s: %s", c->argv[0],
				rc == -EINVAL ? "not a directory name" : dfsr_strerror(rc));
	if (!clone_dir_ok(cfg, dir))
		return 1;
	pct_encode(dir, enc, sizeof(enc));
	snprintf(req, sizeof(req), "clone-export folder=%s dir=%s", f->name, enc);
	dfsr_buf_init(&r);
	/* a checkpoint onto another filesystem copies every file: allow it time */
	rc = net_control_request(cfg->control_path, req, 3600 * 1000, &r);
	if (rc == 0 && r.len)
		fwrite(r.p, 1, r.len, stdout);
	else if (rc == DFSR_ENOTRUNNING)
		rc = dfsr_err("clone export: member %s is not running: the export is a consistent "
			      "copy made by the running member (start it with dfsr mount)",
			      cfg->member_name);
	else if (rc == -EREMOTEIO)
		rc = dfsr_err("member %s: %s", cfg->member_name, r.p);
	else if (rc < 0)
		rc = dfsr_err("member %s: %s", cfg->member_name, dfsr_strerror(rc));
	dfsr_buf_release(&r);
	return rc ? 1 : 0;
}

static void clone_report(void *arg, enum clone_finding what, const char *path,
			 const char *preserved)
{
	(void)arg;
	if (what == CLONE_MISMATCHED && preserved)
		printf("mismatched %s: local version moved to PreExisting/%s; the group's version "
		       "will be fetched\n",
		       path, preserved);
	else if (what == CLONE_MISMATCHED)
		printf("mismatched %s: directory metadata differs; kept (replicates as a local "
		       "change)\n",
		       path);
	else if (what == CLONE_MISSING)
		printf("missing %s: the group's version will be fetched\n", path);
	else
		printf("extra %s: not in the clone; kept (replicates as a new object)\n", path);
}

static int clone_import_cli(struct cli *c, const struct config *cfg, const struct config_folder *f,
			    enum clone_validation v)
{
	struct clone_import_opts o = {
		.cfg = cfg, .folder = f, .dir = c->argv[0], .report = clone_report
	};
	struct clone_import_result res;
	char err[CLONE_ERR_LEN], id[DFSR_UID_GUID_LEN];
	int rc;

	o.validation = v;
	rc = member_answers(cfg);
	if (rc == 0)
		return dfsr_err("clone import: member %s is running; a clone is imported before "
				"its first start (stop it with dfsr umount)",
				cfg->member_name);
	if (rc == -ETIMEDOUT) /* it runs, only it does not answer */
		return member_err(cfg, rc, NULL, CONTROL_TIMEOUT_MS);
	o.root_fd = open(f->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (o.root_fd < 0)
		return dfsr_err("clone import: folder %s: local path %s: %s", f->name, f->path,
				strerror(errno));
	rc = clone_import(&o, &res, err);
	close(o.root_fd);
	if (rc < 0)
		return dfsr_err("clone import: %s", err);
	dfsr_uid_guid(&res.db_id, id);
	printf("imported folder %s from member %s's clone: database {%s}, state normal; "
	       "validation %s: checked %" PRIu64 ", matched %" PRIu64 ", mismatched %" PRIu64
	       ", missing %" PRIu64 ", extra %" PRIu64 "\n",
	       f->name, res.info.member, id, clone_validation_name(o.validation), res.checked,
	       res.matched, res.mismatched, res.missing, res.extra);
	return fflush(stdout) == 0 ? 0 : dfsr_err("writing the output: %s", strerror(errno));
}

static int cmd_clone(struct cli *c)
{
	enum clone_validation v = CLONE_VALIDATE_BASIC;
	const struct config_folder *f;
	struct config cfg;
	int rc;

	if (c->validation && !strcmp(c->sub, "export"))
		return clone_usage_error("%s", "--validation applies to clone import");
	if (c->validation && clone_validation_parse(c->validation, &v) < 0)
		return clone_usage_error("--validation '%s': say none, basic or full",
					 c->validation);
	if (client_config(c, &cfg))
		return 1;
	f = clone_folder(c, &cfg);
	if (!f)
		rc = 1;
	else if (!strcmp(c->sub, "export"))
		rc = clone_export_cli(c, &cfg, f);
	else
		rc = clone_import_cli(c, &cfg, f, v);
	config_release(&cfg);
	return rc;
}

static int cmd_later(struct cli *c)
{
	return dfsr_err("'%s' is not in this version of dfsr", c->cmd);
}

/* ---- the command table and main()
 * ----------------------------------------------------------------- */

#define OPTS_MEMBER (OPT_CONFIG | OPT_FOLDER | OPT_JSON)

static const struct command commands[] = {
	{ "keygen", cmd_keygen, 0, 1, 1, "keygen KEYFILE",
	  "write a new secret key (mode 0600, never overwrites) and print the public key" },
	{ "pubkey", cmd_pubkey, 0, 1, 1, "pubkey KEYFILE", "print the public key of a key file" },
	{ "mount", cmd_mount, OPT_CONFIG | OPT_FOREGROUND | OPT_DEBUG, 0, 0,
	  "mount [-f] [-d] -c CONFIG",
	  "start the member; without -f return once every folder is mounted (-d: FUSE debug)" },
	{ "umount", cmd_umount, OPT_CONFIG, 0, 0, "umount -c CONFIG",
	  "stop the member cleanly and wait until it has exited" },
	{ "status", cmd_status, OPTS_MEMBER | OPT_WATCH, 0, 0,
	  "status -c CONFIG [--folder NAME] [--json] [--watch]",
	  "state, counts and usage of each folder; --watch refreshes every second" },
	{ "events", cmd_events, OPTS_MEMBER | OPT_SINCE, 0, 0,
	  "events -c CONFIG [--folder NAME] [--since TIME] [--json]",
	  "the event log (TIME: 2026-11-21T10:00:00Z, 2026-11-21, 10m, 2h, 3d)" },
	{ "journal", cmd_journal, OPTS_MEMBER | OPT_FROM | OPT_LIST, 0, 0,
	  "journal -c CONFIG [--folder NAME] [--from SEQ] [--list N] [--json]",
	  "entries of a folder's outbound journal" },
	{ "hash", cmd_hash, OPT_RECURSIVE, 1, INT_MAX, "hash [-r] PATH...",
	  "the replication hash of each PATH; -r walks directories (skipping DfsrPrivate)" },
	{ "reload", cmd_reload, OPT_CONFIG, 0, 0, "reload -c CONFIG",
	  "re-read the configuration (SIGHUP too)" },
	{ "backlog", cmd_backlog, OPTS_MEMBER | OPT_PEER | OPT_LIST, 0, 0,
	  "backlog -c CONFIG --peer NAME [--folder NAME] [--list N] [--json]",
	  "how many updates partner NAME has not installed yet, and the first N" },
	{ "wait", cmd_wait, OPT_CONFIG | OPT_TIMEOUT, 0, 0, "wait -c CONFIG [--timeout SECS]",
	  "block until every folder is normal and nothing is pending; exit 1 on timeout" },
	{ "conflicts", cmd_conflicts, OPTS_MEMBER | OPT_PREEXISTING, 0, 0,
	  "conflicts -c CONFIG [--folder NAME] [--preexisting] [--json]",
	  "the manifest of preserved conflict losers and deleted files (or PreExisting)" },
	{ "restore", cmd_restore,
	  OPT_CONFIG | OPT_FOLDER | OPT_TO | OPT_COPY | OPT_ALL | OPT_PREEXISTING, 0, INT_MAX,
	  "restore -c CONFIG [--folder NAME] [--preexisting] [--to DIR] [--copy] (ENTRY...|--all)",
	  "put preserved files back at their paths through the mount (so they replicate), or "
	  "into DIR; ENTRY is a preserved name or an original path" },
	{ "clone", cmd_clone, OPT_CONFIG | OPT_FOLDER | OPT_VALIDATION, 1, 1, CLONE_USAGE,
	  "export: a consistent copy of a running member's folder database into DIR; import: "
	  "before a new member's first start, adopt the export DIR over preseeded data "
	  "(--validation: basic (default) checks size, mtime and metadata, full re-hashes)" },
};

static const struct option long_opts[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "folder", required_argument, NULL, 'F' },
	{ "json", no_argument, NULL, 'j' },
	{ "watch", no_argument, NULL, 'w' },
	{ "foreground", no_argument, NULL, 'f' },
	{ "debug", no_argument, NULL, 'd' },
	{ "recursive", no_argument, NULL, 'r' },
	{ "since", required_argument, NULL, 's' },
	{ "from", required_argument, NULL, 'S' },
	{ "list", required_argument, NULL, 'n' },
	{ "peer", required_argument, NULL, 'p' },
	{ "to", required_argument, NULL, 't' },
	{ "copy", no_argument, NULL, 'C' },
	{ "all", no_argument, NULL, 'A' },
	{ "preexisting", no_argument, NULL, 'P' },
	{ "timeout", required_argument, NULL, 'T' },
	{ "validation", required_argument, NULL, 'V' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int usage_error(const struct command *cmd, const char *fmt, ...) DFSR_PRINTF(2, 3);

/* "dfsr: <what> (usage: ...)" on stderr. Return: 2. */
static int usage_error(const struct command *cmd, const char *fmt, ...)
{
	va_list ap;

	fputs("dfsr: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	/* One line, like every error: the usage goes on the same line. */
	if (cmd)
		fprintf(stderr, " (usage: dfsr %s)\n", cmd->usage);
	else
		fputs(" (usage: dfsr COMMAND [OPTIONS]; dfsr --help lists the commands)\n", stderr);
	return 2;
}

static void print_help(void)
{
	printf("usage: dfsr COMMAND [OPTIONS]\n\nDFS Replication for Linux.\n\ncommands:\n");
	for (size_t i = 0; i < DFSR_ARRAY_SIZE(commands); i++)
		printf("  dfsr %s\n      %s\n", commands[i].usage, commands[i].help);
	printf("\n-c CONFIG defaults to %s. dfsr COMMAND --help for one command.\n",
	       CONFIG_DEFAULT_PATH);
}

static unsigned opt_bit(int ch)
{
	switch (ch) {
	case 'c':
		return OPT_CONFIG;
	case 'F':
		return OPT_FOLDER;
	case 'j':
		return OPT_JSON;
	case 'w':
		return OPT_WATCH;
	case 'f':
		return OPT_FOREGROUND;
	case 'd':
		return OPT_DEBUG;
	case 'r':
		return OPT_RECURSIVE;
	case 's':
		return OPT_SINCE;
	case 'S':
		return OPT_FROM;
	case 'n':
		return OPT_LIST;
	case 'P':
		return OPT_PREEXISTING;
	case 'T':
		return OPT_TIMEOUT;
	case 'p':
		return OPT_PEER;
	case 't':
		return OPT_TO;
	case 'C':
		return OPT_COPY;
	case 'A':
		return OPT_ALL;
	case 'V':
		return OPT_VALIDATION;
	default:
		return 0;
	}
}

/* Stores one option. Return: 0, or an exit code after a usage error. */
static int set_opt(const struct command *cmd, struct cli *c, int ch, const char *arg)
{
	switch (ch) {
	case 'c':
		c->config = arg;
		break;
	case 'F':
		c->folder = arg;
		break;
	case 'j':
		c->json = true;
		break;
	case 'w':
		c->watch = true;
		break;
	case 'f':
		c->foreground = true;
		break;
	case 'd':
		c->debug = true;
		break;
	case 'r':
		c->recursive = true;
		break;
	case 'P':
		c->preexisting = true;
		break;
	case 'p':
		c->peer = arg;
		break;
	case 't':
		c->to = arg;
		break;
	case 'C':
		c->copy = true;
		break;
	case 'A':
		c->all = true;
		break;
	case 'V':
		c->validation = arg;
		break;
	case 's':
		c->since = arg;
		break;
	case 'S':
		if (parse_u64(arg, &c->from) < 0)
			return usage_error(cmd, "--from '%s': not a number", arg);
		break;
	case 'n':
		if (parse_u64(arg, &c->list) < 0)
			return usage_error(cmd, "--list '%s': not a number", arg);
		break;
	case 'T':
		if (parse_u64(arg, &c->timeout) < 0 || c->timeout > 86400 * 365)
			return usage_error(cmd,
					   "--timeout '%s': use a number of seconds, at most %d",
					   arg, 86400 * 365);
		break;
	default:
		break;
	}
	return 0;
}

/* Return: -1 to run the command, else the exit code (help printed, or a usage error). */
static int parse_opts(const struct command *cmd, int argc, char **argv, struct cli *c)
{
	int ch;

	opterr = 0;
	optind = 1;
	while ((ch = getopt_long(argc, argv, ":c:fdrh", long_opts, NULL)) != -1) {
		if (ch == 'h') {
			printf("usage: dfsr %s\n  %s\n", cmd->usage, cmd->help);
			return 0;
		}
		if (ch == '?')
			return usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
		if (ch == ':')
			return usage_error(cmd, "option '%s' needs a value", argv[optind - 1]);
		if (!(cmd->opts & opt_bit(ch)))
			return usage_error(cmd, "option '%s' does not apply here",
					   argv[optind - 1]);
		ch = set_opt(cmd, c, ch, optarg);
		if (ch)
			return ch;
	}
	c->argc = argc - optind;
	c->argv = argv + optind;
	if (c->argc < cmd->min_args)
		return usage_error(cmd, "%s", "missing argument");
	if (c->argc > cmd->max_args)
		return usage_error(cmd, "unexpected argument '%s'", c->argv[cmd->max_args]);
	return -1;
}

/*
 * A detached member outlives the shell or script that started it: it must not keep that
 * caller's descriptors (a lock file, a pipe, a file open in another member's mount, which
 * that member would then wait on for ever). Runs first, before anything of ours is open;
 * 0, 1 and 2 go to /dev/null once the member is ready (member_ready()).
 */
static void close_inherited(void)
{
	long max;

	if (close_range(3, ~0U, 0) == 0)
		return;
	max = sysconf(_SC_OPEN_MAX);
	for (long fd = 3; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
		close((int)fd);
}

int main(int argc, char **argv)
{
	struct cli c = { .config = CONFIG_DEFAULT_PATH };
	const struct command *cmd = NULL;
	int rc;

	if (argc < 2)
		return usage_error(NULL, "%s", "no command given");
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		print_help();
		return 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("dfsr %s\n", DFSR_VERSION);
		return 0;
	}
	for (size_t i = 0; i < DFSR_ARRAY_SIZE(commands) && !cmd; i++)
		if (!strcmp(argv[1], commands[i].name))
			cmd = &commands[i];
	if (!cmd)
		return usage_error(NULL, "unknown command '%s'", argv[1]);
	c.cmd = cmd->name;
	c.usage = cmd->usage;
	if (cmd->run == cmd_clone && argc > 2 &&
	    (!strcmp(argv[2], "export") || !strcmp(argv[2], "import"))) {
		c.sub = argv[2];
		argc--; /* the sub-command stands where parse_opts() expects the command */
		argv++;
	} else if (cmd->run == cmd_clone && (argc < 3 || argv[2][0] != '-')) {
		return usage_error(cmd, "%s", "clone: say 'export' or 'import'");
	}
	if (cmd->run == cmd_later) {
		/* Their options are a later issue's: only --help is understood. */
		for (int i = 2; i < argc; i++) {
			if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
				printf("usage: dfsr %s\n  %s\n", cmd->usage, cmd->help);
				return 0;
			}
		}
		return cmd_later(&c);
	}
	rc = parse_opts(cmd, argc - 1, argv + 1, &c);
	if (rc >= 0)
		return rc;
	if (cmd->run == cmd_clone && !c.sub)
		return usage_error(cmd, "%s", "clone: say 'export' or 'import'");
	if (cmd->run == cmd_mount && !c.foreground)
		close_inherited();
	if (sodium_init() < 0)
		return dfsr_err("libsodium failed to initialise");
	return cmd->run(&c);
}
