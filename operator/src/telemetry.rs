//! Logging setup of `push-operator run`: tracing to stderr, filter from
//! `PUSH_OPERATOR_LOG`, `text` or `json` from `PUSH_OPERATOR_LOG_FORMAT`.

use push_contract::operator::env;
use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_env(env::LOG).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var(env::LOG_FORMAT).is_ok_and(|f| f == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // try_init: a second init (tests) is not an error worth dying for.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
