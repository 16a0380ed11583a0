/*
 * hangshim is a PKCS#11 module that forwards every call to the real module
 * REAL_MODULE, except that C_Sign and C_Decrypt wait while the file
 * HOLD_FILE exists: a token that stops answering in the middle of a call,
 * as a hung network HSM does. Built by the tests (hang_test.go).
 *
 * Only C_GetFunctionList is exported; callers reach everything else through
 * the function list, a struct of a CK_VERSION and the 68 function pointers
 * of PKCS#11 v2.40 in the standard's order.
 */
#include <dlfcn.h>
#include <string.h>
#include <unistd.h>

typedef unsigned long CK_RV;
typedef unsigned long CK_ULONG;
typedef struct { unsigned char major, minor; } CK_VERSION;

#define NFUNCS 68
#define IDX_GET_FUNCTION_LIST 3
#define IDX_DECRYPT 34
#define IDX_SIGN 43
#define CKR_GENERAL_ERROR 5

typedef struct { CK_VERSION version; void *fn[NFUNCS]; } function_list;
typedef CK_RV (*data_fn)(CK_ULONG, unsigned char *, CK_ULONG, unsigned char *, CK_ULONG *);

static function_list shim;
static function_list *real_list;
static data_fn real_sign, real_decrypt;

static void hold(void) {
	while (access(HOLD_FILE, F_OK) == 0)
		usleep(2000);
}

static CK_RV shim_sign(CK_ULONG s, unsigned char *in, CK_ULONG n, unsigned char *out, CK_ULONG *outn) {
	hold();
	return real_sign(s, in, n, out, outn);
}

static CK_RV shim_decrypt(CK_ULONG s, unsigned char *in, CK_ULONG n, unsigned char *out, CK_ULONG *outn) {
	hold();
	return real_decrypt(s, in, n, out, outn);
}

CK_RV C_GetFunctionList(function_list **out) {
	if (real_list == NULL) {
		void *h = dlopen(REAL_MODULE, RTLD_NOW | RTLD_LOCAL);
		if (h == NULL)
			return CKR_GENERAL_ERROR;
		CK_RV (*get)(function_list **) = (CK_RV (*)(function_list **))dlsym(h, "C_GetFunctionList");
		function_list *l;
		if (get == NULL || get(&l) != 0)
			return CKR_GENERAL_ERROR;
		/* The layout is what we think it is only if the list names itself. */
		if (l->fn[IDX_GET_FUNCTION_LIST] != (void *)get)
			return CKR_GENERAL_ERROR;
		memcpy(&shim, l, sizeof shim);
		real_sign = (data_fn)l->fn[IDX_SIGN];
		real_decrypt = (data_fn)l->fn[IDX_DECRYPT];
		shim.fn[IDX_GET_FUNCTION_LIST] = (void *)C_GetFunctionList;
		shim.fn[IDX_SIGN] = (void *)shim_sign;
		shim.fn[IDX_DECRYPT] = (void *)shim_decrypt;
		real_list = l;
	}
	*out = &shim;
	return 0;
}
