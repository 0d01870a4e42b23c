/* p11.h - the PKCS#11 layer: load any v2.40 module, find tokens, pool sessions,
 * and run the few key operations HSM-backed key stores need inside the token.
 *
 * Why it exists: custom key stores keep their keys in HSMs reached through
 * PKCS#11 (SoftHSM2 by default, any vendor module otherwise).  Everything above
 * this layer (clusters, connection states, the API) talks to HSMs only through
 * these functions, never to a CK_FUNCTION_LIST directly, so every value the
 * module returns is bounded and validated in one place and every CK_RV becomes
 * a kerr with a readable message.
 *
 * Keys made here never leave a token in clear: they are CKA_SENSITIVE, and
 * either non-extractable or extractable only under a trusted wrapping key
 * (CKA_WRAP_WITH_TRUSTED).  See docs/pkcs11.md for the design and for what
 * SoftHSM2 enforces.
 *
 * Threads: a p11_module and a p11_token may be shared by any number of
 * threads.  A p11_session belongs to the one thread that acquired it until it
 * is released.  A thread holding a session must not call into the same
 * module through another token or session while a reinitialization may be
 * pending (p11_module_reinitialize waits for that session, the call waits
 * for the reinitialization; both waits are bounded, so this ends in
 * KERR_DEPENDENCY_TIMEOUT, not a hang). */
#ifndef KMSD_PKCS11_P11_H
#define KMSD_PKCS11_P11_H

#include <stddef.h>
#include <stdint.h>

#include <p11-kit-1/p11-kit/pkcs11.h>

#include "core/kerr.h"
#include "core/secmem.h"

/* ---- errors ------------------------------------------------------------- */

/* A kerr plus the CK_RV that caused it.  `rv` is CKR_OK when the failure did
 * not come from the module (bad argument, bound exceeded, out of memory), so
 * callers can tell "the HSM said no" from "we refused".  The cluster layer
 * maps rv (CKR_PIN_INCORRECT, CKR_PIN_LOCKED, CKR_TOKEN_NOT_PRESENT...) to
 * its own connection error codes.  Messages name the PKCS#11 function and the
 * CKR_ constant, never a PIN or key value. */
typedef struct p11_err {
  kerr e;
  CK_RV rv;
} p11_err;

/* The CKR_ constant's name for `rv` ("CKR_PIN_INCORRECT"), or
 * "CKR_VENDOR_DEFINED" / "CKR_UNKNOWN" for values outside the standard table.
 * Static storage. */
const char *p11_rv_name(CK_RV rv);

/* The kerr code a CK_RV maps to: PIN failures (CKR_PIN_*) -> KERR_ACCESS_DENIED;
 * login-state errors (CKR_USER_*) -> KERR_INVALID_STATE; token or device gone
 * (CKR_TOKEN_NOT_PRESENT, CKR_DEVICE_*, CKR_SESSION_CLOSED...) ->
 * KERR_KEY_UNAVAILABLE; GCM authentication failure and malformed ciphertext
 * (CKR_ENCRYPTED_DATA_*) -> KERR_INVALID_CIPHERTEXT; missing objects
 * (CKR_OBJECT_HANDLE_INVALID, CKR_KEY_HANDLE_INVALID) -> KERR_NOT_FOUND;
 * CKR_SESSION_COUNT -> KERR_LIMIT_EXCEEDED; everything else KERR_INTERNAL. */
kerr_code p11_rv_to_kerr(CK_RV rv);

/* Clear `err` (may be NULL) to KERR_OK / CKR_OK. */
void p11_err_clear(p11_err *err);

/* ---- modules ------------------------------------------------------------ */

typedef struct p11_module p11_module;

