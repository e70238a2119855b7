/* Typed configuration registry and YAML loading (config.h).
 *
 * The file is read with libyaml's document API, so every node carries its
 * position (start_mark, 0-based) for messages.  Scalars are typed here, not
 * by libyaml: integers accept YAML's `40_000` digit separators, numbers
 * any decimal or exponent form (`4.6416e-4`, `1e-2`, `.inf`), booleans
 * true/false/True/False/TRUE/FALSE.  A quoted scalar is always a string.
 * Before the document is built, one pass over libyaml's event stream
 * refuses lists and mappings nested deeper than CONFIG_MAX_DEPTH. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* ------------------------------------------------------------------ */
/* small helpers */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "config: out of memory\n");
        abort();
    }
    return p;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = xmalloc(n);
    memcpy(d, s, n);
    return d;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static void die(const char *fmt, const char *key)
{
    fprintf(stderr, "config: ");
    fprintf(stderr, fmt, key);
    fprintf(stderr, "\n");
    abort();
}

const char *config_type_name(ConfigType t)
{
    switch (t) {
    case CONFIG_INT: return "integer";
    case CONFIG_DOUBLE: return "number";
    case CONFIG_BOOL: return "boolean";
    case CONFIG_STR: return "string";
    case CONFIG_ENUM: return "choice";
    }
    return "?";
}

/* Length of the section part of "section.key". */
static size_t section_len(const char *key)
{
    const char *dot = strchr(key, '.');
    return dot ? (size_t)(dot - key) : strlen(key);
}

/* ------------------------------------------------------------------ */
/* schema */

void config_schema_init(ConfigSchema *s)
{
    memset(s, 0, sizeof *s);
}

void config_schema_free(ConfigSchema *s)
{
    for (int i = 0; i < s->n; i++) {
        ConfigEntryDef *e = &s->entries[i];
        free(e->key);
        free(e->def.s);
        for (int k = 0; k < e->n_choices; k++) free(e->choices[k]);
        free(e->choices);
    }
    free(s->entries);
    for (int i = 0; i < s->n_ignored_top; i++) free(s->ignored_top[i]);
    free(s->ignored_top);
    for (int i = 0; i < s->n_alias_top; i++) {
        free(s->alias_top[i]);
        free(s->alias_key[i]);
    }
    free(s->alias_top);
    free(s->alias_key);
    memset(s, 0, sizeof *s);
}

int config_schema_find(const ConfigSchema *s, const char *key)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->entries[i].key, key) == 0) return i;
    return -1;
}

static ConfigEntryDef *schema_add(ConfigSchema *s, const char *key, ConfigType type, unsigned flags)
{
    const char *dot = strchr(key, '.');
    if (!dot || dot == key || dot[1] == '\0' || strchr(dot + 1, '.'))
        die("registered key '%s' is not of the form section.key", key);
    if (config_schema_find(s, key) >= 0) die("key '%s' registered twice", key);
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 32;
        ConfigEntryDef *ne = realloc(s->entries, (size_t)s->cap * sizeof *ne);
        if (!ne) die("out of memory registering '%s'", key);
        s->entries = ne;
    }
    ConfigEntryDef *e = &s->entries[s->n++];
    memset(e, 0, sizeof *e);
    e->key = xstrdup(key);
    e->type = type;
    e->flags = flags;
    return e;
}

void config_schema_add_int(ConfigSchema *s, const char *key, int def, unsigned flags)
{
    schema_add(s, key, CONFIG_INT, flags)->def.i = def;
}

void config_schema_add_double(ConfigSchema *s, const char *key, double def, unsigned flags)
{
    schema_add(s, key, CONFIG_DOUBLE, flags)->def.d = def;
}

void config_schema_add_bool(ConfigSchema *s, const char *key, bool def, unsigned flags)
{
    schema_add(s, key, CONFIG_BOOL, flags)->def.b = def;
}

void config_schema_add_str(ConfigSchema *s, const char *key, const char *def, unsigned flags)
{
    schema_add(s, key, CONFIG_STR, flags)->def.s = xstrdup(def ? def : "");
}

void config_schema_add_enum(ConfigSchema *s, const char *key, const char *def,
                            const char *const *allowed, unsigned flags)
{
    int n = 0;
    bool def_ok = false;
    while (allowed && allowed[n]) {
        if (def && strcmp(allowed[n], def) == 0) def_ok = true;
        n++;
    }
    if (n == 0) die("enum key '%s' registered without allowed values", key);
    if (!def_ok) die("default of enum key '%s' is not one of its allowed values", key);
    ConfigEntryDef *e = schema_add(s, key, CONFIG_ENUM, flags);
    e->choices = xmalloc((size_t)n * sizeof *e->choices);
    for (int k = 0; k < n; k++) e->choices[k] = xstrdup(allowed[k]);
    e->n_choices = n;
    e->def.s = xstrdup(def);
}

void config_schema_ignore_top(ConfigSchema *s, const char *name)
{
    char **nt = realloc(s->ignored_top, (size_t)(s->n_ignored_top + 1) * sizeof *nt);
    if (!nt) die("out of memory registering '%s'", name);
    s->ignored_top = nt;
    s->ignored_top[s->n_ignored_top++] = xstrdup(name);
}

