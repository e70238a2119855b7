#include <stdio.h>
#include <stdlib.h>

#include "../ops.h"

_Noreturn void op_shape_error(const char *op, const char *what, const Tensor *a, const Tensor *b)
{
    char sa[64] = "", sb[64] = "";
    if (a) tensor_shape_str(a, sa, sizeof sa);
    if (b) tensor_shape_str(b, sb, sizeof sb);
    fprintf(stderr, "seqeig: %s: %s %s %s\n", op, what, sa, sb);
    abort();
}
