/* Per-model training-step benchmark.
 *
 * One step = graph_begin, zero gradients, forward (logits only at the
 * labelled rows), cross entropy, backward, global-norm clipping at 1.0,
 * AdamW (lr 1e-3, weight decay 0.1).  Models as the reference study's MQAR
 * configs (docs/parameters.md; docs/training.md, Reference settings per
 * task) with dropout 0:
 *   sm-attention    learned positions, mixer none
 *   lin-attention   learned positions, mixer none
 *   norm-attention  softplus, elu+1, scale_B, offset, conv 4, no positions
 *   mamba2          conv 4, GLU, prenorm, N = state_dim
 * Shapes (1 head, 2 layers, vocabulary 8192):
 *   small  B 64, L  64, d  64, state_dim  64,  4 labelled positions per sequence
 *   paper  B 64, L 512, d 128, state_dim 128, 64 labelled positions per sequence
 * Synthetic MQAR-like batch: random tokens, K distinct random labelled
 * positions per sequence, random labels; the same batch every step.
 *
 * `model_step` alone runs every model x shape x {1, 2} threads, each in a
 * fresh process (fork + exec of itself), so that the peak RSS reported by
 * each configuration is its own.  `model_step --one MODEL SHAPE THREADS`
 * runs one configuration.  Output, one line per configuration:
 *   step <model> <shape> t<T> <ms> ms <GFLOP/s> GFLOP/s arena <MB> MB rss <MB> MB
 * ms: median of the timed steps after warm-up; GFLOP/s: the analytic FLOP
 * count of the step (step_flops below) divided by that time; arena: the
 * activation arena's peak (Graph arena, bytes handed out in one step);
 * rss: the process's peak resident set (getrusage ru_maxrss), which also
 * holds parameters, gradients, AdamW moments and OpenBLAS buffers. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../src/ops/attn_linear.h"
#include "../models/model.h"
#include "../src/ops/ssd.h"
#include "../optim/adamw.h"
#include "../optim/clip.h"
#include "../src/graph.h"
#include "../src/ops.h"
#include "../src/threads.h"
#include "benchutil.h"

#define VOCAB 8192
#define LAYERS 2
#define HEADS 1
#define LR 1e-3

typedef struct Shape {
    const char *name;
    int B, L, d, N, K;      /* K: labelled positions per sequence */
    int warmup, reps;
} Shape;

static const Shape SHAPES[] = {
    {"small", 64, 64, 64, 64, 4, 3, 20},
    {"paper", 64, 512, 128, 128, 64, 2, 5},
};
/* The models this benchmark knows the FLOP counts of (below). */
typedef enum { MODEL_SM_ATTENTION, MODEL_LIN_ATTENTION, MODEL_NORM_ATTENTION, MODEL_MAMBA2 } ModelKind;
static const char *const KIND_NAMES[] = {"sm-attention", "lin-attention", "norm-attention", "mamba2"};
static const ModelKind KINDS[] = {MODEL_SM_ATTENTION, MODEL_LIN_ATTENTION, MODEL_NORM_ATTENTION, MODEL_MAMBA2};
static const char *model_kind_name(ModelKind k) { return KIND_NAMES[k]; }
#define N_SHAPES (int)(sizeof SHAPES / sizeof SHAPES[0])
#define N_KINDS (int)(sizeof KINDS / sizeof KINDS[0])

/* ------------------------------------------------------------ FLOPs
 *
 * Notation: R = B*L rows, M = B*K labelled rows, d, N = state_dim (d_qk),
 * H heads, dh = N/H, P = dv = d/H, V = vocabulary, 2 layers.  Only matrix
 * products are counted (2 flops per multiply-add); element-wise work
 * (layer norms, activations, conv, softmax, cross entropy, AdamW) is not.
 * Backward = 2 x forward for every product (input and weight gradients; for
 * attention/scan the gradients of both operands of each product). */

/* GEMMs of one step (forward, x3 for forward + backward):
 *   sm/lin-attention, per layer: Wqkv 2R d (2N + d) + out_proj 2R d^2
 *   norm-attention,   per layer: Wvqkn 2R d (d + 2N + H) + out_proj 2R d^2
 *   mamba2,           per layer: in_proj 2R d (d + 2N + H) + out_proj 2R d^2 + GLU 2R d (2d)
 *   decoder (all):    2 M d V */
