/* The `model:` section of a run config: the keys every family shares, the
 * conversion to a ModelConfig, defaults and checks (model.h).
 *
 * Key names and meanings are the reference study's (docs/training.md);
 * defaults are its MQAR values (2 layers, d = state width = 128, one head,
 * vocabulary 8192), so a config only names what differs.  Each family
 * registers its own keys (ModelFamily.register_keys); the registered
 * defaults are the only table of model defaults. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

static const char *const NORMS[] = {"layer", NULL};
static const char *const POOLINGS[] = {"mean", "none", NULL};

void model_keys_register(ConfigSchema *s)
{
    const int nf = model_family_count();
    const char *layers[16];
    if (nf >= (int)(sizeof layers / sizeof layers[0])) abort(); /* registry larger than this table */
    for (int i = 0; i < nf; i++) layers[i] = model_family_at(i)->layer;
    layers[nf] = NULL;
    config_schema_add_enum(s, "model.layer", layers[0], layers, 0);
    /* each family's variant key, its choices the family's model names */
    for (int i = 0; i < nf; i++) {
        const ModelFamily *f = model_family_at(i);
        if (f->variant_key) config_schema_add_enum(s, f->variant_key, f->names[0], f->names, 0);
    }
    config_schema_add_int(s, "model.num_layers", 2, 0);
    config_schema_add_int(s, "model.hidden_dim", 128, 0);
    config_schema_add_int(s, "model.state_dim", 128, 0);
    config_schema_add_int(s, "model.num_heads", 1, 0);
    config_schema_add_int(s, "model.vocab_size", 8192, 0);
    config_schema_add_int(s, "model.output_dim", 8192, 0);
    config_schema_add_double(s, "model.dropout", 0.1, 0);
    for (int i = 0; i < nf; i++) model_family_at(i)->register_keys(s);
    config_schema_add_enum(s, "model.norm", "layer", NORMS, 0);
    /* each family's switch to the Linear input layer of float features */
    for (int i = 0; i < nf; i++) {
        const ModelFamily *f = model_family_at(i);
        if (f->float_input_key) config_schema_add_bool(s, f->float_input_key, true, 0);
    }
    config_schema_add_int(s, "model.input_dim", 1, 0); /* features per position of float inputs */
    config_schema_add_bool(s, "model.classifier", false, 0);
    config_schema_add_enum(s, "model.pooling", "mean", POOLINGS, 0);
    config_schema_add_bool(s, "model.dual", false, 0);
    /* The reference has these; they change nothing here. */
    config_schema_add_bool(s, "model.use_flash", false, CONFIG_IGNORED); /* kernel choice */
}

int model_keys_to_config(const Config *c, ModelConfig *mc, char *err, size_t errlen)
{
    memset(mc, 0, sizeof *mc);
    const char *layer = config_str(c, "model.layer");
    mc->family = model_family_by_layer(layer);
    if (!mc->family) return config_key_error(c, "model.layer", err, errlen, "model.layer = '%s': no such model family", layer);
    if (config_bool(c, "model.dual"))
        return config_key_error(c, "model.dual", err, errlen, "model.dual = true: dual classification is not implemented");
    mc->vocab_size = config_int(c, "model.vocab_size");
    mc->output_dim = config_int(c, "model.output_dim");
    mc->hidden_dim = config_int(c, "model.hidden_dim");
    mc->state_dim = config_int(c, "model.state_dim");
    mc->num_heads = config_int(c, "model.num_heads");
    mc->num_layers = config_int(c, "model.num_layers");
    mc->dropout = (float)config_double(c, "model.dropout");
    mc->head = config_bool(c, "model.classifier") ? HEAD_CLASSIFIER : HEAD_LM;
    if (mc->family->from_config(c, mc, err, errlen)) return -1;
    char msg[400];
    if (model_config_check(mc, msg, sizeof msg) != 0) {
        snprintf(err, errlen, "%s: model.%s", c->path ? c->path : "config", msg);
        return -1;
    }
    return 0;
}

