/* The Linear input layer of float inputs (models/encoder.c): parameter
 * names, shapes and initialisation for both model families, the encoder
 * output against a float64 reference, gradients of every parameter of
 * models fed float inputs against finite differences, and the config keys
 * that select it (reference names model.embedding / model.token_embedding,
 * model.input_dim). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../models/model.h"
#include "../models/mamba2.h"
#include "../models/transformer.h"
#include "../src/init.h"
#include "../src/ops.h"
#include "../src/rng.h"
#include "../app/train.h"
#include "testutil.h"

enum { B_ = 2, L_ = 6, D_ = 8, F_ = 3 };

static ModelConfig float_input_config(const char *name, int input_dim)
{
    ModelConfig c;
    model_config_defaults(&c, name);
    c.vocab_size = 5; /* unused by float inputs */
    c.input_dim = input_dim;
    c.hidden_dim = D_;
    c.state_dim = 4;
    c.num_layers = 2;
    c.num_heads = 2;
    c.dropout = 0.0f;
    c.head = HEAD_CLASSIFIER;
    c.output_dim = 3;
    if (c.family == &transformer_family) {
        TransformerOptions *o = transformer_options(&c);
        o->max_pos_embed = 0;
        o->mixer = MIXER_MLP;
        o->mixer_dim = 6;
        o->approx_fn = APPROX_NONE;
        if (o->attention == ATTENTION_NORM) o->dim_conv = 4;
    } else {
        mamba2_options(&c)->prenorm = false;
    }
    return c;
}

/* The family's input layer alone. */
static Tensor *encode(Model *m, Graph *g, const ModelBatch *b)
{
    return m->cfg.family == &mamba2_family ? mamba2_encode(m, g, b) : transformer_encode(m, g, b);
}

static void create(Model *m, const ModelConfig *c, uint64_t seed)
{
    char err[300];
    ck_assert_msg(model_create(m, c, err, sizeof err) == 0, "%s", err);
    model_init(m, seed);
}

