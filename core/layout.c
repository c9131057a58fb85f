/*
 * layout.c - the hidden DfsrPrivate folder and its two XML manifests.
 *
 * layout_prepare() makes <path>/DfsrPrivate and its subdirectories exist with mode 0700
 * (owner root when we run as root), writes an empty manifest where none exists, and proves
 * that the directory is writable by creating and removing a test file, so that a read-only
 * or full disk is reported at start and not in the middle of a conflict.
 *
 * A manifest is small, rewritten whole and replaced atomically: the new document is
 * serialised in memory (xmlDocDumpFormatMemoryEnc), written to a temporary name inside
 * DfsrPrivate, fsync'ed, renamed over the old one and the directory fsync'ed. Readers
 * therefore see the old or the new document, never half of one. Every access is relative to
 * the DfsrPrivate descriptor; libxml2 only ever sees bytes in memory.
 *
 * The file is untrusted input (anyone with root could edit it, and a crash may leave
 * anything): it is read with a size limit, parsed with XML_PARSE_NONET and without entity
 * substitution, any document carrying a DTD is refused, and every field is checked; any
 * deviation is -EBADMSG. Names on Linux are bytes, not necessarily UTF-8, and may hold
 * characters XML 1.0 cannot carry (control characters, CR): such a value is written as
 * hex with enc="hex" on its element, so every name round-trips exactly.
 */
#include "core/layout.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MANIFEST_MAX_BYTES (64 * 1024 * 1024) /* 64 MiB: ~200k entries; beyond is damage */
#define LAYOUT_WRITE_TEST  ".dfsr-write-test"

static const char *const layout_subdirs[] = {
	LAYOUT_DB, LAYOUT_STAGING, LAYOUT_INSTALLING, LAYOUT_CONFLICT, LAYOUT_PREEXISTING,
};

static const char *const type_names[] = {
	[MANIFEST_TYPE_CONFLICT] = "conflict",
	[MANIFEST_TYPE_NAME_CONFLICT] = "name-conflict",
	[MANIFEST_TYPE_DELETED] = "deleted",
	[MANIFEST_TYPE_PREEXISTING] = "preexisting",
};

const char *manifest_type_name(enum manifest_type t)
{
	if ((unsigned)t >= DFSR_ARRAY_SIZE(type_names))
		return "unknown";
	return type_names[t];
}

static const char *manifest_file(enum manifest_kind kind)
{
	return kind == MANIFEST_PREEXISTING ? LAYOUT_PREEXIST_MANIFEST : LAYOUT_CONFLICT_MANIFEST;
}

static const char *manifest_root(enum manifest_kind kind)
{
	return kind == MANIFEST_PREEXISTING ? "PreExistingManifest" : "ConflictAndDeletedManifest";
}

/* --- atomic file replace ------------------------------------------------------------ */

/* The temporary name a replace of @name writes first. */
static void tmp_name(const char *name, char *buf, size_t len)
{
	snprintf(buf, len, ".%s.tmp", name);
}

/* Writes @data as @name in @dirfd: temporary name, fsync, rename, fsync the directory. */
static int replace_file(int dirfd, const char *name, const void *data, size_t len)
{
	char tmp[128];
	int fd, rc;

	tmp_name(name, tmp, sizeof(tmp));
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	rc = dfsr_write_all(fd, data, len);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && renameat(dirfd, tmp, dirfd, name) < 0)
		rc = -errno;
	if (rc < 0) {
		unlinkat(dirfd, tmp, 0);
		return rc;
	}
	return dfsr_fsync_dir(dirfd);
}

/* --- reading and writing documents ---------------------------------------------------- */

static int doc_check(xmlDocPtr doc);

/*
 * Parses the manifest of @kind and checks every entry, so that a damaged manifest is
 * refused as a whole: -ENOENT if there is none, -EBADMSG if it is not one.
 */
