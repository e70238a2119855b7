/* Transformer backbone for the three attention kinds (SPEC 3.1).
 *
 *   x = Embedding(tokens) [+ position embedding (max_pos_embed > 0)]
 *       or Linear(input_dim, d) on float features (input_dim > 0);      x = Dropout(x)
 *   per block (ONE LayerNorm module, used twice):
 *       z = Wz x                                        (use_gate)
 *       h = x + Dropout(Attention(LN(x)))
 *       mixer none: y = LN(h)                           (no second residual)
 *       mixer mlp:  y = h + Dropout(W2 Dropout(GELU(W1 LN(h))))
 *       use_gate:   y = y * SiLU(z)
 *   x = LN_final(x)
 *   LM head:         logits = x[rows] W_dec^T           (no bias)
 *   classifier head: mean over the valid positions -> Linear -> ReLU -> Linear
 *                    (mixer_dim 0: the pooled features themselves)
 *
 * Parameters in declaration (= initialisation) order, see docs/parameters.md:
 *   the encoder's (encoder.h); per layer i: layers.i.attention.* (attention.h),
 *   layers.i.Wz.weight/bias, layers.i.mixer.encoder.weight/bias,
 *   layers.i.mixer.decoder.weight/bias, layers.i.norm.weight/bias; norm.weight/bias;
 *   decoder.weight or classifier.encoder.weight/bias, classifier.decoder.weight/bias.
 *
 * Same contract as mamba2.h: the caller (model.c) has set m->cfg, checked it
 * and paramset_init'ed m->params; create declares and finalizes the
 * parameters and fills m->impl; free releases m->impl only. */
#ifndef SEQEIG_MODELS_TRANSFORMER_H
#define SEQEIG_MODELS_TRANSFORMER_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

int transformer_create(Model *m, char *err, size_t errlen);
void transformer_init(Model *m, uint64_t seed);
/* See model_forward; eig: NULL or (B, num_layers, num_heads, L-1) float64. */
Tensor *transformer_forward(Model *m, Graph *g, const ModelBatch *b, double *eig);
void transformer_free(Model *m);
/* The input layer alone (no dropout), for model_encode. */
Tensor *transformer_encode(Model *m, Graph *g, const ModelBatch *b);
/* Block i alone on x (B, L, d), exactly as transformer_forward runs it
 * (dropout as g->training says), no spectra.  For the "paper" spectra
 * (models/spectra_paper.c), which need every block's output. */
Tensor *transformer_block_forward(Model *m, Graph *g, int i, Tensor *x);

#endif
