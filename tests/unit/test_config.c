/*
 * test_config.c - core/config.c: the CONTRACT.md example, defaults, several sections, and
 * one test per error class, each checking the file, line and key the message names.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
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

#include "core/config.h"
#include "core/util.h"

#define KEY_A     "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" /* bytes 0..31 */
#define KEY_B     "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=" /* bytes 1..32 */
#define KEY_SHORT "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==" /* 31 bytes */

/* The example of CONTRACT.md, with a real key. */
static const char contract_example[] =
	"[member]\n"
	"name = alpha                      ; unique in the group\n"
	"listen = 127.0.0.1:5722           ; address:port to accept partners on\n"
	"key = /var/lib/dfsr/alpha.key     ; secret key written by `dfsr keygen`\n"
	"; control = /run/dfsr/alpha.sock  ; command-line socket (default: derived from name)\n"
	"\n"
	"[folder share]                    ; the replicated folder's name, same on every member\n"
	"path = /srv/share                 ; local path: the real files and DfsrPrivate\n"
	"mount = /mnt/share                ; FUSE mount point (may equal path: mount over it)\n"
	"primary = yes                     ; authoritative for initial sync (one member)\n"
	"read_only = no\n"
	"staging_quota = 4096M             ; K, M, G suffixes\n"
	"conflict_quota = 660M\n"
	"file_filter = ~*, *.bak, *.tmp    ; not replicated\n"
	"; subfolder_filter =\n"
	"; staging_path = /fast/disk/share-staging\n"
	"; tombstone_days = 60\n"
	"\n"
	"[peer bravo]                      ; a replication partner (connection both ways)\n"
	"address = 127.0.0.2:5722\n"
	"public_key = " KEY_A "             ; from `dfsr keygen` / `dfsr pubkey` on bravo\n"
	"; bandwidth = 20M                 ; bytes per second, 0 = unlimited\n";

static const struct sockaddr_in *sin4(const struct config_addr *a)
{
	return (const struct sockaddr_in *)(const void *)&a->ss;
}

static const struct sockaddr_in6 *sin6(const struct config_addr *a)
{
	return (const struct sockaddr_in6 *)(const void *)&a->ss;
}

static void contract_example_parses(void **state)
{
	struct config cfg;
	char err[CONFIG_ERR_LEN];
	const struct config_folder *f;
	uint8_t want[32];

	(void)state;
	assert_int_equal(config_parse_string(&cfg, "t.conf", contract_example, err), 0);
	assert_string_equal(cfg.file, "t.conf");
	assert_string_equal(cfg.member_name, "alpha");
	assert_int_equal(cfg.listen.ss.ss_family, AF_INET);
	assert_int_equal(ntohs(sin4(&cfg.listen)->sin_port), 5722);
	assert_int_equal(ntohl(sin4(&cfg.listen)->sin_addr.s_addr), 0x7f000001);
	assert_int_equal(cfg.listen.len, sizeof(struct sockaddr_in));
	assert_string_equal(cfg.listen.text, "127.0.0.1:5722");
	assert_string_equal(cfg.key_path, "/var/lib/dfsr/alpha.key");
	assert_string_equal(cfg.control_path, "/run/dfsr/alpha.sock");

	assert_int_equal(cfg.nfolders, 1);
	f = config_folder(&cfg, "share");
	assert_non_null(f);
	assert_null(config_folder(&cfg, "other"));
	assert_string_equal(f->name, "share");
	assert_string_equal(f->path, "/srv/share");
	assert_string_equal(f->mount, "/mnt/share");
	assert_null(f->staging_path);
	assert_true(f->primary);
	assert_false(f->read_only);
	assert_int_equal(f->staging_quota, 4096ULL << 20);
	assert_int_equal(f->conflict_quota, 660ULL << 20);
	assert_int_equal(f->tombstone_days, 60);
	assert_string_equal(f->file_filter_text, "~*, *.bak, *.tmp");
	assert_string_equal(f->subfolder_filter_text, "");
	assert_int_equal(f->file_filter.n, 3);
	assert_true(filter_match(&f->file_filter, "x.BAK"));
	assert_int_equal(f->subfolder_filter.n, 0);
	assert_int_equal(f->line, 7);

	assert_int_equal(cfg.npeers, 1);
	assert_string_equal(cfg.peers[0].name, "bravo");
	assert_string_equal(cfg.peers[0].address.text, "127.0.0.2:5722");
	assert_int_equal(ntohl(sin4(&cfg.peers[0].address)->sin_addr.s_addr), 0x7f000002);
	for (int i = 0; i < 32; i++)
		want[i] = (uint8_t)i;
	assert_memory_equal(cfg.peers[0].public_key, want, 32);
	assert_int_equal(cfg.peers[0].bandwidth, 0);
	assert_int_equal(cfg.peers[0].line, 19);
	config_release(&cfg);
	assert_null(cfg.folders);
	assert_int_equal(cfg.nfolders, 0);
	config_release(&cfg); /* releasing an empty config is fine */
	config_release(NULL);
}

