#include "schedule.h"

#include <math.h>
#include <stdio.h>

LrSchedule lr_schedule_constant(double lr)
{
    return (LrSchedule){.lr = lr, .eta_min = LR_ETA_MIN_DEFAULT, .unit = LR_PER_STEP};
}

int lr_schedule_check(const LrSchedule *s, char *err, size_t errlen)
{
    if (!(s->lr >= 0.0) || isinf(s->lr)) {
        snprintf(err, errlen, "learning rate must be a finite number >= 0 (got %g)", s->lr);
        return -1;
    }
    if (s->warmup < 0) {
        snprintf(err, errlen, "warmup must be >= 0 (got %lld)", (long long)s->warmup);
        return -1;
    }
    if (s->cosine && s->total <= 0) {
        snprintf(err, errlen, "cosine annealing needs total > 0 (got %lld)", (long long)s->total);
        return -1;
    }
    if (s->cosine && (!(s->eta_min >= 0.0) || isinf(s->eta_min))) {
        snprintf(err, errlen, "eta_min must be a finite number >= 0 (got %g)", s->eta_min);
        return -1;
    }
    if (s->unit == LR_PER_EPOCH && s->steps_per_epoch <= 0) {
        snprintf(err, errlen, "per-epoch schedule needs steps_per_epoch > 0 (got %lld)",
                 (long long)s->steps_per_epoch);
        return -1;
    }
    if (s->unit != LR_PER_STEP && s->unit != LR_PER_EPOCH) {
        snprintf(err, errlen, "unknown schedule unit %d", (int)s->unit);
        return -1;
    }
    return 0;
}

double lr_at_unit(const LrSchedule *s, int64_t i)
{
    if (i < 0) i = 0;
    double lr = s->lr;
    if (s->cosine) {
        int64_t k = i < s->total ? i : s->total;
        lr = s->eta_min + (s->lr - s->eta_min) * (1.0 + cos(M_PI * (double)k / (double)s->total)) / 2.0;
    }
    if (s->warmup > 0 && i + 1 < s->warmup) lr = (double)(i + 1) / (double)s->warmup * lr;
    return lr;
}

double lr_at(const LrSchedule *s, int64_t k)
{
    if (s->unit == LR_PER_EPOCH && s->steps_per_epoch > 0) return lr_at_unit(s, k / s->steps_per_epoch);
    return lr_at_unit(s, k);
}
