/* The transformer family: the backbone of the three attention kinds
 * (docs/parameters.md), registered as `model.layer: transformer` with the
 * variant key `model.attention_fn`.
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
 * Its settings are TransformerOptions (transformer_options.h); its hooks are
 * those of ModelFamily (model.h), reached through transformer_family. */
#ifndef SEQEIG_MODELS_TRANSFORMER_H
#define SEQEIG_MODELS_TRANSFORMER_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "transformer_options.h"

extern const ModelFamily transformer_family;

/* The input layer alone (no dropout), as the paper spectra run it. */
Tensor *transformer_encode(Model *m, Graph *g, const ModelBatch *b);
/* Block i alone on x (B, L, d), exactly as the forward pass runs it
 * (dropout as g->training says), no spectra. */
Tensor *transformer_block_forward(Model *m, Graph *g, int i, Tensor *x);

#endif
