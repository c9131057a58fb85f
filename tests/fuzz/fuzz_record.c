/*
 * fuzz_record.c - libFuzzer harness for record_decode(): any bytes must either be refused
 * with -EBADMSG or decode into a record that satisfies every invariant of core/record.h and
 * re-encodes to bytes that decode to the same record.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct record r, again;
	struct dfsr_buf b;

	if (record_decode(&r, data, size) != 0)
		return 0;
	if (!record_name_valid(r.name) || !version_vector_valid(&r.vv) ||
	    !version_vector_contains(&r.vv, &r.gvsn))
		abort();
	dfsr_buf_init(&b);
	if (record_encode(&r, &b) != 0)
		abort();
	if (record_decode(&again, (const uint8_t *)b.p, b.len) != 0)
		abort();
	if (strcmp(again.name, r.name) != 0 || !dfsr_uid_equal(&again.uid, &r.uid) ||
	    version_vector_compare(&again.vv, &r.vv) != VERSION_EQUAL)
		abort();
	record_release(&again);
	record_release(&r);
	dfsr_buf_release(&b);
	return 0;
}
