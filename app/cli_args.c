/* Flag parsing helpers (cli_args.h). */
#include "cli_args.h"

#include <stdlib.h>

int cli_parse_int(const char *s, long long lo, long long hi, long long *out)
{
    if (!s || !*s) return -1;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}