void config_schema_alias_top(ConfigSchema *s, const char *name, const char *key)
{
    if (config_schema_find(s, key) < 0) die("top-level alias names the unregistered key %s", key);
    char **na = realloc(s->alias_top, (size_t)(s->n_alias_top + 1) * sizeof *na);
    if (!na) die("out of memory registering '%s'", name);
    s->alias_top = na;
    char **nk = realloc(s->alias_key, (size_t)(s->n_alias_top + 1) * sizeof *nk);
    if (!nk) die("out of memory registering '%s'", name);
    s->alias_key = nk;
    s->alias_top[s->n_alias_top] = xstrdup(name);
    s->alias_key[s->n_alias_top++] = xstrdup(key);
}

static const char *schema_alias_key(const ConfigSchema *s, const char *name)
{
    for (int i = 0; i < s->n_alias_top; i++)
        if (strcmp(s->alias_top[i], name) == 0) return s->alias_key[i];
    return NULL;
}

/* Is `name` (length n) the section of some registered key? */
static bool schema_has_section(const ConfigSchema *s, const char *name, size_t n)
{
    for (int i = 0; i < s->n; i++) {
        const char *k = s->entries[i].key;
        if (section_len(k) == n && strncmp(k, name, n) == 0) return true;
    }
    return false;
}

static bool schema_top_ignored(const ConfigSchema *s, const char *name)
{
    for (int i = 0; i < s->n_ignored_top; i++)
        if (strcmp(s->ignored_top[i], name) == 0) return true;
    return false;
}

/* "a, b, c": the sections in registration order. */
static void schema_sections(const ConfigSchema *s, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < s->n; i++) {
        const char *k = s->entries[i].key;
        size_t sl = section_len(k);
        bool seen = false;
        for (int j = 0; j < i && !seen; j++)
            seen = section_len(s->entries[j].key) == sl && strncmp(s->entries[j].key, k, sl) == 0;
        if (seen) continue;
        int w = snprintf(buf + used, n - used, "%s%.*s", used ? ", " : "", (int)sl, k);
        if (w < 0 || (size_t)w >= n - used) return;
        used += (size_t)w;
    }
}

/* ------------------------------------------------------------------ */
/* "did you mean": Levenshtein distance, small strings only */

static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 1000;
    int prev[64], cur[64];
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (lb + 1) * sizeof *prev);
    }
    return prev[lb];
}

/* Small enough to be a typo of a word of length n. */
static int typo_budget(size_t n)
{
    return n <= 3 ? 1 : n <= 8 ? 2 : 3;
}

/* Closest registered key to section.name: the same name in another section
 * wins, then the closest name within the section.  NULL if nothing close. */
static const char *suggest_key(const ConfigSchema *s, const char *section, const char *name)
{
    const char *best = NULL;
    int best_d = typo_budget(strlen(name)) + 1;
    size_t sl = strlen(section);
    for (int i = 0; i < s->n; i++) {
        const char *k = s->entries[i].key;
        const char *kn = k + section_len(k) + 1;
        if (strcmp(kn, name) == 0) return k; /* right key, wrong section */
        if (section_len(k) != sl || strncmp(k, section, sl) != 0) continue;
        int d = edit_distance(kn, name);
        if (d < best_d) {
            best_d = d;
            best = k;
        }
    }
    return best;
}

static void suggest_section(const ConfigSchema *s, const char *name, char *out, size_t n)
{
    out[0] = '\0';
    int best_d = typo_budget(strlen(name)) + 1;
    for (int i = 0; i < s->n; i++) {
        char sec[64];
        snprintf(sec, sizeof sec, "%.*s", (int)section_len(s->entries[i].key), s->entries[i].key);
        int d = edit_distance(sec, name);
        if (d < best_d) {
            best_d = d;
            snprintf(out, n, "%s", sec);
        }
    }
}

/* ------------------------------------------------------------------ */
/* scalar typing */

typedef enum { PARSE_OK = 0, PARSE_BAD, PARSE_RANGE } ParseStatus;

/* Copy `text` without the '_' digit separators of YAML into buf; the
 * separators must sit between two digits. */
static bool strip_underscores(const char *text, char *buf, size_t n)
{
    size_t j = 0;
    for (size_t i = 0; text[i]; i++) {
        if (text[i] == '_') {
            bool digit_before = i > 0 && text[i - 1] >= '0' && text[i - 1] <= '9';
            bool digit_after = text[i + 1] >= '0' && text[i + 1] <= '9';
            if (!digit_before || !digit_after) return false;
            continue;
        }
        if (j + 1 >= n) return false;
        buf[j++] = text[i];
    }
    buf[j] = '\0';
    return true;
}

static ParseStatus parse_int(const char *text, int *out)
{
    char buf[64];
    if (!strip_underscores(text, buf, sizeof buf)) return PARSE_BAD;
    const char *p = buf;
    if (*p == '+' || *p == '-') p++;
    if (!*p) return PARSE_BAD;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9') return PARSE_BAD;
    errno = 0;
    long long v = strtoll(buf, NULL, 10);
    if (errno == ERANGE || v < INT_MIN || v > INT_MAX) return PARSE_RANGE;
    *out = (int)v;
    return PARSE_OK;
}

