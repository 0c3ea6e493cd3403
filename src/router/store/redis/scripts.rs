//! The Lua scripts (in `*.lua` beside this file, each prefixed with `common.lua`) and the
//! decoding of their answers.

use std::sync::LazyLock;

use redis::{Script, Value};

use crate::router::store::StoreError;

const COMMON: &str = include_str!("common.lua");

fn script(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
}

/// Admission (and, with `dry`, the read-only refresh of a window).
pub(super) static ADMIT: LazyLock<Script> = LazyLock::new(|| script(include_str!("admit.lua")));
/// Settlement, release, hold and headers without a request.
pub(super) static SETTLE: LazyLock<Script> = LazyLock::new(|| script(include_str!("settle.lua")));
/// A denial or a model cool-down.
pub(super) static MARK: LazyLock<Script> = LazyLock::new(|| script(include_str!("mark.lua")));
/// The router-wide budgets.
pub(super) static BUDGET: LazyLock<Script> = LazyLock::new(|| script(include_str!("budget.lua")));
/// Admissions made locally while the store was unreachable.
pub(super) static REPLAY: LazyLock<Script> = LazyLock::new(|| script(include_str!("replay.lua")));

/// One budget's figures in an answer (nano-USD).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct BudgetFigures {
    pub spent: i64,
    pub reserved: i64,
    pub held: i64,
}

/// A shared mark (denial or model cool-down) in an answer: its first field (reason or
/// cause code), message and end (deciding clock, µs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Mark {
    pub code: String,
    pub message: String,
    pub until: i64,
}

/// The common answer of the admission and settlement scripts (see `common.lua`'s `answer`).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Answer {
    pub status: i64,
    /// The deciding clock's time of the answer, µs.
    pub now: i64,
    pub used_requests: i64,
    pub used_images: i64,
    pub used_tokens: i64,
    /// Effective limits, 0 for none.
    pub rpm: i64,
    pub ipm: i64,
    pub tpm: i64,
    /// End of the longest block (0: none) and its reason (1..=3).
    pub block_until: i64,
    pub block_reason: i64,
    pub margin: f64,
    pub factor: f64,
    /// When the oldest entry leaves the window (0: empty).
    pub oldest_expiry: i64,
    pub denial: Option<Mark>,
    pub cooldown: Option<Mark>,
    pub lifetime_spent: i64,
    pub committed: i64,
    pub extra: [i64; 3],
    /// When a request of one image fits the window again (deciding clock, µs): `now` when
    /// it fits now; later when the window is full on requests or images.
    pub room_at: i64,
    pub budgets: Vec<BudgetFigures>,
}

fn int(v: &Value) -> Result<i64, StoreError> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .map(|f| f as i64)
            .ok_or_else(|| StoreError::new("store answer: a number was expected")),
        Value::SimpleString(s) => s
            .parse::<f64>()
            .map(|f| f as i64)
            .map_err(|_| StoreError::new("store answer: a number was expected")),
        Value::Nil => Ok(0),
        _ => Err(StoreError::new("store answer: a number was expected")),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        _ => String::new(),
    }
}

fn float(v: &Value) -> Result<f64, StoreError> {
    text(v)
        .parse::<f64>()
        .map_err(|_| StoreError::new("store answer: a decimal number was expected"))
}

fn mark(code: &Value, message: &Value, until: &Value) -> Result<Option<Mark>, StoreError> {
    let code = text(code);
    let until = int(until)?;
    Ok((!code.is_empty() && until > 0).then(|| Mark {
        code,
        message: text(message),
        until,
    }))
}

/// The integers of a short answer (`budget.lua`, `mark.lua`).
pub(super) fn ints(v: &Value) -> Result<Vec<i64>, StoreError> {
    match v {
        Value::Array(items) => items.iter().map(int).collect(),
        other => Ok(vec![int(other)?]),
    }
}

/// Fields of an answer before the budgets' figures (the last of them is the budget count).
const FIXED: usize = 26;

impl Answer {
    /// Decodes a script's answer; a malformed one is a [`StoreError`].
    pub(super) fn decode(v: &Value) -> Result<Self, StoreError> {
        let Value::Array(a) = v else {
            return Err(StoreError::new("store answer: an array was expected"));
        };
        if a.len() < FIXED {
            return Err(StoreError::new(format!(
                "store answer: {} fields, at least {FIXED} expected",
                a.len()
            )));
        }
        let nb = usize::try_from(int(&a[FIXED - 1])?).unwrap_or(0);
        if a.len() < FIXED + 3 * nb {
            return Err(StoreError::new("store answer: budget figures missing"));
        }
        let mut budgets = Vec::with_capacity(nb);
        for j in 0..nb {
            let b = FIXED + 3 * j;
            budgets.push(BudgetFigures {
                spent: int(&a[b])?,
                reserved: int(&a[b + 1])?,
                held: int(&a[b + 2])?,
            });
        }
        Ok(Self {
            status: int(&a[0])?,
            now: int(&a[1])?,
            used_requests: int(&a[2])?,
            used_images: int(&a[3])?,
            used_tokens: int(&a[4])?,
            rpm: int(&a[5])?,
            ipm: int(&a[6])?,
            tpm: int(&a[7])?,
            block_until: int(&a[8])?,
            block_reason: int(&a[9])?,
            margin: float(&a[10])?,
            factor: float(&a[11])?,
            oldest_expiry: int(&a[12])?,
            denial: mark(&a[13], &a[14], &a[15])?,
            cooldown: mark(&a[16], &a[17], &a[18])?,
            lifetime_spent: int(&a[19])?,
            committed: int(&a[20])?,
            extra: [int(&a[21])?, int(&a[22])?, int(&a[23])?],
            room_at: int(&a[24])?,
            budgets,
        })
    }
}