/* Load the PKCS#11 module at `path` (dlopen + C_GetFunctionList) and
 * C_Initialize it with CKF_OS_LOCKING_OK.  Modules are shared: loading the same
 * path twice returns the same handle with its reference count raised, so
 * C_Initialize runs once per module per process.  If the module reports
 * CKR_CRYPTOKI_ALREADY_INITIALIZED (another library in this process
 * initialized it) it is used as is and never finalized by us.
 * On success *out holds a reference; give it back with p11_module_release.
 * On failure *out is NULL and nothing stays loaded. */
kerr_code p11_module_load(const char *path, p11_module **out, p11_err *err);

/* Drop one reference; the last one calls C_Finalize (if we initialized the
 * module) and dlclose.  Every token opened on the module must be closed
 * first.  NULL is allowed. */
void p11_module_release(p11_module *mod);

/* The module's function list, for callers (tests, diagnostics) that need a
 * call this layer does not wrap.  Valid while the module is held, and only
 * with a session acquired from this layer (whose lifetime keeps a
 * reinitialization out, see p11_module_reinitialize). */
const CK_FUNCTION_LIST *p11_module_functions(const p11_module *mod);

/* 1 when `rv` may mean that the module's in-memory state of a token went bad
 * and outlives the fault that caused it (CKR_GENERAL_ERROR,
 * CKR_FUNCTION_FAILED, CKR_DEVICE_*, CKR_TOKEN_NOT_*, CKR_SLOT_ID_INVALID,
 * CKR_SESSION_CLOSED / _HANDLE_INVALID, CKR_CRYPTOKI_NOT_INITIALIZED): the
 * answers after which p11_module_reinitialize is worth a try.  Never a
 * credential or login-state answer. */
int p11_rv_module_state(CK_RV rv);

/* How many times the module was reinitialized (p11_module_reinitialize). */
unsigned long p11_module_epoch(p11_module *mod);

/* C_Finalize and C_Initialize the module again, so it drops whatever state
 * it kept in memory and reloads its slots and tokens.  SoftHSM2, for one,
 * marks a token bad for the rest of the process once it failed to write it
 * (a read-only or full disk), and answers CKR_GENERAL_ERROR to that token's
 * C_Login and C_GetTokenInfo even after the fault is gone; this is the only
 * way back short of a restart.
 *
 * It ends every session and login of every token of the module in this
 * process, so it is coordinated: newcomers wait, and it waits up to
 * `wait_ms` (P11_POOL_WAIT_MIN_MS..P11_POOL_WAIT_MAX_MS) for every module
 * call in progress and every acquired session to finish; after that
 * KERR_DEPENDENCY_TIMEOUT and nothing was done.  p11_token handles notice
 * on their next use: they forget their old session handles without closing
 * them (the numbers may name new sessions by then), find their token again
 * by label, and are logged out.  `seen_epoch` is p11_module_epoch as the
 * caller saw it when its failure happened; if the module was reinitialized
 * since, nothing is done (KERR_OK), so threads that failed together cause
 * one reinitialization.  The caller must hold no session of the module.
 * KERR_INVALID_STATE for a module another library initialized (we never
 * finalize it).  When C_Initialize fails the module stays uninitialized,
 * every call answers CKR_CRYPTOKI_NOT_INITIALIZED, and a later call may
 * try again. */
kerr_code p11_module_reinitialize(p11_module *mod, unsigned long seen_epoch, long wait_ms,
                                  p11_err *err);

/* ---- tokens ------------------------------------------------------------- */

#define P11_LABEL_MAX 32         /* CK_TOKEN_INFO.label is 32 space-padded bytes */
#define P11_PIN_MIN 4            /* SoftHSM2's own minimum; most HSMs agree */
#define P11_PIN_MAX 255
#define P11_MAX_SLOTS 1024       /* bound on C_GetSlotList answers */

/* Find the slot holding an initialized token whose label is `label`
 * (1..32 printable ASCII bytes, compared after removing the padding).
 * KERR_NOT_FOUND when there is none; KERR_CONFLICT when two tokens carry the
 * label (we refuse to guess which HSM is meant).  A token whose
 * C_GetTokenInfo fails is skipped, so it cannot hide the others; when the
 * label is not found and such a token exists, that failure is returned
 * instead of KERR_NOT_FOUND (it may be the token asked for). */
