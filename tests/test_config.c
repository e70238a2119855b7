#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../src/config.h"
#include "testutil.h"

/* A small schema with one key of every type, an ignored key and an
 * ignored top-level name. */
static const char *const ATT_FNS[] = {"sm-attention", "lin-attention", "norm-attention", NULL};

static void small_schema(ConfigSchema *s)
{
    config_schema_init(s);
    config_schema_add_str(s, "dataset.name", "mqar", 0);
    config_schema_add_int(s, "dataset.input_seq_len", 512, 0);
    config_schema_add_double(s, "train.lr", 1e-3, 0);
    config_schema_add_int(s, "train.total_steps", 40000, 0);
    config_schema_add_bool(s, "train.cosine_anneal", true, 0);
    config_schema_add_bool(s, "train.use_flash", false, CONFIG_IGNORED);
    config_schema_add_int(s, "model.hidden_dim", 128, 0);
    config_schema_add_double(s, "model.dropout", 0.1, 0);
    config_schema_add_enum(s, "model.attention_fn", "sm-attention", ATT_FNS, 0);
    config_schema_ignore_top(s, "wandb");
}

/* Write `text` to a file under /tmp named after `tag`; returns the path. */
static const char *write_yaml(const char *tag, const char *text)
{
    static char path[256];
    snprintf(path, sizeof path, "/tmp/seqeig_test_config_%d_%s.yaml", (int)getpid(), tag);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

#define ASSERT_HAS(hay, needle) \
    ck_assert_msg(strstr((hay), (needle)) != NULL, "'%s' not found in: %s", (needle), (hay))

/* Load `text` with the small schema and expect failure; returns the message. */
static char errbuf[1024];
static const char *load_fails(const char *tag, const char *text)
{
    ConfigSchema s;
    Config c;
    small_schema(&s);
    errbuf[0] = '\0';
    const char *path = write_yaml(tag, text);
    int rc = config_load_yaml(&c, &s, path, errbuf, sizeof errbuf);
    ck_assert_msg(rc != 0, "loading %s should fail", tag);
    ck_assert_msg(errbuf[0] != '\0', "no message for %s", tag);
    ASSERT_HAS(errbuf, path);
    config_free(&c);
    config_schema_free(&s);
    remove(path);
    return errbuf;
}

/* Everything written to stderr while loading `path` (into out). */
static int load_capturing_stderr(Config *c, const ConfigSchema *s, const char *path, char *out,
                                 size_t n, char *err, size_t errlen)
{
    char cap[256];
    snprintf(cap, sizeof cap, "/tmp/seqeig_test_config_%d_stderr.txt", (int)getpid());
    fflush(stderr);
    int saved = dup(2);
    int fd = open(cap, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    dup2(fd, 2);
    close(fd);
    int rc = config_load_yaml(c, s, path, err, errlen);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    FILE *f = fopen(cap, "r");
    ck_assert_ptr_nonnull(f);
    size_t got = fread(out, 1, n - 1, f);
    out[got] = '\0';
    fclose(f);
    remove(cap);
    return rc;
}

START_TEST(test_valid_file_sets_values_and_leaves_absent_keys_at_defaults)
{
    ConfigSchema s;
    Config c;
    char err[512];
    small_schema(&s);
    const char *path = write_yaml("valid",
                                  "# comment\n"
                                  "train:\n"
                                  "  lr: 4.6416e-4\n"
                                  "  total_steps: 40_000\n"
                                  "  cosine_anneal: False\n"
                                  "model:\n"
                                  "  hidden_dim: 64\n"
                                  "  attention_fn: lin-attention\n");
    ck_assert_int_eq(config_load_yaml(&c, &s, path, err, sizeof err), 0);
    ck_assert(config_double(&c, "train.lr") == 4.6416e-4);
    ck_assert_int_eq(config_int(&c, "train.total_steps"), 40000);
    ck_assert(!config_bool(&c, "train.cosine_anneal"));
    ck_assert_int_eq(config_int(&c, "model.hidden_dim"), 64);
    ck_assert_str_eq(config_str(&c, "model.attention_fn"), "lin-attention");
    /* absent: defaults */
    ck_assert_str_eq(config_str(&c, "dataset.name"), "mqar");
    ck_assert_int_eq(config_int(&c, "dataset.input_seq_len"), 512);
    ck_assert(config_double(&c, "model.dropout") == 0.1);

    /* provenance: file values carry their (1-based) line */
    int i_hd = config_schema_find(&s, "model.hidden_dim");
    ConfigItem it = config_item(&c, i_hd);
    ck_assert_int_eq(it.source, CONFIG_FROM_FILE);
    ck_assert_int_eq(it.line, 7);
    it = config_item(&c, config_schema_find(&s, "model.dropout"));
    ck_assert_int_eq(it.source, CONFIG_FROM_DEFAULT);
    ck_assert_int_eq(it.line, 0);
    char where[300], want[300];
    snprintf(want, sizeof want, "%s:3", path);
    ck_assert_str_eq(config_where(&c, "train.lr", where, sizeof where), want);
    ck_assert_str_eq(config_where(&c, "model.dropout", where, sizeof where), "default");
    config_free(&c);
    config_schema_free(&s);
    remove(path);
}
END_TEST

START_TEST(test_empty_file_and_empty_section_give_defaults)
{
    ConfigSchema s;
    Config c;
    char err[512];
    small_schema(&s);
    const char *path = write_yaml("empty", "# nothing here\n");
    ck_assert_int_eq(config_load_yaml(&c, &s, path, err, sizeof err), 0);
    ck_assert_int_eq(config_int(&c, "model.hidden_dim"), 128);
    config_free(&c);
    path = write_yaml("emptysec", "model:\ntrain:\n  lr: 0.5\n");
    ck_assert_int_eq(config_load_yaml(&c, &s, path, err, sizeof err), 0);
    ck_assert(config_double(&c, "train.lr") == 0.5);
    ck_assert_int_eq(config_int(&c, "model.hidden_dim"), 128);
    config_free(&c);
    config_schema_free(&s);
    remove(path);
}
END_TEST

START_TEST(test_missing_file_is_named)
{
    ConfigSchema s;
    Config c;
    char err[512];
    small_schema(&s);
    int rc = config_load_yaml(&c, &s, "/tmp/seqeig_no_such_dir/x.yaml", err, sizeof err);
    ck_assert_int_ne(rc, 0);
    ASSERT_HAS(err, "/tmp/seqeig_no_such_dir/x.yaml: cannot open");
    ASSERT_HAS(err, "No such file");
    config_free(&c);
    config_schema_free(&s);
}
END_TEST

START_TEST(test_yaml_syntax_error_gives_libyaml_problem_and_line)
{
    /* an unclosed flow sequence on line 3 */
    const char *e = load_fails("syntax", "model:\n  hidden_dim: 64\n  dropout: [0.1\ntrain:\n  lr: 1\n");
    ASSERT_HAS(e, "YAML syntax error");
    ASSERT_HAS(e, "line 3");
    /* bad indentation: the mapping value on line 2 */
    e = load_fails("twodocs", "model:\n  hidden_dim: 64\n---\ntrain:\n  lr: 1\n");
    ASSERT_HAS(e, ":4: a config file holds one YAML document; found a second one");
    e = load_fails("syntax2", "model:\n  hidden_dim: 64\n hidden: 3\n");
    ASSERT_HAS(e, "YAML syntax error");
    ASSERT_HAS(e, ":3:");
}
END_TEST

START_TEST(test_unknown_section_is_named_with_suggestion)
{
    const char *e = load_fails("section", "model:\n  hidden_dim: 64\nmodle:\n  dropout: 0\n");
    ASSERT_HAS(e, ":3: unknown section 'modle'");
    ASSERT_HAS(e, "sections: dataset, train, model");
    ASSERT_HAS(e, "did you mean 'model'?");
    e = load_fails("section2", "optimizer:\n  beta: 1\n");
    ASSERT_HAS(e, ":1: unknown section 'optimizer'");
    ck_assert_ptr_null(strstr(e, "did you mean"));
}
END_TEST

START_TEST(test_unknown_key_suggests_closest_registered_key)
{
    const char *e = load_fails("key", "model:\n  hidden_dim: 64\n  hiden_dim: 3\n");
    ASSERT_HAS(e, ":3: unknown key 'model.hiden_dim'; did you mean 'model.hidden_dim'?");
    /* the right name in the wrong section */
    e = load_fails("key2", "train:\n  hidden_dim: 3\n");
    ASSERT_HAS(e, ":2: unknown key 'train.hidden_dim'; did you mean 'model.hidden_dim'?");
    /* nothing close: no suggestion */
    e = load_fails("key3", "dataset:\n  name: mqar\n  completely_different: 1\n");
    ASSERT_HAS(e, ":3: unknown key 'dataset.completely_different'");
    ck_assert_ptr_null(strstr(e, "did you mean"));
}
END_TEST

START_TEST(test_wrong_type_names_key_line_and_expectation)
{
    const char *e = load_fails("type_int", "dataset:\n  name: x\nmodel:\n  hidden_dim: abc\n");
    ASSERT_HAS(e, ":4: model.hidden_dim: expected an integer, got 'abc'");
    e = load_fails("type_int2", "model:\n  hidden_dim: 12.5\n");
    ASSERT_HAS(e, ":2: model.hidden_dim: expected an integer, got '12.5'");
    e = load_fails("type_quoted", "model:\n  hidden_dim: \"128\"\n");
    ASSERT_HAS(e, ":2: model.hidden_dim: expected an integer, got the string '128'");
    e = load_fails("type_dbl", "train:\n  lr: fast\n");
    ASSERT_HAS(e, ":2: train.lr: expected a number, got 'fast'");
    e = load_fails("type_bool", "train:\n  cosine_anneal: yes\n");
    ASSERT_HAS(e, ":2: train.cosine_anneal: expected a boolean (true or false), got 'yes'");
    e = load_fails("type_null", "model:\n  hidden_dim:\n");
    ASSERT_HAS(e, ":2: model.hidden_dim: expected an integer, got no value (null)");
    e = load_fails("type_list", "train:\n  lr: [1, 2]\n");
    ASSERT_HAS(e, ":2: train.lr: expected a number, got a list");
    e = load_fails("type_range", "model:\n  hidden_dim: 3_000_000_000\n");
    ASSERT_HAS(e, ":2: model.hidden_dim: integer '3_000_000_000' out of range");
}
END_TEST

START_TEST(test_enum_value_out_of_range_lists_allowed_values)
{
    const char *e = load_fails("enum", "model:\n  attention_fn: flash-attention\n");
    ASSERT_HAS(e, ":2: model.attention_fn: invalid value 'flash-attention'; allowed: "
                  "sm-attention, lin-attention, norm-attention");
}
END_TEST

START_TEST(test_duplicate_key_and_section_name_both_lines)
{
    const char *e = load_fails("dup", "model:\n  hidden_dim: 64\n  dropout: 0\n  hidden_dim: 32\n");
    ASSERT_HAS(e, ":4: duplicate key 'model.hidden_dim' (first given on line 2)");
    e = load_fails("dupsec", "model:\n  hidden_dim: 64\ntrain:\n  lr: 1\nmodel:\n  dropout: 0\n");
    ASSERT_HAS(e, ":5: duplicate key 'model' (first given on line 1)");
}
END_TEST

START_TEST(test_section_that_is_not_a_mapping)
{
    const char *e = load_fails("notmap", "train:\n  lr: 1\nmodel: 128\n");
    ASSERT_HAS(e, ":3: section 'model' must be a mapping of key: value, got a scalar");
    e = load_fails("notmap2", "model:\n  - hidden_dim\n");
    ASSERT_HAS(e, ":2: section 'model' must be a mapping of key: value, got a list");
    e = load_fails("toplist", "- model\n- train\n");
    ASSERT_HAS(e, ":1: the top level must be a mapping of sections");
}
END_TEST

START_TEST(test_override_wins_over_file_and_default)
{
    ConfigSchema s;
    Config c;
    char err[512];
    small_schema(&s);
    const char *path = write_yaml("override", "model:\n  hidden_dim: 64\n");
    ck_assert_int_eq(config_load_yaml(&c, &s, path, err, sizeof err), 0);
    ck_assert_int_eq(config_int(&c, "model.hidden_dim"), 64);
    ck_assert_int_eq(config_set_override(&c, "model.hidden_dim=256", err, sizeof err), 0);
    ck_assert_int_eq(config_set_override(&c, "train.lr=2_0e-1", err, sizeof err), 0);
    ck_assert_int_eq(config_set_override(&c, "model.attention_fn=norm-attention", err, sizeof err), 0);
    ck_assert_int_eq(config_set_override(&c, "dataset.name=list ops=1", err, sizeof err), 0);
    ck_assert_int_eq(config_int(&c, "model.hidden_dim"), 256);
    ck_assert(config_double(&c, "train.lr") == 2.0);
    ck_assert_str_eq(config_str(&c, "model.attention_fn"), "norm-attention");
    ck_assert_str_eq(config_str(&c, "dataset.name"), "list ops=1"); /* first '=' splits */
    ConfigItem it = config_item(&c, config_schema_find(&s, "model.hidden_dim"));
    ck_assert_int_eq(it.source, CONFIG_FROM_OVERRIDE);
    char where[64];
    ck_assert_str_eq(config_where(&c, "model.hidden_dim", where, sizeof where), "--set");
    config_free(&c);

    /* overrides without a file */
    config_init(&c, &s);
    ck_assert_int_eq(config_set_override(&c, "train.cosine_anneal=false", err, sizeof err), 0);
    ck_assert(!config_bool(&c, "train.cosine_anneal"));
    config_free(&c);
    config_schema_free(&s);
    remove(path);
}
END_TEST

START_TEST(test_bad_override_syntax_and_values)
{
    ConfigSchema s;
    Config c;
    char err[512];
    small_schema(&s);
    config_init(&c, &s);
    static const char *const bad_syntax[] = {"hidden_dim=3", "model.hidden_dim", "model.=3",
                                             ".hidden_dim=3", "=3", ""};
    for (size_t k = 0; k < sizeof bad_syntax / sizeof *bad_syntax; k++) {
        ck_assert_int_ne(config_set_override(&c, bad_syntax[k], err, sizeof err), 0);
        char want[128];
        snprintf(want, sizeof want, "--set '%s': expected section.key=value", bad_syntax[k]);
        ASSERT_HAS(err, want);
    }
    ck_assert_int_ne(config_set_override(&c, "model.hiddn_dim=3", err, sizeof err), 0);
    ASSERT_HAS(err, "--set model.hiddn_dim=3: unknown key 'model.hiddn_dim'; did you mean 'model.hidden_dim'?");
    ck_assert_int_ne(config_set_override(&c, "optim.beta=3", err, sizeof err), 0);
    ASSERT_HAS(err, "--set optim.beta=3: unknown section 'optim'");
    ck_assert_int_ne(config_set_override(&c, "model.hidden_dim=abc", err, sizeof err), 0);
    ASSERT_HAS(err, "--set model.hidden_dim=abc: expected an integer, got 'abc'");
    ck_assert_int_ne(config_set_override(&c, "model.attention_fn=x", err, sizeof err), 0);
    ASSERT_HAS(err, "--set model.attention_fn=x: invalid value 'x'; allowed: sm-attention");
    ck_assert_int_ne(config_set_override(&c, "train.lr=", err, sizeof err), 0);
    ASSERT_HAS(err, "--set train.lr=: expected a number, got no value (null)");
    /* a failed override leaves the value alone */
    ck_assert_int_eq(config_int(&c, "model.hidden_dim"), 128);
    config_free(&c);
    config_schema_free(&s);
}
END_TEST

/* The scalar typing rules, through --set (the same code types file values). */
START_TEST(test_scalar_typing_rules)
{
    ConfigSchema s;
    Config c;
    char err[512];
    small_schema(&s);
    config_init(&c, &s);
    static const struct {
        const char *text;
        int ok;
        int want;
    } ints[] = {{"40_000", 1, 40000}, {"-5", 1, -5},       {"+7", 1, 7},
                {"1_0_0", 1, 100},    {"2147483647", 1, 2147483647},
                {"_40", 0, 0},        {"40_", 0, 0},       {"4__0", 0, 0},
                {"1e3", 0, 0},        {"1.0", 0, 0},       {"0x10", 0, 0},
                {"12abc", 0, 0},      {"2147483648", 0, 0}, {"-", 0, 0}};
    for (size_t k = 0; k < sizeof ints / sizeof *ints; k++) {
        char a[64];
        snprintf(a, sizeof a, "model.hidden_dim=%s", ints[k].text);
        int rc = config_set_override(&c, a, err, sizeof err);
        ck_assert_msg((rc == 0) == ints[k].ok, "int '%s': rc %d (%s)", ints[k].text, rc, err);
        if (ints[k].ok) ck_assert_int_eq(config_int(&c, "model.hidden_dim"), ints[k].want);
    }
    static const struct {
        const char *text;
        int ok;
        double want;
    } dbls[] = {{"4.6416e-4", 1, 4.6416e-4}, {"1e-2", 1, 1e-2}, {"1E+2", 1, 100.0},
                {"5", 1, 5.0},               {"-0.5", 1, -0.5}, {".5", 1, 0.5},
                {"5.", 1, 5.0},              {"1_000.25", 1, 1000.25},
                {".inf", 1, HUGE_VAL},       {"-.Inf", 1, -HUGE_VAL},
                {"inf", 0, 0},               {"nan", 0, 0},     {"1e", 0, 0},
                {"e5", 0, 0},                {"0x1p3", 0, 0},   {"1.2.3", 0, 0},
                {"1e999", 0, 0},             {".", 0, 0}};
    for (size_t k = 0; k < sizeof dbls / sizeof *dbls; k++) {
        char a[64];
        snprintf(a, sizeof a, "train.lr=%s", dbls[k].text);
        int rc = config_set_override(&c, a, err, sizeof err);
        ck_assert_msg((rc == 0) == dbls[k].ok, "double '%s': rc %d (%s)", dbls[k].text, rc, err);
        if (dbls[k].ok) ck_assert(config_double(&c, "train.lr") == dbls[k].want);
    }
    ck_assert_int_eq(config_set_override(&c, "train.lr=.nan", err, sizeof err), 0);
    ck_assert(isnan(config_double(&c, "train.lr")));
    static const char *const trues[] = {"true", "True", "TRUE"}, *const falses[] = {"false", "False", "FALSE"};
    for (int k = 0; k < 3; k++) {
        char a[64];
        snprintf(a, sizeof a, "train.cosine_anneal=%s", falses[k]);
        ck_assert_int_eq(config_set_override(&c, a, err, sizeof err), 0);
        ck_assert(!config_bool(&c, "train.cosine_anneal"));
        snprintf(a, sizeof a, "train.cosine_anneal=%s", trues[k]);
        ck_assert_int_eq(config_set_override(&c, a, err, sizeof err), 0);
        ck_assert(config_bool(&c, "train.cosine_anneal"));
    }
    static const char *const bad_bools[] = {"1", "yes", "on", "tRuE"};
    for (int k = 0; k < 4; k++) {
        char a[64];
        snprintf(a, sizeof a, "train.cosine_anneal=%s", bad_bools[k]);
        ck_assert_int_ne(config_set_override(&c, a, err, sizeof err), 0);
        ASSERT_HAS(err, "expected a boolean");
    }
    config_free(&c);
    config_schema_free(&s);
}
END_TEST

START_TEST(test_ignored_keys_give_a_notice_and_no_error)
{
    ConfigSchema s;
    Config c;
    char err[512], out[2048];
    small_schema(&s);
    const char *path = write_yaml("ignored",
                                  "wandb:\n"
                                  "  project: eig\n"
                                  "  tags: [a, b]\n"
                                  "train:\n"
                                  "  use_flash: True\n"
                                  "  lr: 0.01\n");
    err[0] = '\0';
    int rc = load_capturing_stderr(&c, &s, path, out, sizeof out, err, sizeof err);
    ck_assert_msg(rc == 0, "ignored keys must load: %s", err);
    char want[400];
    snprintf(want, sizeof want, "%s:5: train.use_flash is accepted but ignored by seqeig\n", path);
    ASSERT_HAS(out, want);
    snprintf(want, sizeof want, "%s:1: wandb is accepted but ignored by seqeig\n", path);
    ASSERT_HAS(out, want);
    /* one line per ignored name and nothing else */
    int lines = 0;
    for (const char *p = out; *p; p++) lines += *p == '\n';
    ck_assert_int_eq(lines, 2);
    ck_assert(config_double(&c, "train.lr") == 0.01);
    ConfigItem it = config_item(&c, config_schema_find(&s, "train.use_flash"));
    ck_assert(it.ignored);
    ck_assert(it.value->b); /* recorded as given */
    config_free(&c);

    /* an unregistered top-level name is still an error */
    const char *e = load_fails("ignored2", "wandbb:\n  project: eig\n");
    ASSERT_HAS(e, ":1: unknown section 'wandbb'");
    config_schema_free(&s);
    remove(path);
}
END_TEST

START_TEST(test_to_yaml_round_trip_gives_identical_values)
{
    ConfigSchema s;
    Config c, d;
    char err[512];
    small_schema(&s);
    config_schema_add_str(&s, "dataset.path", "", 0);
    config_schema_add_double(&s, "train.eps", 1e-8, 0);
    config_schema_add_double(&s, "train.wd", 0.0, 0);
    const char *const kinds[] = {"true", "x:y", "null", NULL};
    config_schema_add_enum(&s, "model.kind", "true", kinds, 0);
    config_init(&c, &s);
    static const char *const sets[] = {
        "train.lr=4.6416e-4", "train.eps=1e-300", "train.wd=0.1", "model.dropout=0.30000000000000004",
        "model.hidden_dim=-7", "train.cosine_anneal=false", "dataset.name=a \"quoted\": #not comment\\",
        "model.kind=x:y", "train.use_flash=true"};
    for (size_t k = 0; k < sizeof sets / sizeof *sets; k++)
        ck_assert_msg(config_set_override(&c, sets[k], err, sizeof err) == 0, "%s", err);
    char *text = config_to_yaml(&c);
    ASSERT_HAS(text, "model:\n  hidden_dim: -7\n");
    ASSERT_HAS(text, "  lr: 0.00046416\n");
    ASSERT_HAS(text, "  eps: 1.0e-300\n"); /* a float to YAML 1.1 readers too */
    ASSERT_HAS(text, "  # use_flash: true  (ignored by seqeig)\n");
    const char *path = write_yaml("roundtrip", text);
    ck_assert_msg(config_load_yaml(&d, &s, path, err, sizeof err) == 0, "%s\n%s", err, text);
    for (int i = 0; i < config_count(&c); i++) {
        ConfigItem a = config_item(&c, i), b = config_item(&d, i);
        if (a.ignored) continue; /* written as a comment: back at its default */
        switch (a.type) {
        case CONFIG_INT: ck_assert_int_eq(a.value->i, b.value->i); break;
        case CONFIG_DOUBLE:
            ck_assert_msg(memcmp(&a.value->d, &b.value->d, sizeof(double)) == 0, "%s: %.17g vs %.17g",
                          a.key, a.value->d, b.value->d);
            break;
        case CONFIG_BOOL: ck_assert_int_eq(a.value->b, b.value->b); break;
        default: ck_assert_str_eq(a.value->s, b.value->s); break;
        }
    }
    /* the enum default "true" and "null" survive too */
    config_free(&d);
    ck_assert_int_eq(config_set_override(&c, "model.kind=null", err, sizeof err), 0);
    free(text);
    text = config_to_yaml(&c);
    path = write_yaml("roundtrip2", text);
    ck_assert_msg(config_load_yaml(&d, &s, path, err, sizeof err) == 0, "%s\n%s", err, text);
    ck_assert_str_eq(config_str(&d, "model.kind"), "null");
    config_free(&d);
    free(text);
    config_free(&c);
    config_schema_free(&s);
    remove(path);
}
END_TEST

/* A schema fragment with the keys of the reference study's MQAR configs and
 * a file shaped like its softmax-attention config (docs/training.md,
 * Reference settings per task; experiments/mqar/paper/sm-attention.yaml). */
static void mqar_schema(ConfigSchema *s)
{
    static const char *const layers[] = {"attention", "mamba", NULL};
    static const char *const mixers[] = {"none", "mlp", NULL};
    config_schema_init(s);
    config_schema_add_str(s, "dataset.name", "mqar", 0);
    config_schema_add_int(s, "dataset.input_seq_len", 512, 0);
    config_schema_add_int(s, "dataset.num_kv_pairs", 64, 0);
    config_schema_add_int(s, "dataset.vocab_size", 8192, 0);
    config_schema_add_int(s, "dataset.num_train_examples", 100000, 0);
    config_schema_add_int(s, "dataset.num_test_examples", 3000, 0);
    config_schema_add_int(s, "train.batch_size", 64, 0);
    config_schema_add_double(s, "train.lr", 1e-3, 0);
    config_schema_add_double(s, "train.wd", 0.1, 0);
    config_schema_add_int(s, "train.warmup", 0, 0);
    config_schema_add_int(s, "train.warmup_steps", 0, 0);
    config_schema_add_int(s, "train.total_steps", 40000, 0);
    config_schema_add_int(s, "train.eval_every", 200, 0);
    config_schema_add_double(s, "train.stop_criterion", 0.99, 0);
    config_schema_add_int(s, "train.seed", 1919, 0);
    config_schema_add_bool(s, "train.sweep", false, CONFIG_IGNORED);
    config_schema_add_enum(s, "model.layer", "attention", layers, 0);
    config_schema_add_enum(s, "model.attention_fn", "sm-attention", ATT_FNS, 0);
    config_schema_add_int(s, "model.num_layers", 2, 0);
    config_schema_add_int(s, "model.hidden_dim", 128, 0);
    config_schema_add_int(s, "model.state_dim", 128, 0);
    config_schema_add_int(s, "model.num_heads", 1, 0);
    config_schema_add_int(s, "model.max_pos_embed", 0, 0);
    config_schema_add_enum(s, "model.mixer", "none", mixers, 0);
    config_schema_add_double(s, "model.dropout", 0.0, 0);
    config_schema_add_double(s, "model.att_dropout", 0.0, 0);
    config_schema_add_bool(s, "model.use_flash", false, CONFIG_IGNORED);
    config_schema_ignore_top(s, "wandb");
    config_schema_ignore_top(s, "name");
}

START_TEST(test_mqar_sm_attention_shaped_config_loads)
{
    ConfigSchema s;
    Config c;
    char err[512], out[2048];
    mqar_schema(&s);
    const char *path = write_yaml("mqar_sm",
                                  "name: mqar-sm-attention\n"
                                  "dataset:\n"
                                  "  name: mqar\n"
                                  "  input_seq_len: 512\n"
                                  "  num_kv_pairs: 64\n"
                                  "  vocab_size: 8_192\n"
                                  "  num_train_examples: 100_000\n"
                                  "  num_test_examples: 3_000\n"
                                  "train:\n"
                                  "  batch_size: 64\n"
                                  "  lr: 4.6416e-4\n"
                                  "  wd: 0.1\n"
                                  "  warmup: 4_000\n"
                                  "  total_steps: 40_000\n"
                                  "  eval_every: 200\n"
                                  "  stop_criterion: 0.99\n"
                                  "  seed: 1919\n"
                                  "model:\n"
                                  "  layer: attention\n"
                                  "  attention_fn: sm-attention\n"
                                  "  num_layers: 2\n"
                                  "  hidden_dim: 128\n"
                                  "  state_dim: 128\n"
                                  "  num_heads: 1\n"
                                  "  max_pos_embed: 512\n"
                                  "  mixer: none\n"
                                  "  dropout: 0.1\n"
                                  "  att_dropout: 0.0\n"
                                  "  use_flash: True\n"
                                  "wandb:\n"
                                  "  project: eigenvalues\n"
                                  "  mode: offline\n");
    err[0] = '\0';
    int rc = load_capturing_stderr(&c, &s, path, out, sizeof out, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    ASSERT_HAS(out, "model.use_flash is accepted but ignored");
    ASSERT_HAS(out, ":29:");
    ck_assert_int_eq(config_int(&c, "dataset.vocab_size"), 8192);
    ck_assert_int_eq(config_int(&c, "dataset.num_train_examples"), 100000);
    ck_assert(config_double(&c, "train.lr") == 4.6416e-4);
    ck_assert_int_eq(config_int(&c, "train.warmup"), 4000);
    ck_assert_int_eq(config_int(&c, "train.warmup_steps"), 0);
    ck_assert_int_eq(config_int(&c, "train.total_steps"), 40000);
    ck_assert_str_eq(config_str(&c, "model.attention_fn"), "sm-attention");
    ck_assert_int_eq(config_int(&c, "model.max_pos_embed"), 512);
    ck_assert(config_double(&c, "model.dropout") == 0.1);
    ck_assert_str_eq(config_str(&c, "model.mixer"), "none");
    /* every entry is listed, file values with their lines */
    int from_file = 0;
    for (int i = 0; i < config_count(&c); i++) from_file += config_item(&c, i).source == CONFIG_FROM_FILE;
    ck_assert_int_eq(from_file, 25); /* 6 dataset + 8 train + 11 model keys in the file (use_flash recorded) */
    config_free(&c);
    config_schema_free(&s);
    remove(path);
}
END_TEST

/* Strings YAML reads as line breaks (U+0085, U+2028, U+2029) or that
 * libyaml's reader refuses (DEL, C1 controls, U+FFFE/U+FFFF) were written
 * by config_to_yaml as they were: the written config (run files, `seqeig
 * info --config`) did not load again or read back changed; found by
 * fuzz/fuzz_config.c on an ignored key, whose value is written in a comment. */
START_TEST(test_to_yaml_escapes_line_breaks_and_unreadable_characters)
{
    ConfigSchema s;
    Config c, d;
    char err[1024];
    small_schema(&s);
    config_schema_add_str(&s, "dataset.note", "", CONFIG_IGNORED);
    const char *path = write_yaml("escapes", "dataset:\n"
                                             "  name: \"a\\Lb\\Pc\\Nd\\x7fe\\x80f\\x9fg\\uFFFEh\\uFFFFi\\uFEFFj\\rk"
                                             "\\u00e9\\u65e5\\U0001F600 \\\" \\\\ \\t\\n\"\n"
                                             "  note: \"x\\Ly\"\n");
    ck_assert_msg(config_load_yaml(&c, &s, path, err, sizeof err) == 0, "%s", err);
    remove(path);
    const char *want = "a\xe2\x80\xa8" "b\xe2\x80\xa9" "c\xc2\x85" "d\x7f" "e\xc2\x80" "f\xc2\x9f" "g\xef\xbf\xbe"
                       "h\xef\xbf\xbf" "i\xef\xbb\xbf" "j\rk\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80 \" \\ \t\n";
    ck_assert_str_eq(config_str(&c, "dataset.name"), want);
    char *text = config_to_yaml(&c);
    ck_assert_msg(config_load_yaml_text(&d, &s, text, "written.yaml", err, sizeof err) == 0, "%s\n%s", err, text);
    ck_assert_str_eq(config_str(&d, "dataset.name"), want);
    ASSERT_HAS(text, "  # note: \"x\\Ly\"  (ignored by seqeig)\n");
    /* escaped; the e-acute and the CJK character as they are */
    ASSERT_HAS(text, "\"a\\Lb\\Pc\\Nd\\x7fe\\x80f\\x9fg\\ufffeh\\uffffi\\ufeffj\\x0dk\xc3\xa9\xe6\x97\xa5");
    free(text);
    config_free(&d);
    config_free(&c);
    config_schema_free(&s);
}
END_TEST

/* A string no YAML file can hold, through --set (e.g. a Latin-1 path):
 * the run trained, and its stored config could not be read back. */
START_TEST(test_set_refuses_strings_that_are_not_utf8)
{
    ConfigSchema s;
    Config c;
    char err[512];
    small_schema(&s);
    config_init(&c, &s);
    const char *bad[] = {"dataset.name=/data/caf\xe9", "dataset.name=\xc0\xaf", "dataset.name=\xed\xa0\x80",
                         "dataset.name=a\xf4\x90\x80\x80"};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        ck_assert_msg(config_set_override(&c, bad[k], err, sizeof err) == -1, "%s accepted", bad[k]);
        ASSERT_HAS(err, "not valid UTF-8");
    }
    ck_assert_int_eq(config_set_override(&c, "dataset.name=/data/caf\xc3\xa9", err, sizeof err), 0);
    config_free(&c);
    config_schema_free(&s);
}
END_TEST

/* YAML's "\0" escape puts a NUL into a scalar; read as a C string the
 * value (or key) was cut there without a word. */
START_TEST(test_nul_in_a_scalar_is_refused)
{
    const char *msg = load_fails("nul_value", "dataset:\n  name: \"ab\\0cd\"\n");
    ASSERT_HAS(msg, ":2: section 'dataset': a NUL character");
    msg = load_fails("nul_key", "model:\n  \"hidden_dim\\0x\": 3\n");
    ASSERT_HAS(msg, "a NUL character (\\0) in a key");
    msg = load_fails("nul_top", "\"seed\\0\": 3\n");
    ASSERT_HAS(msg, "a NUL character (\\0) in a section name");
}
END_TEST

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* "model:\n  hidden_dim: " then `open` times `[` (and as many `]` when
 * closed): the value is nested open + 2 levels deep (root, section). */
static char *nested_text(int open, bool closed)
{
    const char *head = "model:\n  hidden_dim: ";
    size_t h = strlen(head), n = h + 2 * (size_t)open + 4;
    char *t = malloc(n);
    ck_assert_ptr_nonnull(t);
    memcpy(t, head, h);
    char *p = t + h;
    memset(p, '[', (size_t)open);
    p += open;
    *p++ = '1';
    if (closed) {
        memset(p, ']', (size_t)open);
        p += open;
    }
    *p++ = '\n';
    *p = '\0';
    return t;
}

/* 10^5 nested '[' took libyaml's document loader 38-77 s of CPU before the
 * syntax error; the depth is now refused after CONFIG_MAX_DEPTH levels. */
START_TEST(test_deep_nesting_is_refused_at_once)
{
    ConfigSchema s;
    Config c;
    char err[1024];
    small_schema(&s);
    for (int closed = 0; closed < 2; closed++) {
        char *text = nested_text(100000, closed);
        double t0 = now_s();
        const char *msg = load_fails(closed ? "deep_closed" : "deep_open", text);
        double dt = now_s() - t0;
        ck_assert_msg(dt < 2.0, "refusing 10^5 nested lists (file) took %.1f s", dt);
        ASSERT_HAS(msg, "nested more than 32 levels");
        ASSERT_HAS(msg, ":2:"); /* the line of the first level too many */
        t0 = now_s();
        ck_assert_int_eq(config_load_yaml_text(&c, &s, text, "RUN.h5:/config/yaml", err, sizeof err), -1);
        dt = now_s() - t0;
        ck_assert_msg(dt < 2.0, "refusing 10^5 nested lists (text) took %.1f s", dt);
        ASSERT_HAS(err, "RUN.h5:/config/yaml:2:");
        ASSERT_HAS(err, "nested");
        config_free(&c);
        free(text);
    }
    /* The bound itself: 32 levels pass the depth check (and fail as a list
     * where an int belongs), 33 do not. */
    char *text = nested_text(CONFIG_MAX_DEPTH - 2, true);
    ck_assert_int_eq(config_load_yaml_text(&c, &s, text, "t.yaml", err, sizeof err), -1);
    ASSERT_HAS(err, "model.hidden_dim: expected an integer, got a list");
    config_free(&c);
    free(text);
    text = nested_text(CONFIG_MAX_DEPTH - 1, true);
    ck_assert_int_eq(config_load_yaml_text(&c, &s, text, "t.yaml", err, sizeof err), -1);
    ASSERT_HAS(err, "t.yaml:2:");
    ASSERT_HAS(err, "nested");
    config_free(&c);
    free(text);
    /* Block mappings count as well. */
    char block[8192] = "";
    size_t n = 0;
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(block + n, sizeof block - n, "%*sk%d:\n", i, "", i);
    ck_assert_int_eq(config_load_yaml_text(&c, &s, block, "b.yaml", err, sizeof err), -1);
    ASSERT_HAS(err, "b.yaml:33:"); /* k32, the key of the 33rd mapping */
    ASSERT_HAS(err, "nested");
    config_free(&c);
    config_schema_free(&s);
}
END_TEST

Suite *suite_config(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_valid_file_sets_values_and_leaves_absent_keys_at_defaults);
    tcase_add_test(tc, test_empty_file_and_empty_section_give_defaults);
    tcase_add_test(tc, test_missing_file_is_named);
    tcase_add_test(tc, test_yaml_syntax_error_gives_libyaml_problem_and_line);
    tcase_add_test(tc, test_unknown_section_is_named_with_suggestion);
    tcase_add_test(tc, test_unknown_key_suggests_closest_registered_key);
    tcase_add_test(tc, test_wrong_type_names_key_line_and_expectation);
    tcase_add_test(tc, test_enum_value_out_of_range_lists_allowed_values);
    tcase_add_test(tc, test_duplicate_key_and_section_name_both_lines);
    tcase_add_test(tc, test_section_that_is_not_a_mapping);
    tcase_add_test(tc, test_override_wins_over_file_and_default);
    tcase_add_test(tc, test_bad_override_syntax_and_values);
    tcase_add_test(tc, test_scalar_typing_rules);
    tcase_add_test(tc, test_ignored_keys_give_a_notice_and_no_error);
    tcase_add_test(tc, test_to_yaml_round_trip_gives_identical_values);
    tcase_add_test(tc, test_mqar_sm_attention_shaped_config_loads);
    tcase_add_test(tc, test_deep_nesting_is_refused_at_once);
    tcase_add_test(tc, test_to_yaml_escapes_line_breaks_and_unreadable_characters);
    tcase_add_test(tc, test_set_refuses_strings_that_are_not_utf8);
    tcase_add_test(tc, test_nul_in_a_scalar_is_refused);
    suite_add_tcase(s, tc);
    return s;
}
