/* Writes one oracle file per model variant (docs/oracle.md): a tiny model
 * initialised as docs/parameters.md prescribes, one forward + cross
 * entropy + backward with spectra, and everything PyTorch needs to redo it
 * independently (tests/oracle/compare.py).  Usage: oracle_dump OUT_DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../app/h5util.h"
#include "../../app/spectra.h"
#include "../../models/mamba2.h"
#include "../../models/model.h"
#include "../../models/transformer.h"
#include "../../src/ops.h"
#include "../../src/rng.h"
#include "../../src/threads.h"

enum { B = 2, L = 9, ROWS_PER_SEQ = 4 };

typedef struct Variant {
    const char *name;
    ModelConfig cfg;
    bool masked; /* classifier with a padded second sequence */
} Variant;

static ModelConfig tiny(const char *name)
{
    ModelConfig c;
    model_config_defaults(&c, name);
    c.vocab_size = 13;
    c.output_dim = 13;
    c.hidden_dim = 8;
    c.state_dim = 8;
    c.num_heads = 2;
    c.num_layers = 2;
    c.dropout = 0.0f;
    c.head = HEAD_LM;
    if (c.family == &transformer_family) {
        TransformerOptions *o = transformer_options(&c);
        o->mixer = MIXER_NONE;
        o->mixer_dim = 12;
        o->max_pos_embed = 0;
        o->use_gate = false;
        o->dim_conv = 0;
    } else {
        Mamba2Options *o = mamba2_options(&c);
        o->conv_dim = 4;
        o->glu = true;
        o->prenorm = true;
        o->pseudo_lti = false;
    }
    return c;
}

static ModelConfig classifier(ModelConfig c)
{
    c.head = HEAD_CLASSIFIER;
    c.output_dim = 3;
    transformer_options(&c)->mixer = MIXER_MLP;
    return c;
}

static int build_variants(Variant *v)
{
    int n = 0;
    ModelConfig c;

    c = tiny("sm-attention"), transformer_options(&c)->max_pos_embed = L;
    v[n++] = (Variant){"sm-attention", c, false};
    c = classifier(tiny("sm-attention")), transformer_options(&c)->dim_conv = 4, transformer_options(&c)->use_gate = true, c.state_dim = 4;
    v[n++] = (Variant){"sm-attention-conv-gate-mlp-classifier", c, true};
    c = tiny("lin-attention"), transformer_options(&c)->max_pos_embed = L, transformer_options(&c)->dim_conv = 4, transformer_options(&c)->use_gate = true;
    v[n++] = (Variant){"lin-attention-conv-gate", c, false};
    c = classifier(tiny("lin-attention"));
    v[n++] = (Variant){"lin-attention-mlp-classifier", c, true};
    c = tiny("norm-attention"), transformer_options(&c)->norm_fn = NORM_FN_SOFTPLUS, transformer_options(&c)->approx_fn = APPROX_ELU, transformer_options(&c)->dim_conv = 4;
    v[n++] = (Variant){"norm-attention-softplus-conv", c, false};
    c = classifier(tiny("norm-attention")), transformer_options(&c)->norm_fn = NORM_FN_EXP, c.num_heads = 4, transformer_options(&c)->dim_conv = 4;
    v[n++] = (Variant){"norm-attention-exp-4heads-classifier", c, true};
    c = tiny("norm-attention"), transformer_options(&c)->norm_fn = NORM_FN_SIGMOID, transformer_options(&c)->offset = false, transformer_options(&c)->use_gate = true;
    v[n++] = (Variant){"norm-attention-sigmoid-nooffset-gate", c, false};
    c = tiny("norm-attention"), transformer_options(&c)->norm_fn = NORM_FN_ELU, transformer_options(&c)->approx_fn = APPROX_NONE, transformer_options(&c)->scale_B = false;
    v[n++] = (Variant){"norm-attention-elu-noapprox", c, false};
    c = tiny("mamba2");
    v[n++] = (Variant){"mamba2", c, false};
    c = tiny("mamba2"), mamba2_options(&c)->prenorm = false, mamba2_options(&c)->glu = false;
    v[n++] = (Variant){"mamba2-postnorm-noglu", c, false};
    c = tiny("mamba2"), c.head = HEAD_CLASSIFIER, c.output_dim = 3, mamba2_options(&c)->prenorm = false;
    v[n++] = (Variant){"mamba2-postnorm-classifier", c, true};
    c = tiny("mamba2"), mamba2_options(&c)->pseudo_lti = true;
    v[n++] = (Variant){"mamba2-pseudolti", c, false};
    /* Float inputs through the Linear input layer (CIFAR with tokenize: false). */
    c = classifier(tiny("norm-attention")), c.input_dim = 1, transformer_options(&c)->approx_fn = APPROX_NONE, transformer_options(&c)->dim_conv = 4;
    v[n++] = (Variant){"norm-attention-linear-input-classifier", c, false};
    c = tiny("sm-attention"), c.input_dim = 3;
    v[n++] = (Variant){"sm-attention-linear-input3", c, false};
    c = tiny("mamba2"), c.head = HEAD_CLASSIFIER, c.output_dim = 3, mamba2_options(&c)->prenorm = false, c.input_dim = 1;
    v[n++] = (Variant){"mamba2-postnorm-linear-input-classifier", c, true};
    return n;
}

