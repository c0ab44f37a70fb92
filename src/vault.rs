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
}

impl SecretField {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecretKey => "secret_key",
            Self::WebhookSigningSecret => "webhook_signing_secret",
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

    /// The configured key (base64), and the retired ones (comma-separated base64).
    pub fn from_config(
        current: &SecretString,
        previous: Option<&SecretString>,
    ) -> Result<(Self, Vec<Self>), String> {
        let master = Self::from_base64(current.expose_secret())?;
        let previous = match previous {
            Some(p) => p
                .expose_secret()
                .split(',')
                .filter(|k| !k.trim().is_empty())
                .map(Self::from_base64)
                .collect::<Result<_, _>>()?,
            None => vec![],
        };
        Ok((master, previous))
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
        let (nonce, wrapped) = {
            let mut n = [0u8; 12];
            rand::thread_rng().fill_bytes(&mut n);
            let ct = encrypt_nonce(
                &self.master.cipher(),
                &n,
                Payload {
                    msg: fresh.as_ref(),
                    aad: &data_key_aad(workspace_id, self.master.id()),
                },
            );
            (n.to_vec(), ct)
        };
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
        let master = std::iter::once(&self.master)
            .chain(&self.previous)
            .find(|m| m.id() == master_id)
            .ok_or(VaultError::UnknownMasterKey(master_id.clone()))?;
        let plain = decrypt(
            &master.cipher(),
            &nonce,
            &data_key_aad(workspace_id, &master_id),
            &wrapped,
        )?;
        let key: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| VaultError::Decrypt)?;
        let key = Zeroizing::new(key);
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
