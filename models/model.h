/* Sequence models: configuration, parameters, forward pass, spectra.
 *
 * A Model owns its ParamSet (names follow the reference study's PyTorch
 * state_dict, see docs/parameters.md) and builds its forward pass on a
 * Graph from engine ops, so backward comes from the tape.  Two families:
 *   - transformer backbone with softmax / linear / norm attention
 *     (models/transformer.c, models/attention.c), SPEC 3.1-3.4;
 *   - Mamba-2 (models/mamba2.c), SPEC 3.5, incl. the pseudo-LTI variant.
 * The eigenvalue quantity of every layer (SPEC 6, method "dsf") can be
 * requested from the same forward pass; it costs nothing when not asked. */
#ifndef SEQEIG_MODEL_H
#define SEQEIG_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../src/graph.h"
#include "../src/param.h"

typedef enum { MODEL_SM_ATTENTION, MODEL_LIN_ATTENTION, MODEL_NORM_ATTENTION, MODEL_MAMBA2 } ModelKind;
typedef enum { NORM_FN_EXP, NORM_FN_ELU, NORM_FN_SOFTPLUS, NORM_FN_SIGMOID } NormFn;
typedef enum { APPROX_NONE, APPROX_ELU } ApproxFn;
typedef enum { MIXER_NONE, MIXER_MLP } MixerKind;
typedef enum { HEAD_LM, HEAD_CLASSIFIER } HeadKind;

typedef struct ModelConfig {
    ModelKind kind;
    int vocab_size;      /* token embedding rows (token inputs) */
    int input_dim;       /* 0: token inputs; > 0: float features per position through Linear(input_dim, d) */
    int output_dim;      /* LM: logits per position (usually vocab_size); classifier: classes */
    int hidden_dim;      /* d */
    int state_dim;       /* d_qk for attention, N for Mamba-2 */
    int num_heads;       /* H */
    int num_layers;
    float dropout;
    float att_dropout;   /* attention dropout (transformer only): softmax on the probabilities,
                          * linear / norm on the attention output; 0 = none */
    HeadKind head;
    int mixer_dim;       /* transformer MLP width and classifier-head width (0: no classifier MLP) */

    /* transformer backbone and attention */
    int max_pos_embed;   /* > 0: learned absolute positions */
    MixerKind mixer;
    bool use_gate;
    int dim_conv;        /* causal depthwise conv on q,k,v (0: none) */
    NormFn norm_fn;      /* norm attention */
    ApproxFn approx_fn;
    bool scale_B;
    bool offset;

    /* Mamba-2 */
    int conv_dim;        /* kernel of the conv on x|B|C */
    bool glu;
    bool prenorm;
    bool pseudo_lti;
} ModelConfig;

/* Defaults of the reference study's configs for `kind` (then override). */
void model_config_defaults(ModelConfig *c, ModelKind kind);
/* 0 if consistent; otherwise -1 and a message naming the offending key. */
int model_config_check(const ModelConfig *c, char *err, size_t errlen);
const char *model_kind_name(ModelKind k);   /* "sm-attention", ..., "mamba2" */

typedef struct Model Model;

/* One batch as the model sees it. */
typedef struct ModelBatch {
    int B, L;
    const int32_t *tokens;   /* (B, L), for token inputs (cfg.input_dim == 0) */
    const float *features;   /* (B, L, cfg.input_dim), for float inputs (cfg.input_dim > 0) */
    const float *mask;       /* (B, L) 1 = valid, for padded classification; NULL = all valid */
    const int32_t *rows;     /* LM head: flat indices b*L + t of the positions that need logits */
    int n_rows;              /* (rows == NULL: every position) */
} ModelBatch;

struct Model {
    ModelConfig cfg;
    ParamSet params;
    void *impl;              /* family-specific layer bookkeeping */
};

/* Declare parameters (names as the reference state_dict) and allocate them. */
int model_create(Model *m, const ModelConfig *cfg, char *err, size_t errlen);
void model_free(Model *m);
/* Initialise every parameter as SPEC 3 from the init stream of `seed`. */
void model_init(Model *m, uint64_t seed);

/* Forward pass.  Returns logits: (n_rows, output_dim) for HEAD_LM,
 * (B, output_dim) for HEAD_CLASSIFIER.  If `eig` is non-NULL it receives
 * the per-layer eigenvalue quantity of SPEC 6 (method "dsf") as float64,
 * shape (B, num_layers, num_heads, model_spectra_T(m, L)). */
Tensor *model_forward(Model *m, Graph *g, const ModelBatch *batch, double *eig);

/* How eigenvalues are computed (SPEC 6, docs/eigenvalues.md). */
typedef enum { SPECTRA_DSF, SPECTRA_PAPER } SpectraMethod;
/* "dsf" / "paper" -> SpectraMethod; -1 for an unknown name. */
int spectra_method_parse(const char *name);

/* Eigenvalues of `batch` by `method` into eig (B, num_layers, num_heads,
 * model_spectra_T) float64.  Starts a new step on g (graph_begin, no tape,
 * evaluation mode, except that method "paper" at `init` runs with dropout
 * active, as the reference script analyses its untrained model).
 * Parameters are not changed. */
void model_spectra(Model *m, Graph *g, const ModelBatch *batch, SpectraMethod method, bool init,
                   double *eig);

/* SPEC 6 eigenvalues by method "paper" (models/spectra_paper.c,
 * docs/eigenvalues.md): the reference study's analysis script
 * (analysis/eval_eig.py) reproduced with its quirks and its float32/float64
 * steps.  The embedding (word [+ position], no dropout) is run through the
 * blocks one at a time; layer i's projection is applied to the OUTPUT of
 * block i, without LayerNorm or conv.  Blocks run with g->training as set
 * (the caller uses training = true for init spectra, as the script does);
 * no tape is recorded whatever g->grad_enabled says (it is restored), and
 * parameters are not modified.  eig: (B, num_layers, num_heads,
 * model_spectra_T(m, L)) float64, same order as model_forward's.
 * batch->rows and batch->mask are ignored. */
void model_spectra_paper(Model *m, Graph *g, const ModelBatch *batch, double *eig);

/* The input layer alone (models/encoder.h): (B, L, d) on g, no dropout. */
Tensor *model_encode(Model *m, Graph *g, const ModelBatch *batch);

/* Time steps per sequence in the spectra: L - 1 for attention, L for Mamba-2. */
int model_spectra_T(const Model *m, int L);

/* For padded inputs (mask (S, L), valid positions a prefix): the number of
 * spectra steps of each sample's valid part, model_spectra_T(valid length). */
void model_spectra_valid_steps(const Model *m, const float *mask, int S, int L, int *n_valid);

/* 0 if sequences of length L (>= 1) can be fed to the model; otherwise -1
 * and a message naming the limiting key (max_pos_embed: learned positions
 * exist only for t < max_pos_embed).  model_forward aborts on such a batch. */
int model_check_length(const Model *m, int L, char *err, size_t errlen);

#endif
