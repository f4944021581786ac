//! `ringlab ctl SOCKET CMD [key=value ...]`: the command line made into a typed [`Request`].
//! `svc NAME [VERB] [key=value ...]` reaches a service: the registry finds it by name and
//! the service builds its own typed command (`ringlab_sync::Plugin::parse_args`).
//!
//! Guarantees: an unknown command, an unknown or repeated key, a missing required key, a
//! value of the wrong kind and a load argument out of its bounds are refused here, before
//! anything is sent, with a message naming the argument (the node checks every bound again). Values: whole numbers, `true`/`false`, text (a JSON string is unquoted), and
//! for `sizes` a JSON list (`[1,100]`) or a comma-separated one (`1,100`).

use super::proto::Request;
use crate::load::LoadSpec;
use std::str::FromStr;

/// A `ringlab ctl` argument that makes no request.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ArgError(String);

/// The commands, as `ringlab ctl` names them.
pub const COMMANDS: [&str; 7] = [
    "status",
    "stats",
    "load",
    "stop_load",
    "leave",
    "quit",
    "svc",
];

/// Returns the keys command `cmd` takes.
fn keys(cmd: &str) -> &'static [&'static str] {
    match cmd {
        "load" => &[
            "rate",
            "size",
            "sizes",
            "safe",
            "count",
            "duration_ms",
            "service",
            "state_bytes",
        ],
        _ => &[],
    }
}

/// Builds the request of command `cmd` with `key=value` arguments `args`.
pub fn parse(cmd: &str, args: &[String]) -> Result<Request, ArgError> {
    if !COMMANDS.contains(&cmd) {
        return Err(ArgError(format!(
            "unknown command {cmd:?}; commands: {}",
            COMMANDS.join(", ")
        )));
    }
    if cmd == "svc" {
        return service(args);
    }
    let takes = keys(cmd);
    let mut given: Vec<(&str, &str)> = Vec::new();
    for a in args {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| ArgError(format!("argument {a:?}: expected key=value")))?;
        if !takes.contains(&k) {
            return Err(ArgError(if takes.is_empty() {
                format!("{cmd} takes no arguments (got {a:?})")
            } else {
                format!(
                    "{cmd}: unknown argument {k:?}; it takes {}",
                    takes.join(", ")
                )
            }));
        }
        if given.iter().any(|(g, _)| *g == k) {
            return Err(ArgError(format!("{cmd}: {k} given twice")));
        }
        given.push((k, v));
    }
    let get = |k: &str| given.iter().find(|(g, _)| *g == k).map(|(_, v)| *v);
    Ok(match cmd {
        "status" => Request::Status,
        "stats" => Request::Stats,
        "stop_load" => Request::StopLoad,
        "leave" => Request::Leave,
        "quit" => Request::Quit,
        "load" => {
            let mut s = LoadSpec::default();
            if let Some(v) = get("rate") {
                s.rate = number("rate", v)?;
            }
            if let Some(v) = get("size") {
                s.size = number("size", v)?;
            }
            if let Some(v) = get("sizes") {
                s.sizes = list("sizes", v)?;
            }
            if let Some(v) = get("safe") {
                s.safe = flag("safe", v)?;
            }
            s.count = get("count").map(|v| number("count", v)).transpose()?;
            s.duration_ms = get("duration_ms")
                .map(|v| number("duration_ms", v))
                .transpose()?;
            s.service = get("service")
                .map(|v| serde_json::from_str::<String>(v).unwrap_or_else(|_| v.to_string()));
            s.state_bytes = get("state_bytes")
                .map(|v| number("state_bytes", v))
                .transpose()?;
            s.check().map_err(|e| ArgError(e.to_string()))?;
            Request::Load(s)
        }
        _ => unreachable!("every command is matched"),
    })
}