static void defaults_are_filled(void **state)
{
	static const char text[] = "[member]\n"
				   "name = m1\n"
				   "key = /k\n"
				   "[folder f]\n"
				   "path = /p\n"
				   "mount = /p\n";
	struct config cfg;
	char err[CONFIG_ERR_LEN];
	const struct config_folder *f;

	(void)state;
	assert_int_equal(config_parse_string(&cfg, "d.conf", text, err), 0);
	assert_int_equal(cfg.listen.ss.ss_family, AF_INET);
	assert_int_equal(sin4(&cfg.listen)->sin_addr.s_addr, htonl(INADDR_ANY));
	assert_int_equal(ntohs(sin4(&cfg.listen)->sin_port), CONFIG_DEFAULT_PORT);
	assert_string_equal(cfg.control_path, "/run/dfsr/m1.sock");
	f = &cfg.folders[0];
	assert_false(f->primary);
	assert_false(f->read_only);
	assert_int_equal(f->staging_quota, CONFIG_DEFAULT_STAGING_QUOTA);
	assert_int_equal(f->conflict_quota, CONFIG_DEFAULT_CONFLICT_QUOTA);
	assert_int_equal(f->tombstone_days, CONFIG_DEFAULT_TOMBSTONE_DAYS);
	assert_string_equal(f->file_filter_text, CONFIG_DEFAULT_FILE_FILTER);
	assert_int_equal(f->file_filter.n, 3);
	assert_true(filter_match(&f->file_filter, "~lock"));
	assert_string_equal(f->subfolder_filter_text, "");
	assert_null(f->staging_path);
	assert_int_equal(cfg.npeers, 0);
	assert_null(cfg.peers);
	config_release(&cfg);
}

static void several_folders_and_peers(void **state)
{
	static const char text[] = "\xEF\xBB\xBF# a comment, with a BOM before it\r\n"
				   "[member]\r\n"
				   "    name = m-2.x_y\r\n"
				   "\tkey = /etc/dfsr/k\r\n"
				   "  listen = [::1]:6000\r\n"
				   "control = /tmp/ctl.sock\r\n"
				   "[folder docs]\n"
				   "  path = /srv/docs\n"
				   "  mount = /mnt/docs\n"
				   "  read_only = TRUE\n"
				   "  staging_quota = 10G\n"
				   "  conflict_quota = 1024\n"
				   "  file_filter =\n"
				   "  subfolder_filter = .git, node_modules\n"
				   "  staging_path = /fast/docs\n"
				   "  tombstone_days = 3650\n"
				   "[folder photos]\n"
				   "path=/srv/photos\n"
				   "mount=/mnt/photos\n"
				   "primary=off\n"
				   "tombstone_days=1\n"
				   "[peer b]\n"
				   "address = 10.0.0.2\n"
				   "public_key = " KEY_A "\n"
				   "bandwidth = 20M\n"
				   "[peer c]\n"
				   "address = [fe80::1]\n"
				   "public_key = " KEY_B "\n"
				   "[peer d]\n"
				   "address = ::2\n"
				   "public_key = " KEY_B "\n"
				   "bandwidth = 0\n";
	struct config cfg;
	char err[CONFIG_ERR_LEN];
	const struct config_folder *f;

	(void)state;
	assert_int_equal(config_parse_string(&cfg, "s.conf", text, err), 0);
	assert_string_equal(cfg.member_name, "m-2.x_y");
	assert_string_equal(cfg.key_path, "/etc/dfsr/k");
	assert_string_equal(cfg.control_path, "/tmp/ctl.sock");
	assert_int_equal(cfg.listen.ss.ss_family, AF_INET6);
	assert_int_equal(cfg.listen.len, sizeof(struct sockaddr_in6));
	assert_int_equal(ntohs(sin6(&cfg.listen)->sin6_port), 6000);
	assert_true(IN6_IS_ADDR_LOOPBACK(&sin6(&cfg.listen)->sin6_addr));

	assert_int_equal(cfg.nfolders, 2);
	f = config_folder(&cfg, "docs");
	assert_non_null(f);
	assert_true(f->read_only);
	assert_int_equal(f->staging_quota, 10ULL << 30);
	assert_int_equal(f->conflict_quota, 1024);
	assert_string_equal(f->file_filter_text, "");
	assert_int_equal(f->file_filter.n, 0);
	assert_int_equal(f->subfolder_filter.n, 2);
	assert_true(filter_match(&f->subfolder_filter, ".GIT"));
	assert_string_equal(f->staging_path, "/fast/docs");
	assert_int_equal(f->tombstone_days, 3650);
	assert_int_equal(f->line, 7);
	f = config_folder(&cfg, "photos");
	assert_non_null(f);
	assert_string_equal(f->path, "/srv/photos");
	assert_false(f->primary);
	assert_int_equal(f->tombstone_days, 1);
	assert_int_equal(f->line, 17);

	assert_int_equal(cfg.npeers, 3);
	assert_string_equal(cfg.peers[0].name, "b");
	assert_int_equal(ntohs(sin4(&cfg.peers[0].address)->sin_port), 5722);
	assert_int_equal(cfg.peers[0].bandwidth, 20ULL << 20);
	assert_int_equal(cfg.peers[0].line, 22);
	assert_string_equal(cfg.peers[1].name, "c");
	assert_int_equal(cfg.peers[1].address.ss.ss_family, AF_INET6);
	assert_int_equal(ntohs(sin6(&cfg.peers[1].address)->sin6_port), 5722);
	assert_int_equal(cfg.peers[1].public_key[0], 1);
	assert_int_equal(cfg.peers[1].public_key[31], 32);
	assert_int_equal(cfg.peers[2].address.ss.ss_family, AF_INET6);
	assert_int_equal(cfg.peers[2].bandwidth, 0);
	config_release(&cfg);
}

