/* The attention layers of the transformer backbone (docs/parameters.md,
 * docs/eigenvalues.md): softmax,
 * linear and norm attention with the optional causal depthwise conv.
 *
 * Input u = LN(x) (B, L, d); d = hidden_dim, d_qk = state_dim, H heads,
 * dh = d_qk/H (q, k), dv = d/H (v).  Channel block [h*dh, (h+1)*dh) of q
 * and k and [h*dv, (h+1)*dv) of v belong to head h.
 *
 *   sm-attention:   [q|k|v] = Wqkv u  -> conv+SiLU? -> per head
 *                   softmax_causal(q k^T / sqrt(dh)) v
 *   lin-attention:  [q|k|v] = Wqkv u  -> conv+SiLU? -> phi = elu+1 on q, k ->
 *                   phi(q_t)^T S_t / (phi(q_t)^T z_t)
 *   norm-attention: [v|q|k|n] = Wvqkn u -> conv+SiLU on v|q|k only -> g on q, k
 *                   (approx_fn) -> k *= 1/sqrt(dh) (scale_B) ->
 *                   exp(-f(n_t + o_h)) * g(q_t)^T sum_{s<=t} k_s v_s^T
 *   then out = out_proj(concat heads).
 *
 * Parameters (declared in this order, prefix e.g. "layers.0.attention."):
 *   Wqkv.weight (2 d_qk + d, d), Wqkv.bias (2 d_qk + d)       sm / lin
 *   Wvqkn.weight (d + 2 d_qk + H, d), Wvqkn.bias (...)        norm
 *   conv1d.weight (d + 2 d_qk, 1, K), conv1d.bias (d + 2 d_qk)  dim_conv K > 0
 *   inner_attn.offset (H)                                      norm with offset
 *   out_proj.weight (d, d), out_proj.bias (d)
 *
 * Spectra (docs/eigenvalues.md, method "dsf"), float64, from the very tensors of this forward
 * (after LN, conv and feature maps, with the 1/sqrt(dh) scale):
 *   sm, lin: eig_t = exp(log eta_{t-1} - log eta_t) from the kernels' log eta;
 *   norm:    eig_t = exp(f(a_{t-1}) - f(a_t)), f evaluated in float64 on the
 *            float32 a = n + o_h of the forward.  With norm_fn exp the value
 *            saturates to exactly 0 or +inf, which is kept. */
#ifndef SEQEIG_MODELS_ATTENTION_H
#define SEQEIG_MODELS_ATTENTION_H

#include <stddef.h>

#include "../src/graph.h"
#include "../src/param.h"
#include "../src/rng.h"
#include "model.h"
#include "transformer_options.h"

typedef struct AttentionLayer {
    Param *proj_w, *proj_b;   /* Wqkv (sm, lin) or Wvqkn (norm) */
    Param *conv_w, *conv_b;   /* NULL when dim_conv == 0 */
    Param *offset;            /* norm attention with offset, else NULL */
    Param *out_w, *out_b;
} AttentionLayer;

/* Declare the layer's parameters into ps under `prefix` (which ends with
 * '.').  Returns 0, or -1 with a message in err. */
int attention_declare(AttentionLayer *a, ParamSet *ps, const ModelConfig *c, const char *prefix,
                      char *err, size_t errlen);

/* Initialise in declaration order from r: Linear weight then bias
 * U(+-1/sqrt(fan_in)); conv weight then bias U(+-1/sqrt(K)); offsets
 * linspace(4, 9, H) (no draw). */
void attention_init(const AttentionLayer *a, const ModelConfig *c, Rng *r);

/* u (B, L, d) -> (B, L, d).  eig: NULL, or where this layer's spectra go:
 * eig[b * eig_bstride + h * (L-1) + (t-1)] for t = 1 .. L-1 (the
 * (B, layers, H, L-1) array of model.h at this layer). */
Tensor *attention_forward(const AttentionLayer *a, const ModelConfig *c, Graph *g, Tensor *u,
                          double *eig, size_t eig_bstride);

/* This layer's eigenvalues by method "paper" (docs/eigenvalues.md,
 * models/attention_paper.c) from the OUTPUT x (B, L, d) of its block, into
 * eig[b * eig_bstride + h * (L-1) + t] as attention_forward's.  No tape. */
void attention_paper_eig(const AttentionLayer *a, const ModelConfig *c, Graph *g, Tensor *x, double *eig,
                         size_t eig_bstride);

/* The float64 normalisation function f of norm attention, as the spectra
 * use it (softplus evaluated without overflow). */
double attention_norm_fn(NormFn fn, double x);

#endif
