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
 * Two chained hash tables index the same nodes, by key and by id. They double when the
 * node count reaches the bucket count; if that allocation fails the chains simply grow
 * longer, which is slower but still correct. All of it sits under fs->lock, a leaf mutex
 * held only for pointer work: descriptors are opened and closed outside it.
 *
 * The node's O_PATH descriptor keeps the backing inode allocated even after its last name
 * is gone, so an (st_dev, st_ino) pair cannot be recycled by the backing filesystem while
 * a node for it exists: lookups never confuse a new file with a dead one.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/internal.h"

#define ITABLE_INITIAL_BUCKETS 1024 /* power of two; a few KiB, grows with use */

static size_t key_hash(dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull;

	h ^= (uint64_t)dev * 0xC2B2AE3D27D4EB4Full;
	h ^= h >> 29;
	return (size_t)h;
}

/* Ids are sequential, so the low bits spread evenly on their own. */
static size_t id_hash(uint64_t id)
{
	return (size_t)id;
}

/* Caller holds fs->lock. */
static void table_add(struct fs *fs, struct fs_inode *n)
{
	size_t mask = fs->nbuckets - 1;
	size_t k = key_hash(n->dev, n->ino) & mask;
	size_t i = id_hash(n->id) & mask;

	n->key_next = fs->by_key[k];
	fs->by_key[k] = n;
	n->id_next = fs->by_id[i];
	fs->by_id[i] = n;
	fs->count++;
}

/* Caller holds fs->lock. */
static void table_del(struct fs *fs, struct fs_inode *n)
{
	size_t mask = fs->nbuckets - 1;
	struct fs_inode **pp = &fs->by_key[key_hash(n->dev, n->ino) & mask];

	while (*pp && *pp != n)
		pp = &(*pp)->key_next;
	if (*pp)
		*pp = n->key_next;
	pp = &fs->by_id[id_hash(n->id) & mask];
	while (*pp && *pp != n)
		pp = &(*pp)->id_next;
	if (*pp)
		*pp = n->id_next;
	fs->count--;
}

/* Caller holds fs->lock. Doubles both tables; on ENOMEM keeps the old ones. */
static void table_grow(struct fs *fs)
{
	size_t n = fs->nbuckets * 2;
	struct fs_inode **by_key = calloc(n, sizeof(*by_key));
	struct fs_inode **by_id = calloc(n, sizeof(*by_id));
	struct fs_inode *all = NULL;

	if (!by_key || !by_id) {
		free(by_key);
		free(by_id);
		return;
	}
	/* Collect every node through the id chains (reusing key_next as a list link). */
	for (size_t b = 0; b < fs->nbuckets; b++) {
		struct fs_inode *c = fs->by_id[b];

		while (c) {
			struct fs_inode *next = c->id_next;

			c->key_next = all;
			all = c;
			c = next;
		}
	}
	free(fs->by_key);
	free(fs->by_id);
	fs->by_key = by_key;
	fs->by_id = by_id;
	fs->nbuckets = n;
	fs->count = 0;
	while (all) {
		struct fs_inode *next = all->key_next;

		table_add(fs, all);
		all = next;
	}
}

/* Caller holds fs->lock. */
static struct fs_inode *find_key(struct fs *fs, dev_t dev, ino_t ino)
{
	struct fs_inode *n = fs->by_key[key_hash(dev, ino) & (fs->nbuckets - 1)];

	while (n && (n->ino != ino || n->dev != dev))
		n = n->key_next;
	return n;
}