static ParseStatus parse_double(const char *text, double *out)
{
    static const char *const inf[] = {".inf", ".Inf", ".INF"};
    static const char *const nan[] = {".nan", ".NaN", ".NAN"};
    const char *t = text;
    double sign = 1.0;
    if (*t == '+' || *t == '-') sign = *t++ == '-' ? -1.0 : 1.0;
    for (int k = 0; k < 3; k++) {
        if (strcmp(t, inf[k]) == 0) {
            *out = sign * HUGE_VAL;
            return PARSE_OK;
        }
        if (t == text && strcmp(t, nan[k]) == 0) {
            *out = NAN;
            return PARSE_OK;
        }
    }
    char buf[128];
    if (!strip_underscores(text, buf, sizeof buf)) return PARSE_BAD;
    /* [+-] digits [. digits] [(e|E) [+-] digits], at least one mantissa digit */
    const char *p = buf;
    if (*p == '+' || *p == '-') p++;
    int mant = 0;
    while (*p >= '0' && *p <= '9') p++, mant++;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') p++, mant++;
    }
    if (mant == 0) return PARSE_BAD;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        int ex = 0;
        while (*p >= '0' && *p <= '9') p++, ex++;
        if (ex == 0) return PARSE_BAD;
    }
    if (*p) return PARSE_BAD;
    errno = 0;
    double v = strtod(buf, NULL);
    if (errno == ERANGE && isinf(v)) return PARSE_RANGE;
    *out = v;
    return PARSE_OK;
}

static ParseStatus parse_bool(const char *text, bool *out)
{
    if (!strcmp(text, "true") || !strcmp(text, "True") || !strcmp(text, "TRUE")) {
        *out = true;
        return PARSE_OK;
    }
    if (!strcmp(text, "false") || !strcmp(text, "False") || !strcmp(text, "FALSE")) {
        *out = false;
        return PARSE_OK;
    }
    return PARSE_BAD;
}

/* The length (1-4) of the strict UTF-8 sequence at p (no overlong forms,
 * no surrogates, at most U+10FFFF) and its code point, or 0 if p does not
 * start one.  libyaml reads nothing else, so a string value must be this
 * to be written into a YAML file (run files, `seqeig info --config`). */
static size_t utf8_seq(const unsigned char *p, uint32_t *cp)
{
    const unsigned c = p[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) len = 2, v = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, v = c & 0x0F, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, v = c & 0x07, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return 0;
    for (size_t j = 1; j < len; j++) {
        const unsigned t = p[j]; /* a NUL ends the string: fails the range */
        if (t < (j == 1 ? lo : 0x80) || t > (j == 1 ? hi : 0xBF)) return 0;
        v = v << 6 | (t & 0x3F);
    }
    *cp = v;
    return len;
}

/* Byte offset of the first invalid UTF-8 sequence of s, or -1. */
static long utf8_invalid_at(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    uint32_t cp;
    for (size_t i = 0; p[i];) {
        const size_t k = utf8_seq(p + i, &cp);
        if (!k) return (long)i;
        i += k;
    }
    return -1;
}

static bool is_null_text(const char *text)
{
    return !*text || !strcmp(text, "~") || !strcmp(text, "null") || !strcmp(text, "Null") ||
           !strcmp(text, "NULL");
}

/* Type `text` for entry e into *v (v->s newly allocated for strings).
 * `quoted`: the scalar was quoted in the file, so it is a string.  On
 * failure writes "expected ..., got ..." into msg. */
static int type_value(const ConfigEntryDef *e, const char *text, bool quoted, ConfigValue *v,
                      char *msg, size_t n)
{
    memset(v, 0, sizeof *v);
    bool is_choice = false;
    for (int k = 0; e->type == CONFIG_ENUM && k < e->n_choices; k++) is_choice |= !strcmp(e->choices[k], text);
    if (!quoted && is_null_text(text) && !is_choice)
        return fail(msg, n, "expected %s %s, got no value (null)%s",
                    e->type == CONFIG_INT ? "an" : "a", config_type_name(e->type),
                    e->type == CONFIG_STR ? "; write \"\" for an empty string" : "");
    ParseStatus st = PARSE_OK;
    switch (e->type) {
    case CONFIG_INT:
        st = quoted ? PARSE_BAD : parse_int(text, &v->i);
        if (st == PARSE_RANGE)
            return fail(msg, n, "integer '%s' out of range [%d, %d]", text, INT_MIN, INT_MAX);
        if (st != PARSE_OK)
            return fail(msg, n, "expected an integer, got %s'%s'", quoted ? "the string " : "", text);
        return 0;
    case CONFIG_DOUBLE:
        st = quoted ? PARSE_BAD : parse_double(text, &v->d);
        if (st == PARSE_RANGE) return fail(msg, n, "number '%s' out of range", text);
        if (st != PARSE_OK)
            return fail(msg, n, "expected a number, got %s'%s'", quoted ? "the string " : "", text);
        return 0;
    case CONFIG_BOOL:
        st = quoted ? PARSE_BAD : parse_bool(text, &v->b);
        if (st != PARSE_OK)
            return fail(msg, n, "expected a boolean (true or false), got %s'%s'",
                        quoted ? "the string " : "", text);
        return 0;
    case CONFIG_STR: {
        const long bad = utf8_invalid_at(text);
        if (bad >= 0) return fail(msg, n, "the string is not valid UTF-8 (byte %ld): a config holds UTF-8 text", bad);
        v->s = xstrdup(text);
        return 0;
    }
    case CONFIG_ENUM:
        for (int k = 0; k < e->n_choices; k++)
            if (strcmp(e->choices[k], text) == 0) {
                v->s = xstrdup(text);
                return 0;
            }
        {
            size_t used = (size_t)snprintf(msg, n, "invalid value '%s'; allowed: ", text);
            for (int k = 0; k < e->n_choices && used < n; k++)
                used += (size_t)snprintf(msg + used, n - used, "%s%s", k ? ", " : "", e->choices[k]);
        }
        return -1;
    }
    return fail(msg, n, "unknown type");
}

