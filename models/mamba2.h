/* The Mamba-2 family (`model.layer: mamba`, `model.version: mamba2`): the simplified Mamba-2 of the reference study (one
 * group, expand 1, no z gate, no RMSNorm), its pseudo-LTI variant, and the
 * model built from it: input layer (token embedding, or Linear(input_dim, d)
 * on float inputs; models/encoder.h) -> blocks -> Linear head.
 *
 * SSD layer, u (B, L, d), P = d/H, C = d + 2N:
 *     [x | B | C | dt] = in_proj u                    (d + 2N + H; pseudo-LTI d + 2N + 1)
 *     Delta = softplus(dt + dt_bias)                   (B, L, H); pseudo-LTI: the one dt
 *                                                      channel broadcast to the H heads
 *     [x | B | C] = SiLU(causal depthwise conv_K(x|B|C))   (conv_dim 0: neither)
 *     Mamba-2:     S_t^h = exp(Delta_t^h a_h) S_{t-1}^h + Delta_t^h x_t^h B_t^T,
 *                  a_h = -exp(A_log_h)
 *     pseudo-LTI:  S_t^h = exp(-softplus(A_h)) S_{t-1}^h + x_t^h Bt_t^T,
 *                  Bt_t[k] = Delta_t^{k / (N/H)} B_t[k]
 *     y_t^h = S_t^h C_t + D_h x_t^h,   out = out_proj(concat_h y)
 * Block:  prenorm  x + Drop(GLU(Drop(GELU(SSD(LN(x))))))
 *         postnorm LN(x + Drop(GLU(Drop(GELU(SSD(x))))))
 * (glu false: the GLU is skipped, both dropouts stay).  No final norm.
 * Head: LM -> decoder Linear (with bias) on the requested rows; classifier
 * -> mean over the valid time steps, then the decoder.
 *
 * Parameters, in declaration (= initialisation = reference state_dict)
 * order; i = 0 .. num_layers-1, C = d + 2N, K = conv_dim:
 *   encoder.word_embeddings.weight  (V, d)         N(0, 1)   (float inputs: encoder.weight
 *                                                  (d, input_dim), encoder.bias (d), encoder.h)
 *   blocks.i.mamba.in_proj.weight   (d+2N+H, d)    U(+-1/sqrt(d))  [pseudo-LTI: d+2N+1 rows]
 *   blocks.i.mamba.dt_bias          (H)            softplus^-1(dt), dt = max(1e-4,
 *                                                  exp(U(log 1e-3, log 1e-1)))
 *   Mamba-2:    blocks.i.mamba.A_log (H)           log(A), A ~ U(1, 16) (A rounded to float)
 *               blocks.i.mamba.D     (H)           1
 *   pseudo-LTI: blocks.i.mamba.D     (H)           1
 *               blocks.i.mamba.A     (H)           U(-8, -2)
 *   blocks.i.mamba.conv1d.weight    (C, 1, K)      U(+-1/sqrt(K))   (only when K > 0)
 *   blocks.i.mamba.conv1d.bias      (C)            U(+-1/sqrt(K))   (only when K > 0)
 *   blocks.i.mamba.out_proj.weight  (d, d)         U(+-1/sqrt(d))
 *   blocks.i.glu.linear.weight      (2d, d)        U(+-1/sqrt(d))   (only with glu)
 *   blocks.i.glu.linear.bias        (2d)           U(+-1/sqrt(d))   (only with glu)
 *   blocks.i.norm.weight            (d)            1
 *   blocks.i.norm.bias              (d)            0
 *   decoder.weight                  (output_dim, d) U(+-1/sqrt(d))
 *   decoder.bias                    (output_dim)   U(+-1/sqrt(d))
 * (The SSD order follows the reference modules: SSD registers A_log before
 * D, SSD_LTI registers D before A; MambaBlock registers mamba, glu, norm.)
 *
 * All random draws come from one Rng stream, rng_derive_key(seed,
 * RNG_INIT, 0), consumed in the order above (src/init.h conventions: one
 * rng_uniform per uniform element, two per normal element; Linear weight
 * before its bias; constants draw nothing).
 *
 * Spectra (docs/eigenvalues.md, method dsf): eig (B, num_layers, H, L) float64,
 * eig = exp(-(double)Delta_t^h * exp((double)A_log_h)) from the float Delta
 * of the forward pass; pseudo-LTI exp(-softplus((double)A_h)), the same
 * for every (b, t). */
#ifndef SEQEIG_MODELS_MAMBA2_H
#define SEQEIG_MODELS_MAMBA2_H

#include <stdbool.h>

#include "model.h"

/* The family's own settings, in ModelConfig.options (mamba2_options(cfg)). */
typedef struct Mamba2Options {
    int conv_dim;      /* kernel of the conv on x|B|C (0: none) */
    bool glu;
    bool prenorm;
    bool pseudo_lti;
} Mamba2Options;

MODEL_OPTIONS_FIT(Mamba2Options);

#define mamba2_options(cfg) MODEL_OPTIONS(Mamba2Options, cfg)

extern const ModelFamily mamba2_family;

/* The input layer alone (no dropout), as the paper spectra run it. */
Tensor *mamba2_encode(Model *m, Graph *g, const ModelBatch *b);
/* Block i alone on x (B, L, d): the body of the forward pass's layer loop
 * (dropout as g->training says), no spectra. */
Tensor *mamba2_block_forward(Model *m, Graph *g, int i, Tensor *x);

#endif
