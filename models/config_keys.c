/* The `model:` section of a run config: key registration and conversion
 * to a ModelConfig (model_keys.h).  Key names and meanings are the
 * reference study's (STUDY 1, 5.2); defaults are its MQAR values. */
#include <stdio.h>
#include <string.h>

#include "model_keys.h"

static const char *const LAYERS[] = {"transformer", "mamba", NULL};
static const char *const ATTENTION_FNS[] = {"sm-attention", "lin-attention", "norm-attention", NULL};
static const char *const NORM_FNS[] = {"exp", "elu", "softplus", "sigmoid", NULL};
static const char *const APPROX_FNS[] = {"none", "elu", NULL};
static const char *const MIXERS[] = {"none", "mlp", NULL};
static const char *const NORMS[] = {"layer", NULL};
static const char *const POOLINGS[] = {"mean", "none", NULL};
static const char *const VERSIONS[] = {"mamba2", NULL};
static const char *const OFFSET_INITS[] = {"exp", NULL};
static const char *const MODES[] = {"attention", NULL};

void model_keys_register(ConfigSchema *s)
{
    config_schema_add_enum(s, "model.layer", "transformer", LAYERS, 0);
    config_schema_add_enum(s, "model.attention_fn", "sm-attention", ATTENTION_FNS, 0);
    config_schema_add_enum(s, "model.version", "mamba2", VERSIONS, 0);
    config_schema_add_int(s, "model.num_layers", 2, 0);
    config_schema_add_int(s, "model.hidden_dim", 128, 0);
    config_schema_add_int(s, "model.state_dim", 128, 0);
    config_schema_add_int(s, "model.num_heads", 1, 0);
    config_schema_add_int(s, "model.vocab_size", 8192, 0);
    config_schema_add_int(s, "model.output_dim", 8192, 0);
    config_schema_add_double(s, "model.dropout", 0.1, 0);
    config_schema_add_double(s, "model.att_dropout", 0.0, 0);
    config_schema_add_int(s, "model.max_pos_embed", 0, 0);
    config_schema_add_enum(s, "model.mixer", "none", MIXERS, 0);
    config_schema_add_int(s, "model.mixer_dim", 128, 0);
    config_schema_add_bool(s, "model.use_gate", false, 0);
    config_schema_add_int(s, "model.dim_conv", 0, 0);
    config_schema_add_enum(s, "model.norm_fn", "softplus", NORM_FNS, 0);
    config_schema_add_enum(s, "model.approx_fn", "elu", APPROX_FNS, 0);
    config_schema_add_bool(s, "model.scale_B", true, 0);
    config_schema_add_bool(s, "model.offset", true, 0);
    config_schema_add_enum(s, "model.offset_init", "exp", OFFSET_INITS, 0);
    config_schema_add_bool(s, "model.learn_A", false, 0);
    config_schema_add_enum(s, "model.mode", "attention", MODES, 0);
    config_schema_add_int(s, "model.conv_dim", 4, 0);
    config_schema_add_int(s, "model.expansion", 1, 0);
    config_schema_add_bool(s, "model.glu", true, 0);
    config_schema_add_bool(s, "model.prenorm", true, 0);
    config_schema_add_bool(s, "model.pseudoLTI", false, 0);
    config_schema_add_enum(s, "model.norm", "layer", NORMS, 0);
    config_schema_add_bool(s, "model.embedding", true, 0);        /* transformer: false = Linear input */
    config_schema_add_bool(s, "model.token_embedding", true, 0);  /* Mamba-2: false = Linear input */
    config_schema_add_int(s, "model.input_dim", 1, 0);            /* features per position of float inputs */
    config_schema_add_bool(s, "model.classifier", false, 0);
    config_schema_add_enum(s, "model.pooling", "mean", POOLINGS, 0);
    config_schema_add_bool(s, "model.dual", false, 0);
    /* The reference has these; they change nothing here. */
    config_schema_add_bool(s, "model.use_flash", false, CONFIG_IGNORED);   /* kernel choice */
}

#define FAIL(...)                                                   \
    do {                                                            \
        snprintf(err, errlen, __VA_ARGS__);                         \
        return -1;                                                  \
    } while (0)

static int index_of(const char *const *list, const char *v)
{
    for (int i = 0; list[i]; i++)
        if (strcmp(list[i], v) == 0) return i;
    return -1;
}

