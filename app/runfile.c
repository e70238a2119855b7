/* Run file: in-memory record and atomic whole-file writes (runfile.h). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runfile.h"
#include "spectra.h"
#include "version.h"

#define NB SPECTRA_NBINS

/* ------------------------------------------------------------ metric series
 *
 * The metric series of a run file, one row per evaluation (group EVAL) or
 * per logged training step (group TRAIN): where each lives in the file and
 * in RunFile.  Allocation, release, writing and reading all walk this table.
 * The first series of a group is its step, whose length says how many rows
 * the group has when a file is read. */
typedef enum { SERIES_EVAL, SERIES_TRAIN } SeriesGroup;
typedef struct SeriesDef {
    const char *path;
    SeriesGroup group;
    bool is_i64;      /* int64 (steps) or float64 */
    size_t field;     /* offsetof the array pointer in RunFile */
} SeriesDef;

#define SERIES(path, group, is_i64, field) {path, group, is_i64, offsetof(RunFile, field)}
static const SeriesDef SERIES_TABLE[] = {
    SERIES("/metrics/eval/step", SERIES_EVAL, true, eval_step),
    SERIES("/metrics/eval/train_loss", SERIES_EVAL, false, eval_train_loss),
    SERIES("/metrics/eval/test_loss", SERIES_EVAL, false, eval_test_loss),
    SERIES("/metrics/eval/test_acc", SERIES_EVAL, false, eval_test_acc),
    SERIES("/metrics/eval/lr", SERIES_EVAL, false, eval_lr),
    SERIES("/metrics/eval/wall_s", SERIES_EVAL, false, eval_wall),
    SERIES("/metrics/train/step", SERIES_TRAIN, true, train_step),
    SERIES("/metrics/train/loss", SERIES_TRAIN, false, train_loss),
    SERIES("/metrics/train/lr", SERIES_TRAIN, false, train_lr),
    SERIES("/metrics/train/grad_norm", SERIES_TRAIN, false, train_grad_norm),
};
#undef SERIES
#define N_SERIES (sizeof SERIES_TABLE / sizeof SERIES_TABLE[0])

static void **series_ptr(RunFile *r, const SeriesDef *d) { return (void **)((char *)r + d->field); }
static size_t series_elem(const SeriesDef *d) { return d->is_i64 ? sizeof(int64_t) : sizeof(double); }

void runfile_init(RunFile *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->status, sizeof r->status, "running");
    snprintf(r->method, sizeof r->method, "dsf");
}

static void spectrum_free(RunSpectrum *s)
{
    free(s->eig);
    free(s->mean);
    free(s->std);
    memset(s, 0, sizeof *s);
}

void runfile_free(RunFile *r)
{
    free(r->config_yaml);
    for (size_t k = 0; k < N_SERIES; k++) free(*series_ptr(r, &SERIES_TABLE[k]));
    free(r->inputs);
    free(r->mask);
    free(r->features);
    spectrum_free(&r->init);
    spectrum_free(&r->final);
    free(r->hist_step);
    free(r->hist_mean);
    free(r->hist_std);
    memset(r, 0, sizeof *r);
}

static size_t per_spectrum(const RunFile *r) { return (size_t)r->layers * r->heads * NB; }

static int spectrum_alloc(RunSpectrum *s, size_t n_eig, size_t n_pct)
{
    s->eig = calloc(n_eig ? n_eig : 1, sizeof(double));
    s->mean = calloc(n_pct, sizeof(double));
    s->std = calloc(n_pct, sizeof(double));
    return (s->eig && s->mean && s->std) ? 0 : -1;
}

int runfile_set_spectra_shape(RunFile *r, const char *method, int samples, int layers, int heads, int T,
                              int L)
{
    snprintf(r->method, sizeof r->method, "%s", method);
    r->samples = samples;
    r->layers = layers;
    r->heads = heads;
    r->T = T;
    r->L = L;
    free(r->inputs);
    free(r->mask);
    free(r->features);
    r->mask = NULL;
    r->features = NULL;
    r->input_dim = 0;
    spectrum_free(&r->init);
    spectrum_free(&r->final);
    r->inputs = calloc((size_t)samples * L + 1, sizeof(int32_t));
    size_t n_eig = (size_t)samples * layers * heads * T;
    if (!r->inputs || spectrum_alloc(&r->init, n_eig, per_spectrum(r)) ||
        spectrum_alloc(&r->final, n_eig, per_spectrum(r)))
        return -1;
    return 0;
}

/* Grow a row array to hold `need` rows of `width` elements of size `sz`. */
static int grow(void **p, size_t need, size_t width, size_t sz)
{
    void *q = realloc(*p, need * width * sz);
    if (!q) return -1;
    *p = q;
    return 0;
}

