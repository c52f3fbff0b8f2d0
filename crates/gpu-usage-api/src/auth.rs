//! Bearer-token authorization with three nested roles (read ⊂ ingest ⊂
//! admin). Handlers state what they need by taking an extractor:
//! [`Reader`], [`Ingester`] or [`Admin`].
//!
//! Tokens are compared in constant time against every configured token (no
//! early exit that would tell which prefix matched) and are never logged;
//! only the token's configured name is.

use std::future::{Ready, ready};
use std::marker::PhantomData;

use actix_web::dev::Payload;
use actix_web::http::header::{AUTHORIZATION, HeaderValue};
use actix_web::{FromRequest, HttpRequest, web};
use gpu_usage_core::settings::{ApiSettings, Role};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

struct Token {
    name: String,
    role: Role,
    secret: SecretString,
}

pub struct Auth {
    tokens: Vec<Token>,
    public_reads: bool,
}

/// Who is calling. `name` is the token's configured name, safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Auth {
    pub fn from_settings(api: &ApiSettings) -> Self {
        let tokens = api
            .all_tokens()
            .into_iter()
            .filter(|t| !t.token.expose_secret().is_empty())
            .map(|t| Token {
                name: t.name,
                role: t.role,
                secret: t.token,
            })
            .collect();
        Self {
            tokens,
            public_reads: api.public_reads,
        }
    }

    /// With no token configured the API is open to every caller as admin:
    /// that is the local first-run mode, and the server refuses to start
    /// like this on anything but a loopback address.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn check(&self, header: Option<&HeaderValue>, needed: Role) -> Result<Caller, ApiError> {
        if self.is_open() {
            return Ok(Caller {
                name: "anonymous (no tokens configured)".to_owned(),
                role: Role::Admin,
            });
        }
        let Some(header) = header else {
            if needed == Role::Read && self.public_reads {
                return Ok(Caller {
                    name: "anonymous".to_owned(),
                    role: Role::Read,
                });
            }
            return Err(ApiError::unauthorized(
                "this endpoint needs a bearer token (Authorization: Bearer <token>)",
            ));
        };
        let presented = header
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        let mut matched: Option<&Token> = None;
        for token in &self.tokens {
            let equal: bool = token
                .secret
                .expose_secret()
                .as_bytes()
                .ct_eq(presented.as_bytes())
                .into();
            if equal && matched.is_none() {
                matched = Some(token);
            }
        }
        let Some(token) = matched else {
            return Err(ApiError::unauthorized("the bearer token is not valid"));
        };
        if !token.role.allows(needed) {
            return Err(ApiError::forbidden(format!(
                "token {:?} has role {}, this endpoint needs {}",
                token.name,
                role_name(token.role),
                role_name(needed)
            )));
        }
        Ok(Caller {
            name: token.name.clone(),
            role: token.role,
        })
    }
}

pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::Read => "read",
        Role::Ingest => "ingest",
        Role::Admin => "admin",
    }
}

pub trait Requirement {
    const ROLE: Role;
}

pub struct NeedsRead;
pub struct NeedsIngest;
pub struct NeedsAdmin;

impl Requirement for NeedsRead {
    const ROLE: Role = Role::Read;
}
impl Requirement for NeedsIngest {
    const ROLE: Role = Role::Ingest;
}
impl Requirement for NeedsAdmin {
    const ROLE: Role = Role::Admin;
}

/// Extracting this authorizes the request for `R::ROLE` or fails it with
/// 401/403 before the handler runs.
pub struct Authorized<R: Requirement> {
    pub caller: Caller,
    _role: PhantomData<R>,
}

pub type Reader = Authorized<NeedsRead>;
pub type Ingester = Authorized<NeedsIngest>;
pub type Admin = Authorized<NeedsAdmin>;

impl<R: Requirement> FromRequest for Authorized<R> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(auth) = req.app_data::<web::Data<Auth>>() else {
            return ready(Err(ApiError::new(
                actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )));
        };
        ready(
            auth.check(req.headers().get(AUTHORIZATION), R::ROLE)
                .map(|caller| {
                    tracing::debug!(caller = %caller.name, "authorized");
                    Authorized {
                        caller,
                        _role: PhantomData,
                    }
                }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpu_usage_core::settings::ApiToken;

    fn auth(public_reads: bool) -> Auth {
        let mut api = gpu_usage_core::settings::Settings::load_with(&[])
            .unwrap()
            .api;
        api.public_reads = public_reads;
        api.tokens = vec![
            ApiToken {
                name: "r".into(),
                role: Role::Read,
                token: SecretString::from("read-secret"),
            },
            ApiToken {
                name: "a".into(),
                role: Role::Admin,
                token: SecretString::from("admin-secret"),
            },
        ];
        Auth::from_settings(&api)
    }

    fn bearer(t: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer {t}")).unwrap()
    }

    #[test]
    fn roles_nest_and_wrong_tokens_fail() {
        let a = auth(false);
        assert_eq!(
            a.check(Some(&bearer("admin-secret")), Role::Ingest)
                .unwrap()
                .name,
            "a"
        );
        assert_eq!(
            a.check(Some(&bearer("read-secret")), Role::Read)
                .unwrap()
                .role,
            Role::Read
        );
        assert_eq!(
            a.check(Some(&bearer("read-secret")), Role::Ingest)
                .unwrap_err()
                .status(),
            403
        );
        assert_eq!(
            a.check(Some(&bearer("read-secre")), Role::Read)
                .unwrap_err()
                .status(),
            401
        );
        assert_eq!(
            a.check(Some(&bearer("")), Role::Read).unwrap_err().status(),
            401
        );
        assert_eq!(
            a.check(Some(&HeaderValue::from_static("Basic abc")), Role::Read)
                .unwrap_err()
                .status(),
            401
        );
        assert_eq!(a.check(None, Role::Read).unwrap_err().status(), 401);
        assert_eq!(
            a.check(
                Some(&HeaderValue::from_static("bearer  admin-secret ")),
                Role::Admin
            )
            .unwrap()
            .role,
            Role::Admin
        );
    }

    #[test]
    fn public_reads_open_reads_only() {
        let a = auth(true);
        assert_eq!(a.check(None, Role::Read).unwrap().name, "anonymous");
        assert_eq!(a.check(None, Role::Ingest).unwrap_err().status(), 401);
        // A wrong token is refused even where anonymous access would do:
        // the client should learn that its token is wrong.
        assert_eq!(
            a.check(Some(&bearer("nope")), Role::Read)
                .unwrap_err()
                .status(),
            401
        );
    }

    #[test]
    fn no_tokens_means_open() {
        let mut api = gpu_usage_core::settings::Settings::load_with(&[])
            .unwrap()
            .api;
        api.tokens.clear();
        api.read_token = None;
        api.ingest_token = None;
        api.admin_token = None;
        let a = Auth::from_settings(&api);
        assert!(a.is_open());
        assert_eq!(a.check(None, Role::Admin).unwrap().role, Role::Admin);
    }
}