int model_keys_to_config(const Config *c, ModelConfig *mc, char *err, size_t errlen)
{
    char where[300];
    const bool mamba = strcmp(config_str(c, "model.layer"), "mamba") == 0;
    ModelKind kind = MODEL_MAMBA2;
    if (!mamba) kind = (ModelKind)index_of(ATTENTION_FNS, config_str(c, "model.attention_fn"));
    model_config_defaults(mc, kind);

    /* Settings seqeig does not implement are refused, not silently changed. */
    /* Each family has its own key for "float inputs through Linear(input_dim, d)";
     * the other family's key set to false would be silently ignored by the
     * reference, so it is refused here. */
    const char *emb_key = mamba ? "model.token_embedding" : "model.embedding";
    const char *other_key = mamba ? "model.embedding" : "model.token_embedding";
    if (!config_bool(c, other_key))
        FAIL("%s: %s = false has no effect on a %s model; its input layer is chosen by %s",
             config_where(c, other_key, where, sizeof where), other_key, mamba ? "Mamba-2" : "transformer",
             emb_key);
    const bool float_inputs = !config_bool(c, emb_key);
    if (config_bool(c, "model.dual"))
        FAIL("%s: model.dual = true: dual classification is not implemented",
             config_where(c, "model.dual", where, sizeof where));
    if (config_bool(c, "model.learn_A"))
        FAIL("%s: model.learn_A = true: norm attention with a learned A is not implemented",
             config_where(c, "model.learn_A", where, sizeof where));
    if (mamba && config_int(c, "model.expansion") != 1)
        FAIL("%s: model.expansion = %d: the reference Mamba-2 block uses expansion 1 only",
             config_where(c, "model.expansion", where, sizeof where), config_int(c, "model.expansion"));

    mc->vocab_size = config_int(c, "model.vocab_size");
    mc->input_dim = float_inputs ? config_int(c, "model.input_dim") : 0;
    if (float_inputs && mc->input_dim <= 0)
        FAIL("%s: model.input_dim = %d: float inputs need at least one feature per position",
             config_where(c, "model.input_dim", where, sizeof where), mc->input_dim);
    mc->output_dim = config_int(c, "model.output_dim");
    mc->hidden_dim = config_int(c, "model.hidden_dim");
    mc->state_dim = config_int(c, "model.state_dim");
    mc->num_heads = config_int(c, "model.num_heads");
    mc->num_layers = config_int(c, "model.num_layers");
    mc->dropout = (float)config_double(c, "model.dropout");
    /* The reference Mamba has no att_dropout; Mamba-2 ignores it. */
    mc->att_dropout = (float)config_double(c, "model.att_dropout");
    /* The reference Mamba model classifies whenever it pools (its configs
     * say `pooling: "mean"` without `classifier:`); the transformer reads
     * `classifier`.  seqeig's pooling default is "mean", so for Mamba-2
     * only an explicitly given pooling counts. */
    const int pi = config_schema_find(c->schema, "model.pooling");
    const bool pooling_given = c->source[pi] != CONFIG_FROM_DEFAULT;
    const bool mamba_pools = mamba && pooling_given && strcmp(config_str(c, "model.pooling"), "mean") == 0;
    mc->head = (config_bool(c, "model.classifier") || mamba_pools) ? HEAD_CLASSIFIER : HEAD_LM;
    mc->mixer = (MixerKind)index_of(MIXERS, config_str(c, "model.mixer"));
    /* mixer_dim sizes the transformer MLP and the classifier MLP; the
     * reference LM head has no MLP, so it only matters when used. */
    mc->mixer_dim = (mc->mixer == MIXER_MLP || mc->head == HEAD_CLASSIFIER) ? config_int(c, "model.mixer_dim") : 0;
    mc->max_pos_embed = mamba ? 0 : config_int(c, "model.max_pos_embed");
    mc->use_gate = config_bool(c, "model.use_gate");
    mc->dim_conv = config_int(c, "model.dim_conv");
    mc->norm_fn = (NormFn)index_of(NORM_FNS, config_str(c, "model.norm_fn"));
    mc->approx_fn = (ApproxFn)index_of(APPROX_FNS, config_str(c, "model.approx_fn"));
    mc->scale_B = config_bool(c, "model.scale_B");
    mc->offset = config_bool(c, "model.offset");
    mc->conv_dim = config_int(c, "model.conv_dim");
    mc->glu = config_bool(c, "model.glu");
    mc->prenorm = config_bool(c, "model.prenorm");
    mc->pseudo_lti = config_bool(c, "model.pseudoLTI");

    char msg[400];
    if (model_config_check(mc, msg, sizeof msg) != 0) FAIL("%s: model.%s", c->path ? c->path : "config", msg);
    return 0;
}
