/* Task registry and batch buffers (task.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "listops_task.h"
#include "cifar.h"
#include "imdb.h"
#include "mqar_task.h"
#include "seqcls.h"
#include "task.h"

static const char *const TASK_NAMES[] = {"mqar", "listops", "cifar", "imdb", NULL};

void task_keys_register(ConfigSchema *s)
{
    config_schema_add_enum(s, "dataset._name_", "mqar", TASK_NAMES, 0);
    /* Free-form label and loader settings of the reference configs. */
    config_schema_add_str(s, "dataset.name", "MQAR", CONFIG_IGNORED);
    config_schema_add_str(s, "dataset.data_dir", "", 0); /* cifar, imdb: the user's copy */
    config_schema_add_bool(s, "dataset.fixed_size", true, CONFIG_IGNORED);
    mqar_task_keys_register(s);
    listops_task_keys_register(s);
    seqcls_keys_register(s);
    cifar_task_keys_register(s);
    imdb_task_keys_register(s);
}

Task *task_create(const Config *c, uint64_t seed, char *err, size_t errlen)
{
    const char *name = config_str(c, "dataset._name_");
    if (strcmp(name, "mqar") == 0) return mqar_task_create(c, seed, err, errlen);
    if (strcmp(name, "listops") == 0) return listops_task_create(c, seed, err, errlen);
    if (strcmp(name, "cifar") == 0) return cifar_task_create(c, seed, err, errlen);
    if (strcmp(name, "imdb") == 0) return imdb_task_create(c, seed, err, errlen);
    snprintf(err, errlen, "dataset._name_ = '%s': unknown task", name);
    return NULL;
}

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
