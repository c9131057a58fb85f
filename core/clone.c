/*
 * clone.c - `dfsr clone export` and `dfsr clone import` (core/clone.h has the contract).
 *
 * Export is a RocksDB checkpoint of the running member's folder database (hard links where
 * the target is on the same filesystem), read back read-only for its database id and
 * counts, then described in DfsrClone.xml. Nothing of the member's state changes but its
 * event log (2402).
 *
 * Import works on a copy: the checkpoint's files are copied into
 * DfsrPrivate/db.import.<pid>, opened there as the folder's journal (journal_opts.db_path),
 * adopted (new database id, state normal, the source's events dropped), compared with the
 * local path, closed cleanly (so the first start sees no unclean stop), and renamed to
 * DfsrPrivate/db without replacing anything. The comparison walks the names index and the
 * local directories together, one directory at a time (the index gives a directory's
 * recorded children sorted by name, so the local entries the clone does not know are found
 * by a binary search, without a global set in memory).
 *
 * Why forget instead of mark: a read-only member's scan marks reverted versions in memory
 * and finds them again at every start (docs/conflicts.md §11). A writable member's scan
 * would instead take an object missing from the local path for a delete and replicate it,
 * so the import removes what it does not hold from the database for good (no tombstone)
 * and lowers the persisted knowledge below those GVSNs; the partners' Hello walks send
 * them and replica_offer() installs them as new objects.
 */
#include "core/clone.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/db.h"
#include "core/hash.h"
#include "core/internal.h"
#include "core/layout.h"
#include "core/record.h"

#define CLONE_ROOT     "DfsrClone"
#define CLONE_DEPTH    4096 /* directory depth guard against a corrupt index */
#define CLONE_TMP_NAME "db.import"

/* ---- the description file ------------------------------------------------------------ */

static int add_text(xmlNodePtr root, const char *name, const char *text)
{
	return xmlNewTextChild(root, NULL, (const xmlChar *)name, (const xmlChar *)text) ? 0
											 : -ENOMEM;
}

static int add_u64(xmlNodePtr root, const char *name, uint64_t v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	return add_text(root, name, buf);
}

static int desc_build(const struct clone_info *ci, xmlDocPtr doc)
{
	xmlNodePtr root = xmlNewDocNode(doc, NULL, (const xmlChar *)CLONE_ROOT, NULL);
	char guid[DFSR_UID_GUID_LEN + 2], t[40];
	int rc;

	if (!root)
		return -ENOMEM;
	xmlDocSetRootElement(doc, root);
	if (!xmlNewProp(root, (const xmlChar *)"version", (const xmlChar *)"1"))
		return -ENOMEM;
	guid[0] = '{';
	dfsr_uid_guid(&ci->db_id, guid + 1);
	strcat(guid, "}");
	dfsr_time_iso(ci->time_ns, t, sizeof(t));
	rc = add_text(root, "Folder", ci->folder);
	if (rc == 0)
		rc = add_text(root, "Member", ci->member);
	if (rc == 0)
		rc = add_text(root, "DatabaseId", guid);
	if (rc == 0)
		rc = add_text(root, "Time", t);
	if (rc == 0)
		rc = add_u64(root, "TimeNs", (uint64_t)ci->time_ns);
	if (rc == 0)
		rc = add_u64(root, "Records", ci->records);
	if (rc == 0)
		rc = add_u64(root, "Files", ci->files);
	if (rc == 0)
		rc = add_u64(root, "Folders", ci->folders);
	if (rc == 0)
		rc = add_u64(root, "Tombstones", ci->tombstones);
	return rc;
}

int clone_info_write(int dirfd, const struct clone_info *ci)
{
	static const char tmp[] = "." CLONE_DESC_FILE ".tmp";
	xmlDocPtr doc = xmlNewDoc((const xmlChar *)"1.0");
	xmlChar *mem = NULL;
	int size = 0, fd, rc;

	if (!doc)
		return -ENOMEM;
	rc = desc_build(ci, doc);
	if (rc == 0)
		xmlDocDumpFormatMemoryEnc(doc, &mem, &size, "UTF-8", 1);
	xmlFreeDoc(doc);
	if (rc == 0 && (!mem || size <= 0))
		rc = -ENOMEM;
	if (rc < 0)
		goto out_free;
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		goto out_free;
	}
	rc = dfsr_write_all(fd, mem, (size_t)size);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && renameat(dirfd, tmp, dirfd, CLONE_DESC_FILE) < 0)
		rc = -errno;
	if (rc < 0)
		(void)unlinkat(dirfd, tmp, 0);
	else
		rc = dfsr_fsync_dir(dirfd);