int fs__itable_init(struct fs *fs, const struct dfsr_uid *root_uid)
{
	struct stat st;

	if (fstatat(fs->root.fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	fs->nbuckets = ITABLE_INITIAL_BUCKETS;
	fs->by_key = calloc(fs->nbuckets, sizeof(*fs->by_key));
	fs->by_id = calloc(fs->nbuckets, sizeof(*fs->by_id));
	if (!fs->by_key || !fs->by_id) {
		free(fs->by_key);
		free(fs->by_id);
		fs->by_key = fs->by_id = NULL;
		return -ENOMEM;
	}
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

void fs__itable_release(struct fs *fs)
{
	if (!fs->by_id)
		return;
	for (size_t b = 0; b < fs->nbuckets; b++) {
		struct fs_inode *n = fs->by_id[b];

		while (n) {
			struct fs_inode *next = n->id_next;

			if (n != &fs->root) {
				close(n->fd);
				free(n);
			}
			n = next;
		}
	}
	free(fs->by_key);
	free(fs->by_id);
	fs->by_key = fs->by_id = NULL;
	fs->count = 0;
}

struct fs_inode *fs__inode_get(struct fs *fs, fuse_ino_t id)
{
	struct fs_inode *n;

	if (id == FUSE_ROOT_ID)
		return &fs->root;
	pthread_mutex_lock(&fs->lock);
	n = fs->by_id[id_hash(id) & (fs->nbuckets - 1)];
	while (n && n->id != id)
		n = n->id_next;
	pthread_mutex_unlock(&fs->lock);
	return n;
}

struct fs_inode *fs__inode_ref_existing(struct fs *fs, const struct stat *st)
{
	struct fs_inode *n;

	pthread_mutex_lock(&fs->lock);
	n = find_key(fs, st->st_dev, st->st_ino);
	if (n)
		n->nlookup++;
	pthread_mutex_unlock(&fs->lock);
	return n;
}

int fs__inode_insert_take(struct fs *fs, int fd, const struct stat *st, bool private_,
			  const struct dfsr_uid *uid, struct fs_inode **out)
{
	struct fs_inode *fresh = calloc(1, sizeof(*fresh));
	struct fs_inode *n;

	if (!fresh) {
		close(fd);
		return -ENOMEM;
	}
	pthread_mutex_lock(&fs->lock);
	n = find_key(fs, st->st_dev, st->st_ino);
	if (n) {
		/* Another thread (or another name of a hard link) got there first. */
		n->nlookup++;
		pthread_mutex_unlock(&fs->lock);
		close(fd);
		free(fresh);
		*out = n;
		return 0;
	}
	fresh->id = fs->next_id++;
	fresh->dev = st->st_dev;
	fresh->ino = st->st_ino;
	fresh->fd = fd;
	fresh->type = st->st_mode & S_IFMT;
	fresh->private_ = private_;
	fresh->nlookup = 1;
	fresh->uid = *uid;
	atomic_init(&fresh->dirty, false);
	if (fs->count >= fs->nbuckets)
		table_grow(fs);
	table_add(fs, fresh);
	pthread_mutex_unlock(&fs->lock);
	*out = fresh;
	return 0;
}

void fs__inode_unref(struct fs *fs, struct fs_inode *n, uint64_t nlookup, uint32_t nopen)
{
	bool dead;

	pthread_mutex_lock(&fs->lock);
	n->nlookup = n->nlookup > nlookup ? n->nlookup - nlookup : 0;
	n->nopen = n->nopen > nopen ? n->nopen - nopen : 0;
	dead = n != &fs->root && n->nlookup == 0 && n->nopen == 0;
	if (dead)
		table_del(fs, n);
	pthread_mutex_unlock(&fs->lock);
	if (dead) {
		close(n->fd);
		free(n);
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

void fs__inode_open(struct fs *fs, struct fs_inode *n, bool writable)
{
	pthread_mutex_lock(&fs->lock);
	n->nopen++;
	if (writable)
		n->nwriters++;
	pthread_mutex_unlock(&fs->lock);
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
	}
	pthread_mutex_unlock(&fs->lock);
	return note;
}

uint32_t fs__inode_writers(struct fs *fs, struct fs_inode *n)
{
	uint32_t w;

	pthread_mutex_lock(&fs->lock);
	w = n->nwriters;
	pthread_mutex_unlock(&fs->lock);
	return w;
}

void fs__inode_uid(struct fs *fs, struct fs_inode *n, struct dfsr_uid *out)
{
	pthread_mutex_lock(&fs->lock);
	*out = n->uid;
	pthread_mutex_unlock(&fs->lock);
}

void fs__inode_set_uid(struct fs *fs, struct fs_inode *n, const struct dfsr_uid *uid)
{
	pthread_mutex_lock(&fs->lock);
	n->uid = *uid;
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
	if (n && n != &fs->root)
		n->uid = *uid;
	pthread_mutex_unlock(&fs->lock);
}