/// Builds `svc NAME [VERB] [key=value ...]`: the service named, its command built by itself.
fn service(args: &[String]) -> Result<Request, ArgError> {
    let Some(name) = args.first().filter(|a| !a.contains('=')) else {
        return Err(ArgError(format!(
            "svc: expected a service name first ({})",
            ringlab_sync::registry::names().join(", ")
        )));
    };
    let entry = ringlab_sync::registry::find(name).map_err(|e| ArgError(format!("svc: {e}")))?;
    let request = entry
        .parse_args(&args[1..])
        .map_err(|e| ArgError(e.to_string()))?;
    Ok(Request::Svc {
        service: entry.name.to_string(),
        request,
    })
}

fn number<T: FromStr>(k: &str, v: &str) -> Result<T, ArgError> {
    v.trim()
        .parse()
        .map_err(|_| ArgError(format!("{k}={v}: expected a whole number")))
}

fn flag(k: &str, v: &str) -> Result<bool, ArgError> {
    match v.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ArgError(format!("{k}={v}: expected true or false"))),
    }
}

fn list(k: &str, v: &str) -> Result<Vec<usize>, ArgError> {
    let inner = v.trim();
    let inner = inner
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(inner);
    inner
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| number(k, s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn key_values_make_the_request_the_node_parses() {
        let r = parse(
            "load",
            &args(&["rate=500", "size=700", "safe=true", "duration_ms=2000"]),
        )
        .unwrap();
        assert_eq!(
            r,
            Request::Load(LoadSpec {
                rate: 500,
                size: 700,
                safe: true,
                duration_ms: Some(2000),
                ..LoadSpec::default()
            })
        );
        let line = r.to_line();
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        assert_eq!(
            parse("load", &args(&["sizes=[1,100]"])).unwrap(),
            parse("load", &args(&["sizes=1,100"])).unwrap()
        );
        assert_eq!(
            parse(
                "svc",
                &args(&[
                    "checkpoint",
                    "op=write",
                    "name=\"c0\"",
                    "section=s",
                    "size=10"
                ])
            )
            .unwrap(),
            Request::Svc {
                service: "checkpoint".into(),
                request: serde_json::json!(
                    {"op": "write", "name": "c0", "section": "s", "size": 10}
                ),
            }
        );
        assert_eq!(parse("stats", &[]).unwrap().to_line(), r#"{"cmd":"stats"}"#);
        assert_eq!(
            parse("svc", &args(&["checkpoint", "fill", "bytes=2097152"]))
                .unwrap()
                .to_line(),
            r#"{"cmd":"svc","service":"checkpoint","request":{"bytes":2097152,"op":"fill"}}"#
        );
    }

    #[test]
    fn bad_arguments_are_refused_with_their_name() {
        let err = |cmd: &str, a: &[&str]| parse(cmd, &args(a)).unwrap_err().to_string();
        assert!(err("lode", &[]).contains("unknown command \"lode\""));
        assert!(err("load", &["rate=fast"]).contains("rate=fast"));
        assert!(err("load", &["sise=10"]).contains("unknown argument \"sise\""));
        assert!(err("load", &["safe=yes"]).contains("true or false"));
        assert!(err("load", &["rate=1", "rate=2"]).contains("twice"));
        assert!(err("load", &["rate"]).contains("key=value"));
        assert!(err("status", &["x=1"]).contains("no arguments"));
        assert!(err("svc", &["checkpoint", "op=open"]).contains("name=... missing"));
        assert!(err("svc", &["checkpoint", "op=shred", "name=c0"]).contains("op=shred"));
        assert!(err("svc", &["checkpoint", "fill"]).contains("bytes=... missing"));
        assert!(err("svc", &["shred"]).contains("unknown service \"shred\""));
        assert!(err("svc", &[]).contains("service name first"));
        assert!(err("load", &["duration_ms=18446744073709551615"]).contains("duration_ms="));
        assert!(err("load", &["size=0"]).contains("load: size=0 refused"));
        assert!(err("load", &["service=shred"]).contains("load: service=shred refused"));
        assert!(err("load", &["service=checkpoint", "state_bytes=0"]).contains("state_bytes=0"));
        assert_eq!(
            parse("load", &args(&["service=checkpoint", "rate=10"]))
                .unwrap()
                .to_line(),
            r#"{"cmd":"load","rate":10,"size":1024,"safe":false,"service":"checkpoint"}"#
        );
    }
}