/* A Config of the model keys alone, at their defaults. */
static void model_schema(ConfigSchema *s)
{
    config_schema_init(s);
    model_keys_register(s);
}

static int resolve(ModelConfig *mc, const char *const *sets, int n, char *err, size_t errlen)
{
    ConfigSchema s;
    model_schema(&s);
    Config c;
    config_init(&c, &s);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        char buf[256];
        if (snprintf(buf, sizeof buf, "model.%s", sets[i]) >= (int)sizeof buf) {
            snprintf(err, errlen, "model key '%s' too long", sets[i]);
            rc = -1;
        } else {
            rc = config_set_override(&c, buf, err, errlen);
        }
    }
    if (rc == 0) rc = model_keys_to_config(&c, mc, err, errlen);
    config_free(&c);
    config_schema_free(&s);
    return rc;
}

int model_config_from_keys(ModelConfig *mc, char *err, size_t errlen, ...)
{
    const char *sets[64];
    int n = 0;
    va_list ap;
    va_start(ap, errlen);
    for (const char *kv; (kv = va_arg(ap, const char *)) != NULL;) {
        if (n == (int)(sizeof sets / sizeof sets[0])) {
            va_end(ap);
            snprintf(err, errlen, "more than %d model keys", n);
            return -1;
        }
        sets[n++] = kv;
    }
    va_end(ap);
    return resolve(mc, sets, n, err, errlen);
}

void model_config_defaults(ModelConfig *mc, const char *name)
{
    const ModelFamily *f = model_family_by_name(name);
    char layer[64], variant[128], err[400];
    const char *sets[2];
    int n = 0;
    if (f) {
        snprintf(layer, sizeof layer, "layer=%s", f->layer);
        sets[n++] = layer;
        if (f->variant_key) {
            snprintf(variant, sizeof variant, "%s=%s", f->variant_key + strlen("model."), name);
            sets[n++] = variant;
        }
    }
    if (!f || resolve(mc, sets, n, err, sizeof err)) {
        fprintf(stderr, "seqeig: internal error: no defaults for model '%s'%s%s\n", name, f ? ": " : "", f ? err : "");
        abort();
    }
}

#define FAIL(...)                                              \
    do {                                                       \
        if (err && errlen) snprintf(err, errlen, __VA_ARGS__); \
        return -1;                                             \
    } while (0)

int model_config_check(const ModelConfig *c, char *err, size_t errlen)
{
    if (!c->family) FAIL("layer: no model family");
    if (c->input_dim < 0) FAIL("input_dim = %d: must be >= 0 (0: token inputs)", c->input_dim);
    if (c->input_dim == 0 && c->vocab_size <= 0) FAIL("vocab_size = %d: must be > 0", c->vocab_size);
    if (c->output_dim <= 0) FAIL("output_dim = %d: must be > 0", c->output_dim);
    if (c->hidden_dim <= 0) FAIL("hidden_dim = %d: must be > 0", c->hidden_dim);
    if (c->state_dim <= 0) FAIL("state_dim = %d: must be > 0", c->state_dim);
    if (c->num_heads <= 0) FAIL("num_heads = %d: must be > 0", c->num_heads);
    if (c->num_layers <= 0) FAIL("num_layers = %d: must be > 0", c->num_layers);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f)) FAIL("dropout = %g: must lie in [0, 1)", (double)c->dropout);
    if (c->head != HEAD_LM && c->head != HEAD_CLASSIFIER) FAIL("head: unknown head kind %d", (int)c->head);
    if (c->hidden_dim % c->num_heads != 0)
        FAIL("hidden_dim = %d is not divisible by num_heads = %d (%s: head width d/H)", c->hidden_dim, c->num_heads,
             model_name(c));
    return c->family->check(c, err, errlen);
}

const char *model_name(const ModelConfig *c) { return c->family ? c->family->name(c) : "unknown"; }
