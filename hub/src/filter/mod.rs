//! The OData `filter` language of the REST API (`userId eq 'a' and 'g1' in groups`), as pure
//! code: a lexer, a recursive-descent parser into a typed syntax tree, and an evaluator.
//!
//! Filters come straight from callers, so parsing never panics, errors say what is wrong and
//! where (a byte offset), and size is bounded: at most [`MAX_CLAUSES`] clauses and
//! [`MAX_DEPTH`] levels of nesting.

pub mod ast;
mod eval;
pub mod lexer;
mod parser;

pub use ast::Expr;
pub use eval::Target;

/// Most comparisons, `in` tests and boolean function calls in one filter.
pub const MAX_CLAUSES: usize = 100;
/// Deepest nesting of parentheses, `not` and function calls.
pub const MAX_DEPTH: usize = 32;
/// Longest filter accepted, in bytes.
pub const MAX_LEN: usize = 16 * 1024;

/// Why a filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter at position {position}: {message}")]
pub struct FilterError {
    /// Byte offset of the problem in the filter.
    pub position: usize,
    /// What is wrong.
    pub message: String,
    /// Which kind of problem it is.
    pub kind: ErrorKind,
    /// The bytes the problem is about: the token that could not be used (a syntax error), the
    /// expression that does not type-check, or nothing (a limit: the whole filter).
    pub span: std::ops::Range<usize>,
}

/// The kinds of refused filters, which the service words differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The text is no expression: an unexpected token or character, or a missing one.
    Syntax,
    /// An expression that parses but means nothing: an unknown name, mismatched types.
    Meaning,
    /// Past a size bound.
    Limit,
}

impl FilterError {
    /// A syntax error at the token (or end of the filter) `span`.
    pub fn syntax(span: std::ops::Range<usize>, message: impl Into<String>) -> Self {
        FilterError {
            position: span.start,
            message: message.into(),
            kind: ErrorKind::Syntax,
            span,
        }
    }

    /// An expression (`span`) that does not type-check, because of what is at `position`.
    pub fn meaning(
        span: std::ops::Range<usize>,
        position: usize,
        message: impl Into<String>,
    ) -> Self {
        FilterError {
            position,
            message: message.into(),
            kind: ErrorKind::Meaning,
            span,
        }
    }

    /// A size bound passed at `position`.
    pub fn limit(position: usize, message: impl Into<String>) -> Self {
        FilterError {
            position,
            message: message.into(),
            kind: ErrorKind::Limit,
            span: 0..0,
        }
    }

    /// The error message the service gives for `filter`, the text this error came from. Its
    /// shape is `Invalid syntax for '<expression>': <detail> (Parameter 'filter')`; a syntax
    /// error's detail is the service's own sentence, `Syntax error at position N in
    /// '<filter>'.`, where N is just past the token that could not be used (the filter's
    /// length when it ended too early), counted in UTF-16 units as the service counts. The
    /// other details are this parser's explanation, with the position of the problem.
    pub fn service_message(&self, filter: &str) -> String {
        let at = |byte: usize| {
            filter
                .get(..byte)
                .map_or(byte, |before| before.encode_utf16().count())
        };
        if self.kind == ErrorKind::Syntax {
            return format!(
                "Invalid syntax for '{filter}': Syntax error at position {} in '{filter}'. (Parameter 'filter')",
                at(self.span.end)
            );
        }
        let subject = filter
            .get(self.span.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or(filter);
        let mut detail = self.message.clone();
        if let Some(first) = detail.get(..1) {
            detail.replace_range(..1, &first.to_ascii_uppercase());
        }
        format!(
            "Invalid syntax for '{subject}': {detail}, at position {} in '{filter}'. (Parameter 'filter')",
            at(self.position)
        )
    }
}

/// A parsed, type-checked filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    expr: Expr,
}

impl Filter {
    /// Parses a filter.
    pub fn parse(input: &str) -> Result<Self, FilterError> {
        if input.len() > MAX_LEN {
            return Err(FilterError::limit(
                MAX_LEN,
                format!("the filter is longer than {MAX_LEN} bytes"),
            ));
        }
        let tokens = lexer::tokenize(input)?;
        let expr = parser::parse_tokens(&tokens, input.len())?;
        Ok(Filter { expr })
    }

