/* Sequence models: the model-family interface, the registry of families,
 * and the entry points the trainer, the CLI and the tests call.
 *
 * A model family (the transformer backbone with its attention kinds, Mamba-2,
 * ...) is one ModelFamily value defined in its own file and listed once in
 * models/model_registry.c; nothing outside the family file knows its
 * options or switches on it (docs/extending.md walks through adding one).
 * A family is selected by the config key `model.layer`; a family with
 * several variants (the transformer's attention kinds) names the key that
 * picks one (`model.attention_fn`), and the variant's value is the model's
 * name in run files and reports ("sm-attention", "mamba2").
 *
 * A Model owns its ParamSet (names follow the reference study's PyTorch
 * state_dict, docs/parameters.md) and builds its forward pass on a Graph
 * from engine ops, so the backward comes from the tape.  The eigenvalue
 * quantity of every layer (docs/eigenvalues.md) comes from the same forward
 * pass (method "dsf") or from the family's replica of the reference
 * analysis script (method "paper"); app/spectra.h turns it into bins. */
#ifndef SEQEIG_MODEL_H
#define SEQEIG_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../src/config.h"
#include "../src/graph.h"
#include "../src/param.h"

typedef enum { HEAD_LM, HEAD_CLASSIFIER } HeadKind;

typedef struct ModelFamily ModelFamily;

/* Room for a family's own settings inside ModelConfig (checked at compile
 * time by each family). */
#define MODEL_OPTIONS_BYTES 128

typedef struct ModelConfig {
    const ModelFamily *family;
    int vocab_size;      /* token embedding rows (token inputs) */
    int input_dim;       /* 0: token inputs; > 0: float features per position through Linear(input_dim, d) */
    int output_dim;      /* LM: logits per position (usually vocab_size); classifier: classes */
    int hidden_dim;      /* d */
    int state_dim;       /* the family's state width (q/k width for attention, N for Mamba-2) */
    int num_heads;       /* H */
    int num_layers;
    float dropout;
    HeadKind head;
    /* The family's own settings, read through its accessor (e.g.
     * transformer_options in models/transformer.h); a plain value, so a
     * ModelConfig can be copied with `=`. */
    union {
        max_align_t align;
        unsigned char bytes[MODEL_OPTIONS_BYTES];
    } options;
} ModelConfig;

/* A family's options of type T in cfg (const in, const out), e.g.
 *   #define transformer_options(cfg) MODEL_OPTIONS(TransformerOptions, cfg)
 * and the compile-time check that T fits. */
#define MODEL_OPTIONS(T, cfg)                                                                      \
    _Generic((cfg), const ModelConfig *: (const T *)(const void *)(cfg)->options.bytes,          \
             default: (T *)(void *)(cfg)->options.bytes)
#define MODEL_OPTIONS_FIT(T) _Static_assert(sizeof(T) <= MODEL_OPTIONS_BYTES, #T " does not fit ModelConfig")

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

/* What a layer's eigenvalues look like (docs/eigenvalues.md "Two shapes").
 *   per step  (SPECTRA_PER_STEP): real eigenvalues per (sample, layer,
 *             system, step), input-dependent; the eig arrays of the forward
 *             and paper hooks are (samples, layers, systems, steps) float64.
 *             systems = heads, steps = L - 1 (attention) or L (Mamba-2).
 *   LTI       (SPECTRA_LTI): input-independent eigenvalues of a linear
 *             time-invariant layer, `steps` (= N) values per (layer,
 *             system = channel), no sample axis: (layers, systems, N) real,
 *             or (layers, systems, N, 2) as (re, im) pairs when complex.
 *             For LTI state-space families (LRU, S4). */
typedef enum { SPECTRA_PER_STEP, SPECTRA_LTI } SpectraKind;
typedef struct SpectraShape {
    SpectraKind kind;
    int layers;
    int systems;   /* heads (per step) or channels (LTI) per layer */
    int steps;     /* values per system: time steps of a length-L sequence, or N */
    bool complex;  /* values have an imaginary part: (re, im) pairs; LTI shapes only */
} SpectraShape;

/* How eigenvalues are computed (docs/eigenvalues.md). */
typedef enum { SPECTRA_DSF, SPECTRA_PAPER } SpectraMethod;

/* ------------------------------------------------------ the family interface */

struct ModelFamily {
    const char *layer;        /* the value of model.layer that selects it: "transformer", "mamba" */
    /* The key choosing a variant ("model.attention_fn"), or NULL; it is
     * registered as an enum of `names` with names[0] as default. */
    const char *variant_key;
    const char *const *names; /* model names: the variant key's values (or the one name), NULL-ended */
    /* The bool key that, set to false, switches the input layer to float
     * features (`model.embedding: false`); registered with default true.
     * NULL: the family reads tokens only. */
    const char *float_input_key;

    /* Register the family's other model.* keys with their defaults: the one
     * table of defaults the CLI, tests, bench and oracle all resolve from. */
    void (*register_keys)(ConfigSchema *s);
    /* The family's keys of the resolved config into mc (the shared fields
     * are filled already): 0, or -1 with one message naming key and file. */
    int (*from_config)(const Config *c, ModelConfig *mc, char *err, size_t errlen);
    /* The model's name for this config (one of `names`). */
    const char *(*name)(const ModelConfig *mc);
    /* The family's consistency checks (after the shared ones): 0 or -1 + message. */
    int (*check)(const ModelConfig *mc, char *err, size_t errlen);

