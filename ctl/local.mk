# ctl/: rtwctl, the admin command line.
bin_PROGRAMS += ctl/rtwctl
ctl_rtwctl_SOURCES = ctl/rtwctl.c
ctl_rtwctl_CFLAGS = $(RTW_CFLAGS)
ctl_rtwctl_LDADD = $(RTW_LIBS)