out_free:
	xmlFree(mem);
	return rc;
}

/* Strict unsigned decimal. */
static int parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return -EBADMSG;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
			return -EBADMSG;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

/* One field of the description into @ci; @seen gets its bit. Unknown elements: ignored. */
static int desc_field(struct clone_info *ci, const char *name, const char *text, unsigned *seen)
{
	static const char *const names[] = { "Folder",  "Member", "DatabaseId", "TimeNs",
					     "Records", "Files",  "Folders",    "Tombstones" };
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < DFSR_ARRAY_SIZE(names) && strcmp(name, names[i]); i++)
		;
	if (i == DFSR_ARRAY_SIZE(names))
		return 0;
	if (*seen & (1u << i))
		return -EBADMSG;
	*seen |= 1u << i;
	if (i == 0 || i == 1) {
		char *dst = i == 0 ? ci->folder : ci->member;

		if (!*text || strlen(text) > CLONE_NAME_MAX)
			return -EBADMSG;
		strcpy(dst, text);
		return 0;
	}
	if (i == 2)
		return dfsr_uid_parse(text, &ci->db_id) < 0 || dfsr_uid_is_zero(&ci->db_id)
			       ? -EBADMSG
			       : 0;
	if (parse_u64(text, &v) < 0)
		return -EBADMSG;
	if (i == 3)
		ci->time_ns = v > INT64_MAX ? INT64_MAX : (int64_t)v;
	else if (i == 4)
		ci->records = v;
	else if (i == 5)
		ci->files = v;
	else if (i == 6)
		ci->folders = v;
	else
		ci->tombstones = v;
	return 0;
}

static int desc_parse(xmlDocPtr doc, struct clone_info *ci)
{
	xmlNodePtr root = xmlDocGetRootElement(doc);
	unsigned seen = 0;
	int rc = 0;

	if (doc->intSubset || doc->extSubset || !root ||
	    xmlStrcmp(root->name, (const xmlChar *)CLONE_ROOT) != 0)
		return -EBADMSG;
	for (xmlNodePtr n = root->children; n && rc == 0; n = n->next) {
		xmlChar *text;

		if (n->type != XML_ELEMENT_NODE)
			continue;
		text = xmlNodeGetContent(n);
		if (!text)
			return -ENOMEM;
		rc = desc_field(ci, (const char *)n->name, (const char *)text, &seen);
		xmlFree(text);
	}
	return rc == 0 && seen != 0xffu ? -EBADMSG : rc;
}

int clone_info_read(int dirfd, struct clone_info *out)
{
	struct clone_info ci;
	struct dfsr_buf b;
	xmlDocPtr doc;
	int rc;

	memset(&ci, 0, sizeof(ci));
	dfsr_buf_init(&b);
	rc = dfsr_read_small(dirfd, CLONE_DESC_FILE, CLONE_DESC_BYTES, &b);
	if (rc < 0)
		goto out_release;
	doc = b.len ? xmlReadMemory(b.p, (int)b.len, CLONE_DESC_FILE, "UTF-8",
				    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)
		    : NULL;
	if (!doc) {
		rc = -EBADMSG;
		goto out_release;
	}
	rc = desc_parse(doc, &ci);
	xmlFreeDoc(doc);
	if (rc == 0)
		*out = ci;
out_release:
	dfsr_buf_release(&b);
	return rc;
}

/* ---- small disk helpers ---------------------------------------------------------------- */

/* True if the directory @fd (taken, closed) has no entry but "." and "..". */
static int dir_empty(int fd, bool *empty)
{
	DIR *d = fdopendir(fd);
	struct dirent *de;

	if (!d) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	*empty = true;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			*empty = false;
	closedir(d);
	return 0;
}

/* Copies the regular file @name from @sdir into @ddir (new, 0600), fsync'd. */
static int copy_one(int sdir, int ddir, const char *name)
{
	int in = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), out, rc = 0;

	if (in < 0)
		return -errno;
	out = openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0) {
		rc = -errno;
		close(in);
		return rc;
	}
	rc = dfsr_copy_data(in, out);
	if (rc == 0 && fsync(out) < 0)
		rc = -errno;
	if (close(out) < 0 && rc == 0)
		rc = -errno;
	close(in);
	return rc;
}

