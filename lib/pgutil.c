/*
 * pgutil.c: owns blocking libpq helpers and the schema migration runner.
 * Used at start-up, by rtwctl and by tests; never on a daemon's loop.
 */
#include "config.h"
#include "pgutil.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pgu__oneline(char *s)
{
	size_t n = strlen(s);
	while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
		s[--n] = '\0';
	for (char *p = s; *p; p++)
		if (*p == '\n')
			*p = ' ';
}

PGconn *pgu_connect(const char *dsn, const char *app_name, char *err, size_t errlen)
{
	const char *keys[] = {"dbname", "application_name", "fallback_application_name", NULL};
	const char *vals[] = {dsn, app_name, app_name, NULL};
	/* expand_dbname=1: dsn is parsed as a connection string or URI. */
	PGconn *conn = PQconnectdbParams(keys, vals, 1);

	if (!conn) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		snprintf(err, errlen, "could not connect to database: %s", PQerrorMessage(conn));
		pgu__oneline(err);
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

int pgu_exec(PGconn *conn, const char *sql, char *err, size_t errlen)
{
	PGresult *res = PQexec(conn, sql);
	int rc = RTW_OK;
	ExecStatusType st = PQresultStatus(res);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "%s", PQerrorMessage(conn));
		pgu__oneline(err);
		rc = RTW_ERROR;
	}
	PQclear(res);
	return rc;
}

bool pgu_connection_lost(PGconn *conn, const PGresult *res)
{
	if (PQstatus(conn) != CONNECTION_OK)
		return true;
	const char *state = pgu_sqlstate(res);
	/* class 08: connection exception; 57P01-57P03: admin shutdown,
	 * crash shutdown, cannot connect now. */
	return strncmp(state, "08", 2) == 0 || strncmp(state, "57P0", 4) == 0;
}

const char *pgu_sqlstate(const PGresult *res)
{
	const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	return s ? s : "";
}

static int pgu__cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *pgu__slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (buf = malloc((size_t)n + 1)) != NULL) {
		if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		} else {
			buf[n] = '\0';
		}
	}
	fclose(f);
	return buf;
}

/* Applies one migration file in its own transaction, unless recorded. */
static int pgu__apply(PGconn *conn, const char *dir, const char *name, int *applied, char *err, size_t errlen)
{
	char path[1024], version[16];
	const char *params[2];
	PGresult *res;
	char *sql = NULL;
	int rc = RTW_ERROR;

	snprintf(version, sizeof(version), "%.*s", (int)strspn(name, "0123456789"), name);
	params[0] = version;
	params[1] = name;
	if (pgu_exec(conn, "BEGIN", err, errlen) != RTW_OK)
		return RTW_ERROR;
	res = PQexecParams(conn, "SELECT 1 FROM rtw_schema_migrations WHERE version = $1::int", 1, NULL, params, NULL,
			   NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "%s", PQerrorMessage(conn));
		goto out;
	}
	if (PQntuples(res) > 0) {
		rc = RTW_OK;
		goto out;
	}
	PQclear(res);
	res = NULL;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (!(sql = pgu__slurp(path))) {
		snprintf(err, errlen, "could not read migration \"%s\": %s", path, strerror(errno));
		goto out;
	}
	if (pgu_exec(conn, sql, err, errlen) != RTW_OK)
		goto out;
	res = PQexecParams(conn, "INSERT INTO rtw_schema_migrations (version, name) VALUES ($1::int, $2)", 2, NULL,
			   params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		snprintf(err, errlen, "%s", PQerrorMessage(conn));
		goto out;
	}
	(*applied)++;
	rc = RTW_OK;
out:
	PQclear(res);
	free(sql);
	if (rc == RTW_OK) {
		rc = pgu_exec(conn, "COMMIT", err, errlen);
	} else {
		char ignore[8];
		pgu__oneline(err);
		if (pgu_exec(conn, "ROLLBACK", ignore, sizeof(ignore)) != RTW_OK)
			rc = RTW_ERROR;
	}
	return rc;
}

int pgu_migrate(PGconn *conn, const char *dir, int *applied, char *err, size_t errlen)
{
	DIR *d = opendir(dir);
	char **names = NULL;
	size_t n = 0, cap = 0;
	int rc = RTW_ERROR;
	struct dirent *de;

	*applied = 0;
	if (!d) {
		snprintf(err, errlen, "could not open migration directory \"%s\": %s", dir, strerror(errno));
		return RTW_ERROR;
	}
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		if (len < 5 || de->d_name[0] < '0' || de->d_name[0] > '9' || strcmp(de->d_name + len - 4, ".sql"))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			char **grown = realloc(names, cap * sizeof(*names));
			if (!grown)
				goto out;
			names = grown;
		}
		if (!(names[n] = strdup(de->d_name)))
			goto out;
		n++;
	}
	qsort(names, n, sizeof(*names), pgu__cmp);
	if (pgu_exec(conn,
		     "SET client_min_messages = warning; SELECT pg_advisory_lock(7274200);"
		     "CREATE TABLE IF NOT EXISTS rtw_schema_migrations ("
		     " version integer PRIMARY KEY, name text NOT NULL,"
		     " applied_at timestamptz NOT NULL DEFAULT now())",
		     err, errlen) != RTW_OK)
		goto out;
	rc = RTW_OK;
	for (size_t i = 0; i < n && rc == RTW_OK; i++)
		rc = pgu__apply(conn, dir, names[i], applied, err, errlen);
	char ignore[8];
	if (pgu_exec(conn, "SELECT pg_advisory_unlock(7274200)", ignore, sizeof(ignore)) != RTW_OK)
		rc = RTW_ERROR;
out:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return rc;
}