kerr_code p11_find_token(p11_module *mod, const char *label, CK_SLOT_ID *slot, p11_err *err);

/* Find the first slot whose token is present but not yet initialized (SoftHSM2
 * always keeps one).  KERR_NOT_FOUND when none is free. */
kerr_code p11_find_free_slot(p11_module *mod, CK_SLOT_ID *slot, p11_err *err);

/* Initialize a new token in `slot` (C_InitToken with `so_pin` and `label`),
 * then log in as SO and set the user PIN (C_InitPIN).  Refuses a label that
 * an existing token already carries (KERR_ALREADY_EXISTS), and a slot whose
 * token is initialized already (KERR_CONFLICT): the slot is looked at again
 * right before C_InitToken, because a slot id found earlier may name another
 * token after a reinitialization of the module (p11_module_reinitialize),
 * and C_InitToken would wipe it.  Initializations of one module by threads
 * of this process run one at a time.  On success *new_slot is the slot the
 * token lives in afterwards (SoftHSM2 moves a token to a new slot id when it
 * is initialized).  After a failure between the two steps the token exists
 * with no user PIN; re-run C_InitPIN or discard it. */
kerr_code p11_init_token(p11_module *mod, CK_SLOT_ID slot, const char *label,
                         const char *so_pin, const char *user_pin,
                         CK_SLOT_ID *new_slot, p11_err *err);

/* p11_find_free_slot and p11_init_token in one step that no
 * reinitialization of the module can split, so the slot initialized is the
 * free one found.  Answers as p11_init_token (a label in use is
 * KERR_ALREADY_EXISTS, free slot or not), and KERR_NOT_FOUND when no slot
 * is free. */
kerr_code p11_init_free_token(p11_module *mod, const char *label, const char *so_pin,
                              const char *user_pin, CK_SLOT_ID *new_slot, p11_err *err);

/* ---- sessions and the per-token pool ------------------------------------ */

typedef struct p11_token p11_token;
typedef struct p11_session p11_session;

#define P11_POOL_MAX 64          /* upper bound accepted for pool_size */
#define P11_POOL_WAIT_MS 10000   /* default wait of acquire for a free session */
#define P11_POOL_WAIT_MIN_MS 1
#define P11_POOL_WAIT_MAX_MS 600000

/* Open a handle on the token labelled `label` with a pool of at most
 * `pool_size` (1..P11_POOL_MAX) R/W sessions.  No session is opened and
 * nobody is logged in yet.  The token holds a module reference.  Free with
 * p11_token_close.  On failure *out is NULL. */
kerr_code p11_token_open(p11_module *mod, const char *label, size_t pool_size,
                         p11_token **out, p11_err *err);

/* The same, for a token already located by slot id. */
kerr_code p11_token_open_slot(p11_module *mod, CK_SLOT_ID slot, size_t pool_size,
                              p11_token **out, p11_err *err);

/* Close every session of the pool (which, per PKCS#11, also ends the login),
 * release the module reference and free the handle.  No session may still be
 * acquired.  NULL is allowed. */
void p11_token_close(p11_token *tok);

/* Log in as the normal user (CKU_USER) with `pin`.  PKCS#11 login state
 * belongs to the application, not to a session: once this succeeds every
 * session of this token in this process, pooled or not, is logged in, and it
 * stays so until p11_token_logout or until the last session closes (this
 * layer keeps one "anchor" session open for that reason).  A wrong PIN gives
 * KERR_ACCESS_DENIED with rv CKR_PIN_INCORRECT (or CKR_PIN_LOCKED once the
 * token locked the user out); a second login gives KERR_INVALID_STATE with
 * CKR_USER_ALREADY_LOGGED_IN.  After a failure nobody is logged in. */
