#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../app/h5util.h"
#include "testutil.h"

static void tmp_path(char *buf, size_t n, const char *tag)
{
    snprintf(buf, n, "/tmp/seqeig_test_h5util_%s_%d.h5", tag, (int)getpid());
}

START_TEST(test_h5util_roundtrip_preserves_values_shapes_and_attributes)
{
    char path[256], err[H5U_ERR_LEN];
    tmp_path(path, sizeof path, "rt");
    hid_t f = h5u_create(path, err);
    ck_assert_int_ge(f, 0);
    float a[6] = {1.5f, -2.f, 3.25f, 0.f, 1e-30f, -7.f};
    double d[3] = {0.1, 1e300, -0.0};
    int32_t i[4] = {-100, 0, 7, 2147483647};
    ck_assert_int_eq(h5u_write_f32(f, "/grp/sub/a", 2, (size_t[]){2, 3}, a, err), 0);
    ck_assert_int_eq(h5u_write_f64(f, "d", 1, (size_t[]){3}, d, err), 0);
    ck_assert_int_eq(h5u_write_i32(f, "/grp/i", 1, (size_t[]){4}, i, err), 0);
    ck_assert_int_eq(h5u_write_string(f, "/text", "key: value\n", err), 0);
    ck_assert_int_eq(h5u_attr_string(f, "/", "format", "seqeig-test", err), 0);
    ck_assert_int_eq(h5u_attr_i64(f, "/grp", "seed", 1919, err), 0);
    ck_assert_int_eq(h5u_attr_f64(f, "/grp/sub/a", "scale", 0.5, err), 0);
    ck_assert_int_eq(h5u_group(f, "/empty/nested", err), 0);
    ck_assert_int_eq(h5u_group(f, "/empty/nested", err), 0); /* existing: fine */
    ck_assert_int_eq(h5u_attr_i64(f, "/empty/nested", "n", 3, err), 0);
    H5Fclose(f);

    f = h5u_open(path, 0, err);
    ck_assert_int_ge(f, 0);
    int nd;
    size_t dims[4];
    ck_assert_int_eq(h5u_shape(f, "/grp/sub/a", 4, &nd, dims, err), 0);
    ck_assert_int_eq(nd, 2);
    ck_assert_uint_eq(dims[0], 2);
    ck_assert_uint_eq(dims[1], 3);
    float a2[6];
    double d2[3];
    int32_t i2[4];
    ck_assert_int_eq(h5u_read_f32(f, "/grp/sub/a", a2, 6, err), 0);
    ck_assert_int_eq(h5u_read_f64(f, "d", d2, 3, err), 0);
    ck_assert_int_eq(h5u_read_i32(f, "/grp/i", i2, 4, err), 0);
    ck_assert_mem_eq(a, a2, sizeof a);
    ck_assert_mem_eq(d, d2, sizeof d);
    ck_assert_mem_eq(i, i2, sizeof i);
    ck_assert(h5u_exists(f, "/grp/sub/a"));
    ck_assert(!h5u_exists(f, "/grp/nothing/here"));
    ck_assert(h5u_exists(f, "/empty/nested"));
    H5Fclose(f);
    unlink(path);
}
END_TEST

START_TEST(test_h5util_errors_name_the_object)
{
    char path[256], err[H5U_ERR_LEN] = "";
    tmp_path(path, sizeof path, "err");
    ck_assert_int_lt(h5u_open("/nonexistent/dir/x.h5", 0, err), 0);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/dir/x.h5"));
    hid_t f = h5u_create(path, err);
    float a[2] = {1, 2}, b[3];
    ck_assert_int_eq(h5u_write_f32(f, "a", 1, (size_t[]){2}, a, err), 0);
    ck_assert_int_eq(h5u_read_f32(f, "missing", b, 3, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "missing"));
    ck_assert_int_eq(h5u_read_f32(f, "a", b, 3, err), -1); /* wrong element count */
    ck_assert_ptr_nonnull(strstr(err, "expected 3"));
    H5Fclose(f);
    unlink(path);
}
END_TEST

