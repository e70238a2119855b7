#include "h5util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FAIL(...)                                          \
    do {                                                   \
        if (err) snprintf(err, H5U_ERR_LEN, __VA_ARGS__);  \
        return -1;                                         \
    } while (0)

void h5u_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

hid_t h5u_create(const char *path, char *err)
{
    h5u_quiet();
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0 && err) snprintf(err, H5U_ERR_LEN, "cannot create HDF5 file '%s'", path);
    return f;
}

hid_t h5u_create_in_memory(char *err)
{
    h5u_quiet();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    /* the core driver without a backing store: nothing touches the disk */
    hid_t f = fapl < 0 || H5Pset_fapl_core(fapl, (size_t)1 << 20, 0) < 0
                  ? H5I_INVALID_HID
                  : H5Fcreate("seqeig-in-memory.h5", H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (fapl >= 0) H5Pclose(fapl);
    if (f < 0 && err) snprintf(err, H5U_ERR_LEN, "cannot create an HDF5 file in memory");
    return f;
}

/* All of buf to fd; 0, or -1 with errno set. */
static int write_fully(int fd, const char *buf, size_t n)
{
    while (n > 0) {
        const ssize_t k = write(fd, buf, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            if (k == 0) errno = EIO;
            return -1;
        }
        buf += k;
        n -= (size_t)k;
    }
    return 0;
}

int h5u_write_image(hid_t f, const char *path, char *err)
{
    char *buf = NULL;
    ssize_t size = H5Fflush(f, H5F_SCOPE_GLOBAL) < 0 ? -1 : H5Fget_file_image(f, NULL, 0);
    if (size > 0) {
        buf = malloc((size_t)size);
        if (buf && H5Fget_file_image(f, buf, (size_t)size) != size) size = -1;
    }
    const bool closed = H5Fclose(f) >= 0;
    if (size > 0 && !buf) FAIL("out of memory for the file image (%zd bytes)", size);
    if (size <= 0 || !closed) {
        free(buf);
        FAIL("cannot build the HDF5 file image");
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = fd < 0 || write_fully(fd, buf, (size_t)size) != 0 || fsync(fd) != 0 ? -1 : 0;
    int saved = errno;
    if (fd >= 0 && close(fd) != 0 && rc == 0) rc = -1, saved = errno;
    free(buf);
    if (rc) {
        if (fd >= 0) unlink(path);
        FAIL("%s: %s", path, strerror(saved));
    }
    return 0;
}

hid_t h5u_open(const char *path, int writable, char *err)
{
    h5u_quiet();
    hid_t f = H5Fopen(path, writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0 && err) snprintf(err, H5U_ERR_LEN, "cannot open HDF5 file '%s'", path);
    return f;
}

static hid_t link_props(void)
{
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    return lcpl;
}

int h5u_group(hid_t f, const char *name, char *err)
{
    if (h5u_exists(f, name)) return 0;
    hid_t lcpl = link_props();
    hid_t gid = H5Gcreate2(f, name, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    if (gid < 0) FAIL("cannot create group '%s'", name);
    H5Gclose(gid);
    return 0;
}

static int write_any(hid_t f, const char *name, hid_t file_type, hid_t mem_type, int ndim,
                     const size_t *dims, const void *data, char *err)
{
    hsize_t hd[8];
    if (ndim < 0 || ndim > 8) FAIL("dataset '%s': bad rank %d", name, ndim);
    for (int i = 0; i < ndim; i++) hd[i] = dims[i];
    hid_t space = ndim ? H5Screate_simple(ndim, hd, NULL) : H5Screate(H5S_SCALAR);
    hid_t lcpl = link_props();
    if (H5Lexists(f, name, H5P_DEFAULT) > 0) H5Ldelete(f, name, H5P_DEFAULT);
    hid_t ds = H5Dcreate2(f, name, file_type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    int rc = 0;
    if (ds < 0 || H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) rc = -1;
    if (ds >= 0) H5Dclose(ds);
    H5Pclose(lcpl);
    H5Sclose(space);
    if (rc) FAIL("cannot write dataset '%s'", name);
    return 0;
}

int h5u_write_f32(hid_t f, const char *name, int ndim, const size_t *dims, const float *data, char *err)
{
    return write_any(f, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ndim, dims, data, err);
}

int h5u_write_f64(hid_t f, const char *name, int ndim, const size_t *dims, const double *data, char *err)
{
    return write_any(f, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, ndim, dims, data, err);
}

int h5u_write_i32(hid_t f, const char *name, int ndim, const size_t *dims, const int32_t *data, char *err)
{
    return write_any(f, name, H5T_STD_I32LE, H5T_NATIVE_INT32, ndim, dims, data, err);
}

static int write_series(hid_t f, const char *name, hid_t file_type, hid_t mem_type, size_t n,
                        const void *data, char *err)
{
    hsize_t dim = n, maxdim = H5S_UNLIMITED, chunk = 256;
    hid_t space = H5Screate_simple(1, &dim, &maxdim);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, &chunk);
    hid_t lcpl = link_props();
    if (H5Lexists(f, name, H5P_DEFAULT) > 0) H5Ldelete(f, name, H5P_DEFAULT);
    hid_t ds = H5Dcreate2(f, name, file_type, space, lcpl, dcpl, H5P_DEFAULT);
    int rc = 0;
    if (ds < 0 || (n > 0 && H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)) rc = -1;
    if (ds >= 0) H5Dclose(ds);
    H5Pclose(lcpl);
    H5Pclose(dcpl);
    H5Sclose(space);
    if (rc) FAIL("cannot write dataset '%s'", name);
    return 0;
}

int h5u_write_series_f64(hid_t f, const char *name, size_t n, const double *data, char *err)
{
    return write_series(f, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, n, data, err);
}

int h5u_write_series_i64(hid_t f, const char *name, size_t n, const int64_t *data, char *err)
{
    return write_series(f, name, H5T_STD_I64LE, H5T_NATIVE_INT64, n, data, err);
}

static hid_t utf8_string_type(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

int h5u_write_string(hid_t f, const char *name, const char *text, char *err)
{
    hid_t t = utf8_string_type();
    int rc = write_any(f, name, t, t, 0, NULL, &text, err);
    H5Tclose(t);
    return rc;
}

int h5u_exists(hid_t f, const char *name)
{
    /* H5Lexists needs every intermediate link to exist: check each prefix */
    char buf[512];
    snprintf(buf, sizeof buf, "%s", name);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (H5Lexists(f, buf, H5P_DEFAULT) <= 0) return 0;
        *p = '/';
    }
    return H5Lexists(f, buf, H5P_DEFAULT) > 0;
}

int h5u_shape(hid_t f, const char *name, int max_dims, int *ndim, size_t *dims, char *err)
{
    if (!h5u_exists(f, name)) FAIL("dataset '%s' not found", name);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) FAIL("cannot open dataset '%s'", name);
    hid_t sp = H5Dget_space(ds);
    int nd = H5Sget_simple_extent_ndims(sp);
    hsize_t hd[16];
    int rc = 0;
    if (nd < 0 || nd > max_dims || nd > 16) rc = -1;
    else {
        H5Sget_simple_extent_dims(sp, hd, NULL);
        for (int i = 0; i < nd; i++) dims[i] = hd[i];
        *ndim = nd;
    }
    H5Sclose(sp);
    H5Dclose(ds);
    if (rc) FAIL("dataset '%s' has rank %d (at most %d expected)", name, nd, max_dims);
    return 0;
}

static int read_any(hid_t f, const char *name, hid_t mem_type, void *out, size_t n, char *err)
{
    if (!h5u_exists(f, name)) FAIL("dataset '%s' not found", name);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) FAIL("cannot open dataset '%s'", name);
    hid_t sp = H5Dget_space(ds);
    hssize_t count = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    int rc = 0;
    if (count < 0 || (size_t)count != n) rc = -2;
    else if (H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) rc = -1;
    H5Dclose(ds);
    if (rc == -2) FAIL("dataset '%s' has %lld elements, expected %zu", name, (long long)count, n);
    if (rc) FAIL("cannot read dataset '%s'", name);
    return 0;
}

int h5u_read_f32(hid_t f, const char *name, float *out, size_t n, char *err)
{
    return read_any(f, name, H5T_NATIVE_FLOAT, out, n, err);
}
int h5u_read_f64(hid_t f, const char *name, double *out, size_t n, char *err)
{
    return read_any(f, name, H5T_NATIVE_DOUBLE, out, n, err);
}
int h5u_read_i32(hid_t f, const char *name, int32_t *out, size_t n, char *err)
{
    return read_any(f, name, H5T_NATIVE_INT32, out, n, err);
}

int h5u_read_i64(hid_t f, const char *name, int64_t *out, size_t n, char *err)
{
    return read_any(f, name, H5T_NATIVE_INT64, out, n, err);
}

int h5u_read_string(hid_t f, const char *name, char **out, char *err)
{
    *out = NULL;
    if (!h5u_exists(f, name)) FAIL("dataset '%s' not found", name);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) FAIL("cannot open dataset '%s'", name);
    /* exactly one variable-length string (anything else would not fit `text`) */
    hid_t ft = H5Dget_type(ds), sp = H5Dget_space(ds);
    const bool one_vlen = ft >= 0 && sp >= 0 && H5Tget_class(ft) == H5T_STRING && H5Tis_variable_str(ft) > 0 &&
                          H5Sget_simple_extent_npoints(sp) == 1;
    if (ft >= 0) H5Tclose(ft);
    if (sp >= 0) H5Sclose(sp);
    if (!one_vlen) {
        H5Dclose(ds);
        FAIL("dataset '%s' is not one variable-length string", name);
    }
    hid_t t = utf8_string_type();
    char *text = NULL;
    int rc = H5Dread(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, &text) < 0 ? -1 : 0;
    if (rc == 0 && text) {
        *out = strdup(text);
        H5free_memory(text);
    }
    H5Tclose(t);
    H5Dclose(ds);
    if (rc || !*out) FAIL("cannot read string dataset '%s'", name);
    return 0;
}

