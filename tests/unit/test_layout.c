/*
 * test_layout.c - core/layout.c: DfsrPrivate creation and repair, and the XML manifests
 * (round trip with hostile names, removal, corrupt files refused with -EBADMSG).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* cmocka.h needs setjmp.h, stdarg.h, stddef.h and stdint.h before it */
/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#include <sodium.h>

#include "core/layout.h"
#include "tests/unit/tmpdir.h"

struct fx {
	char dir[64];
	int root; /* O_PATH of dir */
	int priv; /* O_PATH of DfsrPrivate after prepare, or -1 */
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->priv = -1;
	*state = f;
	return test_tmpdir_make(f->dir, sizeof(f->dir), "layout", &f->root);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (f->priv >= 0)
		close(f->priv);
	close(f->root);
	if (test_tmpdir_remove(f->dir) < 0)
		return -1;
	free(f);
	return 0;
}

static void prepare(struct fx *f)
{
	char err[LAYOUT_ERR_LEN];
	int rc = layout_prepare(f->root, err);

	if (rc != 0)
		fail_msg("layout_prepare: %d %s", rc, err);
	if (f->priv < 0)
		f->priv = openat(f->root, LAYOUT_PRIVATE, O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(f->priv >= 0);
}

static void assert_dir_0700(int dirfd, const char *name)
{
	struct stat st;

	assert_int_equal(fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISDIR(st.st_mode));
	if ((st.st_mode & 07777) != 0700)
		fail_msg("%s has mode %o", name, (unsigned)(st.st_mode & 07777));
	assert_int_equal(st.st_uid, 0);
	assert_int_equal(st.st_gid, 0);
}

static int count_cb(void *arg, const struct manifest_entry *e)
{
	(void)e;
	(*(int *)arg)++;
	return 0;
}

/* Names in @dirfd, sorted and comma-joined, for comparing directory contents. */
static void list_dir(int dirfd, char *out, size_t len)
{
	struct dirent **ents;
	char path[64];
	int n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", dirfd);
	n = scandir(path, &ents, NULL, alphasort);
	assert_true(n >= 0);
	out[0] = '\0';
	for (int i = 0; i < n; i++) {
		if (strcmp(ents[i]->d_name, ".") && strcmp(ents[i]->d_name, "..")) {
			strncat(out, ents[i]->d_name, len - strlen(out) - 1);
			strncat(out, ",", len - strlen(out) - 1);
		}
		free(ents[i]);
	}
	free(ents);
}

static void prepare_creates_everything(void **state)
{
	struct fx *f = *state;
	char names[512];
	int n = -1;

	prepare(f);
	assert_dir_0700(f->root, LAYOUT_PRIVATE);
	assert_dir_0700(f->priv, LAYOUT_DB);
	assert_dir_0700(f->priv, LAYOUT_STAGING);
	assert_dir_0700(f->priv, LAYOUT_INSTALLING);
	assert_dir_0700(f->priv, LAYOUT_CONFLICT);
	assert_dir_0700(f->priv, LAYOUT_PREEXISTING);
	list_dir(f->priv, names, sizeof(names));
	assert_string_equal(names, "ConflictAndDeleted,ConflictAndDeletedManifest.xml,Installing,"
				   "PreExisting,PreExistingManifest.xml,Staging,db,");
	n = 0;
	assert_int_equal(manifest_list(f->priv, MANIFEST_CONFLICT, count_cb, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(manifest_list(f->priv, MANIFEST_PREEXISTING, count_cb, &n), 0);
	assert_int_equal(n, 0);
}

static void prepare_is_idempotent_and_repairs(void **state)
{
	struct fx *f = *state;
	struct manifest_entry e = { .type = MANIFEST_TYPE_DELETED, .path = "x", .preserved = "y" };
	char before[512], after[512];
	int n = 0, fd;

	prepare(f);
	dfsr_uid_random(&e.uid);
	assert_int_equal(manifest_append(f->priv, MANIFEST_CONFLICT, &e), 0);
	list_dir(f->priv, before, sizeof(before));
	/* loosen the modes, remove a subdirectory: prepare puts it back */
	assert_int_equal(fchmodat(f->root, LAYOUT_PRIVATE, 0755, 0), 0);
	assert_int_equal(fchmodat(f->priv, LAYOUT_STAGING, 0777, 0), 0);
	assert_int_equal(unlinkat(f->priv, LAYOUT_INSTALLING, AT_REMOVEDIR), 0);
	/* and a temporary left by a crash during a manifest replace: removed */
	fd = openat(f->priv, "." LAYOUT_CONFLICT_MANIFEST ".tmp", O_WRONLY | O_CREAT | O_CLOEXEC,
		    0600);
	assert_true(fd >= 0);
	close(fd);
	prepare(f);
	assert_dir_0700(f->root, LAYOUT_PRIVATE);
	assert_dir_0700(f->priv, LAYOUT_STAGING);
	assert_dir_0700(f->priv, LAYOUT_INSTALLING);
	list_dir(f->priv, after, sizeof(after));
	assert_string_equal(before, after);
	/* an existing manifest is kept */
	assert_int_equal(manifest_list(f->priv, MANIFEST_CONFLICT, count_cb, &n), 0);
	assert_int_equal(n, 1);
}

static void prepare_refuses_non_directory(void **state)
{
	struct fx *f = *state;
	char err[LAYOUT_ERR_LEN];
	int fd;

	fd = openat(f->root, LAYOUT_PRIVATE, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(layout_prepare(f->root, err), -ENOTDIR);
	assert_non_null(strstr(err, LAYOUT_PRIVATE));
	assert_int_equal(unlinkat(f->root, LAYOUT_PRIVATE, 0), 0);
	assert_int_equal(symlinkat("/tmp", f->root, LAYOUT_PRIVATE), 0);
	assert_int_equal(layout_prepare(f->root, err), -ENOTDIR);
	assert_int_equal(unlinkat(f->root, LAYOUT_PRIVATE, 0), 0);
	/* a subdirectory that is a file */
	prepare(f);
	assert_int_equal(unlinkat(f->priv, LAYOUT_STAGING, AT_REMOVEDIR), 0);
	fd = openat(f->priv, LAYOUT_STAGING, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(layout_prepare(f->root, err), -ENOTDIR);
	assert_non_null(strstr(err, LAYOUT_STAGING));
}

/* Entries with hostile names: XML specials, non-UTF-8, control characters, spaces. */
static const char *const paths[] = {
	"docs/report <final> & \"draft\".docx",
	"bad\xff\xfe-utf8/\x01\x1f ctl\r\n.txt",
	"   ",
	"caf\xc3\xa9/\xe2\x82\xac.txt",
};

struct collected {
	struct manifest_entry e[8];
	char *path[8];
	char *pres[8];
	int n;
	int stop_at;
};

static int collect_cb(void *arg, const struct manifest_entry *e)
{
	struct collected *c = arg;

	if (c->n == 8)
		return -E2BIG;
	c->e[c->n] = *e;
	c->path[c->n] = strdup(e->path);
	c->pres[c->n] = strdup(e->preserved);
	c->e[c->n].path = c->path[c->n]; /* the callback's strings die with the callback */
	c->e[c->n].preserved = c->pres[c->n];
	c->n++;
	return c->n == c->stop_at ? 42 : 0;
}

static void collected_free(struct collected *c)
{
	for (int i = 0; i < c->n; i++) {
		free(c->path[i]);
		free(c->pres[i]);
	}
	memset(c, 0, sizeof(*c));
}

static void make_entry(struct manifest_entry *e, int i, char *pres, size_t len)
{
	memset(e, 0, sizeof(*e));
	e->time_ns = 1795255200LL * 1000000000LL + (i % 2 ? 123456789 : 0) + i;
	e->type = (enum manifest_type)(i % 4);
	e->path = paths[i];
	snprintf(pres, len, "name-{%d}\x02.txt", i);
	e->preserved = pres;
	dfsr_uid_random(&e->uid);
	dfsr_uid_random(&e->gvsn_db);
	e->gvsn_counter = i == 3 ? UINT64_MAX : (uint64_t)i * 1000;
	e->size = i == 2 ? UINT64_MAX : (uint64_t)i << 33;
}

static void assert_entry_equal(const struct manifest_entry *a, const struct manifest_entry *b,
			       const char *path, const char *pres)
{
	assert_int_equal(a->time_ns, b->time_ns);
	assert_int_equal(a->type, b->type);
	assert_string_equal(a->path, path);
	assert_string_equal(a->preserved, pres);
	assert_true(dfsr_uid_equal(&a->uid, &b->uid));
	assert_true(dfsr_uid_equal(&a->gvsn_db, &b->gvsn_db));
	assert_int_equal(a->gvsn_counter, b->gvsn_counter);
	assert_int_equal(a->size, b->size);
}

static void manifest_round_trip(void **state)
{
	struct fx *f = *state;
	struct manifest_entry in[4];
	char pres[4][32], names[512];
	struct collected c = { 0 };

	prepare(f);
	for (int i = 0; i < 4; i++) {
		make_entry(&in[i], i, pres[i], sizeof(pres[i]));
		assert_int_equal(manifest_append(f->priv, MANIFEST_CONFLICT, &in[i]), 0);
	}
	assert_int_equal(manifest_list(f->priv, MANIFEST_CONFLICT, collect_cb, &c), 0);
	assert_int_equal(c.n, 4);
	for (int i = 0; i < 4; i++)
		assert_entry_equal(&c.e[i], &in[i], paths[i], pres[i]);
	collected_free(&c);

	/* the other manifest is separate */
	assert_int_equal(manifest_list(f->priv, MANIFEST_PREEXISTING, collect_cb, &c), 0);
	assert_int_equal(c.n, 0);
	assert_int_equal(manifest_append(f->priv, MANIFEST_PREEXISTING, &in[1]), 0);
	assert_int_equal(manifest_list(f->priv, MANIFEST_PREEXISTING, collect_cb, &c), 0);
	assert_int_equal(c.n, 1);
	assert_entry_equal(&c.e[0], &in[1], paths[1], pres[1]);
	collected_free(&c);

	/* a callback's non-zero value stops the walk and is returned */
	c.stop_at = 2;
	assert_int_equal(manifest_list(f->priv, MANIFEST_CONFLICT, collect_cb, &c), 42);
	assert_int_equal(c.n, 2);
	collected_free(&c);

	/* remove the second one; the rest stay in order */
	assert_int_equal(manifest_remove(f->priv, MANIFEST_CONFLICT, pres[1]), 0);
	assert_int_equal(manifest_remove(f->priv, MANIFEST_CONFLICT, pres[1]), -ENOENT);
	assert_int_equal(manifest_remove(f->priv, MANIFEST_CONFLICT, "nope"), -ENOENT);
	assert_int_equal(manifest_list(f->priv, MANIFEST_CONFLICT, collect_cb, &c), 0);
	assert_int_equal(c.n, 3);
	assert_entry_equal(&c.e[0], &in[0], paths[0], pres[0]);
	assert_entry_equal(&c.e[1], &in[2], paths[2], pres[2]);
	assert_entry_equal(&c.e[2], &in[3], paths[3], pres[3]);
	collected_free(&c);

	/* no temporary files are left behind */
	list_dir(f->priv, names, sizeof(names));
	assert_string_equal(names, "ConflictAndDeleted,ConflictAndDeletedManifest.xml,Installing,"
				   "PreExisting,PreExistingManifest.xml,Staging,db,");
	assert_string_equal(manifest_type_name(MANIFEST_TYPE_NAME_CONFLICT), "name-conflict");
	assert_string_equal(manifest_type_name(MANIFEST_TYPE_PREEXISTING), "preexisting");
}

static void manifest_missing_is_enoent_then_created(void **state)
{
	struct fx *f = *state;
	struct manifest_entry e;
	char pres[32];
	int n = 0;

	prepare(f);
	assert_int_equal(unlinkat(f->priv, LAYOUT_CONFLICT_MANIFEST, 0), 0);
	assert_int_equal(manifest_list(f->priv, MANIFEST_CONFLICT, count_cb, &n), -ENOENT);
	assert_int_equal(manifest_remove(f->priv, MANIFEST_CONFLICT, "x"), -ENOENT);
	make_entry(&e, 0, pres, sizeof(pres));
	assert_int_equal(manifest_append(f->priv, MANIFEST_CONFLICT, &e), 0);
	assert_int_equal(manifest_list(f->priv, MANIFEST_CONFLICT, count_cb, &n), 0);
	assert_int_equal(n, 1);
}

static void write_manifest(struct fx *f, const char *text)
{
	int fd = openat(f->priv, LAYOUT_CONFLICT_MANIFEST, O_WRONLY | O_TRUNC | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

#define RES_OK                                                                           \
	"<Path>a</Path><Uid>01234567-89AB-CDEF-FEDC-BA9876543210</Uid>"                  \
	"<Gvsn>{01234567-89AB-CDEF-FEDC-BA9876543210}-v7</Gvsn><NewName>a-{x}</NewName>" \
	"<Type>conflict</Type><Time>2026-11-21T10:00:00Z</Time><Size>5</Size>"

static void expect_bad(struct fx *f, const char *text)
{
	struct manifest_entry e;
	char pres[32];
	int n = 0;

	write_manifest(f, text);
	if (manifest_list(f->priv, MANIFEST_CONFLICT, count_cb, &n) != -EBADMSG)
		fail_msg("accepted: %s", text);
	make_entry(&e, 0, pres, sizeof(pres));
	if (manifest_append(f->priv, MANIFEST_CONFLICT, &e) != -EBADMSG)
		fail_msg("append accepted: %s", text);
	if (manifest_remove(f->priv, MANIFEST_CONFLICT, "a-{x}") != -EBADMSG)
		fail_msg("remove accepted: %s", text);
}

static void corrupt_manifests(void **state)
{
	struct fx *f = *state;
	int n = 0;

	prepare(f);
	/* the good one first, so the bad ones differ in one thing */
	write_manifest(f, "<?xml version=\"1.0\"?>\n<ConflictAndDeletedManifest><Resource>" RES_OK
			  "</Resource><!-- c --></ConflictAndDeletedManifest>");
	assert_int_equal(manifest_list(f->priv, MANIFEST_CONFLICT, count_cb, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(manifest_remove(f->priv, MANIFEST_CONFLICT, "a-{x}"), 0);

	expect_bad(f, "");
	expect_bad(f, "\x00\x01garbage");
	expect_bad(f, "not xml at all");
	expect_bad(f, "<ConflictAndDeletedManifest><Resource>" RES_OK);
	expect_bad(f, "<PreExistingManifest/>");
	expect_bad(f, "<ConflictAndDeletedManifest><Other/></ConflictAndDeletedManifest>");
	expect_bad(f, "<ConflictAndDeletedManifest>text</ConflictAndDeletedManifest>");
	expect_bad(f, "<ConflictAndDeletedManifest><Resource><Path>a</Path></Resource>"
		      "</ConflictAndDeletedManifest>");
	expect_bad(f, "<ConflictAndDeletedManifest><Resource>" RES_OK "<Size>6</Size></Resource>"
		      "</ConflictAndDeletedManifest>");
	expect_bad(f, "<ConflictAndDeletedManifest><Resource>" RES_OK "</Resource><Resource>"
		      "<Path>b</Path><Uid>zz</Uid><Gvsn>{01234567-89AB-CDEF-FEDC-BA9876543210}-v1"
		      "</Gvsn><NewName>b</NewName><Type>deleted</Type><Time>2026-11-21T10:00:00Z"
		      "</Time><Size>1</Size></Resource></ConflictAndDeletedManifest>");
	expect_bad(f, "<ConflictAndDeletedManifest><Resource>"
		      "<Path>a</Path><Uid>01234567-89AB-CDEF-FEDC-BA9876543210</Uid>"
		      "<Gvsn>{01234567-89AB-CDEF-FEDC-BA9876543210}-v</Gvsn><NewName>a</NewName>"
		      "<Type>conflict</Type><Time>2026-11-21T10:00:00Z</Time><Size>5</Size>"
		      "</Resource></ConflictAndDeletedManifest>");
	expect_bad(f, "<ConflictAndDeletedManifest><Resource>"
		      "<Path>a</Path><Uid>01234567-89AB-CDEF-FEDC-BA9876543210</Uid>"
		      "<Gvsn>{01234567-89AB-CDEF-FEDC-BA9876543210}-v1</Gvsn><NewName>a</NewName>"
		      "<Type>exploded</Type><Time>2026-11-21T10:00:00Z</Time><Size>5</Size>"
		      "</Resource></ConflictAndDeletedManifest>");
	expect_bad(f, "<ConflictAndDeletedManifest><Resource>"
		      "<Path>a</Path><Uid>01234567-89AB-CDEF-FEDC-BA9876543210</Uid>"
		      "<Gvsn>{01234567-89AB-CDEF-FEDC-BA9876543210}-v1</Gvsn><NewName>a</NewName>"
		      "<Type>conflict</Type><Time>yesterday</Time><Size>-5</Size>"
		      "</Resource></ConflictAndDeletedManifest>");
	expect_bad(f, "<ConflictAndDeletedManifest><Resource>"
		      "<Path enc=\"rot13\">a</Path><Uid>01234567-89AB-CDEF-FEDC-BA9876543210</Uid>"
		      "<Gvsn>{01234567-89AB-CDEF-FEDC-BA9876543210}-v1</Gvsn><NewName>a</NewName>"
		      "<Type>conflict</Type><Time>2026-11-21T10:00:00Z</Time><Size>5</Size>"
		      "</Resource></ConflictAndDeletedManifest>");
	expect_bad(f, "<ConflictAndDeletedManifest><Resource>"
		      "<Path enc=\"hex\">6100</Path><Uid>01234567-89AB-CDEF-FEDC-BA9876543210</Uid>"
		      "<Gvsn>{01234567-89AB-CDEF-FEDC-BA9876543210}-v1</Gvsn><NewName>a</NewName>"
		      "<Type>conflict</Type><Time>2026-11-21T10:00:00Z</Time><Size>5</Size>"
		      "</Resource></ConflictAndDeletedManifest>");
	/* entities: a DTD is refused outright */
	expect_bad(f, "<?xml version=\"1.0\"?><!DOCTYPE m [<!ENTITY x \"boom\">]>"
		      "<ConflictAndDeletedManifest/>");
	expect_bad(f, "<?xml version=\"1.0\"?><!DOCTYPE m SYSTEM \"file:///etc/passwd\">"
		      "<ConflictAndDeletedManifest/>");
	/* a directory where the manifest should be */
	assert_int_equal(unlinkat(f->priv, LAYOUT_CONFLICT_MANIFEST, 0), 0);
	assert_int_equal(mkdirat(f->priv, LAYOUT_CONFLICT_MANIFEST, 0700), 0);
	assert_int_equal(manifest_list(f->priv, MANIFEST_CONFLICT, count_cb, &n), -EBADMSG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(prepare_creates_everything, setup, teardown),
		cmocka_unit_test_setup_teardown(prepare_is_idempotent_and_repairs, setup, teardown),
		cmocka_unit_test_setup_teardown(prepare_refuses_non_directory, setup, teardown),
		cmocka_unit_test_setup_teardown(manifest_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(manifest_missing_is_enoent_then_created, setup,
						teardown),
		cmocka_unit_test_setup_teardown(corrupt_manifests, setup, teardown),
	};

	if (geteuid() != 0) {
		fprintf(stderr, "test_layout checks root ownership; needs root\n");
		return 77;
	}
	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