/* ------------------------------------------------------------------ */
/* Config */

static void value_copy(ConfigValue *dst, const ConfigValue *src, ConfigType t)
{
    *dst = *src;
    dst->s = (t == CONFIG_STR || t == CONFIG_ENUM) && src->s ? xstrdup(src->s) : NULL;
}

void config_init(Config *c, const ConfigSchema *s)
{
    memset(c, 0, sizeof *c);
    c->schema = s;
    size_t n = (size_t)s->n;
    c->vals = xmalloc(n * sizeof *c->vals);
    c->source = xmalloc(n * sizeof *c->source);
    c->line = xmalloc(n * sizeof *c->line);
    for (int i = 0; i < s->n; i++) {
        value_copy(&c->vals[i], &s->entries[i].def, s->entries[i].type);
        c->source[i] = CONFIG_FROM_DEFAULT;
        c->line[i] = 0;
    }
}

void config_free(Config *c)
{
    if (c->schema)
        for (int i = 0; i < c->schema->n; i++) free(c->vals[i].s);
    free(c->vals);
    free(c->source);
    free(c->line);
    free(c->path);
    memset(c, 0, sizeof *c);
}

static void config_assign(Config *c, int idx, ConfigValue *v, ConfigSource src, int line)
{
    free(c->vals[idx].s);
    c->vals[idx] = *v; /* takes ownership of v->s */
    v->s = NULL;
    c->source[idx] = src;
    c->line[idx] = line;
}

static int lookup(const Config *c, const char *key, ConfigType t1, ConfigType t2)
{
    int i = config_schema_find(c->schema, key);
    if (i < 0) die("getter on unregistered key '%s'", key);
    ConfigType t = c->schema->entries[i].type;
    if (t != t1 && t != t2) die("getter of the wrong type on key '%s'", key);
    return i;
}

int config_int(const Config *c, const char *key)
{
    return c->vals[lookup(c, key, CONFIG_INT, CONFIG_INT)].i;
}

double config_double(const Config *c, const char *key)
{
    return c->vals[lookup(c, key, CONFIG_DOUBLE, CONFIG_DOUBLE)].d;
}

bool config_bool(const Config *c, const char *key)
{
    return c->vals[lookup(c, key, CONFIG_BOOL, CONFIG_BOOL)].b;
}

const char *config_str(const Config *c, const char *key)
{
    return c->vals[lookup(c, key, CONFIG_STR, CONFIG_ENUM)].s;
}

const char *config_where(const Config *c, const char *key, char *buf, size_t n)
{
    int i = config_schema_find(c->schema, key);
    if (i < 0) die("config_where on unregistered key '%s'", key);
    switch (c->source[i]) {
    case CONFIG_FROM_FILE: snprintf(buf, n, "%s:%d", c->path ? c->path : "?", c->line[i]); break;
    case CONFIG_FROM_OVERRIDE: snprintf(buf, n, "--set"); break;
    default: snprintf(buf, n, "default"); break;
    }
    return buf;
}

