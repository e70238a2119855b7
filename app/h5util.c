#include "h5util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FAIL(...)                                          \
    do {                                                   \
        if (err) snprintf(err, H5U_ERR_LEN, __VA_ARGS__);  \
        return -1;                                         \
    } while (0)

void h5u_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* The HDF5 file format new files are written in (docs/hdf5-format.md,
 * "Integrity").  HDF5's default, the 1.6-compatible format, keeps its
 * metadata (superblock, object headers with the attributes, group
 * indexes) without checksums, so one flipped bit in a header was read as
 * a wrong address or size and crashed the library (SIGSEGV in H5HG_read).
 * The 1.8 format stores a checksum with every such structure and HDF5
 * verifies it on each read: a damaged header is an error, not a crash.
 * Upper bound 1.8 as well, so every HDF5 since 1.8 (2008) reads the files. */
static void set_file_format(hid_t fapl)
{
    if (fapl >= 0) H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18);
}

hid_t h5u_create(const char *path, char *err)
{
    h5u_quiet();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    set_file_format(fapl);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (fapl >= 0) H5Pclose(fapl);
    if (f < 0 && err) snprintf(err, H5U_ERR_LEN, "cannot create HDF5 file '%s'", path);
    return f;
}

hid_t h5u_create_in_memory(char *err)
{
    h5u_quiet();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    set_file_format(fapl);
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

/* Jenkins' lookup3 hash ("hashlittle", initial value 0): the checksum the
 * HDF5 file format puts on its metadata. */
#define ROT32(x, k) (((x) << (k)) | ((x) >> (32 - (k))))
static uint32_t lookup3(const unsigned char *k, size_t n)
{
    uint32_t a, b, c;
    a = b = c = 0xdeadbeefu + (uint32_t)n;
    for (; n > 12; n -= 12, k += 12) {
        a += k[0] | (uint32_t)k[1] << 8 | (uint32_t)k[2] << 16 | (uint32_t)k[3] << 24;
        b += k[4] | (uint32_t)k[5] << 8 | (uint32_t)k[6] << 16 | (uint32_t)k[7] << 24;
        c += k[8] | (uint32_t)k[9] << 8 | (uint32_t)k[10] << 16 | (uint32_t)k[11] << 24;
        a -= c, a ^= ROT32(c, 4), c += b;
        b -= a, b ^= ROT32(a, 6), a += c;
        c -= b, c ^= ROT32(b, 8), b += a;
        a -= c, a ^= ROT32(c, 16), c += b;
        b -= a, b ^= ROT32(a, 19), a += c;
        c -= b, c ^= ROT32(b, 4), b += a;
    }
    if (n == 0) return c;
    uint32_t w[3] = {0, 0, 0};
    for (size_t i = 0; i < n; i++) w[i / 4] += (uint32_t)k[i] << (8 * (i % 4));
    a += w[0], b += w[1], c += w[2];
    c ^= b, c -= ROT32(b, 14);
    a ^= c, a -= ROT32(c, 11);
    b ^= a, b -= ROT32(a, 25);
    c ^= b, c -= ROT32(b, 16);
    a ^= c, a -= ROT32(c, 4);
    b ^= a, b -= ROT32(a, 14);
    c ^= b, c -= ROT32(b, 24);
    return c;
}

/* HDF5 1.10's H5Fget_file_image clears the "open for writing" flags of a
 * version 2 or 3 superblock (the 1.8 format: set_file_format) in the image
 * but leaves the checksum computed with them set, and no HDF5 then opens
 * the file ("incorrect metadata checksum").  Recompute it: signature (8),
 * version, offset and length sizes, flags (4), four addresses, checksum. */
static void fix_superblock_checksum(unsigned char *buf, size_t size)
{
    static const unsigned char SIG[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    if (size < 12 || memcmp(buf, SIG, sizeof SIG) != 0 || (buf[8] != 2 && buf[8] != 3)) return;
    const size_t n = 12 + 4 * (size_t)buf[9];
    if (n + 4 > size) return;
    const uint32_t sum = lookup3(buf, n);
    for (int i = 0; i < 4; i++) buf[n + (size_t)i] = (unsigned char)(sum >> (8 * i));
}

int h5u_write_image(hid_t f, const char *path, char *err)
{
    char *buf = NULL;
    ssize_t size = H5Fflush(f, H5F_SCOPE_GLOBAL) < 0 ? -1 : H5Fget_file_image(f, NULL, 0);
    if (size > 0) {
        buf = malloc((size_t)size);
        if (buf && H5Fget_file_image(f, buf, (size_t)size) != size) size = -1;
        if (buf && size > 0) fix_superblock_checksum((unsigned char *)buf, (size_t)size);
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

/* Why HDF5's last call failed, from its error stack (kept even when not
 * printed): " (HDF5: <the innermost error's description>)", e.g. " (HDF5:
 * incorrect metadata checksum after all read attempts)" for a damaged
 * header, or "" when the stack is empty.  Call it before any other HDF5
 * call (each one clears the stack).  buf holds H5U_CAUSE_LEN bytes. */
#define H5U_CAUSE_LEN 200
static herr_t innermost(unsigned n, const H5E_error2_t *e, void *data)
{
    (void)n;
    char *desc = data;
    if (!desc[0] && e && e->desc && e->desc[0]) snprintf(desc, H5U_CAUSE_LEN - 16, "%s", e->desc);
    return 0;
}

static const char *h5_cause(char *buf)
{
    char desc[H5U_CAUSE_LEN - 16] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, desc);
    for (char *c = desc; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
    if (desc[0]) snprintf(buf, H5U_CAUSE_LEN, " (HDF5: %s)", desc);
    else buf[0] = 0;
    return buf;
}

/* ------------------------------------------------------------ global heap
 *
 * Variable-length strings (every string attribute and /config/yaml) live in
 * the file's global heap collections, which no HDF5 file format version
 * protects with a checksum, and HDF5 1.10 trusts their sizes: one flipped
 * bit there made H5HG_read copy from outside the collection (SIGSEGV) and a
 * zero object size would make it loop forever.  So h5u_open walks every
 * collection the way HDF5 does (format: the HDF5 file format
 * specification, "Global Heap") and refuses the file unless each is
 * consistent: every object inside its collection, the objects filling it
 * exactly, no object index twice.  A collection starts with "GCOL",
 * version 1 and three reserved (zero) bytes; HDF5 checks only the first
 * five, so a collection whose reserved bytes are damaged is still read
 * (fuzz/fuzz_runfile.c found one: H5HG_read copied 20 bytes past it), and
 * those five bytes are what is searched over the whole file (by chance in
 * numeric data: 2^-40 per position, and then almost surely refused as a
 * damaged collection), and file lengths are taken as 8 bytes (HDF5's
 * default, and what seqeig writes). */
#define GCOL_HEADER 16 /* signature, version, reserved, collection size */
#define GCOL_OBJ_HEADER 16 /* index, reference count, reserved, object size */

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* All of n bytes at offset off, or -1. */
static int read_at(int fd, unsigned char *buf, size_t n, off_t off)
{
    while (n > 0) {
        const ssize_t k = pread(fd, buf, n, off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        buf += k;
        n -= (size_t)k;
        off += k;
    }
    return 0;
}

/* The collection at byte `at` (its header already matched), size bytes to EOF. */
static int check_collection(int fd, off_t at, uint64_t file_size, char *err)
{
    unsigned char head[GCOL_HEADER];
    if (read_at(fd, head, sizeof head, at)) FAIL("cannot read the global heap collection at byte %lld", (long long)at);
    const uint64_t size = le64(head + 8);
    if (size < GCOL_HEADER + GCOL_OBJ_HEADER || size > file_size - (uint64_t)at)
        FAIL("damaged file: the global heap collection at byte %lld claims %llu bytes (%llu to the end of the file)",
             (long long)at, (unsigned long long)size, (unsigned long long)(file_size - (uint64_t)at));
    unsigned char *c = malloc(size);
    unsigned char *seen = calloc(65536 / 8, 1);
    int rc = !c || !seen ? -2 : read_at(fd, c, size, at);
    uint64_t p = GCOL_HEADER, need = 0;
    unsigned idx = 0;
    while (rc == 0 && p < size) {
        if (size - p < GCOL_OBJ_HEADER) break; /* a tail too small for an object: free space */
        idx = (unsigned)c[p] | (unsigned)c[p + 1] << 8;
        const uint64_t osz = le64(c + p + 8);
        /* an object takes its header and its data padded to 8 bytes; the
         * free-space object (index 0) gives its whole size, header included */
        need = idx == 0 ? osz : osz > size ? UINT64_MAX : GCOL_OBJ_HEADER + ((osz + 7) & ~(uint64_t)7);
        if (need < GCOL_OBJ_HEADER || need > size - p) rc = -3;
        else if (idx > 0 && (seen[idx / 8] >> (idx % 8) & 1)) rc = -4;
        else seen[idx / 8] |= (unsigned char)(1u << (idx % 8)), p += need;
    }
    free(c);
    free(seen);
    if (rc == -2) FAIL("out of memory for the global heap collection at byte %lld (%llu bytes)", (long long)at,
                       (unsigned long long)size);
    if (rc == -1) FAIL("cannot read the global heap collection at byte %lld", (long long)at);
    if (rc == -3)
        FAIL("damaged file: object %u of the global heap collection at byte %lld (%llu bytes) claims %llu bytes at "
             "offset %llu, past the collection's end",
             idx, (long long)at, (unsigned long long)size, (unsigned long long)need, (unsigned long long)p);
    if (rc == -4)
        FAIL("damaged file: the global heap collection at byte %lld holds object %u twice", (long long)at, idx);
    return 0;
}

/* Every global heap collection of the file open as fd. */
static int check_global_heap(int fd, char *err)
{
    static const unsigned char SIG[5] = {'G', 'C', 'O', 'L', 1}; /* what HDF5 checks */
    enum { BLOCK = 1 << 20 };
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 0) FAIL("cannot stat the file (%s)", strerror(errno));
    const uint64_t file_size = (uint64_t)st.st_size;
    unsigned char *buf = malloc(BLOCK + 7); /* a block and its overlap with the next */
    if (!buf) FAIL("out of memory");
    int rc = 0;
    /* blocks overlapping by 7 bytes (>= sizeof SIG - 1), so that no signature is cut in two */
    for (uint64_t at = 0; rc == 0 && at < file_size; at += BLOCK) {
        const size_t n = (size_t)(file_size - at < BLOCK + 7 ? file_size - at : BLOCK + 7);
        if (read_at(fd, buf, n, (off_t)at)) {
            rc = -1;
            if (err) snprintf(err, H5U_ERR_LEN, "cannot read the file at byte %llu", (unsigned long long)at);
            break;
        }
        for (const unsigned char *q = buf; rc == 0 && (q = memmem(q, n - (size_t)(q - buf), SIG, sizeof SIG));
             q++)
            if ((size_t)(q - buf) < BLOCK) rc = check_collection(fd, (off_t)(at + (uint64_t)(q - buf)), file_size, err);
    }
    free(buf);
    return rc;
}

hid_t h5u_open(const char *path, int writable, char *err)
{
    h5u_quiet();
    hid_t f = H5Fopen(path, writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        char why[H5U_CAUSE_LEN];
        if (err) snprintf(err, H5U_ERR_LEN, "cannot open HDF5 file '%s'%s", path, h5_cause(why));
        return f;
    }
    /* the very file HDF5 reads (the sec2 driver's descriptor), else the path */
    int *vfd = NULL, fd = -1, own = -1;
    hid_t fapl = H5Fget_access_plist(f);
    if (fapl >= 0 && H5Pget_driver(fapl) == H5FD_SEC2 && H5Fget_vfd_handle(f, fapl, (void **)&vfd) >= 0 && vfd)
        fd = *vfd;
    else
        fd = own = open(path, O_RDONLY | O_CLOEXEC);
    if (fapl >= 0) H5Pclose(fapl);
    char e[H5U_ERR_LEN] = "";
    const int rc = fd < 0 ? (snprintf(e, sizeof e, "cannot open (%s)", strerror(errno)), -1) : check_global_heap(fd, e);
    if (own >= 0) close(own);
    if (rc) {
        H5Fclose(f);
        if (err) snprintf(err, H5U_ERR_LEN, "%s", e);
        return H5I_INVALID_HID;
    }
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

/* ------------------------------------------------------------ integrity
 *
 * Why a CRC-32 attribute per dataset rather than HDF5's Fletcher32 filter:
 * the filter needs chunked storage (the arrays would no longer be one
 * contiguous block, and h5py users could not find them at one offset), a
 * failed check surfaces only as a failed H5Dread with no reason given.  The CRC is computed on the values as
 * read back, so a damaged datatype (a flipped byte-order or size bit)
 * fails it too; it names the dataset; a file of an earlier build simply has
 * no attribute; and from Python it is one call: zlib.crc32(a.tobytes()).
 * CRC-32 detects every single-bit flip and every burst of up to 32 bits. */
static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t h5u_crc32(uint32_t crc, const void *data, size_t n)
{
    pthread_once(&crc_once, crc_table_init);
    const unsigned char *p = data;
    crc = ~crc;
    while (n--) crc = crc_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* CRC of `count` native elements of `size` bytes as stored little-endian. */
static uint32_t crc_elements(const void *data, size_t count, size_t size)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    uint32_t crc = 0;
    unsigned char le[16];
    const unsigned char *p = data;
    for (size_t i = 0; i < count; i++, p += size) {
        for (size_t k = 0; k < size; k++) le[k] = p[size - 1 - k];
        crc = h5u_crc32(crc, le, size);
    }
    return crc;
#else
    return h5u_crc32(0, data, count * size);
#endif
}

static int put_crc(hid_t ds, uint32_t crc)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = sp < 0 ? H5I_INVALID_HID : H5Acreate2(ds, H5U_CRC_ATTR, H5T_STD_U32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    const int rc = a < 0 || H5Awrite(a, H5T_NATIVE_UINT32, &crc) < 0 ? -1 : 0;
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    return rc;
}

static bool attr_is_single(hid_t a);

/* The CRC stored with dataset ds: 1 (in *crc), 0 if it has none (a file of
 * an earlier build), -1 if the attribute is not one uint32 (damage). */
static int get_crc(hid_t ds, uint32_t *crc)
{
    const htri_t there = H5Aexists(ds, H5U_CRC_ATTR);
    if (there == 0) return 0;
    hid_t a = there > 0 ? H5Aopen(ds, H5U_CRC_ATTR, H5P_DEFAULT) : H5I_INVALID_HID;
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a);
    const bool ok = t >= 0 && H5Tget_class(t) == H5T_INTEGER && H5Tget_size(t) == 4 &&
                    H5Tget_sign(t) == H5T_SGN_NONE && attr_is_single(a) && H5Aread(a, H5T_NATIVE_UINT32, crc) >= 0;
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    return ok ? 1 : -1;
}

static size_t numel(int ndim, const size_t *dims)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= dims[i];
    return n;
}

/* A whole dataset and its CRC (computed by the caller from the data). */
static int write_any(hid_t f, const char *name, hid_t file_type, hid_t mem_type, int ndim,
                     const size_t *dims, const void *data, uint32_t crc, char *err)
{
    hsize_t hd[8];
    if (ndim < 0 || ndim > 8) FAIL("dataset '%s': bad rank %d", name, ndim);
    for (int i = 0; i < ndim; i++) hd[i] = dims[i];
    hid_t space = ndim ? H5Screate_simple(ndim, hd, NULL) : H5Screate(H5S_SCALAR);
    hid_t lcpl = link_props();
    if (H5Lexists(f, name, H5P_DEFAULT) > 0) H5Ldelete(f, name, H5P_DEFAULT);
    hid_t ds = H5Dcreate2(f, name, file_type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    int rc = 0;
    if (ds < 0 || H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0 || put_crc(ds, crc)) rc = -1;
    if (ds >= 0) H5Dclose(ds);
    H5Pclose(lcpl);
    H5Sclose(space);
    if (rc) FAIL("cannot write dataset '%s'", name);
    return 0;
}

int h5u_write_f32(hid_t f, const char *name, int ndim, const size_t *dims, const float *data, char *err)
{
    return write_any(f, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ndim, dims, data,
                     crc_elements(data, numel(ndim, dims), sizeof *data), err);
}

int h5u_write_f64(hid_t f, const char *name, int ndim, const size_t *dims, const double *data, char *err)
{
    return write_any(f, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, ndim, dims, data,
                     crc_elements(data, numel(ndim, dims), sizeof *data), err);
}

int h5u_write_i32(hid_t f, const char *name, int ndim, const size_t *dims, const int32_t *data, char *err)
{
    return write_any(f, name, H5T_STD_I32LE, H5T_NATIVE_INT32, ndim, dims, data,
                     crc_elements(data, numel(ndim, dims), sizeof *data), err);
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
    if (ds < 0 || (n > 0 && H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) ||
        put_crc(ds, crc_elements(data, n, H5Tget_size(mem_type))))
        rc = -1;
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
    int rc = write_any(f, name, t, t, 0, NULL, &text, h5u_crc32(0, text, strlen(text)), err);
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

/* Whether the file holds the bytes dataset ds's dataspace claims (n
 * elements), so that a damaged dataspace cannot size an allocation:
 * contiguous data take exactly that, unfiltered chunks at least that.
 * Compact data sit in the (checked) object header; variable-length and
 * filtered (compressed) data cannot be checked this way. */
static bool storage_backs(hid_t ds, double n, unsigned long long *stored)
{
    hid_t t = H5Dget_type(ds), dcpl = H5Dget_create_plist(ds);
    bool ok = t >= 0 && dcpl >= 0;
    *stored = 0;
    if (ok && H5Tget_class(t) != H5T_VLEN && H5Tis_variable_str(t) <= 0 && H5Pget_nfilters(dcpl) == 0) {
        const H5D_layout_t layout = H5Pget_layout(dcpl);
        *stored = (unsigned long long)H5Dget_storage_size(ds);
        if (layout == H5D_CONTIGUOUS || layout == H5D_CHUNKED) ok = n * (double)H5Tget_size(t) <= (double)*stored;
    }
    if (t >= 0) H5Tclose(t);
    if (dcpl >= 0) H5Pclose(dcpl);
    return ok;
}

int h5u_shape(hid_t f, const char *name, int max_dims, int *ndim, size_t *dims, char *err)
{
    char why[H5U_CAUSE_LEN] = "";
    if (!h5u_exists(f, name)) FAIL("dataset '%s' not found%s", name, h5_cause(why));
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) FAIL("cannot open dataset '%s'%s", name, h5_cause(why));
    hid_t sp = H5Dget_space(ds);
    int nd = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
    hsize_t hd[16];
    double n = 1;
    unsigned long long stored = 0;
    int rc = 0;
    if (nd < 0 || nd > max_dims || nd > 16 || H5Sget_simple_extent_dims(sp, hd, NULL) < 0) rc = -1;
    else {
        for (int i = 0; i < nd; i++) n *= (double)hd[i];
        if (!storage_backs(ds, n, &stored)) rc = -2;
        for (int i = 0; i < nd; i++) dims[i] = hd[i];
        *ndim = nd;
    }
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(ds);
    if (rc == -2)
        FAIL("dataset '%s' is damaged: its shape claims %.0f elements but the file holds %llu bytes of it", name, n,
             stored);
    if (rc) FAIL("dataset '%s' has rank %d (at most %d expected)", name, nd, max_dims);
    return 0;
}

static const char *class_name(H5T_class_t c)
{
    switch (c) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "floating-point";
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_ENUM: return "enum";
    case H5T_VLEN: return "variable-length";
    case H5T_ARRAY: return "array";
    case H5T_OPAQUE: return "opaque";
    case H5T_BITFIELD: return "bitfield";
    case H5T_REFERENCE: return "reference";
    default: return "unreadable";
    }
}

/* n elements of mem_type's class (integer or floating-point: nothing else
 * is converted), checked against the dataset's CRC when it has one. */
static int read_any(hid_t f, const char *name, hid_t mem_type, void *out, size_t n, char *err)
{
    char why[H5U_CAUSE_LEN] = "";
    if (!h5u_exists(f, name)) FAIL("dataset '%s' not found%s", name, h5_cause(why));
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) FAIL("cannot open dataset '%s'%s", name, h5_cause(why));
    hid_t sp = H5Dget_space(ds), ft = H5Dget_type(ds);
    const hssize_t count = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    if (sp >= 0) H5Sclose(sp);
    const H5T_class_t want = H5Tget_class(mem_type), cls = ft < 0 ? H5T_NO_CLASS : H5Tget_class(ft);
    const size_t size = ft < 0 ? 0 : H5Tget_size(ft);
    /* the CRC is of the bytes as written: the same class, size and (little-endian) order */
    const bool as_written = cls == want && size == H5Tget_size(mem_type) && H5Tget_order(ft) == H5T_ORDER_LE;
    if (ft >= 0) H5Tclose(ft);
    uint32_t stored = 0;
    int has_crc = 0, rc = 0;
    if (cls != want) rc = -2;
    else if (size < 1 || size > 16) rc = -3;
    else if (count < 0 || (size_t)count != n) rc = -4;
    else if ((has_crc = get_crc(ds, &stored)) < 0) rc = -5;
    else if (has_crc && !as_written) rc = -6;
    else if (H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) rc = -1, h5_cause(why);
    H5Dclose(ds);
    if (rc == -2) FAIL("dataset '%s' holds %s values, not %s ones", name, class_name(cls), class_name(want));
    if (rc == -3) FAIL("dataset '%s' is damaged: its %s elements have %zu bytes", name, class_name(cls), size);
    if (rc == -4) FAIL("dataset '%s' has %lld elements, expected %zu", name, (long long)count, n);
    if (rc == -5) FAIL("dataset '%s' is damaged: its %s attribute is not one 32-bit unsigned integer", name, H5U_CRC_ATTR);
    if (rc == -6)
        FAIL("dataset '%s' is damaged: its element type is no longer the one its %s checksum was computed for", name,
             H5U_CRC_ATTR);
    if (rc) FAIL("cannot read dataset '%s'%s", name, why);
    const uint32_t crc = has_crc ? crc_elements(out, n, size) : 0;
    if (has_crc && crc != stored)
        FAIL("dataset '%s' is damaged: its data do not match the %s checksum stored with it (stored %08x, data %08x)",
             name, H5U_CRC_ATTR, (unsigned)stored, (unsigned)crc);
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

/* The descriptor of a variable-length string stored in a contiguous
 * dataset (its raw data, which no HDF5 format version checksums): length
 * (4 bytes), global heap collection address (8) and object index (4).
 * HDF5 1.10 trusts it: a damaged length made H5Dread allocate and copy
 * that many bytes (3.3 GB resident for a 150 kB file, found by
 * fuzz/fuzz_runfile.c), a shorter one silently cut the text, a wrong index
 * returned another object.  So before the read the descriptor must name
 * an object of a collection inside the file whose size is that length.
 * Datasets of another layout (compact: inside the object header), on
 * another driver than sec2 (in-memory files seqeig wrote itself) or with
 * other address/length sizes than HDF5's default 8 are left to HDF5. */
static int check_vlen_string(hid_t ds, const char *name, char *err)
{
    const haddr_t at = H5Dget_offset(ds);
    if (at == HADDR_UNDEF) return 0;
    hid_t file = H5Iget_file_id(ds);
    hid_t fapl = file < 0 ? H5I_INVALID_HID : H5Fget_access_plist(file);
    hid_t fcpl = file < 0 ? H5I_INVALID_HID : H5Fget_create_plist(file);
    size_t sizeof_addr = 0, sizeof_size = 0;
    hsize_t base = 0;
    int *vfd = NULL, fd = -1;
    if (fapl >= 0 && fcpl >= 0 && H5Pget_driver(fapl) == H5FD_SEC2 &&
        H5Pget_sizes(fcpl, &sizeof_addr, &sizeof_size) >= 0 && sizeof_addr == 8 && sizeof_size == 8 &&
        H5Pget_userblock(fcpl, &base) >= 0 && H5Fget_vfd_handle(file, fapl, (void **)&vfd) >= 0 && vfd)
        fd = *vfd;
    if (fapl >= 0) H5Pclose(fapl);
    if (fcpl >= 0) H5Pclose(fcpl);
    if (file >= 0) H5Fclose(file); /* the id only; the dataset keeps the file open */
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) return 0;
    const uint64_t file_size = (uint64_t)st.st_size;
    unsigned char d[16], head[GCOL_HEADER];
    if (read_at(fd, d, sizeof d, (off_t)at)) FAIL("dataset '%s' is damaged: its data lie past the end of the file", name);
    const uint32_t len = (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
    const uint64_t heap = le64(d + 4) + base;
    const unsigned idx = (unsigned)d[12] | (unsigned)d[13] << 8 | (unsigned)d[14] << 16 | (unsigned)d[15] << 24;
    if (len == 0) return 0; /* the empty string: no heap object */
    if (len > file_size)
        FAIL("dataset '%s' is damaged: its string claims %u bytes, more than the whole file (%llu bytes)", name,
             (unsigned)len, (unsigned long long)file_size);
    if (heap > file_size - GCOL_HEADER || read_at(fd, head, sizeof head, (off_t)heap) ||
        memcmp(head, "GCOL\1", 5) != 0)
        FAIL("dataset '%s' is damaged: its string of %u bytes points to byte %llu, where the file (%llu bytes) has "
             "no global heap collection",
             name, (unsigned)len, (unsigned long long)heap, (unsigned long long)file_size);
    const uint64_t size = le64(head + 8);
    if (size < GCOL_HEADER || size > file_size - heap)
        FAIL("dataset '%s' is damaged: the global heap collection at byte %llu claims %llu bytes", name,
             (unsigned long long)heap, (unsigned long long)size);
    /* the objects of the collection in order, as check_collection walks them */
    uint64_t p = GCOL_HEADER, osz = 0;
    bool found = false;
    unsigned char oh[GCOL_OBJ_HEADER];
    while (!found && size - p >= GCOL_OBJ_HEADER) {
        if (read_at(fd, oh, sizeof oh, (off_t)(heap + p))) break;
        const unsigned i = (unsigned)oh[0] | (unsigned)oh[1] << 8;
        osz = le64(oh + 8);
        if (i == 0 || osz > size) break; /* free space ends the objects */
        if (i == idx) found = true;
        else p += GCOL_OBJ_HEADER + ((osz + 7) & ~(uint64_t)7);
    }
    if (!found)
        FAIL("dataset '%s' is damaged: its string names object %u of the global heap collection at byte %llu, which "
             "has no such object",
             name, idx, (unsigned long long)heap);
    if (osz != len || osz > size - p - GCOL_OBJ_HEADER)
        FAIL("dataset '%s' is damaged: its string claims %u bytes but its global heap object holds %llu", name,
             (unsigned)len, (unsigned long long)osz);
    return 0;
}

int h5u_read_string(hid_t f, const char *name, char **out, char *err)
{
    char why[H5U_CAUSE_LEN] = "";
    *out = NULL;
    if (!h5u_exists(f, name)) FAIL("dataset '%s' not found%s", name, h5_cause(why));
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) FAIL("cannot open dataset '%s'%s", name, h5_cause(why));
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
    uint32_t stored = 0;
    const int has_crc = get_crc(ds, &stored);
    if (has_crc < 0) {
        H5Dclose(ds);
        FAIL("dataset '%s' is damaged: its %s attribute is not one 32-bit unsigned integer", name, H5U_CRC_ATTR);
    }
    if (check_vlen_string(ds, name, err)) {
        H5Dclose(ds);
        return -1;
    }
    hid_t t = utf8_string_type();
    char *text = NULL;
    int rc = H5Dread(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, &text) < 0 ? (h5_cause(why), -1) : 0;
    if (rc == 0 && text) {
        *out = strdup(text);
        H5free_memory(text);
    }
    H5Tclose(t);
    H5Dclose(ds);
    if (rc || !*out) FAIL("cannot read string dataset '%s'%s", name, why);
    const uint32_t crc = h5u_crc32(0, *out, strlen(*out));
    if (has_crc && crc != stored) {
        free(*out);
        *out = NULL;
        FAIL("dataset '%s' is damaged: its text does not match the %s checksum stored with it (stored %08x, text "
             "%08x)",
             name, H5U_CRC_ATTR, (unsigned)stored, (unsigned)crc);
    }
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

int h5u_attr_u32(hid_t f, const char *obj, const char *name, uint32_t value, char *err)
{
    return write_attr(f, obj, name, H5T_NATIVE_UINT32, &value, err);
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
    char why[H5U_CAUSE_LEN] = "";
    if (!h5u_attr_exists(f, obj, name)) FAIL("attribute '%s' of '%s' not found%s", name, obj, h5_cause(why));
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) FAIL("cannot open attribute '%s' of '%s'%s", name, obj, h5_cause(why));
    hid_t ft = H5Aget_type(a);
    const H5T_class_t cls = ft >= 0 ? H5Tget_class(ft) : H5T_NO_CLASS;
    if (ft >= 0) H5Tclose(ft);
    int rc = -2;
    if ((cls == H5T_INTEGER || cls == H5T_FLOAT) && attr_is_single(a))
        rc = H5Aread(a, type, out) < 0 ? (h5_cause(why), -1) : 0;
    H5Aclose(a);
    if (rc == -2) FAIL("attribute '%s' of '%s' is not a single number", name, obj);
    if (rc) FAIL("cannot read attribute '%s' of '%s'%s", name, obj, why);
    return 0;
}

int h5u_get_attr_string(hid_t f, const char *obj, const char *name, char *out, size_t n, char *err)
{
    char why[H5U_CAUSE_LEN] = "";
    if (n) out[0] = 0;
    if (!h5u_attr_exists(f, obj, name)) FAIL("attribute '%s' of '%s' not found%s", name, obj, h5_cause(why));
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) FAIL("cannot open attribute '%s' of '%s'%s", name, obj, h5_cause(why));
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

int h5u_get_attr_u32(hid_t f, const char *obj, const char *name, uint32_t *out, char *err)
{
    char why[H5U_CAUSE_LEN] = "";
    if (!h5u_attr_exists(f, obj, name)) FAIL("attribute '%s' of '%s' not found%s", name, obj, h5_cause(why));
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) FAIL("cannot open attribute '%s' of '%s'%s", name, obj, h5_cause(why));
    hid_t t = H5Aget_type(a);
    const bool ok = t >= 0 && H5Tget_class(t) == H5T_INTEGER && H5Tget_size(t) == 4 &&
                    H5Tget_sign(t) == H5T_SGN_NONE && attr_is_single(a) && H5Aread(a, H5T_NATIVE_UINT32, out) >= 0;
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    if (!ok) FAIL("attribute '%s' of '%s' is not a single 32-bit unsigned integer", name, obj);
    return 0;
}