/* Copies every regular file of the flat directory @sdir (taken, closed) into @ddir. */
static int copy_flat(int sdir, int ddir, char err[static CLONE_ERR_LEN])
{
	DIR *d = fdopendir(sdir);
	struct dirent *de;
	int rc = 0;

	if (!d) {
		rc = -errno;
		close(sdir);
		return rc;
	}
	while (rc == 0 && (de = readdir(d))) {
		struct stat st;

		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			rc = -errno;
		} else if (S_ISREG(st.st_mode)) {
			rc = copy_one(dirfd(d), ddir, de->d_name);
		}
		if (rc < 0)
			snprintf(err, CLONE_ERR_LEN, "copying the database file %s: %s", de->d_name,
				 dfsr_strerror(rc));
	}
	closedir(d);
	if (rc == 0)
		rc = dfsr_fsync_dir(ddir);
	return rc;
}

/* ---- export -------------------------------------------------------------------------- */

/* The database id and counts of the checkpoint at @path, read back through a journal. */
static int checkpoint_info(struct journal *src, const char *path, struct clone_info *ci,
			   char err[static CLONE_ERR_LEN])
{
	struct journal_opts o = {
		.folder = journal_folder(src),
		.root_fd = journal_root_fd(src),
		.read_only = true,
		.db_path = path,
	};
	char jerr[JOURNAL_ERR_LEN];
	struct journal_status st;
	struct journal *j;
	int rc = journal_open(&o, &j, jerr);

	if (rc < 0) {
		snprintf(err, CLONE_ERR_LEN, "reading the checkpoint back: %s", jerr);
		return rc;
	}
	journal_get_status(j, &st);
	ci->db_id = *journal_db_id(j);
	ci->files = st.files;
	ci->folders = st.folders;
	ci->tombstones = st.tombstones;
	ci->records = st.files + st.folders + st.tombstones;
	journal_close(j);
	return 0;
}

/* Makes @dir (or checks that it is an empty directory). @made: whether we made it. */
static int export_dir(const char *dir, bool *made, int *dfd, char err[static CLONE_ERR_LEN])
{
	bool empty = false;
	int fd, rc;

	*made = mkdir(dir, 0700) == 0;
	if (!*made && errno != EEXIST) {
		rc = -errno;
		snprintf(err, CLONE_ERR_LEN, "cannot create %s: %s", dir, dfsr_strerror(rc));
		return rc;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		rc = errno == ENOTDIR || errno == ELOOP ? -ENOTDIR : -errno;
		snprintf(err, CLONE_ERR_LEN, "%s: %s", dir,
			 rc == -ENOTDIR ? "exists and is not a directory" : dfsr_strerror(rc));
		return rc;
	}
	if (!*made) {
		rc = dir_empty(dup(fd), &empty);
		if (rc == 0 && !empty)
			rc = -ENOTEMPTY;
		if (rc < 0) {
			snprintf(err, CLONE_ERR_LEN, "%s %s", dir,
				 rc == -ENOTEMPTY ? "is not empty (export into a new or empty "
						    "directory)"
						  : dfsr_strerror(rc));
			close(fd);
			return rc;
		}
	}
	*dfd = fd;
	return 0;
}