int config_key_error(const Config *c, const char *key, char *err, size_t errlen, const char *fmt, ...)
{
    char where[300];
    int k = snprintf(err, errlen, "%s: ", config_where(c, key, where, sizeof where));
    if (k >= 0 && (size_t)k < errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int config_count(const Config *c)
{
    return c->schema->n;
}

ConfigItem config_item(const Config *c, int i)
{
    const ConfigEntryDef *e = &c->schema->entries[i];
    return (ConfigItem){.key = e->key,
                        .type = e->type,
                        .ignored = (e->flags & CONFIG_IGNORED) != 0,
                        .source = c->source[i],
                        .line = c->line[i],
                        .value = &c->vals[i]};
}

/* ------------------------------------------------------------------ */
/* YAML file */

typedef struct Loader {
    Config *c;
    yaml_document_t *doc;
    const char *path;
    char *err;
    size_t errlen;
} Loader;

static int node_line(const yaml_node_t *nd)
{
    return (int)nd->start_mark.line + 1;
}

static const char *node_kind(const yaml_node_t *nd)
{
    switch (nd->type) {
    case YAML_SCALAR_NODE: return "a scalar";
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_MAPPING_NODE: return "a mapping";
    default: return "nothing";
    }
}

static const char *scalar_text(const yaml_node_t *nd)
{
    return (const char *)nd->data.scalar.value;
}

static bool scalar_quoted(const yaml_node_t *nd)
{
    return nd->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
           nd->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
}

/* A scalar whose text holds a NUL (YAML's "\0" escape): read as a C string
 * it would be cut there silently. */
static bool scalar_has_nul(const yaml_node_t *nd)
{
    return nd->type == YAML_SCALAR_NODE && strlen(scalar_text(nd)) != nd->data.scalar.length;
}

static void notice_ignored(const char *path, int line, const char *what)
{
    fprintf(stderr, "seqeig: notice: %s:%d: %s is accepted but ignored by seqeig\n", path, line, what);
}

static int load_section(Loader *L, const char *section, yaml_node_t *map)
{
    const ConfigSchema *s = L->c->schema;
    int nkeys = 0;
    size_t npairs = (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
    int *seen_idx = xmalloc((npairs + 1) * sizeof *seen_idx);
    int *seen_line = xmalloc((npairs + 1) * sizeof *seen_line);
    int rc = 0;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(L->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(L->doc, p->value);
        int line = node_line(kn);
        if (kn->type != YAML_SCALAR_NODE) {
            rc = fail(L->err, L->errlen, "%s:%d: section '%s': a key must be a plain name, got %s",
                      L->path, line, section, node_kind(kn));
            break;
        }
        if (scalar_has_nul(kn) || scalar_has_nul(vn)) {
            rc = fail(L->err, L->errlen, "%s:%d: section '%s': a NUL character (\\0) in a %s", L->path,
                      node_line(scalar_has_nul(kn) ? kn : vn), section, scalar_has_nul(kn) ? "key" : "value");
            break;
        }
        char key[256];
        snprintf(key, sizeof key, "%s.%s", section, scalar_text(kn));
        int idx = config_schema_find(s, key);
        if (idx < 0) {
            const char *sug = suggest_key(s, section, scalar_text(kn));
            if (sug)
                rc = fail(L->err, L->errlen, "%s:%d: unknown key '%s'; did you mean '%s'?", L->path,
                          line, key, sug);
            else
                rc = fail(L->err, L->errlen, "%s:%d: unknown key '%s'", L->path, line, key);
            break;
        }
        for (int k = 0; k < nkeys; k++)
            if (seen_idx[k] == idx) {
                rc = fail(L->err, L->errlen, "%s:%d: duplicate key '%s' (first given on line %d)",
                          L->path, line, key, seen_line[k]);
                goto done;
            }
        seen_line[nkeys] = line;
        seen_idx[nkeys++] = idx;

        const ConfigEntryDef *e = &s->entries[idx];
        if (e->flags & CONFIG_IGNORED) {
            notice_ignored(L->path, line, key);
            /* Recorded when it types cleanly; its value has no effect anyway. */
            ConfigValue v;
            char msg[16];
            if (vn->type == YAML_SCALAR_NODE &&
                type_value(e, scalar_text(vn), scalar_quoted(vn), &v, msg, sizeof msg) == 0)
                config_assign(L->c, idx, &v, CONFIG_FROM_FILE, node_line(vn));
            continue;
        }
        if (vn->type != YAML_SCALAR_NODE) {
            rc = fail(L->err, L->errlen, "%s:%d: %s: expected %s %s, got %s", L->path, node_line(vn),
                      key, e->type == CONFIG_INT ? "an" : "a", config_type_name(e->type),
                      node_kind(vn));
            break;
        }
        ConfigValue v;
        char msg[512];
        if (type_value(e, scalar_text(vn), scalar_quoted(vn), &v, msg, sizeof msg) != 0) {
            rc = fail(L->err, L->errlen, "%s:%d: %s: %s", L->path, node_line(vn), key, msg);
            break;
        }
        if (L->c->source[idx] == CONFIG_FROM_FILE) { /* already set by a top-level alias (`seed:`) */
            free(v.s);
            rc = fail(L->err, L->errlen, "%s:%d: %s is also set on line %d; give it once", L->path, line, key,
                      L->c->line[idx]);
            break;
        }
        config_assign(L->c, idx, &v, CONFIG_FROM_FILE, node_line(vn));
    }
done:
    free(seen_idx);
    free(seen_line);
    return rc;
}

static int load_root(Loader *L, yaml_node_t *root)
{
    const ConfigSchema *s = L->c->schema;
    if (!root) return 0; /* empty file: every key at its default */
    if (root->type == YAML_SCALAR_NODE && !scalar_quoted(root) && is_null_text(scalar_text(root)))
        return 0;
    if (root->type != YAML_MAPPING_NODE)
        return fail(L->err, L->errlen,
                    "%s:%d: the top level must be a mapping of sections (e.g. 'model:'), got %s",
                    L->path, node_line(root), node_kind(root));
    size_t npairs = (size_t)(root->data.mapping.pairs.top - root->data.mapping.pairs.start);
    const char **names = xmalloc((npairs + 1) * sizeof *names);
    int *lines = xmalloc((npairs + 1) * sizeof *lines);
    int nn = 0, rc = 0;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(L->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(L->doc, p->value);
        int line = node_line(kn);
        if (kn->type != YAML_SCALAR_NODE) {
            rc = fail(L->err, L->errlen, "%s:%d: a section name must be a plain name, got %s",
                      L->path, line, node_kind(kn));
            break;
        }
        if (scalar_has_nul(kn) || scalar_has_nul(vn)) {
            rc = fail(L->err, L->errlen, "%s:%d: a NUL character (\\0) in a %s", L->path,
                      node_line(scalar_has_nul(kn) ? kn : vn), scalar_has_nul(kn) ? "section name" : "value");
            break;
        }
        const char *name = scalar_text(kn);
        for (int k = 0; k < nn; k++)
            if (strcmp(names[k], name) == 0) {
                rc = fail(L->err, L->errlen, "%s:%d: duplicate key '%s' (first given on line %d)",
                          L->path, line, name, lines[k]);
                goto done;
            }
        names[nn] = name;
        lines[nn++] = line;
        if (schema_top_ignored(s, name)) {
            notice_ignored(L->path, line, name);
            continue;
        }
        const char *alias = schema_alias_key(s, name);
        if (alias) {
            int idx = config_schema_find(s, alias);
            const ConfigEntryDef *e = &s->entries[idx];
            ConfigValue v;
            char msg[512];
            if (vn->type != YAML_SCALAR_NODE) {
                rc = fail(L->err, L->errlen, "%s:%d: %s (sets %s): expected %s %s, got %s", L->path,
                          node_line(vn), name, alias, e->type == CONFIG_INT ? "an" : "a",
                          config_type_name(e->type), node_kind(vn));
                break;
            }
            if (type_value(e, scalar_text(vn), scalar_quoted(vn), &v, msg, sizeof msg) != 0) {
                rc = fail(L->err, L->errlen, "%s:%d: %s (sets %s): %s", L->path, node_line(vn), name,
                          alias, msg);
                break;
            }
            if (L->c->source[idx] == CONFIG_FROM_FILE) { /* the section gave it already */
                free(v.s);
                rc = fail(L->err, L->errlen, "%s:%d: %s sets %s, which line %d sets too; give it once", L->path,
                          line, name, alias, L->c->line[idx]);
                break;
            }
            config_assign(L->c, idx, &v, CONFIG_FROM_FILE, node_line(vn));
            continue;
        }
        if (!schema_has_section(s, name, strlen(name))) {
            char secs[256], sug[64];
            schema_sections(s, secs, sizeof secs);
            suggest_section(s, name, sug, sizeof sug);
            if (sug[0])
                rc = fail(L->err, L->errlen, "%s:%d: unknown section '%s' (sections: %s); did you mean '%s'?",
                          L->path, line, name, secs, sug);
            else
                rc = fail(L->err, L->errlen, "%s:%d: unknown section '%s' (sections: %s)", L->path,
                          line, name, secs);
            break;
        }
        if (vn->type == YAML_SCALAR_NODE && !scalar_quoted(vn) && is_null_text(scalar_text(vn)))
            continue; /* `model:` with nothing under it */
        if (vn->type != YAML_MAPPING_NODE) {
            rc = fail(L->err, L->errlen, "%s:%d: section '%s' must be a mapping of key: value, got %s",
                      L->path, node_line(vn), name, node_kind(vn));
            break;
        }
        if ((rc = load_section(L, name, vn)) != 0) break;
    }
done:
    free(names);
    free(lines);
    return rc;
}

/* The syntax error libyaml's parser stopped at, as one message. */
static int syntax_error(const yaml_parser_t *parser, const char *path, char *err, size_t errlen)
{
    const char *problem = parser->problem ? parser->problem : "malformed YAML";
    int line = (int)parser->problem_mark.line + 1, col = (int)parser->problem_mark.column + 1;
    if (parser->context)
        return fail(err, errlen, "%s:%d:%d: YAML syntax error: %s (%s, line %d)", path, line, col, problem,
                    parser->context, (int)parser->context_mark.line + 1);
    return fail(err, errlen, "%s:%d:%d: YAML syntax error: %s", path, line, col, problem);
}

/* First pass over the event stream, before any document is built: refuse
 * nesting deeper than CONFIG_MAX_DEPTH at its first level too many (a
 * document of 10^5 nested '[' took libyaml's document loader close to a
 * minute; this pass stops after CONFIG_MAX_DEPTH + 1 of them), and report
 * syntax errors.  Reads the parser's whole input otherwise. */
static int check_depth(yaml_parser_t *parser, const char *path, char *err, size_t errlen)
{
    int depth = 0;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(parser, &ev)) return syntax_error(parser, path, err, errlen);
        const yaml_event_type_t t = ev.type;
        const int line = (int)ev.start_mark.line + 1, col = (int)ev.start_mark.column + 1;
        yaml_event_delete(&ev);
        if (t == YAML_STREAM_END_EVENT) return 0;
        if (t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) {
            if (++depth > CONFIG_MAX_DEPTH)
                return fail(err, errlen,
                            "%s:%d:%d: lists and mappings nested more than %d levels deep (a run config "
                            "has at most 3: section, key, list value)",
                            path, line, col, CONFIG_MAX_DEPTH);
        } else if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT) {
            depth--;
        }
    }
}

