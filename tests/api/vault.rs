//! The vault binds every ciphertext to its workspace, field and version.

use roampay::infra::vault::{DbVault, MasterKey, SecretField, SecretVault, VaultError};
use roampay_projections::{on_db, Db};
use secrecy::{ExposeSecret, SecretString};

use crate::on_both_backends;
use crate::support::*;

on_both_backends!(a_ciphertext_copied_to_another_workspace_does_not_decrypt);

async fn copy_secret(db: &Db, from: (&str, i64), to: (&str, i64)) {
    on_db!(db, pool => sqlx::query(
        "UPDATE vault_secrets SET nonce = (SELECT nonce FROM vault_secrets WHERE workspace_id = $1 AND version = $2 AND field = 'secret_key'),
                                  ciphertext = (SELECT ciphertext FROM vault_secrets WHERE workspace_id = $1 AND version = $2 AND field = 'secret_key')
          WHERE workspace_id = $3 AND version = $4 AND field = 'secret_key'")
        .bind(from.0).bind(from.1).bind(to.0).bind(to.1)
        .execute(pool).await.map(|r| assert_eq!(r.rows_affected(), 1)))
    .expect("copy ciphertext");
}

async fn a_ciphertext_copied_to_another_workspace_does_not_decrypt(b: Backend) {
    let store = Store::fresh(b).await;
    let db = store.db().await;
    let vault = DbVault::new(
        db.clone(),
        MasterKey::from_base64(MASTER_KEY).unwrap(),
        vec![],
    );
    let a = SecretString::from("sk_test_WorkspaceAsKey1".to_string());
    let b_key = SecretString::from("sk_test_WorkspaceBsKey2".to_string());
    let fa = vault
        .fingerprint("ws-a", SecretField::SecretKey, &a)
        .await
        .unwrap();
    let fb = vault
        .fingerprint("ws-b", SecretField::SecretKey, &b_key)
        .await
        .unwrap();
    vault
        .put("ws-a", SecretField::SecretKey, 1, &fa, &a)
        .await
        .unwrap();
    vault
        .put("ws-b", SecretField::SecretKey, 1, &fb, &b_key)
        .await
        .unwrap();
    vault
        .put("ws-b", SecretField::SecretKey, 2, &fb, &b_key)
        .await
        .unwrap();
    assert_eq!(
        vault
            .get("ws-b", SecretField::SecretKey, 1, &fb)
            .await
            .unwrap()
            .expose_secret(),
        "sk_test_WorkspaceBsKey2"
    );

    copy_secret(&db, ("ws-a", 1), ("ws-b", 1)).await;
    let fresh = DbVault::new(
        db.clone(),
        MasterKey::from_base64(MASTER_KEY).unwrap(),
        vec![],
    );
    assert!(
        matches!(
            fresh.get("ws-b", SecretField::SecretKey, 1, &fb).await,
            Err(VaultError::Decrypt)
        ),
        "another workspace's ciphertext"
    );

    copy_secret(&db, ("ws-b", 2), ("ws-b", 1)).await;
    assert!(
        matches!(
            fresh.get("ws-b", SecretField::SecretKey, 1, &fb).await,
            Err(VaultError::Decrypt)
        ),
        "another version's ciphertext"
    );

    assert_eq!(
        fresh
            .get("ws-a", SecretField::SecretKey, 1, &fa)
            .await
            .unwrap()
            .expose_secret(),
        "sk_test_WorkspaceAsKey1"
    );
    let other_master = DbVault::new(db.clone(), MasterKey::from_bytes([7; 32]), vec![]);
    assert!(matches!(
        other_master
            .get("ws-a", SecretField::SecretKey, 1, &fa)
            .await,
        Err(VaultError::UnknownMasterKey(_))
    ));
    let rotated = DbVault::new(
        db.clone(),
        MasterKey::from_bytes([7; 32]),
        vec![MasterKey::from_base64(MASTER_KEY).unwrap()],
    );
    assert!(
        rotated
            .get("ws-a", SecretField::SecretKey, 1, &fa)
            .await
            .is_ok(),
        "a retired master key still unwraps"
    );
}

on_both_backends!(a_tampered_vault_row_fails_loudly_through_the_api_without_leaking);

async fn a_tampered_vault_row_fails_loudly_through_the_api_without_leaking(b: Backend) {
    let store = Store::fresh(b).await;
    let stripe = stripe_ok().await;
    let server = Server::start(&store, ServerOptions::new(&stripe)).await;
    let t = token("staff", &["*"], "roaming:read roaming:write");
    server
        .patch(
            &config_path("ws-a"),
            &t,
            creds(
                "pk_test_51HxPublishable",
                "sk_test_51HxKeyOfWorkspaceA",
                "whsec_SecretOfWorkspaceA",
            ),
        )
        .await;
    server
        .patch(
            &config_path("ws-b"),
            &t,
            creds(
                "pk_test_51HxPublishable",
                "sk_test_51HxKeyOfWorkspaceB",
                "whsec_SecretOfWorkspaceB",
            ),
        )
        .await;
    drop(server);
    // Tampered with while the service is down; the restarted service reads the vault.
    let db = store.db().await;
    copy_secret(&db, ("ws-a", 1), ("ws-b", 1)).await;
    let server = Server::start(&store, ServerOptions::new(&stripe)).await;
    let (status, body) = server
        .post(&format!("{}/stripe/validate", config_path("ws-b")), &t)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (500, Some("internal_error")),
        "{body}"
    );
    assert!(!body.to_string().contains("WorkspaceA"), "{body}");
    let (status, body) = server
        .post(&format!("{}/stripe/validate", config_path("ws-a")), &t)
        .await;
    assert_eq!(status, 200, "the untouched workspace still works: {body}");
    let logs = server.logs();
    assert!(
        logs.contains("did not decrypt"),
        "the failure is logged with its cause"
    );
}