static int doc_load(int private_fd, enum manifest_kind kind, xmlDocPtr *out)
{
	struct dfsr_buf b;
	xmlDocPtr doc;
	xmlNodePtr root;
	int rc;

	dfsr_buf_init(&b);
	rc = dfsr_read_small(private_fd, manifest_file(kind), MANIFEST_MAX_BYTES, &b);
	if (rc < 0)
		goto out_release;
	doc = xmlReadMemory(b.p, (int)b.len, manifest_file(kind), "UTF-8",
			    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (!doc) {
		rc = -EBADMSG;
		goto out_release;
	}
	root = xmlDocGetRootElement(doc);
	if (doc->intSubset || doc->extSubset || !root ||
	    xmlStrcmp(root->name, (const xmlChar *)manifest_root(kind)) != 0) {
		xmlFreeDoc(doc);
		rc = -EBADMSG;
		goto out_release;
	}
	rc = doc_check(doc);
	if (rc < 0) {
		xmlFreeDoc(doc);
		goto out_release;
	}
	*out = doc;
out_release:
	dfsr_buf_release(&b);
	return rc;
}

static int doc_new(enum manifest_kind kind, xmlDocPtr *out)
{
	xmlDocPtr doc = xmlNewDoc((const xmlChar *)"1.0");
	xmlNodePtr root;

	if (!doc)
		return -ENOMEM;
	root = xmlNewDocNode(doc, NULL, (const xmlChar *)manifest_root(kind), NULL);
	if (!root) {
		xmlFreeDoc(doc);
		return -ENOMEM;
	}
	xmlDocSetRootElement(doc, root);
	*out = doc;
	return 0;
}

static int doc_save(int private_fd, enum manifest_kind kind, xmlDocPtr doc)
{
	xmlChar *mem = NULL;
	int size = 0, rc;

	xmlDocDumpFormatMemoryEnc(doc, &mem, &size, "UTF-8", 1);
	if (!mem || size <= 0) {
		xmlFree(mem);
		return -ENOMEM;
	}
	rc = replace_file(private_fd, manifest_file(kind), mem, (size_t)size);
	xmlFree(mem);
	return rc;
}

/* --- field encoding ---------------------------------------------------------------- */

/* True if @s is valid UTF-8 made only of characters XML 1.0 text carries unchanged. */
static bool xml_safe(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		unsigned c = *p;
		size_t n = c < 0x80             ? 1
			   : (c & 0xe0) == 0xc0 ? 2
			   : (c & 0xf0) == 0xe0 ? 3
			   : (c & 0xf8) == 0xf0 ? 4
						: 0;
		uint32_t cp;

		if (n == 0 || (c < 0x20 && c != '\t' && c != '\n') || c == 0x7f)
			return false;
		cp = n == 1 ? c : (c & (0x7fu >> n));
		for (size_t i = 1; i < n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i] & 0x3fu);
		}
		if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe || cp == 0xffff)
			return false;
		p += n;
	}
	return true;
}

static int add_text(xmlNodePtr parent, const char *tag, const char *value)
{
	xmlNodePtr n;

	if (xml_safe(value)) {
		n = xmlNewTextChild(parent, NULL, (const xmlChar *)tag, (const xmlChar *)value);
		return n ? 0 : -ENOMEM;
	} else {
		static const char digits[] = "0123456789abcdef";
		size_t len = strlen(value);
		char *hex = malloc(2 * len + 1);

		if (!hex)
			return -ENOMEM;
		for (size_t i = 0; i < len; i++) {
			hex[2 * i] = digits[(unsigned char)value[i] >> 4];
			hex[2 * i + 1] = digits[(unsigned char)value[i] & 0xf];
		}
		hex[2 * len] = '\0';
		n = xmlNewTextChild(parent, NULL, (const xmlChar *)tag, (const xmlChar *)hex);
		free(hex);
		if (!n || !xmlSetProp(n, (const xmlChar *)"enc", (const xmlChar *)"hex"))
			return -ENOMEM;
		return 0;
	}
}

static void format_time(int64_t ns, char *buf, size_t len)
{
	int64_t frac = ns % 1000000000;
	size_t n;

	if (frac < 0)
		frac += 1000000000;
	dfsr_time_iso(ns, buf, len);
	n = strlen(buf);
	if (frac && n > 0 && n + 11 < len)
		snprintf(buf + n - 1, len - n + 1, ".%09" PRId64 "Z", frac);
}

static int entry_to_node(xmlNodePtr root, const struct manifest_entry *e)
{
	char uid[DFSR_UID_GUID_LEN], db[DFSR_UID_GUID_LEN], gvsn[80], tm[48], size[24];
	xmlNodePtr r = xmlNewChild(root, NULL, (const xmlChar *)"Resource", NULL);
	int rc;

	if (!r)
		return -ENOMEM;
	dfsr_uid_guid(&e->uid, uid);
	dfsr_uid_guid(&e->gvsn_db, db);
	snprintf(gvsn, sizeof(gvsn), "{%s}-v%" PRIu64, db, e->gvsn_counter);
	format_time(e->time_ns, tm, sizeof(tm));
	snprintf(size, sizeof(size), "%" PRIu64, e->size);
	rc = add_text(r, "Path", e->path ? e->path : "");
	if (rc == 0)
		rc = add_text(r, "Uid", uid);
	if (rc == 0)
		rc = add_text(r, "Gvsn", gvsn);
	if (rc == 0)
		rc = add_text(r, "NewName", e->preserved ? e->preserved : "");
	if (rc == 0)
		rc = add_text(r, "Type", manifest_type_name(e->type));
	if (rc == 0)
		rc = add_text(r, "Time", tm);
	if (rc == 0)
		rc = add_text(r, "Size", size);
	return rc;
}

