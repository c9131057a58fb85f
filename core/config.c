/*
 * config.c - the member's configuration file: strict INI through libinih.
 *
 * libinih splits lines into sections and "key = value" pairs (with Debian's build, a ';'
 * after whitespace starts an inline comment). Its handler is not told the line number and
 * its section buffer is 50 bytes, so this module feeds inih through its own line reader
 * (ini_parse_stream): the reader counts lines, so every handler call knows its line
 * exactly; it parses "[kind NAME]" headers itself from the raw text, so section names are
 * never truncated; and it strips leading whitespace, so an indented key is a key and never
 * inih's multi-line continuation of the previous value. The first error stops the parse
 * (the reader returns EOF), and inih's return value tells a syntax error it found itself
 * (no '=' on a line) from one of ours.
 *
 * The three phases of STYLE rule 19: pctx_init() fills defaults, the reader and handler
 * take a line at a time, config_finish() checks what needs the whole file (required keys,
 * at least one folder, distinct paths). Every message is one line:
 *
 *     FILE:LINE: [folder share] key 'staging_quota': bad size '4096Q' (use ...)
 *
 * and missing-key errors name the line of their section's header. On any failure the
 * config is released, so the caller never has anything to clean up.
 */
#include "core/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "core/util.h"

#define CONFIG_FILE_MAX (1024 * 1024) /* a config larger than this is a mistake */

enum sec_kind {
	SEC_NONE = 0,
	SEC_MEMBER,
	SEC_FOLDER,
	SEC_PEER,
};

/* One section as seen in the file, in file order. */
struct sec {
	enum sec_kind kind;
	size_t idx;    /* into cfg->folders or cfg->peers */
	unsigned line; /* of the header */
	unsigned seen; /* bit per key of the kind's table */
};

struct pctx {
	struct config *cfg;
	const char *pos; /* next unread byte of the text */
	unsigned line;   /* line last handed to inih */
	struct sec *secs;
	size_t nsecs;
	size_t member_sec; /* index into secs, or SIZE_MAX */
	bool failed;
	bool nomem; /* the failure was an allocation */
	unsigned err_line;
	char *err;
};

struct key_def {
	const char *name;
	/* Stores @val into the current section; writes a reason to @why on -EINVAL. */
	int (*set)(struct pctx *c, void *obj, const char *val, char *why, size_t whylen);
	bool required;
};

/* --- messages ------------------------------------------------------------------ */

/* Records the first error; returns -EINVAL so that callers can return it directly. */
static int set_error(struct pctx *c, unsigned line, const char *fmt, ...) DFSR_PRINTF(3, 4);

