//! The secret vault: secret keys and webhook signing secrets, AES-256-GCM encrypted.
//!
//! Envelope encryption: each workspace has a random data key, stored wrapped by the
//! master key (with the master key's id, so the master key can be rotated). Every
//! secret is encrypted under its workspace's data key with the associated data
//! `workspace_id|field|version`: a ciphertext copied to another workspace, field or
//! version fails to decrypt.

use std::collections::HashMap;
use std::sync::Mutex;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use roampay_projections::{on_db, Db};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::{Digest, Sha256};
use sqlx::Row;
use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretField {
    SecretKey,
    WebhookSigningSecret,
    /// An OCPI partner's credentials token (roampay sends it to that partner).
    OcpiPartnerToken,
    /// The credentials token roampay issued to an OCPI partner (shown again by `GET
    /// credentials`).
    OcpiIssuedToken,
}

impl SecretField {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecretKey => "secret_key",
            Self::WebhookSigningSecret => "webhook_signing_secret",
            Self::OcpiPartnerToken => "ocpi_partner_token",
            Self::OcpiIssuedToken => "ocpi_issued_token",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("vault storage failed: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("no secret stored for {field} version {version}")]
    NotFound { field: &'static str, version: u32 },
    #[error("a stored secret did not decrypt (wrong workspace, field, version or master key)")]
    Decrypt,
    #[error("data key of this workspace is wrapped by master key {0}, which is not configured")]
    UnknownMasterKey(String),
    #[error("deleted vault rows could not be erased from the database files yet: {0}")]
    NotShredded(&'static str),
}

/// Why `serve` may not use the configured master key with this store.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyCheck {
    #[error("the vault could not be read: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("ROAMPAY_MASTER_KEY: this store's data keys are wrapped with master key {needed}, but the master key in use is {configured}{previous}; start every instance with the store's master key (ROAMPAY_MASTER_KEY_PREVIOUS keeps an old one during `roampay keys rotate-master`)")]
    Mismatch {
        needed: String,
        configured: String,
        previous: String,
    },
}

/// Checks that `master` (and `previous`) can unwrap every data key of the store and
/// that the store's recorded master key is among them. Reads only.
pub async fn check_master_keys(
    db: &Db,
    master: &MasterKey,
    previous: &[MasterKey],
) -> Result<(), MasterKeyCheck> {
    let known = |id: &str| master.id() == id || previous.iter().any(|p| p.id() == id);
    let mut needed: Vec<String> = on_db!(db, pool => {
        sqlx::query_scalar("SELECT DISTINCT master_key_id FROM vault_data_keys
                            UNION SELECT master_key_id FROM vault_master")
            .fetch_all(pool).await
    })?;
    needed.retain(|id| !known(id));
    match needed.is_empty() {
        true => Ok(()),
        false => Err(MasterKeyCheck::Mismatch {
            needed: needed.join(", "),
            configured: master.id().to_string(),
            previous: match previous.is_empty() {
                true => String::new(),
                false => format!(
                    " (previous: {})",
                    previous
                        .iter()
                        .map(MasterKey::id)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        }),
    }
}

/// Records `master` as the store's master key unless one is recorded already (the
/// first instance to start on a store names it for all).
pub async fn record_master_key(db: &Db, master: &MasterKey) -> Result<(), sqlx::Error> {
    on_db!(db, pool => sqlx::query(
        "INSERT INTO vault_master (singleton, master_key_id) VALUES (1, $1) ON CONFLICT (singleton) DO NOTHING")
        .bind(master.id()).execute(pool).await.map(|_| ()))
}

/// What `roampay keys rotate-master` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rewrapped {
    /// Data keys now wrapped with the new master key by this run.
    pub rewrapped: u64,
    /// Data keys that already were (an earlier, interrupted run).
    pub already: u64,
}

/// Re-wraps every data key under `new`, unwrapping with `old` (the current key and the
/// previous ones). Row by row, each a compare-and-set on its old wrapping: safe while
/// instances run and resumable when interrupted. Once every key is under `new`, the
/// store records `new` and the old wrappings are shredded.
pub async fn rotate_master(
    db: &Db,
    old: &[MasterKey],
    new: &MasterKey,
    progress: impl Fn(u64),
) -> Result<Rewrapped, String> {
    let mut done = Rewrapped::default();
    loop {
        let rows: Vec<(String, String, Vec<u8>, Vec<u8>)> = on_db!(db, pool => {
            sqlx::query_as("SELECT workspace_id, master_key_id, nonce, wrapped_key FROM vault_data_keys
                             WHERE master_key_id <> $1 ORDER BY workspace_id LIMIT 500")
                .bind(new.id()).fetch_all(pool).await
        })
        .map_err(|e| format!("reading the vault failed: {e}"))?;
        if rows.is_empty() {
            break;
        }
        for (ws, master_id, nonce, wrapped) in rows {
            let plain = unwrap(old.iter(), &ws, &master_id, &nonce, &wrapped).map_err(|e| match e {
                VaultError::UnknownMasterKey(_) => format!("the data key of workspace {ws} is wrapped with master key {master_id}, which is neither ROAMPAY_MASTER_KEY nor ROAMPAY_MASTER_KEY_PREVIOUS"),
                _ => format!("the data key of workspace {ws} did not unwrap with master key {master_id}"),
            })?;
            let (n, ct) = wrap(new, &ws, plain.as_ref());
            let moved = on_db!(db, pool => sqlx::query(
                "UPDATE vault_data_keys SET master_key_id = $1, nonce = $2, wrapped_key = $3
                  WHERE workspace_id = $4 AND master_key_id = $5")
                .bind(new.id()).bind(&n).bind(&ct).bind(&ws).bind(&master_id)
                .execute(pool).await.map(|r| r.rows_affected()))
            .map_err(|e| format!("writing the vault failed: {e}"))?;
            done.rewrapped += moved;
            progress(done.rewrapped);
        }
    }
    let total: i64 = on_db!(db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM vault_data_keys")
        .fetch_one(pool).await)
    .map_err(|e| format!("reading the vault failed: {e}"))?;
    done.already = (total as u64).saturating_sub(done.rewrapped);
    on_db!(db, pool => sqlx::query(
        "INSERT INTO vault_master (singleton, master_key_id) VALUES (1, $1)
         ON CONFLICT (singleton) DO UPDATE SET master_key_id = excluded.master_key_id")
        .bind(new.id()).execute(pool).await.map(|_| ()))
    .map_err(|e| format!("writing the vault failed: {e}"))?;
    shred(db)
        .await
        .map_err(|e| format!("shredding old wrappings failed: {e}"))?;
    Ok(done)
}

/// Leaves no bytes of deleted or replaced vault rows in the database files: SQLite
/// zeroes freed cells (`secure_delete`, set on every connection) and here its WAL is
/// checkpointed and truncated; PostgreSQL rewrites the two small vault tables (a plain
/// VACUUM keeps dead tuples' bytes on the page). WAL archives and backups keep old pages
/// until they age out (docs/runbook.md).
pub async fn shred(db: &Db) -> Result<(), VaultError> {
    // Transactions begun before the delete may still see the rows: while one runs,
    // SQLite cannot truncate its WAL and PostgreSQL's VACUUM keeps the dead tuples
    // ("recently dead"). They are short; a purge waits some seconds for them, and
    // otherwise fails to be tried again on the session worker's next round.
    const TRIES: u64 = 50;
    let pause = |attempt: u64| tokio::time::sleep(std::time::Duration::from_millis(20 * attempt));
    match db {
        Db::Sqlite(pool) => {
            for attempt in 1..=TRIES {
                let (busy, _, _): (i64, i64, i64) =
                    sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                        .fetch_one(pool)
                        .await?;
                if busy == 0 {
                    return Ok(());
                }
                pause(attempt).await;
            }
            Err(VaultError::NotShredded("readers kept the SQLite WAL busy"))
        }
        Db::Postgres(pool) => {
            let mut conn = pool.acquire().await?;
            let deleted: chrono::DateTime<chrono::Utc> =
                sqlx::query_scalar("SELECT clock_timestamp()")
                    .fetch_one(&mut *conn)
                    .await?;
            // What holds dead tuples back: this database's snapshots, and any database's
            // transaction that has an id (tested on PostgreSQL 15), prepared ones too.
            let older = "SELECT (SELECT count(*) FROM pg_stat_activity
                                  WHERE pid <> pg_backend_pid() AND xact_start < $1
                                    AND (backend_xid IS NOT NULL
                                         OR (datname = current_database()
                                             AND backend_xmin IS NOT NULL)))
                              + (SELECT count(*) FROM pg_prepared_xacts WHERE prepared < $1)";
            for attempt in 1..=TRIES {
                let running: i64 = sqlx::query_scalar(older)
                    .bind(deleted)
                    .fetch_one(&mut *conn)
                    .await?;
                if running == 0 {
                    sqlx::query("VACUUM (FULL) vault_data_keys, vault_secrets")
                        .execute(&mut *conn)
                        .await?;
                    return Ok(());
                }
                pause(attempt).await;
            }
            Err(VaultError::NotShredded(
                "transactions older than the purge kept running",
            ))
        }
    }
}

/// A workspace's data key, unwrapped with whichever of `masters` wrapped it.
fn unwrap<'a>(
    mut masters: impl Iterator<Item = &'a MasterKey>,
    workspace_id: &str,
    master_id: &str,
    nonce: &[u8],
    wrapped: &[u8],
) -> Result<Zeroizing<[u8; 32]>, VaultError> {
    let master = masters
        .find(|m| m.id() == master_id)
        .ok_or_else(|| VaultError::UnknownMasterKey(master_id.to_string()))?;
    let aad = data_key_aad(workspace_id, master_id);
    let plain = decrypt(&master.cipher(), nonce, &aad, wrapped)?;
    let key: [u8; 32] = plain
        .as_slice()
        .try_into()
        .map_err(|_| VaultError::Decrypt)?;
    Ok(Zeroizing::new(key))
}

fn wrap(master: &MasterKey, workspace_id: &str, data_key: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut n = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut n);
    let ct = encrypt_nonce(
        &master.cipher(),
        &n,
        Payload {
            msg: data_key,
            aad: &data_key_aad(workspace_id, master.id()),
        },
    );
    (n.to_vec(), ct)
}

/// Stores and returns secrets; the aggregate reaches it through this trait.
#[async_trait::async_trait]
pub trait SecretVault: Send + Sync {
    /// A keyed fingerprint (HMAC-SHA256 under a key derived from the workspace's data
    /// key): equal secrets give equal fingerprints, and it cannot be reversed.
    async fn fingerprint(
        &self,
        workspace_id: &str,
        field: SecretField,
        secret: &SecretString,
    ) -> Result<String, VaultError>;
    async fn put(
        &self,
        workspace_id: &str,
        field: SecretField,
        version: u32,
        fingerprint: &str,
        secret: &SecretString,
    ) -> Result<(), VaultError>;
    async fn get(
        &self,
        workspace_id: &str,
        field: SecretField,
        version: u32,
        fingerprint: &str,
    ) -> Result<SecretString, VaultError>;
    /// Crypto-shredding: the workspace's data key and every secret under it are gone
    /// for good (a later secret gets a new data key).
    async fn destroy(&self, workspace_id: &str) -> Result<(), VaultError>;
}

/// A secret's bytes as key material (the JWT's HS256 key, the test fakes): besides the
/// Stripe client and the webhook HMAC, the one place a secret leaves its wrapper.
pub fn key_bytes(secret: &SecretString) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(secret.expose_secret().as_bytes().to_vec())
}

/// The 32-byte master key; its id is the first 16 hex digits of its SHA-256.
pub struct MasterKey {
    key: SecretBox<[u8; 32]>,
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let id = hex::encode(&Sha256::digest(bytes)[..8]);
        Self {
            key: SecretBox::new(Box::new(bytes)),
            id,
        }
    }

    /// Parses base64 (standard alphabet) of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, String> {
        use base64::Engine;
        let raw = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| "the master key is not valid base64".to_string())?,
        );
        let bytes: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| format!("the master key must be 32 bytes, got {}", raw.len()))?;
        Ok(Self::from_bytes(bytes))
    }

    /// The key as configured (base64 of 32 bytes).
    pub fn from_secret(text: &SecretString) -> Result<Self, String> {
        Self::from_base64(text.expose_secret())
    }

    /// Retired keys: comma-separated base64.
    pub fn list_from_config(previous: Option<&SecretString>) -> Result<Vec<Self>, String> {
        match previous {
            Some(p) => p
                .expose_secret()
                .split(',')
                .filter(|k| !k.trim().is_empty())
                .map(Self::from_base64)
                .collect(),
            None => Ok(vec![]),
        }
    }

    pub fn generate_base64() -> Zeroizing<String> {
        use base64::Engine;
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::thread_rng().fill_bytes(bytes.as_mut());
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(bytes.as_ref()))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(self.key.expose_secret()).expect("32-byte key")
    }
}