kerr_code p11_token_login(p11_token *tok, const char *pin, p11_err *err);

/* Log out (C_Logout) and close the pooled sessions, including the anchor.
 * Sessions still acquired by other threads lose their login at once (shared
 * login state) and are closed when released.  Logging out when not logged in
 * is not an error. */
kerr_code p11_token_logout(p11_token *tok, p11_err *err);

/* 1 when this handle has a successful login that was not logged out (nor
 * ended by a reinitialization of the module). */
int p11_token_logged_in(p11_token *tok);

/* After a failure with p11_rv_module_state(rv) on this token: reinitialize
 * its module (p11_module_reinitialize), unless that already happened since
 * the token's handles were last made, waiting up to the token's acquire
 * timeout.  The token is logged out afterwards; log in again.  The caller
 * must hold no session of the module.  On failure nothing changed. */
kerr_code p11_token_recover(p11_token *tok, p11_err *err);

/* Change the user PIN (C_SetPIN) while logged in as the user.  The login
 * survives.  On failure the PIN is unchanged. */
kerr_code p11_token_set_pin(p11_token *tok, const char *old_pin, const char *new_pin,
                            p11_err *err);

/* The slot this token lives in. */
CK_SLOT_ID p11_token_slot(const p11_token *tok);

/* How long p11_session_acquire waits for a session to be released when all
 * pool_size are busy: `ms` in P11_POOL_WAIT_MIN_MS..P11_POOL_WAIT_MAX_MS
 * (KERR_VALIDATION otherwise, nothing changed).  A new token waits
 * P11_POOL_WAIT_MS.  Takes effect for acquires that start afterwards.
 *
 * This bounds only the wait for a free session.  It cannot bound a module
 * call already in progress: PKCS#11 has no way to cancel one, so a call into
 * an HSM that never answers keeps its thread and its session (see "A hung
 * HSM" in docs/pkcs11.md). */
kerr_code p11_token_set_acquire_timeout(p11_token *tok, long ms, p11_err *err);

/* Take a session from the pool, opening one if fewer than pool_size are open,
 * else waiting up to the token's acquire timeout (p11_token_set_acquire_timeout)
 * for one to be released; KERR_DEPENDENCY_TIMEOUT after that, with nothing
 * acquired.  The session is logged in exactly when the token is.  Give it back
 * with p11_session_release. */
kerr_code p11_session_acquire(p11_token *tok, p11_session **out, p11_err *err);

/* p11_session_acquire for work that must run logged in as `user` (CKU_USER
 * or CKU_SO): refuses with KERR_INVALID_STATE and rv CKR_USER_NOT_LOGGED_IN,
 * nothing acquired, unless the token is logged in as `user` when the session
 * is taken.  "Log in, then acquire" is not enough: a reinitialization of the
 * module in between (on behalf of another token) ends the login quietly,
 * and the session would work unauthenticated (seeing public objects only).
 * Held, the session keeps reinitializations out, so the login lasts until
 * release unless this process logs the token out (p11_token_logout).  On
 * that refusal, log in again and retry. */
kerr_code p11_session_acquire_as(p11_token *tok, CK_USER_TYPE user, p11_session **out,
                                 p11_err *err);

/* Return a session to the pool.  A session whose last call failed with a
 * session-fatal CK_RV (CKR_SESSION_CLOSED, CKR_SESSION_HANDLE_INVALID,
 * CKR_DEVICE_*, CKR_TOKEN_NOT_PRESENT...) or one left with an operation active
 * is closed instead of being reused.  NULL is allowed. */
void p11_session_release(p11_session *s);

/* The raw handle, for calls this layer does not wrap (with
 * p11_module_functions).  Valid until release. */
CK_SESSION_HANDLE p11_session_handle(const p11_session *s);

