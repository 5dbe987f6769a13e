//! Evaluates a parsed filter against one connection. Evaluation cannot fail: the parser has
//! already checked the types, and `null` simply propagates.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::ast::{CmpOp, Expr, Field, Func, Literal};

/// What a filter sees of a connection.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// The connection id.
    pub connection_id: &'a str,
    /// The user id, if any.
    pub user_id: Option<&'a str>,
    /// The groups the connection is in.
    pub groups: &'a [std::sync::Arc<str>],
}

#[derive(Clone, Debug, PartialEq)]
enum Value<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Bool(bool),
    Null,
    Groups,
}

/// Whether the expression is true for `t`.
pub fn matches(e: &Expr, t: &Target<'_>) -> bool {
    eval(e, t) == Value::Bool(true)
}

fn eval<'a>(e: &'a Expr, t: &Target<'a>) -> Value<'a> {
    match e {
        Expr::Literal(l) => match l {
            Literal::Str(s) => Value::Str(Cow::Borrowed(s)),
            Literal::Int(n) => Value::Int(*n),
            Literal::Bool(b) => Value::Bool(*b),
            Literal::Null => Value::Null,
        },
        Expr::Field(Field::ConnectionId) => Value::Str(Cow::Borrowed(t.connection_id)),
        Expr::Field(Field::UserId) => match t.user_id {
            Some(u) => Value::Str(Cow::Borrowed(u)),
            None => Value::Null,
        },
        Expr::Field(Field::Groups) => Value::Groups,
        Expr::Not(x) => match eval(x, t) {
            Value::Bool(b) => Value::Bool(!b),
            _ => Value::Null,
        },
        Expr::And(a, b) => Value::Bool(matches(a, t) && matches(b, t)),
        Expr::Or(a, b) => Value::Bool(matches(a, t) || matches(b, t)),
        Expr::Compare(op, a, b) => Value::Bool(compare(*op, &eval(a, t), &eval(b, t))),
        Expr::InList(x, items) => {
            let v = eval(x, t);
            Value::Bool(items.iter().any(|i| compare(CmpOp::Eq, &v, &eval(i, t))))
        }
        Expr::InGroups(x) => match eval(x, t) {
            Value::Str(s) => Value::Bool(t.groups.iter().any(|g| **g == *s)),
            _ => Value::Bool(false),
        },
        Expr::Call(f, args) => call(*f, args, t),
    }
}

fn compare(op: CmpOp, a: &Value<'_>, b: &Value<'_>) -> bool {
    let ord = match (a, b) {
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Null, _) | (_, Value::Null) => None,
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    };
    match (op, ord) {
        (CmpOp::Eq, o) => o == Some(Ordering::Equal),
        (CmpOp::Ne, o) => o != Some(Ordering::Equal),
        (_, None) => false,
        (CmpOp::Gt, Some(o)) => o == Ordering::Greater,
        (CmpOp::Ge, Some(o)) => o != Ordering::Less,
        (CmpOp::Lt, Some(o)) => o == Ordering::Less,
        (CmpOp::Le, Some(o)) => o != Ordering::Greater,
    }
}

fn call<'a>(f: Func, args: &'a [Expr], t: &Target<'a>) -> Value<'a> {
    let vals: Vec<Value<'a>> = args.iter().map(|a| eval(a, t)).collect();
    let s = |i: usize| match vals.get(i) {
        Some(Value::Str(s)) => Some(s.as_ref()),
        _ => None,
    };
    let n = |i: usize| match vals.get(i) {
        Some(Value::Int(n)) => Some(*n),
        _ => None,
    };
    let string = |x: String| Value::Str(Cow::Owned(x));
    let out = match f {
        Func::ToLower => s(0).map(|a| string(a.to_lowercase())),
        Func::ToUpper => s(0).map(|a| string(a.to_uppercase())),
        Func::Trim => s(0).map(|a| string(a.trim().to_string())),
        Func::Length => s(0).map(|a| Value::Int(a.chars().count() as i64)),
        Func::StartsWith => s(0).zip(s(1)).map(|(a, b)| Value::Bool(a.starts_with(b))),
        Func::EndsWith => s(0).zip(s(1)).map(|(a, b)| Value::Bool(a.ends_with(b))),
        Func::Contains => s(0).zip(s(1)).map(|(a, b)| Value::Bool(a.contains(b))),
        Func::Concat => s(0).zip(s(1)).map(|(a, b)| string(format!("{a}{b}"))),
        Func::IndexOf => s(0).zip(s(1)).map(|(a, b)| {
            Value::Int(
                a.find(b)
                    .map(|byte| a[..byte].chars().count() as i64)
                    .unwrap_or(-1),
            )
        }),
        Func::Substring => s(0).zip(n(1)).map(|(a, start)| {
            let start = usize::try_from(start.max(0)).unwrap_or(usize::MAX);
            let rest = a.chars().skip(start);
            match n(2) {
                Some(len) => string(
                    rest.take(usize::try_from(len.max(0)).unwrap_or(usize::MAX))
                        .collect(),
                ),
                None => string(rest.collect()),
            }
        }),
    };
    out.unwrap_or(match f {
        Func::StartsWith | Func::EndsWith | Func::Contains => Value::Bool(false),
        _ => Value::Null,
    })
}
