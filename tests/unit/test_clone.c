/*
 * test_clone.c - core/clone.h: the description file (round trip, damaged input refused),
 * --validation parsing, and export then import between two real local paths on real
 * RocksDB: the import adopts a new database id, starts normal, keeps tombstones, forgets
 * what it does not hold (missing or different, the latter moved to PreExisting) and lowers
 * the knowledge below it, and refuses a second import, a non-empty export directory and an
 * export of another folder. basic misses a same-size same-mtime edit that full catches.
 */
#include <dirent.h>

#include "core/clone.h"
#include "core/scan.h"
#include "tests/unit/journal_fixture.h"

/* A second local path ("bravo") for the same folder, with no database yet. */
struct target {
	char dir[64];
	int root_fd;
	struct config_folder folder;
	char name[32], ffilter[64], sfilter[8];
};

static void target_make(struct target *t, const char *name)
{
	memset(t, 0, sizeof(*t));
	assert_int_equal(test_tmpdir_make(t->dir, sizeof(t->dir), "clone", &t->root_fd), 0);
	snprintf(t->ffilter, sizeof(t->ffilter), "~*, *.bak, *.tmp");
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->folder.name = t->name;
	t->folder.path = t->dir;
	t->folder.mount = t->dir;
	t->folder.file_filter_text = t->ffilter;
	t->folder.subfolder_filter_text = t->sfilter;
	assert_int_equal(filter_build(&t->folder.file_filter, t->ffilter), 0);
	assert_int_equal(filter_build(&t->folder.subfolder_filter, ""), 0);
}

static void target_release(struct target *t)
{
	filter_release(&t->folder.file_filter);
	filter_release(&t->folder.subfolder_filter);
	close(t->root_fd);
	test_tmpdir_remove(t->dir);
}

