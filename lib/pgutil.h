/*
 * pgutil.h: small libpq helpers shared by the programs: blocking connect
 * for start-up and tools, error classification, and the migration runner
 * used by rtwctl and the tests. The daemons' non-blocking use of libpq
 * lives in their own loops.
 */
#ifndef RTW_PGUTIL_H
#define RTW_PGUTIL_H

#include "rtw.h"

#include <libpq-fe.h>

/* Connects (blocking) and sets a short application_name; NULL on failure
 * with the libpq message (one line) in err. */
PGconn *pgu_connect(const char *dsn, const char *app_name, char *err, size_t errlen) RTW_WUR;

/* Runs a command that returns no rows; RTW_OK, or RTW_ERROR with the
 * message in err. */
int pgu_exec(PGconn *conn, const char *sql, char *err, size_t errlen) RTW_WUR;

/* True when the failure means the connection is gone (reconnect and
 * answer 503) rather than a problem with the statement. */
bool pgu_connection_lost(PGconn *conn, const PGresult *res);

/* The SQLSTATE of a failed result, or "" when none. */
const char *pgu_sqlstate(const PGresult *res);

/* Applies every sql/NNN_name.sql in dir not yet recorded in
 * rtw_schema_migrations, each in its own transaction, in order. An
 * advisory lock keeps concurrent runs apart. *applied counts new ones. */
int pgu_migrate(PGconn *conn, const char *dir, int *applied, char *err, size_t errlen) RTW_WUR;

#endif
