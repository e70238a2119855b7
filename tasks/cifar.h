/* Sequential CIFAR-10 (LRA "Image") from the user's copy of the CIFAR-10
 * binary version (cifar-10-binary.tar.gz): nothing is downloaded.
 *
 * Files in dataset.data_dir (or in its subdirectory cifar-10-batches-bin/):
 * data_batch_1.bin .. data_batch_5.bin (training, in that order) and
 * test_batch.bin.  Each is a sequence of 3073-byte records: 1 label byte
 * (0-9), then the 32x32 red plane, green plane and blue plane, each row
 * by row.
 *
 * A sequence is the grayscale image, row by row (1024 tokens 0..255, vocab
 * 256), as the reference (torchvision Grayscale on the PIL image, i.e.
 * PIL's convert("L"); then ToTensor and (x * 255).long(), which gives the
 * gray byte back exactly for all 256 values):
 *     gray = (19595 R + 38470 G + 7471 B + 32768) >> 16
 * (ITU-R 601-2 weights 0.299, 0.587, 0.114 in 16-bit fixed point, rounded).
 * 10 classes, one label per sequence, no padding (mask NULL).
 *
 * tokenize: false (the reference's setting for norm attention and Mamba-2)
 * gives the model float inputs instead (input_dim 1, for a Linear(1, d)
 * input layer): the gray value through torchvision's ToTensor and
 * Normalize(122.6/255, 61.0/255) in float32, cifar_feature() below.  The
 * tokens stay in the batch as the raw record.
 *
 * Keys (reference names): dataset.data_dir, dataset.grayscale,
 * dataset.tokenize, dataset.augment, dataset.val_split (-1 = 0.1),
 * dataset.seed (42, the split seed).  grayscale: false (RGB) and augment:
 * true are not implemented and are errors. */
#ifndef SEQEIG_CIFAR_H
#define SEQEIG_CIFAR_H

#include <stdint.h>

#include "seqcls.h"
#include "task.h"

#define CIFAR_RECORD 3073
#define CIFAR_PIXELS 1024
#define CIFAR_CLASSES 10

static inline int32_t cifar_gray(uint8_t r, uint8_t g, uint8_t b)
{
    return (int32_t)(((uint32_t)r * 19595u + (uint32_t)g * 38470u + (uint32_t)b * 7471u + 0x8000u) >> 16);
}

/* Normalised float pixel of gray value v, float32 step by step as torch:
 * (v / 255 - mean) / std with mean = 122.6/255, std = 61.0/255 rounded to
 * float (no fused multiply-add: this file is compiled without contraction). */
static inline float cifar_feature(int32_t v)
{
    const float mean = (float)(122.6 / 255.0), std = (float)(61.0 / 255.0);
    const float x = (float)v / 255.0f;
    return (x - mean) / std;
}

/* Append every record of the batch file `path` to s (width 1) as a
 * grayscale sequence with its label.  Errors (cannot open, size not a
 * positive multiple of 3073, label > 9, read error) name the path. */
int cifar_read_file(const char *path, SeqSet *s, char *err, size_t errlen);

void cifar_task_keys_register(ConfigSchema *s);
Task *cifar_task_create(const Config *c, uint64_t seed, char *err, size_t errlen);

#endif