/*
 * Parses @text, expects DFSR_ECONFIG and a message that starts with "e.conf:<line>: " and
 * contains @a and @b (NULL to skip).
 */
static void expect_error(const char *text, unsigned line, const char *a, const char *b)
{
	struct config cfg;
	char err[CONFIG_ERR_LEN], prefix[64];

	memset(&cfg, 0x5a, sizeof(cfg));
	assert_int_equal(config_parse_string(&cfg, "e.conf", text, err), DFSR_ECONFIG);
	if (line)
		snprintf(prefix, sizeof(prefix), "e.conf:%u: ", line);
	else
		snprintf(prefix, sizeof(prefix), "e.conf: ");
	if (strncmp(err, prefix, strlen(prefix)) != 0 || (a && !strstr(err, a)) ||
	    (b && !strstr(err, b)) || strchr(err, '\n'))
		fail_msg("message '%s' should start with '%s' and name '%s' and '%s'", err, prefix,
			 a ? a : "", b ? b : "");
	/* on failure the config is empty */
	assert_null(cfg.folders);
	assert_null(cfg.member_name);
	assert_null(cfg.file);
}

#define MEMBER "[member]\nname = a\nkey = /k\n"      /* lines 1-3 */
#define FOLDER "[folder f]\npath = /p\nmount = /m\n" /* 3 lines */

static void error_unknown_section(void **state)
{
	(void)state;
	expect_error(MEMBER "[fodler x]\n", 4, "unknown section", "fodler");
	expect_error(MEMBER FOLDER "[global]\nx = 1\n", 7, "unknown section", "[global]");
}

static void error_unknown_key(void **state)
{
	(void)state;
	expect_error(MEMBER "colour = blue\n" FOLDER, 4, "[member] unknown key 'colour'", NULL);
	expect_error(MEMBER FOLDER "stagingquota = 1M\n", 7,
		     "[folder f] unknown key 'stagingquota'", NULL);
	expect_error(MEMBER FOLDER "[peer p]\naddress = 1.2.3.4\npublic_key = " KEY_A "\nkey = x\n",
		     10, "[peer p] unknown key 'key'", NULL);
	/* keys of another section are unknown here */
	expect_error(MEMBER "path = /x\n" FOLDER, 4, "unknown key 'path'", NULL);
}

static void error_duplicate_key(void **state)
{
	(void)state;
	expect_error(MEMBER "name = b\n" FOLDER, 4, "[member] key 'name'", "twice");
	expect_error(MEMBER FOLDER "primary = yes\nprimary = no\n", 8, "[folder f] key 'primary'",
		     "twice");
	/* an indented line is a key of its own, not a continuation of the one before */
	expect_error(MEMBER FOLDER "    path = /q\n", 7, "key 'path'", "twice");
}

