//! A recursive-descent parser from tokens to a typed [`Expr`], checking types as it goes so a
//! filter that parses can always be evaluated.
//!
//! Precedence, lowest first: `or`, `and`, `not`, then comparisons and `in`. Nesting depth and
//! the number of clauses are bounded, so hostile input cannot exhaust the stack or the CPU.

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
    };
    if tokens.is_empty() {
        return Err(FilterError::new(0, "the filter is empty"));
    }
    let (expr, ty) = p.or_expr()?;
    if let Some(t) = p.peek() {
        return Err(FilterError::new(
            t.pos,
            format!(
                "unexpected {} after a complete expression",
                describe(&t.token)
            ),
        ));
    }
    expect_bool(ty, 0, "the filter")?;
    Ok(expr)
}

struct Parser<'a> {
    tokens: &'a [Spanned],
    at: usize,
    depth: usize,
    clauses: usize,
    end: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Spanned> {
        self.tokens.get(self.at)
    }

    fn pos(&self) -> usize {
        self.peek().map(|t| t.pos).unwrap_or(self.end)
    }

    fn next(&mut self) -> Option<&Spanned> {
        let t = self.tokens.get(self.at);
        self.at += 1;
        t
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
        let pos = self.pos();
        match self.next() {
            Some(t) if t.token == want => Ok(()),
            Some(t) => Err(FilterError::new(
                pos,
                format!("expected {what}, found {}", describe(&t.token)),
            )),
            None => Err(FilterError::new(
                pos,
                format!("expected {what}, found the end of the filter"),
            )),
        }
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FilterError::new(
                self.pos(),
                format!("the filter nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn clause(&mut self, pos: usize) -> Result<(), FilterError> {
        self.clauses += 1;
        if self.clauses > MAX_CLAUSES {
            return Err(FilterError::new(
                pos,
                format!("the filter has more than {MAX_CLAUSES} clauses"),
            ));
        }
        Ok(())
    }

    fn or_expr(&mut self) -> Result<(Expr, Ty), FilterError> {
        let start = self.pos();
        let (mut left, ty) = self.and_expr()?;
        let mut ty = ty;
        while self.keyword("or") {
            expect_bool(ty, start, "the left side of 'or'")?;
            let rpos = self.pos();
            let (right, rty) = self.and_expr()?;
            expect_bool(rty, rpos, "the right side of 'or'")?;
            left = Expr::Or(Box::new(left), Box::new(right));
            ty = Ty::Bool;
        }
        Ok((left, ty))
    }

    fn and_expr(&mut self) -> Result<(Expr, Ty), FilterError> {
        let start = self.pos();
        let (mut left, mut ty) = self.not_expr()?;
        while self.keyword("and") {
            expect_bool(ty, start, "the left side of 'and'")?;
            let rpos = self.pos();
            let (right, rty) = self.not_expr()?;
            expect_bool(rty, rpos, "the right side of 'and'")?;
            left = Expr::And(Box::new(left), Box::new(right));
            ty = Ty::Bool;
        }
        Ok((left, ty))
    }

    fn not_expr(&mut self) -> Result<(Expr, Ty), FilterError> {
        if self.keyword("not") {
            self.enter()?;
            let pos = self.pos();
            let (inner, ty) = self.not_expr()?;
            expect_bool(ty, pos, "the operand of 'not'")?;
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
            if !matches!(lty, Ty::Str | Ty::Int | Ty::Null) {
                return Err(FilterError::new(
                    lpos,
                    format!(
                        "the left side of 'in' must be a string or number, not {}",
                        lty.name()
                    ),
                ));
            }
            return self.in_rhs(left, lty);
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
        check_comparable(op, lty, rty, op_pos, rpos)?;
        Ok((Expr::Compare(op, Box::new(left), Box::new(right)), Ty::Bool))
    }

    fn in_rhs(&mut self, left: Expr, lty: Ty) -> Result<(Expr, Ty), FilterError> {
        let pos = self.pos();
        if matches!(self.peek().map(|t| &t.token), Some(Token::LParen)) {
            self.at += 1;
            self.enter()?;
            let mut items = Vec::new();
            loop {
                let ipos = self.pos();
                let (item, ity) = self.primary()?;
                if !comparable(lty, ity) {
                    return Err(FilterError::new(
                        ipos,
                        format!(
                            "cannot compare {} with {} in a list",
                            lty.name(),
                            ity.name()
                        ),
                    ));
                }
                items.push(item);
                if matches!(self.peek().map(|t| &t.token), Some(Token::Comma)) {
                    self.at += 1;
                    continue;
                }
                self.expect(Token::RParen, "',' or ')' in the list after 'in'")?;
                break;
            }
            self.depth -= 1;
            return Ok((Expr::InList(Box::new(left), items), Ty::Bool));
        }
        let (_groups, rty) = self.primary()?;
        if rty != Ty::Collection {
            return Err(FilterError::new(
                pos,
                format!(
                    "the right side of 'in' must be a list like ('a','b') or 'groups', not {}",
                    rty.name()
                ),
            ));
        }
        if lty == Ty::Int {
            return Err(FilterError::new(pos, "'groups' holds strings, not numbers"));
        }
        Ok((Expr::InGroups(Box::new(left)), Ty::Bool))
    }

    fn primary(&mut self) -> Result<(Expr, Ty), FilterError> {
        let pos = self.pos();
        let Some(t) = self.next() else {
            return Err(FilterError::new(
                pos,
                "expected a value, a field or '(', found the end of the filter",
            ));
        };
        match t.token.clone() {
            Token::Str(s) => Ok((Expr::Literal(Literal::Str(s)), Ty::Str)),
            Token::Int(n) => Ok((Expr::Literal(Literal::Int(n)), Ty::Int)),
            Token::LParen => {
                self.enter()?;
                let r = self.or_expr()?;
                self.expect(Token::RParen, "')'")?;
                self.depth -= 1;
                Ok(r)
            }
            Token::Name(n) => self.name(&n, pos),
            other => Err(FilterError::new(
                pos,
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
        Err(FilterError::new(
            pos,
            format!(
                "unknown name '{n}': fields are userId, connectionId and groups; functions are {}",
                Func::NAMES.join(", ")
            ),
        ))
    }

    fn call(&mut self, func: Func, pos: usize) -> Result<(Expr, Ty), FilterError> {
        self.expect(Token::LParen, &format!("'(' after '{}'", func.name()))?;
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
        self.expect(
            Token::RParen,
            &format!("',' or ')' in '{}(…)'", func.name()),
        )?;
        self.depth -= 1;
        let ty = func.check(&types).map_err(|m| FilterError::new(pos, m))?;
        if ty == Ty::Bool {
            self.clause(pos)?;
        }
        Ok((Expr::Call(func, args), ty))
    }
}

fn comparable(a: Ty, b: Ty) -> bool {
    a == b || a == Ty::Null || b == Ty::Null
}

fn check_comparable(op: CmpOp, l: Ty, r: Ty, pos: usize, rpos: usize) -> Result<(), FilterError> {
    if l == Ty::Collection || r == Ty::Collection {
        return Err(FilterError::new(
            pos,
            "'groups' can only be used as \"'name' in groups\"",
        ));
    }
    if !comparable(l, r) {
        return Err(FilterError::new(
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
        return Err(FilterError::new(
            pos,
            format!("'{}' needs strings or numbers", op.name()),
        ));
    }
    Ok(())
}

fn expect_bool(ty: Ty, pos: usize, what: &str) -> Result<(), FilterError> {
    if ty == Ty::Bool {
        Ok(())
    } else {
        Err(FilterError::new(
            pos,
            format!("{what} must be true or false, not {}", ty.name()),
        ))
    }
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
