/* Thin helpers over the HDF5 C API for writing and reading whole datasets
 * and attributes by path (intermediate groups are created as needed).
 * Every function returns 0 on success and -1 on failure, with a message
 * naming the file and object in `err` (HDF5's own error stack is silenced). */
#ifndef SEQEIG_H5UTIL_H
#define SEQEIG_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#define H5U_ERR_LEN 512

/* Silence HDF5's automatic error printing (we report our own). */
void h5u_quiet(void);

/* Create (truncate) or open a file. Returns a file id or H5I_INVALID_HID. */
hid_t h5u_create(const char *path, char *err);
/* A new HDF5 file held in memory (core driver, no backing store), to be
 * written out whole with h5u_write_image. */
hid_t h5u_create_in_memory(char *err);
/* Close the in-memory file f (always) and write its image to path with
 * write + fsync, so every error, a full disk included, is seen here with
 * its errno and the HDF5 library never holds a half-written file.  A
 * failed write removes path.  0, or -1 with a message. */
int h5u_write_image(hid_t f, const char *path, char *err);
/* h5u_open first checks the file's global heap (where variable-length
 * strings live; HDF5 stores it without checksums and trusts it): a
 * damaged one is refused with a message instead of crashing the library. */
hid_t h5u_open(const char *path, int writable, char *err);

/* Integrity (docs/hdf5-format.md): every dataset written by the h5u_write_*
 * functions carries attribute H5U_CRC_ATTR, a uint32: the CRC-32 (as
 * Python's zlib.crc32) of its data as stored, the little-endian bytes of
 * its elements in row-major order (a string dataset: its UTF-8 bytes).
 * The h5u_read_* functions verify it when present (files of earlier builds
 * have none) and refuse a mismatch as damage, naming the dataset.  They
 * also refuse a dataset of another type class (a string or compound read
 * as numbers, floats as integers) before reading anything. */
#define H5U_CRC_ATTR "crc32"
/* CRC-32 (IEEE 802.3, zlib's) of n bytes, continuing from crc (0 to start). */
uint32_t h5u_crc32(uint32_t crc, const void *data, size_t n);

/* Create a group (and its parents) if it does not exist yet. */
int h5u_group(hid_t f, const char *name, char *err);

/* Whole datasets: `dims` has `ndim` entries. */
int h5u_write_f32(hid_t f, const char *name, int ndim, const size_t *dims, const float *data, char *err);
int h5u_write_f64(hid_t f, const char *name, int ndim, const size_t *dims, const double *data, char *err);
int h5u_write_i32(hid_t f, const char *name, int ndim, const size_t *dims, const int32_t *data, char *err);
/* 1-D datasets of n rows (n may be 0), chunked with unlimited maximum size
 * so that readers see them as extendible series. */
int h5u_write_series_f64(hid_t f, const char *name, size_t n, const double *data, char *err);
int h5u_write_series_i64(hid_t f, const char *name, size_t n, const int64_t *data, char *err);
int h5u_write_string(hid_t f, const char *name, const char *text, char *err);

/* Shape of a dataset (ndim <= max_dims) and whole-dataset reads converting
 * to the requested type. `n` is the capacity of `out` in elements. */
int h5u_shape(hid_t f, const char *name, int max_dims, int *ndim, size_t *dims, char *err);
int h5u_read_f32(hid_t f, const char *name, float *out, size_t n, char *err);
int h5u_read_f64(hid_t f, const char *name, double *out, size_t n, char *err);
int h5u_read_i32(hid_t f, const char *name, int32_t *out, size_t n, char *err);
int h5u_read_i64(hid_t f, const char *name, int64_t *out, size_t n, char *err);
/* A scalar string dataset; caller frees *out. */
int h5u_read_string(hid_t f, const char *name, char **out, char *err);
int h5u_exists(hid_t f, const char *name);

/* Scalar attributes on an object (path "/" for the file root). */
int h5u_attr_string(hid_t f, const char *obj, const char *name, const char *value, char *err);
int h5u_attr_i64(hid_t f, const char *obj, const char *name, int64_t value, char *err);
int h5u_attr_f64(hid_t f, const char *obj, const char *name, double value, char *err);
int h5u_attr_i8(hid_t f, const char *obj, const char *name, int8_t value, char *err);
int h5u_attr_u32(hid_t f, const char *obj, const char *name, uint32_t value, char *err);
/* Scalar attribute reads (converted to the requested type); a string
 * attribute is copied into out (size n, truncated).  -1 if absent. */
int h5u_attr_exists(hid_t f, const char *obj, const char *name);
int h5u_get_attr_string(hid_t f, const char *obj, const char *name, char *out, size_t n, char *err);
int h5u_get_attr_i64(hid_t f, const char *obj, const char *name, int64_t *out, char *err);
int h5u_get_attr_f64(hid_t f, const char *obj, const char *name, double *out, char *err);
/* Exactly a 32-bit unsigned integer (a checksum: no conversion accepted). */
int h5u_get_attr_u32(hid_t f, const char *obj, const char *name, uint32_t *out, char *err);

#endif