static void error_duplicate_section(void **state)
{
	(void)state;
	expect_error(MEMBER FOLDER "[folder f]\n", 7, "duplicate section [folder f]", "line 4");
	expect_error(MEMBER FOLDER "[member]\n", 7, "duplicate section [member]", "line 1");
	expect_error(MEMBER FOLDER "[peer p]\naddress = 1.1.1.1\npublic_key = " KEY_A "\n"
				   "[peer p]\n",
		     10, "duplicate section [peer p]", "line 7");
}

static void error_missing_required_key(void **state)
{
	(void)state;
	expect_error("[member]\nkey = /k\n" FOLDER, 1, "[member] key 'name'", "missing");
	expect_error("[member]\nname = a\n" FOLDER, 1, "[member] key 'key'", "missing");
	expect_error(MEMBER "\n[folder f]\nmount = /m\n", 5, "[folder f] key 'path'", "missing");
	expect_error(MEMBER FOLDER "[folder g]\npath = /g\n", 7, "[folder g] key 'mount'",
		     "missing");
	expect_error(MEMBER FOLDER "[peer p]\npublic_key = " KEY_A "\n", 7,
		     "[peer p] key 'address'", "missing");
	expect_error(MEMBER FOLDER "[peer p]\naddress = 1.2.3.4\n", 7, "[peer p] key 'public_key'",
		     "missing");
	expect_error(FOLDER, 0, "no [member] section", NULL);
	expect_error(MEMBER, 0, "no [folder NAME] section", NULL);
	expect_error("", 0, "no [member] section", NULL);
}

static void error_bad_size(void **state)
{
	(void)state;
	expect_error(MEMBER FOLDER "\n\n\n\n\n\nstaging_quota = 4096Q\n", 13,
		     "[folder f] key 'staging_quota': bad size '4096Q'", "K, M or G");
	expect_error(MEMBER FOLDER "conflict_quota = -1\n", 7,
		     "key 'conflict_quota': bad size '-1'", NULL);
	expect_error(MEMBER FOLDER "conflict_quota = 99999999999T\n", 7, "key 'conflict_quota'",
		     "too large");
	expect_error(MEMBER FOLDER "[peer p]\naddress = 1.2.3.4\npublic_key = " KEY_A "\n"
				   "bandwidth = 5MB\n",
		     10, "[peer p] key 'bandwidth': bad size '5MB'", NULL);
}

static void error_bad_bool(void **state)
{
	(void)state;
	expect_error(MEMBER FOLDER "primary = maybe\n", 7, "[folder f] key 'primary'",
		     "bad boolean 'maybe'");
	expect_error(MEMBER FOLDER "read_only = 2\n", 7, "key 'read_only'", "bad boolean");
}

static void error_bad_address(void **state)
{
	(void)state;
	expect_error("[member]\nname = a\nlisten = 127.0.0.1:99999\nkey = /k\n" FOLDER, 3,
		     "[member] key 'listen': bad address '127.0.0.1:99999'", NULL);
	expect_error(MEMBER FOLDER "[peer p]\naddress = bravo.example:5722\n", 8,
		     "[peer p] key 'address': bad address 'bravo.example:5722'", NULL);
	expect_error(MEMBER FOLDER "[peer p]\naddress = [::1:5722\n", 8, "key 'address'",
		     "bad address");
	expect_error(MEMBER FOLDER "[peer p]\naddress = 1.2.3.4:\n", 8, "key 'address'", NULL);
	expect_error(MEMBER FOLDER "[peer p]\naddress = 1.2.3.4:0\n", 8, "key 'address'", NULL);
	expect_error(MEMBER FOLDER "[peer p]\naddress = 1.2.3.4: 5\n", 8, "key 'address'", NULL);
	expect_error(MEMBER FOLDER "[peer p]\naddress = [1.2.3.4]:5\n", 8, "key 'address'", NULL);
	expect_error(MEMBER FOLDER "[peer p]\naddress = 1.2.3\n", 8, "key 'address'", NULL);
}

