//! The job hash as the scripts store it, and its decoding into a [`Job`].
//!
//! Field names are short (a queue holds many jobs); the dynamic parts that the scripts
//! change (state, lease, retries, times, callback state) are plain fields, and the parts
//! only Rust reads (the submitted spec, attempts, usage, cost, results, error) are JSON text
//! written by `serde_json` and never parsed by a script (attempts are appended to the JSON
//! array by joining text, which needs only that serde writes it compactly).

use std::collections::HashMap;

use redis::Value;
use serde::de::DeserializeOwned;

use crate::queue::backend::QueueError;
use crate::queue::job::{CallbackState, Job, JobId, JobState, Lease};

/// The length of the ordering prefix of a ready-set member: 8 hex digits of inverted
/// priority, 16 of submission time; the job id follows.
pub(super) const ORD_PREFIX: usize = 24;

/// The ready-set member of a job: sorts by priority (highest first), then submission time,
/// then id, byte-wise (`ZRANGEBYLEX`).
pub(super) fn ord(priority: i32, enqueued_ms: u64, id: &JobId) -> String {
    // i32::MAX - priority is in 0..=u32::MAX for every i32, so it fits 8 hex digits.
    let inverted = u32::try_from(i64::from(i32::MAX) - i64::from(priority)).unwrap_or(u32::MAX);
    format!("{inverted:08x}{enqueued_ms:016x}{id}")
}

/// The priority encoded in a ready-set member (see [`ord`]).
pub(super) fn ord_priority(ord: &str) -> Result<i32, QueueError> {
    let hex = ord
        .get(..8)
        .ok_or_else(|| QueueError::backend("redis queue: malformed ready entry"))?;
    let inverted = u32::from_str_radix(hex, 16)
        .map_err(|_| QueueError::backend("redis queue: malformed ready entry"))?;
    i32::try_from(i64::from(i32::MAX) - i64::from(inverted))
        .map_err(|_| QueueError::backend("redis queue: malformed ready entry"))
}

/// Text of a reply value (bulk or simple string, or an integer).
pub(super) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// An integer reply value.
pub(super) fn int(v: &Value) -> Result<i64, QueueError> {
    match v {
        Value::Int(i) => Ok(*i),
        other => text(other)
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| QueueError::backend("redis queue: a number was expected")),
    }
}

/// The items of an array reply (an empty array for nil).
pub(super) fn items(v: &Value) -> Result<&[Value], QueueError> {
    match v {
        Value::Array(a) | Value::Set(a) => Ok(a),
        Value::Nil => Ok(&[]),
        _ => Err(QueueError::backend("redis queue: an array was expected")),
    }
}

/// A job hash's fields from a flat `HGETALL`-style array.
pub(super) fn fields(v: &Value) -> Result<HashMap<String, String>, QueueError> {
    if let Value::Map(pairs) = v {
        return Ok(pairs
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
            .collect());
    }
    let a = items(v)?;
    let mut out = HashMap::with_capacity(a.len() / 2);
    for pair in a.chunks(2) {
        if let [k, v] = pair {
            if let (Some(k), Some(v)) = (text(k), text(v)) {
                out.insert(k, v);
            }
        }
    }
    Ok(out)
}

struct Fields<'a> {
    id: &'a str,
    f: &'a HashMap<String, String>,
}

impl Fields<'_> {
    fn err(&self, field: &str, message: impl std::fmt::Display) -> QueueError {
        QueueError::backend(format!(
            "redis queue: job {}: field `{field}`: {message}",
            self.id
        ))
    }

    fn opt(&self, name: &str) -> Option<&str> {
        self.f
            .get(name)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    fn req(&self, name: &str) -> Result<&str, QueueError> {
        self.opt(name).ok_or_else(|| self.err(name, "missing"))
    }

    fn num<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, QueueError> {
        self.opt(name)
            .map(|s| s.parse::<T>().map_err(|_| self.err(name, "not a number")))
            .transpose()
    }

    fn json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, QueueError> {
        self.opt(name)
            .map(|s| serde_json::from_str(s).map_err(|e| self.err(name, e)))
            .transpose()
    }

    fn callback(&self) -> Result<CallbackState, QueueError> {
        let attempts = || -> Result<u32, QueueError> { Ok(self.num("cba")?.unwrap_or(0)) };
        Ok(match self.opt("cbs").unwrap_or("none") {
            "none" => CallbackState::None,
            "pending" => CallbackState::Pending {
                attempts: attempts()?,
                next_at_ms: self.num("cbn")?.unwrap_or(0),
                last_error: self.opt("cbe").map(str::to_string),
            },
            "delivered" => CallbackState::Delivered {
                attempts: attempts()?,
                at_ms: self.num("cbt")?.unwrap_or(0),
                status: self.num("cbc")?.unwrap_or(0),
            },
            "failed" => CallbackState::Failed {
                attempts: attempts()?,
                last_error: self.opt("cbe").unwrap_or_default().to_string(),
            },
            other => return Err(self.err("cbs", format!("unknown state {other:?}"))),
        })
    }
}

