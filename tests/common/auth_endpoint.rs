//! A business's auth endpoint and identity provider, played by the test: real HTTP on
//! 127.0.0.1:0, counting its calls. `POST /auth` judges opaque tokens the way the test sets
//! (`ok-<user>` tokens name their user); `GET /jwks` serves whatever key set the test
//! publishes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

/// The secret header the endpoint requires (a call without it gets a 400).
pub const SECRET_HEADER: &str = "X-Auth-Secret";
pub const SECRET: &str = "endpoint-secret-123";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Accept,
    Refuse,
    Fail,
    /// Accept after this long.
    Slow(Duration),
}

pub struct Endpoint {
    pub calls: AtomicUsize,
    pub jwks_fetches: AtomicUsize,
    behaviour: Mutex<Behaviour>,
    /// Lifetime of the sessions the endpoint grants, s.
    pub ttl_s: AtomicU64,
    pub last_call: Mutex<Value>,
    jwks: Mutex<Value>,
    pub base: String,
}

impl Endpoint {
    /// Starts the endpoint in the test's actix system.
    pub fn start() -> Arc<Endpoint> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let ep = Arc::new(Endpoint {
            calls: AtomicUsize::new(0),
            jwks_fetches: AtomicUsize::new(0),
            behaviour: Mutex::new(Behaviour::Accept),
            ttl_s: AtomicU64::new(3600),
            last_call: Mutex::new(Value::Null),
            jwks: Mutex::new(json!({"keys": []})),
            base,
        });
        let data = web::Data::from(ep.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/auth", web::post().to(auth))
                .route("/jwks", web::get().to(jwks))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        actix_rt::spawn(server);
        ep
    }

    pub fn url(&self) -> String {
        format!("{}/auth", self.base)
    }

    pub fn set(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap() = b;
    }

    pub fn publish(&self, keys: Vec<Value>) {
        *self.jwks.lock().unwrap() = json!({ "keys": keys });
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Node overrides for `auth.mode = "http"` against this endpoint.
    pub fn node_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HERALD_AUTH__MODE", "http".into()),
            ("HERALD_AUTH__HTTP__URL", self.url()),
            ("HERALD_AUTH__HTTP__HEADER", SECRET_HEADER.into()),
            ("HERALD_AUTH__HTTP__SECRET", SECRET.into()),
        ]
    }
}

async fn auth(req: HttpRequest, body: web::Json<Value>, ep: web::Data<Endpoint>) -> HttpResponse {
    ep.calls.fetch_add(1, Ordering::SeqCst);
    *ep.last_call.lock().unwrap() = body.0.clone();
    let secret = req
        .headers()
        .get(SECRET_HEADER)
        .and_then(|v| v.to_str().ok());
    if secret != Some(SECRET) {
        return HttpResponse::BadRequest().finish();
    }
    let behaviour = *ep.behaviour.lock().unwrap();
    match behaviour {
        Behaviour::Refuse => {
            return HttpResponse::Unauthorized().json(json!({"error": "bad session"}))
        }
        Behaviour::Fail => return HttpResponse::InternalServerError().finish(),
        Behaviour::Slow(d) => tokio::time::sleep(d).await,
        Behaviour::Accept => {}
    }
    let token = body["token"].as_str().unwrap_or_default();
    let Some(user) = token.strip_prefix("ok-") else {
        return HttpResponse::Forbidden().finish();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut answer = json!({
        "user": user,
        "expires_at": now + ep.ttl_s.load(Ordering::SeqCst),
    });
    if user.starts_with("solo") {
        answer["limits"] = json!({"max_sessions": 1});
    }
    if user.starts_with("bound") {
        answer["device"] = json!("watch");
    }
    HttpResponse::Ok().json(answer)
}

async fn jwks(ep: web::Data<Endpoint>) -> HttpResponse {
    ep.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    HttpResponse::Ok().json(ep.jwks.lock().unwrap().clone())
}