int clone_export(struct journal *j, const char *member, const char *dir, struct clone_info *out,
		 char err[static CLONE_ERR_LEN])
{
	const char *folder = journal_folder(j)->name;
	char path[4096], dberr[DB_ERR_LEN], guid[DFSR_UID_GUID_LEN];
	struct clone_info ci;
	bool made = false;
	int dfd = -1, rc;

	err[0] = '\0';
	memset(&ci, 0, sizeof(ci));
	if (dir[0] != '/') {
		snprintf(err, CLONE_ERR_LEN, "%s: not an absolute path", dir);
		return -EINVAL;
	}
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, CLONE_DB_DIR) >= sizeof(path) ||
	    strlen(folder) > CLONE_NAME_MAX || strlen(member) > CLONE_NAME_MAX) {
		snprintf(err, CLONE_ERR_LEN, "%s: name too long", dir);
		return -ENAMETOOLONG;
	}
	rc = export_dir(dir, &made, &dfd, err);
	if (rc < 0)
		return rc;
	ci.time_ns = dfsr_now_ns();
	rc = db_checkpoint(journal__db(j), path, dberr);
	if (rc < 0) {
		snprintf(err, CLONE_ERR_LEN, "%s", dberr);
		goto out_undo;
	}
	rc = checkpoint_info(j, path, &ci, err);
	if (rc < 0)
		goto out_undo;
	strcpy(ci.folder, folder);
	strcpy(ci.member, member);
	rc = clone_info_write(dfd, &ci);
	if (rc < 0) {
		snprintf(err, CLONE_ERR_LEN, "writing %s/%s: %s", dir, CLONE_DESC_FILE,
			 dfsr_strerror(rc));
		goto out_undo;
	}
	close(dfd);
	dfsr_uid_guid(&ci.db_id, guid);
	journal_event(j, EV_CLONE_EXPORTED,
		      "dir=\"%s\" records=%" PRIu64 " files=%" PRIu64 " folders=%" PRIu64
		      " tombstones=%" PRIu64 " db={%s}",
		      dir, ci.records, ci.files, ci.folders, ci.tombstones, guid);
	*out = ci;
	return 0;
out_undo:
	/* nothing half-made stays behind: the checkpoint goes, and the directory if ours */
	(void)dfsr_remove_tree(dfd, CLONE_DB_DIR);
	(void)unlinkat(dfd, "." CLONE_DESC_FILE ".tmp", 0);
	close(dfd);
	if (made)
		(void)rmdir(dir);
	return rc;
}

/* ---- import ---------------------------------------------------------------------------- */

int clone_validation_parse(const char *s, enum clone_validation *out)
{
	static const enum clone_validation all[] = { CLONE_VALIDATE_NONE, CLONE_VALIDATE_BASIC,
						     CLONE_VALIDATE_FULL };

	for (size_t i = 0; i < DFSR_ARRAY_SIZE(all); i++) {
		if (!strcmp(s, clone_validation_name(all[i]))) {
			*out = all[i];
			return 0;
		}
	}
	return -EINVAL;
}

const char *clone_validation_name(enum clone_validation v)
{
	switch (v) {
	case CLONE_VALIDATE_NONE:
		return "none";
	case CLONE_VALIDATE_BASIC:
		return "basic";
	case CLONE_VALIDATE_FULL:
		return "full";
	}
	return "?";
}

struct child {
	struct dfsr_uid uid;
	char name[RECORD_NAME_MAX + 1];
};

struct walk {
	struct journal *j;
	const struct clone_import_opts *o;
	struct clone_import_result *res;
	struct dfsr_buf path; /* of the directory being walked, "" for the root */
};

static void report(struct walk *w, enum clone_finding what, const char *path, const char *pname)
{
	if (w->o->report)
		w->o->report(w->o->arg, what, path, pname);
}

/* The recorded live children of @dir, sorted by name (the index order). */
static int children_of(struct journal *j, const struct dfsr_uid *dir, struct child **out, size_t *n)
{
	struct db_iter *it = db_iter_new(journal__db(j), NULL, DB_CF_NAMES);
	struct child *v = NULL;
	size_t cap = 0, len = 0;
	int rc = 0;

	if (!it)
		return -ENOMEM;
	for (db_iter_seek(it, dir->b, DFSR_UID_LEN); db_iter_valid(it); db_iter_next(it)) {
		size_t klen, vlen;
		const uint8_t *k = db_iter_key(it, &klen), *val = db_iter_value(it, &vlen);

		if (klen < DFSR_UID_LEN || memcmp(k, dir->b, DFSR_UID_LEN) != 0)
			break;
		if (vlen != DFSR_UID_LEN || klen == DFSR_UID_LEN ||
		    klen - DFSR_UID_LEN > RECORD_NAME_MAX)
			continue;
		if (len == cap) {
			struct child *p;

			cap = cap ? cap * 2 : 64;
			p = realloc(v, cap * sizeof(*v));
			if (!p) {
				rc = -ENOMEM;
				break;
			}
			v = p;
		}
		memcpy(v[len].uid.b, val, DFSR_UID_LEN);
		memcpy(v[len].name, k + DFSR_UID_LEN, klen - DFSR_UID_LEN);
		v[len].name[klen - DFSR_UID_LEN] = '\0';
		len++;
	}
	if (rc == 0)
		rc = db_iter_status(it);
	db_iter_free(it);
	if (rc < 0) {
		free(v);
		return rc;
	}
	*out = v;
	*n = len;
	return 0;
}