    /* Declare (names as the reference state_dict) and finalize m->params,
     * which model_create has initialised; fill m->impl.  0 or -1 + message
     * (model_create frees m->params then). */
    int (*create)(Model *m, char *err, size_t errlen);
    void (*free)(Model *m);                  /* m->impl only */
    void (*init)(Model *m, uint64_t seed);   /* every parameter from the init stream of seed */
    /* Forward pass; see model_forward (eig in the family's spectra shape). */
    Tensor *(*forward)(Model *m, Graph *g, const ModelBatch *b, double *eig);
    /* Eigenvalues by the reference analysis script; see model_spectra_paper. */
    void (*spectra_paper)(Model *m, Graph *g, const ModelBatch *b, double *eig);
    /* The spectra shape of sequences of length L. */
    SpectraShape (*spectra_shape)(const ModelConfig *mc, int L);
    /* NULL, or 0 if sequences of length L (>= 1) fit the model, else -1 + a
     * message naming the limiting key. */
    int (*check_length)(const ModelConfig *mc, int L, char *err, size_t errlen);
};

/* ------------------------------------------------------ registry (model_registry.c) */

int model_family_count(void);
const ModelFamily *model_family_at(int i);
/* The family selected by a model.layer value, or NULL. */
const ModelFamily *model_family_by_layer(const char *layer);
/* The family with a model of this name ("norm-attention"), or NULL. */
const ModelFamily *model_family_by_name(const char *name);

/* ------------------------------------------------------ configuration (model_config.c) */

/* Register the `model:` keys: the shared ones and every family's. */
void model_keys_register(ConfigSchema *s);

/* Fill mc from the resolved config (family by model.layer) and check it.
 * Returns 0, or -1 with one message naming the key and where it was set
 * (file:line, or the config's path) in err. */
int model_keys_to_config(const Config *c, ModelConfig *mc, char *err, size_t errlen);

/* The ModelConfig of model `name` that a run config with no other model
 * key resolves to: the registered defaults (then override fields, or use
 * model_config_from_keys).  Aborts on an unknown name (programming error). */
void model_config_defaults(ModelConfig *mc, const char *name);

/* The ModelConfig a run config's `model:` section of these "key=value"
 * items (keys without the "model." prefix, e.g. "layer=mamba",
 * "num_layers=1"; NULL-terminated) resolves to.  0, or -1 + message. */
int model_config_from_keys(ModelConfig *mc, char *err, size_t errlen, ...) __attribute__((sentinel));

/* The shared checks, then the family's: 0 if consistent; otherwise -1 and
 * a message naming the offending key. */
int model_config_check(const ModelConfig *c, char *err, size_t errlen);

/* "sm-attention", ..., "mamba2". */
const char *model_name(const ModelConfig *c);

/* ------------------------------------------------------ models (model.c) */

/* Check cfg, declare the parameters and allocate them. */
int model_create(Model *m, const ModelConfig *cfg, char *err, size_t errlen);
void model_free(Model *m);
/* Initialise every parameter (docs/parameters.md) from the init stream of `seed`. */
void model_init(Model *m, uint64_t seed);

/* Forward pass.  Returns logits: (n_rows, output_dim) for HEAD_LM,
 * (B, output_dim) for HEAD_CLASSIFIER.  If `eig` is non-NULL it receives
 * the per-layer eigenvalue quantity (method "dsf") as float64 in the
 * model's spectra shape; for SPECTRA_PER_STEP (B, layers, systems, steps). */
Tensor *model_forward(Model *m, Graph *g, const ModelBatch *batch, double *eig);

/* The spectra shape of sequences of length L. */
SpectraShape model_spectra_shape(const Model *m, int L);
/* Its steps: time steps per sequence (L - 1 for attention, L for Mamba-2). */
int model_spectra_T(const Model *m, int L);

/* Eigenvalues by method "paper" (docs/eigenvalues.md): the reference
 * study's analysis script reproduced with its quirks and its float32 /
 * float64 steps.  The input layer (no dropout) is run through the blocks
 * one at a time and layer i's projection is applied to the OUTPUT of block
 * i, without LayerNorm or conv.  Blocks run with g->training as set (the
 * caller uses training = true for init spectra, as the script does); no
 * tape is recorded whatever g->grad_enabled says (it is restored), and
 * parameters are not modified.  eig in the model's spectra shape, as
 * model_forward's.  batch->rows and batch->mask are ignored. */
void model_spectra_paper(Model *m, Graph *g, const ModelBatch *batch, double *eig);

/* Eigenvalues of `batch` by `method` into eig.  Starts a new step on g
 * (graph_begin, no tape, evaluation mode, except that method "paper" at
 * `init` runs with dropout active, as the reference script analyses its
 * untrained model).  Parameters are not changed.  app/spectra.h wraps this
 * with the NaN check, valid steps and bins. */
void model_eigenvalues(Model *m, Graph *g, const ModelBatch *batch, SpectraMethod method, bool init,
                       double *eig);

/* 0 if sequences of length L (>= 1) can be fed to the model; otherwise -1
 * and a message naming the limiting key (e.g. max_pos_embed: learned
 * positions exist only for t < max_pos_embed).  model_forward aborts on
 * such a batch. */
int model_check_length(const Model *m, int L, char *err, size_t errlen);

#endif