/* Write @data at @rel under @root_fd with mtime @sec. */
static void put(int root_fd, const char *rel, const char *data, time_t sec)
{
	struct timespec ts[2] = { { .tv_sec = sec }, { .tv_sec = sec } };
	int fd = openat(root_fd, rel, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	assert_int_equal(futimens(fd, ts), 0);
	close(fd);
}

static void test_validation_parse(void **state)
{
	enum clone_validation v;

	(void)state;
	assert_int_equal(clone_validation_parse("none", &v), 0);
	assert_int_equal(v, CLONE_VALIDATE_NONE);
	assert_int_equal(clone_validation_parse("basic", &v), 0);
	assert_int_equal(v, CLONE_VALIDATE_BASIC);
	assert_int_equal(clone_validation_parse("full", &v), 0);
	assert_int_equal(v, CLONE_VALIDATE_FULL);
	assert_int_equal(clone_validation_parse("Basic", &v), -EINVAL);
	assert_int_equal(clone_validation_parse("", &v), -EINVAL);
	assert_int_equal(clone_validation_parse("sometimes", &v), -EINVAL);
	assert_string_equal(clone_validation_name(CLONE_VALIDATE_FULL), "full");
}

static void write_raw(int dirfd, const char *text)
{
	int fd = openat(dirfd, CLONE_DESC_FILE, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void test_info_round_trip_and_damage(void **state)
{
	struct clone_info in, out;
	struct target t;
	int dfd;

	(void)state;
	target_make(&t, "share");
	dfd = openat(t.root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	assert_int_equal(clone_info_read(dfd, &out), -ENOENT);
	memset(&in, 0, sizeof(in));
	strcpy(in.folder, "share <&> \"x\"");
	strcpy(in.member, "alpha");
	dfsr_uid_random(&in.db_id);
	in.time_ns = 1796623955914442356LL;
	in.files = 3;
	in.folders = 2;
	in.tombstones = 1;
	in.records = 6;
	assert_int_equal(clone_info_write(dfd, &in), 0);
	memset(&out, 0, sizeof(out));
	assert_int_equal(clone_info_read(dfd, &out), 0);
	assert_string_equal(out.folder, in.folder);
	assert_string_equal(out.member, "alpha");
	assert_true(dfsr_uid_equal(&out.db_id, &in.db_id));
	assert_int_equal(out.time_ns, in.time_ns);
	assert_int_equal(out.records, 6);
	assert_int_equal(out.files, 3);
	assert_int_equal(out.folders, 2);
	assert_int_equal(out.tombstones, 1);

	write_raw(dfd, "not xml");
	assert_int_equal(clone_info_read(dfd, &out), -EBADMSG);
	write_raw(dfd, "<DfsrClone><Folder>share</Folder></DfsrClone>"); /* fields missing */
	assert_int_equal(clone_info_read(dfd, &out), -EBADMSG);
	write_raw(dfd, "<?xml version=\"1.0\"?><!DOCTYPE DfsrClone [<!ENTITY e \"x\">]>"
		       "<DfsrClone><Folder>&e;</Folder></DfsrClone>");
	assert_int_equal(clone_info_read(dfd, &out), -EBADMSG);
	write_raw(dfd, "<DfsrClone><Folder>a</Folder><Folder>b</Folder><Member>m</Member>"
		       "<DatabaseId>{71CDFDF7-6556-202E-51E3-AA3B6BD12905}</DatabaseId>"
		       "<TimeNs>1</TimeNs><Records>1</Records><Files>1</Files>"
		       "<Folders>0</Folders><Tombstones>0</Tombstones></DfsrClone>");
	assert_int_equal(clone_info_read(dfd, &out), -EBADMSG); /* a duplicate */
	write_raw(dfd, "<DfsrClone><Folder>a</Folder><Member>m</Member>"
		       "<DatabaseId>{71CDFDF7-6556-202E-51E3-AA3B6BD12905}</DatabaseId>"
		       "<TimeNs>1</TimeNs><Records>-1</Records><Files>1</Files>"
		       "<Folders>0</Folders><Tombstones>0</Tombstones></DfsrClone>");
	assert_int_equal(clone_info_read(dfd, &out), -EBADMSG); /* not a number */
	write_raw(dfd, "<DfsrClone><Folder>a</Folder><Member>m</Member><Extra/>"
		       "<DatabaseId>{71CDFDF7-6556-202E-51E3-AA3B6BD12905}</DatabaseId>"
		       "<TimeNs>1</TimeNs><Records>1</Records><Files>1</Files>"
		       "<Folders>0</Folders><Tombstones>0</Tombstones></DfsrClone>");
	assert_int_equal(clone_info_read(dfd, &out), 0); /* unknown elements are ignored */
	assert_string_equal(out.folder, "a");
	close(dfd);
	target_release(&t);
}

struct findings {
	unsigned mismatched, missing, extra;
	char last_preserved[300];
};

static void on_finding(void *arg, enum clone_finding what, const char *path, const char *pname)
{
	struct findings *f = arg;

	(void)path;
	if (what == CLONE_MISMATCHED)
		f->mismatched++;
	else if (what == CLONE_MISSING)
		f->missing++;
	else
		f->extra++;
	if (pname)
		snprintf(f->last_preserved, sizeof(f->last_preserved), "%s", pname);
}

/* alpha: a.txt, d/b.txt, d/c.txt, d/e/g.txt, same.txt, a tombstone; exported into @exp. */
static void source_tree(struct fx *f, char *exp, size_t len)
{
	char err[CLONE_ERR_LEN];
	struct clone_info ci;
	int fd;

	put(f->root_fd, "a.txt", "alpha a", 1000);
	fx_mkdir(f, "d");
	fx_mkdir(f, "d/e");
	put(f->root_fd, "d/b.txt", "alpha b", 1000);
	put(f->root_fd, "d/c.txt", "alpha c", 1000);
	put(f->root_fd, "d/e/g.txt", "alpha g", 1000);
	put(f->root_fd, "same.txt", "12345678", 1000);
	put(f->root_fd, "x.txt", "deleted later", 1000);
	assert_int_equal(scan_folder(f->j, NULL), 0);
	assert_int_equal(journal_state(f->j), JOURNAL_STATE_NORMAL);
	assert_int_equal(unlinkat(f->root_fd, "x.txt", 0), 0);
	assert_int_equal(scan_folder(f->j, NULL), 0); /* a tombstone */

	snprintf(exp, len, "%s/DfsrPrivate/export", f->dir);
	assert_int_equal(clone_export(f->j, "alpha", "relative/dir", &ci, err), -EINVAL);
	assert_int_equal(clone_export(f->j, "alpha", exp, &ci, err), 0);
	assert_int_equal(ci.files, 5);
	assert_int_equal(ci.folders, 2);
	assert_int_equal(ci.tombstones, 1);
	assert_int_equal(ci.records, 8);
	assert_true(dfsr_uid_equal(&ci.db_id, journal_db_id(f->j)));
	assert_int_equal(clone_export(f->j, "alpha", exp, &ci, err), -ENOTEMPTY);
	assert_non_null(strstr(err, "not empty"));
	fd = open(exp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(faccessat(fd, "db/CURRENT", F_OK, 0), 0);
	close(fd);
}

/* bravo: the same tree, but d/c.txt with other content, d/e/g.txt gone, new.txt extra,
 * same.txt changed in place keeping its size and mtime. */
static void preseed(struct target *t)
{
	put(t->root_fd, "a.txt", "alpha a", 1000);
	assert_int_equal(mkdirat(t->root_fd, "d", 0755), 0);
	assert_int_equal(mkdirat(t->root_fd, "d/e", 0755), 0);
	put(t->root_fd, "d/b.txt", "alpha b", 1000);
	put(t->root_fd, "d/c.txt", "bravo's c, longer", 1000);
	put(t->root_fd, "same.txt", "87654321", 1000);
	put(t->root_fd, "new.txt", "only here", 1000);
}

static void import_into(struct fx *f, struct target *t, const char *exp, enum clone_validation v,
			struct clone_import_result *res, struct findings *fnd)
{
	struct clone_import_opts o = {
		.folder = &t->folder,
		.root_fd = t->root_fd,
		.dir = exp,
		.validation = v,
		.report = on_finding,
		.arg = fnd,
	};
	char err[CLONE_ERR_LEN];
	int rc = clone_import(&o, res, err);

	if (rc < 0)
		fail_msg("clone_import: %s", err);
	assert_true(dfsr_uid_equal(&res->info.db_id, journal_db_id(f->j)));
	assert_false(dfsr_uid_equal(&res->db_id, journal_db_id(f->j)));
}

static int open_target(struct target *t, struct journal **j)
{
	char err[JOURNAL_ERR_LEN];
	struct journal_opts o = { .folder = &t->folder, .root_fd = t->root_fd };

	return journal_open(&o, j, err);
}

static uint64_t knowledge_of(struct journal *j, const struct dfsr_uid *db)
{
	struct version_vector kv;
	uint64_t c = 0;

	version_vector_init(&kv);
	assert_int_equal(journal__knowledge(j, &kv), 0);
	for (size_t i = 0; i < kv.n; i++)
		if (dfsr_uid_equal(&kv.v[i].db, db))
			c = kv.v[i].counter;
	version_vector_release(&kv);
	return c;
}

static bool has_record(struct journal *j, const char *rel)
{
	char buf[256], *save = NULL, *c;
	struct dfsr_uid cur = *journal_root_uid(j);

	snprintf(buf, sizeof(buf), "%s", rel);
	for (c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		struct dfsr_uid next;

		if (journal_lookup(j, &cur, c, &next) < 0 || dfsr_uid_is_zero(&next))
			return false;
		cur = next;
	}
	return true;
}

static void test_export_import_basic(void **state)
{
	struct fx *f = *state;
	struct clone_import_result res;
	struct findings fnd = { 0 };
	struct journal_status st;
	struct journal *j;
	struct target t, other;
	char exp[128], err[CLONE_ERR_LEN];
	struct clone_import_opts o;
	uint64_t before;

	source_tree(f, exp, sizeof(exp));
	before = knowledge_of(f->j, journal_db_id(f->j));
	assert_true(before > 0);

	/* an export of "share" is not imported into folder "other" */
	target_make(&other, "other");
	o = (struct clone_import_opts){ .folder = &other.folder,
					.root_fd = other.root_fd,
					.dir = exp };
	assert_int_equal(clone_import(&o, &res, err), -EINVAL);
	assert_non_null(strstr(err, "not of 'other'"));
	target_release(&other);

	target_make(&t, "share");
	preseed(&t);
	import_into(f, &t, exp, CLONE_VALIDATE_BASIC, &res, &fnd);
	/* c.txt differs (size), g.txt missing, new.txt extra; same.txt passes basic */
	assert_int_equal(res.mismatched, 1);
	assert_int_equal(res.missing, 1);
	assert_int_equal(res.extra, 1);
	assert_int_equal(res.matched, 5); /* a.txt, d, d/b.txt, d/e, same.txt */
	assert_int_equal(res.checked, 7);
	assert_int_equal(fnd.mismatched, 1);
	assert_int_equal(fnd.missing, 1);
	assert_int_equal(fnd.extra, 1);
	/* the local c.txt is in PreExisting, untouched */
	{
		char p[400], buf[64] = { 0 };
		int fd;

		snprintf(p, sizeof(p), "DfsrPrivate/PreExisting/%s", fnd.last_preserved);
		fd = openat(t.root_fd, p, O_RDONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		assert_true(read(fd, buf, sizeof(buf) - 1) > 0);
		assert_string_equal(buf, "bravo's c, longer");
		close(fd);
	}
	assert_int_equal(open_target(&t, &j), 0);
	assert_false(journal_was_unclean(j));
	assert_int_equal(journal_state(j), JOURNAL_STATE_NORMAL);
	assert_true(dfsr_uid_equal(journal_db_id(j), &res.db_id));
	journal_get_status(j, &st);
	assert_int_equal(st.tombstones, 1); /* kept */
	assert_int_equal(st.files, 3);      /* a, b, same: c and g forgotten */
	assert_int_equal(st.folders, 2);
	assert_true(has_record(j, "d/b.txt"));
	assert_false(has_record(j, "d/c.txt"));
	assert_false(has_record(j, "d/e/g.txt"));
	/* the knowledge no longer claims the forgotten versions, the rest is kept */
	assert_true(knowledge_of(j, journal_db_id(f->j)) < before);
	assert_int_equal(knowledge_of(j, &res.db_id), 0);
	journal_close(j);

	/* a second import is refused and changes nothing */
	o = (struct clone_import_opts){ .folder = &t.folder, .root_fd = t.root_fd, .dir = exp };
	assert_int_equal(clone_import(&o, &res, err), -EEXIST);
	assert_non_null(strstr(err, "has a database already"));
	target_release(&t);
}

static void test_full_catches_same_size_edit(void **state)
{
	struct fx *f = *state;
	struct clone_import_result res;
	struct findings fnd = { 0 };
	struct journal *j;
	struct target t;
	char exp[128];

	source_tree(f, exp, sizeof(exp));
	target_make(&t, "share");
	preseed(&t);
	import_into(f, &t, exp, CLONE_VALIDATE_FULL, &res, &fnd);
	assert_int_equal(res.mismatched, 2); /* c.txt and same.txt */
	assert_int_equal(res.missing, 1);
	assert_int_equal(res.matched, 4);
	assert_int_equal(open_target(&t, &j), 0);
	assert_false(has_record(j, "same.txt"));
	assert_true(has_record(j, "a.txt"));
	journal_close(j);
	target_release(&t);
}

static void test_none_trusts(void **state)
{
	struct fx *f = *state;
	struct clone_import_result res;
	struct findings fnd = { 0 };
	struct journal_status st;
	struct journal *j;
	struct target t;
	char exp[128];

	source_tree(f, exp, sizeof(exp));
	target_make(&t, "share");
	preseed(&t);
	import_into(f, &t, exp, CLONE_VALIDATE_NONE, &res, &fnd);
	assert_int_equal(res.checked, 0);
	assert_int_equal(fnd.mismatched + fnd.missing + fnd.extra, 0);
	assert_int_equal(open_target(&t, &j), 0);
	journal_get_status(j, &st);
	assert_int_equal(st.files, 5);
	assert_int_equal(journal_state(j), JOURNAL_STATE_NORMAL);
	journal_close(j);
	target_release(&t);
}

/* True if DfsrPrivate of @t holds an entry starting with @prefix. */
static bool private_has(struct target *t, const char *prefix)
{
	int fd = openat(t->root_fd, "DfsrPrivate", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	bool found = false;
	DIR *d;

	assert_true(fd >= 0);
	d = fdopendir(fd);
	assert_non_null(d);
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, prefix, strlen(prefix)))
			found = true;
	closedir(d);
	return found;
}

/* An import that fails after copying leaves no database, and a later one works. */
static void test_failed_import_leaves_nothing(void **state)
{
	struct fx *f = *state;
	struct clone_import_result res;
	struct findings fnd = { 0 };
	struct clone_info ci, saved;
	struct clone_import_opts o;
	struct target t;
	char exp[128], err[CLONE_ERR_LEN];
	int dfd;

	source_tree(f, exp, sizeof(exp));
	dfd = open(exp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	assert_int_equal(clone_info_read(dfd, &saved), 0);
	ci = saved;
	dfsr_uid_random(&ci.db_id); /* the description no longer matches the database */
	assert_int_equal(clone_info_write(dfd, &ci), 0);

	target_make(&t, "share");
	preseed(&t);
	assert_int_equal(mkdirat(t.root_fd, "DfsrPrivate", 0700), 0);
	assert_int_equal(mkdirat(t.root_fd, "DfsrPrivate/db.import.999999", 0700), 0);
	o = (struct clone_import_opts){ .folder = &t.folder, .root_fd = t.root_fd, .dir = exp };
	assert_int_equal(clone_import(&o, &res, err), -EBADMSG);
	assert_non_null(strstr(err, "not the one"));
	assert_int_not_equal(faccessat(t.root_fd, "DfsrPrivate/db/CURRENT", F_OK, 0), 0);
	assert_false(private_has(&t, "db.import."));

	assert_int_equal(clone_info_write(dfd, &saved), 0);
	close(dfd);
	import_into(f, &t, exp, CLONE_VALIDATE_BASIC, &res, &fnd);
	assert_int_equal(faccessat(t.root_fd, "DfsrPrivate/db/CURRENT", F_OK, 0), 0);
	assert_false(private_has(&t, "db.import."));
	target_release(&t);
}

static int setup(void **state)
{
	return fx_setup_opts(state, true, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_validation_parse),
		cmocka_unit_test(test_info_round_trip_and_damage),
		cmocka_unit_test_setup_teardown(test_export_import_basic, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_full_catches_same_size_edit, setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(test_none_trusts, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_failed_import_leaves_nothing, setup,
						fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
