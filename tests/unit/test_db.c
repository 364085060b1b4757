/* test_db.c - the pure logic of common/db.c: SQLSTATE classification.
 * Everything that needs a server is checked by the integration tests. */
#include <criterion/criterion.h>

#include "db.h"
#include "rc.h"

/* TESTABLE in db.c */
enum cv_rc db_classify_sqlstate(const char *st);

Test(db, connection_trouble_is_io)
{
    cr_assert_eq(db_classify_sqlstate(NULL), CV_ERR_IO);
    cr_assert_eq(db_classify_sqlstate(""), CV_ERR_IO);
    cr_assert_eq(db_classify_sqlstate("08006"), CV_ERR_IO);     /* connection failure */
    cr_assert_eq(db_classify_sqlstate("08001"), CV_ERR_IO);
    cr_assert_eq(db_classify_sqlstate("57P01"), CV_ERR_IO);     /* admin shutdown */
    cr_assert_eq(db_classify_sqlstate("57014"), CV_ERR_IO);     /* statement timeout / cancel */
    cr_assert_eq(db_classify_sqlstate("53300"), CV_ERR_IO);     /* too many connections */
    cr_assert_eq(db_classify_sqlstate("53100"), CV_ERR_IO);     /* disk full */
}

Test(db, serialization_and_deadlock_are_retryable)
{
    cr_assert_eq(db_classify_sqlstate("40001"), CV_ERR_IO);
    cr_assert_eq(db_classify_sqlstate("40P01"), CV_ERR_IO);
    cr_assert(cv_rc_retryable(db_classify_sqlstate("40P01")));
}

Test(db, unique_and_exclusion_are_conflicts)
{
    cr_assert_eq(db_classify_sqlstate("23505"), CV_ERR_CONFLICT);
    cr_assert_eq(db_classify_sqlstate("23P01"), CV_ERR_CONFLICT);
}

Test(db, bad_data_and_other_integrity_are_invalid)
{
    cr_assert_eq(db_classify_sqlstate("22P02"), CV_ERR_INVALID);   /* bad text for a type */
    cr_assert_eq(db_classify_sqlstate("22012"), CV_ERR_INVALID);   /* division by zero */
    cr_assert_eq(db_classify_sqlstate("22023"), CV_ERR_INVALID);   /* our RAISE: bad arrays */
    cr_assert_eq(db_classify_sqlstate("23514"), CV_ERR_INVALID);   /* check violation */
    cr_assert_eq(db_classify_sqlstate("23502"), CV_ERR_INVALID);   /* not null */
    cr_assert_eq(db_classify_sqlstate("23503"), CV_ERR_INVALID);   /* foreign key */
    cr_assert(!cv_rc_retryable(CV_ERR_INVALID));
}

Test(db, bad_sql_is_internal)
{
    cr_assert_eq(db_classify_sqlstate("42601"), CV_ERR_INTERNAL);  /* syntax */
    cr_assert_eq(db_classify_sqlstate("42P01"), CV_ERR_INTERNAL);  /* undefined table */
    cr_assert_eq(db_classify_sqlstate("42883"), CV_ERR_INTERNAL);  /* undefined function */
    cr_assert_eq(db_classify_sqlstate("25P02"), CV_ERR_INTERNAL);  /* in failed transaction */
}