/* Every series of `group` to `cap` rows. */
static int grow_group(RunFile *r, SeriesGroup group, size_t cap)
{
    for (size_t k = 0; k < N_SERIES; k++)
        if (SERIES_TABLE[k].group == group &&
            grow(series_ptr(r, &SERIES_TABLE[k]), cap, 1, series_elem(&SERIES_TABLE[k])))
            return -1;
    return 0;
}

int runfile_add_eval(RunFile *r, int64_t step, double train_loss, double test_loss, double test_acc, double lr,
                     double wall_s, const double *pct_mean, const double *pct_std)
{
    if (r->n_eval == r->cap_eval) {
        size_t cap = r->cap_eval ? 2 * r->cap_eval : 64, w = per_spectrum(r);
        if (grow_group(r, SERIES_EVAL, cap) || grow((void **)&r->hist_step, cap, 1, sizeof(int64_t)) ||
            grow((void **)&r->hist_mean, cap, w ? w : 1, sizeof(double)) ||
            grow((void **)&r->hist_std, cap, w ? w : 1, sizeof(double)))
            return -1;
        r->cap_eval = r->cap_hist = cap;
    }
    size_t i = r->n_eval, w = per_spectrum(r);
    r->eval_step[i] = step;
    r->eval_train_loss[i] = train_loss;
    r->eval_test_loss[i] = test_loss;
    r->eval_test_acc[i] = test_acc;
    r->eval_lr[i] = lr;
    r->eval_wall[i] = wall_s;
    r->hist_step[i] = step;
    if (w) {
        memcpy(r->hist_mean + i * w, pct_mean, w * sizeof(double));
        memcpy(r->hist_std + i * w, pct_std, w * sizeof(double));
    }
    r->n_eval = r->n_hist = i + 1;
    return 0;
}

int runfile_add_train(RunFile *r, int64_t step, double loss, double lr, double grad_norm)
{
    if (r->n_train == r->cap_train) {
        size_t cap = r->cap_train ? 2 * r->cap_train : 256;
        if (grow_group(r, SERIES_TRAIN, cap)) return -1;
        r->cap_train = cap;
    }
    size_t i = r->n_train++;
    r->train_step[i] = step;
    r->train_loss[i] = loss;
    r->train_lr[i] = lr;
    r->train_grad_norm[i] = grad_norm;
    return 0;
}