/// (workspace, field, version, fingerprint): a vault row's identity.
type SecretKey = (String, &'static str, u32, String);

/// The vault on the service's own database.
pub struct DbVault {
    db: Db,
    master: MasterKey,
    /// Older master keys still able to unwrap data keys during a rotation.
    previous: Vec<MasterKey>,
    data_keys: Mutex<HashMap<String, Zeroizing<[u8; 32]>>>,
    /// Decrypted secrets of this process. Vault rows never change once written (a new
    /// value is a new version), so a read is cached for the life of the process: a
    /// webhook or a pre-authorization then costs no vault query.
    secrets: Mutex<HashMap<SecretKey, SecretString>>,
}

fn encrypt(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut nonce = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut nonce);
    let cipher = Aes256Gcm::new_from_slice(key).expect("32-byte key");
    let ct = encrypt_nonce(
        &cipher,
        &nonce,
        Payload {
            msg: plaintext,
            aad,
        },
    );
    (nonce.to_vec(), ct)
}

fn encrypt_nonce(cipher: &Aes256Gcm, nonce: &[u8; 12], payload: Payload<'_, '_>) -> Vec<u8> {
    cipher
        .encrypt(&Nonce::from(*nonce), payload)
        .expect("AES-GCM encryption of a short secret cannot fail")
}

