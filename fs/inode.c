/*
 * inode.c - the inode table of one mount: FUSE node ids <-> backing inodes.
 *
 * The kernel names every object by a 64-bit node id that we hand out in entry replies.
 * A node stands for one backing inode, found by (st_dev, st_ino), so that every name of a
 * hard-linked file gets the same node and the kernel sees one inode, as on the local path.
 * Ids come from a per-mount counter starting after FUSE_ROOT_ID; they are never pointers
 * (a stale id from a confused kernel is answered with ESTALE instead of a wild pointer) and
 * never reused, so the generation number is always 0.
 *
 * Two intrusive hash tables (core/htab.h) index the same nodes, by key and by id; a lookup
 * walks one chain inline. Each doubles when its node count reaches its bucket count (the
 * key index holds every node but the few stale ones taken out of it); if that allocation
 * fails the chains simply grow longer, which is slower but still correct. All of it sits
 * under fs->lock, a leaf mutex held only for pointer work: descriptors are opened and
 * closed outside it.
 *
 * Descriptors. A node used to hold an O_PATH descriptor for its whole life, but the kernel
 * forgets nodes only under memory pressure, so creating or walking more files than
 * RLIMIT_NOFILE failed with EMFILE. Now only some nodes do ("fixed" descriptors): the root
 * and directories (every *at() call starts from one, and there are far fewer of them),
 * nodes of filesystems without file handles (or another filesystem mounted inside), and
 * any node made while the mount holds fewer than fs->fd_budget descriptors (half the soft
 * limit, leaving the other half to open files, RocksDB and the rest). Other nodes keep
 * only a kernel file handle (name_to_handle_at) and are reopened per operation with
 * open_by_handle_at, one extra system call; while they have open file handles they hold a
 * descriptor too, made from the open file, so an open file whose last name is gone stays
 * reachable (a handle would answer ESTALE once the name is gone and the inode is cached
 * no more). That descriptor is dropped with the last open handle, but never under a
 * borrower: fs__inode_fd() counts its users and the last one closes it.
 *
 * A descriptor keeps the backing inode allocated, so its (st_dev, st_ino) pair cannot be
 * recycled while the node exists. A handle-only node pins nothing: its inode may be
 * deleted behind it and the number reused. So a key match on a handle-only node is
 * trusted only when the handles agree (they include the inode generation); otherwise the
 * old node leaves the key index (it stays in the id index until the kernel forgets it, and
 * answers ENOENT meanwhile) and a new node is made.
 *
 * Future work: an LRU that takes fixed descriptors back from idle files would let the
 * most used files skip the reopen; today the first fd_budget files keep theirs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "fs/internal.h"

#define ITABLE_INITIAL_BUCKETS 1024 /* power of two; a few KiB, grows with use */
#define INODE_FD_BORROWED      (-2) /* fs__inode_fd()'s *tmp: a non-fixed fd was borrowed */

static size_t key_hash_of(dev_t dev, ino_t ino)
{
	return htab_hash_u64x2((uint64_t)dev, (uint64_t)ino);
}

static size_t key_hash(const struct htab_node *p)
{
	const struct fs_inode *n = dfsr_container_of_const(p, struct fs_inode, key_node);

	return key_hash_of(n->dev, n->ino);
}

/* Ids are sequential, so the low bits spread evenly on their own. */
static size_t id_hash_of(uint64_t id)
{
	return (size_t)id;
}

static size_t id_hash(const struct htab_node *p)
{
	return id_hash_of(dfsr_container_of_const(p, struct fs_inode, id_node)->id);
}

/* Caller holds fs->lock. Each table doubles when full (core/htab.h). */
static void table_add(struct fs *fs, struct fs_inode *n)
{
	if (n->keyed)
		htab_add(&fs->by_key, &n->key_node);
	htab_add(&fs->by_id, &n->id_node);
}

/* Caller holds fs->lock. Take @n out of the key index only (a stale handle-only node). */
static void table_unkey(struct fs *fs, struct fs_inode *n)
{
	if (!n->keyed)
		return;
	htab_del(&fs->by_key, &n->key_node);
	n->keyed = false;
}