void runfile_utc_now(char *buf, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ------------------------------------------------------------ writing */

#define TRY(x)                 \
    do {                       \
        if ((x) != 0) goto fail; \
    } while (0)

static int write_config(hid_t f, const RunFile *r, char *e)
{
    if (h5u_group(f, "/config", e)) return -1;
    if (r->config) {
        for (int i = 0; i < config_count(r->config); i++) {
            ConfigItem it = config_item(r->config, i);
            if (it.ignored) continue;
            int rc = 0;
            switch (it.type) {
            case CONFIG_INT: rc = h5u_attr_i64(f, "/config", it.key, it.value->i, e); break;
            case CONFIG_DOUBLE: rc = h5u_attr_f64(f, "/config", it.key, it.value->d, e); break;
            case CONFIG_BOOL: rc = h5u_attr_i8(f, "/config", it.key, it.value->b ? 1 : 0, e); break;
            default: rc = h5u_attr_string(f, "/config", it.key, it.value->s ? it.value->s : "", e); break;
            }
            if (rc) return -1;
        }
    }
    return h5u_write_string(f, "/config/yaml", r->config_yaml ? r->config_yaml : "", e);
}

static int write_spectrum(hid_t f, const RunFile *r, const char *when, const RunSpectrum *s, char *e)
{
    char name[64];
    size_t de[4] = {(size_t)r->samples, (size_t)r->layers, (size_t)r->heads, (size_t)r->T};
    size_t dp[3] = {(size_t)r->layers, (size_t)r->heads, NB};
    snprintf(name, sizeof name, "/spectra/%s/eig", when);
    if (h5u_write_f64(f, name, 4, de, s->eig, e)) return -1;
    snprintf(name, sizeof name, "/spectra/%s/percent_mean", when);
    if (h5u_write_f64(f, name, 3, dp, s->mean, e)) return -1;
    snprintf(name, sizeof name, "/spectra/%s/percent_std", when);
    return h5u_write_f64(f, name, 3, dp, s->std, e);
}

static int write_spectra(hid_t f, const RunFile *r, char *e)
{
    if (h5u_group(f, "/spectra", e)) return -1;
    if (h5u_attr_string(f, "/spectra", "method", r->method, e) ||
        h5u_attr_i64(f, "/spectra", "samples", r->samples, e) ||
        h5u_attr_i64(f, "/spectra", "layers", r->layers, e) ||
        h5u_attr_i64(f, "/spectra", "heads", r->heads, e) || h5u_attr_i64(f, "/spectra", "steps", r->T, e))
        return -1;
    size_t nt = SPECTRA_NTHRESH;
    if (h5u_write_f64(f, "/spectra/thresholds", 1, &nt, spectra_thresholds, e)) return -1;
    size_t di[2] = {(size_t)r->samples, (size_t)r->L};
    if (r->samples > 0 && h5u_write_i32(f, "/spectra/inputs", 2, di, r->inputs, e)) return -1;
    if (r->samples > 0 && r->mask && h5u_write_f32(f, "/spectra/mask", 2, di, r->mask, e)) return -1;
    size_t df[3] = {(size_t)r->samples, (size_t)r->L, (size_t)r->input_dim};
    if (r->samples > 0 && r->features && h5u_write_f32(f, "/spectra/features", 3, df, r->features, e)) return -1;
    if (r->init.present && write_spectrum(f, r, "init", &r->init, e)) return -1;
    if (r->final.present && write_spectrum(f, r, "final", &r->final, e)) return -1;
    size_t dh[4] = {r->n_hist, (size_t)r->layers, (size_t)r->heads, NB};
    if (h5u_write_series_i64(f, "/spectra/history/step", r->n_hist, r->hist_step, e) ||
        h5u_write_f64(f, "/spectra/history/percent_mean", 4, dh, r->hist_mean, e) ||
        h5u_write_f64(f, "/spectra/history/percent_std", 4, dh, r->hist_std, e))
        return -1;
    return 0;
}

/* Integrity of the checkpoint (docs/hdf5-format.md, "Integrity"): every
 * array carries the CRC-32 of its data (attribute crc32, written and
 * verified by h5util), and the groups /checkpoint and /checkpoint/optimizer
 * an attribute crc32 of their scalar attributes: the CRC-32 of the
 * little-endian bytes of step (int64), loss_sum (float64) and loss_count
 * (int64), and of the optimizer's step (int64).  A flipped bit anywhere in
 * them is then a clear error naming what is damaged, never a resumed run
 * with silently wrong weights.  Files of earlier builds have no crc32: they
 * are read as before. */
static uint32_t crc_le64(uint32_t crc, uint64_t bits)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(bits >> (8 * i));
    return h5u_crc32(crc, b, sizeof b);
}

static uint32_t checkpoint_attrs_crc(int64_t step, double loss_sum, int64_t loss_count)
{
    uint64_t bits;
    memcpy(&bits, &loss_sum, sizeof bits);
    return crc_le64(crc_le64(crc_le64(0, (uint64_t)step), bits), (uint64_t)loss_count);
}

/* The crc32 of group's attributes (`what`, for the message) against crc:
 * 0 if they match or the file has none, else -1 with a message. */
static int verify_attrs_crc(hid_t f, const char *group, const char *what, uint32_t crc, char *e)
{
    if (!h5u_attr_exists(f, group, H5U_CRC_ATTR)) return 0;
    uint32_t stored;
    if (h5u_get_attr_u32(f, group, H5U_CRC_ATTR, &stored, e)) return -1;
    if (stored != crc) {
        snprintf(e, H5U_ERR_LEN,
                 "%s is damaged: its attributes %s do not match the %s checksum stored with them (stored %08x, "
                 "values %08x)",
                 group, what, H5U_CRC_ATTR, (unsigned)stored, (unsigned)crc);
        return -1;
    }
    return 0;
}

/* One checkpoint array of parameter p into out: its shape must be the
 * model's (checked before anything is read); h5u_read_f32 then checks that
 * it holds floating-point numbers and verifies its crc32. */
static int read_checkpoint_array(hid_t f, const char *name, const Param *p, float *out, char *e)
{
    size_t dims[4];
    int nd;
    if (h5u_shape(f, name, 4, &nd, dims, e)) return -1;
    bool same = nd == p->t.ndim;
    for (int k = 0; same && k < nd; k++) same = dims[k] == (size_t)p->t.shape[k];
    if (!same) {
        snprintf(e, H5U_ERR_LEN, "checkpoint array '%s' has another shape than the model's parameter", name);
        return -1;
    }
    return h5u_read_f32(f, name, out, (size_t)p->t.numel, e);
}