/* How many pooled sessions are open (idle or acquired; the anchor is not
 * counted), for tests and diagnostics. */
size_t p11_token_open_sessions(p11_token *tok);

/* ---- keys --------------------------------------------------------------- */

#define P11_ID_MAX 128            /* bytes of a caller-given key id */
#define P11_AES_KEY_BYTES 32
#define P11_GCM_IV_BYTES 12
#define P11_GCM_TAG_BYTES 16
#define P11_GCM_MAX_INPUT (1u << 20)   /* plaintext / ciphertext bound */
#define P11_GCM_MAX_AAD (64u << 10)
#define P11_WRAPPED_MAX 512       /* bound on a wrapped-key blob from the module */
#define P11_WRAPPED_AES256_BYTES 40 /* CKM_AES_KEY_WRAP_PAD of a 32-byte key */
#define P11_RANDOM_MAX 4096

typedef enum p11_key_kind {
  /* A data key: CKA_ENCRYPT/DECRYPT, sensitive, never extractable. */
  P11_KEY_DATA = 0,
  /* A data key a cluster can copy to its other HSMs: as P11_KEY_DATA but
   * CKA_EXTRACTABLE=TRUE with CKA_WRAP_WITH_TRUSTED=TRUE, so only a wrapping
   * key the SO marked CKA_TRUSTED can wrap it; CKA_VALUE stays unreadable. */
  P11_KEY_DATA_COPYABLE = 1,
  /* A wrapping key: CKA_WRAP/UNWRAP only (no encrypt/decrypt), sensitive,
   * never extractable. */
  P11_KEY_WRAPPING = 2,
} p11_key_kind;

/* Attributes of a key object as the token reports them (for checks). */
typedef struct p11_key_info {
  int sensitive, extractable, always_sensitive, never_extractable;
  int wrap_with_trusted, trusted, token, private_;
  int encrypt, decrypt, wrap, unwrap;
  CK_KEY_TYPE key_type;
  CK_ULONG value_len;
} p11_key_info;

/* Generate an AES-256 token key of `kind` in the session's token
 * (CKM_AES_KEY_GEN, CKA_TOKEN=TRUE, CKA_PRIVATE=TRUE, CKA_SENSITIVE=TRUE),
 * with CKA_ID and CKA_LABEL set to `id` (1..P11_ID_MAX printable ASCII bytes).
 * Refuses an id some key of the token already has (KERR_ALREADY_EXISTS).
 * Needs a user login.  On failure no object is left. */
kerr_code p11_key_generate(p11_session *s, const char *id, p11_key_kind kind,
                           CK_OBJECT_HANDLE *out, p11_err *err);

/* Find the secret token key whose CKA_ID is `id`.  KERR_NOT_FOUND when
 * none; KERR_CONFLICT when more than one carries it through searches over
 * about a quarter of a second (a module may show a copy being made as a
 * second token key for a moment). */
kerr_code p11_key_find(p11_session *s, const char *id, CK_OBJECT_HANDLE *out, p11_err *err);

/* Working copies.  A module that keeps token objects in storage may read
 * that storage on every use of one (SoftHSM2 re-reads and decrypts the
 * object's file at each C_FindObjects and C_EncryptInit).  A working copy is
 * a session object made from a token key with C_CopyObject (CKA_TOKEN
 * false, every other attribute the original's) in the session that holds
 * the token's login, so it lives exactly as long as that login: a logout, a
 * close or a reinitialization of the module ends it, and each of those
 * moves the token's session generation on.  So a copy made in generation G
 * is usable from any session of generation G, and from no other.
 * (p11_keycache.h keeps copies by key id.) */

/* The generation `s` belongs to; fixed while `s` is held. */
unsigned p11_session_generation(const p11_session *s);

/* Make a working copy of token key `key` for sessions of s's generation.
 * KERR_INVALID_STATE (rv CKR_USER_NOT_LOGGED_IN) when s's generation is no
 * longer the token's or the token has no login; the module's refusal
 * otherwise (a module may not allow copies: use the key itself then). */