static int write_attr(hid_t f, const char *obj, const char *name, hid_t type, const void *value, char *err)
{
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    if (o < 0) FAIL("cannot open object '%s' for attribute '%s'", obj, name);
    if (H5Aexists(o, name) > 0) H5Adelete(o, name);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(o, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (a < 0 || H5Awrite(a, type, value) < 0) ? -1 : 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Oclose(o);
    if (rc) FAIL("cannot write attribute '%s' on '%s'", name, obj);
    return 0;
}

int h5u_attr_string(hid_t f, const char *obj, const char *name, const char *value, char *err)
{
    hid_t t = utf8_string_type();
    int rc = write_attr(f, obj, name, t, &value, err);
    H5Tclose(t);
    return rc;
}

int h5u_attr_i64(hid_t f, const char *obj, const char *name, int64_t value, char *err)
{
    return write_attr(f, obj, name, H5T_NATIVE_INT64, &value, err);
}

int h5u_attr_f64(hid_t f, const char *obj, const char *name, double value, char *err)
{
    return write_attr(f, obj, name, H5T_NATIVE_DOUBLE, &value, err);
}

int h5u_attr_i8(hid_t f, const char *obj, const char *name, int8_t value, char *err)
{
    return write_attr(f, obj, name, H5T_NATIVE_INT8, &value, err);
}

int h5u_attr_exists(hid_t f, const char *obj, const char *name)
{
    if (strcmp(obj, "/") != 0 && !h5u_exists(f, obj)) return 0;
    return H5Aexists_by_name(f, obj, name, H5P_DEFAULT) > 0;
}

/* Whether attribute a holds exactly one value (a scalar, or an array of
 * one element): anything else must not be read into one variable. */
static bool attr_is_single(hid_t a)
{
    hid_t sp = H5Aget_space(a);
    if (sp < 0) return false;
    const hssize_t n = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    return n == 1;
}

/* One number: an integer or floating-point attribute holding one value. */
static int read_attr(hid_t f, const char *obj, const char *name, hid_t type, void *out, char *err)
{
    if (!h5u_attr_exists(f, obj, name)) FAIL("attribute '%s' of '%s' not found", name, obj);
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) FAIL("cannot open attribute '%s' of '%s'", name, obj);
    hid_t ft = H5Aget_type(a);
    const H5T_class_t cls = ft >= 0 ? H5Tget_class(ft) : H5T_NO_CLASS;
    if (ft >= 0) H5Tclose(ft);
    int rc = -2;
    if ((cls == H5T_INTEGER || cls == H5T_FLOAT) && attr_is_single(a)) rc = H5Aread(a, type, out) < 0 ? -1 : 0;
    H5Aclose(a);
    if (rc == -2) FAIL("attribute '%s' of '%s' is not a single number", name, obj);
    if (rc) FAIL("cannot read attribute '%s' of '%s'", name, obj);
    return 0;
}