static double gemm_flops(ModelKind k, const Shape *s)
{
    const double R = (double)s->B * s->L, M = (double)s->B * s->K, d = s->d, N = s->N, H = HEADS;
    double layer;
    switch (k) {
    case MODEL_SM_ATTENTION:
    case MODEL_LIN_ATTENTION: layer = 2 * R * d * (2 * N + d) + 2 * R * d * d; break;
    case MODEL_NORM_ATTENTION: layer = 2 * R * d * (d + 2 * N + H) + 2 * R * d * d; break;
    default: layer = 2 * R * d * (d + 2 * N + H) + 2 * R * d * d + 2 * R * d * 2 * d; break;
    }
    return 3.0 * (LAYERS * layer + 2 * M * d * VOCAB);
}

/* Sequence mixing of one step (forward, x3 for forward + backward), with
 * causal halving of every triangular product:
 *   sm-attention, per layer: B H (L^2/2)(2 dh) for Q K^T + B H (L^2/2)(2 P)
 *     for A V  =  B L^2 (N + d).
 *   lin/norm-attention (chunked, chunk C = attnlin_default_chunk, n = L/C
 *     chunks, P' = P + 1 with the linear attention's denominator column,
 *     P' = P for norm attention), per layer and (b, h):
 *     n [C^2 (dh + P')          tril(Q K^T) and its product with V', halved
 *        + 4 C dh P' if n > 1]  Q S' and the state update K^T V'.
 *   mamba2 (chunked SSD, chunk Q = SSD_CHUNK_DEFAULT or L if shorter,
 *     n = L/Q), per layer and b:
 *     n [Q^2 N                  C B^T (shared by the heads), halved
 *        + H Q^2 P              (decay o C B^T) X, halved
 *        + 4 H Q N P if n > 1]  C S_prev^T and the state update X^T B. */
static double mix_flops(ModelKind k, const Shape *s)
{
    const double B = s->B, L = s->L, d = s->d, N = s->N, H = HEADS;
    const double dh = N / H, P = d / H;
    double layer;
    if (k == MODEL_SM_ATTENTION) {
        layer = B * L * L * (N + d);
    } else if (k == MODEL_LIN_ATTENTION || k == MODEL_NORM_ATTENTION) {
        const int C = attnlin_default_chunk(s->L, s->N / HEADS, s->d / HEADS);
        const double n = ceil(L / C), Pa = P + (k == MODEL_LIN_ATTENTION ? 1 : 0);
        layer = B * H * n * ((double)C * C * (dh + Pa) + (n > 1 ? 4.0 * C * dh * Pa : 0.0));
    } else {
        const double Q = s->L < SSD_CHUNK_DEFAULT ? s->L : SSD_CHUNK_DEFAULT, n = ceil(L / Q);
        layer = B * n * (Q * Q * N + H * Q * Q * P + (n > 1 ? 4.0 * H * Q * N * P : 0.0));
    }
    return 3.0 * LAYERS * layer;
}

static double step_flops(ModelKind k, const Shape *s) { return gemm_flops(k, s) + mix_flops(k, s); }

