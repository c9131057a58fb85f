/*
 * fuzz_manifest.c - libFuzzer harness for the manifest reader (core/layout.c).
 *
 * Each input is written as ConflictAndDeletedManifest.xml in a scratch DfsrPrivate (on
 * /dev/shm when present) and listed; if it parses, an entry is appended and one removed,
 * which must keep the file parseable.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/layout.h"
#include "core/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The scratch directory, made once per fuzzing process and removed at exit. */
static int scratch_fd = -1;
static char scratch_path[64];

static int visit(void *arg, const struct manifest_entry *e)
{
	size_t *n = arg;

	if (!e->path || !e->preserved)
		abort();
	(*n)++;
	return 0;
}

static void scratch_remove(void)
{
	unlinkat(scratch_fd, LAYOUT_CONFLICT_MANIFEST, 0);
	unlinkat(scratch_fd, "." LAYOUT_CONFLICT_MANIFEST ".tmp", 0);
	rmdir(scratch_path);
}

static int scratch(void)
{
	snprintf(scratch_path, sizeof(scratch_path), "/dev/shm/dfsr-fuzz-manifest-XXXXXX");
	if (!mkdtemp(scratch_path)) {
		snprintf(scratch_path, sizeof(scratch_path), "/tmp/dfsr-fuzz-manifest-XXXXXX");
		if (!mkdtemp(scratch_path))
			abort();
	}
	atexit(scratch_remove);
	return open(scratch_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct manifest_entry e = { .path = "p", .preserved = "fuzz-preserved" };
	size_t n = 0;
	int fd, rc;

	if (scratch_fd < 0)
		scratch_fd = scratch();
	if (scratch_fd < 0)
		abort();
	fd = openat(scratch_fd, LAYOUT_CONFLICT_MANIFEST, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		    0600);
	if (fd < 0 || dfsr_write_all(fd, data, size) < 0)
		abort();
	close(fd);
	rc = manifest_list(scratch_fd, MANIFEST_CONFLICT, visit, &n);
	if (rc != 0 && rc != -EBADMSG)
		abort();
	if (rc == 0) {
		if (manifest_append(scratch_fd, MANIFEST_CONFLICT, &e) != 0)
			abort();
		if (manifest_remove(scratch_fd, MANIFEST_CONFLICT, "fuzz-preserved") != 0)
			abort();
		n = 0;
		if (manifest_list(scratch_fd, MANIFEST_CONFLICT, visit, &n) != 0)
			abort();
	}
	return 0;
}
