/*
 * anonid.c: owns minting anonymous user ids for the daemons. Reads the
 * CSPRNG through rtw_random(); no other I/O, no state.
 */
#include "config.h"
#include "anonid.h"

#include <string.h>

int rtw_anon_id(char out[RTW_ANON_ID_LEN + 1])
{
	unsigned char rnd[8];

	out[0] = '\0';
	if (rtw_random(rnd, sizeof(rnd)) != RTW_OK)
		return RTW_ERROR;
	memcpy(out, "anon-", 5);
	rtw_hex(rnd, sizeof(rnd), out + 5);
	return RTW_OK;
}