static const char *norm_fn_name(NormFn f)
{
    static const char *const names[] = {"exp", "elu", "softplus", "sigmoid"};
    return names[f];
}

#define CHECK(call)                                                   \
    do {                                                              \
        if ((call) != 0) {                                            \
            fprintf(stderr, "oracle_dump: %s: %s\n", path, err);      \
            return -1;                                                \
        }                                                             \
    } while (0)

static int write_config(hid_t f, const char *path, const ModelConfig *c, char *err)
{
    CHECK(h5u_group(f, "/config", err));
    struct { const char *k; int64_t v; } ints[] = {
        {"hidden_dim", c->hidden_dim}, {"state_dim", c->state_dim}, {"num_heads", c->num_heads},
        {"num_layers", c->num_layers}, {"vocab_size", c->vocab_size}, {"output_dim", c->output_dim},
        {"input_dim", c->input_dim},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) CHECK(h5u_attr_i64(f, "/config", ints[i].k, ints[i].v, err));
    CHECK(h5u_attr_f64(f, "/config", "dropout", c->dropout, err));
    CHECK(h5u_attr_string(f, "/config", "model", model_name(c), err));
    CHECK(h5u_attr_string(f, "/config", "head", c->head == HEAD_LM ? "lm" : "classifier", err));
    if (c->family == &transformer_family) {
        const TransformerOptions *o = transformer_options(c);
        struct { const char *k; int64_t v; } t[] = {
            {"mixer_dim", o->mixer_dim}, {"max_pos_embed", o->max_pos_embed}, {"use_gate", o->use_gate},
            {"dim_conv", o->dim_conv}, {"scale_B", o->scale_B}, {"offset", o->offset},
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) CHECK(h5u_attr_i64(f, "/config", t[i].k, t[i].v, err));
        CHECK(h5u_attr_string(f, "/config", "mixer", o->mixer == MIXER_MLP ? "mlp" : "none", err));
        CHECK(h5u_attr_string(f, "/config", "norm_fn", norm_fn_name(o->norm_fn), err));
        CHECK(h5u_attr_string(f, "/config", "approx_fn", o->approx_fn == APPROX_ELU ? "elu" : "none", err));
    } else {
        const Mamba2Options *o = mamba2_options(c);
        struct { const char *k; int64_t v; } mo[] = {
            {"conv_dim", o->conv_dim}, {"glu", o->glu}, {"prenorm", o->prenorm}, {"pseudoLTI", o->pseudo_lti},
        };
        for (size_t i = 0; i < sizeof mo / sizeof mo[0]; i++) CHECK(h5u_attr_i64(f, "/config", mo[i].k, mo[i].v, err));
    }
    return 0;
}