/// Decodes a job hash; a missing or malformed field is a [`QueueError::Backend`] naming it.
pub(super) fn decode(f: &HashMap<String, String>) -> Result<Job, QueueError> {
    let id = f.get("id").map(String::as_str).unwrap_or("?");
    let r = Fields { id, f };
    let state: JobState = r.req("state")?.parse().map_err(|e| r.err("state", e))?;
    let lease = match (r.opt("owner"), r.num::<u64>("lexp")?) {
        (Some(owner), Some(expires_ms)) => Some(Lease {
            owner: owner.to_string(),
            expires_ms,
        }),
        _ => None,
    };
    Ok(Job {
        id: JobId(r.req("id")?.to_string()),
        state,
        spec: r.json("spec")?.ok_or_else(|| r.err("spec", "missing"))?,
        priority: r.num("prio")?.ok_or_else(|| r.err("prio", "missing"))?,
        lane: f
            .get("lane")
            .cloned()
            .ok_or_else(|| r.err("lane", "missing"))?,
        retries: r.num("retries")?.unwrap_or(0),
        enqueued_ms: r.num("enq")?.ok_or_else(|| r.err("enq", "missing"))?,
        started_ms: r.num("started")?,
        ended_ms: r.num("ended")?,
        not_before_ms: r.num("nb")?,
        attempts: r.json("att")?.unwrap_or_default(),
        provider: r.opt("provider").map(str::to_string),
        model: r.opt("model").map(str::to_string),
        usage: r.json("usage")?,
        cost_usd: r.json("cost")?,
        results: r.json("results")?.unwrap_or_default(),
        error: r.json("error")?,
        sent: r.opt("sent") == Some("1"),
        lease,
        callback: r.callback()?,
    })
}

/// A job from a script's flat field array.
pub(super) fn job(v: &Value) -> Result<Job, QueueError> {
    decode(&fields(v)?)
}

/// The script arguments of a callback state: state, attempts, next at, last error, at,
/// status (`""` where absent).
pub(super) fn callback_args(state: &CallbackState) -> [String; 6] {
    let none = String::new;
    match state {
        CallbackState::None => ["none".into(), none(), none(), none(), none(), none()],
        CallbackState::Pending {
            attempts,
            next_at_ms,
            last_error,
        } => [
            "pending".into(),
            attempts.to_string(),
            next_at_ms.to_string(),
            last_error.clone().unwrap_or_default(),
            none(),
            none(),
        ],
        CallbackState::Delivered {
            attempts,
            at_ms,
            status,
        } => [
            "delivered".into(),
            attempts.to_string(),
            none(),
            none(),
            at_ms.to_string(),
            status.to_string(),
        ],
        CallbackState::Failed {
            attempts,
            last_error,
        } => [
            "failed".into(),
            attempts.to_string(),
            none(),
            last_error.clone(),
            none(),
            none(),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ord_sorts_by_priority_then_age_then_id() {
        let id = |s: &str| JobId::from(s);
        let mut v = [
            ord(-100, 5, &id("ja")),
            ord(0, 9, &id("jb")),
            ord(0, 3, &id("jc")),
            ord(i32::MAX, 1, &id("jd")),
            ord(i32::MIN, 0, &id("je")),
            ord(0, 3, &id("jb")),
        ];
        v.sort();
        let ids: Vec<&str> = v.iter().map(|o| &o[ORD_PREFIX..]).collect();
        assert_eq!(ids, ["jd", "jb", "jc", "jb", "ja", "je"]);
        for p in [i32::MIN, -100, 0, 7, i32::MAX] {
            assert_eq!(ord_priority(&ord(p, 1, &id("j"))).unwrap(), p);
        }
        assert!(ord_priority("zz").is_err());
    }

    #[test]
    fn callback_states_round_trip() {
        for st in [
            CallbackState::None,
            CallbackState::Pending {
                attempts: 2,
                next_at_ms: 9,
                last_error: Some("502".into()),
            },
            CallbackState::Pending {
                attempts: 0,
                next_at_ms: 1,
                last_error: None,
            },
            CallbackState::Delivered {
                attempts: 3,
                at_ms: 7,
                status: 204,
            },
            CallbackState::Failed {
                attempts: 8,
                last_error: "gone".into(),
            },
        ] {
            let a = callback_args(&st);
            let mut f = HashMap::new();
            for (name, v) in ["cbs", "cba", "cbn", "cbe", "cbt", "cbc"].iter().zip(a) {
                if !v.is_empty() {
                    f.insert(name.to_string(), v);
                }
            }
            let r = Fields { id: "j", f: &f };
            assert_eq!(r.callback().unwrap(), st);
        }
    }

    #[test]
    fn malformed_fields_are_named() {
        let mut f = HashMap::new();
        f.insert("id".to_string(), "j1".to_string());
        f.insert("state".to_string(), "queued".to_string());
        let e = decode(&f).unwrap_err();
        assert!(e.to_string().contains("`spec`"), "{e}");
        f.insert("state".to_string(), "sleeping".to_string());
        assert!(decode(&f).unwrap_err().to_string().contains("`state`"));
    }
}
