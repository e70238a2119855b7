/* Model configuration: defaults, consistency checks, kind names (model.h).
 *
 * The defaults are the values of the reference study's MQAR configs
 * (STUDY 5.2: 2 layers, d = d_qk = N = 128, one head, vocabulary 8192),
 * so a config file only has to name what differs.  Keys that the reference
 * configs leave out take the reference modules' behaviour: no classifier
 * MLP, no mixer, no gate. */
#include <stdio.h>
#include <string.h>

#include "model.h"

const char *model_kind_name(ModelKind k)
{
    switch (k) {
    case MODEL_SM_ATTENTION: return "sm-attention";
    case MODEL_LIN_ATTENTION: return "lin-attention";
    case MODEL_NORM_ATTENTION: return "norm-attention";
    case MODEL_MAMBA2: return "mamba2";
    }
    return "unknown";
}

void model_config_defaults(ModelConfig *c, ModelKind kind)
{
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->vocab_size = 8192;
    c->output_dim = 8192;
    c->hidden_dim = 128;
    c->state_dim = 128;
    c->num_heads = 1;
    c->num_layers = 2;
    c->head = HEAD_LM;
    c->mixer_dim = 0;

    /* transformer: MQAR configs (STUDY 5.2) */
    c->dropout = kind == MODEL_MAMBA2 ? 0.0f : 0.1f;
    c->att_dropout = 0.0f;
    c->max_pos_embed = (kind == MODEL_SM_ATTENTION || kind == MODEL_LIN_ATTENTION) ? 512 : 0;
    c->mixer = MIXER_NONE;
    c->use_gate = false;
    c->dim_conv = kind == MODEL_NORM_ATTENTION ? 4 : 0;
    c->norm_fn = NORM_FN_SOFTPLUS;
    c->approx_fn = APPROX_ELU;
    c->scale_B = true;
    c->offset = true;

    /* Mamba-2 */
    c->conv_dim = 4;
    c->glu = true;
    c->prenorm = true;
    c->pseudo_lti = false;
}

#define FAIL(...)                              \
    do {                                       \
        if (err && errlen) snprintf(err, errlen, __VA_ARGS__); \
        return -1;                             \
    } while (0)

int model_config_check(const ModelConfig *c, char *err, size_t errlen)
{
    if ((int)c->kind < MODEL_SM_ATTENTION || (int)c->kind > MODEL_MAMBA2)
        FAIL("model: unknown model kind %d", (int)c->kind);
    const char *kn = model_kind_name(c->kind);
    if (c->input_dim < 0) FAIL("input_dim = %d: must be >= 0 (0: token inputs)", c->input_dim);
    if (c->input_dim == 0 && c->vocab_size <= 0) FAIL("vocab_size = %d: must be > 0", c->vocab_size);
    if (c->output_dim <= 0) FAIL("output_dim = %d: must be > 0", c->output_dim);
    if (c->hidden_dim <= 0) FAIL("hidden_dim = %d: must be > 0", c->hidden_dim);
    if (c->state_dim <= 0) FAIL("state_dim = %d: must be > 0", c->state_dim);
    if (c->num_heads <= 0) FAIL("num_heads = %d: must be > 0", c->num_heads);
    if (c->num_layers <= 0) FAIL("num_layers = %d: must be > 0", c->num_layers);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        FAIL("dropout = %g: must lie in [0, 1)", (double)c->dropout);
    if (!(c->att_dropout >= 0.0f && c->att_dropout < 1.0f))
        FAIL("att_dropout = %g: must lie in [0, 1)", (double)c->att_dropout);
    if (c->head != HEAD_LM && c->head != HEAD_CLASSIFIER) FAIL("head: unknown head kind %d", (int)c->head);
    if (c->mixer_dim < 0) FAIL("mixer_dim = %d: must be >= 0", c->mixer_dim);
    if (c->hidden_dim % c->num_heads != 0)
        FAIL("hidden_dim = %d is not divisible by num_heads = %d (%s: head width d/H)", c->hidden_dim,
             c->num_heads, kn);

    if (c->kind == MODEL_MAMBA2) {
        if (c->conv_dim < 0) FAIL("conv_dim = %d: must be >= 0", c->conv_dim);
        if (c->pseudo_lti && c->state_dim % c->num_heads != 0)
            FAIL("state_dim = %d is not divisible by num_heads = %d (pseudoLTI splits B into one "
                 "block per head)",
                 c->state_dim, c->num_heads);
        return 0;
    }

    if (c->state_dim % c->num_heads != 0)
        FAIL("state_dim = %d is not divisible by num_heads = %d (%s: q/k head width d_qk/H)",
             c->state_dim, c->num_heads, kn);
    if (c->max_pos_embed < 0) FAIL("max_pos_embed = %d: must be >= 0", c->max_pos_embed);
    if (c->input_dim > 0 && c->max_pos_embed > 0)
        FAIL("max_pos_embed = %d: learned positions belong to the token embedding; the Linear input "
             "layer of float inputs (input_dim = %d) has none, as in the reference (set max_pos_embed: 0)",
             c->max_pos_embed, c->input_dim);
    if (c->dim_conv < 0) FAIL("dim_conv = %d: must be >= 0", c->dim_conv);
    if (c->mixer != MIXER_NONE && c->mixer != MIXER_MLP) FAIL("mixer: unknown mixer kind %d", (int)c->mixer);
    if (c->mixer == MIXER_MLP && c->mixer_dim <= 0)
        FAIL("mixer_dim = %d: mixer 'mlp' needs mixer_dim > 0", c->mixer_dim);
    if (c->head == HEAD_CLASSIFIER && c->mixer_dim == 0 && c->output_dim != c->hidden_dim)
        FAIL("output_dim = %d: a classifier head without MLP (mixer_dim 0) outputs the pooled "
             "features, so output_dim must equal hidden_dim = %d",
             c->output_dim, c->hidden_dim);
    if (c->kind == MODEL_NORM_ATTENTION) {
        if ((int)c->norm_fn < NORM_FN_EXP || (int)c->norm_fn > NORM_FN_SIGMOID)
            FAIL("norm_fn: unknown normalisation function %d", (int)c->norm_fn);
        if (c->approx_fn != APPROX_NONE && c->approx_fn != APPROX_ELU)
            FAIL("approx_fn: unknown feature map %d", (int)c->approx_fn);
    }
    return 0;
}
