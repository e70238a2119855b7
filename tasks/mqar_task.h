/* MQAR as a Task (task.h): config keys and batches. */
#ifndef SEQEIG_MQAR_TASK_H
#define SEQEIG_MQAR_TASK_H

#include "task.h"

void mqar_task_keys_register(ConfigSchema *s);
Task *mqar_task_create(const Config *c, uint64_t seed, char *err, size_t errlen);

#endif