kerr_code p11_key_copy_working(p11_session *s, CK_OBJECT_HANDLE key, CK_OBJECT_HANDLE *copy,
                               p11_err *err);

/* Destroy working copy `copy` made in `generation`, when that generation is
 * still the token's (otherwise the copy is gone already, and its handle
 * number may name another object by now).  `s` is any held session of the
 * token: holding it keeps reinitializations out. */
void p11_key_drop_working(p11_session *s, CK_OBJECT_HANDLE copy, unsigned generation);

/* Destroy a key object.  KERR_NOT_FOUND when the handle is stale. */
kerr_code p11_key_destroy(p11_session *s, CK_OBJECT_HANDLE key, p11_err *err);


/* Destroy every object the session can see, token and session objects
 * alike, until a search finds none (scrubbing a token before it is used
 * again).  Refuses (KERR_INVALID_STATE, rv CKR_USER_NOT_LOGGED_IN) unless
 * the module reports the session logged in as the user (C_GetSessionInfo:
 * CKS_RW_USER_FUNCTIONS), at the start and again with the final empty
 * search, since a session that is not sees only public objects.  Any failed
 * C_FindObjects* or C_DestroyObject fails the call, as does a token still
 * showing objects after 64 rounds of 256.  KERR_OK therefore means the user
 * can see no object left.  *destroyed (may be NULL) counts the objects
 * destroyed, which stay destroyed after a failure. */
kerr_code p11_objects_destroy_all(p11_session *s, size_t *destroyed, p11_err *err);

/* Read the boolean and size attributes of a key (never CKA_VALUE). */
kerr_code p11_key_get_info(p11_session *s, CK_OBJECT_HANDLE key, p11_key_info *info,
                           p11_err *err);

/* Log in as the security officer (CKU_SO) on the token handle, for the short
 * provisioning steps that need it.  Fails with CKR_USER_ANOTHER_ALREADY_LOGGED_IN
 * while the user is logged in: log the user out first.  Undo with
 * p11_token_logout. */
kerr_code p11_token_login_so(p11_token *tok, const char *so_pin, p11_err *err);

/* Generate a trusted wrapping key as the SO (see docs/pkcs11.md): AES-256,
 * CKA_WRAP/UNWRAP, sensitive, never extractable, CKA_TRUSTED=TRUE, and
 * CKA_PRIVATE=FALSE because an SO session can neither create nor see private
 * objects.  Being sensitive, its value is unreadable to anyone. */
kerr_code p11_key_generate_so(p11_session *s, const char *id, CK_OBJECT_HANDLE *out,
                              p11_err *err);

/* Establishing one trusted wrapping key on two tokens without its value ever
 * existing outside them: each token makes an ephemeral P-256 key pair, the
 * public points are exchanged through kmsd, and each token derives the same
 * AES-256 key by ECDH (CKM_ECDH1_DERIVE).  Both steps need the SO logged in
 * (only the SO may create a CKA_TRUSTED key).  See docs/pkcs11.md. */
#define P11_EC_POINT_BYTES 65     /* uncompressed P-256 point: 04 || X || Y */

typedef struct p11_agreement {
  CK_OBJECT_HANDLE pub, priv;     /* session objects, destroyed by finish */
} p11_agreement;

/* Step 1: generate the ephemeral key pair (session objects, so they vanish
 * with the session even if step 2 never runs) and return its public point. */
kerr_code p11_agree_begin(p11_session *s, p11_agreement *ag, uint8_t point[P11_EC_POINT_BYTES],
                          p11_err *err);

/* Step 2: derive from the peer token's point a token wrapping key with
 * CKA_ID/CKA_LABEL `id` and the attributes of p11_key_generate_so (trusted,
 * sensitive, never extractable, public object).  The ephemeral pair is
 * destroyed whatever the outcome.  Refuses an id that exists. */