static void error_bad_name(void **state)
{
	char text[512], name[CONFIG_NAME_MAX + 1];

	(void)state;
	expect_error(MEMBER "[folder a/b]\npath = /p\nmount = /m\n", 4, "bad name 'a/b'", NULL);
	expect_error(MEMBER "[folder]\npath = /p\nmount = /m\n", 4, "bad name ''", NULL);
	expect_error(MEMBER FOLDER "[peer ..]\n", 7, "bad name '..'", NULL);
	expect_error("[member x]\n", 1, "[member] takes no name", NULL);
	expect_error("[member]\nname = a b\nkey = /k\n" FOLDER, 2, "[member] key 'name'",
		     "bad name 'a b'");
	memset(name, 'n', CONFIG_NAME_MAX);
	name[CONFIG_NAME_MAX] = '\0';
	snprintf(text, sizeof(text), MEMBER "[folder %s]\npath = /p\nmount = /m\n", name);
	expect_error(text, 4, "bad name", NULL);
	name[CONFIG_NAME_MAX - 1] = '\0'; /* the longest name allowed */
	snprintf(text, sizeof(text), MEMBER "[folder %s]\npath = /p\nmount = /m\n", name);
	{
		struct config cfg;
		char err[CONFIG_ERR_LEN];

		assert_int_equal(config_parse_string(&cfg, "e.conf", text, err), 0);
		assert_string_equal(cfg.folders[0].name, name);
		config_release(&cfg);
	}
}

static void error_relative_path(void **state)
{
	(void)state;
	expect_error(MEMBER "[folder f]\npath = srv/share\nmount = /m\n", 5,
		     "[folder f] key 'path'", "'srv/share' is not an absolute path");
	expect_error(MEMBER "[folder f]\npath = /p\nmount = mnt\n", 6, "key 'mount'", "absolute");
	expect_error("[member]\nname = a\nkey = alpha.key\n" FOLDER, 3, "[member] key 'key'",
		     "absolute");
	expect_error(MEMBER "control = x.sock\n" FOLDER, 4, "key 'control'", "absolute");
	expect_error(MEMBER FOLDER "staging_path = ./st\n", 7, "key 'staging_path'", "absolute");
	expect_error(MEMBER "[folder f]\npath =\nmount = /m\n", 5, "key 'path'", "absolute");
}

static void error_bad_tombstone_days(void **state)
{
	(void)state;
	expect_error(MEMBER FOLDER "tombstone_days = 0\n", 7, "key 'tombstone_days'", "1 to 3650");
	expect_error(MEMBER FOLDER "tombstone_days = 3651\n", 7, "key 'tombstone_days'", NULL);
	expect_error(MEMBER FOLDER "tombstone_days = 60d\n", 7, "key 'tombstone_days'", NULL);
	expect_error(MEMBER FOLDER "tombstone_days = -5\n", 7, "key 'tombstone_days'", NULL);
}

static void error_bad_public_key(void **state)
{
	(void)state;
	expect_error(MEMBER FOLDER "[peer p]\naddress = 1.2.3.4\npublic_key = BASE64\n", 9,
		     "[peer p] key 'public_key'", "32 bytes");
	expect_error(MEMBER FOLDER "[peer p]\naddress = 1.2.3.4\npublic_key = " KEY_SHORT "\n", 9,
		     "key 'public_key'", NULL);
	expect_error(MEMBER FOLDER "[peer p]\naddress = 1.2.3.4\npublic_key = " KEY_A "AAAA\n", 9,
		     "key 'public_key'", NULL);
	expect_error(MEMBER FOLDER "[peer p]\naddress = 1.2.3.4\npublic_key = \n", 9,
		     "key 'public_key'", NULL);
}

static void error_bad_filter(void **state)
{
	(void)state;
	expect_error(MEMBER FOLDER "file_filter = *.bak,,*.tmp\n", 7, "key 'file_filter'",
		     "bad filter");
	expect_error(MEMBER FOLDER "subfolder_filter = a/b\n", 7, "key 'subfolder_filter'", NULL);
}

static void error_syntax_and_structure(void **state)
{
	char text[1024];

	(void)state;
	expect_error(MEMBER "just words\n" FOLDER, 4, "syntax error", NULL);
	expect_error("name = a\n[member]\n", 1, "key 'name' outside any section", NULL);
	expect_error(MEMBER "[folder f\n", 4, "without ']'", NULL);
	expect_error(MEMBER "[folder f] junk\n", 4, "after the section header", NULL);
	/* a syntax error before a value error is the one reported */
	expect_error(MEMBER "oops\n" FOLDER "primary = maybe\n", 4, "syntax error", NULL);
	/* an over-long line is an error, not two lines */
	memset(text, 0, sizeof(text));
	snprintf(text, sizeof(text), MEMBER FOLDER "file_filter = ");
	memset(text + strlen(text), 'x', 400);
	strcat(text, "\n");
	expect_error(text, 7, "line too long", NULL);
}

