/* The `model:` section of a run config (reference study key names):
 * registration in a ConfigSchema and conversion to a ModelConfig. */
#ifndef SEQEIG_MODEL_KEYS_H
#define SEQEIG_MODEL_KEYS_H

#include <stddef.h>

#include "../src/config.h"
#include "model.h"

void model_keys_register(ConfigSchema *s);

/* Fill mc from the resolved config.  Returns 0, or -1 with one message
 * naming the key and where it was set (file:line, or the config's path) in err. */
int model_keys_to_config(const Config *c, ModelConfig *mc, char *err, size_t errlen);

#endif