kerr_code p11_agree_finish(p11_session *s, p11_agreement *ag,
                           const uint8_t peer_point[P11_EC_POINT_BYTES], const char *id,
                           CK_OBJECT_HANDLE *out, p11_err *err);

/* Fill `buf` with `len` (1..P11_RANDOM_MAX) bytes from the token's RNG. */
kerr_code p11_random(p11_session *s, uint8_t *buf, size_t len, p11_err *err);

/* AES-256-GCM encryption inside the token (CKM_AES_GCM, 96-bit IV drawn from
 * C_GenerateRandom, 128-bit tag).  `aad` may be NULL when aad_len is 0.
 * On success `iv` holds the IV and *out the ciphertext followed by the 16-byte
 * tag (pt_len + 16 bytes; caller frees with kbytes_wipe_free).  On failure
 * *out is empty. */
kerr_code p11_gcm_encrypt(p11_session *s, CK_OBJECT_HANDLE key,
                          const uint8_t *aad, size_t aad_len,
                          const uint8_t *pt, size_t pt_len,
                          uint8_t iv[P11_GCM_IV_BYTES], kbytes *out, p11_err *err);

/* AES-256-GCM decryption inside the token of ciphertext||tag (`ct_len` >= 16).
 * A wrong key, IV, AAD or a tampered ciphertext gives KERR_INVALID_CIPHERTEXT.
 * On success *out is the plaintext in a secure allocation (caller frees with
 * kbytes_wipe_free); on failure *out is empty. */
kerr_code p11_gcm_decrypt(p11_session *s, CK_OBJECT_HANDLE key,
                          const uint8_t iv[P11_GCM_IV_BYTES],
                          const uint8_t *aad, size_t aad_len,
                          const uint8_t *ct, size_t ct_len, kbytes *out, p11_err *err);

/* ---- external keys (xks-proxy) ------------------------------------------
 *
 * An External Key Store names its keys by CKA_LABEL, chooses their usage
 * per key, and must decrypt what other proxies made with 16-byte IVs; these
 * calls serve it.  A key that refuses the operation (CKA_ENCRYPT or
 * CKA_DECRYPT false: CKR_KEY_FUNCTION_NOT_PERMITTED, or a key of the wrong
 * type: CKR_KEY_TYPE_INCONSISTENT) gives KERR_INVALID_KEY_USAGE here, where
 * the older calls above keep their KERR_INTERNAL. */

#define P11_GCM_IV_MAX_BYTES 16   /* the 16-byte IVs an XKS proxy may accept */

/* Find the secret key whose CKA_LABEL is `label` (1..P11_ID_MAX printable
 * ASCII bytes).  KERR_NOT_FOUND when none; KERR_CONFLICT when more than one
 * carries it through searches over about a quarter of a second (a module
 * may show a copy being made as a second token key for a moment). */
kerr_code p11_key_find_label(p11_session *s, const char *label, CK_OBJECT_HANDLE *out,
                             p11_err *err);

/* Generate an AES-256 token key (CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE,
 * never extractable, no wrap/unwrap/sign/derive) with CKA_ID = CKA_LABEL =
 * `id` and CKA_ENCRYPT / CKA_DECRYPT as `encrypt` / `decrypt` (0 or 1; both
 * 0 makes a key that can do nothing, for tests of that case).  Refuses an id
 * or label some secret key of the token already has (KERR_ALREADY_EXISTS).
 * Needs a user login.  On failure no object is left. */
kerr_code p11_key_generate_usage(p11_session *s, const char *id, int encrypt, int decrypt,
                                 CK_OBJECT_HANDLE *out, p11_err *err);

/* AES-GCM encryption inside the token with the caller's IV (`iv_len` 12 or
 * 16 bytes; ulIvLen and ulIvBits set to match) and a 128-bit tag.  The caller
 * must never repeat an IV under one key.  *out as for p11_gcm_encrypt
 * (ciphertext || tag, pt_len + 16 bytes, secure; kbytes_wipe_free). */
