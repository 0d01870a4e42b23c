/* store_sql.h - the column lists both SQL backends (store_sqlite.c,
 * store_pg.c) select and insert in, one place for both: each backend's row
 * readers take the columns by position in exactly this order. */
#ifndef KMSD_STORE_STORE_SQL_H
#define KMSD_STORE_STORE_SQL_H

#define KEY_COLUMNS                                                                        \
  "key_id, account_id, region, created_ms, description, key_state, key_usage, key_spec, " \
  "origin, custom_key_store_id, xks_key_id, policy_version, deletion_date_ms, "           \
  "pending_window_days, rotation_enabled, rotation_period_days, next_rotation_ms, "       \
  "on_demand_rotations, current_material_id"

#define CKS_COLUMNS                                                                          \
  "cks_id, account_id, region, name, type, cluster_id, trust_anchor_pem, password_wrapped, " \
  "pending_password_wrapped, connection_state, connection_error, created_ms, "              \
  "state_changed_ms, cluster_lineage, xks_uri_endpoint, xks_uri_path, xks_connectivity, "   \
  "xks_vpc_service_name, xks_vpc_service_owner, xks_access_key_id, xks_secret_wrapped"

#define HSM_CLUSTER_COLUMNS                                                              \
  "cluster_id, account_id, region, state, state_message, hsm_type, mode, network_type, " \
  "lineage, source_backup_id, simulated_failure, security_group, vpc_id, created_ms, "   \
  "subnets, tags, csr_pem, trust_anchor_pem, cluster_cert_pem"

#define HSM_HSM_COLUMNS                                                                      \
  "hsm_id, cluster_id, availability_zone, subnet_id, eni_id, eni_ip, state, state_message, " \
  "created_ms, pool_index, token_label"

#define HSM_USER_COLUMNS "cluster_id, username, role, salt, hash, failed_logins, locked, logged_in"

#define HSM_BACKUP_COLUMNS \
  "backup_id, cluster_id, account_id, region, lineage, state, hsm_type, mode, created_ms"

#define MATERIAL_COLUMNS "material_id, key_id, seq, wrapped, created_ms, rotation_type"

#define ALIAS_COLUMNS "account_id, region, alias_name, key_id, created_ms, updated_ms"

#endif