fn decrypt(
    cipher: &Aes256Gcm,
    nonce: &[u8],
    aad: &[u8],
    ct: &[u8],
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let nonce: [u8; 12] = nonce.try_into().map_err(|_| VaultError::Decrypt)?;
    cipher
        .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad })
        .map(Zeroizing::new)
        .map_err(|_| VaultError::Decrypt)
}

fn secret_aad(workspace_id: &str, field: SecretField, version: u32) -> Vec<u8> {
    format!("{workspace_id}|{}|{version}", field.as_str()).into_bytes()
}

fn data_key_aad(workspace_id: &str, master_id: &str) -> Vec<u8> {
    format!("roampay-data-key|{workspace_id}|{master_id}").into_bytes()
}

impl DbVault {
    pub fn new(db: Db, master: MasterKey, previous: Vec<MasterKey>) -> Self {
        Self {
            db,
            master,
            previous,
            data_keys: Mutex::new(HashMap::new()),
            secrets: Mutex::new(HashMap::new()),
        }
    }

    pub fn master_key_id(&self) -> &str {
        self.master.id()
    }

    /// The workspace's data key, created (and wrapped) on first use.
    async fn data_key(&self, workspace_id: &str) -> Result<Zeroizing<[u8; 32]>, VaultError> {
        if let Some(k) = self
            .data_keys
            .lock()
            .expect("vault cache")
            .get(workspace_id)
        {
            return Ok(k.clone());
        }
        let mut fresh = Zeroizing::new([0u8; 32]);
        rand::thread_rng().fill_bytes(fresh.as_mut());
        let (nonce, wrapped) = wrap(&self.master, workspace_id, fresh.as_ref());
        // Two instances may race to create it: the first insert wins, both read it back.
        let row = on_db!(&self.db, pool => {
            sqlx::query("INSERT INTO vault_data_keys (workspace_id, master_key_id, nonce, wrapped_key)
                         VALUES ($1, $2, $3, $4) ON CONFLICT (workspace_id) DO NOTHING")
                .bind(workspace_id).bind(self.master.id()).bind(&nonce).bind(&wrapped)
                .execute(pool).await?;
            sqlx::query("SELECT master_key_id, nonce, wrapped_key FROM vault_data_keys WHERE workspace_id = $1")
                .bind(workspace_id).fetch_one(pool).await
                .and_then(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<Vec<u8>, _>(1)?, r.try_get::<Vec<u8>, _>(2)?)))?
        });
        let (master_id, nonce, wrapped) = row;
        let masters = std::iter::once(&self.master).chain(&self.previous);
        let key = unwrap(masters, workspace_id, &master_id, &nonce, &wrapped)?;
        self.data_keys
            .lock()
            .expect("vault cache")
            .insert(workspace_id.to_string(), key.clone());
        Ok(key)
    }
}

