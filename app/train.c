/* The trainer (train.h). */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../models/model.h"
#include "../optim/adamw.h"
#include "../optim/clip.h"
#include "../optim/schedule.h"
#include "../tasks/task.h"
#include "../src/graph.h"
#include "../src/ops.h"
#include "../src/rng.h"
#include "runfile.h"
#include "runlock.h"
#include "spectra.h"
#include "train.h"

void train_keys_register(ConfigSchema *s)
{
    config_schema_add_int(s, "train.seed", 1919, 0);
    config_schema_add_int(s, "train.total_steps", 40000, 0);
    config_schema_add_int(s, "train.batch_size", 64, 0);
    config_schema_add_double(s, "train.lr", 1e-3, 0);
    config_schema_add_double(s, "train.wd", 0.1, 0);
    config_schema_add_double(s, "train.beta1", 0.9, 0);
    config_schema_add_double(s, "train.beta2", 0.999, 0);
    config_schema_add_double(s, "train.eps", 1e-8, 0);
    config_schema_add_double(s, "train.clip_grad_norm", 1.0, 0);
    config_schema_add_int(s, "train.eval_every", 200, 0);
    config_schema_add_int(s, "train.eval_batch_size", 0, 0); /* 0: batch_size */
    config_schema_add_int(s, "train.log_every", 10, 0);
    config_schema_add_double(s, "train.stop_criterion", 1.0, 0);
    config_schema_add_bool(s, "train.cosine_anneal", false, 0);
    config_schema_add_int(s, "train.warmup_steps", -1, 0);
    config_schema_add_int(s, "train.warmup", -1, 0);
    config_schema_add_int(s, "train.num_epochs", 0, 0);
    config_schema_add_double(s, "train.eta_min", LR_ETA_MIN_DEFAULT, 0);
    config_schema_add_str(s, "train.param_group", "", CONFIG_IGNORED);
    config_schema_add_enum(s, "spectra.method", "dsf", spectra_method_names, 0);
    config_schema_add_int(s, "spectra.analysis_batch", 64, 0);
    config_schema_alias_top(s, "seed", "train.seed");
    config_schema_ignore_top(s, "save");
    config_schema_ignore_top(s, "wandb");
}

void run_schema_build(ConfigSchema *s)
{
    config_schema_init(s);
    task_keys_register(s);
    train_keys_register(s);
    model_keys_register(s);
}

/* ------------------------------------------------------------ signals */

static volatile sig_atomic_t g_interrupted;

static void on_signal(int sig)
{
    g_interrupted = sig;
    signal(sig, SIG_DFL); /* a second one kills at once */
}

/* ------------------------------------------------------------ setup */

typedef struct Trainer {
    const Config *c;
    const TrainOptions *o;
    Model model;
    bool model_ok;
    Task *task;
    Graph g;
    bool graph_ok;
    AdamW opt;
    bool opt_ok;
    LrSchedule sched;
    TaskBatch batch, ebatch, abatch;
    RunFile rf;
    RunLock lock;        /* held for the whole run: one writer per run file */
    int B, eval_B, S;
    int64_t total, eval_every, log_every;
    double stop, clip;
    uint64_t seed;
    SpectraMeter spectra;  /* the analysis batch abatch, the method, valid steps */
    bool spectra_ok;
    double *eig, *pmean, *pstd; /* an evaluation's spectra (only its bins are kept) */
    double wall0;        /* wall_s carried from earlier sessions */
    struct timespec t0;  /* start of this session's training */
    bool tty;
    double last_progress;
} Trainer;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double wall_now(Trainer *t)
{
    return t->wall0 + now_s() - ((double)t->t0.tv_sec + 1e-9 * (double)t->t0.tv_nsec);
}

#define USAGE_FAIL(...)                            \
    do {                                           \
        fprintf(stderr, "seqeig: " __VA_ARGS__);   \
        fputc('\n', stderr);                       \
        return EXIT_USAGE;                         \
    } while (0)

static ModelBatch model_batch(const TaskBatch *b)
{
    return (ModelBatch){.B = b->B, .L = b->L, .tokens = b->tokens, .features = b->features, .mask = b->mask,
                        .rows = b->rows, .n_rows = b->n_rows};
}

/* One message for an allocation that failed: what it was for and its size. */
static int out_of_memory(const char *what, double bytes)
{
    fprintf(stderr, "seqeig: out of memory for %s (%.3g GB)\n", what, bytes / 1e9);
    return EXIT_RUNTIME;
}

/* Bytes of a TaskBatch of B sequences of length L (task_batch_alloc). */
static double batch_bytes(int B, int L, int F)
{
    return (double)B * L * (5.0 * sizeof(int32_t) + (double)F * sizeof(float));
}

