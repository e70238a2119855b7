/* The transformer family's own settings (models/transformer.h), held in
 * ModelConfig.options and read with transformer_options(cfg). */
#ifndef SEQEIG_MODELS_TRANSFORMER_OPTIONS_H
#define SEQEIG_MODELS_TRANSFORMER_OPTIONS_H

#include <stdbool.h>

#include "model.h"

typedef enum { ATTENTION_SOFTMAX, ATTENTION_LINEAR, ATTENTION_NORM } AttentionKind;
typedef enum { NORM_FN_EXP, NORM_FN_ELU, NORM_FN_SOFTPLUS, NORM_FN_SIGMOID } NormFn;
typedef enum { APPROX_NONE, APPROX_ELU } ApproxFn;
typedef enum { MIXER_NONE, MIXER_MLP } MixerKind;

typedef struct TransformerOptions {
    AttentionKind attention; /* model.attention_fn */
    float att_dropout;       /* softmax: on the probabilities; linear / norm: on the attention output */
    int mixer_dim;           /* MLP width and classifier-head width (0: no classifier MLP) */
    int max_pos_embed;       /* > 0: learned absolute positions */
    MixerKind mixer;
    bool use_gate;
    int dim_conv;            /* causal depthwise conv on q,k,v (0: none) */
    NormFn norm_fn;          /* norm attention */
    ApproxFn approx_fn;
    bool scale_B;
    bool offset;
} TransformerOptions;

MODEL_OPTIONS_FIT(TransformerOptions);

/* The options of a transformer-family config (const in, const out). */
#define transformer_options(cfg) MODEL_OPTIONS(TransformerOptions, cfg)

#endif
