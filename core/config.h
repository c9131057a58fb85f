/*
 * config.h - the member's configuration file (INI, parsed with libinih).
 *
 * One file per member: one [member] section, one or more [folder NAME] sections and any
 * number of [peer NAME] sections (CONTRACT.md, "Configuration"). Parsing is strict and runs
 * in three phases (STYLE rule 19): config_init(), a line at a time through libinih's
 * callback, then config_finish() for the checks across keys and sections. Every error names
 * the file, the line and the key, in one line written to the caller's buffer:
 *
 *     /etc/dfsr/dfsr.conf:12: key 'staging_quota': bad size '4096Q' (use K, M, G suffixes)
 *
 * Invariants after a successful config_load(): every required key is present, every path
 * is absolute, names are unique, exactly the defaults of CONTRACT.md are filled in.
 * A loaded config is immutable until config_release(); threads may read it freely.
 */
#ifndef DFSR_CORE_CONFIG_H
#define DFSR_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/filter.h"

#define CONFIG_DEFAULT_PATH           "/etc/dfsr/dfsr.conf"
#define CONFIG_DEFAULT_PORT           5722
#define CONFIG_DEFAULT_STAGING_QUOTA  (4096ULL << 20)
#define CONFIG_DEFAULT_CONFLICT_QUOTA (660ULL << 20)
#define CONFIG_DEFAULT_TOMBSTONE_DAYS 60
#define CONFIG_DEFAULT_FILE_FILTER    "~*, *.bak, *.tmp"
#define CONFIG_NAME_MAX               64 /* member, folder and peer names: [A-Za-z0-9._-]+ */
#define CONFIG_ERR_LEN                512

struct config_addr {
	struct sockaddr_storage ss; /* AF_INET or AF_INET6 with the port set */
	socklen_t len;
	char text[128]; /* as written in the file, for messages */
};

struct config_folder {
	char *name;
	char *path;         /* local path: the real files and DfsrPrivate */
	char *mount;        /* FUSE mount point; may equal path */
	char *staging_path; /* NULL: <path>/DfsrPrivate/Staging */
	bool primary;
	bool read_only;
	uint64_t staging_quota;  /* bytes */
	uint64_t conflict_quota; /* bytes */
	uint32_t tombstone_days;
	char *file_filter_text;      /* as written, for status and messages */
	char *subfolder_filter_text; /* as written; may be "" */
	struct filter file_filter;
	struct filter subfolder_filter;
	unsigned line; /* line of the [folder] header, for messages */
};

struct config_peer {
	char *name;
	struct config_addr address;
	uint8_t public_key[32]; /* X25519 */
	uint64_t bandwidth;     /* bytes per second, 0 = unlimited */
	unsigned line;
};

struct config {
	char *file; /* the path it was read from */
	char *member_name;
	struct config_addr listen;
	char *key_path;
	char *control_path; /* default: /run/dfsr/<member>.sock */
	struct config_folder *folders;
	size_t nfolders;
	struct config_peer *peers;
	size_t npeers;
};

/**
 * config_load() - Read and check a configuration file.
 * @cfg:  storage to fill; the caller releases it with config_release() on success
 * @path: the file
 * @err:  receives one line naming file, line and key on failure
 *
 * Thread: init.
 * Ownership: on failure @cfg is left empty (nothing to release).
 * Return: 0; -ENOENT/-EACCES/-EISDIR if the file cannot be read; DFSR_ECONFIG for any
 *         syntax or value error; -ENOMEM.
 */
int config_load(struct config *cfg, const char *path, char err[static CONFIG_ERR_LEN]);

/**
 * config_parse_string() - As config_load(), from text in memory (unit tests, reload).
 * @name: the file name to use in messages
 */
int config_parse_string(struct config *cfg, const char *name, const char *text,
			char err[static CONFIG_ERR_LEN]);

/* Frees everything config_load() allocated; @cfg is empty afterwards. NULL-safe. */
void config_release(struct config *cfg);

/* The folder named @name, or NULL. */
const struct config_folder *config_folder(const struct config *cfg, const char *name);

/**
 * config_parse_addr() - "127.0.0.1:5722", "[::1]:5722", or an address without port
 * (CONFIG_DEFAULT_PORT).
 * Return: 0 or -EINVAL.
 */
int config_parse_addr(const char *text, struct config_addr *out);

/* "yes"/"no"/"true"/"false"/"1"/"0"/"on"/"off". Return: 0 or -EINVAL. */
int config_parse_bool(const char *text, bool *out);

#endif