static int cmp_child(const void *a, const void *b)
{
	return strcmp(((const struct child *)a)->name, ((const struct child *)b)->name);
}

/* "dir/name" into @out (replacing it). */
static int child_path(const struct walk *w, const char *name, struct dfsr_buf *out)
{
	out->len = 0;
	if (w->path.len &&
	    (dfsr_buf_add(out, w->path.p, w->path.len) < 0 || dfsr_buf_add(out, "/", 1) < 0))
		return -ENOMEM;
	return dfsr_buf_add(out, name, strlen(name));
}

/* The record @r is not held here: forget it (and what is below it). */
static int forget(struct walk *w, const struct record *r, bool moved, const char *path,
		  const char *pname)
{
	uint64_t n = 0;
	int rc = journal__clone_forget(w->j, &r->uid, &n);

	if (rc < 0)
		return rc;
	if (moved) {
		w->res->mismatched++;
		w->res->missing += n ? n - 1 : 0; /* what was below a moved directory */
		report(w, CLONE_MISMATCHED, path, pname);
	} else {
		w->res->missing += n;
		report(w, CLONE_MISSING, path, NULL);
	}
	return 0;
}

/* Moves the local object of @r aside to PreExisting, then forgets @r. */
static int mismatch(struct walk *w, int dfd, const struct record *r, const struct stat *st,
		    const char *path)
{
	char pname[RECORD_NAME_MAX + 1];
	struct record alt = *r; /* shallow: the manifest gets the local object's size */
	int rc;

	alt.size = S_ISDIR(st->st_mode) ? 0 : (uint64_t)st->st_size;
	rc = replica__preexist_local(w->j, dfd, &alt, path, pname);
	if (rc < 0)
		return rc;
	return forget(w, r, true, path, pname);
}

static int64_t mtime_of(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
}

/*
 * Hash the object @name (O_PATH) as the validation level asks: basic reuses the record's
 * content digest (metadata read, data not), full reads the data.
 */
