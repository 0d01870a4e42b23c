/* handlers_crypto.c - cryptographic operations with symmetric KMS keys:
 * Encrypt, Decrypt, ReEncrypt, GenerateDataKey(WithoutPlaintext), GenerateRandom.
 *
 * Plaintexts cross this layer twice (base64 in, base64 out); both copies live
 * in secure memory here and are wiped before the handler returns.  The JSON
 * reply necessarily holds the base64 text until the pipeline has sent it. */
#include <stdlib.h>

#include "api/api_json.h"

/* Take ownership of `reply` into *out, or release it after a failure. */
static kerr_code finish(kerr_code rc, json_t *reply, json_t **out) {
  if (rc) {
    json_decref(reply);
    return rc;
  }
  *out = reply;
  return KERR_OK;
}

static kerr_code handle_encrypt(const api_request *req, json_t *in, json_t **out, kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  kms_encrypt_input ei = {0};
  kms_encrypt_output eo = {0};
  kbytes plaintext = {0};
  kms_pair *context = NULL;
  json_t *reply = NULL;

  if ((rc = api_json_reject_unsupported(in, err))) goto out;
  if ((rc = api_json_get_str(in, "KeyId", true, &ei.key_id, err))) goto out;
  if ((rc = api_json_get_blob(in, "Plaintext", true, &plaintext, err))) goto out;
  if ((rc = api_json_get_pairs(in, "EncryptionContext", &context, &ei.ncontext, err))) goto out;
  if ((rc = api_json_get_str(in, "EncryptionAlgorithm", false, &ei.encryption_algorithm, err)))
    goto out;
  if ((rc = api_json_get_bool(in, "DryRun", false, &ei.dry_run, err))) goto out;
  ei.plaintext = plaintext.data;
  ei.plaintext_len = plaintext.len;
  ei.context = context;

  rc = kms_op_encrypt(req->domain, &call, &ei, &eo, err);
  if (rc) goto out;
  if ((rc = api_json_new_object(&reply, err))) goto out;
  if ((rc = api_json_set_blob(reply, "CiphertextBlob", eo.ciphertext, eo.ciphertext_len, err)))
    goto out;
  if ((rc = api_json_set_str(reply, "KeyId", eo.key_id, err))) goto out;
  rc = api_json_set_str(reply, "EncryptionAlgorithm", eo.encryption_algorithm, err);
out:
  kbytes_wipe_free(&plaintext);
  free(context);
  kms_encrypt_output_clear(&eo);
  return finish(rc, reply, out);
}

static kerr_code handle_decrypt(const api_request *req, json_t *in, json_t **out, kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  kms_decrypt_input di = {0};
  kms_decrypt_output dout = {0};
  kbytes ciphertext = {0};
  kms_pair *context = NULL;
  json_t *reply = NULL;

  if ((rc = api_json_reject_unsupported(in, err))) goto out;
  /* Optional in the model (a Recipient may carry it elsewhere), required for
   * every symmetric decryption kmsd can do. */
  if ((rc = api_json_get_blob(in, "CiphertextBlob", true, &ciphertext, err))) goto out;
  if ((rc = api_json_get_pairs(in, "EncryptionContext", &context, &di.ncontext, err))) goto out;
  if ((rc = api_json_get_str(in, "KeyId", false, &di.key_id, err))) goto out;
  if ((rc = api_json_get_str(in, "EncryptionAlgorithm", false, &di.encryption_algorithm, err)))
    goto out;
  if ((rc = api_json_get_bool(in, "DryRun", false, &di.dry_run, err))) goto out;
  di.ciphertext = ciphertext.data;
  di.ciphertext_len = ciphertext.len;
  di.context = context;

  rc = kms_op_decrypt(req->domain, &call, &di, &dout, err);
  if (rc) goto out;
  if ((rc = api_json_new_object(&reply, err))) goto out;
  if ((rc = api_json_set_str(reply, "KeyId", dout.key_id, err))) goto out;
  if ((rc = api_json_set_blob(reply, "Plaintext", dout.plaintext.data, dout.plaintext.len, err)))
    goto out;
  if ((rc = api_json_set_str(reply, "EncryptionAlgorithm", dout.encryption_algorithm, err)))
    goto out;
  rc = api_json_set_str_opt(reply, "KeyMaterialId", dout.key_material_id, err);
out:
  kbytes_wipe_free(&ciphertext);
  free(context);
  kms_decrypt_output_clear(&dout);
  return finish(rc, reply, out);
}

