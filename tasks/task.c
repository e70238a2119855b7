/* Batch buffers and task release (task.h). */
#include <stdlib.h>
#include <string.h>

#include "task.h"

void task_free(Task *t)
{
    if (t && t->destroy) t->destroy(t);
}

int task_batch_alloc(TaskBatch *b, int cap_B, int L, int input_dim)
{
    memset(b, 0, sizeof *b);
    size_t n = (size_t)cap_B * (size_t)L;
    b->tokens = malloc(n * sizeof *b->tokens);
    b->rows = b->rows_buf = malloc(n * sizeof *b->rows);
    b->targets = malloc(n * sizeof *b->targets);
    b->scratch = malloc(n * sizeof *b->scratch);
    b->mask_buf = malloc(n * sizeof *b->mask_buf);
    if (input_dim > 0) b->features = malloc(n * (size_t)input_dim * sizeof *b->features);
    if (!b->tokens || !b->rows || !b->targets || !b->scratch || !b->mask_buf || (input_dim > 0 && !b->features)) {
        task_batch_free(b);
        return -1;
    }
    b->cap_B = cap_B;
    b->L = L;
    return 0;
}

void task_batch_free(TaskBatch *b)
{
    free(b->tokens);
    free(b->features);
    free(b->mask_buf); /* mask is NULL or points into it */
    free(b->rows_buf); /* rows is NULL (classification) or points into it */
    free(b->targets);
    free(b->scratch);
    memset(b, 0, sizeof *b);
}