/* --- field decoding ----------------------------------------------------------------- */

/* The decoded text of one field; the caller frees it with free(). */
struct field {
	const char *tag;
	char *val;
};

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Turns enc="hex" text back into bytes in place; refuses NUL and odd lengths. */
static int unhex(char *s)
{
	size_t len = strlen(s);

	if (len % 2)
		return -EBADMSG;
	for (size_t i = 0; i < len / 2; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);

		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
			return -EBADMSG;
		s[i] = (char)((hi << 4) | lo);
	}
	s[len / 2] = '\0';
	return 0;
}

static int node_text(xmlNodePtr n, char **out)
{
	xmlChar *c, *enc;
	char *s;
	int rc = 0;

	for (xmlNodePtr k = n->children; k; k = k->next)
		if (k->type != XML_TEXT_NODE && k->type != XML_CDATA_SECTION_NODE)
			return -EBADMSG;
	c = xmlNodeGetContent(n);
	s = strdup(c ? (const char *)c : "");
	xmlFree(c);
	if (!s)
		return -ENOMEM;
	enc = xmlGetProp(n, (const xmlChar *)"enc");
	if (enc) {
		rc = xmlStrcmp(enc, (const xmlChar *)"hex") == 0 ? unhex(s) : -EBADMSG;
		xmlFree(enc);
	}
	if (rc < 0) {
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (*s < '0' || *s > '9')
		return -EBADMSG;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -EBADMSG;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	if (*s)
		return -EBADMSG;
	*out = v;
	return 0;
}

static int parse_gvsn(const char *s, struct manifest_entry *e)
{
	char guid[DFSR_UID_GUID_LEN + 2];
	size_t glen = DFSR_UID_GUID_LEN + 1; /* "{" + 36 + "}" */

	if (strlen(s) < glen + 3 || strncmp(s + glen, "-v", 2) != 0)
		return -EBADMSG;
	memcpy(guid, s, glen);
	guid[glen] = '\0';
	if (dfsr_uid_parse(guid, &e->gvsn_db) < 0)
		return -EBADMSG;
	return parse_u64(s + glen + 2, &e->gvsn_counter);
}

static int parse_time(const char *s, int64_t *out)
{
	struct tm tm;
	const char *p;
	int64_t frac = 0, sec;

	memset(&tm, 0, sizeof(tm));
	p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!p)
		return -EBADMSG;
	if (*p == '.') {
		int digits = 0;

		for (p++; *p >= '0' && *p <= '9' && digits < 9; p++, digits++)
			frac = frac * 10 + (*p - '0');
		if (digits == 0)
			return -EBADMSG;
		for (; digits < 9; digits++)
			frac *= 10;
	}
	if (strcmp(p, "Z") != 0)
		return -EBADMSG;
	sec = (int64_t)timegm(&tm);
	if (sec < -9000000000LL || sec > 9000000000LL)
		return -EBADMSG;
	*out = sec * 1000000000 + frac;
	return 0;
}

static int parse_type(const char *s, enum manifest_type *out)
{
	for (size_t i = 0; i < DFSR_ARRAY_SIZE(type_names); i++) {
		if (strcmp(s, type_names[i]) == 0) {
			*out = (enum manifest_type)i;
			return 0;
		}
	}
	return -EBADMSG;
}

enum {
	F_PATH,
	F_UID,
	F_GVSN,
	F_NEWNAME,
	F_TYPE,
	F_TIME,
	F_SIZE,
	F_COUNT
};

static const char *const field_tags[F_COUNT] = {
	"Path", "Uid", "Gvsn", "NewName", "Type", "Time", "Size",
};

static void fields_free(char *v[F_COUNT])
{
	for (int i = 0; i < F_COUNT; i++) {
		free(v[i]);
		v[i] = NULL;
	}
}