static int hash_obj(struct walk *w, int dfd, const struct record *r, struct hash_result *h)
{
	int fd = openat(dfd, r->name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	/* basic: a file's data is not read (its size and mtime stood for it); a link's target
	 * always is (one readlink), since copying tools do not all keep a link's mtime */
	bool reuse = w->o->validation == CLONE_VALIDATE_BASIC && r->type == RECORD_FILE;
	int rc;

	if (fd < 0)
		return -errno;
	rc = hash_fd(fd, reuse ? r->content : NULL, h);
	close(fd);
	return rc;
}

static int walk_dir(struct walk *w, int dfd, const struct dfsr_uid *uid, int depth);

/* A directory of the clone found as a directory here. */
static int check_dir(struct walk *w, int dfd, const struct record *r, const char *path, int depth)
{
	struct hash_result h;
	size_t saved = w->path.len;
	int what, sub, rc = hash_obj(w, dfd, r, &h);

	if (rc == 0 && memcmp(h.hash, r->hash, HASH_LEN) != 0) {
		/* mode and owner can be put back; other xattrs replicate as a local change */
		if (fchownat(dfd, r->name, (uid_t)r->owner, (gid_t)r->group, AT_SYMLINK_NOFOLLOW) <
			    0 ||
		    fchmodat(dfd, r->name, (mode_t)r->mode, 0) < 0)
			return -errno;
		rc = hash_obj(w, dfd, r, &h);
	}
	if (rc < 0)
		return rc;
	if (memcmp(h.hash, r->hash, HASH_LEN) != 0) {
		w->res->mismatched++;
		report(w, CLONE_MISMATCHED, path, NULL);
	} else {
		w->res->matched++;
	}
	rc = journal__apply_hash(w->j, &r->uid, &h, &what);
	if (rc < 0)
		return rc;
	sub = openat(dfd, r->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sub < 0)
		return -errno;
	/* @path is w->path + "/" + name: cutting it back to @saved restores the parent's */
	w->path.len = 0;
	rc = dfsr_buf_add(&w->path, path, strlen(path));
	if (rc == 0)
		rc = walk_dir(w, sub, &r->uid, depth + 1);
	close(sub);
	w->path.len = saved;
	if (w->path.p)
		w->path.p[saved] = '\0';
	return rc;
}

/* Compares one recorded child with what is in the local directory @dfd. */
static int check_one(struct walk *w, int dfd, const struct child *c, int depth)
{
	struct dfsr_buf path;
	struct hash_result h;
	struct record r;
	struct stat st;
	int what, rc = journal__get(w->j, &c->uid, &r);

	if (rc == -ENOENT)
		return 0; /* an index entry without a record: the first scan repairs it */
	if (rc < 0)
		return rc;
	dfsr_buf_init(&path);
	rc = child_path(w, r.name, &path);
	if (rc < 0)
		goto out_release;
	if (fstatat(dfd, r.name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		rc = errno == ENOENT ? forget(w, &r, false, path.p, NULL) : -errno;
		goto out_release;
	}
	if (record_type_of(st.st_mode) != r.type) {
		rc = mismatch(w, dfd, &r, &st, path.p);
		goto out_release;
	}
	if (r.type == RECORD_DIR) {
		rc = check_dir(w, dfd, &r, path.p, depth);
		goto out_release;
	}
	if (w->o->validation == CLONE_VALIDATE_BASIC && r.type == RECORD_FILE &&
	    ((uint64_t)st.st_size != r.size || mtime_of(&st) != r.mtime_ns)) {
		rc = mismatch(w, dfd, &r, &st, path.p);
		goto out_release;
	}
	rc = hash_obj(w, dfd, &r, &h);
	if (rc == -ENOENT) {
		rc = forget(w, &r, false, path.p, NULL);
		goto out_release;
	}
	if (rc < 0)
		goto out_release;
	if (memcmp(h.hash, r.hash, HASH_LEN) != 0) {
		rc = mismatch(w, dfd, &r, &st, path.p);
		goto out_release;
	}
	w->res->matched++;
	rc = journal__apply_hash(w->j, &r.uid, &h, &what); /* same hash: stat data only */
out_release:
	dfsr_buf_release(&path);
	record_release(&r);
	return rc;
}

/* Local entries of @dfd that the clone does not record (and that would be recorded). */
static int count_extra(struct walk *w, int dfd, const struct dfsr_uid *uid, const struct child *v,
		       size_t n)
{
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
	struct dfsr_buf path;
	struct dirent *de;
	DIR *d;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		rc = -errno;
		close(fd);
		return rc;
	}
	dfsr_buf_init(&path);
	while (rc == 0 && (de = readdir(d))) {
		struct child key;
		struct stat st;
		char type;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    strlen(de->d_name) > RECORD_NAME_MAX)
			continue;
		strcpy(key.name, de->d_name);
		if (n && bsearch(&key, v, n, sizeof(*v), cmp_child))
			continue;
		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		type = record_type_of(st.st_mode);
		if (!type || !journal__tracked(w->j, uid, de->d_name, type))
			continue;
		w->res->extra++;
		rc = child_path(w, de->d_name, &path);
		if (rc == 0)
			report(w, CLONE_EXTRA, path.p, NULL);
	}
	closedir(d);
	dfsr_buf_release(&path);
	return rc;
}

static int walk_dir(struct walk *w, int dfd, const struct dfsr_uid *uid, int depth)
{
	struct child *v = NULL;
	size_t n = 0;
	int rc;

	if (depth > CLONE_DEPTH)
		return -EIO;
	rc = children_of(w->j, uid, &v, &n);
	if (rc < 0)
		return rc;
	qsort(v, n, sizeof(*v), cmp_child); /* strcmp order, for bsearch */
	rc = count_extra(w, dfd, uid, v, n);
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = check_one(w, dfd, &v[i], depth);
	free(v);
	return rc;
}