/* ------------------------------------------------------------ one configuration */

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The benchmark's models through the same key table as a run config. */
static void build_config(ModelConfig *c, ModelKind kind, const Shape *s)
{
    char err[400], v[32], out[32], d[32], n[32], h[32], ly[32], pos[32];
    snprintf(v, sizeof v, "vocab_size=%d", VOCAB);
    snprintf(out, sizeof out, "output_dim=%d", VOCAB);
    snprintf(d, sizeof d, "hidden_dim=%d", s->d);
    snprintf(n, sizeof n, "state_dim=%d", s->N);
    snprintf(h, sizeof h, "num_heads=%d", HEADS);
    snprintf(ly, sizeof ly, "num_layers=%d", LAYERS);
    snprintf(pos, sizeof pos, "max_pos_embed=%d", s->L);
    int rc;
    switch (kind) {
    case MODEL_SM_ATTENTION:
    case MODEL_LIN_ATTENTION:
        rc = model_config_from_keys(c, err, sizeof err, "layer=transformer",
                                    kind == MODEL_SM_ATTENTION ? "attention_fn=sm-attention" : "attention_fn=lin-attention",
                                    v, out, d, n, h, ly, "dropout=0", "mixer=none", "use_gate=false", pos, "dim_conv=0",
                                    NULL);
        break;
    case MODEL_NORM_ATTENTION:
        rc = model_config_from_keys(c, err, sizeof err, "layer=transformer", "attention_fn=norm-attention", v, out, d,
                                    n, h, ly, "dropout=0", "mixer=none", "use_gate=false", "max_pos_embed=0",
                                    "dim_conv=4", "norm_fn=softplus", "approx_fn=elu", "scale_B=true", "offset=true",
                                    NULL);
        break;
    default:
        rc = model_config_from_keys(c, err, sizeof err, "layer=mamba", v, out, d, n, h, ly, "dropout=0", "conv_dim=4",
                                    "glu=true", "prenorm=true", "pseudoLTI=false", NULL);
        break;
    }
    if (rc) {
        fprintf(stderr, "model_step: %s\n", err);
        exit(2);
    }
}

/* --profile: where the step's time goes.  Forward, cross entropy, clip and
 * AdamW as wholes; the backward per tape entry (graph_backward_observed,
 * timed per entry and summed by op name). */
#define PROF_MAX 64
typedef struct ProfRow {
    const char *name;
    double sec;
    int calls;
} ProfRow;
static ProfRow prof[PROF_MAX];
static int n_prof;

static void prof_add(const char *name, double sec)
{
    int i = 0;
    while (i < n_prof && strcmp(prof[i].name, name)) i++;
    if (i == n_prof) {
        if (n_prof == PROF_MAX) return;
        prof[n_prof++] = (ProfRow){strdup(name), 0.0, 0};
    }
    prof[i].sec += sec;
    prof[i].calls++;
}

static int cmp_prof(const void *a, const void *b)
{
    double x = ((const ProfRow *)a)->sec, y = ((const ProfRow *)b)->sec;
    return (x < y) - (x > y);
}

/* Backward with every tape entry timed, summed by op name. */
static void observe_entry(void *ctx, const TapeEntry *e, bool after)
{
    double *t0 = ctx;
    if (!after) {
        *t0 = bench_now();
        return;
    }
    const double dt = bench_now() - *t0;
    const Tensor *o = e->out;
    /* linear ops apart by output width (decoder vs projections) */
    char key[64];
    if (!strcmp(e->name, "linear")) {
        snprintf(key, sizeof key, "linear ->%d", o->shape[o->ndim - 1]);
        prof_add(key, dt);
    } else {
        prof_add(e->name, dt);
    }
}

static void backward_timed(Graph *g, Tensor *loss)
{
    double t0 = 0.0;
    graph_backward_observed(g, loss, observe_entry, &t0);
}

static int profile_mode;

/* Forward per op (profiling builds only): link with
 *   -DPROFILE_FORWARD -Wl,--wrap=graph_record
 * and every recorded op's forward time is taken as the time since the
 * previous record (ops that record nothing fold into the next one):
 *   gcc $(CFLAGS) -DPROFILE_FORWARD bench/model_step.c build/libseqeig.a \
 *       -Wl,--wrap=graph_record -o model_step_prof $(LDLIBS)
 */
#ifdef PROFILE_FORWARD
static double fwd_last;
static int fwd_on;
TapeEntry *__real_graph_record(Graph *g, const char *name, BackwardFn fn, Tensor *out, Tensor *a,
                               Tensor *b, Tensor *c, Tensor *d);
TapeEntry *__wrap_graph_record(Graph *g, const char *name, BackwardFn fn, Tensor *out, Tensor *a,
                               Tensor *b, Tensor *c, Tensor *d);