/* Caller holds fs->lock. */
static void table_del(struct fs *fs, struct fs_inode *n)
{
	table_unkey(fs, n);
	htab_del(&fs->by_id, &n->id_node);
}

/* Caller holds fs->lock. */
static struct fs_inode *find_key(struct fs *fs, dev_t dev, ino_t ino)
{
	for (struct htab_node *p = htab_first(&fs->by_key, key_hash_of(dev, ino)); p; p = p->next) {
		struct fs_inode *n = dfsr_container_of(p, struct fs_inode, key_node);

		if (n->ino == ino && n->dev == dev)
			return n;
	}
	return NULL;
}

/* Caller holds fs->lock. */
static struct fs_inode *find_id(struct fs *fs, uint64_t id)
{
	for (struct htab_node *p = htab_first(&fs->by_id, id_hash_of(id)); p; p = p->next) {
		struct fs_inode *n = dfsr_container_of(p, struct fs_inode, id_node);

		if (n->id == id)
			return n;
	}
	return NULL;
}

/*
 * The handle of @fd, sized to fit, or NULL: no handles here, @fd on another mount than
 * the root (a filesystem mounted inside), or out of memory. Such a node keeps its fd.
 */
static struct file_handle *take_handle(struct fs *fs, int fd)
{
	struct file_handle *h, *small;
	int mount_id;

	if (!fs->fh_ok)
		return NULL;
	h = malloc(sizeof(*h) + MAX_HANDLE_SZ);
	if (!h)
		return NULL;
	h->handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(fd, "", h, &mount_id, AT_EMPTY_PATH) < 0 ||
	    mount_id != fs->fh_mount_id) {
		free(h);
		return NULL;
	}
	small = realloc(h, sizeof(*h) + h->handle_bytes);
	return small ? small : h;
}

static bool handle_equal(const struct file_handle *a, const struct file_handle *b)
{
	return a && b && a->handle_type == b->handle_type && a->handle_bytes == b->handle_bytes &&
	       memcmp(a->f_handle, b->f_handle, a->handle_bytes) == 0;
}

/* Caller holds fs->lock. Take a non-fixed node's descriptor if nothing needs it now. */
static int take_idle_fd(struct fs *fs, struct fs_inode *n)
{
	int fd = -1;

	if (!n->fd_fixed && n->fd >= 0 && n->nopen == 0 && n->fd_users == 0) {
		fd = n->fd;
		n->fd = -1;
		fs->nfds--;
	}
	return fd;
}

/*
 * Probe file handles on the root: encodable, and reopenable by us (CAP_DAC_READ_SEARCH).
 * open_by_handle_at() wants a real descriptor of the mount (O_PATH gives EBADF).
 */
