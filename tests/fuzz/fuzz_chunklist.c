/*
 * fuzz_chunklist.c - libFuzzer harness for chunk_list_decode(): any bytes must either be
 * refused with -EBADMSG (leaving the list empty) or decode into a list that satisfies every
 * invariant of core/chunk.h and re-encodes to exactly the input bytes (the encoding is
 * canonical: one list, one byte string).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/chunk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct chunk_list l;
	struct dfsr_buf b;
	int rc = chunk_list_decode(data, size, &l);

	if (rc == -EBADMSG) {
		if (l.n || l.v)
			abort();
		return 0;
	}
	if (rc != 0)
		abort(); /* -ENOMEM cannot happen: the input bounds every allocation */
	if (!chunk_list_valid(&l) || l.n > CHUNK_LIST_MAX)
		abort();
	dfsr_buf_init(&b);
	if (chunk_list_encode(&l, &b) != 0 || b.len != size || memcmp(b.p, data, size) != 0)
		abort();
	dfsr_buf_release(&b);
	chunk_list_release(&l);
	return 0;
}
