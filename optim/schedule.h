/* Learning-rate schedule: linear warmup times cosine annealing.
 *
 * For unit index i (an optimizer step, or an epoch for LR_PER_EPOCH):
 *
 *     warm(i)   = min(1, (i+1) / W)                       (W = warmup; 0 = no warmup: 1)
 *     cosine(i) = eta_min + (lr - eta_min) * (1 + cos(pi * i / T)) / 2
 *                                                         (T = total; i >= T counts as T)
 *                 or lr when cosine is off
 *     lr(i)     = warm(i) * cosine(i)
 *
 * With cosine off and W = 0 the rate is the constant lr.  The cosine part
 * is torch's CosineAnnealingLR closed form (T_max = T) with the same order
 * of double operations; it is held at eta_min from i = T on instead of
 * rising again along the cosine.  Index i = 0 is the rate of the first
 * optimizer update, so warmup gives lr/W, 2lr/W, ..., lr.
 *
 * LR_PER_EPOCH evaluates the same formulas at epoch e = k / steps_per_epoch
 * (integer division) for optimizer step k, with W and T counted in epochs:
 * the rate is constant within an epoch (torch schedulers stepped once per
 * epoch). */
#ifndef SEQEIG_SCHEDULE_H
#define SEQEIG_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LR_ETA_MIN_DEFAULT 5e-6

typedef enum LrUnit { LR_PER_STEP = 0, LR_PER_EPOCH = 1 } LrUnit;

typedef struct LrSchedule {
    double lr;                /* base learning rate */
    int64_t warmup;           /* W, in units; 0 = no warmup */
    bool cosine;              /* cosine annealing on/off */
    int64_t total;            /* T, in units (required > 0 when cosine) */
    double eta_min;           /* cosine floor */
    LrUnit unit;
    int64_t steps_per_epoch;  /* LR_PER_EPOCH only, > 0 */
} LrSchedule;

/* Constant rate lr, per step, eta_min = LR_ETA_MIN_DEFAULT. */
LrSchedule lr_schedule_constant(double lr);

/* 0 if the settings are usable, else -1 with a message in err (size errlen)
 * naming the offending field and value. */
int lr_schedule_check(const LrSchedule *s, char *err, size_t errlen);

/* Rate of optimizer update k (0-based), converting k to epochs if needed. */
double lr_at(const LrSchedule *s, int64_t k);
/* The formulas above at unit index i (a step or an epoch); i < 0 counts as 0. */
double lr_at_unit(const LrSchedule *s, int64_t i);

#endif