START_TEST(test_h5util_checksums_type_classes_and_damage)
{
    char path[256], err[H5U_ERR_LEN] = "";
    tmp_path(path, sizeof path, "crc");
    /* zlib's CRC-32 ("123456789" is its check value) */
    ck_assert_uint_eq(h5u_crc32(0, "123456789", 9), 0xCBF43926u);
    ck_assert_uint_eq(h5u_crc32(h5u_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
    /* written in memory and out as an image (the run files' path), read back */
    hid_t f = h5u_create_in_memory(err);
    ck_assert_int_ge(f, 0);
    double d[4] = {1.0, -2.5, 1e-300, 3.0};
    int32_t i[2] = {5, -6};
    ck_assert_int_eq(h5u_write_f64(f, "/d", 1, (size_t[]){4}, d, err), 0);
    ck_assert_int_eq(h5u_write_i32(f, "/i", 1, (size_t[]){2}, i, err), 0);
    ck_assert_int_eq(h5u_write_string(f, "/s", "text", err), 0);
    ck_assert_int_eq(h5u_attr_string(f, "/", "status", "running", err), 0);
    ck_assert_int_eq(h5u_write_image(f, path, err), 0);
    f = h5u_open(path, 0, err);
    ck_assert_msg(f >= 0, "%s", err);
    uint32_t crc = 0;
    ck_assert_int_eq(h5u_get_attr_u32(f, "/d", H5U_CRC_ATTR, &crc, err), 0);
    ck_assert_uint_eq(crc, h5u_crc32(0, d, sizeof d)); /* little-endian host */
    double d2[4];
    float f2[2];
    char *text = NULL;
    ck_assert_int_eq(h5u_read_f64(f, "/d", d2, 4, err), 0);
    ck_assert_int_eq(h5u_read_string(f, "/s", &text, err), 0);
    ck_assert_str_eq(text, "text");
    free(text);
    /* another type class is refused before anything is read */
    ck_assert_int_eq(h5u_read_f64(f, "/s", d2, 1, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "'/s' holds string values"));
    ck_assert_int_eq(h5u_read_f32(f, "/i", f2, 2, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "holds integer values, not floating-point"));
    ck_assert_int_eq(h5u_get_attr_u32(f, "/", "status", &crc, err), -1);
    hid_t ds = H5Dopen2(f, "/d", H5P_DEFAULT);
    const haddr_t at = H5Dget_offset(ds);
    H5Dclose(ds);
    H5Fclose(f);
    ck_assert(at != HADDR_UNDEF);

    /* one flipped bit in the data: the CRC names the dataset */
    FILE *fp = fopen(path, "r+b");
    ck_assert_ptr_nonnull(fp);
    fseek(fp, (long)at + 13, SEEK_SET);
    int c = fgetc(fp);
    fseek(fp, (long)at + 13, SEEK_SET);
    fputc(c ^ 0x10, fp);
    fclose(fp);
    f = h5u_open(path, 0, err);
    ck_assert_int_ge(f, 0);
    ck_assert_int_eq(h5u_read_f64(f, "/d", d2, 4, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "dataset '/d' is damaged"));
    ck_assert_int_eq(h5u_read_i32(f, "/i", i, 2, err), 0); /* the others still read */
    H5Fclose(f);

    /* a global heap object claiming more than its collection: refused at open */
    fp = fopen(path, "r+b");
    fseek(fp, 0, SEEK_END);
    const long size = ftell(fp);
    unsigned char *img = malloc((size_t)size);
    fseek(fp, 0, SEEK_SET);
    ck_assert_int_eq((long)fread(img, 1, (size_t)size, fp), size);
    const unsigned char *g = memmem(img, (size_t)size, "GCOL\1\0\0\0", 8);
    ck_assert_ptr_nonnull(g);
    fseek(fp, (long)(g - img) + 16 + 8 + 6, SEEK_SET); /* a high byte of the first object's size */
    fputc(0x40, fp);
    fclose(fp);
    free(img);
    ck_assert_int_lt(h5u_open(path, 0, err), 0);
    ck_assert_ptr_nonnull(strstr(err, "global heap collection"));
    unlink(path);
}
END_TEST

Suite *suite_h5util(void)
{
    Suite *s = suite_create("h5util");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_h5util_roundtrip_preserves_values_shapes_and_attributes);
    tcase_add_test(tc, test_h5util_errors_name_the_object);
    tcase_add_test(tc, test_h5util_checksums_type_classes_and_damage);
    suite_add_tcase(s, tc);
    return s;
}