/* Collects the seven fields of one <Resource>; each exactly once. */
static int node_fields(xmlNodePtr res, char *v[F_COUNT])
{
	for (xmlNodePtr k = res->children; k; k = k->next) {
		int i, rc;

		if (k->type == XML_TEXT_NODE && xmlIsBlankNode(k))
			continue;
		if (k->type == XML_COMMENT_NODE)
			continue;
		if (k->type != XML_ELEMENT_NODE)
			return -EBADMSG;
		for (i = 0; i < F_COUNT; i++)
			if (xmlStrcmp(k->name, (const xmlChar *)field_tags[i]) == 0)
				break;
		if (i == F_COUNT)
			continue; /* a later version's field */
		if (v[i])
			return -EBADMSG;
		rc = node_text(k, &v[i]);
		if (rc < 0)
			return rc;
	}
	for (int i = 0; i < F_COUNT; i++)
		if (!v[i])
			return -EBADMSG;
	return 0;
}

/* Decodes one <Resource>; the entry's strings point into @v. */
static int node_to_entry(xmlNodePtr res, char *v[F_COUNT], struct manifest_entry *e)
{
	int rc = node_fields(res, v);

	if (rc < 0)
		return rc;
	memset(e, 0, sizeof(*e));
	e->path = v[F_PATH];
	e->preserved = v[F_NEWNAME];
	if (dfsr_uid_parse(v[F_UID], &e->uid) < 0 || parse_gvsn(v[F_GVSN], e) < 0 ||
	    parse_type(v[F_TYPE], &e->type) < 0 || parse_time(v[F_TIME], &e->time_ns) < 0 ||
	    parse_u64(v[F_SIZE], &e->size) < 0)
		return -EBADMSG;
	return 0;
}

/* Checks that every child of the root is a <Resource> (blanks and comments aside). */
static bool is_resource(xmlNodePtr n, int *rc)
{
	*rc = 0;
	if (n->type == XML_ELEMENT_NODE && xmlStrcmp(n->name, (const xmlChar *)"Resource") == 0)
		return true;
	if (!(n->type == XML_TEXT_NODE && xmlIsBlankNode(n)) && n->type != XML_COMMENT_NODE)
		*rc = -EBADMSG;
	return false;
}

/* Drops the indentation between elements, so a re-saved document is indented again. */
static void strip_blanks(xmlNodePtr parent)
{
	xmlNodePtr n, next;

	for (n = parent->children; n; n = next) {
		next = n->next;
		if (n->type == XML_TEXT_NODE && xmlIsBlankNode(n)) {
			xmlUnlinkNode(n);
			xmlFreeNode(n);
		}
	}
}

static int doc_check(xmlDocPtr doc)
{
	xmlNodePtr root = xmlDocGetRootElement(doc);
	int rc = 0;

	strip_blanks(root);
	for (xmlNodePtr n = root->children; n && rc == 0; n = n->next) {
		char *v[F_COUNT] = { 0 };
		struct manifest_entry e;

		if (is_resource(n, &rc)) {
			strip_blanks(n);
			rc = node_to_entry(n, v, &e);
		}
		fields_free(v);
	}
	return rc;
}

/* --- public manifest API -------------------------------------------------------------- */

int manifest_append(int private_fd, enum manifest_kind kind, const struct manifest_entry *e)
{
	xmlDocPtr doc = NULL;
	int rc = doc_load(private_fd, kind, &doc);

	if (rc == -ENOENT)
		rc = doc_new(kind, &doc);
	if (rc < 0)
		return rc;
	rc = entry_to_node(xmlDocGetRootElement(doc), e);
	if (rc == 0)
		rc = doc_save(private_fd, kind, doc);
	xmlFreeDoc(doc);
	return rc;
}

int manifest_list(int private_fd, enum manifest_kind kind, manifest_visit_fn fn, void *arg)
{
	xmlDocPtr doc = NULL;
	int rc = doc_load(private_fd, kind, &doc);

	if (rc < 0)
		return rc;
	for (xmlNodePtr n = xmlDocGetRootElement(doc)->children; n && rc == 0; n = n->next) {
		char *v[F_COUNT] = { 0 };
		struct manifest_entry e;

		if (!is_resource(n, &rc))
			continue;
		rc = node_to_entry(n, v, &e);
		if (rc == 0)
			rc = fn(arg, &e);
		fields_free(v);
	}
	xmlFreeDoc(doc);
	return rc;
}

int manifest_remove(int private_fd, enum manifest_kind kind, const char *preserved)
{
	xmlDocPtr doc = NULL;
	xmlNodePtr n, next;
	size_t removed = 0;
	int rc = doc_load(private_fd, kind, &doc);

	if (rc < 0)
		return rc;
	for (n = xmlDocGetRootElement(doc)->children; n && rc == 0; n = next) {
		char *v[F_COUNT] = { 0 };
		struct manifest_entry e;

		next = n->next;
		if (!is_resource(n, &rc))
			continue;
		rc = node_to_entry(n, v, &e);
		if (rc == 0 && strcmp(e.preserved, preserved) == 0) {
			xmlUnlinkNode(n);
			xmlFreeNode(n);
			removed++;
		}
		fields_free(v);
	}
	if (rc == 0 && removed == 0)
		rc = -ENOENT;
	if (rc == 0)
		rc = doc_save(private_fd, kind, doc);
	xmlFreeDoc(doc);
	return rc;
}

