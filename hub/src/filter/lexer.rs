//! Splits an OData filter into tokens, each with the byte offset where it starts, so every
//! later error can point at the exact place in the caller's string.

use super::FilterError;

/// One token of a filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    /// A name: an identifier, a keyword (`and`, `eq`, …) or a function name.
    Name(String),
    /// A quoted string literal, with `''` already unescaped.
    Str(String),
    /// An integer literal.
    Int(i64),
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `,`
    Comma,
}

/// A token and its byte offset in the filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned {
    /// The token.
    pub token: Token,
    /// Byte offset of its first character.
    pub pos: usize,
    /// Byte offset just past its last character.
    pub end: usize,
}

/// Tokenizes a whole filter.
pub fn tokenize(input: &str) -> Result<Vec<Spanned>, FilterError> {
    let bytes = input.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let token = match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => {
                i += 1;
                Token::LParen
            }
            b')' => {
                i += 1;
                Token::RParen
            }
            b',' => {
                i += 1;
                Token::Comma
            }
            b'\'' => {
                let (s, next) = string(input, i)?;
                i = next;
                Token::Str(s)
            }
            b'-' | b'0'..=b'9' => {
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                let text = &input[start..i];
                let n = text.parse::<i64>().map_err(|_| {
                    FilterError::syntax(start..i, format!("'{text}' is not a valid 64-bit integer"))
                })?;
                Token::Int(n)
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                Token::Name(input[start..i].to_string())
            }
            _ => {
                let ch = input[start..].chars().next().unwrap_or('?');
                return Err(FilterError::syntax(
                    start..start + ch.len_utf8(),
                    format!("unexpected character '{ch}'"),
                ));
            }
        };
        out.push(Spanned {
            token,
            pos: start,
            end: i,
        });
    }
    Ok(out)
}

/// Reads a `'…'` literal starting at `start`; returns the text and the offset after it.
fn string(input: &str, start: usize) -> Result<(String, usize), FilterError> {
    let bytes = input.as_bytes();
    let mut out = String::new();
    let mut i = start + 1;
    let mut run = i;
    loop {
        match bytes.get(i) {
            None => {
                return Err(FilterError::syntax(
                    start..input.len(),
                    "unterminated string literal (close it with ', escape a quote as '')",
                ));
            }
            Some(b'\'') => {
                out.push_str(&input[run..i]);
                if bytes.get(i + 1) == Some(&b'\'') {
                    out.push('\'');
                    i += 2;
                    run = i;
                } else {
                    return Ok((out, i + 1));
                }
            }
            Some(_) => i += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<Token> {
        tokenize(s).unwrap().into_iter().map(|t| t.token).collect()
    }

    #[test]
    fn tokens_and_positions() {
        let t = tokenize("userId eq 'a''b'").unwrap();
        assert_eq!(t[0].token, Token::Name("userId".into()));
        assert_eq!(t[1].pos, 7);
        assert_eq!(t[2].token, Token::Str("a'b".into()));
        assert_eq!(t[2].pos, 10);
        assert_eq!(
            kinds("('x',-12)"),
            vec![
                Token::LParen,
                Token::Str("x".into()),
                Token::Comma,
                Token::Int(-12),
                Token::RParen
            ]
        );
        assert_eq!(kinds("'é'"), vec![Token::Str("é".into())]);
    }

    #[test]
    fn lexical_errors_point_at_the_problem() {
        assert_eq!(tokenize("a eq 'x").unwrap_err().position, 5);
        assert_eq!(tokenize("a § b").unwrap_err().position, 2);
        assert!(tokenize("99999999999999999999").is_err());
        assert!(tokenize("-").is_err());
    }
}