static int write_checkpoint(hid_t f, const RunFile *r, const ParamSet *ps, const float *m, const float *v,
                            char *e)
{
    if (h5u_group(f, "/checkpoint/params", e)) return -1;
    if (h5u_attr_i64(f, "/checkpoint", "step", r->step, e) ||
        h5u_attr_f64(f, "/checkpoint", "loss_sum", r->loss_sum, e) ||
        h5u_attr_i64(f, "/checkpoint", "loss_count", r->loss_count, e) ||
        h5u_attr_u32(f, "/checkpoint", H5U_CRC_ATTR, checkpoint_attrs_crc(r->step, r->loss_sum, r->loss_count), e))
        return -1;
    char name[PARAM_NAME_MAX + 64];
    for (int i = 0; i < ps->n; i++) {
        const Param *p = ps->items[i];
        size_t dims[4];
        for (int k = 0; k < p->t.ndim; k++) dims[k] = (size_t)p->t.shape[k];
        snprintf(name, sizeof name, "/checkpoint/params/%s", p->name);
        if (h5u_write_f32(f, name, p->t.ndim, dims, ps->data + p->offset, e)) return -1;
        if (!m || !v) continue;
        snprintf(name, sizeof name, "/checkpoint/optimizer/exp_avg/%s", p->name);
        if (h5u_write_f32(f, name, p->t.ndim, dims, m + p->offset, e)) return -1;
        snprintf(name, sizeof name, "/checkpoint/optimizer/exp_avg_sq/%s", p->name);
        if (h5u_write_f32(f, name, p->t.ndim, dims, v + p->offset, e)) return -1;
    }
    if (m && v &&
        (h5u_attr_i64(f, "/checkpoint/optimizer", "step", r->opt_step, e) ||
         h5u_attr_u32(f, "/checkpoint/optimizer", H5U_CRC_ATTR, crc_le64(0, (uint64_t)r->opt_step), e)))
        return -1;
    return 0;
}

static int write_all(hid_t f, const RunFile *r, const ParamSet *ps, const float *m, const float *v, char *e)
{
    const char *root = "/";
    if (h5u_attr_string(f, root, "format", RUNFILE_FORMAT, e) ||
        h5u_attr_i64(f, root, "format_version", RUNFILE_FORMAT_VERSION, e) ||
        h5u_attr_string(f, root, "seqeig_version", SEQEIG_VERSION, e) ||
        h5u_attr_string(f, root, "task", r->task, e) || h5u_attr_string(f, root, "model", r->model, e) ||
        h5u_attr_i64(f, root, "seed", r->seed, e) || h5u_attr_string(f, root, "status", r->status, e) ||
        h5u_attr_string(f, root, "created", r->created, e) ||
        h5u_attr_string(f, root, "updated", r->updated, e) || h5u_attr_i64(f, root, "threads", r->threads, e) ||
        h5u_attr_i64(f, root, "step", r->step, e) || h5u_attr_i64(f, root, "total_steps", r->total_steps, e) ||
        h5u_attr_f64(f, root, "wall_s", r->wall_s, e))
        return -1;
    if (strcmp(r->status, "failed") == 0 && h5u_attr_string(f, root, "error", r->error, e)) return -1;
    if (write_config(f, r, e)) return -1;
    for (size_t k = 0; k < N_SERIES; k++) {
        const SeriesDef *d = &SERIES_TABLE[k];
        const size_t n = d->group == SERIES_EVAL ? r->n_eval : r->n_train;
        const void *data = *series_ptr((RunFile *)r, d);
        if (d->is_i64 ? h5u_write_series_i64(f, d->path, n, data, e) : h5u_write_series_f64(f, d->path, n, data, e))
            return -1;
    }
    if (write_spectra(f, r, e)) return -1;
    if (ps && write_checkpoint(f, r, ps, m, v, e)) return -1;
    return 0;
}

int runfile_write_target(const char *path, char *target, size_t n, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) != 0) { /* nothing there yet */
        if (snprintf(target, n, "%s", path) >= (int)n) {
            snprintf(err, errlen, "%.200s...: path too long", path);
            return -1;
        }
        return 0;
    }
    if (S_ISLNK(st.st_mode)) {
        char *real = realpath(path, NULL);
        if (!real) {
            snprintf(err, errlen, "%s: a symbolic link to nothing that exists (%s)", path, strerror(errno));
            return -1;
        }
        const int k = snprintf(target, n, "%s", real);
        free(real);
        if (k >= (int)n) {
            snprintf(err, errlen, "%s: target path too long", path);
            return -1;
        }
        if (stat(target, &st) != 0) {
            snprintf(err, errlen, "%s: %s", target, strerror(errno));
            return -1;
        }
    } else if (snprintf(target, n, "%s", path) >= (int)n) {
        snprintf(err, errlen, "%.200s...: path too long", path);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s is not a regular file (%s); seqeig writes run files only to regular files", target,
                 S_ISDIR(st.st_mode)    ? "a directory"
                 : S_ISCHR(st.st_mode)  ? "a character device"
                 : S_ISBLK(st.st_mode)  ? "a block device"
                 : S_ISFIFO(st.st_mode) ? "a FIFO"
                 : S_ISSOCK(st.st_mode) ? "a socket"
                                        : "not a file");
        return -1;
    }
    return 0;
}