/* A read handler that keeps a copy of what it hands to libyaml, so that a
 * file (or a pipe: `--config <(...)`) is read once, and only as far as the
 * first pass gets. */
typedef struct TeeInput {
    FILE *f;
    unsigned char *buf;
    size_t len, cap;
    int err_no; /* why reading stopped, 0 if it did not */
} TeeInput;

static int tee_read(void *data, unsigned char *buffer, size_t size, size_t *size_read)
{
    TeeInput *t = data;
    errno = 0;
    const size_t n = fread(buffer, 1, size, t->f);
    if (n == 0 && ferror(t->f)) {
        t->err_no = errno ? errno : EIO;
        return 0;
    }
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (cap < t->len + n + 1) cap *= 2;
        unsigned char *nb = realloc(t->buf, cap);
        if (!nb) {
            t->err_no = ENOMEM;
            return 0;
        }
        t->buf = nb;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, buffer, n);
    t->len += n;
    *size_read = n;
    return 1;
}

static int load_text(Config *c, const unsigned char *text, size_t len, const char *path, char *err,
                     size_t errlen);

int config_load_yaml(Config *c, const ConfigSchema *s, const char *path, char *err, size_t errlen)
{
    config_init(c, s);
    c->path = xstrdup(path);
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    TeeInput t = {.f = f};
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return fail(err, errlen, "%s: cannot initialise the YAML parser", path);
    }
    yaml_parser_set_input(&parser, tee_read, &t);
    int rc = check_depth(&parser, path, err, errlen);
    if (rc && t.err_no) rc = fail(err, errlen, "%s: cannot read: %s", path, strerror(t.err_no));
    yaml_parser_delete(&parser);
    fclose(f);
    if (rc == 0) rc = load_text(c, t.buf ? t.buf : (const unsigned char *)"", t.len, path, err, errlen);
    free(t.buf);
    return rc;
}