TapeEntry *__wrap_graph_record(Graph *g, const char *name, BackwardFn fn, Tensor *out, Tensor *a,
                               Tensor *b, Tensor *c, Tensor *d)
{
    TapeEntry *e = __real_graph_record(g, name, fn, out, a, b, c, d);
    if (fwd_on) {
        double now = bench_now();
        char key[64];
        if (!strcmp(name, "linear"))
            snprintf(key, sizeof key, "fwd linear ->%d", out->shape[out->ndim - 1]);
        else
            snprintf(key, sizeof key, "fwd %s", name);
        prof_add(key, now - fwd_last);
        fwd_last = bench_now();
    }
    return e;
}
#define FWD_PROFILE(on)                           \
    do {                                          \
        fwd_on = (on);                            \
        fwd_last = bench_now();                   \
    } while (0)
#else
#define FWD_PROFILE(on) ((void)0)
#endif

static int run_one(ModelKind kind, const Shape *s, int threads)
{
    threads_set(threads);
    ModelConfig cfg;
    build_config(&cfg, kind, s);
    Model m;
    char err[256];
    if (model_create(&m, &cfg, err, sizeof err)) {
        fprintf(stderr, "model_step: %s\n", err);
        return 1;
    }
    model_init(&m, 1234);
    AdamWConfig ocfg = ADAMW_DEFAULTS;
    ocfg.weight_decay = 0.1;
    AdamW opt;
    if (adamw_init_params(&opt, &m.params, ocfg)) return 1;

    /* synthetic MQAR-like batch */
    const int B = s->B, L = s->L, K = s->K, n_rows = B * K;
    int32_t *tokens = malloc(sizeof(int32_t) * (size_t)B * L);
    int32_t *rows = malloc(sizeof(int32_t) * (size_t)n_rows);
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)n_rows);
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)L);
    if (!tokens || !rows || !labels || !perm) return 1;
    uint64_t st = 42;
    for (size_t i = 0; i < (size_t)B * L; i++) tokens[i] = (int32_t)(splitmix(&st) % VOCAB);
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < L; t++) perm[t] = t;
        for (int t = 0; t < K; t++) { /* partial Fisher-Yates: K distinct positions */
            int j = t + (int)(splitmix(&st) % (uint64_t)(L - t));
            int32_t tmp = perm[t];
            perm[t] = perm[j], perm[j] = tmp;
        }
        qsort(perm, (size_t)K, sizeof perm[0], cmp_i32);
        for (int t = 0; t < K; t++) rows[b * K + t] = b * L + perm[t];
    }
    for (int i = 0; i < n_rows; i++) labels[i] = (int32_t)(splitmix(&st) % VOCAB);
    ModelBatch batch = {.B = B, .L = L, .tokens = tokens, .mask = NULL, .rows = rows, .n_rows = n_rows};

    Graph g;
    graph_init(&g, 0, 7);
    double times[64];
    const int reps = s->reps > 64 ? 64 : s->reps;
    float loss_val = 0.0f;
    for (int it = 0; it < s->warmup + reps; it++) {
        double t0 = bench_now();
        graph_begin(&g, (uint64_t)it, true, true);
        paramset_zero_grad(&m.params);
        if (profile_mode && it >= s->warmup) {
            double t[6];
            FWD_PROFILE(1);
            t[0] = bench_now();
            Tensor *logits = model_forward(&m, &g, &batch, NULL);
            t[1] = bench_now();
            Tensor *loss = op_cross_entropy(&g, logits, labels, NULL);
            t[2] = bench_now();
            FWD_PROFILE(0);
            backward_timed(&g, loss);
            t[3] = bench_now();
            clip_grad_norm_params(&m.params, 1.0);
            t[4] = bench_now();
            adamw_step_params(&opt, &m.params, LR);
            t[5] = bench_now();
            prof_add("[begin + zero_grad]", t[0] - t0);
            prof_add("[forward, all ops]", t[1] - t[0]);
#ifndef PROFILE_FORWARD
            prof_add("[cross entropy fwd]", t[2] - t[1]);
#endif
            prof_add("[clip]", t[4] - t[3]);
            prof_add("[adamw]", t[5] - t[4]);
            loss_val = loss->data[0];
            times[it - s->warmup] = bench_now() - t0;
            continue;
        }
        Tensor *logits = model_forward(&m, &g, &batch, NULL);
        Tensor *loss = op_cross_entropy(&g, logits, labels, NULL);
        graph_backward(&g, loss);
        clip_grad_norm_params(&m.params, 1.0);
        adamw_step_params(&opt, &m.params, LR);
        double dt = bench_now() - t0;
        if (it >= s->warmup) times[it - s->warmup] = dt;
        loss_val = loss->data[0];
    }
    qsort(times, (size_t)reps, sizeof times[0], bench_cmp_double);
    const double sec = times[reps / 2];
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    if (!isfinite(loss_val))
        fprintf(stderr, "# warning: %s %s: loss %g\n", model_kind_name(kind), s->name, (double)loss_val);
    printf("step %-14s %-5s t%d %9.2f ms %7.1f GFLOP/s arena %7.1f MB rss %7.1f MB\n",
           model_kind_name(kind), s->name, threads, sec * 1e3, step_flops(kind, s) / sec * 1e-9,
           (double)g.arena.peak / (1024.0 * 1024.0), (double)ru.ru_maxrss / 1024.0);
    if (profile_mode) {
        qsort(prof, (size_t)n_prof, sizeof prof[0], cmp_prof);
        printf("# per step (mean of %d steps); ops by tape name (backward unless 'fwd'):\n", reps);
        for (int i = 0; i < n_prof; i++)
            printf("#   %-28s %8.2f ms %5.1f%%  (%d calls/step)\n", prof[i].name, prof[i].sec / reps * 1e3,
                   100.0 * prof[i].sec / reps / sec, prof[i].calls / reps);
    }
    fflush(stdout);

    graph_free(&g);
    adamw_free(&opt);
    model_free(&m);
    free(tokens), free(rows), free(labels), free(perm);
    return 0;
}