static kerr_code handle_reencrypt(const api_request *req, json_t *in, json_t **out, kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  kms_reencrypt_input ri = {0};
  kms_reencrypt_output ro = {0};
  kbytes ciphertext = {0};
  kms_pair *src_context = NULL, *dst_context = NULL;
  json_t *reply = NULL;

  if ((rc = api_json_reject_unsupported(in, err))) goto out;
  if ((rc = api_json_get_blob(in, "CiphertextBlob", true, &ciphertext, err))) goto out;
  if ((rc = api_json_get_pairs(in, "SourceEncryptionContext", &src_context, &ri.nsource_context,
                               err)))
    goto out;
  if ((rc = api_json_get_str(in, "SourceKeyId", false, &ri.source_key_id, err))) goto out;
  if ((rc = api_json_get_str(in, "DestinationKeyId", true, &ri.destination_key_id, err)))
    goto out;
  if ((rc = api_json_get_pairs(in, "DestinationEncryptionContext", &dst_context,
                               &ri.ndestination_context, err)))
    goto out;
  if ((rc = api_json_get_str(in, "SourceEncryptionAlgorithm", false,
                             &ri.source_encryption_algorithm, err)))
    goto out;
  if ((rc = api_json_get_str(in, "DestinationEncryptionAlgorithm", false,
                             &ri.destination_encryption_algorithm, err)))
    goto out;
  if ((rc = api_json_get_bool(in, "DryRun", false, &ri.dry_run, err))) goto out;
  ri.ciphertext = ciphertext.data;
  ri.ciphertext_len = ciphertext.len;
  ri.source_context = src_context;
  ri.destination_context = dst_context;

  rc = kms_reencrypt(req->domain, &call, &ri, &ro, err);
  if (rc) goto out;
  if ((rc = api_json_new_object(&reply, err))) goto out;
  if ((rc = api_json_set_blob(reply, "CiphertextBlob", ro.ciphertext, ro.ciphertext_len, err)))
    goto out;
  if ((rc = api_json_set_str(reply, "SourceKeyId", ro.source_key_id, err))) goto out;
  if ((rc = api_json_set_str(reply, "KeyId", ro.key_id, err))) goto out;
  if ((rc = api_json_set_str(reply, "SourceEncryptionAlgorithm", ro.source_encryption_algorithm,
                             err)))
    goto out;
  if ((rc = api_json_set_str(reply, "DestinationEncryptionAlgorithm",
                             ro.destination_encryption_algorithm, err)))
    goto out;
  if ((rc = api_json_set_str_opt(reply, "SourceKeyMaterialId", ro.source_key_material_id, err)))
    goto out;
  rc = api_json_set_str_opt(reply, "DestinationKeyMaterialId", ro.destination_key_material_id,
                            err);
out:
  kbytes_wipe_free(&ciphertext);
  free(src_context);
  free(dst_context);
  kms_reencrypt_output_clear(&ro);
  return finish(rc, reply, out);
}

/* GenerateDataKey and ...WithoutPlaintext share their input and differ only
 * in whether the plaintext data key is returned. */