int config_load_yaml_text(Config *c, const ConfigSchema *s, const char *text, const char *label, char *err,
                          size_t errlen)
{
    config_init(c, s);
    c->path = xstrdup(label);
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return fail(err, errlen, "%s: cannot initialise the YAML parser", label);
    const size_t len = strlen(text);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int rc = check_depth(&parser, label, err, errlen);
    yaml_parser_delete(&parser);
    if (rc == 0) rc = load_text(c, (const unsigned char *)text, len, label, err, errlen);
    return rc;
}

/* Parse text[0..len) (its depth already checked) into c. */
static int load_text(Config *c, const unsigned char *text, size_t len, const char *path, char *err,
                     size_t errlen)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) return fail(err, errlen, "%s: cannot initialise the YAML parser", path);
    yaml_parser_set_input_string(&parser, text, len);
    int rc;
    if (!yaml_parser_load(&parser, &doc)) {
        rc = syntax_error(&parser, path, err, errlen);
    } else {
        Loader L = {.c = c, .doc = &doc, .path = path, .err = err, .errlen = errlen};
        rc = load_root(&L, yaml_document_get_root_node(&doc));
        yaml_document_delete(&doc);
        /* a second document ('---') would be silently dropped: refuse it */
        if (rc == 0) {
            yaml_document_t more;
            if (!yaml_parser_load(&parser, &more)) {
                rc = fail(err, errlen, "%s:%d:%d: YAML syntax error: %s", path,
                          (int)parser.problem_mark.line + 1, (int)parser.problem_mark.column + 1,
                          parser.problem ? parser.problem : "malformed YAML");
            } else {
                yaml_node_t *r2 = yaml_document_get_root_node(&more);
                if (r2)
                    rc = fail(err, errlen,
                              "%s:%d: a config file holds one YAML document; found a second one",
                              path, (int)r2->start_mark.line + 1);
                yaml_document_delete(&more);
            }
        }
    }
    yaml_parser_delete(&parser);
    return rc;
}

/* ------------------------------------------------------------------ */
/* --set */

int config_set_override(Config *c, const char *assignment, char *err, size_t errlen)
{
    const ConfigSchema *s = c->schema;
    const char *eq = strchr(assignment, '=');
    const char *dot = strchr(assignment, '.');
    size_t klen = eq ? (size_t)(eq - assignment) : 0;
    if (!eq || !dot || dot > eq || dot == assignment || dot + 1 == eq || klen >= 256)
        return fail(err, errlen, "--set '%s': expected section.key=value", assignment);
    char key[256];
    memcpy(key, assignment, klen);
    key[klen] = '\0';
    const char *text = eq + 1;
    int idx = config_schema_find(s, key);
    if (idx < 0) {
        char section[256];
        size_t sl = section_len(key);
        snprintf(section, sizeof section, "%.*s", (int)sl, key);
        if (!schema_has_section(s, section, sl)) {
            char secs[256];
            schema_sections(s, secs, sizeof secs);
            return fail(err, errlen, "--set %s: unknown section '%s' (sections: %s)", assignment,
                        section, secs);
        }
        const char *sug = suggest_key(s, section, key + sl + 1);
        if (sug)
            return fail(err, errlen, "--set %s: unknown key '%s'; did you mean '%s'?", assignment,
                        key, sug);
        return fail(err, errlen, "--set %s: unknown key '%s'", assignment, key);
    }
    const ConfigEntryDef *e = &s->entries[idx];
    ConfigValue v;
    char msg[512];
    if (type_value(e, text, false, &v, msg, sizeof msg) != 0)
        return fail(err, errlen, "--set %s: %s", assignment, msg);
    if (e->flags & CONFIG_IGNORED)
        fprintf(stderr, "seqeig: notice: --set %s: %s is accepted but ignored by seqeig\n",
                assignment, key);
    config_assign(c, idx, &v, CONFIG_FROM_OVERRIDE, 0);
    return 0;
}

/* ------------------------------------------------------------------ */
/* output */

/* Shortest %.*g that reads back to d, written so that YAML 1.1 readers
 * (PyYAML) also see a float: a '.' in the mantissa and a signed exponent. */