static void random_features(float *x, size_t n, uint64_t seed)
{
    Rng r;
    rng_init(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = (float)(4.0 * rng_uniform(&r) - 2.0);
}

static const char *const KINDS[] = {"sm-attention", "lin-attention", "norm-attention", "mamba2"};

START_TEST(test_float_inputs_declare_encoder_weight_and_bias_first_instead_of_embeddings)
{
    for (int k = 0; k < 4; k++) {
        ModelConfig c = float_input_config(KINDS[k], F_), t = c;
        t.input_dim = 0;
        Model m, mt;
        create(&m, &c, 1);
        create(&mt, &t, 1);
        const char *kn = model_name(&c);
        ck_assert_str_eq(m.params.items[0]->name, "encoder.weight");
        ck_assert_int_eq(m.params.items[0]->t.ndim, 2);
        ck_assert_int_eq(m.params.items[0]->t.shape[0], D_);
        ck_assert_int_eq(m.params.items[0]->t.shape[1], F_);
        ck_assert_str_eq(m.params.items[1]->name, "encoder.bias");
        ck_assert_int_eq(m.params.items[1]->t.ndim, 1);
        ck_assert_int_eq(m.params.items[1]->t.shape[0], D_);
        ck_assert_msg(paramset_find(&m.params, "encoder.word_embeddings.weight") == NULL, "%s", kn);
        /* Everything after the input layer is the token model's. */
        ck_assert_str_eq(mt.params.items[0]->name, "encoder.word_embeddings.weight");
        ck_assert_int_eq(m.params.n, mt.params.n + 1);
        for (int i = 1; i < mt.params.n; i++) ck_assert_str_eq(m.params.items[i + 1]->name, mt.params.items[i]->name);
        model_free(&m);
        model_free(&mt);
    }
}
END_TEST

/* nn.Linear(F, d) init, U(+-1/sqrt(F)) weight then bias, as the first
 * draws of the model's init stream. */
START_TEST(test_encoder_init_is_linear_default_from_the_start_of_the_init_stream)
{
    for (int k = 0; k < 4; k++) {
        ModelConfig c = float_input_config(KINDS[k], F_);
        Model m;
        create(&m, &c, 77);
        float w[D_ * F_], b[D_];
        Rng r;
        rng_init(&r, rng_derive_key(77, RNG_INIT, 0));
        const double bound = 1.0 / sqrt((double)F_);
        init_uniform(w, D_ * F_, &r, -bound, bound);
        init_uniform(b, D_, &r, -bound, bound);
        ck_assert_mem_eq(w, paramset_find(&m.params, "encoder.weight")->t.data, sizeof w);
        ck_assert_mem_eq(b, paramset_find(&m.params, "encoder.bias")->t.data, sizeof b);
        model_free(&m);
    }
}
END_TEST

START_TEST(test_model_encode_is_features_times_weight_plus_bias)
{
    for (int k = 0; k < 4; k++) {
        ModelConfig c = float_input_config(KINDS[k], F_);
        Model m;
        create(&m, &c, 5);
        float x[B_ * L_ * F_];
        random_features(x, B_ * L_ * F_, 9);
        ModelBatch mb = {.B = B_, .L = L_, .features = x};
        Graph g;
        graph_init(&g, 0, 1);
        graph_begin(&g, 0, false, false);
        Tensor *y = encode(&m, &g, &mb);
        ck_assert_int_eq(y->ndim, 3);
        ck_assert_int_eq(y->shape[2], D_);
        const float *W = paramset_find(&m.params, "encoder.weight")->t.data;
        const float *bias = paramset_find(&m.params, "encoder.bias")->t.data;
        for (int i = 0; i < B_ * L_; i++)
            for (int o = 0; o < D_; o++) {
                double want = bias[o];
                for (int f = 0; f < F_; f++) want += (double)x[i * F_ + f] * W[o * F_ + f];
                ck_assert_msg(fabs(y->data[i * D_ + o] - want) <= 1e-6 * (1.0 + fabs(want)), "%s (%d, %d)",
                              model_name(&c), i, o);
            }
        graph_free(&g);
        model_free(&m);
    }
}
END_TEST

typedef struct GcCtx {
    Model *m;
    const ModelBatch *mb;
    const int32_t *labels;
} GcCtx;

static Tensor *gc_loss(Graph *g, Tensor **in, void *ctx)
{
    (void)in;
    GcCtx *c = ctx;
    return op_cross_entropy(g, model_forward(c->m, g, c->mb, NULL), c->labels, NULL);
}

/* eps / atol as the model gradient checks of test_models_attention.c (same
 * sizes of parameters and gradients). */
START_TEST(test_gradients_with_float_inputs_match_finite_differences)
{
    const GradcheckOpts o = {.eps = 3e-3, .atol = 5e-5, .rtol = 1e-2, .max_probe = 0};
    for (int k = 0; k < 4; k++) {
        ModelConfig c = float_input_config(KINDS[k], 1);
        Model m;
        create(&m, &c, 31 + k);
        float x[B_ * L_];
        random_features(x, B_ * L_, 90 + k);
        const int32_t labels[B_] = {2, 0};
        ModelBatch mb = {.B = B_, .L = L_, .features = x};
        Tensor **in = malloc(sizeof(Tensor *) * m.params.n);
        for (int i = 0; i < m.params.n; i++) in[i] = &m.params.items[i]->t;
        GcCtx ctx = {&m, &mb, labels};
        ck_assert_msg(gradcheck(model_name(&c), gc_loss, &ctx, in, m.params.n, o), "%s",
                      model_name(&c));
        free(in);
        model_free(&m);
    }
}
END_TEST

/* ---------- config keys ---------- */

static int keys_to_config(const char *yaml, ModelConfig *mc, char *err, size_t n)
{
    ConfigSchema s;
    Config c;
    run_schema_build(&s);
    int rc = config_load_yaml_text(&c, &s, yaml, "test.yaml", err, n);
    if (rc == 0) {
        rc = model_keys_to_config(&c, mc, err, n);
        config_free(&c);
    }
    config_schema_free(&s);
    return rc;
}

START_TEST(test_config_keys_select_the_linear_input_layer)
{
    ModelConfig mc;
    char err[600];
    /* transformer: embedding false */
    ck_assert_msg(keys_to_config("model:\n  attention_fn: sm-attention\n  embedding: false\n", &mc, err, sizeof err) == 0,
                  "%s", err);
    ck_assert_int_eq(mc.input_dim, 1);
    ck_assert_int_eq(transformer_options(&mc)->max_pos_embed, 0);
    ck_assert_int_eq(keys_to_config("model:\n  attention_fn: norm-attention\n  embedding: false\n  input_dim: 3\n",
                                    &mc, err, sizeof err), 0);
    ck_assert_int_eq(mc.input_dim, 3);
    /* Mamba-2: token_embedding false (its reference key) */
    ck_assert_int_eq(keys_to_config("model:\n  layer: mamba\n  token_embedding: false\n", &mc, err, sizeof err), 0);
    ck_assert(mc.family == &mamba2_family);
    ck_assert_int_eq(mc.input_dim, 1);
    /* tokens stay the default */
    ck_assert_int_eq(keys_to_config("model:\n  attention_fn: sm-attention\n  max_pos_embed: 64\n", &mc, err, sizeof err), 0);
    ck_assert_int_eq(mc.input_dim, 0);
    ck_assert_int_eq(transformer_options(&mc)->max_pos_embed, 64);

    static const struct {
        const char *yaml, *want;
    } bad[] = {
        {"model:\n  attention_fn: sm-attention\n  embedding: false\n  max_pos_embed: 64\n",
         "max_pos_embed = 64: learned positions belong to the token embedding"},
        {"model:\n  attention_fn: sm-attention\n  token_embedding: false\n",
         "model.token_embedding = false has no effect on a transformer model"},
        {"model:\n  layer: mamba\n  embedding: false\n", "model.embedding = false has no effect on a Mamba-2 model"},
        {"model:\n  layer: mamba\n  token_embedding: false\n  input_dim: 0\n",
         "model.input_dim = 0: float inputs need at least one feature"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(keys_to_config(bad[i].yaml, &mc, err, sizeof err) != 0, "accepted: %s", bad[i].yaml);
        ck_assert_msg(strstr(err, bad[i].want) != NULL, "'%s' lacks '%s'", err, bad[i].want);
    }
}
END_TEST

Suite *suite_encoder(void)
{
    Suite *s = suite_create("encoder");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_float_inputs_declare_encoder_weight_and_bias_first_instead_of_embeddings);
    tcase_add_test(tc, test_encoder_init_is_linear_default_from_the_start_of_the_init_stream);
    tcase_add_test(tc, test_model_encode_is_features_times_weight_plus_bias);
    tcase_add_test(tc, test_gradients_with_float_inputs_match_finite_differences);
    tcase_add_test(tc, test_config_keys_select_the_linear_input_layer);
    suite_add_tcase(s, tc);
    return s;
}
