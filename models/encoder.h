/* The model's input layer (docs/parameters.md, Transformer forward pass and
 * Mamba-2 forward pass), shared by both families:
 *
 *   token inputs (input_dim == 0):  x = Embedding(tokens) [+ Embedding(positions)]
 *   float inputs (input_dim  > 0):  x = features W^T + b,  W (d, input_dim)
 *
 * Parameters, in declaration (= initialisation) order, named as the
 * reference state_dict:
 *   encoder.word_embeddings.weight      (V, d)          N(0, 1)        token inputs
 *   encoder.position_embeddings.weight  (P, d)          N(0, 1)        token inputs, P > 0
 *   encoder.weight                      (d, input_dim)  linear(input_dim)  float inputs
 *   encoder.bias                        (d)             linear(input_dim)  float inputs
 * The reference's Linear encoder has no positions. */
#ifndef SEQEIG_MODELS_ENCODER_H
#define SEQEIG_MODELS_ENCODER_H

#include <stddef.h>

#include "../src/graph.h"
#include "../src/param.h"
#include "../src/rng.h"
#include "model.h"

typedef struct Encoder {
    Param *word_emb, *pos_emb;   /* token inputs; pos_emb only with positions */
    Param *lin_w, *lin_b;        /* float inputs */
} Encoder;

/* Declare the encoder's parameters into ps (before any other parameter of
 * the model).  positions > 0 adds a learned position table of that many
 * rows (token inputs only).  Returns 0, or -1 with a message in err. */
int encoder_declare(Encoder *e, ParamSet *ps, const ModelConfig *c, int positions, char *err, size_t errlen);
/* Initialise in declaration order from r (the model's init stream). */
void encoder_init(const Encoder *e, Rng *r);
/* (B, L, d) from batch->tokens or batch->features; no dropout. */
Tensor *encoder_forward(const Encoder *e, Graph *g, const ModelBatch *batch);

#endif
