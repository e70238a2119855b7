/* Softmax, linear and norm attention layers (see attention.h). */
#include "attention.h"

#include <math.h>
#include <stdio.h>

#include "../src/init.h"
#include "../src/ops.h"
#include "../src/ops/attn_linear.h"
#include "../src/ops/attn_softmax.h"

static Param *declare(ParamSet *ps, const char *prefix, const char *name, int ndim, int s0, int s1,
                      int s2, char *err, size_t errlen)
{
    char full[PARAM_NAME_MAX];
    int shape[3] = {s0, s1, s2};
    Param *p = NULL;
    if (snprintf(full, sizeof full, "%s%s", prefix, name) < (int)sizeof full)
        p = paramset_add(ps, full, ndim, shape);
    if (!p && err && errlen) snprintf(err, errlen, "cannot declare parameter %s%s", prefix, name);
    return p;
}

int attention_declare(AttentionLayer *a, ParamSet *ps, const ModelConfig *c, const char *prefix,
                      char *err, size_t errlen)
{
    const TransformerOptions *o = transformer_options(c);
    const int d = c->hidden_dim, dqk = c->state_dim, H = c->num_heads;
    const bool norm = o->attention == ATTENTION_NORM;
    const int nproj = norm ? d + 2 * dqk + H : 2 * dqk + d;
    const int nconv = d + 2 * dqk; /* q, k, v channels; never n */
    *a = (AttentionLayer){0};
#define DECL(field, name, nd, s0, s1, s2) \
    if (!(a->field = declare(ps, prefix, name, nd, s0, s1, s2, err, errlen))) return -1
    DECL(proj_w, norm ? "Wvqkn.weight" : "Wqkv.weight", 2, nproj, d, 0);
    DECL(proj_b, norm ? "Wvqkn.bias" : "Wqkv.bias", 1, nproj, 0, 0);
    if (o->dim_conv > 0) {
        DECL(conv_w, "conv1d.weight", 3, nconv, 1, o->dim_conv);
        DECL(conv_b, "conv1d.bias", 1, nconv, 0, 0);
    }
    if (norm && o->offset) DECL(offset, "inner_attn.offset", 1, H, 0, 0);
    DECL(out_w, "out_proj.weight", 2, d, d, 0);
    DECL(out_b, "out_proj.bias", 1, d, 0, 0);
#undef DECL
    return 0;
}

void attention_init(const AttentionLayer *a, const ModelConfig *c, Rng *r)
{
    (void)c;
    init_linear_default(a->proj_w, a->proj_b, r);
    /* depthwise Conv1d: weight (C, 1, K) has fan_in 1 * K, bound 1/sqrt(K) */
    if (a->conv_w) init_linear_default(a->conv_w, a->conv_b, r);
    /* offset_init "exp": torch.linspace(4, 9, H) (a single head gets 4) */
    if (a->offset) init_param_linspace(a->offset, 4.0, 9.0);
    init_linear_default(a->out_w, a->out_b, r);
}

double attention_norm_fn(NormFn fn, double x)
{
    switch (fn) {
    case NORM_FN_EXP: return exp(x);
    case NORM_FN_ELU: return x > 0.0 ? x : expm1(x);
    case NORM_FN_SOFTPLUS: return x > 0.0 ? x + log1p(exp(-x)) : log1p(exp(x));
    case NORM_FN_SIGMOID: return x >= 0.0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
    }
    return NAN;
}

/* exp(x - y) for log-domain x, y; equal values (including equal infinities,
 * which x - y would turn into NaN) give exactly 1. */
static double eig_from_logs(double x, double y) { return x == y ? 1.0 : exp(x - y); }

/* Norm attention: exp(f(a0) - f(a1)).  f is increasing, so when f saturates
 * to +inf at both steps (norm_fn exp, a > ~709) the difference is +-inf by
 * the order of a0, a1; exp then gives the true saturated 0 or +inf. */
static double norm_eig(NormFn fn, float a0, float a1)
{
    if (a0 == a1) return 1.0;
    double f0 = attention_norm_fn(fn, a0), f1 = attention_norm_fn(fn, a1);
    if (f0 == f1) return isinf(f0) ? (a0 > a1 ? INFINITY : 0.0) : 1.0;
    return exp(f0 - f1);
}

static Tensor *apply_norm_fn(Graph *g, NormFn fn, Tensor *x)
{
    switch (fn) {
    case NORM_FN_EXP: return op_exp(g, x);
    case NORM_FN_ELU: return op_elu(g, x);
    case NORM_FN_SOFTPLUS: return op_softplus(g, x);
    case NORM_FN_SIGMOID: return op_sigmoid(g, x);
    }
    op_shape_error("norm_attention", "unknown norm_fn", x, NULL);
}

/* eig[b*bstride + h*T + t-1] = exp(log_eta[(b*H+h)*L + t-1] - log_eta[... + t]). */
static void spectra_from_log_eta(const double *log_eta, int B, int H, int L, double *eig,
                                 size_t bstride)
{
    const int T = L - 1;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const double *le = log_eta + ((size_t)b * H + h) * L;
            double *e = eig + (size_t)b * bstride + (size_t)h * T;
            for (int t = 1; t < L; t++) e[t - 1] = eig_from_logs(le[t - 1], le[t]);
        }
}