/* Compares the whole local path with the adopted database (basic or full). */
static int validate(struct journal *j, const struct clone_import_opts *o,
		    struct clone_import_result *res, char err[static CLONE_ERR_LEN])
{
	struct walk w = { .j = j, .o = o, .res = res };
	int root = openat(o->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

	if (root < 0) {
		rc = -errno;
		snprintf(err, CLONE_ERR_LEN, "%s: %s", o->folder->path, dfsr_strerror(rc));
		return rc;
	}
	dfsr_buf_init(&w.path);
	rc = dfsr_buf_add(&w.path, "", 0);
	if (rc == 0)
		rc = walk_dir(&w, root, journal_root_uid(j), 0);
	if (rc < 0)
		snprintf(err, CLONE_ERR_LEN, "comparing %s with the clone: %s", o->folder->path,
			 dfsr_strerror(rc));
	dfsr_buf_release(&w.path);
	close(root);
	res->checked = res->matched + res->mismatched + res->missing;
	return rc;
}

/* Adopt, compare, log 2404: everything done to the copy in DfsrPrivate/@tmp. */
static int adopt(const struct clone_import_opts *o, int priv, const char *tmp,
		 struct clone_import_result *res, char err[static CLONE_ERR_LEN])
{
	char path[128], jerr[JOURNAL_ERR_LEN], src[DFSR_UID_GUID_LEN], id[DFSR_UID_GUID_LEN];
	struct journal_opts jo = {
		.cfg = o->cfg, .folder = o->folder, .root_fd = o->root_fd, .db_path = path
	};
	struct journal *j;
	int rc;

	snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", priv, tmp);
	rc = journal_open(&jo, &j, jerr);
	if (rc < 0) {
		snprintf(err, CLONE_ERR_LEN, "opening the clone's database: %s", jerr);
		return rc == -ENOENT ? -EBADMSG : rc;
	}
	if (!dfsr_uid_equal(journal_db_id(j), &res->info.db_id)) {
		snprintf(err, CLONE_ERR_LEN, "%s: the database is not the one %s describes", o->dir,
			 CLONE_DESC_FILE);
		rc = -EBADMSG;
		goto out_close;
	}
	rc = journal__clone_adopt(j);
	if (rc < 0) {
		snprintf(err, CLONE_ERR_LEN, "adopting the clone: %s", dfsr_strerror(rc));
		goto out_close;
	}
	res->db_id = *journal_db_id(j);
	if (o->validation != CLONE_VALIDATE_NONE) {
		rc = validate(j, o, res, err);
		if (rc < 0)
			goto out_close;
	}
	dfsr_uid_guid(&res->info.db_id, src);
	dfsr_uid_guid(&res->db_id, id);
	journal_event(j, EV_CLONE_IMPORTED,
		      "source=\"%s\" source_db={%s} db={%s} validation=%s checked=%" PRIu64
		      " matched=%" PRIu64 " mismatched=%" PRIu64 " missing=%" PRIu64
		      " extra=%" PRIu64,
		      res->info.member, src, id, clone_validation_name(o->validation), res->checked,
		      res->matched, res->mismatched, res->missing, res->extra);
out_close:
	journal_close(j); /* a clean close: the first start sees no unclean stop */
	return rc;
}

/* Reads the export's description and checks it is of our folder. */
static int import_check(const struct clone_import_opts *o, int *dbfd,
			struct clone_import_result *res, char err[static CLONE_ERR_LEN])
{
	int dfd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