static void probe_handles(struct fs *fs)
{
	struct file_handle *h = malloc(sizeof(*h) + MAX_HANDLE_SZ);
	int fd = -1;

	fs->fh_ok = false;
	fs->fh_mount_fd = openat(fs->root.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (!h || fs->fh_mount_fd < 0)
		goto out;
	h->handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(fs->root.fd, "", h, &fs->fh_mount_id, AT_EMPTY_PATH) == 0)
		fd = open_by_handle_at(fs->fh_mount_fd, h, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	fs->fh_ok = fd >= 0;
	if (fd >= 0)
		close(fd);
out:
	if (!fs->fh_ok && fs->fh_mount_fd >= 0) {
		close(fs->fh_mount_fd);
		fs->fh_mount_fd = -1;
	}
	free(h);
}

int fs__itable_init(struct fs *fs, const struct dfsr_uid *root_uid)
{
	struct rlimit rl;
	struct stat st;

	fs->fh_mount_fd = -1;
	if (fstatat(fs->root.fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (htab_init(&fs->by_key, ITABLE_INITIAL_BUCKETS, key_hash) < 0 ||
	    htab_init(&fs->by_id, ITABLE_INITIAL_BUCKETS, id_hash) < 0) {
		htab_release(&fs->by_key, NULL, NULL);
		htab_release(&fs->by_id, NULL, NULL);
		return -ENOMEM;
	}
	probe_handles(fs);
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
		rl.rlim_cur = 1024;
	fs->fd_budget = (size_t)rl.rlim_cur / 2;
	fs->nfds = 1;
	fs->root.fd_fixed = true;
	fs->root.keyed = true;
	fs->root.id = FUSE_ROOT_ID;
	fs->root.dev = st.st_dev;
	fs->root.ino = st.st_ino;
	fs->root.type = st.st_mode & S_IFMT;
	fs->root.nlookup = 1;
	fs->root.uid = *root_uid;
	atomic_init(&fs->root.dirty, false);
	fs->next_id = FUSE_ROOT_ID + 1;
	table_add(fs, &fs->root);
	return 0;
}

/* htab_release() visitor: every node but the root (whose fd the caller closes). */
static void free_node(void *arg, struct htab_node *p)
{
	struct fs_inode *n = dfsr_container_of(p, struct fs_inode, id_node);
	struct fs *fs = arg;

	if (n == &fs->root)
		return;
	if (n->fd >= 0)
		close(n->fd);
	free(n->handle);
	free(n);
}

void fs__itable_release(struct fs *fs)
{
	if (fs->fh_mount_fd >= 0)
		close(fs->fh_mount_fd);
	fs->fh_mount_fd = -1;
	htab_release(&fs->by_key, NULL, NULL);
	htab_release(&fs->by_id, free_node, fs);
}

struct fs_inode *fs__inode_get(struct fs *fs, fuse_ino_t id)
{
	struct fs_inode *n;

	if (id == FUSE_ROOT_ID)
		return &fs->root;
	pthread_mutex_lock(&fs->lock);
	n = find_id(fs, id);
	pthread_mutex_unlock(&fs->lock);
	return n;
}

/* Caller holds fs->lock. A handle-only node without a descriptor pins nothing. */
static bool may_be_stale(const struct fs_inode *n)
{
	return !n->fd_fixed && n->fd < 0;
}

struct fs_inode *fs__inode_ref_existing(struct fs *fs, int fd, const struct stat *st)
{
	struct file_handle *handle = NULL;
	struct fs_inode *n;
	bool check;

	pthread_mutex_lock(&fs->lock);
	n = find_key(fs, st->st_dev, st->st_ino);
	check = n && may_be_stale(n);
	if (n && !check)
		n->nlookup++;
	pthread_mutex_unlock(&fs->lock);
	if (!check)
		return n;
	/* Compare handles (they carry the generation); a stale node is left to insert_take. */
	handle = take_handle(fs, fd);
	pthread_mutex_lock(&fs->lock);
	n = find_key(fs, st->st_dev, st->st_ino);
	if (n && may_be_stale(n) && !handle_equal(n->handle, handle))
		n = NULL;
	if (n)
		n->nlookup++;
	pthread_mutex_unlock(&fs->lock);
	free(handle);
	return n;
}

/* Lock held. Is @uid (not zero) the node's own UID or one of its other names'? */
static bool knows_uid_locked(const struct fs_inode *n, const struct dfsr_uid *uid)
{
	if (dfsr_uid_is_zero(uid))
		return false;
	if (dfsr_uid_equal(uid, &n->uid))
		return true;
	for (uint8_t i = 0; i < n->nlinks; i++)
		if (dfsr_uid_equal(uid, &n->links[i]))
			return true;
	return false;
}

/* Lock held. */
static void add_uid_locked(struct fs_inode *n, const struct dfsr_uid *uid)
{
	uint8_t i;

	if (dfsr_uid_is_zero(uid) || dfsr_uid_equal(uid, &n->uid))
		return;
	if (dfsr_uid_is_zero(&n->uid)) {
		n->uid = *uid;
		return;
	}
	for (i = 0; i < n->nlinks; i++)
		if (dfsr_uid_equal(uid, &n->links[i]))
			return;
	if (n->nlinks < FS_LINK_UIDS)
		n->links[n->nlinks++] = *uid;
}

/* Will fs__inode_insert_take() want the handle of a new object @st? */
static bool need_handle(struct fs *fs, const struct stat *st)
{
	bool need;

	pthread_mutex_lock(&fs->lock);
	need = fs->nfds + 64 >= fs->fd_budget || find_key(fs, st->st_dev, st->st_ino) != NULL;
	pthread_mutex_unlock(&fs->lock);
	return need;
}

int fs__inode_insert_take(struct fs *fs, int fd, const struct stat *st, bool private_,
			  const struct dfsr_uid *uid, struct fs_inode **out)
{
	struct fs_inode *fresh = calloc(1, sizeof(*fresh));
	struct file_handle *handle = NULL;
	struct fs_inode *n;
	bool tried = false;

	if (!fresh) {
		close(fd);
		return -ENOMEM;
	}
	/* A handle is needed only for a node that may become handle-only, or to tell a stale
	 * node from this one; while descriptors are far below the budget (read without the
	 * lock: a few nodes past it are harmless) neither can happen unless the key has a node. */
	if (!S_ISDIR(st->st_mode) && need_handle(fs, st))
		handle = take_handle(fs, fd);
relock:
	pthread_mutex_lock(&fs->lock);
	n = find_key(fs, st->st_dev, st->st_ino);
	if (n && may_be_stale(n) && !handle && !tried && !S_ISDIR(st->st_mode)) {
		/* Another thread made a handle-only node meanwhile: compare handles after all. */
		pthread_mutex_unlock(&fs->lock);
		handle = take_handle(fs, fd);
		tried = true;
		goto relock;
	}
	if (n && may_be_stale(n) && !handle_equal(n->handle, handle)) {
		/* The inode of a handle-only node died and its number came back. */
		table_unkey(fs, n);
		n = NULL;
	}
	if (n) {
		/* Another thread (or another name of a hard link) got there first. */
		n->nlookup++;
		add_uid_locked(n, uid);
		pthread_mutex_unlock(&fs->lock);
		close(fd);
		free(handle);
		free(fresh);
		*out = n;
		return 0;
	}
	fresh->id = fs->next_id++;
	fresh->dev = st->st_dev;
	fresh->ino = st->st_ino;
	fresh->fd_fixed = !handle || fs->nfds < fs->fd_budget;
	if (fresh->fd_fixed) {
		fresh->fd = fd;
		fs->nfds++;
		free(handle);
	} else {
		fresh->fd = -1;
		fresh->handle = handle;
	}
	fresh->keyed = true;
	fresh->type = st->st_mode & S_IFMT;
	fresh->private_ = private_;
	fresh->nlookup = 1;
	fresh->uid = *uid;
	atomic_init(&fresh->dirty, false);
	table_add(fs, fresh);
	pthread_mutex_unlock(&fs->lock);
	if (!fresh->fd_fixed)
		close(fd);
	*out = fresh;
	return 0;
}

int fs__inode_fd(struct fs *fs, struct fs_inode *n, int *tmp)
{
	int fd;

	*tmp = -1;
	if (n->fd_fixed)
		return n->fd;
	pthread_mutex_lock(&fs->lock);
	fd = n->fd;
	if (fd >= 0) {
		n->fd_users++;
		*tmp = INODE_FD_BORROWED;
	}
	pthread_mutex_unlock(&fs->lock);
	if (fd >= 0)
		return fd;
	fd = open_by_handle_at(fs->fh_mount_fd, n->handle, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ESTALE ? -ENOENT : -errno; /* deleted behind the mount */
	*tmp = fd;
	return fd;
}

void fs__inode_fd_put(struct fs *fs, struct fs_inode *n, int tmp)
{
	int fd;

	if (tmp >= 0) {
		close(tmp);
		return;
	}
	if (tmp != INODE_FD_BORROWED)
		return;
	pthread_mutex_lock(&fs->lock);
	n->fd_users--;
	fd = take_idle_fd(fs, n);
	pthread_mutex_unlock(&fs->lock);
	if (fd >= 0)
		close(fd);
}

void fs__inode_unref(struct fs *fs, struct fs_inode *n, uint64_t nlookup, uint32_t nopen)
{
	int fd = -1;
	bool dead;

	pthread_mutex_lock(&fs->lock);
	n->nlookup = n->nlookup > nlookup ? n->nlookup - nlookup : 0;
	n->nopen = n->nopen > nopen ? n->nopen - nopen : 0;
	dead = n != &fs->root && n->nlookup == 0 && n->nopen == 0;
	if (dead) {
		table_del(fs, n);
		if (n->fd >= 0)
			fs->nfds--;
	} else {
		fd = take_idle_fd(fs, n);
	}
	pthread_mutex_unlock(&fs->lock);
	if (dead) {
		if (atomic_load(&n->dirty)) /* dirtied without a writer to journal it */
			atomic_fetch_sub(&fs->unsaved, 1);
		if (n->fd >= 0)
			close(n->fd);
		free(n->handle);
		free(n);
	} else if (fd >= 0) {
		close(fd);
	}
}

uint64_t fs__inode_id(struct fs *fs, dev_t dev, ino_t ino)
{
	struct fs_inode *n;
	uint64_t id;

	pthread_mutex_lock(&fs->lock);
	n = find_key(fs, dev, ino);
	id = n ? n->id : 0;
	pthread_mutex_unlock(&fs->lock);
	return id;
}

uint32_t fs__inode_writers_of(struct fs *fs, dev_t dev, ino_t ino)
{
	uint32_t w = 0;

	pthread_mutex_lock(&fs->lock);
	/* At most one keyed node per key (a stale one is unkeyed when its successor comes),
	 * and a stale node has no open handles; walk the whole chain all the same. */
	for (struct htab_node *p = htab_first(&fs->by_key, key_hash_of(dev, ino)); p; p = p->next) {
		struct fs_inode *n = dfsr_container_of(p, struct fs_inode, key_node);

		if (n->dev == dev && n->ino == ino)
			w += n->nwriters + n->nsaving + n->nopening;
	}
	pthread_mutex_unlock(&fs->lock);
	return w;
}

int fs__inode_open(struct fs *fs, struct fs_inode *n, bool writable, int file_fd)
{
	char path[32];
	bool need;
	int fd;

	pthread_mutex_lock(&fs->lock);
	n->nopen++;
	if (writable)
		n->nwriters++;
	need = !n->fd_fixed && n->fd < 0;
	pthread_mutex_unlock(&fs->lock);
	if (!need)
		return 0;
	/* Counted first, so that no other handle's release can drop the descriptor. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", file_fd);
	fd = open(path, O_PATH | O_CLOEXEC);
	if (fd < 0) {
		int rc = -errno;

		pthread_mutex_lock(&fs->lock);
		if (writable)
			n->nwriters--;
		pthread_mutex_unlock(&fs->lock);
		fs__inode_unref(fs, n, 0, 1);
		return rc;
	}
	pthread_mutex_lock(&fs->lock);
	if (n->fd < 0) {
		n->fd = fd;
		fs->nfds++;
		fd = -1;
	}
	pthread_mutex_unlock(&fs->lock);
	if (fd >= 0)
		close(fd);
	return 0;
}

bool fs__inode_close_writer(struct fs *fs, struct fs_inode *n, struct dfsr_uid *uid)
{
	bool note = false;

	pthread_mutex_lock(&fs->lock);
	if (n->nwriters > 0)
		n->nwriters--;
	if (n->nwriters == 0 && atomic_exchange(&n->dirty, false)) {
		note = true;
		*uid = n->uid;
		n->nsaving++;
	}
	pthread_mutex_unlock(&fs->lock);
	return note;
}

void fs__inode_saved(struct fs *fs, struct fs_inode *n)
{
	pthread_mutex_lock(&fs->lock);
	if (n->nsaving > 0)
		n->nsaving--;
	pthread_mutex_unlock(&fs->lock);
}

bool fs__inode_open_begin(struct fs *fs, struct fs_inode *n)
{
	bool ok;

	pthread_mutex_lock(&fs->lock);
	ok = !n->preserved;
	if (ok)
		n->nopening++;
	pthread_mutex_unlock(&fs->lock);
	return ok;
}

void fs__inode_open_end(struct fs *fs, struct fs_inode *n)
{
	pthread_mutex_lock(&fs->lock);
	if (n->nopening > 0)
		n->nopening--;
	pthread_mutex_unlock(&fs->lock);
}

bool fs__inode_preserved(struct fs *fs, struct fs_inode *n)
{
	bool p;

	pthread_mutex_lock(&fs->lock);
	p = n->preserved;
	pthread_mutex_unlock(&fs->lock);
	return p;
}

void fs__inode_mark_preserved(struct fs *fs, dev_t dev, ino_t ino)
{
	pthread_mutex_lock(&fs->lock);
	/* As in fs__inode_writers_of(): a stale node of the key has no handles; mark all. */
	for (struct htab_node *p = htab_first(&fs->by_key, key_hash_of(dev, ino)); p; p = p->next) {
		struct fs_inode *n = dfsr_container_of(p, struct fs_inode, key_node);

		if (n->dev == dev && n->ino == ino && n != &fs->root)
			n->preserved = true;
	}
	pthread_mutex_unlock(&fs->lock);
}

void fs__inode_adopted(struct fs *fs, dev_t dev, ino_t ino, const struct dfsr_uid *old,
		       const struct dfsr_uid *uid)
{
	pthread_mutex_lock(&fs->lock);
	/* As fs__inode_mark_preserved(): every node of the key. */
	for (struct htab_node *p = htab_first(&fs->by_key, key_hash_of(dev, ino)); p; p = p->next) {
		struct fs_inode *n = dfsr_container_of(p, struct fs_inode, key_node);

		if (n->dev != dev || n->ino != ino || n == &fs->root || n->private_)
			continue;
		if (dfsr_uid_is_zero(&n->uid) || dfsr_uid_equal(&n->uid, old))
			n->uid = *uid;
		for (uint8_t i = 0; i < n->nlinks; i++)
			if (dfsr_uid_equal(&n->links[i], old))
				n->links[i] = *uid;
	}
	pthread_mutex_unlock(&fs->lock);
}

void fs__inode_hold(struct fs *fs, struct fs_inode *n)
{
	pthread_mutex_lock(&fs->lock);
	n->nlookup++;
	pthread_mutex_unlock(&fs->lock);
}

uint32_t fs__inode_writers(struct fs *fs, struct fs_inode *n)
{
	uint32_t w;

	pthread_mutex_lock(&fs->lock);
	w = n->nwriters;
	pthread_mutex_unlock(&fs->lock);
	return w;
}

void fs__inode_add_uid(struct fs *fs, struct fs_inode *n, const struct dfsr_uid *uid)
{
	pthread_mutex_lock(&fs->lock);
	add_uid_locked(n, uid);
	pthread_mutex_unlock(&fs->lock);
}

bool fs__inode_linked(struct fs *fs, struct fs_inode *n, nlink_t nlink)
{
	bool linked;

	pthread_mutex_lock(&fs->lock);
	if (nlink > 1)
		n->linked = true;
	linked = n->linked;
	pthread_mutex_unlock(&fs->lock);
	return linked;
}

bool fs__inode_ask_links(struct fs *fs, struct fs_inode *n, nlink_t nlink, size_t known)
{
	bool ask;

	if (nlink <= known)
		return false;
	pthread_mutex_lock(&fs->lock);
	ask = n->links_asked != nlink && n->nlinks < FS_LINK_UIDS;
	if (ask)
		n->links_asked = nlink;
	pthread_mutex_unlock(&fs->lock);
	return ask;
}

size_t fs__inode_uids(struct fs *fs, struct fs_inode *n, struct dfsr_uid out[1 + FS_LINK_UIDS])
{
	size_t k = 0;
	uint8_t i;

	pthread_mutex_lock(&fs->lock);
	if (!dfsr_uid_is_zero(&n->uid))
		out[k++] = n->uid;
	for (i = 0; i < n->nlinks; i++)
		out[k++] = n->links[i];
	pthread_mutex_unlock(&fs->lock);
	return k;
}

void fs__inode_uid(struct fs *fs, struct fs_inode *n, struct dfsr_uid *out)
{
	pthread_mutex_lock(&fs->lock);
	*out = n->uid;
	pthread_mutex_unlock(&fs->lock);
}

void fs__inode_set_uid_by_fd(struct fs *fs, int fd, const struct dfsr_uid *uid)
{
	struct fs_inode *n;
	struct stat st;

	if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return;
	pthread_mutex_lock(&fs->lock);
	n = find_key(fs, st.st_dev, st.st_ino);
	if (n && n != &fs->root && !knows_uid_locked(n, uid))
		n->uid = *uid;
	pthread_mutex_unlock(&fs->lock);
}