kerr_code p11_gcm_encrypt_iv(p11_session *s, CK_OBJECT_HANDLE key, const uint8_t *iv,
                             size_t iv_len, const uint8_t *aad, size_t aad_len,
                             const uint8_t *pt, size_t pt_len, kbytes *out, p11_err *err);

/* AES-GCM decryption of ciphertext || tag with an IV of 12 or 16 bytes.
 * Answers as p11_gcm_decrypt (authentication failure KERR_INVALID_CIPHERTEXT,
 * plaintext in secure memory). */
kerr_code p11_gcm_decrypt_iv(p11_session *s, CK_OBJECT_HANDLE key, const uint8_t *iv,
                             size_t iv_len, const uint8_t *aad, size_t aad_len,
                             const uint8_t *ct, size_t ct_len, kbytes *out, p11_err *err);

/* What a token says about itself (C_GetTokenInfo), its strings with the
 * padding removed and every byte outside 0x20..0x7E replaced by '?', so
 * they can go into logs and replies. */
typedef struct p11_token_desc {
  char label[P11_LABEL_MAX + 1];
  char manufacturer[33];
  char model[17];
  char serial[17];
  unsigned fw_major, fw_minor;
  int has_rng;                    /* CKF_RNG: C_GenerateRandom is a real RNG */
} p11_token_desc;

/* C_GetTokenInfo on the token's slot (found again after a reinitialization
 * of its module), waiting for a reinitialization no longer than the token's
 * acquire timeout.  The token's lock is not held during the module call, so
 * a token that hangs here blocks no acquire of it. */
kerr_code p11_token_describe(p11_token *tok, p11_token_desc *out, p11_err *err);

/* Wrap `key` under `wrapping_key` with CKM_AES_KEY_WRAP_PAD (RFC 5649).  The
 * blob is the key encrypted under a key that never leaves the HSMs, so it is
 * not a secret in clear; *out is heap memory the caller frees with
 * kbytes_wipe_free.  Fails with CKR_KEY_UNEXTRACTABLE for non-copyable keys and
 * CKR_KEY_NOT_WRAPPABLE when the wrapping key is not trusted. */
kerr_code p11_key_wrap(p11_session *s, CK_OBJECT_HANDLE wrapping_key, CK_OBJECT_HANDLE key,
                       kbytes *out, p11_err *err);

/* Unwrap a blob made by p11_key_wrap into a new token key of `kind` with
 * CKA_ID/CKA_LABEL `id` (refused if the id exists).  The new key is
 * sensitive, and non-extractable unless `kind` is P11_KEY_DATA_COPYABLE.
 * The blob must be P11_WRAPPED_AES256_BYTES long.  A blob that does not
 * authenticate under the unwrapping key fails (CKR_WRAPPED_KEY_INVALID or the
 * module's equivalent) and creates nothing. */
kerr_code p11_key_unwrap(p11_session *s, CK_OBJECT_HANDLE unwrapping_key,
                         const uint8_t *wrapped, size_t wrapped_len,
                         const char *id, p11_key_kind kind, CK_OBJECT_HANDLE *out,
                         p11_err *err);

/* Copy the key with CKA_ID `id` from the token of `src` to the token of `dst`:
 * wrap under `src_wrap`, unwrap under `dst_wrap` (the same wrapping key present
 * on both tokens), keeping its kind.  The value never exists outside the HSMs
 * in clear.  On failure nothing is created on the target. */
kerr_code p11_key_copy(p11_session *src, CK_OBJECT_HANDLE src_wrap,
                       p11_session *dst, CK_OBJECT_HANDLE dst_wrap,
                       const char *id, p11_key_kind kind, CK_OBJECT_HANDLE *out,
                       p11_err *err);

#endif