/* --- layout_prepare ----------------------------------------------------------------- */

static int prep_fail(char *err, int rc, const char *what, const char *name)
{
	snprintf(err, LAYOUT_ERR_LEN, "%s%s%s: %s: %s", LAYOUT_PRIVATE, *name ? "/" : "", name,
		 what, dfsr_strerror(rc));
	return rc;
}

/* Maps errors onto the set layout_prepare() promises. */
static int prep_errno(int rc)
{
	switch (rc) {
	case -EACCES:
	case -EROFS:
	case -ENOSPC:
	case -ENOTDIR:
	case -ENOMEM:
		return rc;
	case -EPERM:
		return -EACCES;
	case -ELOOP:
	case -EEXIST:
		return -ENOTDIR;
	case -EDQUOT:
		return -ENOSPC;
	default:
		return -EIO;
	}
}

/* mkdir if missing, refuse non-directories, then make it 0700 (and root's, as root). */
static int ensure_dir(int dirfd, const char *name)
{
	struct stat st;
	int fd, rc = 0;

	if (mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
		return -errno;
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ELOOP ? -ENOTDIR : -errno;
	if (fstat(fd, &st) < 0)
		rc = -errno;
	if (rc == 0 && geteuid() == 0 && (st.st_uid != 0 || st.st_gid != 0) && fchown(fd, 0, 0) < 0)
		rc = -errno;
	if (rc == 0 && (st.st_mode & 07777) != 0700 && fchmod(fd, 0700) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

static int ensure_manifest(int private_fd, enum manifest_kind kind)
{
	struct stat st;
	xmlDocPtr doc;
	int rc;

	if (fstatat(private_fd, manifest_file(kind), &st, AT_SYMLINK_NOFOLLOW) == 0)
		return 0;
	if (errno != ENOENT)
		return -errno;
	rc = doc_new(kind, &doc);
	if (rc < 0)
		return rc;
	rc = doc_save(private_fd, kind, doc);
	xmlFreeDoc(doc);
	return rc;
}

static int write_test(int private_fd)
{
	char name[64];
	int fd, rc;

	snprintf(name, sizeof(name), "%s.%d", LAYOUT_WRITE_TEST, (int)getpid());
	fd = openat(private_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	rc = dfsr_write_all(fd, "dfsr\n", 5);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (unlinkat(private_fd, name, 0) < 0 && rc == 0)
		rc = -errno;
	return rc;
}

int layout_prepare(int root_fd, char err[static LAYOUT_ERR_LEN])
{
	int pfd, rc;

	xmlInitParser(); /* thread: init; libxml2 must be initialised before threads use it */
	err[0] = '\0';
	rc = ensure_dir(root_fd, LAYOUT_PRIVATE);
	if (rc < 0)
		return prep_fail(err, prep_errno(rc), "cannot create or open", "");
	pfd = openat(root_fd, LAYOUT_PRIVATE, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (pfd < 0)
		return prep_fail(err, prep_errno(-errno), "cannot open", "");
	for (size_t i = 0; i < DFSR_ARRAY_SIZE(layout_subdirs); i++) {
		rc = ensure_dir(pfd, layout_subdirs[i]);
		if (rc < 0) {
			prep_fail(err, rc = prep_errno(rc), "cannot create or open",
				  layout_subdirs[i]);
			goto out_close;
		}
	}
	for (int k = MANIFEST_CONFLICT; k <= MANIFEST_PREEXISTING; k++) {
		char tmp[128];

		/* a temporary left by a crash in the middle of a replace */
		tmp_name(manifest_file((enum manifest_kind)k), tmp, sizeof(tmp));
		(void)unlinkat(pfd, tmp, 0);
		rc = ensure_manifest(pfd, (enum manifest_kind)k);
		if (rc < 0) {
			prep_fail(err, rc = prep_errno(rc), "cannot write",
				  manifest_file((enum manifest_kind)k));
			goto out_close;
		}
	}
	rc = write_test(pfd);
	if (rc < 0)
		prep_fail(err, rc = prep_errno(rc), "not writable", "");
out_close:
	close(pfd);
	return rc;
}
