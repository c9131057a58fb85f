/*
 * journalcost.c - the journal's own CPU time per new file and per removal, in-process: no
 * FUSE, no daemon; what fs/ asks of core/journal.c at a new file's release and at an unlink,
 * on real RocksDB and real files (docs/performance.md, "What changed on 2026-12-07
 * (session 8)").
 *
 * Usage: journalcost DIR NFILES
 *   DIR is made a local path (DfsrPrivate/db inside); put it on a RAM-backed filesystem so
 *   that the disk does not count, and remove it between runs. NFILES files of 1 KiB are made
 *   in 20 directories two levels down (s/d000/f0000000 ...), each written and then given to
 *   journal_note_new() with its read-write descriptor (as the release does); then each is
 *   unlinked and given to journal_note_remove(). Prints the thread CPU time of those calls
 *   per file (clock_gettime(CLOCK_THREAD_CPUTIME_ID) around each).
 *
 * Built by hand against a build directory's libraries (not part of the build or of ctest),
 * e.g. for a Release build in build-release:
 *   cc -O2 -I. -Ibuild-release -o journalcost tests/bench/journalcost.c \
 *      build-release/libdfsr_core.a build-release/libdfsr_proto.a \
 *      -lrocksdb -lsodium -lcrypto -lprotobuf-c -lzstd -lxml2 -luv -lpthread
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "core/filter.h"
#include "core/journal.h"
#include "core/layout.h"

static double tcpu(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct config_folder folder;
	struct journal *j;
	char err[JOURNAL_ERR_LEN], data[1024], name[64], dname[16];
	struct dfsr_uid s, d[20], uid;
	int n, root, fd;
	double tn = 0, tr = 0, t0;

	if (argc != 3 || (n = atoi(argv[2])) <= 0) {
		fprintf(stderr, "usage: journalcost DIR NFILES\n");
		return 2;
	}
	memset(&folder, 0, sizeof(folder));
	memset(data, 'a', sizeof(data));
	if (sodium_init() < 0)
		return 1;
	mkdir(argv[1], 0755);
	root = open(argv[1], O_PATH | O_DIRECTORY);
	mkdirat(root, LAYOUT_PRIVATE, 0700);
	folder.name = "bench";
	folder.path = folder.mount = argv[1];
	folder.primary = true;
	folder.file_filter_text = "~*, *.bak, *.tmp";
	folder.subfolder_filter_text = "";
	filter_build(&folder.file_filter, folder.file_filter_text);
	filter_build(&folder.subfolder_filter, "");
	struct journal_opts o = { .folder = &folder, .root_fd = root };
	if (journal_open(&o, &j, err) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	mkdirat(root, "s", 0755);
	fd = openat(root, "s", O_PATH);
	journal_note_new(j, journal_root_uid(j), "s", fd, &s);
	close(fd);
	int sfd = openat(root, "s", O_PATH | O_DIRECTORY), dfd[20];
	for (int i = 0; i < 20; i++) {
		snprintf(dname, sizeof(dname), "d%03d", i);
		mkdirat(sfd, dname, 0755);
		dfd[i] = openat(sfd, dname, O_PATH | O_DIRECTORY);
		journal_note_new(j, &s, dname, dfd[i], &d[i]);
	}
	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "f%07d", i);
		fd = openat(dfd[i % 20], name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (write(fd, data, sizeof(data)) != sizeof(data))
			return 1;
		t0 = tcpu();
		if (journal_note_new(j, &d[i % 20], name, fd, &uid) < 0 || dfsr_uid_is_zero(&uid))
			return 2;
		tn += tcpu() - t0;
		close(fd);
	}
	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "f%07d", i);
		unlinkat(dfd[i % 20], name, 0);
		t0 = tcpu();
		if (journal_note_remove(j, &d[i % 20], name) < 0)
			return 3;
		tr += tcpu() - t0;
	}
	printf("note_new %.1f us  note_remove %.1f us (thread CPU per file, %d files)\n",
	       tn * 1e6 / n, tr * 1e6 / n, n);
	journal_close(j);
	return 0;
}