/* Parameters, gradients, AdamW moments and the activations of a training
 * step, estimated before anything of the model is allocated, against this
 * machine's memory.  Parameters and step activations grow linearly with
 * the layers and the activations with the batch, so models of 1 and 2
 * layers stepped on one training sequence give both; the probe uses its own
 * graph and models and changes nothing of the run.  EXIT_OK or an exit code. */
static int check_memory(const Trainer *t, const ModelConfig *mc)
{
    double params[2], act[2];
    TaskBatch b;
    if (task_batch_alloc(&b, 1, t->task->seq_len, t->task->input_dim))
        return out_of_memory("a probe batch", batch_bytes(1, t->task->seq_len, t->task->input_dim));
    t->task->train_batch(t->task, 0, 1, &b);
    int rc = EXIT_OK;
    for (int ly = 1; ly <= 2 && rc == EXIT_OK; ly++) {
        ModelConfig c = *mc;
        c.num_layers = ly;
        Model m;
        Graph g;
        char err[600];
        if (model_create(&m, &c, err, sizeof err)) {
            fprintf(stderr, "seqeig: model: %s\n", err);
            rc = EXIT_USAGE;
            break;
        }
        model_init(&m, t->seed);
        if (graph_init(&g, 0, 1)) {
            model_free(&m);
            rc = out_of_memory("the activation arena", 0);
            break;
        }
        graph_begin(&g, 0, true, true);
        const ModelBatch mb = model_batch(&b);
        Tensor *loss = op_cross_entropy(&g, model_forward(&m, &g, &mb, NULL), b.targets, NULL);
        graph_backward(&g, loss);
        params[ly - 1] = (double)m.params.total;
        act[ly - 1] = (double)(g.arena.step_total > g.arena.peak ? g.arena.step_total : g.arena.peak);
        graph_free(&g);
        model_free(&m);
    }
    const double L = t->task->seq_len, Lb = b.L > 0 ? b.L : 1;
    task_batch_free(&b);
    if (rc != EXIT_OK) return rc;
    const double n = mc->num_layers;
    const double p = params[0] + (n - 1) * (params[1] - params[0]);
    const double a = (act[0] + (n - 1) * (act[1] - act[0])) * (L / Lb) * t->B;
    const double need = 16.0 * p + a, have = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    if (have > 0 && need > have) {
        fprintf(stderr,
                "seqeig: the run needs about %.3g GB (%.3g parameters: %.3g GB with gradients and AdamW moments; "
                "activations of a training step of %d sequences: %.3g GB), more than this machine's %.3g GB: "
                "reduce model.num_layers, model.hidden_dim or train.batch_size\n",
                need / 1e9, p, 16.0 * p / 1e9, t->B, a / 1e9, have / 1e9);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

static ConfigSource source_of(const Config *c, const char *key) { return c->source[config_schema_find(c->schema, key)]; }

/* Whether the config file or a --set gave `key`. */
static bool given(const Config *c, const char *key) { return source_of(c, key) != CONFIG_FROM_DEFAULT; }

static int positive_key(const Config *c, const char *key)
{
    char where[300];
    if (config_int(c, key) > 0) return 0;
    fprintf(stderr, "seqeig: %s: %s = %d: must be > 0\n", config_where(c, key, where, sizeof where), key,
            config_int(c, key));
    return -1;
}

static int setup(Trainer *t)
{
    const Config *c = t->c;
    char err[600], where[300];
    ModelConfig mc;
    /* YAML reads .inf and .nan as numbers; no setting of a run means either */
    for (int i = 0; i < config_count(c); i++) {
        const ConfigItem it = config_item(c, i);
        if (it.type == CONFIG_DOUBLE && !it.ignored && !isfinite(it.value->d))
            USAGE_FAIL("%s: %s = %g: must be a finite number", config_where(c, it.key, where, sizeof where), it.key,
                       it.value->d);
    }
    if (model_keys_to_config(c, &mc, err, sizeof err)) USAGE_FAIL("%s", err); /* err names file and key */
    if (positive_key(c, "train.total_steps") || positive_key(c, "train.batch_size") ||
        positive_key(c, "train.eval_every") ||
        positive_key(c, "train.log_every") || positive_key(c, "spectra.analysis_batch"))
        return EXIT_USAGE;
    if (config_int(c, "train.seed") < 0)
        USAGE_FAIL("%s: train.seed = %d: must be >= 0", config_where(c, "train.seed", where, sizeof where),
                   config_int(c, "train.seed"));
    t->seed = (uint64_t)config_int(c, "train.seed");
    t->B = config_int(c, "train.batch_size");
    /* An evaluation chunk of batch_size sequences (forward only) needs less
     * memory than a training step, so by default evaluation never raises
     * the run's peak memory. */
    t->eval_B = config_int(c, "train.eval_batch_size");
    if (t->eval_B < 0)
        USAGE_FAIL("%s: train.eval_batch_size = %d: must be >= 0 (0: the training batch_size)",
                   config_where(c, "train.eval_batch_size", where, sizeof where), t->eval_B);
    if (t->eval_B == 0) t->eval_B = t->B;
    t->total = config_int(c, "train.total_steps");
    t->eval_every = config_int(c, "train.eval_every");
    t->log_every = config_int(c, "train.log_every");
    t->stop = config_double(c, "train.stop_criterion");
    if (!(t->stop >= 0.0))
        USAGE_FAIL("%s: train.stop_criterion = %g: must be >= 0 (the test accuracy to stop above; >= 1: never)",
                   config_where(c, "train.stop_criterion", where, sizeof where), t->stop);
    t->clip = config_double(c, "train.clip_grad_norm");
    if (!(t->clip >= 0.0))
        USAGE_FAIL("%s: train.clip_grad_norm = %g: must be >= 0 (0 = no clipping)",
                   config_where(c, "train.clip_grad_norm", where, sizeof where), t->clip);

    AdamWConfig ac = {.beta1 = config_double(c, "train.beta1"),
                      .beta2 = config_double(c, "train.beta2"),
                      .eps = config_double(c, "train.eps"),
                      .weight_decay = config_double(c, "train.wd")};
    if (!(ac.beta1 >= 0 && ac.beta1 < 1) || !(ac.beta2 >= 0 && ac.beta2 < 1) || !(ac.eps > 0) ||
        !(ac.weight_decay >= 0))
        USAGE_FAIL("train: AdamW needs 0 <= beta1, beta2 < 1, eps > 0, wd >= 0 (got %g, %g, %g, %g)", ac.beta1,
                   ac.beta2, ac.eps, ac.weight_decay);

    t->task = task_create(c, t->seed, err, sizeof err);
    if (!t->task) USAGE_FAIL("%s: %s", c->path ? c->path : "config", err);
    /* Epoch-based training (train.num_epochs > 0): an epoch is
     * ceil(n_train / batch_size) steps of the task's continuous stream of
     * shuffled epochs; evaluation after every epoch. */
    const int epochs = config_int(c, "train.num_epochs");
    int64_t spe = 0;
    if (epochs < 0)
        USAGE_FAIL("%s: train.num_epochs = %d: must be >= 0 (0 = step-based: train.total_steps)",
                   config_where(c, "train.num_epochs", where, sizeof where), epochs);
    if (epochs > 0) {
        if (t->task->n_train <= 0)
            USAGE_FAIL("%s: train.num_epochs = %d needs a finite training set (task '%s' draws fresh examples; "
                       "use train.total_steps)",
                       config_where(c, "train.num_epochs", where, sizeof where), epochs, t->task->name);
        /* Epoch-based training derives these; a value given for one would be
         * silently overridden.  Only a --set of num_epochs over a file's
         * step-based settings is a deliberate switch, which it may override. */
        static const char *const DERIVED[] = {"train.total_steps", "train.eval_every", "train.warmup_steps"};
        for (size_t i = 0; i < sizeof DERIVED / sizeof DERIVED[0]; i++)
            if (given(c, DERIVED[i]) && source_of(c, DERIVED[i]) >= source_of(c, "train.num_epochs"))
                USAGE_FAIL("%s: %s = %d has no effect when train.num_epochs = %d sets the length (%s); remove it%s",
                           config_where(c, DERIVED[i], where, sizeof where), DERIVED[i], config_int(c, DERIVED[i]),
                           epochs,
                           i == 0   ? "num_epochs x ceil(training examples / batch_size) steps"
                           : i == 1 ? "an evaluation after every epoch"
                                    : "warmup is counted in epochs: train.warmup",
                           i == 0 ? " or set train.num_epochs: 0 for step-based training" : "");
        spe = (t->task->n_train + t->B - 1) / t->B;
        t->total = (int64_t)epochs * spe;
        t->eval_every = spe;
    } else if (given(c, "train.warmup") && !t->o->quiet) {
        /* the reference's step-based trainer ignores it too (its MQAR attention configs have it) */
        fprintf(stderr, "seqeig: notice: %s: train.warmup counts epochs and is ignored in step-based training "
                        "(train.warmup_steps sets a warmup in steps)\n",
                config_where(c, "train.warmup", where, sizeof where));
    }
    /* Schedule (docs/training.md, The learning-rate schedule): the
     * reference trainers run their warmup x cosine scheduler only when the
     * warmup key they read exists:
     * `warmup_steps` for step-based training (the MQAR attention configs
     * say `warmup:`, so they train at a constant rate), `warmup` (epochs)
     * for epoch-based training.  Absent (-1) = constant rate. */
    const int ws = epochs > 0 ? config_int(c, "train.warmup") : config_int(c, "train.warmup_steps");
    if (ws < 0) {
        t->sched = lr_schedule_constant(config_double(c, "train.lr"));
    } else {
        t->sched = (LrSchedule){.lr = config_double(c, "train.lr"),
                                .warmup = ws,
                                .cosine = config_bool(c, "train.cosine_anneal"),
                                .total = epochs > 0 ? epochs : t->total,
                                .eta_min = config_double(c, "train.eta_min"),
                                .unit = epochs > 0 ? LR_PER_EPOCH : LR_PER_STEP,
                                .steps_per_epoch = spe};
    }
    if (lr_schedule_check(&t->sched, err, sizeof err)) USAGE_FAIL("train: %s", err);
    if (mc.input_dim != t->task->input_dim) {
        const char *fkey = mc.family->float_input_key, *tkey = t->task->input_kind_key;
        if (mc.input_dim == 0)
            USAGE_FAIL("task '%s' gives float inputs (%d per position) but the model has a token embedding: "
                       "set %s: false and model.input_dim: %d%s%s%s",
                       t->task->name, t->task->input_dim, fkey, t->task->input_dim,
                       tkey ? " (or give the task token inputs, e.g. " : "", tkey ? tkey : "", tkey ? ": true)" : "");
        if (t->task->input_dim == 0)
            USAGE_FAIL("%s = false (float inputs through a Linear layer) but task '%s' gives tokens: "
                       "remove the key%s%s%s",
                       fkey, t->task->name, tkey ? " (or set " : "", tkey ? tkey : "",
                       tkey ? ": false for float inputs)" : "");
        USAGE_FAIL("model.input_dim = %d does not match the task's %d float inputs per position", mc.input_dim,
                   t->task->input_dim);
    }
    if (mc.input_dim == 0 && mc.vocab_size < t->task->vocab)
        USAGE_FAIL("model.vocab_size = %d is smaller than the task's vocabulary (%d tokens)", mc.vocab_size,
                   t->task->vocab);
    if (mc.output_dim < t->task->num_outputs)
        USAGE_FAIL("model.output_dim = %d is smaller than the task's %d output classes", mc.output_dim,
                   t->task->num_outputs);
    if ((mc.head == HEAD_CLASSIFIER) != t->task->classification)
        USAGE_FAIL("model.classifier = %s does not fit task '%s' (%s)", mc.head == HEAD_CLASSIFIER ? "true" : "false",
                   t->task->name, t->task->classification ? "one label per sequence" : "labels per position");
    if (model_check_length(&(const Model){.cfg = mc}, t->task->seq_len, err, sizeof err))
        USAGE_FAIL("model: %s (dataset sequences have length %d)", err, t->task->seq_len);
    const int mem = check_memory(t, &mc);
    if (mem != EXIT_OK) return mem;
    if (model_create(&t->model, &mc, err, sizeof err)) USAGE_FAIL("model: %s", err);
    t->model_ok = true;
    if (model_check_length(&t->model, t->task->seq_len, err, sizeof err))
        USAGE_FAIL("model: %s (dataset sequences have length %d)", err, t->task->seq_len);
    model_init(&t->model, t->seed);
    if (adamw_init_params(&t->opt, &t->model.params, ac))
        return out_of_memory("the AdamW moments", 2.0 * sizeof(float) * (double)t->model.params.total);
    t->opt_ok = true;
    if (graph_init(&t->g, (size_t)64 << 20, rng_derive_key(t->seed, RNG_DROPOUT, 0)))
        return out_of_memory("the activation arena", 64e6);
    t->graph_ok = true;

    const int L = t->task->seq_len;
    t->S = config_int(c, "spectra.analysis_batch");
    if (t->S > t->task->n_test) t->S = t->task->n_test;
    const int F = t->task->input_dim;
    if (task_batch_alloc(&t->batch, t->B, L, F))
        return out_of_memory("the training batch (train.batch_size sequences)", batch_bytes(t->B, L, F));
    if (task_batch_alloc(&t->ebatch, t->eval_B, L, F))
        return out_of_memory("the evaluation batch (train.eval_batch_size sequences)", batch_bytes(t->eval_B, L, F));
    if (task_batch_alloc(&t->abatch, t->S, L, F))
        return out_of_memory("the analysis batch (spectra.analysis_batch sequences)", batch_bytes(t->S, L, F));
    t->task->test_batch(t->task, 0, t->S, &t->abatch);
    const int La = t->abatch.L; /* padded inputs: the longest analysis sequence */
    ModelBatch ab = model_batch(&t->abatch);
    const double spectra_bytes = 4.0 * sizeof(double) * (double)model_spectra_T(&t->model, La) * t->S *
                                 t->model.cfg.num_layers * t->model.cfg.num_heads;
    if (spectra_meter_init(&t->spectra, &t->model, (SpectraMethod)spectra_method_parse(config_str(c, "spectra.method")),
                           &ab))
        return out_of_memory("the spectra", spectra_bytes);
    t->spectra_ok = true;
    const SpectraShape sh = t->spectra.shape;
    t->eig = malloc((spectra_meter_eig_count(&t->spectra) + 1) * sizeof(double));
    t->pmean = malloc(spectra_meter_bin_count(&t->spectra) * sizeof(double));
    t->pstd = malloc(spectra_meter_bin_count(&t->spectra) * sizeof(double));
    if (!t->eig || !t->pmean || !t->pstd) return out_of_memory("the spectra", spectra_bytes);

    runfile_init(&t->rf);
    if (runfile_set_spectra_shape(&t->rf, config_str(c, "spectra.method"), t->S, sh.layers, sh.systems, sh.steps, La))
        return out_of_memory("the spectra", spectra_bytes);
    memcpy(t->rf.inputs, t->abatch.tokens, (size_t)t->S * La * sizeof(int32_t));
    if (F > 0) { /* the model reads these; the tokens above stay the raw record */
        t->rf.input_dim = F;
        t->rf.features = malloc((size_t)t->S * La * F * sizeof(float));
        if (!t->rf.features) return out_of_memory("the analysis features", batch_bytes(t->S, La, F));
        memcpy(t->rf.features, t->abatch.features, (size_t)t->S * La * F * sizeof(float));
    }
    if (t->abatch.mask) {
        t->rf.mask = malloc((size_t)t->S * La * sizeof(float));
        if (!t->rf.mask) return out_of_memory("the analysis mask", batch_bytes(t->S, La, 0));
        memcpy(t->rf.mask, t->abatch.mask, (size_t)t->S * La * sizeof(float));
    }
    snprintf(t->rf.task, sizeof t->rf.task, "%s", t->task->name);
    snprintf(t->rf.model, sizeof t->rf.model, "%s", model_name(&mc));
    t->rf.seed = (int64_t)t->seed;
    t->rf.threads = t->o->threads;
    t->rf.total_steps = t->total;
    t->rf.config = c;
    t->rf.config_yaml = config_to_yaml(c);
    return t->rf.config_yaml ? EXIT_OK : EXIT_RUNTIME;
}

static void teardown(Trainer *t)
{
    runlock_release(&t->lock);
    if (t->spectra_ok) spectra_meter_free(&t->spectra);
    free(t->eig);
    free(t->pmean);
    free(t->pstd);
    runfile_free(&t->rf);
    task_batch_free(&t->batch);
    task_batch_free(&t->ebatch);
    task_batch_free(&t->abatch);
    if (t->graph_ok) graph_free(&t->g);
    if (t->opt_ok) adamw_free(&t->opt);
    if (t->model_ok) model_free(&t->model);
    task_free(t->task);
}

/* ------------------------------------------------------------ pieces of a step */

/* Spectra of the current weights on the analysis batch: into `s` (init
 * and final keep the eigenvalues), or into t->eig / t->pmean / t->pstd
 * (s NULL: an evaluation, which keeps the bins).  `init` selects the
 * reference's init-time setting where a method has one.  Returns -1 if an
 * eigenvalue is NaN (a bug). */
static int compute_spectra(Trainer *t, bool init, RunSpectrum *s)
{
    char err[200];
    if (spectra_measure(&t->spectra, &t->model, &t->g, init, s ? s->eig : t->eig, s ? s->mean : t->pmean,
                        s ? s->std : t->pstd, err, sizeof err)) {
        fprintf(stderr, "seqeig: %s\n", err);
        return -1;
    }
    if (s) s->present = true;
    return 0;
}

/* Full test set: mean loss over labelled positions and accuracy. */
static void evaluate(Trainer *t, double *loss, double *acc)
{
    double loss_sum = 0.0;
    long n_valid = 0, n_correct = 0;
    for (int first = 0; first < t->task->n_test; first += t->eval_B) {
        int n = t->task->n_test - first < t->eval_B ? t->task->n_test - first : t->eval_B;
        t->task->test_batch(t->task, first, n, &t->ebatch);
        graph_begin(&t->g, 0, false, false);
        ModelBatch mb = model_batch(&t->ebatch);
        Tensor *logits = model_forward(&t->model, &t->g, &mb, NULL);
        XentStats st;
        op_cross_entropy(&t->g, logits, t->ebatch.targets, &st);
        loss_sum += st.loss_sum;
        n_valid += st.n_valid;
        n_correct += st.n_correct;
    }
    *loss = n_valid ? loss_sum / (double)n_valid : 0.0;
    *acc = n_valid ? (double)n_correct / (double)n_valid : 0.0;
}

static int save(Trainer *t)
{
    char err[1200];
    t->rf.wall_s = wall_now(t);
    t->rf.opt_step = t->opt.t;
    if (runfile_save(&t->rf, t->o->out, &t->model.params, t->opt.m, t->opt.v, err, sizeof err)) {
        fprintf(stderr, "seqeig: %s\n", err);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ progress */

static void fmt_duration(double s, char *buf, size_t n)
{
    if (!(s >= 0) || s > 360000) {
        snprintf(buf, n, "--:--");
        return;
    }
    long v = (long)(s + 0.5);
    if (v >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", v / 3600, v / 60 % 60, v % 60);
    else snprintf(buf, n, "%ld:%02ld", v / 60, v % 60);
}

static void progress(Trainer *t, int64_t done, int64_t done0, double loss, bool eval_line)
{
    if (t->o->quiet) return;
    double el = wall_now(t) - t->wall0;
    double rate = el > 0 ? (double)(done - done0) / el : 0.0;
    char eta[32];
    fmt_duration(rate > 0 ? (double)(t->total - done) / rate : -1, eta, sizeof eta);
    double acc = t->rf.n_eval ? t->rf.eval_test_acc[t->rf.n_eval - 1] : NAN;
    long long acc_step = t->rf.n_eval ? (long long)t->rf.eval_step[t->rf.n_eval - 1] : 0;
    if (t->tty) {
        double nw = now_s();
        if (!eval_line && nw - t->last_progress < 0.25) return;
        t->last_progress = nw;
        fprintf(stderr, "\r\033[K%s %s seed %llu  step %lld/%lld  loss %.4f", t->rf.model, t->rf.task,
                (unsigned long long)t->seed, (long long)done, (long long)t->total, loss);
        if (t->rf.n_eval) fprintf(stderr, "  acc %.4f@%lld", acc, acc_step);
        fprintf(stderr, "  %.1f steps/s  ETA %s", rate, eta);
        fflush(stderr);
    } else if (eval_line) {
        size_t i = t->rf.n_eval - 1;
        fprintf(stderr,
                "%s %s seed %llu: step %lld/%lld  train_loss %.4f  test_loss %.4f  test_acc %.4f  lr %.3g  "
                "%.1f steps/s  ETA %s\n",
                t->rf.model, t->rf.task, (unsigned long long)t->seed, (long long)done, (long long)t->total,
                t->rf.eval_train_loss[i], t->rf.eval_test_loss[i], acc, t->rf.eval_lr[i], rate, eta);
    }
}

static void progress_end(Trainer *t)
{
    if (!t->o->quiet && t->tty) fputc('\n', stderr);
}

/* ------------------------------------------------------------ existing run files */

/* Decide what to do with an existing file at o->out.  Returns EXIT_OK to
 * go on (sets *resume when the run continues from it), or an exit code. */
static int check_existing(Trainer *t, bool *resume, bool *done)
{
    const char *out = t->o->out;
    *resume = *done = false;
    if (access(out, F_OK) != 0) return EXIT_OK; /* nothing there: fresh run (also with --resume) */
    if (t->o->force) return EXIT_OK;
    RunFile peek;
    char err[1200];
    int rc = runfile_peek(&peek, out, err, sizeof err);
    if (rc != 0) {
        runfile_free(&peek);
        fprintf(stderr, "seqeig: %s exists and is not a readable seqeig run file (%s); refusing to overwrite it "
                        "(--force replaces it)\n",
                out, err);
        return EXIT_USAGE;
    }
    bool finished = strcmp(peek.status, "completed") == 0 || strcmp(peek.status, "stopped_early") == 0;
    long long step = (long long)peek.step, total = (long long)peek.total_steps;
    char status[16];
    snprintf(status, sizeof status, "%s", peek.status);
    runfile_free(&peek);
    if (finished) {
        if (t->o->resume) {
            if (!t->o->quiet)
                fprintf(stderr, "seqeig: %s: run already %s at step %lld; nothing to do\n", out, status, step);
            *done = true;
            return EXIT_OK;
        }
        fprintf(stderr, "seqeig: %s holds a finished run (%s at step %lld); refusing to overwrite it (--force "
                        "retrains from scratch)\n",
                out, status, step);
        return EXIT_USAGE;
    }
    if (!t->o->resume) {
        fprintf(stderr, "seqeig: %s holds an unfinished run (%s, step %lld of %lld); use --resume to continue it "
                        "or --force to start over\n",
                out, status, step, total);
        return EXIT_USAGE;
    }
    *resume = true;
    return EXIT_OK;
}

/* Keys whose resolved values differ between the run being resumed (its
 * stored YAML, read with this build's schema: keys it predates get their
 * defaults) and the configuration given now, as "key: RUN -> NOW" items in
 * msg.  Returns how many differ, or -1 if the stored YAML does not load. */
static int config_differences(const Config *now, const char *old_yaml, const char *label, char *msg, size_t n)
{
    Config old;
    char err[600];
    if (config_load_yaml_text(&old, now->schema, old_yaml, label, err, sizeof err)) {
        config_free(&old);
        snprintf(msg, n, "%s", err);
        return -1;
    }
    int n_diff = 0;
    size_t used = 0;
    msg[0] = 0;
    for (int i = 0; i < config_count(now); i++) {
        if (config_item(now, i).ignored) continue;
        char *a = config_value_text_alloc(&old, i), *b = config_value_text_alloc(now, i);
        if (strcmp(a, b) != 0 && n_diff++ < 6 && used < n) {
            int k = snprintf(msg + used, n - used, "%s%s: %.200s in the run, %.200s now", n_diff > 1 ? "; " : "",
                             config_item(now, i).key, a, b);
            if (k > 0) used += (size_t)k;
        }
        free(a);
        free(b);
    }
    config_free(&old);
    return n_diff;
}

/* Load the checkpoint of o->out into the trainer (after setup). */
static int load_resume(Trainer *t)
{
    char err[1200];
    RunFile old;
    if (runfile_load(&old, t->o->out, &t->model.params, t->opt.m, t->opt.v, err, sizeof err)) {
        runfile_free(&old);
        fprintf(stderr, "seqeig: cannot resume: %s\n", err);
        return EXIT_USAGE; /* a damaged or foreign file: an input-file error */
    }
    int rc = EXIT_OK;
    char label[1100], diff[1500];
    snprintf(label, sizeof label, "%s:/config/yaml", t->o->out);
    const int n_diff = config_differences(t->c, old.config_yaml, label, diff, sizeof diff);
    if (n_diff < 0) {
        fprintf(stderr, "seqeig: cannot resume %s: its stored configuration does not load in this build: %s\n",
                t->o->out, diff);
        rc = EXIT_USAGE;
    } else if (n_diff > 0) {
        fprintf(stderr,
                "seqeig: cannot resume %s: %d setting%s differ%s from the run's (%s%s); give the run's values "
                "(--set key=value, or `seqeig info %s --config` as the config) or start over with --force\n",
                t->o->out, n_diff, n_diff > 1 ? "s" : "", n_diff > 1 ? "" : "s", diff, n_diff > 6 ? "; ..." : "",
                t->o->out);
        rc = EXIT_USAGE;
    } else if (old.samples != t->rf.samples || old.T != t->rf.T || old.layers != t->rf.layers) {
        fprintf(stderr, "seqeig: cannot resume %s: its spectra have another shape\n", t->o->out);
        rc = EXIT_RUNTIME;
    }
    if (rc) {
        runfile_free(&old);
        return rc;
    }
    if (old.threads != t->o->threads && !t->o->quiet)
        fprintf(stderr, "seqeig: note: %s ran with %lld threads, resuming with %d\n", t->o->out,
                (long long)old.threads, t->o->threads);
    t->opt.t = old.opt_step;
    /* Keep the identity of the run; take over its records. */
    old.config = t->c;
    old.threads = t->o->threads;
    snprintf(old.status, sizeof old.status, "running");
    old.error[0] = 0;
    runfile_free(&t->rf);
    t->rf = old;
    t->wall0 = old.wall_s;
    return EXIT_OK;
}

/* ------------------------------------------------------------ the run */

static int fail_run(Trainer *t, const char *fmt, double a, long long step)
{
    snprintf(t->rf.status, sizeof t->rf.status, "failed");
    snprintf(t->rf.error, sizeof t->rf.error, fmt, a, step);
    progress_end(t);
    fprintf(stderr, "seqeig: %s: %s\n", t->o->out, t->rf.error);
    save(t);
    return EXIT_RUNTIME;
}

static int run(Trainer *t)
{
    char target[4096], err[1200];
    if (runfile_write_target(t->o->out, target, sizeof target, err, sizeof err)) {
        fprintf(stderr, "seqeig: %s\n", err);
        return EXIT_USAGE;
    }
    const int lk = runlock_acquire(&t->lock, target, err, sizeof err);
    if (lk != 0) {
        fprintf(stderr, "seqeig: %s\n", err);
        return lk == 1 ? EXIT_USAGE : EXIT_RUNTIME;
    }
    bool resume, done;
    int rc = check_existing(t, &resume, &done);
    if (rc != EXIT_OK || done) return rc;
    if ((rc = setup(t)) != EXIT_OK) return rc;
    t->tty = isatty(STDERR_FILENO);
    clock_gettime(CLOCK_MONOTONIC, &t->t0);

    if (resume) {
        if ((rc = load_resume(t)) != EXIT_OK) return rc;
        if (!t->o->quiet)
            fprintf(stderr, "seqeig: resuming %s at step %lld of %lld\n", t->o->out, (long long)t->rf.step,
                    (long long)t->total);
    } else {
        runfile_utc_now(t->rf.created, sizeof t->rf.created);
        if (!t->o->quiet)
            fprintf(stderr, "seqeig: %s on %s, seed %llu, %zu parameters, %d threads -> %s\n", t->rf.model,
                    t->rf.task, (unsigned long long)t->seed, paramset_count(&t->model.params), t->o->threads,
                    t->o->out);
        if (compute_spectra(t, true, &t->rf.init)) return EXIT_RUNTIME;
        t->rf.step = 0;
        if (save(t)) return EXIT_RUNTIME;
    }

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    const int64_t start = t->rf.step;
    int64_t k = start;
    bool stopped = false;
    double loss = 0.0;
    while (k < t->total) {
        graph_begin(&t->g, (uint64_t)k, true, true);
        t->task->train_batch(t->task, k, t->B, &t->batch);
        paramset_zero_grad(&t->model.params);
        ModelBatch mb = model_batch(&t->batch);
        Tensor *logits = model_forward(&t->model, &t->g, &mb, NULL);
        Tensor *lt = op_cross_entropy(&t->g, logits, t->batch.targets, NULL);
        loss = (double)lt->data[0];
        graph_backward(&t->g, lt);
        double gn = t->clip > 0 ? clip_grad_norm_params(&t->model.params, t->clip)
                                : clip_global_norm(t->model.params.grad, t->model.params.total);
        if (!isfinite(loss)) return fail_run(t, "non-finite training loss (%g) at step %lld", loss, (long long)k + 1);
        if (!isfinite(gn)) return fail_run(t, "non-finite gradient norm (%g) at step %lld", gn, (long long)k + 1);
        double lr = lr_at(&t->sched, k);
        adamw_step_params(&t->opt, &t->model.params, lr);
        k++;
        t->rf.step = k;
        t->rf.loss_sum += loss;
        t->rf.loss_count++;
        if (k % t->log_every == 0 && runfile_add_train(&t->rf, k, loss, lr, gn))
            return out_of_memory("the training metrics", 32.0 * (double)t->rf.n_train);

        if (k % t->eval_every == 0 || k == t->total) {
            double tl, ta;
            evaluate(t, &tl, &ta);
            if (compute_spectra(t, false, NULL)) return EXIT_RUNTIME;
            double train_loss = t->rf.loss_count ? t->rf.loss_sum / (double)t->rf.loss_count : NAN;
            if (runfile_add_eval(&t->rf, k, train_loss, tl, ta, lr, wall_now(t), t->pmean, t->pstd))
                return out_of_memory("the evaluation metrics", 8.0 * (double)spectra_meter_bin_count(&t->spectra) *
                                                                   (double)t->rf.n_eval);
            t->rf.loss_sum = 0.0;
            t->rf.loss_count = 0;
            stopped = ta > t->stop;
            if (!stopped && k < t->total && save(t)) return EXIT_RUNTIME;
            progress(t, k, start, loss, true);
            if (stopped) break;
        } else {
            progress(t, k, start, loss, false);
        }
        if (g_interrupted || (t->o->max_steps >= 0 && k - start >= t->o->max_steps)) {
            progress_end(t);
            if (save(t)) return EXIT_RUNTIME;
            if (g_interrupted || !t->o->quiet)
                fprintf(stderr, "seqeig: %s at step %lld; %s saved, continue with --resume\n",
                        g_interrupted ? "interrupted" : "stopped (--max-steps)", (long long)k, t->o->out);
            return g_interrupted ? EXIT_INTERRUPTED : EXIT_OK;
        }
    }
    progress_end(t);
    if (compute_spectra(t, false, &t->rf.final)) return EXIT_RUNTIME;
    snprintf(t->rf.status, sizeof t->rf.status, "%s", stopped ? "stopped_early" : "completed");
    if (save(t)) return EXIT_RUNTIME;
    if (!t->o->quiet) {
        size_t i = t->rf.n_eval - 1;
        fprintf(stderr, "seqeig: %s at step %lld: test_acc %.4f, test_loss %.4f, %.1f s -> %s\n",
                stopped ? "stopped early" : "completed", (long long)k, t->rf.eval_test_acc[i],
                t->rf.eval_test_loss[i], t->rf.wall_s, t->o->out);
    }
    return EXIT_OK;
}

int train_run(const Config *c, const TrainOptions *o)
{
    Trainer t;
    memset(&t, 0, sizeof t);
    t.c = c;
    t.o = o;
    t.lock.fd = -1;
    g_interrupted = 0;
    int rc = run(&t);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    teardown(&t);
    return rc;
}