static int format_double(double d, char *buf, size_t n)
{
    if (isnan(d)) return snprintf(buf, n, ".nan");
    if (isinf(d)) return snprintf(buf, n, d < 0 ? "-.inf" : ".inf");
    char tmp[64];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (strtod(tmp, NULL) == d) break;
    }
    char out[80];
    const char *e = strpbrk(tmp, "eE");
    size_t mlen = e ? (size_t)(e - tmp) : strlen(tmp);
    bool has_dot = memchr(tmp, '.', mlen) != NULL;
    int w = snprintf(out, sizeof out, "%.*s%s", (int)mlen, tmp, has_dot ? "" : ".0");
    if (e) {
        const char *ex = e + 1;
        char sign = '+';
        if (*ex == '+' || *ex == '-') sign = *ex++;
        snprintf(out + w, sizeof out - (size_t)w, "e%c%s", sign, ex);
    }
    return snprintf(buf, n, "%s", out);
}

/* Double-quoted YAML string. */
static int format_string(const char *s, char *buf, size_t n)
{
    size_t used = 0;
    int total = 0;
#define PUT(ch)                              \
    do {                                     \
        if (used + 1 < n) buf[used++] = (ch); \
        total++;                             \
    } while (0)
    PUT('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        uint32_t cp = *p;
        const size_t len = *p < 0x80 ? 1 : utf8_seq(p, &cp);
        if (len > 1) {
            /* what YAML reads as a line break, and what libyaml's reader
             * refuses, as escapes; any other character as it is */
            const char *esc = cp == 0x85 ? "\\N" : cp == 0x2028 ? "\\L" : cp == 0x2029 ? "\\P" : NULL;
            char hex[12];
            if (!esc && (cp < 0xA0 || cp == 0xFEFF || cp == 0xFFFE || cp == 0xFFFF)) {
                if (cp < 0x100) snprintf(hex, sizeof hex, "\\x%02x", (unsigned)cp);
                else snprintf(hex, sizeof hex, "\\u%04x", (unsigned)cp);
                esc = hex;
            }
            if (esc)
                for (const char *h = esc; *h; h++) PUT(*h);
            else
                for (size_t j = 0; j < len; j++) PUT((char)p[j]);
            p += len - 1;
        } else if (*p == '"' || *p == '\\') {
            PUT('\\');
            PUT((char)*p);
        } else if (*p == '\n') {
            PUT('\\');
            PUT('n');
        } else if (*p == '\t') {
            PUT('\\');
            PUT('t');
        } else if (*p < 0x20 || *p == 0x7F) {
            char hex[8];
            snprintf(hex, sizeof hex, "\\x%02x", *p);
            for (char *h = hex; *h; h++) PUT(*h);
        } else {
            PUT((char)*p);
        }
    }
    PUT('"');
#undef PUT
    if (n) buf[used < n ? used : n - 1] = '\0';
    return total;
}

int config_value_text(const Config *c, int i, char *buf, size_t n)
{
    const ConfigEntryDef *e = &c->schema->entries[i];
    const ConfigValue *v = &c->vals[i];
    switch (e->type) {
    case CONFIG_INT: return snprintf(buf, n, "%d", v->i);
    case CONFIG_DOUBLE: return format_double(v->d, buf, n);
    case CONFIG_BOOL: return snprintf(buf, n, "%s", v->b ? "true" : "false");
    case CONFIG_STR: return format_string(v->s ? v->s : "", buf, n);
    case CONFIG_ENUM:
        /* plain when it cannot be mistaken for anything but a name */
        if (is_null_text(v->s)) return format_string(v->s, buf, n);
        for (const char *p = v->s; *p; p++)
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-", *p))
                return format_string(v->s, buf, n);
        return snprintf(buf, n, "%s", v->s);
    }
    return snprintf(buf, n, "?");
}

char *config_value_text_alloc(const Config *c, int i)
{
    const int n = config_value_text(c, i, NULL, 0);
    char *buf = xmalloc((size_t)n + 1);
    config_value_text(c, i, buf, (size_t)n + 1);
    return buf;
}

typedef struct Text {
    char *buf;
    size_t len, cap;
} Text;

static void text_add(Text *t, const char *s)
{
    size_t n = strlen(s);
    if (t->len + n + 1 > t->cap) {
        while (t->len + n + 1 > t->cap) t->cap = t->cap ? 2 * t->cap : 1024;
        char *nb = realloc(t->buf, t->cap);
        if (!nb) die("out of memory in %s", "config_to_yaml");
        t->buf = nb;
    }
    memcpy(t->buf + t->len, s, n + 1);
    t->len += n;
}

char *config_to_yaml(const Config *c)
{
    const ConfigSchema *s = c->schema;
    Text t = {0};
    text_add(&t, "");
    bool *done = xmalloc((size_t)s->n + 1);
    memset(done, 0, (size_t)s->n + 1);
    for (int i = 0; i < s->n; i++) {
        if (done[i]) continue;
        const char *ki = s->entries[i].key;
        size_t sl = section_len(ki);
        char section[256];
        snprintf(section, sizeof section, "%.*s:\n", (int)sl, ki);
        text_add(&t, section);
        for (int j = i; j < s->n; j++) {
            const char *kj = s->entries[j].key;
            if (done[j] || section_len(kj) != sl || strncmp(kj, ki, sl) != 0) continue;
            done[j] = true;
            char *val = config_value_text_alloc(c, j); /* whole, however long */
            const bool ignored = s->entries[j].flags & CONFIG_IGNORED;
            text_add(&t, ignored ? "  # " : "  ");
            text_add(&t, kj + sl + 1);
            text_add(&t, ": ");
            text_add(&t, val);
            text_add(&t, ignored ? "  (ignored by seqeig)\n" : "\n");
            free(val);
        }
    }
    free(done);
    return t.buf;
}