	if (dfd < 0) {
		rc = -errno;
		snprintf(err, CLONE_ERR_LEN, "%s: %s", o->dir, dfsr_strerror(rc));
		return rc;
	}
	rc = clone_info_read(dfd, &res->info);
	if (rc < 0) {
		snprintf(err, CLONE_ERR_LEN, "%s: %s", o->dir,
			 rc == -ENOENT    ? "not a clone export (no " CLONE_DESC_FILE ")"
			 : rc == -EBADMSG ? CLONE_DESC_FILE " is damaged"
					  : dfsr_strerror(rc));
		goto out_close;
	}
	if (strcmp(res->info.folder, o->folder->name) != 0) {
		snprintf(err, CLONE_ERR_LEN, "%s is a clone of folder '%s', not of '%s'", o->dir,
			 res->info.folder, o->folder->name);
		rc = -EINVAL;
		goto out_close;
	}
	*dbfd = openat(dfd, CLONE_DB_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (*dbfd < 0) {
		rc = -errno;
		snprintf(err, CLONE_ERR_LEN, "%s/%s: %s", o->dir, CLONE_DB_DIR, dfsr_strerror(rc));
	}
out_close:
	close(dfd);
	return rc;
}

/* Refuses a folder that has a database already; prepares DfsrPrivate. */
static int import_target(const struct clone_import_opts *o, int *priv,
			 char err[static CLONE_ERR_LEN])
{
	char lerr[LAYOUT_ERR_LEN];
	struct stat st;
	int rc;

	/* layout_prepare() makes an empty db/; a database has its CURRENT file */
	if (fstatat(o->root_fd, LAYOUT_PRIVATE "/" LAYOUT_DB "/CURRENT", &st,
		    AT_SYMLINK_NOFOLLOW) == 0) {
		snprintf(err, CLONE_ERR_LEN,
			 "folder %s has a database already (%s/" LAYOUT_PRIVATE "/" LAYOUT_DB
			 "): a clone is imported before a member's first start",
			 o->folder->name, o->folder->path);
		return -EEXIST;
	}
	rc = layout_prepare(o->root_fd, lerr);
	if (rc < 0) {
		snprintf(err, CLONE_ERR_LEN, "%s", lerr);
		return rc;
	}
	*priv = openat(o->root_fd, LAYOUT_PRIVATE, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (*priv < 0) {
		rc = -errno;
		snprintf(err, CLONE_ERR_LEN, "%s/%s: %s", o->folder->path, LAYOUT_PRIVATE,
			 dfsr_strerror(rc));
		return rc;
	}
	return 0;
}

/* Removes DfsrPrivate/db.import.* left by imports that died (no member runs here yet). */
static void rm_leftovers(int priv)
{
	DIR *d = dfsr_opendir_at(priv, ".");
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, CLONE_TMP_NAME ".", sizeof(CLONE_TMP_NAME)))
			(void)dfsr_remove_tree(priv, de->d_name);
	closedir(d);
}

int clone_import(const struct clone_import_opts *o, struct clone_import_result *out,
		 char err[static CLONE_ERR_LEN])
{
	struct clone_import_result res;
	char tmp[64];
	int dbfd = -1, priv = -1, tfd, rc;

	err[0] = '\0';
	memset(&res, 0, sizeof(res));
	rc = import_check(o, &dbfd, &res, err);
	if (rc < 0)
		return rc;
	rc = import_target(o, &priv, err);
	if (rc < 0)
		goto out_close;
	snprintf(tmp, sizeof(tmp), "%s.%d", CLONE_TMP_NAME, (int)getpid());
	rm_leftovers(priv);
	if (mkdirat(priv, tmp, 0700) < 0) {
		rc = -errno;
		snprintf(err, CLONE_ERR_LEN, "%s/%s/%s: %s", o->folder->path, LAYOUT_PRIVATE, tmp,
			 dfsr_strerror(rc));
		goto out_close;
	}
	tfd = openat(priv, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (tfd < 0) {
		rc = -errno;
	} else {
		rc = copy_flat(dbfd, tfd, err);
		dbfd = -1; /* taken by copy_flat() */
		close(tfd);
	}
	if (rc == 0)
		rc = adopt(o, priv, tmp, &res, err);
	if (rc == 0 && unlinkat(priv, LAYOUT_DB, AT_REMOVEDIR) < 0 && errno != ENOENT) {
		rc = -errno; /* an empty db/ goes; anything in it stays and stops us */
		snprintf(err, CLONE_ERR_LEN, "%s/%s/%s: %s", o->folder->path, LAYOUT_PRIVATE,
			 LAYOUT_DB,
			 rc == -ENOTEMPTY ? "not empty (remove it if no member ever started here)"
					  : dfsr_strerror(rc));
	}
	if (rc == 0 && renameat2(priv, tmp, priv, LAYOUT_DB, RENAME_NOREPLACE) < 0) {
		rc = -errno;
		snprintf(err, CLONE_ERR_LEN, "putting the database in place: %s",
			 rc == -EEXIST ? "DfsrPrivate/db appeared meanwhile (did the member start?)"
				       : dfsr_strerror(rc));
	}
	if (rc == 0)
		(void)dfsr_fsync_dir(
			priv); /* in place either way; a failure here changes nothing */
	if (rc < 0) {
		if (!err[0])
			snprintf(err, CLONE_ERR_LEN, "%s", dfsr_strerror(rc));
		(void)dfsr_remove_tree(priv, tmp);
		goto out_close;
	}
	*out = res;
out_close:
	if (dbfd >= 0)
		close(dbfd);
	if (priv >= 0)
		close(priv);
	return rc;
}