int h5u_get_attr_string(hid_t f, const char *obj, const char *name, char *out, size_t n, char *err)
{
    if (n) out[0] = 0;
    if (!h5u_attr_exists(f, obj, name)) FAIL("attribute '%s' of '%s' not found", name, obj);
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) FAIL("cannot open attribute '%s' of '%s'", name, obj);
    hid_t ft = H5Aget_type(a);
    int rc = -1;
    if (ft >= 0 && H5Tget_class(ft) == H5T_STRING && attr_is_single(a)) {
        if (H5Tis_variable_str(ft) > 0) {
            hid_t t = utf8_string_type();
            char *text = NULL;
            if (H5Aread(a, t, &text) >= 0 && text) {
                snprintf(out, n, "%s", text);
                H5free_memory(text);
                rc = 0;
            }
            H5Tclose(t);
        } else {
            size_t len = H5Tget_size(ft);
            char *buf = calloc(len + 1, 1);
            hid_t t = H5Tcopy(H5T_C_S1);
            H5Tset_size(t, len + 1);
            if (buf && H5Aread(a, t, buf) >= 0) {
                snprintf(out, n, "%s", buf);
                rc = 0;
            }
            H5Tclose(t);
            free(buf);
        }
    }
    H5Tclose(ft);
    H5Aclose(a);
    if (rc) FAIL("attribute '%s' of '%s' is not a single readable string", name, obj);
    return 0;
}

int h5u_get_attr_i64(hid_t f, const char *obj, const char *name, int64_t *out, char *err)
{
    return read_attr(f, obj, name, H5T_NATIVE_INT64, out, err);
}

int h5u_get_attr_f64(hid_t f, const char *obj, const char *name, double *out, char *err)
{
    return read_attr(f, obj, name, H5T_NATIVE_DOUBLE, out, err);
}
