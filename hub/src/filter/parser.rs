//! A recursive-descent parser from tokens to a typed [`Expr`], checking types as it goes so a
//! filter that parses can always be evaluated.
//!
//! Precedence, lowest first: `or`, `and`, `not`, then comparisons and `in`. Nesting depth and
//! the number of clauses are bounded, so hostile input cannot exhaust the stack or the CPU.
//!
//! A syntax error ends the parse at once; a type error or an unknown name is kept and the parse
//! goes on, so a filter that is also malformed further on is refused for its syntax, as the
//! service refuses it (it parses first and binds names and types after).

use std::ops::Range;

use super::ast::{CmpOp, Expr, Field, Func, Literal, Ty};
use super::lexer::{Spanned, Token};
use super::{FilterError, MAX_CLAUSES, MAX_DEPTH};

/// Parses tokens into a boolean expression.
pub fn parse_tokens(tokens: &[Spanned], input_len: usize) -> Result<Expr, FilterError> {
    let mut p = Parser {
        tokens,
        at: 0,
        depth: 0,
        clauses: 0,
        end: input_len,
        meaning: None,
    };
    if tokens.is_empty() {
        return Err(FilterError::syntax(0..0, "the filter is empty"));
    }
    let (expr, ty) = p.or_expr()?;
    if let Some(t) = p.peek() {
        return Err(FilterError::syntax(
            t.pos..t.end,
            format!(
                "unexpected {} after a complete expression",
                describe(&t.token)
            ),
        ));
    }
    p.expect_bool(ty, 0..input_len, 0, "the filter");
    match p.meaning {
        Some(e) => Err(e),
        None => Ok(expr),
    }
}

