/* Typed configuration: a registry of `section.key` entries and YAML loading.
 *
 * Generic: this module knows nothing about models or tasks.  A caller
 * registers every key it understands in a ConfigSchema (type, default,
 * flags), then resolves a Config from the defaults, one YAML file and any
 * number of `--set section.key=value` overrides, in that order of priority
 * (override > file > default).  The file has one mapping per section:
 *
 *     model:
 *       hidden_dim: 128
 *       attention_fn: sm-attention
 *     train:
 *       lr: 4.6416e-4
 *       total_steps: 40_000
 *
 * Sections are the prefixes (before the first '.') of the registered keys.
 * Keys flagged CONFIG_IGNORED exist in the reference study but not in
 * seqeig: they are accepted with a one-line notice on stderr.  Top-level
 * names registered with config_schema_ignore_top (e.g. `wandb`) are skipped
 * whatever their content, with the same notice.
 *
 * Every failing function returns -1 and writes one message into `err`:
 *   FILE: cannot open: REASON
 *   FILE:LINE:COL: YAML syntax error: PROBLEM[ (CONTEXT, line N)]
 *   FILE:LINE: unknown section 'S' (sections: a, b, c)[; did you mean 'T'?]
 *   FILE:LINE: unknown key 'S.K'[; did you mean 'S.J'?]
 *   FILE:LINE: S.K: expected an integer, got 'abc'
 *   FILE:LINE: S.K: invalid value 'x'; allowed: a, b, c
 *   FILE:LINE: duplicate key 'S.K' (first given on line N)
 *   FILE:LINE: section 'S' must be a mapping of key: value, got a scalar
 *   --set 'TEXT': expected section.key=value
 *   --set S.K=abc: expected an integer, got 'abc'
 * Lines and columns are 1-based.  Getters on a key that was never
 * registered, or with the wrong type, are programming errors: they print
 * the key and abort. */
#ifndef SEQEIG_CONFIG_H
#define SEQEIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { CONFIG_INT, CONFIG_DOUBLE, CONFIG_BOOL, CONFIG_STR, CONFIG_ENUM } ConfigType;
typedef enum { CONFIG_FROM_DEFAULT, CONFIG_FROM_FILE, CONFIG_FROM_OVERRIDE } ConfigSource;

/* Entry flags. */
#define CONFIG_IGNORED 1u /* accepted with a notice, has no effect in seqeig */

/* One value; `s` is used by CONFIG_STR and CONFIG_ENUM (owned by its holder). */
typedef struct ConfigValue {
    int i;
    double d;
    bool b;
    char *s;
} ConfigValue;

typedef struct ConfigEntryDef {
    char *key;          /* "section.key" */
    ConfigType type;
    unsigned flags;
    ConfigValue def;
    char **choices;     /* CONFIG_ENUM: allowed strings */
    int n_choices;
} ConfigEntryDef;

typedef struct ConfigSchema {
    ConfigEntryDef *entries;
    int n, cap;
    char **ignored_top; /* top-level names skipped with a notice */
    int n_ignored_top;
    char **alias_top;   /* top-level scalar names ... */
    char **alias_key;   /* ... and the registered keys they set */
    int n_alias_top;
} ConfigSchema;

void config_schema_init(ConfigSchema *s);
void config_schema_free(ConfigSchema *s);
/* Register `key` ("section.key", both parts non-empty, no further dots).
 * Registering a malformed or already registered key aborts (programming error). */
void config_schema_add_int(ConfigSchema *s, const char *key, int def, unsigned flags);
void config_schema_add_double(ConfigSchema *s, const char *key, double def, unsigned flags);
void config_schema_add_bool(ConfigSchema *s, const char *key, bool def, unsigned flags);
void config_schema_add_str(ConfigSchema *s, const char *key, const char *def, unsigned flags);
/* `allowed` is NULL-terminated; `def` must be one of them. */
void config_schema_add_enum(ConfigSchema *s, const char *key, const char *def,
                            const char *const *allowed, unsigned flags);
/* A top-level name that is not a section but is accepted (and skipped). */
void config_schema_ignore_top(ConfigSchema *s, const char *name);
/* A top-level scalar `name: value` in the file sets the registered key
 * `key` (e.g. the reference configs' top-level `seed:` sets train.seed). */
void config_schema_alias_top(ConfigSchema *s, const char *name, const char *key);

/* Index of `key` in s->entries, or -1. */
int config_schema_find(const ConfigSchema *s, const char *key);

/* A resolved configuration.  Owns its strings; the schema must outlive it. */
typedef struct Config {
    const ConfigSchema *schema;
    ConfigValue *vals;      /* one per schema entry */
    ConfigSource *source;
    int *line;              /* 1-based line in `path` for CONFIG_FROM_FILE, else 0 */
    char *path;             /* the YAML file loaded, or NULL */
} Config;

/* All entries at their defaults. */
void config_init(Config *c, const ConfigSchema *s);
void config_free(Config *c);
/* Deepest nesting of lists and mappings a config may have (the top-level
 * mapping is level 1).  A run config needs 3 (section, key, list value);
 * deeper input is refused before libyaml builds the document. */
#define CONFIG_MAX_DEPTH 32

/* config_init, then the values of the YAML file at `path`.  On failure c
 * is still initialised (free it with config_free) and `err` names the
 * problem, the file, the line and the key. */
int config_load_yaml(Config *c, const ConfigSchema *s, const char *path, char *err, size_t errlen);
/* The same from YAML text in memory; `label` stands for the file name in
 * messages (e.g. "RUN.h5:/config/yaml"). */
int config_load_yaml_text(Config *c, const ConfigSchema *s, const char *text, const char *label, char *err,
                          size_t errlen);

/* Apply one `--set section.key=value` (value typed as in YAML, unquoted). */
int config_set_override(Config *c, const char *assignment, char *err, size_t errlen);

/* Resolved values by key. */
int config_int(const Config *c, const char *key);
double config_double(const Config *c, const char *key);
bool config_bool(const Config *c, const char *key);
const char *config_str(const Config *c, const char *key); /* CONFIG_STR or CONFIG_ENUM */
/* Where the value of `key` came from, for messages: "FILE:LINE", "--set"
 * or "default".  Returns buf. */
const char *config_where(const Config *c, const char *key, char *buf, size_t n);
/* err = "WHERE: " + the printf-formatted message, WHERE as config_where
 * gives it for `key`.  Returns -1 (for `return config_key_error(...)`). */
int config_key_error(const Config *c, const char *key, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Iteration over every registered entry, in registration order. */
typedef struct ConfigItem {
    const char *key;
    ConfigType type;
    bool ignored;
    ConfigSource source;
    int line;                /* see Config.line */
    const ConfigValue *value;
} ConfigItem;
int config_count(const Config *c);
ConfigItem config_item(const Config *c, int i);
/* The value of entry i as YAML scalar text (doubles in the shortest form
 * that reads back to the same double).  Returns the length snprintf would
 * have written. */
int config_value_text(const Config *c, int i, char *buf, size_t n);
/* The same, whole, in a new string (caller frees). */
char *config_value_text_alloc(const Config *c, int i);

/* The resolved configuration as YAML (sections and keys in registration
 * order; ignored keys as comments).  Loading it back gives the same values.
 * Caller frees. */
char *config_to_yaml(const Config *c);

const char *config_type_name(ConfigType t);    /* "integer", "number", ... */

#endif