    /// The syntax tree.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Whether the filter is true for `target`.
    pub fn matches(&self, target: &Target<'_>) -> bool {
        eval::matches(&self.expr, target)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;

    fn eval(filter: &str, user: Option<&str>, groups: &[&str]) -> bool {
        let groups: Vec<Arc<str>> = groups.iter().map(|g| Arc::from(*g)).collect();
        let f = Filter::parse(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
        f.matches(&Target {
            connection_id: "conn1",
            user_id: user,
            groups: &groups,
        })
    }

    #[test]
    fn reference_examples() {
        assert!(eval("'g1' in groups", None, &["g0", "g1"]));
        assert!(!eval("'g1' in groups", None, &["g0"]));
        assert!(eval("userId in ('a','b')", Some("b"), &[]));
        assert!(!eval("userId in ('a','b')", Some("c"), &[]));
        assert!(!eval("userId in ('a','b')", None, &[]));
    }

    #[test]
    fn precedence_not_cmp_and_or() {
        // and binds tighter than or.
        assert!(eval(
            "userId eq 'x' or userId eq 'a' and connectionId eq 'conn1'",
            Some("x"),
            &[]
        ));
        assert!(!eval(
            "(userId eq 'x' or userId eq 'a') and connectionId eq 'nope'",
            Some("x"),
            &[]
        ));
        // not binds tighter than and.
        assert!(eval(
            "not userId eq 'b' and 'g' in groups",
            Some("a"),
            &["g"]
        ));
        assert!(eval("not ('g' in groups)", Some("a"), &[]));
        assert!(eval(
            "NOT 'g' IN Groups Or UserID Eq 'a'",
            Some("a"),
            &["g"]
        ));
    }

    #[test]
    fn null_user_and_comparisons() {
        assert!(eval("userId eq null", None, &[]));
        assert!(eval("userId ne null", Some("u"), &[]));
        assert!(!eval("userId gt 'a'", None, &[]));
        assert!(eval("userId gt 'a' and userId le 'c'", Some("b"), &[]));
        assert!(eval("1 lt 2 and 3 ge 3 and true eq true", None, &[]));
    }

    #[test]
    fn string_functions() {
        let u = Some(" Ada Lovelace ");
        assert!(eval("tolower(trim(userId)) eq 'ada lovelace'", u, &[]));
        assert!(eval("toupper(userId) eq ' ADA LOVELACE '", u, &[]));
        assert!(eval("startswith(trim(userId), 'Ada')", u, &[]));
        assert!(eval("endswith(userId, 'lace ')", u, &[]));
        assert!(eval("contains(userId, 'Love')", u, &[]));
        assert!(eval("indexof(userId, 'Ada') eq 1", u, &[]));
        assert!(eval("indexof(userId, 'zzz') eq -1", u, &[]));
        assert!(eval("substring(userId, 1, 3) eq 'Ada'", u, &[]));
        assert!(eval("substring(userId, 5) eq 'Lovelace '", u, &[]));
        assert!(eval("substring(userId, 500) eq ''", u, &[]));
        assert!(eval("concat(userId, '!') eq ' Ada Lovelace !'", u, &[]));
        assert!(eval("length(userId) eq 14", u, &[]));
        assert!(eval("length('é') eq 1", None, &[]));
        assert!(!eval("startswith(userId, 'a')", None, &[]));
        assert!(eval("concat(userId, 'x') eq null", None, &[]));
    }

    #[test]
    fn quotes_escape_by_doubling() {
        assert!(eval("userId eq 'o''brien'", Some("o'brien"), &[]));
    }

    fn err(filter: &str) -> FilterError {
        Filter::parse(filter).expect_err(filter)
    }

    #[test]
    fn errors_are_clear_and_positioned() {
        assert_eq!(err("").position, 0);
        let e = err("userId eq");
        assert_eq!(e.position, 9, "{e}");
        assert!(e.message.contains("end of the filter"), "{e}");
        let e = err("userid eq 'a' xor 1");
        assert_eq!(e.position, 14, "{e}");
        let e = err("nickname eq 'a'");
        assert!(e.message.contains("unknown name 'nickname'"), "{e}");
        let e = err("userId eq 1");
        assert!(
            e.message.contains("cannot compare a string with a number"),
            "{e}"
        );
        assert!(err("userId").message.contains("must be true or false"));
        assert!(err("groups eq 'a'").message.contains("groups"));
        assert!(err("'a' in userId").message.contains("right side of 'in'"));
        assert!(err("substring(userId)").message.contains("substring takes"));
        assert!(err("tolower(1) eq 'a'").message.contains("tolower takes"));
        assert!(err("(userId eq 'a'").message.contains("expected ')'"));
        assert!(err("userId in ('a' 'b')").message.contains("',' or ')'"));
        assert!(err("not 'a'").message.contains("operand of 'not'"));
        assert!(err("true gt false").message.contains("strings or numbers"));
    }

    #[test]
    fn syntax_errors_outrank_errors_of_meaning() {
        // The unknown name comes first, but the filter is no expression at all.
        let e = err("invalid filter");
        assert_eq!((e.kind, e.span.clone()), (ErrorKind::Syntax, 8..14), "{e}");
        let e = err("nickname eq 'a' and 1");
        assert_eq!(e.kind, ErrorKind::Meaning, "{e}");
        assert!(e.message.contains("unknown name 'nickname'"), "{e}");
        assert_eq!(err("nickname eq 'a' and").kind, ErrorKind::Syntax);
        assert_eq!(err("frobnicate('a', 'b') eq").kind, ErrorKind::Syntax);
        let e = err("frobnicate('a', 'b') eq 'x'");
        assert_eq!((e.kind, e.span.clone()), (ErrorKind::Meaning, 0..20), "{e}");
    }

    #[test]
    fn service_wording() {
        let msg = |f: &str| err(f).service_message(f);
        // The text the service answers, as the server SDK's own test expects it.
        assert_eq!(
            msg("invalid filter"),
            "Invalid syntax for 'invalid filter': Syntax error at position 14 in 'invalid filter'. (Parameter 'filter')"
        );
        assert_eq!(
            msg("(userId eq 'a'"),
            "Invalid syntax for '(userId eq 'a'': Syntax error at position 14 in '(userId eq 'a''. (Parameter 'filter')"
        );
        // Positions count UTF-16 units, as the service's do.
        assert_eq!(
            msg("userId eq 'é' xor"),
            "Invalid syntax for 'userId eq 'é' xor': Syntax error at position 17 in 'userId eq 'é' xor'. (Parameter 'filter')"
        );
        // Errors of meaning name the expression at fault, as the service does.
        assert_eq!(
            msg("'g' in groups and not length(userId)"),
            "Invalid syntax for 'not length(userId)': The operand of 'not' must be true or false, not a number, at position 22 in ''g' in groups and not length(userId)'. (Parameter 'filter')"
        );
        assert!(
            msg("nickname eq 'a'")
                .starts_with("Invalid syntax for 'nickname': Unknown name 'nickname'")
        );
        let huge = vec!["userId eq 'a'"; MAX_CLAUSES + 1].join(" or ");
        let m = msg(&huge);
        assert!(
            m.starts_with(&format!(
                "Invalid syntax for '{huge}': The filter has more than"
            )),
            "{m}"
        );
    }

    #[test]
    fn size_limits() {
        let ok = vec!["userId eq 'a'"; MAX_CLAUSES].join(" or ");
        assert!(Filter::parse(&ok).is_ok());
        let too_many = vec!["userId eq 'a'"; MAX_CLAUSES + 1].join(" or ");
        assert!(err(&too_many).message.contains("clauses"));
        let deep = format!("{}true{}", "(".repeat(1000), ")".repeat(1000));
        assert!(err(&deep).message.contains("nests deeper"));
        let nots = format!("{}true", "not ".repeat(1000));
        assert!(err(&nots).message.contains("nests deeper"));
        assert!(err(&"a".repeat(MAX_LEN + 1)).message.contains("longer"));
    }

    const ALPHABET: &[&str] = &[
        "userId",
        "connectionId",
        "groups",
        "eq",
        "ne",
        "gt",
        "lt",
        "and",
        "or",
        "not",
        "in",
        "(",
        ")",
        ",",
        "'a'",
        "'g'",
        "''",
        "'",
        "1",
        "-3",
        "null",
        "true",
        "tolower",
        "substring",
        "startswith",
        "length",
        "concat",
        "indexof",
        " ",
        "§",
        "é",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary strings never panic the parser.
        #[test]
        fn random_text_never_panics(s in "\\PC{0,200}") {
            if let Err(e) = Filter::parse(&s) {
                let _ = e.service_message(&s);
            }
        }

        /// Random token soups (far likelier to get deep into the parser) never panic the
        /// parser or the evaluator.
        #[test]
        fn random_tokens_never_panic(idx in proptest::collection::vec(0..ALPHABET.len(), 0..60)) {
            let s: Vec<&str> = idx.iter().map(|i| ALPHABET[*i]).collect();
            let s = s.join(" ");
            if let Err(e) = Filter::parse(&s) {
                let _ = e.service_message(&s);
            }
            if let Ok(f) = Filter::parse(&s) {
                let groups = [Arc::from("g")];
                let _ = f.matches(&Target { connection_id: "c", user_id: Some("a"), groups: &groups });
                let _ = f.matches(&Target { connection_id: "c", user_id: None, groups: &[] });
            }
        }
    }
}
