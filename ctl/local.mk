# ctl/: rtwctl, the admin command line.
bin_PROGRAMS += ctl/rtwctl
ctl_rtwctl_SOURCES = ctl/rtwctl.c
ctl_rtwctl_CFLAGS = $(RTW_CFLAGS)
ctl_rtwctl_LDADD = $(RTW_LIBS)
# The writer mark and the horizon it allows (doc/architecture.md, "Stream order").
dist_sql_DATA += sql/003_horizon.sql
dist_sql_DATA += sql/011_horizon_by_pid.sql
# Redaction and bans (doc/security.md, "Moderation").
dist_sql_DATA += sql/012_moderation.sql