static kerr_code generate_data_key(const api_request *req, json_t *in, json_t **out,
                                   bool with_plaintext, kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  kms_generate_data_key_input gi = {0};
  kms_generate_data_key_output go = {0};
  kms_pair *context = NULL;
  int64_t nbytes = 0;
  json_t *reply = NULL;

  if ((rc = api_json_reject_unsupported(in, err))) goto out;
  if ((rc = api_json_get_str(in, "KeyId", true, &gi.key_id, err))) goto out;
  if ((rc = api_json_get_pairs(in, "EncryptionContext", &context, &gi.ncontext, err))) goto out;
  if ((rc = api_json_get_str(in, "KeySpec", false, &gi.key_spec, err))) goto out;
  if ((rc = api_json_get_int(in, "NumberOfBytes", &gi.has_number_of_bytes, &nbytes, err)))
    goto out;
  if (gi.has_number_of_bytes && (nbytes < 1 || nbytes > 1024)) {
    rc = kerr_set(err, KERR_VALIDATION,
                  "1 validation error detected: Value '%lld' at 'numberOfBytes' failed to "
                  "satisfy constraint: Member must have value less than or equal to 1024",
                  (long long)nbytes);
    goto out;
  }
  gi.number_of_bytes = (int)nbytes;
  if ((rc = api_json_get_bool(in, "DryRun", false, &gi.dry_run, err))) goto out;
  gi.context = context;

  if (with_plaintext)
    rc = kms_op_generate_data_key(req->domain, &call, &gi, &go, err);
  else
    rc = kms_op_generate_data_key_without_plaintext(req->domain, &call, &gi, &go, err);
  if (rc) goto out;
  if ((rc = api_json_new_object(&reply, err))) goto out;
  if ((rc = api_json_set_blob(reply, "CiphertextBlob", go.ciphertext, go.ciphertext_len, err)))
    goto out;
  if (with_plaintext &&
      (rc = api_json_set_blob(reply, "Plaintext", go.plaintext.data, go.plaintext.len, err)))
    goto out;
  if ((rc = api_json_set_str(reply, "KeyId", go.key_id, err))) goto out;
  rc = api_json_set_str_opt(reply, "KeyMaterialId", go.key_material_id, err);
out:
  free(context);
  kms_generate_data_key_output_clear(&go);
  return finish(rc, reply, out);
}

static kerr_code handle_generate_data_key(const api_request *req, json_t *in, json_t **out,
                                          kerr *err) {
  return generate_data_key(req, in, out, true, err);
}

static kerr_code handle_generate_data_key_without_plaintext(const api_request *req, json_t *in,
                                                            json_t **out, kerr *err) {
  return generate_data_key(req, in, out, false, err);
}

static kerr_code handle_generate_random(const api_request *req, json_t *in, json_t **out,
                                        kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  kms_generate_random_input gi = {0};
  kbytes random = {0};
  int64_t nbytes = 0;
  json_t *reply = NULL;

  if ((rc = api_json_reject_unsupported(in, err))) goto out;
  if ((rc = api_json_get_int(in, "NumberOfBytes", &gi.has_number_of_bytes, &nbytes, err)))
    goto out;
  if (gi.has_number_of_bytes && (nbytes < 1 || nbytes > 1024)) {
    rc = kerr_set(err, KERR_VALIDATION,
                  "1 validation error detected: Value '%lld' at 'numberOfBytes' failed to "
                  "satisfy constraint: Member must have value less than or equal to 1024",
                  (long long)nbytes);
    goto out;
  }
  gi.number_of_bytes = (int)nbytes;
  if ((rc = api_json_get_str(in, "CustomKeyStoreId", false, &gi.custom_key_store_id, err)))
    goto out;

  rc = kms_op_generate_random(req->domain, &call, &gi, &random, err);
  if (rc) goto out;
  if ((rc = api_json_new_object(&reply, err))) goto out;
  rc = api_json_set_blob(reply, "Plaintext", random.data, random.len, err);
out:
  kbytes_wipe_free(&random);
  return finish(rc, reply, out);
}

const api_handler api_handlers_crypto[] = {
    {"Decrypt", handle_decrypt},
    {"Encrypt", handle_encrypt},
    {"GenerateDataKey", handle_generate_data_key},
    {"GenerateDataKeyWithoutPlaintext", handle_generate_data_key_without_plaintext},
    {"GenerateRandom", handle_generate_random},
    {"ReEncrypt", handle_reencrypt},
};
const size_t api_handlers_crypto_count =
    sizeof api_handlers_crypto / sizeof api_handlers_crypto[0];