static int dump_variant(const char *dir, const Variant *v, uint64_t seed)
{
    char path[512], err[H5U_ERR_LEN] = "";
    snprintf(path, sizeof path, "%s/%s.h5", dir, v->name);
    Model m;
    if (model_create(&m, &v->cfg, err, sizeof err) != 0) {
        fprintf(stderr, "oracle_dump: %s: %s\n", v->name, err);
        return -1;
    }
    model_init(&m, seed);

    /* inputs */
    Rng r;
    rng_init(&r, rng_derive_key(seed, RNG_DATA, 0));
    int32_t tokens[B * L], rows[B * ROWS_PER_SEQ], labels[B * L];
    float mask[B * L];
    for (int i = 0; i < B * L; i++) tokens[i] = (int32_t)rng_below(&r, (uint64_t)v->cfg.vocab_size);
    enum { F_MAX = 4 };
    const int F = v->cfg.input_dim;
    if (F > F_MAX) {
        fprintf(stderr, "oracle_dump: %s: input_dim %d > %d (enlarge F_MAX)\n", v->name, F, F_MAX);
        model_free(&m);
        return -1;
    }
    float features[B * L * F_MAX];
    for (int i = 0; i < B * L * F; i++) features[i] = (float)(4.0 * rng_uniform(&r) - 2.0);
    for (int i = 0; i < B * L; i++) mask[i] = (i / L == 1 && i % L >= L - 3) ? 0.0f : 1.0f;
    bool lm = v->cfg.head == HEAD_LM;
    int n_lab = lm ? B * ROWS_PER_SEQ : B;
    for (int b = 0; b < B; b++)
        for (int j = 0; j < ROWS_PER_SEQ; j++) rows[b * ROWS_PER_SEQ + j] = b * L + 1 + 2 * j;
    for (int i = 0; i < n_lab; i++) labels[i] = (int32_t)rng_below(&r, (uint64_t)v->cfg.output_dim);

    ModelBatch batch = {.B = B, .L = L, .tokens = tokens, .features = F > 0 ? features : NULL, .mask = (!lm && v->masked) ? mask : NULL,
                        .rows = lm ? rows : NULL, .n_rows = lm ? B * ROWS_PER_SEQ : 0};
    int T = model_spectra_T(&m, L);
    size_t n_eig = (size_t)B * v->cfg.num_layers * v->cfg.num_heads * T;
    double *eig = malloc(n_eig * sizeof *eig);
    Graph g;
    graph_init(&g, 0, 1);

    /* method "paper" eigenvalues and their bin statistics (evaluation mode) */
    const int Ly = v->cfg.num_layers, H = v->cfg.num_heads;
    double *peig = malloc(n_eig * sizeof *peig);
    double *pct = malloc((size_t)B * Ly * H * SPECTRA_NBINS * sizeof *pct);
    double *pmean = malloc((size_t)Ly * H * SPECTRA_NBINS * sizeof *pmean);
    double *pstd = malloc((size_t)Ly * H * SPECTRA_NBINS * sizeof *pstd);
    graph_begin(&g, 0, false, false);
    model_spectra_paper(&m, &g, &batch, peig);
    spectra_percent(peig, B, Ly, H, T, pct);
    spectra_percent_stats(pct, B, Ly, H, pmean, pstd);

    graph_begin(&g, 0, false, true);
    paramset_zero_grad(&m.params);
    Tensor *logits = model_forward(&m, &g, &batch, eig);
    Tensor *loss = op_cross_entropy(&g, logits, labels, NULL);
    graph_backward(&g, loss);

    hid_t f = h5u_create(path, err);
    if (f < 0) {
        fprintf(stderr, "oracle_dump: %s\n", err);
        return -1;
    }
    CHECK(h5u_attr_string(f, "/", "variant", v->name, err));
    CHECK(h5u_attr_string(f, "/", "format", "seqeig-oracle", err));
    CHECK(h5u_attr_i64(f, "/", "format_version", 1, err));
    if (write_config(f, path, &v->cfg, err)) return -1;
    for (int i = 0; i < m.params.n; i++) {
        Param *p = m.params.items[i];
        size_t dims[TENSOR_MAX_DIMS];
        for (int d = 0; d < p->t.ndim; d++) dims[d] = (size_t)p->t.shape[d];
        char name[256];
        snprintf(name, sizeof name, "/params/%s", p->name);
        CHECK(h5u_write_f32(f, name, p->t.ndim, dims, p->t.data, err));
        snprintf(name, sizeof name, "/c/grads/%s", p->name);
        CHECK(h5u_write_f32(f, name, p->t.ndim, dims, p->t.grad, err));
    }
    if (F > 0)
        CHECK(h5u_write_f32(f, "/inputs/features", 3, (size_t[]){B, L, (size_t)F}, features, err));
    else
        CHECK(h5u_write_i32(f, "/inputs/tokens", 2, (size_t[]){B, L}, tokens, err));
    CHECK(h5u_write_i32(f, "/inputs/labels", 1, (size_t[]){(size_t)n_lab}, labels, err));
    if (lm) CHECK(h5u_write_i32(f, "/inputs/rows", 1, (size_t[]){B * ROWS_PER_SEQ}, rows, err));
    if (batch.mask) CHECK(h5u_write_f32(f, "/inputs/mask", 2, (size_t[]){B, L}, mask, err));
    CHECK(h5u_write_f32(f, "/c/logits", 2, (size_t[]){(size_t)logits->shape[0], (size_t)logits->shape[1]},
                        logits->data, err));
    double lossd = loss->data[0];
    CHECK(h5u_write_f64(f, "/c/loss", 0, NULL, &lossd, err));
    CHECK(h5u_write_f64(f, "/c/eig", 4,
                        (size_t[]){B, (size_t)v->cfg.num_layers, (size_t)v->cfg.num_heads, (size_t)T}, eig, err));
    const size_t stat_dims[3] = {(size_t)Ly, (size_t)H, SPECTRA_NBINS};
    CHECK(h5u_write_f64(f, "/c/paper/eig", 4, (size_t[]){B, (size_t)Ly, (size_t)H, (size_t)T}, peig, err));
    CHECK(h5u_write_f64(f, "/c/paper/percent", 4, (size_t[]){B, (size_t)Ly, (size_t)H, SPECTRA_NBINS}, pct, err));
    CHECK(h5u_write_f64(f, "/c/paper/percent_mean", 3, stat_dims, pmean, err));
    CHECK(h5u_write_f64(f, "/c/paper/percent_std", 3, stat_dims, pstd, err));
    H5Fclose(f);
    graph_free(&g);
    free(eig);
    free(peig), free(pct), free(pmean), free(pstd);
    model_free(&m);
    printf("oracle_dump: wrote %s\n", path);
    return 0;
}

int main(int argc, char **argv)
{
    threads_pin_blas_kernel(argv);
    if (argc != 2) {
        fprintf(stderr, "usage: oracle_dump OUT_DIR\n");
        return 2;
    }
    mkdir(argv[1], 0755);
    Variant v[32];
    int n = build_variants(v), failed = 0;
    for (int i = 0; i < n; i++) failed |= dump_variant(argv[1], &v[i], 1919 + (uint64_t)i) != 0;
    return failed ? 1 : 0;
}