#[async_trait::async_trait]
impl SecretVault for DbVault {
    async fn destroy(&self, workspace_id: &str) -> Result<(), VaultError> {
        on_db!(&self.db, pool => {
            sqlx::query("DELETE FROM vault_secrets WHERE workspace_id = $1")
                .bind(workspace_id)
                .execute(pool)
                .await?;
            sqlx::query("DELETE FROM vault_data_keys WHERE workspace_id = $1")
                .bind(workspace_id)
                .execute(pool)
                .await?;
        });
        shred(&self.db).await?;
        self.data_keys
            .lock()
            .expect("vault cache")
            .remove(workspace_id);
        self.secrets
            .lock()
            .expect("vault cache")
            .retain(|k, _| k.0 != workspace_id);
        Ok(())
    }

    async fn fingerprint(
        &self,
        workspace_id: &str,
        field: SecretField,
        secret: &SecretString,
    ) -> Result<String, VaultError> {
        let dk = self.data_key(workspace_id).await?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(dk.as_ref()).expect("any key length");
        mac.update(b"roampay-fingerprint|");
        mac.update(field.as_str().as_bytes());
        mac.update(b"|");
        mac.update(secret.expose_secret().as_bytes());
        Ok(hex::encode(&mac.finalize().into_bytes()[..16]))
    }

