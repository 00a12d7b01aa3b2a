//! A stand-in OIDC identity provider for tests: signing keys generated at test time (none is
//! committed), their JWK set written to a file, and tokens signed with them.

use bakkal::auth::oidc::jwks::JwksSource;
use bakkal::auth::oidc::OidcConfig;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde_json::{json, Value};

pub const ISSUER: &str = "https://idp.test.example";
pub const AUDIENCE: &str = "bakkal-test";

/// A signing key: its id, algorithm, private key (PKCS#8; PKCS#1 for RSA) and public JWK.
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pkcs8: Vec<u8>,
    pub public: Vec<u8>,
    pub jwk: Value,
}

impl TestKey {
    /// A fresh P-256 key (ES256).
    pub fn es256(kid: &str) -> TestKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate P-256 key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("read P-256 key");
        // uncompressed point: 0x04 || x || y
        let public = pair.public_key().as_ref().to_vec();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "kid": kid,
            "x": B64.encode(&public[1..33]), "y": B64.encode(&public[33..65]),
        });
        TestKey {
            kid: kid.into(),
            alg: Algorithm::ES256,
            pkcs8: pkcs8.as_ref().to_vec(),
            public,
            jwk,
        }
    }

    /// A fresh RSA-2048 key (RS256; the JWK names no `alg`, so the key type implies it).
    pub fn rs256(kid: &str) -> TestKey {
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        use rsa::traits::PublicKeyParts as _;
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("generate RSA key");
        let der = key.to_pkcs1_der().expect("PKCS#1").as_bytes().to_vec();
        let n = key.n().to_bytes_be();
        let e = key.e().to_bytes_be();
        let jwk = json!({
            "kty": "RSA", "use": "sig", "kid": kid, "n": B64.encode(&n), "e": B64.encode(&e),
        });
        TestKey {
            kid: kid.into(),
            alg: Algorithm::RS256,
            pkcs8: der,
            public: n,
            jwk,
        }
    }

    /// A fresh Ed25519 key (EdDSA).
    pub fn ed25519(kid: &str) -> TestKey {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("generate Ed25519 key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("read Ed25519 key");
        let public = pair.public_key().as_ref().to_vec();
        let jwk = json!({
            "kty": "OKP", "crv": "Ed25519", "use": "sig", "kid": kid, "x": B64.encode(&public),
        });
        TestKey {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            pkcs8: pkcs8.as_ref().to_vec(),
            public,
            jwk,
        }
    }

    fn encoding_key(&self) -> EncodingKey {
        match self.alg {
            Algorithm::EdDSA => EncodingKey::from_ed_der(&self.pkcs8),
            Algorithm::RS256 => EncodingKey::from_rsa_der(&self.pkcs8),
            _ => EncodingKey::from_ec_der(&self.pkcs8),
        }
    }

    /// `claims` signed with this key, the header naming it.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding_key()).expect("sign")
    }

    /// `claims` signed with this key under a header naming `kid` instead.
    pub fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &self.encoding_key()).expect("sign")
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims of a token valid for ten minutes for subject `sub`.
pub fn claims(sub: &str) -> Value {
    let now = now();
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": sub,
        "iat": now, "nbf": now - 5, "exp": now + 600,
    })
}

/// A token with a hand-made header and no real signature (alg `none`, or HS256 keyed with
/// `secret`).
pub fn unsigned(header: &Value, claims: &Value, hs256_secret: Option<&[u8]>) -> String {
    let body = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    match hs256_secret {
        None => format!("{body}."),
        Some(secret) => {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
            let tag = ring::hmac::sign(&key, body.as_bytes());
            format!("{body}.{}", B64.encode(tag.as_ref()))
        }
    }
}

/// The provider: its keys and the JWK set file the server reads.
pub struct Idp {
    pub keys: Vec<TestKey>,
    dir: tempfile::TempDir,
}

impl Idp {
    /// A provider with an ES256 key (`es-1`), an EdDSA key (`ed-1`) and an RS256 key
    /// (`rs-1`).
    pub fn new() -> Idp {
        let idp = Idp {
            keys: vec![
                TestKey::es256("es-1"),
                TestKey::ed25519("ed-1"),
                TestKey::rs256("rs-1"),
            ],
            dir: tempfile::tempdir().expect("temp dir"),
        };
        idp.write();
        idp
    }

    pub fn jwks(&self) -> Value {
        json!({ "keys": self.keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
    }

    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("jwks.json")
    }

    /// (Re)write the JWK set file.
    pub fn write(&self) {
        std::fs::write(self.path(), self.jwks().to_string()).expect("write JWKS");
    }

    /// The server configuration that trusts this provider through its file.
    pub fn config(&self) -> OidcConfig {
        OidcConfig {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            jwks: JwksSource::File(self.path()),
        }
    }

    /// A valid token for `sub` signed with the first key.
    pub fn token(&self, sub: &str) -> String {
        self.keys[0].sign(&claims(sub))
    }
}
