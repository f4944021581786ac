//! The client side of the control protocol: connect to a node's socket, send one request
//! line, read one reply line.
//!
//! Guarantees: [`call`] returns the reply its request calls for, typed, or a [`CtlError`]:
//! `Refused` for `{"ok": false}`, `BadReply` for anything that does not parse as that reply
//! (a missing or renamed field included). A reply is waited for 5 s at most.

use super::proto::{ErrorReply, Request};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long a reply is waited for.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Connecting, writing the request or reading the reply failed.
    #[error("{what}: {cause}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed (in the message, so not repeated as a source).
        cause: std::io::Error,
    },
    /// The node answered `{"ok": false, "error": ...}`.
    #[error("the node refused: {0}")]
    Refused(String),
    /// The reply is not the JSON the request calls for.
    #[error("bad reply {reply:?}: {why}")]
    BadReply {
        /// The reply line as it came.
        reply: String,
        /// What is wrong with it.
        why: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CtlError {
    let what = what.into();
    move |cause| CtlError::Io { what, cause }
}

/// Sends one request line (a JSON object) to the control socket at `path`; returns the reply
/// line, read as it came.
fn exchange_line(path: &Path, line: &str) -> Result<String, CtlError> {
    let mut s =
        UnixStream::connect(path).map_err(io(format!("connecting to {}", path.display())))?;
    s.set_read_timeout(Some(REPLY_TIMEOUT))
        .map_err(io("setting a timeout"))?;
    s.write_all(line.as_bytes())
        .map_err(io("writing a command"))?;
    s.write_all(b"\n").map_err(io("writing a command"))?;
    let mut reply = String::new();
    BufReader::new(s)
        .read_line(&mut reply)
        .map_err(io("reading the answer"))?;
    Ok(reply)
}

fn bad(reply: &str, why: impl ToString) -> CtlError {
    CtlError::BadReply {
        reply: reply.trim_end().to_string(),
        why: why.to_string(),
    }
}

/// Sends one request line (any JSON object: the escape hatch for raw commands) to the
/// control socket at `path`; returns the reply as JSON, `ok` true or false.
pub fn exchange(path: &Path, line: &str) -> Result<Value, CtlError> {
    let reply = exchange_line(path, line)?;
    serde_json::from_str(&reply).map_err(|e| bad(&reply, e))
}

/// Sends `req` to the control socket at `path`; returns its reply as `R`, the reply type the
/// request names ([`Request`]'s variants say which).
pub fn call<R: DeserializeOwned>(path: &Path, req: &Request) -> Result<R, CtlError> {
    decode(&exchange_line(path, &req.to_line())?)
}

/// Decodes a node's reply (its JSON, on one line or pretty-printed as `ringlab ctl`
/// prints it) as `R`: a refusal and a reply that does not parse are errors.
pub fn decode<R: DeserializeOwned>(reply: &str) -> Result<R, CtlError> {
    let reply = reply.trim();
    let v: Value = serde_json::from_str(reply).map_err(|e| bad(reply, e))?;
    match v.get("ok") {
        Some(Value::Bool(true)) => serde_json::from_value(v).map_err(|e| bad(reply, e)),
        Some(Value::Bool(false)) => {
            let e: ErrorReply = serde_json::from_value(v).map_err(|e| bad(reply, e))?;
            Err(CtlError::Refused(e.error))
        }
        _ => Err(bad(reply, "no boolean `ok` field")),
    }
}