/* Build the file in memory with `fill`, write it to "<target>.tmp" (write
 * + fsync, every error with its errno) and rename that over the target:
 * the file on disk is always a complete one, from before or after. */
typedef int (*FileFill)(hid_t f, const void *ctx, char *e);

static int save_atomically(const char *path, const char *what, FileFill fill, const void *ctx, char *err,
                           size_t errlen)
{
    char target[4096], tmp[4100], e[H5U_ERR_LEN] = "";
    if (runfile_write_target(path, target, sizeof target, err, errlen)) return -1;
    snprintf(tmp, sizeof tmp, "%s.tmp", target);
    hid_t f = h5u_create_in_memory(e);
    if (f < 0) {
        snprintf(err, errlen, "%s: cannot write %s: %s", path, what, e);
        return -1;
    }
    if (fill(f, ctx, e) != 0) {
        H5Fclose(f);
        snprintf(err, errlen, "%s: cannot write %s: %s", path, what, e[0] ? e : "out of memory");
        return -1;
    }
    if (h5u_write_image(f, tmp, e) != 0) { /* closes f; removes a partial tmp */
        snprintf(err, errlen, "%s: cannot write %s: %s", path, what, e);
        return -1;
    }
    if (rename(tmp, target) != 0) {
        snprintf(err, errlen, "%s: cannot write %s: rename: %s", path, what, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

typedef struct SaveCtx {
    const RunFile *r;
    const ParamSet *ps;
    const float *m, *v;
    const char *source;
} SaveCtx;

static int fill_run(hid_t f, const void *ctx, char *e)
{
    const SaveCtx *c = ctx;
    return write_all(f, c->r, c->ps, c->m, c->v, e);
}

int runfile_save(RunFile *r, const char *path, const ParamSet *ps, const float *m, const float *v, char *err,
                 size_t errlen)
{
    runfile_utc_now(r->updated, sizeof r->updated);
    const SaveCtx c = {.r = r, .ps = ps, .m = m, .v = v};
    return save_atomically(path, "run file", fill_run, &c, err, errlen);
}

static int fill_spectra(hid_t f, const void *ctx, char *e)
{
    const SaveCtx *c = ctx;
    const RunFile *r = c->r;
    return h5u_attr_string(f, "/", "format", RUNFILE_SPECTRA_FORMAT, e) ||
                   h5u_attr_i64(f, "/", "format_version", RUNFILE_FORMAT_VERSION, e) ||
                   h5u_attr_string(f, "/", "seqeig_version", SEQEIG_VERSION, e) ||
                   h5u_attr_string(f, "/", "source", c->source, e) || h5u_attr_string(f, "/", "task", r->task, e) ||
                   h5u_attr_string(f, "/", "model", r->model, e) || h5u_attr_i64(f, "/", "seed", r->seed, e) ||
                   h5u_attr_i64(f, "/", "step", r->step, e) || write_spectra(f, r, e)
               ? -1
               : 0;
}

int runfile_save_spectra(RunFile *r, const char *path, const char *source, char *err, size_t errlen)
{
    const SaveCtx c = {.r = r, .source = source};
    return save_atomically(path, "spectra file", fill_spectra, &c, err, errlen);
}

/* ------------------------------------------------------------ reading */

static int read_series_i64(hid_t f, const char *name, int64_t **out, size_t *n, char *e)
{
    int nd;
    size_t dims[4];
    if (h5u_shape(f, name, 1, &nd, dims, e)) return -1;
    *n = dims[0];
    *out = malloc((dims[0] ? dims[0] : 1) * sizeof(int64_t));
    if (!*out) return -1;
    return dims[0] ? h5u_read_i64(f, name, *out, dims[0], e) : 0;
}

static int read_series_f64(hid_t f, const char *name, double **out, size_t n, char *e)
{
    *out = malloc((n ? n : 1) * sizeof(double));
    if (!*out) return -1;
    return n ? h5u_read_f64(f, name, *out, n, e) : 0;
}

static int read_root(hid_t f, RunFile *r, char *e)
{
    char fmt[32];
    if (h5u_get_attr_string(f, "/", "format", fmt, sizeof fmt, e) || strcmp(fmt, RUNFILE_FORMAT) != 0) {
        snprintf(e, H5U_ERR_LEN, "not a seqeig run file (no format = \"%s\" attribute)", RUNFILE_FORMAT);
        return -1;
    }
    int64_t fv = 0;
    if (h5u_get_attr_i64(f, "/", "format_version", &fv, e)) return -1;
    if (fv != RUNFILE_FORMAT_VERSION) {
        snprintf(e, H5U_ERR_LEN, "run file format_version %lld, this seqeig reads %d", (long long)fv,
                 RUNFILE_FORMAT_VERSION);
        return -1;
    }
    if (h5u_get_attr_string(f, "/", "seqeig_version", r->version, sizeof r->version, e) ||
        h5u_get_attr_string(f, "/", "task", r->task, sizeof r->task, e) ||
        h5u_get_attr_string(f, "/", "model", r->model, sizeof r->model, e) ||
        h5u_get_attr_string(f, "/", "status", r->status, sizeof r->status, e) ||
        h5u_get_attr_string(f, "/", "created", r->created, sizeof r->created, e) ||
        h5u_get_attr_string(f, "/", "updated", r->updated, sizeof r->updated, e) ||
        h5u_get_attr_i64(f, "/", "seed", &r->seed, e) || h5u_get_attr_i64(f, "/", "threads", &r->threads, e) ||
        h5u_get_attr_i64(f, "/", "step", &r->step, e) ||
        h5u_get_attr_i64(f, "/", "total_steps", &r->total_steps, e) ||
        h5u_get_attr_f64(f, "/", "wall_s", &r->wall_s, e))
        return -1;
    if (h5u_attr_exists(f, "/", "error")) h5u_get_attr_string(f, "/", "error", r->error, sizeof r->error, e);
    /* values a run file can hold: anything else is damage, not a run to continue */
    static const char *const STATUSES[] = {"running", "completed", "stopped_early", "failed"};
    bool known = false;
    for (size_t i = 0; i < sizeof STATUSES / sizeof STATUSES[0]; i++) known |= strcmp(r->status, STATUSES[i]) == 0;
    if (!known) {
        snprintf(e, H5U_ERR_LEN, "status '%s' is not one of running, completed, stopped_early, failed", r->status);
        return -1;
    }
    if (r->total_steps < 1 || r->total_steps > RUNFILE_MAX_STEPS || r->step < 0 || r->step > r->total_steps) {
        snprintf(e, H5U_ERR_LEN, "step %lld of total_steps %lld: not a valid position (0 <= step <= total_steps)",
                 (long long)r->step, (long long)r->total_steps);
        return -1;
    }
    if (r->seed < 0 || r->seed > INT32_MAX || r->threads < 0 || r->threads > 1 << 16 || !(r->wall_s >= 0)) {
        snprintf(e, H5U_ERR_LEN, "seed %lld, threads %lld or wall_s %g out of range", (long long)r->seed,
                 (long long)r->threads, r->wall_s);
        return -1;
    }
    return 0;
}

/* Steps of a series: ascending, each in [1, last] (a run's rows are
 * appended as it goes). */
static int check_steps(const char *what, const int64_t *step, size_t n, int64_t last, char *e)
{
    for (size_t i = 0; i < n; i++)
        if (step[i] < 1 || step[i] > last || (i > 0 && step[i] <= step[i - 1])) {
            snprintf(e, H5U_ERR_LEN, "%s row %zu has step %lld: steps must rise within [1, %lld]", what, i,
                     (long long)step[i], (long long)last);
            return -1;
        }
    return 0;
}

static int read_spectrum(hid_t f, RunFile *r, const char *when, RunSpectrum *s, char *e)
{
    char name[64];
    snprintf(name, sizeof name, "/spectra/%s/eig", when);
    if (!h5u_exists(f, name)) return 0;
    size_t n_eig = (size_t)r->samples * r->layers * r->heads * r->T;
    if (h5u_read_f64(f, name, s->eig, n_eig, e)) return -1;
    snprintf(name, sizeof name, "/spectra/%s/percent_mean", when);
    if (h5u_read_f64(f, name, s->mean, per_spectrum(r), e)) return -1;
    snprintf(name, sizeof name, "/spectra/%s/percent_std", when);
    if (h5u_read_f64(f, name, s->std, per_spectrum(r), e)) return -1;
    s->present = true;
    return 0;
}

static int read_spectra(hid_t f, RunFile *r, char *e)
{
    int64_t S, Ly, H, T;
    char method[8];
    if (h5u_get_attr_string(f, "/spectra", "method", method, sizeof method, e) ||
        h5u_get_attr_i64(f, "/spectra", "samples", &S, e) || h5u_get_attr_i64(f, "/spectra", "layers", &Ly, e) ||
        h5u_get_attr_i64(f, "/spectra", "heads", &H, e) || h5u_get_attr_i64(f, "/spectra", "steps", &T, e))
        return -1;
    if (strcmp(method, "dsf") != 0 && strcmp(method, "paper") != 0) {
        snprintf(e, H5U_ERR_LEN, "/spectra method '%s' is not dsf or paper", method);
        return -1;
    }
    int L = 0, nd;
    size_t dims[4];
    if (S > 0) {
        if (h5u_shape(f, "/spectra/inputs", 2, &nd, dims, e)) return -1;
        if (nd != 2 || dims[0] != (size_t)S || dims[1] == 0 || dims[1] > RUNFILE_MAX_DIM) {
            snprintf(e, H5U_ERR_LEN, "/spectra/inputs does not hold the %lld analysis sequences", (long long)S);
            return -1;
        }
        L = (int)dims[1];
    }
    /* Sizes come from attributes: bound them before anything is allocated. */
    const int64_t lim = RUNFILE_MAX_DIM;
    if (S < 0 || S > lim || Ly < 1 || Ly > lim || H < 1 || H > lim || T < 0 || T > lim ||
        (double)S * (double)Ly * (double)H * (double)T > (double)RUNFILE_MAX_ELEMENTS) {
        snprintf(e, H5U_ERR_LEN, "/spectra shape (samples %lld, layers %lld, heads %lld, steps %lld) is not plausible",
                 (long long)S, (long long)Ly, (long long)H, (long long)T);
        return -1;
    }
    if (runfile_set_spectra_shape(r, method, (int)S, (int)Ly, (int)H, (int)T, L)) return -1;
    if (S > 0 && h5u_read_i32(f, "/spectra/inputs", r->inputs, (size_t)S * L, e)) return -1;
    if (S > 0 && h5u_exists(f, "/spectra/mask")) {
        r->mask = malloc((size_t)S * L * sizeof(float));
        if (!r->mask || h5u_read_f32(f, "/spectra/mask", r->mask, (size_t)S * L, e)) return -1;
    }
    if (S > 0 && h5u_exists(f, "/spectra/features")) {
        if (h5u_shape(f, "/spectra/features", 3, &nd, dims, e)) return -1;
        if (nd != 3 || dims[0] != (size_t)S || dims[1] != (size_t)L || dims[2] == 0 || dims[2] > 1u << 20) {
            snprintf(e, H5U_ERR_LEN, "/spectra/features has shape (%zu, %zu, %zu), expected (%d, %d, F)",
                     dims[0], nd > 1 ? dims[1] : 0, nd > 2 ? dims[2] : 0, (int)S, L);
            return -1;
        }
        r->input_dim = (int)dims[2];
        r->features = malloc((size_t)S * L * r->input_dim * sizeof(float));
        if (!r->features || h5u_read_f32(f, "/spectra/features", r->features, (size_t)S * L * r->input_dim, e))
            return -1;
    }
    if (read_spectrum(f, r, "init", &r->init, e) || read_spectrum(f, r, "final", &r->final, e)) return -1;
    if (read_series_i64(f, "/spectra/history/step", &r->hist_step, &r->n_hist, e)) return -1;
    size_t w = per_spectrum(r);
    r->hist_mean = malloc((r->n_hist * w + 1) * sizeof(double));
    r->hist_std = malloc((r->n_hist * w + 1) * sizeof(double));
    if (!r->hist_mean || !r->hist_std) return -1;
    if (r->n_hist && (h5u_read_f64(f, "/spectra/history/percent_mean", r->hist_mean, r->n_hist * w, e) ||
                      h5u_read_f64(f, "/spectra/history/percent_std", r->hist_std, r->n_hist * w, e)))
        return -1;
    return 0;
}

static int read_checkpoint(hid_t f, RunFile *r, ParamSet *ps, float *m, float *v, char *e)
{
    int64_t step;
    if (h5u_get_attr_i64(f, "/checkpoint", "step", &step, e) ||
        h5u_get_attr_f64(f, "/checkpoint", "loss_sum", &r->loss_sum, e) ||
        h5u_get_attr_i64(f, "/checkpoint", "loss_count", &r->loss_count, e) ||
        verify_attrs_crc(f, "/checkpoint", "step, loss_sum, loss_count",
                         checkpoint_attrs_crc(step, r->loss_sum, r->loss_count), e))
        return -1;
    /* written together with the root attributes: they must agree */
    if (step != r->step || r->loss_count < 0 || r->loss_count > step || !isfinite(r->loss_sum)) {
        snprintf(e, H5U_ERR_LEN, "/checkpoint (step %lld, loss_count %lld, loss_sum %g) does not match the run at step %lld",
                 (long long)step, (long long)r->loss_count, r->loss_sum, (long long)r->step);
        return -1;
    }
    char name[PARAM_NAME_MAX + 64];
    for (int i = 0; i < ps->n; i++) {
        const Param *p = ps->items[i];
        snprintf(name, sizeof name, "/checkpoint/params/%s", p->name);
        if (read_checkpoint_array(f, name, p, ps->data + p->offset, e)) return -1;
        if (!m || !v) continue;
        snprintf(name, sizeof name, "/checkpoint/optimizer/exp_avg/%s", p->name);
        if (read_checkpoint_array(f, name, p, m + p->offset, e)) return -1;
        snprintf(name, sizeof name, "/checkpoint/optimizer/exp_avg_sq/%s", p->name);
        if (read_checkpoint_array(f, name, p, v + p->offset, e)) return -1;
    }
    if (m && v &&
        (h5u_get_attr_i64(f, "/checkpoint/optimizer", "step", &r->opt_step, e) ||
         verify_attrs_crc(f, "/checkpoint/optimizer", "step", crc_le64(0, (uint64_t)r->opt_step), e)))
        return -1;
    if (m && v && (r->opt_step < 0 || r->opt_step > r->step)) {
        snprintf(e, H5U_ERR_LEN, "/checkpoint/optimizer step %lld is not within the run's %lld steps",
                 (long long)r->opt_step, (long long)r->step);
        return -1;
    }
    return 0;
}

static hid_t open_run(const char *path, char *err, size_t errlen)
{
    if (access(path, R_OK) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return H5I_INVALID_HID;
    }
    h5u_quiet();
    if (H5Fis_hdf5(path) <= 0) {
        snprintf(err, errlen, "%s: not an HDF5 file (or truncated)", path);
        return H5I_INVALID_HID;
    }
    char e[H5U_ERR_LEN];
    hid_t f = h5u_open(path, 0, e);
    if (f < 0) snprintf(err, errlen, "%s: %s", path, e);
    return f;
}

int runfile_peek(RunFile *r, const char *path, char *err, size_t errlen)
{
    runfile_init(r);
    hid_t f = open_run(path, err, errlen);
    if (f < 0) return -1;
    char e[H5U_ERR_LEN] = "";
    int rc = read_root(f, r, e);
    H5Fclose(f);
    if (rc) snprintf(err, errlen, "%s: %s", path, e);
    return rc;
}

int runfile_load(RunFile *r, const char *path, ParamSet *ps, float *m, float *v, char *err, size_t errlen)
{
    runfile_init(r);
    hid_t f = open_run(path, err, errlen);
    if (f < 0) return -1;
    char e[H5U_ERR_LEN] = "";
    TRY(read_root(f, r, e));
    TRY(h5u_read_string(f, "/config/yaml", &r->config_yaml, e));
    for (size_t k = 0; k < N_SERIES; k++) {
        const SeriesDef *d = &SERIES_TABLE[k];
        size_t *rows = d->group == SERIES_EVAL ? &r->n_eval : &r->n_train;
        if (d->is_i64) /* a group's step series comes first and sets its length */
            TRY(read_series_i64(f, d->path, (int64_t **)series_ptr(r, d), rows, e));
        else
            TRY(read_series_f64(f, d->path, (double **)series_ptr(r, d), *rows, e));
    }
    r->cap_eval = r->n_eval;
    r->cap_train = r->n_train;
    TRY(read_spectra(f, r, e));
    r->cap_hist = r->n_hist;
    if (r->n_hist != r->n_eval) {
        snprintf(e, sizeof e, "spectra/history has %zu rows but metrics/eval %zu", r->n_hist, r->n_eval);
        goto fail;
    }
    TRY(check_steps("/metrics/eval", r->eval_step, r->n_eval, r->step, e));
    TRY(check_steps("/metrics/train", r->train_step, r->n_train, r->step, e));
    if (r->n_hist && memcmp(r->hist_step, r->eval_step, r->n_hist * sizeof(int64_t)) != 0) {
        snprintf(e, sizeof e, "spectra/history/step differs from metrics/eval/step");
        goto fail;
    }
    if (ps) TRY(read_checkpoint(f, r, ps, m, v, e));
    H5Fclose(f);
    return 0;
fail:
    H5Fclose(f);
    snprintf(err, errlen, "%s: %s", path, e[0] ? e : "out of memory");
    return -1;
}
