/* The registry of model families (model.h): one line per family.  Adding a
 * family is its own file plus its line here (docs/extending.md). */
#include <string.h>

#include "model.h"

extern const ModelFamily transformer_family; /* models/transformer.c */
extern const ModelFamily mamba2_family;      /* models/mamba2.c */

static const ModelFamily *const FAMILIES[] = {
    &transformer_family,
    &mamba2_family,
};

#define N_FAMILIES ((int)(sizeof FAMILIES / sizeof FAMILIES[0]))

int model_family_count(void) { return N_FAMILIES; }

const ModelFamily *model_family_at(int i) { return i >= 0 && i < N_FAMILIES ? FAMILIES[i] : NULL; }

const ModelFamily *model_family_by_layer(const char *layer)
{
    for (int i = 0; i < N_FAMILIES; i++)
        if (strcmp(FAMILIES[i]->layer, layer) == 0) return FAMILIES[i];
    return NULL;
}

const ModelFamily *model_family_by_name(const char *name)
{
    for (int i = 0; i < N_FAMILIES; i++)
        for (const char *const *n = FAMILIES[i]->names; *n; n++)
            if (strcmp(*n, name) == 0) return FAMILIES[i];
    return NULL;
}