Tensor *attention_forward(const AttentionLayer *a, const ModelConfig *c, Graph *g, Tensor *u,
                          double *eig, size_t eig_bstride)
{
    const TransformerOptions *o = transformer_options(c);
    const int d = c->hidden_dim, dqk = c->state_dim, H = c->num_heads, dh = dqk / H;
    if (u->ndim != 3 || u->shape[2] != d) op_shape_error("attention", "input must be (B, L, d)", u, NULL);
    const int B = u->shape[0], L = u->shape[1];
    const bool norm = o->attention == ATTENTION_NORM;
    double *log_eta = NULL;
    if (eig && !norm && L > 1) log_eta = graph_scratch(g, (size_t)B * H * L * sizeof(double));

    Tensor *proj = op_linear(g, u, &a->proj_w->t, &a->proj_b->t);
    Tensor *qkv = proj, *n = NULL; /* qkv: the conv channels ([q|k|v], norm: [v|q|k]) */
    if (norm) {
        qkv = a->conv_w ? NULL : op_slice_cols(g, proj, 0, d + 2 * dqk); /* the conv reads proj */
        n = op_slice_cols(g, proj, d + 2 * dqk, H); /* never through the conv */
    }
    Tensor *vqk[3] = {NULL, NULL, NULL}; /* norm attention: v, q, k written apart by the conv */
    if (a->conv_w && norm)
        op_conv1d_silu_split(g, proj, 0, 3, (int[]){d, dqk, dqk}, &a->conv_w->t, &a->conv_b->t, vqk);
    else if (a->conv_w)
        qkv = op_conv1d_silu(g, proj, 0, d + 2 * dqk, &a->conv_w->t, &a->conv_b->t);

    Tensor *y;
    if (o->attention == ATTENTION_SOFTMAX) {
        /* q, k, v read in place from the columns of qkv */
        y = op_causal_softmax_attn_qkv(g, qkv, dqk, d, H, (float)(1.0 / sqrt((double)dh)), o->att_dropout,
                                       log_eta);
    } else if (o->attention == ATTENTION_LINEAR) {
        Tensor *q = op_elu1_cols(g, qkv, 0, dqk, 1.0f), *k = op_elu1_cols(g, qkv, dqk, dqk, 1.0f);
        Tensor *v = op_slice_cols(g, qkv, 2 * dqk, d);
        y = op_causal_linear_attn(g, q, k, v, H, true, log_eta);
    } else {
        /* v, q, k: the conv's outputs, or columns of qkv */
        Tensor *v = vqk[0] ? vqk[0] : op_slice_cols(g, qkv, 0, d), *q, *k;
        Tensor *qsrc = vqk[1] ? vqk[1] : qkv, *ksrc = vqk[2] ? vqk[2] : qkv;
        const int q0 = vqk[1] ? 0 : d, k0 = vqk[2] ? 0 : d + dqk;
        const float ks = o->scale_B ? (float)(1.0 / sqrt((double)dh)) : 1.0f;
        if (o->approx_fn == APPROX_ELU) { /* feature maps read their columns in place */
            q = op_elu1_cols(g, qsrc, q0, dqk, 1.0f);
            k = op_elu1_cols(g, ksrc, k0, dqk, ks);
        } else {
            q = vqk[1] ? vqk[1] : op_slice_cols(g, qkv, d, dqk);
            k = vqk[2] ? vqk[2] : op_slice_cols(g, qkv, d + dqk, dqk);
            if (o->scale_B) k = op_scale(g, k, ks);
        }
        Tensor *num = op_causal_linear_attn(g, q, k, v, H, false, NULL);
        Tensor *act = a->offset ? op_add_cols(g, n, &a->offset->t) : n; /* a = n + o_h, (B, L, H) */
        Tensor *m = op_exp(g, op_scale(g, apply_norm_fn(g, o->norm_fn, act), -1.0f));
        y = op_mul_heads(g, num, m);
        if (eig && L > 1)
            for (int b = 0; b < B; b++)
                for (int h = 0; h < H; h++) {
                    double *e = eig + (size_t)b * eig_bstride + (size_t)h * (L - 1);
                    const float *ab = act->data + (size_t)b * L * H + h;
                    for (int t = 1; t < L; t++)
                        e[t - 1] = norm_eig(o->norm_fn, ab[(size_t)(t - 1) * H], ab[(size_t)t * H]);
                }
    }
    if (log_eta) spectra_from_log_eta(log_eta, B, H, L, eig, eig_bstride);
    /* Linear and norm attention: Dropout(att_dropout) on the attention
     * output before out_proj (element-wise, so on the merged heads as well
     * as per head).  No op at all for att_dropout = 0, so such models keep
     * the dropout-op indices (and masks) they had before att_dropout existed. */
    if (o->attention != ATTENTION_SOFTMAX && o->att_dropout > 0.0f) y = op_dropout(g, y, o->att_dropout);
    return op_linear(g, y, &a->out_w->t, &a->out_b->t);
}
