/* ListOps as a Task (task.h): config keys and padded classification batches. */
#ifndef SEQEIG_LISTOPS_TASK_H
#define SEQEIG_LISTOPS_TASK_H

#include "task.h"

void listops_task_keys_register(ConfigSchema *s);
Task *listops_task_create(const Config *c, uint64_t seed, char *err, size_t errlen);

#endif
