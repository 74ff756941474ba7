/*
 * anonid.h: the one minter of anonymous user ids ("anon-" and 16 lowercase
 * hex digits from the system's CSPRNG), given to a publisher without
 * author_id (rtw-fcgi, open mode) and to a subscriber without identity
 * (rtw-sse). Pure but for reading random bytes.
 */
#ifndef RTW_ANONID_H
#define RTW_ANONID_H

#include "rtw.h"

#define RTW_ANON_ID_LEN 21 /* "anon-" + 16 hex digits, NUL not counted */

/* Writes a fresh anonymous id and its NUL into out. RTW_ERROR when no
 * random bytes could be read (out is then ""): the caller answers 503. */
int rtw_anon_id(char out[RTW_ANON_ID_LEN + 1]) RTW_WUR;

#endif