struct Parser<'a> {
    tokens: &'a [Spanned],
    at: usize,
    depth: usize,
    clauses: usize,
    end: usize,
    /// The first type error or unknown name, reported once the whole filter has parsed.
    meaning: Option<FilterError>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Spanned> {
        self.tokens.get(self.at)
    }

    fn pos(&self) -> usize {
        self.peek().map(|t| t.pos).unwrap_or(self.end)
    }

    /// The next token's bytes, or the empty end of the filter.
    fn here(&self) -> Range<usize> {
        self.peek()
            .map(|t| t.pos..t.end)
            .unwrap_or(self.end..self.end)
    }

    /// From `start` to the end of the last token read.
    fn span_from(&self, start: usize) -> Range<usize> {
        let end = self
            .at
            .checked_sub(1)
            .and_then(|i| self.tokens.get(i))
            .map_or(start, |t| t.end);
        start..end.max(start)
    }

    fn next(&mut self) -> Option<&Spanned> {
        let t = self.tokens.get(self.at);
        self.at += 1;
        t
    }

    /// Keeps the first error of meaning; later ones often follow from it.
    fn mean(&mut self, e: FilterError) {
        if self.meaning.is_none() {
            self.meaning = Some(e);
        }
    }

    /// Whether the next token is the keyword `kw` (any case); consumes it if so.
    fn keyword(&mut self, kw: &str) -> bool {
        match self.peek() {
            Some(Spanned {
                token: Token::Name(n),
                ..
            }) if n.eq_ignore_ascii_case(kw) => {
                self.at += 1;
                true
            }
            _ => false,
        }
    }

    fn expect(&mut self, want: Token, what: &str) -> Result<(), FilterError> {
        let here = self.here();
        match self.next() {
            Some(t) if t.token == want => Ok(()),
            Some(t) => Err(FilterError::syntax(
                here,
                format!("expected {what}, found {}", describe(&t.token)),
            )),
            None => Err(FilterError::syntax(
                here,
                format!("expected {what}, found the end of the filter"),
            )),
        }
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FilterError::limit(
                self.pos(),
                format!("the filter nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn clause(&mut self, pos: usize) -> Result<(), FilterError> {
        self.clauses += 1;
        if self.clauses > MAX_CLAUSES {
            return Err(FilterError::limit(
                pos,
                format!("the filter has more than {MAX_CLAUSES} clauses"),
            ));
        }
        Ok(())
    }

    /// Keeps an error if `ty`, of the expression `span` (a problem at `pos`), is no boolean.
    fn expect_bool(&mut self, ty: Ty, span: Range<usize>, pos: usize, what: &str) {
        if ty != Ty::Bool {
            self.mean(FilterError::meaning(
                span,
                pos,
                format!("{what} must be true or false, not {}", ty.name()),
            ));
        }
    }

    fn or_expr(&mut self) -> Result<(Expr, Ty), FilterError> {
        self.chain("or", Self::and_expr, Expr::Or)
    }

    fn and_expr(&mut self) -> Result<(Expr, Ty), FilterError> {
        self.chain("and", Self::not_expr, Expr::And)
    }

    /// Operands of `operand` joined by the boolean keyword `kw` into `join`.
    fn chain(
        &mut self,
        kw: &str,
        operand: fn(&mut Self) -> Result<(Expr, Ty), FilterError>,
        join: fn(Box<Expr>, Box<Expr>) -> Expr,
    ) -> Result<(Expr, Ty), FilterError> {
        let start = self.pos();
        let (mut left, mut ty) = operand(self)?;
        loop {
            let left_span = self.span_from(start);
            if !self.keyword(kw) {
                return Ok((left, ty));
            }
            self.expect_bool(ty, left_span, start, &format!("the left side of '{kw}'"));
            let rpos = self.pos();
            let (right, rty) = operand(self)?;
            let right_span = self.span_from(rpos);
            self.expect_bool(rty, right_span, rpos, &format!("the right side of '{kw}'"));
            left = join(Box::new(left), Box::new(right));
            ty = Ty::Bool;
        }
    }

    fn not_expr(&mut self) -> Result<(Expr, Ty), FilterError> {
        let start = self.pos();
        if self.keyword("not") {
            self.enter()?;
            let pos = self.pos();
            let (inner, ty) = self.not_expr()?;
            let span = self.span_from(start);
            self.expect_bool(ty, span, pos, "the operand of 'not'");
            self.depth -= 1;
            return Ok((Expr::Not(Box::new(inner)), Ty::Bool));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<(Expr, Ty), FilterError> {
        let lpos = self.pos();
        let (left, lty) = self.primary()?;
        let op_pos = self.pos();
        if self.keyword("in") {
            self.clause(op_pos)?;
            return self.in_rhs(left, lty, lpos);
        }
        let op = match self.peek() {
            Some(Spanned {
                token: Token::Name(n),
                ..
            }) => CmpOp::parse(n),
            _ => None,
        };
        let Some(op) = op else {
            return Ok((left, lty));
        };
        self.at += 1;
        self.clause(op_pos)?;
        let rpos = self.pos();
        let (right, rty) = self.primary()?;
        if let Some((pos, problem)) = incomparable(op, lty, rty, op_pos, rpos) {
            let span = self.span_from(lpos);
            self.mean(FilterError::meaning(span, pos, problem));
        }
        Ok((Expr::Compare(op, Box::new(left), Box::new(right)), Ty::Bool))
    }

    /// The right side of `left in …`, `left` starting at `lpos`; every type is checked once
    /// the whole expression is read, so an error names all of it.
    fn in_rhs(&mut self, left: Expr, lty: Ty, lpos: usize) -> Result<(Expr, Ty), FilterError> {
        let pos = self.pos();
        if matches!(self.peek().map(|t| &t.token), Some(Token::LParen)) {
            self.at += 1;
            self.enter()?;
            let mut items = Vec::new();
            let mut types = Vec::new();
            loop {
                let ipos = self.pos();
                let (item, ity) = self.primary()?;
                items.push(item);
                types.push((ipos, ity));
                if matches!(self.peek().map(|t| &t.token), Some(Token::Comma)) {
                    self.at += 1;
                    continue;
                }
                self.expect(Token::RParen, "',' or ')' in the list after 'in'")?;
                break;
            }
            self.depth -= 1;
            let span = self.span_from(lpos);
            self.in_left(lty, lpos, &span);
            for (ipos, ity) in types {
                if !comparable(lty, ity) {
                    self.mean(FilterError::meaning(
                        span.clone(),
                        ipos,
                        format!(
                            "cannot compare {} with {} in a list",
                            lty.name(),
                            ity.name()
                        ),
                    ));
                }
            }
            return Ok((Expr::InList(Box::new(left), items), Ty::Bool));
        }
        let (_groups, rty) = self.primary()?;
        let span = self.span_from(lpos);
        self.in_left(lty, lpos, &span);
        if rty != Ty::Collection {
            self.mean(FilterError::meaning(
                span,
                pos,
                format!(
                    "the right side of 'in' must be a list like ('a','b') or 'groups', not {}",
                    rty.name()
                ),
            ));
        } else if lty == Ty::Int {
            self.mean(FilterError::meaning(
                span,
                pos,
                "'groups' holds strings, not numbers",
            ));
        }
        Ok((Expr::InGroups(Box::new(left)), Ty::Bool))
    }

    /// Keeps an error if the left side of `in` is no string or number.
    fn in_left(&mut self, lty: Ty, lpos: usize, span: &Range<usize>) {
        if !matches!(lty, Ty::Str | Ty::Int | Ty::Null) {
            self.mean(FilterError::meaning(
                span.clone(),
                lpos,
                format!(
                    "the left side of 'in' must be a string or number, not {}",
                    lty.name()
                ),
            ));
        }
    }

    fn primary(&mut self) -> Result<(Expr, Ty), FilterError> {
        let end = self.end;
        let Some(t) = self.next() else {
            return Err(FilterError::syntax(
                end..end,
                "expected a value, a field or '(', found the end of the filter",
            ));
        };
        let (token, span) = (t.token.clone(), t.pos..t.end);
        match token {
            Token::Str(s) => Ok((Expr::Literal(Literal::Str(s)), Ty::Str)),
            Token::Int(n) => Ok((Expr::Literal(Literal::Int(n)), Ty::Int)),
            Token::LParen => {
                self.enter()?;
                let r = self.or_expr()?;
                self.expect(Token::RParen, "')'")?;
                self.depth -= 1;
                Ok(r)
            }
            Token::Name(n) => self.name(&n, span.start),
            other => Err(FilterError::syntax(
                span,
                format!(
                    "expected a value, a field or '(', found {}",
                    describe(&other)
                ),
            )),
        }
    }

    fn name(&mut self, n: &str, pos: usize) -> Result<(Expr, Ty), FilterError> {
        let lower = n.to_ascii_lowercase();
        match lower.as_str() {
            "true" => return Ok((Expr::Literal(Literal::Bool(true)), Ty::Bool)),
            "false" => return Ok((Expr::Literal(Literal::Bool(false)), Ty::Bool)),
            "null" => return Ok((Expr::Literal(Literal::Null), Ty::Null)),
            _ => {}
        }
        if let Some(f) = Field::parse(&lower) {
            return Ok((Expr::Field(f), f.ty()));
        }
        if let Some(func) = Func::parse(&lower) {
            return self.call(func, pos);
        }
        // An unknown function's arguments are read too: the error is about the whole call.
        if matches!(self.peek().map(|t| &t.token), Some(Token::LParen)) {
            self.args(n)?;
        }
        let span = self.span_from(pos);
        self.mean(FilterError::meaning(
            span,
            pos,
            format!(
                "unknown name '{n}': fields are userId, connectionId and groups; functions are {}",
                Func::NAMES.join(", ")
            ),
        ));
        // null compares with anything, so the unknown name adds no errors of its own.
        Ok((Expr::Literal(Literal::Null), Ty::Null))
    }

    fn call(&mut self, func: Func, pos: usize) -> Result<(Expr, Ty), FilterError> {
        let (args, types) = self.args(func.name())?;
        match func.check(&types) {
            Ok(ty) => {
                if ty == Ty::Bool {
                    self.clause(pos)?;
                }
                Ok((Expr::Call(func, args), ty))
            }
            Err(problem) => {
                let span = self.span_from(pos);
                self.mean(FilterError::meaning(span, pos, problem));
                Ok((Expr::Call(func, args), Ty::Null))
            }
        }
    }

    /// A call's `(arg, …)` after the function `name`.
    fn args(&mut self, name: &str) -> Result<(Vec<Expr>, Vec<Ty>), FilterError> {
        self.expect(Token::LParen, &format!("'(' after '{name}'"))?;
        self.enter()?;
        let mut args = Vec::new();
        let mut types = Vec::new();
        if !matches!(self.peek().map(|t| &t.token), Some(Token::RParen)) {
            loop {
                let (a, ty) = self.or_expr()?;
                args.push(a);
                types.push(ty);
                if matches!(self.peek().map(|t| &t.token), Some(Token::Comma)) {
                    self.at += 1;
                    continue;
                }
                break;
            }
        }
        self.expect(Token::RParen, &format!("',' or ')' in '{name}(…)'"))?;
        self.depth -= 1;
        Ok((args, types))
    }
}

fn comparable(a: Ty, b: Ty) -> bool {
    a == b || a == Ty::Null || b == Ty::Null
}

/// What is wrong with comparing `l` and `r` with `op`, and where (the operator at `pos`, the
/// right side at `rpos`).
fn incomparable(op: CmpOp, l: Ty, r: Ty, pos: usize, rpos: usize) -> Option<(usize, String)> {
    if l == Ty::Collection || r == Ty::Collection {
        return Some((
            pos,
            "'groups' can only be used as \"'name' in groups\"".into(),
        ));
    }
    if !comparable(l, r) {
        return Some((
            rpos,
            format!(
                "cannot compare {} with {} using '{}'",
                l.name(),
                r.name(),
                op.name()
            ),
        ));
    }
    if op.is_ordering() && (l == Ty::Bool || r == Ty::Bool) {
        return Some((pos, format!("'{}' needs strings or numbers", op.name())));
    }
    None
}

fn describe(t: &Token) -> String {
    match t {
        Token::Name(n) => format!("'{n}'"),
        Token::Str(s) => format!("the string '{s}'"),
        Token::Int(n) => format!("the number {n}"),
        Token::LParen => "'('".into(),
        Token::RParen => "')'".into(),
        Token::Comma => "','".into(),
    }
}
