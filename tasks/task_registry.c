/* The registry of tasks (task.h): the dataset._name_ of each, its keys
 * and its constructor.  Adding a task is its own files plus its line here
 * (docs/extending.md). */
#include <stdio.h>
#include <string.h>

#include "cifar.h"
#include "imdb.h"
#include "listops_task.h"
#include "mqar_task.h"
#include "seqcls.h"
#include "task.h"

/* One line per task, in the order their keys appear in a stored config.
 * An entry without a name registers keys that several tasks share. */
static const struct {
    const char *name;                  /* dataset._name_ */
    void (*keys_register)(ConfigSchema *s);
    Task *(*create)(const Config *c, uint64_t seed, char *err, size_t errlen);
} TASKS[] = {
    {"mqar", mqar_task_keys_register, mqar_task_create},
    {"listops", listops_task_keys_register, listops_task_create},
    {NULL, seqcls_keys_register, NULL}, /* the loaders of labelled sequences (cifar, imdb) */
    {"cifar", cifar_task_keys_register, cifar_task_create},
    {"imdb", imdb_task_keys_register, imdb_task_create},
};
#define N_TASKS (sizeof TASKS / sizeof TASKS[0])

void task_keys_register(ConfigSchema *s)
{
    const char *names[N_TASKS + 1];
    size_t n = 0;
    for (size_t i = 0; i < N_TASKS; i++)
        if (TASKS[i].name) names[n++] = TASKS[i].name;
    names[n] = NULL;
    config_schema_add_enum(s, "dataset._name_", names[0], names, 0);
    /* Free-form label and loader settings of the reference configs. */
    config_schema_add_str(s, "dataset.name", "MQAR", CONFIG_IGNORED);
    config_schema_add_str(s, "dataset.data_dir", "", 0); /* cifar, imdb: the user's copy */
    config_schema_add_bool(s, "dataset.fixed_size", true, CONFIG_IGNORED);
    for (size_t i = 0; i < N_TASKS; i++) TASKS[i].keys_register(s);
}

Task *task_create(const Config *c, uint64_t seed, char *err, size_t errlen)
{
    const char *name = config_str(c, "dataset._name_");
    for (size_t i = 0; i < N_TASKS; i++)
        if (TASKS[i].name && strcmp(TASKS[i].name, name) == 0) return TASKS[i].create(c, seed, err, errlen);
    snprintf(err, errlen, "dataset._name_ = '%s': unknown task", name);
    return NULL;
}
