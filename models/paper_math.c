/* float32 helpers of the "paper" spectra method (paper_math.h). */
#include "paper_math.h"

#include "../src/ops.h"

Tensor *paper_linear_rows(Graph *g, Tensor *x, const Param *W, const Param *b, int row0, int n)
{
    const int in = W->t.shape[1];
    Tensor *w = tensor_wrap(g, W->t.data + (size_t)row0 * in, 2, (int[]){n, in});
    Tensor *bb = b ? tensor_wrap(g, b->t.data + row0, 1, (int[]){n}) : NULL;
    return op_linear(g, x, w, bb);
}