/* ------------------------------------------------------------ driver */

static int find_kind(const char *name)
{
    for (int i = 0; i < N_KINDS; i++)
        if (!strcmp(name, model_kind_name(KINDS[i]))) return i;
    return -1;
}

static int find_shape(const char *name)
{
    for (int i = 0; i < N_SHAPES; i++)
        if (!strcmp(name, SHAPES[i].name)) return i;
    return -1;
}

/* Run one configuration in a fresh process image (no OpenMP state or
 * memory inherited: the parent never runs a parallel region). */
static void spawn(const char *model, const char *shape, int threads)
{
    char tbuf[16];
    snprintf(tbuf, sizeof tbuf, "%d", threads);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("model_step: fork");
        exit(1);
    }
    if (pid == 0) {
        char *args[] = {"model_step", "--one", (char *)model, (char *)shape, tbuf, NULL};
        execv("/proc/self/exe", args);
        perror("model_step: exec");
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        printf("step %-14s %-5s t%d failed (status %d)\n", model, shape, threads, status);
}

int main(int argc, char **argv)
{
    threads_pin_blas_kernel(argv);
    if (argc == 5 && (!strcmp(argv[1], "--one") || !strcmp(argv[1], "--profile"))) {
        profile_mode = !strcmp(argv[1], "--profile");
        int k = find_kind(argv[2]), s = find_shape(argv[3]), t = atoi(argv[4]);
        if (k < 0 || s < 0 || t < 1) {
            fprintf(stderr, "model_step: unknown model/shape/threads %s %s %s\n", argv[2], argv[3], argv[4]);
            return 2;
        }
        return run_one(KINDS[k], &SHAPES[s], t);
    }
    if (argc != 1) {
        fprintf(stderr, "usage: model_step [--one|--profile MODEL SHAPE THREADS]\n");
        return 2;
    }
    printf("# training steps (fwd + xent + bwd + clip 1.0 + AdamW), dropout 0, 1 head, 2 layers, V %d\n",
           VOCAB);
    for (int s = 0; s < N_SHAPES; s++) {
        for (int k = 0; k < N_KINDS; k++) {
            printf("# %s %s: %.3f GFLOP per step (GEMM %.3f, attention/scan %.3f)\n",
                   model_kind_name(KINDS[k]), SHAPES[s].name, step_flops(KINDS[k], &SHAPES[s]) * 1e-9,
                   gemm_flops(KINDS[k], &SHAPES[s]) * 1e-9, mix_flops(KINDS[k], &SHAPES[s]) * 1e-9);
            for (int t = 1; t <= 2; t++) spawn(model_kind_name(KINDS[k]), SHAPES[s].name, t);
        }
    }
    return 0;
}