static int set_error(struct pctx *c, unsigned line, const char *fmt, ...)
{
	va_list ap;
	int n = 0;

	if (c->failed)
		return -EINVAL;
	c->failed = true;
	c->err_line = line;
	if (line)
		n = snprintf(c->err, CONFIG_ERR_LEN, "%s:%u: ", c->cfg->file, line);
	else
		n = snprintf(c->err, CONFIG_ERR_LEN, "%s: ", c->cfg->file);
	if (n < 0 || n >= CONFIG_ERR_LEN)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(c->err + n, CONFIG_ERR_LEN - (size_t)n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* "[folder share]" etc. for section @s. */
static void sec_label(const struct pctx *c, const struct sec *s, char *buf, size_t len)
{
	switch (s->kind) {
	case SEC_MEMBER:
		snprintf(buf, len, "[member]");
		break;
	case SEC_FOLDER:
		snprintf(buf, len, "[folder %s]", c->cfg->folders[s->idx].name);
		break;
	case SEC_PEER:
		snprintf(buf, len, "[peer %s]", c->cfg->peers[s->idx].name);
		break;
	default:
		snprintf(buf, len, "(no section)");
		break;
	}
}

/* --- value parsers ------------------------------------------------------------- */

int config_parse_bool(const char *text, bool *out)
{
	static const char *const yes[] = { "yes", "true", "1", "on" };
	static const char *const no[] = { "no", "false", "0", "off" };

	for (size_t i = 0; i < DFSR_ARRAY_SIZE(yes); i++) {
		if (strcasecmp(text, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(text, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_port(const char *s, uint16_t *out)
{
	unsigned long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v == 0 || v > 65535)
		return -EINVAL;
	*out = (uint16_t)v;
	return 0;
}

int config_parse_addr(const char *text, struct config_addr *out)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *port = NULL, *h = text, *close;
	size_t hlen;
	uint16_t p = CONFIG_DEFAULT_PORT;
	struct config_addr a;

	memset(&a, 0, sizeof(a));
	if (strlen(text) >= sizeof(a.text))
		return -EINVAL;
	if (*text == '[') {
		close = strchr(text, ']');
		if (!close)
			return -EINVAL;
		h = text + 1;
		hlen = (size_t)(close - h);
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != '\0')
			return -EINVAL;
	} else {
		const char *colon = strchr(text, ':');

		if (colon && strchr(colon + 1, ':')) {
			hlen = strlen(text); /* a bare IPv6 address, no port */
		} else {
			hlen = colon ? (size_t)(colon - text) : strlen(text);
			port = colon ? colon + 1 : NULL;
		}
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (port && parse_port(port, &p) < 0)
		return -EINVAL;
	if (*text != '[' &&
	    inet_pton(AF_INET, host, &((struct sockaddr_in *)&a.ss)->sin_addr) == 1) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(p);
		a.len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&a.ss)->sin6_addr) == 1) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(p);
		a.len = sizeof(*sin6);
	} else {
		return -EINVAL;
	}
	snprintf(a.text, sizeof(a.text), "%s", text);
	*out = a;
	return 0;
}

static bool name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= CONFIG_NAME_MAX || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	for (; *s; s++) {
		char ch = *s;

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

/* --- key setters ---------------------------------------------------------------- */

static int set_str(char **dst, const char *val)
{
	char *s = strdup(val);

	if (!s)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

static int set_abs_path(char **dst, const char *val, char *why, size_t whylen)
{
	if (val[0] != '/') {
		snprintf(why, whylen, "'%.200s' is not an absolute path", val);
		return -EINVAL;
	}
	return set_str(dst, val);
}

static int set_size(uint64_t *dst, const char *val, char *why, size_t whylen)
{
	int rc = dfsr_parse_size(val, dst);

	if (rc == -ERANGE)
		snprintf(why, whylen, "size '%.200s' is too large", val);
	else if (rc < 0)
		snprintf(why, whylen, "bad size '%.200s' (use a number with K, M or G)", val);
	return rc < 0 ? -EINVAL : 0;
}

static int set_bool(bool *dst, const char *val, char *why, size_t whylen)
{
	if (config_parse_bool(val, dst) < 0) {
		snprintf(why, whylen, "bad boolean '%.200s' (use yes or no)", val);
		return -EINVAL;
	}
	return 0;
}

static int set_addr(struct config_addr *dst, const char *val, char *why, size_t whylen)
{
	if (config_parse_addr(val, dst) < 0) {
		snprintf(why, whylen,
			 "bad address '%.200s' (use a.b.c.d:port or [v6]:port, no host names)",
			 val);
		return -EINVAL;
	}
	return 0;
}

static int set_filter(char **text, struct filter *f, const char *val, char *why, size_t whylen)
{
	struct filter nf;
	int rc = filter_build(&nf, val);

	if (rc == -ENOMEM)
		return rc;
	if (rc < 0) {
		snprintf(why, whylen,
			 "bad filter '%.200s' (comma-separated wildcards without '/', at most %d)",
			 val, FILTER_MAX_PATTERNS);
		return -EINVAL;
	}
	rc = set_str(text, val);
	if (rc < 0) {
		filter_release(&nf);
		return rc;
	}
	filter_release(f);
	*f = nf;
	return 0;
}

static int m_name(struct pctx *c, void *o, const char *v, char *why, size_t wl)
{
	(void)o;
	if (!name_ok(v)) {
		snprintf(why, wl, "bad name '%.100s' (use 1 to %d of A-Z a-z 0-9 . _ -)", v,
			 CONFIG_NAME_MAX - 1);
		return -EINVAL;
	}
	return set_str(&c->cfg->member_name, v);
}

static int m_listen(struct pctx *c, void *o, const char *v, char *why, size_t wl)
{
	(void)o;
	return set_addr(&c->cfg->listen, v, why, wl);
}

static int m_key(struct pctx *c, void *o, const char *v, char *why, size_t wl)
{
	(void)o;
	return set_abs_path(&c->cfg->key_path, v, why, wl);
}

static int m_control(struct pctx *c, void *o, const char *v, char *why, size_t wl)
{
	(void)o;
	return set_abs_path(&c->cfg->control_path, v, why, wl);
}

static int f_path(struct pctx *c, void *o, const char *v, char *why, size_t wl)
{
	(void)c;
	return set_abs_path(&((struct config_folder *)o)->path, v, why, wl);
}

static int f_mount(struct pctx *c, void *o, const char *v, char *why, size_t wl)
{
	(void)c;
	return set_abs_path(&((struct config_folder *)o)->mount, v, why, wl);
}

static int f_staging_path(struct pctx *c, void *o, const char *v, char *why, size_t wl)
{
	(void)c;
	return set_abs_path(&((struct config_folder *)o)->staging_path, v, why, wl);
}

static int f_primary(struct pctx *c, void *o, const char *v, char *why, size_t wl)
{
	(void)c;
	return set_bool(&((struct config_folder *)o)->primary, v, why, wl);
}

static int f_read_only(struct pctx *c, void *o, const char *v, char *why, size_t wl)
{
	(void)c;
	return set_bool(&((struct config_folder *)o)->read_only, v, why, wl);
}

static int f_staging_quota(struct pctx *c, void *o, const char *v, char *why, size_t wl)
{
	(void)c;
	return set_size(&((struct config_folder *)o)->staging_quota, v, why, wl);
}

static int f_conflict_quota(struct pctx *c, void *o, const char *v, char *why, size_t wl)
{
	(void)c;
	return set_size(&((struct config_folder *)o)->conflict_quota, v, why, wl);
}

static int f_file_filter(struct pctx *c, void *o, const char *v, char *why, size_t wl)
{
	struct config_folder *f = o;

	(void)c;
	return set_filter(&f->file_filter_text, &f->file_filter, v, why, wl);
}

static int f_subfolder_filter(struct pctx *c, void *o, const char *v, char *why, size_t wl)
{
	struct config_folder *f = o;

	(void)c;
	return set_filter(&f->subfolder_filter_text, &f->subfolder_filter, v, why, wl);
}

static int f_tombstone_days(struct pctx *c, void *o, const char *v, char *why, size_t wl)
{
	unsigned long d;
	char *end;

	(void)c;
	errno = 0;
	d = (*v >= '0' && *v <= '9') ? strtoul(v, &end, 10) : 0;
	if (*v < '0' || *v > '9' || errno || *end || d < 1 || d > 3650) {
		snprintf(why, wl, "bad number of days '%.100s' (use 1 to 3650)", v);
		return -EINVAL;
	}
	((struct config_folder *)o)->tombstone_days = (uint32_t)d;
	return 0;
}

static int p_address(struct pctx *c, void *o, const char *v, char *why, size_t wl)
{
	(void)c;
	return set_addr(&((struct config_peer *)o)->address, v, why, wl);
}

static int p_public_key(struct pctx *c, void *o, const char *v, char *why, size_t wl)
{
	uint8_t key[32];
	size_t len = 0;

	(void)c;
	if (sodium_base642bin(key, sizeof(key), v, strlen(v), NULL, &len, NULL,
			      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    len != sizeof(key)) {
		snprintf(why, wl,
			 "bad public key (use the base64 of 32 bytes that "
			 "'dfsr pubkey' prints)");
		return -EINVAL;
	}
	memcpy(((struct config_peer *)o)->public_key, key, sizeof(key));
	return 0;
}

static int p_bandwidth(struct pctx *c, void *o, const char *v, char *why, size_t wl)
{
	(void)c;
	return set_size(&((struct config_peer *)o)->bandwidth, v, why, wl);
}

static const struct key_def member_keys[] = {
	{ "name", m_name, true },
	{ "listen", m_listen, false },
	{ "key", m_key, true },
	{ "control", m_control, false },
};

static const struct key_def folder_keys[] = {
	{ "path", f_path, true },
	{ "mount", f_mount, true },
	{ "primary", f_primary, false },
	{ "read_only", f_read_only, false },
	{ "staging_quota", f_staging_quota, false },
	{ "conflict_quota", f_conflict_quota, false },
	{ "file_filter", f_file_filter, false },
	{ "subfolder_filter", f_subfolder_filter, false },
	{ "staging_path", f_staging_path, false },
	{ "tombstone_days", f_tombstone_days, false },
};

static const struct key_def peer_keys[] = {
	{ "address", p_address, true },
	{ "public_key", p_public_key, true },
	{ "bandwidth", p_bandwidth, false },
};

static const struct key_def *keys_of(enum sec_kind k, size_t *n)
{
	switch (k) {
	case SEC_MEMBER:
		*n = DFSR_ARRAY_SIZE(member_keys);
		return member_keys;
	case SEC_FOLDER:
		*n = DFSR_ARRAY_SIZE(folder_keys);
		return folder_keys;
	case SEC_PEER:
		*n = DFSR_ARRAY_SIZE(peer_keys);
		return peer_keys;
	default:
		*n = 0;
		return NULL;
	}
}

_Static_assert(DFSR_ARRAY_SIZE(folder_keys) < 32, "seen is a 32-bit mask");

/* --- sections ------------------------------------------------------------------- */

static int add_sec(struct pctx *c, enum sec_kind kind, size_t idx)
{
	struct sec *s;
	size_t bytes;

	if (__builtin_mul_overflow(c->nsecs + 1, sizeof(*s), &bytes))
		return -ENOMEM;
	s = realloc(c->secs, bytes);
	if (!s)
		return -ENOMEM;
	c->secs = s;
	c->secs[c->nsecs++] = (struct sec){ .kind = kind, .idx = idx, .line = c->line };
	return 0;
}

static int new_folder(struct pctx *c, const char *name)
{
	struct config *cfg = c->cfg;
	struct config_folder *f;
	size_t bytes;

	if (__builtin_mul_overflow(cfg->nfolders + 1, sizeof(*f), &bytes))
		return -ENOMEM;
	f = realloc(cfg->folders, bytes);
	if (!f)
		return -ENOMEM;
	cfg->folders = f;
	f = &cfg->folders[cfg->nfolders];
	memset(f, 0, sizeof(*f));
	f->name = strdup(name);
	if (!f->name)
		return -ENOMEM;
	cfg->nfolders++;
	f->staging_quota = CONFIG_DEFAULT_STAGING_QUOTA;
	f->conflict_quota = CONFIG_DEFAULT_CONFLICT_QUOTA;
	f->tombstone_days = CONFIG_DEFAULT_TOMBSTONE_DAYS;
	f->line = c->line;
	return add_sec(c, SEC_FOLDER, cfg->nfolders - 1);
}

static int new_peer(struct pctx *c, const char *name)
{
	struct config *cfg = c->cfg;
	struct config_peer *p;
	size_t bytes;

	if (__builtin_mul_overflow(cfg->npeers + 1, sizeof(*p), &bytes))
		return -ENOMEM;
	p = realloc(cfg->peers, bytes);
	if (!p)
		return -ENOMEM;
	cfg->peers = p;
	p = &cfg->peers[cfg->npeers];
	memset(p, 0, sizeof(*p));
	p->name = strdup(name);
	if (!p->name)
		return -ENOMEM;
	cfg->npeers++;
	p->line = c->line;
	return add_sec(c, SEC_PEER, cfg->npeers - 1);
}

/* Line of an earlier section of @kind named @name, or 0. */
static unsigned find_sec(const struct pctx *c, enum sec_kind kind, const char *name)
{
	for (size_t i = 0; i < c->nsecs; i++) {
		const struct sec *s = &c->secs[i];

		if (s->kind != kind)
			continue;
		if (kind == SEC_MEMBER)
			return s->line;
		if (kind == SEC_FOLDER && strcmp(c->cfg->folders[s->idx].name, name) == 0)
			return s->line;
		if (kind == SEC_PEER && strcmp(c->cfg->peers[s->idx].name, name) == 0)
			return s->line;
	}
	return 0;
}

/* Splits the text between the brackets into a kind word and a name, then opens it. */
static int open_section(struct pctx *c, char *hdr)
{
	char *name = hdr + strcspn(hdr, " \t");
	enum sec_kind kind;
	unsigned prev;

	if (*name) {
		*name++ = '\0';
		name += strspn(name, " \t");
	}
	if (strcmp(hdr, "member") == 0)
		kind = SEC_MEMBER;
	else if (strcmp(hdr, "folder") == 0)
		kind = SEC_FOLDER;
	else if (strcmp(hdr, "peer") == 0)
		kind = SEC_PEER;
	else
		return set_error(c, c->line,
				 "unknown section [%.100s] (use [member], [folder NAME] "
				 "or [peer NAME])",
				 hdr);
	if (kind == SEC_MEMBER && *name)
		return set_error(c, c->line, "[member] takes no name");
	if (kind != SEC_MEMBER && !name_ok(name))
		return set_error(c, c->line,
				 "[%s]: bad name '%.100s' (use 1 to %d of A-Z a-z 0-9 . _ -)", hdr,
				 name, CONFIG_NAME_MAX - 1);
	prev = find_sec(c, kind, name);
	if (prev)
		return set_error(c, c->line, "duplicate section [%s%s%s] (first on line %u)", hdr,
				 *name ? " " : "", name, prev);
	if (kind == SEC_FOLDER)
		return new_folder(c, name);
	if (kind == SEC_PEER)
		return new_peer(c, name);
	c->member_sec = c->nsecs;
	return add_sec(c, SEC_MEMBER, 0);
}

/* Handles a line starting with '['; @s is the line, stripped, without its newline. */
static int section_line(struct pctx *c, const char *s)
{
	char hdr[256];
	const char *close = strchr(s, ']');
	const char *rest;
	size_t len, b = 1;

	if (!close)
		return set_error(c, c->line, "section header without ']'");
	rest = close + 1 + strspn(close + 1, " \t");
	if (*rest && *rest != ';')
		return set_error(c, c->line, "text after the section header");
	len = (size_t)(close - s);
	while (b < len && (s[b] == ' ' || s[b] == '\t'))
		b++;
	while (len > b && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len - b >= sizeof(hdr))
		return set_error(c, c->line, "section header too long");
	memcpy(hdr, s + b, len - b);
	hdr[len - b] = '\0';
	return open_section(c, hdr);
}

/*
 * inih's line source: hands over one line at a time, left-stripped (no multi-line
 * continuations), counting lines and opening sections on the way. Returns NULL (EOF) once
 * an error is recorded, so the first error ends the parse.
 */
static char *reader(char *str, int num, void *stream)
{
	struct pctx *c = stream;
	const char *s = c->pos, *nl;
	size_t len;

	if (c->failed || !*s)
		return NULL;
	nl = strchr(s, '\n');
	len = nl ? (size_t)(nl - s) : strlen(s);
	c->pos = nl ? nl + 1 : s + len;
	c->line++;
	if (c->line == 1 && len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
		s += 3;
		len -= 3;
	}
	while (len && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\f' || *s == '\v')) {
		s++;
		len--;
	}
	while (len && (s[len - 1] == '\r' || s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (num < 3 || len > (size_t)num - 3) {
		set_error(c, c->line, "line too long (at most %d characters)", num - 3);
		return NULL;
	}
	memcpy(str, s, len);
	str[len] = '\n';
	str[len + 1] = '\0';
	if (len && *s == '[') {
		str[len] = '\0';
		if (section_line(c, str) < 0) {
			if (!c->failed) {
				c->nomem = true;
				set_error(c, c->line, "out of memory");
			}
			return NULL;
		}
		str[len] = '\n';
	}
	return str;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct pctx *c = user;
	const struct key_def *keys;
	struct sec *s;
	char label[128], why[320];
	void *obj = NULL;
	size_t n, i;
	int rc;

	(void)section;
	if (c->failed)
		return 0;
	if (!c->nsecs) {
		set_error(c, c->line, "key '%.60s' outside any section", name);
		return 0;
	}
	s = &c->secs[c->nsecs - 1];
	sec_label(c, s, label, sizeof(label));
	keys = keys_of(s->kind, &n);
	for (i = 0; i < n && strcmp(keys[i].name, name) != 0; i++)
		;
	if (i == n) {
		set_error(c, c->line, "%s unknown key '%.60s'", label, name);
		return 0;
	}
	if (s->seen & (1u << i)) {
		set_error(c, c->line, "%s key '%s': given twice", label, name);
		return 0;
	}
	s->seen |= 1u << i;
	if (s->kind == SEC_FOLDER)
		obj = &c->cfg->folders[s->idx];
	else if (s->kind == SEC_PEER)
		obj = &c->cfg->peers[s->idx];
	why[0] = '\0';
	rc = keys[i].set(c, obj, value, why, sizeof(why));
	if (rc == -ENOMEM) {
		c->nomem = true;
		set_error(c, c->line, "out of memory");
		return 0;
	}
	if (rc < 0) {
		set_error(c, c->line, "%s key '%s': %s", label, name, why);
		return 0;
	}
	return 1;
}

/* --- finish --------------------------------------------------------------------- */

static int check_required(struct pctx *c)
{
	char label[128];

	for (size_t i = 0; i < c->nsecs; i++) {
		const struct sec *s = &c->secs[i];
		const struct key_def *keys;
		size_t n;

		keys = keys_of(s->kind, &n);
		for (size_t k = 0; k < n; k++) {
			if (!keys[k].required || (s->seen & (1u << k)))
				continue;
			sec_label(c, s, label, sizeof(label));
			set_error(c, s->line, "%s key '%s': missing (it is required)", label,
				  keys[k].name);
			return DFSR_ECONFIG;
		}
	}
	return 0;
}

static int check_folders(struct pctx *c)
{
	struct config *cfg = c->cfg;

	for (size_t i = 0; i < cfg->nfolders; i++) {
		const struct config_folder *f = &cfg->folders[i];

		for (size_t j = 0; j < i; j++) {
			const struct config_folder *g = &cfg->folders[j];

			if (strcmp(f->path, g->path) == 0 || strcmp(f->mount, g->mount) == 0) {
				set_error(c, f->line,
					  "[folder %s] key '%s': the same as [folder %s]", f->name,
					  strcmp(f->path, g->path) == 0 ? "path" : "mount",
					  g->name);
				return DFSR_ECONFIG;
			}
		}
	}
	for (size_t i = 0; i < cfg->npeers; i++) {
		if (strcmp(cfg->peers[i].name, cfg->member_name) == 0) {
			set_error(c, cfg->peers[i].line,
				  "[peer %s]: a peer cannot have this member's name",
				  cfg->peers[i].name);
			return DFSR_ECONFIG;
		}
	}
	return 0;
}

/* Fills the defaults that need allocation and builds the default filters. */
static int fill_defaults(struct config *cfg)
{
	int rc;

	if (!cfg->listen.len) {
		rc = config_parse_addr("0.0.0.0", &cfg->listen);
		if (rc < 0)
			return rc;
	}
	if (!cfg->control_path) {
		struct dfsr_buf b;

		dfsr_buf_init(&b);
		rc = dfsr_buf_addf(&b, "/run/dfsr/%s.sock", cfg->member_name);
		if (rc < 0)
			return rc;
		cfg->control_path = dfsr_buf_detach(&b, NULL);
		if (!cfg->control_path)
			return -ENOMEM;
	}
	for (size_t i = 0; i < cfg->nfolders; i++) {
		struct config_folder *f = &cfg->folders[i];

		if (!f->file_filter_text) {
			rc = set_str(&f->file_filter_text, CONFIG_DEFAULT_FILE_FILTER);
			if (rc == 0)
				rc = filter_build(&f->file_filter, f->file_filter_text);
			if (rc < 0)
				return rc;
		}
		if (!f->subfolder_filter_text) {
			rc = set_str(&f->subfolder_filter_text, "");
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

static int config_finish(struct pctx *c)
{
	int rc;

	if (c->member_sec == SIZE_MAX) {
		set_error(c, 0, "no [member] section");
		return DFSR_ECONFIG;
	}
	rc = check_required(c);
	if (rc < 0)
		return rc;
	if (!c->cfg->nfolders) {
		set_error(c, 0, "no [folder NAME] section (at least one is required)");
		return DFSR_ECONFIG;
	}
	rc = check_folders(c);
	if (rc < 0)
		return rc;
	rc = fill_defaults(c->cfg);
	if (rc < 0) {
		c->nomem = true;
		set_error(c, 0, "out of memory");
	}
	return rc;
}

/* --- entry points --------------------------------------------------------------- */

int config_parse_string(struct config *cfg, const char *name, const char *text,
			char err[static CONFIG_ERR_LEN])
{
	struct pctx c = { .cfg = cfg, .pos = text, .member_sec = SIZE_MAX, .err = err };
	int rc, line;

	memset(cfg, 0, sizeof(*cfg));
	err[0] = '\0';
	cfg->file = strdup(name);
	if (!cfg->file) {
		snprintf(err, CONFIG_ERR_LEN, "%s: out of memory", name);
		return -ENOMEM;
	}
	line = ini_parse_stream(reader, &c, handler, &c);
	if (line > 0 && (!c.failed || (unsigned)line < c.err_line)) {
		c.failed = false;
		set_error(&c, (unsigned)line,
			  "syntax error (expected 'key = value' or '[section]')");
	} else if (line < 0 && !c.failed) {
		c.nomem = true;
		set_error(&c, 0, "out of memory");
	}
	rc = c.failed ? DFSR_ECONFIG : config_finish(&c);
	if (c.nomem)
		rc = -ENOMEM;
	free(c.secs);
	if (rc < 0)
		config_release(cfg);
	return rc;
}

int config_load(struct config *cfg, const char *path, char err[static CONFIG_ERR_LEN])
{
	struct dfsr_buf b;
	struct stat st;
	char chunk[8192];
	int fd, rc = 0;

	memset(cfg, 0, sizeof(*cfg));
	dfsr_buf_init(&b);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, CONFIG_ERR_LEN, "%s: %s", path, dfsr_strerror(rc));
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out_close;
	}
	if (S_ISDIR(st.st_mode)) {
		rc = -EISDIR;
		goto out_close;
	}
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			goto out_close;
		}
		if (n == 0)
			break;
		if (b.len + (size_t)n > CONFIG_FILE_MAX || memchr(chunk, '\0', (size_t)n)) {
			snprintf(err, CONFIG_ERR_LEN,
				 "%s: not a text configuration file "
				 "(NUL byte, or larger than 1 MiB)",
				 path);
			rc = DFSR_ECONFIG;
			goto out_release;
		}
		rc = dfsr_buf_add(&b, chunk, (size_t)n);
		if (rc < 0)
			goto out_close;
	}
	close(fd);
	rc = config_parse_string(cfg, path, b.p, err);
	dfsr_buf_release(&b);
	return rc;
out_close:
	snprintf(err, CONFIG_ERR_LEN, "%s: %s", path, dfsr_strerror(rc));
out_release:
	close(fd);
	dfsr_buf_release(&b);
	return rc;
}

void config_release(struct config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->nfolders; i++) {
		struct config_folder *f = &cfg->folders[i];

		free(f->name);
		free(f->path);
		free(f->mount);
		free(f->staging_path);
		free(f->file_filter_text);
		free(f->subfolder_filter_text);
		filter_release(&f->file_filter);
		filter_release(&f->subfolder_filter);
	}
	for (size_t i = 0; i < cfg->npeers; i++) {
		free(cfg->peers[i].name);
		sodium_memzero(cfg->peers[i].public_key, sizeof(cfg->peers[i].public_key));
	}
	free(cfg->folders);
	free(cfg->peers);
	free(cfg->file);
	free(cfg->member_name);
	free(cfg->key_path);
	free(cfg->control_path);
	memset(cfg, 0, sizeof(*cfg));
}

const struct config_folder *config_folder(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nfolders; i++)
		if (strcmp(cfg->folders[i].name, name) == 0)
			return &cfg->folders[i];
	return NULL;
}
