/*
 * fuzz_config.c - libFuzzer harness for the configuration parser (config_parse_string).
 *
 * Any bytes: the parser must return 0 or an error with a one-line message, never crash,
 * leak or read out of bounds; a successful parse must satisfy the header's invariants.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config cfg;
	char err[CONFIG_ERR_LEN];
	char *text;
	int rc;

	if (sodium_init() < 0)
		abort();
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	rc = config_parse_string(&cfg, "fuzz.conf", text, err);
	if (rc == 0) {
		if (!cfg.member_name || !cfg.key_path || !cfg.control_path || cfg.nfolders == 0)
			abort();
		for (size_t i = 0; i < cfg.nfolders; i++)
			if (cfg.folders[i].path[0] != '/' || cfg.folders[i].mount[0] != '/')
				abort();
		config_release(&cfg);
	} else if (!memchr(err, '\0', sizeof(err)) || strchr(err, '\n')) {
		abort();
	}
	free(text);
	return 0;
}