    async fn put(
        &self,
        workspace_id: &str,
        field: SecretField,
        version: u32,
        fingerprint: &str,
        secret: &SecretString,
    ) -> Result<(), VaultError> {
        let dk = self.data_key(workspace_id).await?;
        let (nonce, ct) = encrypt(
            &dk,
            &secret_aad(workspace_id, field, version),
            secret.expose_secret().as_bytes(),
        );
        on_db!(&self.db, pool => sqlx::query(
            "INSERT INTO vault_secrets (workspace_id, field, version, fingerprint, nonce, ciphertext)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (workspace_id, field, version, fingerprint) DO NOTHING")
            .bind(workspace_id).bind(field.as_str()).bind(i64::from(version)).bind(fingerprint)
            .bind(nonce).bind(ct)
            .execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    async fn get(
        &self,
        workspace_id: &str,
        field: SecretField,
        version: u32,
        fingerprint: &str,
    ) -> Result<SecretString, VaultError> {
        let cache_key = (
            workspace_id.to_string(),
            field.as_str(),
            version,
            fingerprint.to_string(),
        );
        if let Some(s) = self.secrets.lock().expect("vault cache").get(&cache_key) {
            return Ok(s.clone());
        }
        let row = on_db!(&self.db, pool => sqlx::query(
            "SELECT nonce, ciphertext FROM vault_secrets
              WHERE workspace_id = $1 AND field = $2 AND version = $3 AND fingerprint = $4")
            .bind(workspace_id).bind(field.as_str()).bind(i64::from(version)).bind(fingerprint)
            .fetch_optional(pool).await
            .and_then(|r| r.map(|r| Ok((r.try_get::<Vec<u8>, _>(0)?, r.try_get::<Vec<u8>, _>(1)?))).transpose()))?;
        let (nonce, ct) = row.ok_or(VaultError::NotFound {
            field: field.as_str(),
            version,
        })?;
        let dk = self.data_key(workspace_id).await?;
        let cipher = Aes256Gcm::new_from_slice(dk.as_ref()).expect("32-byte key");
        let plain = decrypt(
            &cipher,
            &nonce,
            &secret_aad(workspace_id, field, version),
            &ct,
        )?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| VaultError::Decrypt)?;
        let secret = SecretString::from(text);
        let mut cache = self.secrets.lock().expect("vault cache");
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(cache_key, secret.clone());
        Ok(secret)
    }
}