static void error_cross_section_checks(void **state)
{
	(void)state;
	expect_error(MEMBER FOLDER "[folder g]\npath = /p\nmount = /g\n", 7,
		     "[folder g] key 'path'", "[folder f]");
	expect_error(MEMBER FOLDER "[folder g]\npath = /g\nmount = /m\n", 7, "key 'mount'", NULL);
	expect_error(MEMBER FOLDER "[peer a]\naddress = 1.2.3.4\npublic_key = " KEY_A "\n", 7,
		     "[peer a]", "member's name");
}

static void load_from_file(void **state)
{
	char dir[] = "/tmp/dfsr-test-config-XXXXXX";
	char path[128], err[CONFIG_ERR_LEN];
	struct config cfg;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/dfsr.conf", dir);
	assert_int_equal(config_load(&cfg, path, err), -ENOENT);
	assert_non_null(strstr(err, path));
	assert_int_equal(config_load(&cfg, dir, err), -EISDIR);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(contract_example, f);
	fclose(f);
	assert_int_equal(config_load(&cfg, path, err), 0);
	assert_string_equal(cfg.file, path);
	assert_int_equal(cfg.nfolders, 1);
	config_release(&cfg);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("[member]\nname = a\nkey = /k\n[folder f]\npath = /p\nmount = /m\nprimary = 7\n", f);
	fclose(f);
	assert_int_equal(config_load(&cfg, path, err), DFSR_ECONFIG);
	assert_true(strncmp(err, path, strlen(path)) == 0);
	assert_non_null(strstr(err, ":7: [folder f] key 'primary'"));
	f = fopen(path, "w");
	assert_non_null(f);
	fwrite("[member]\n\0x", 1, 11, f);
	fclose(f);
	assert_int_equal(config_load(&cfg, path, err), DFSR_ECONFIG);
	unlink(path);
	rmdir(dir);
}

static void parse_helpers(void **state)
{
	struct config_addr a;
	bool b = false;

	(void)state;
	assert_int_equal(config_parse_bool("Yes", &b), 0);
	assert_true(b);
	assert_int_equal(config_parse_bool("off", &b), 0);
	assert_false(b);
	assert_int_equal(config_parse_bool("", &b), -EINVAL);
	assert_int_equal(config_parse_bool("yess", &b), -EINVAL);
	assert_int_equal(config_parse_addr("192.168.1.2:80", &a), 0);
	assert_int_equal(ntohs(sin4(&a)->sin_port), 80);
	assert_int_equal(config_parse_addr("[::]:1", &a), 0);
	assert_int_equal(a.ss.ss_family, AF_INET6);
	assert_int_equal(config_parse_addr("[::]", &a), 0);
	assert_int_equal(ntohs(sin6(&a)->sin6_port), CONFIG_DEFAULT_PORT);
	assert_int_equal(config_parse_addr("", &a), -EINVAL);
	assert_int_equal(config_parse_addr(":5722", &a), -EINVAL);
	assert_int_equal(config_parse_addr("[]:5722", &a), -EINVAL);
	assert_int_equal(config_parse_addr("localhost", &a), -EINVAL);
	assert_int_equal(config_parse_addr("[::1]x", &a), -EINVAL);
	assert_int_equal(config_parse_addr("1.2.3.4:+5", &a), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(contract_example_parses),
		cmocka_unit_test(defaults_are_filled),
		cmocka_unit_test(several_folders_and_peers),
		cmocka_unit_test(error_unknown_section),
		cmocka_unit_test(error_unknown_key),
		cmocka_unit_test(error_duplicate_key),
		cmocka_unit_test(error_duplicate_section),
		cmocka_unit_test(error_missing_required_key),
		cmocka_unit_test(error_bad_size),
		cmocka_unit_test(error_bad_bool),
		cmocka_unit_test(error_bad_address),
		cmocka_unit_test(error_bad_name),
		cmocka_unit_test(error_relative_path),
		cmocka_unit_test(error_bad_tombstone_days),
		cmocka_unit_test(error_bad_public_key),
		cmocka_unit_test(error_bad_filter),
		cmocka_unit_test(error_syntax_and_structure),
		cmocka_unit_test(error_cross_section_checks),
		cmocka_unit_test(load_from_file),
		cmocka_unit_test(parse_helpers),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
