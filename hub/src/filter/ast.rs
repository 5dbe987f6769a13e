//! The typed syntax tree of a filter: fields, literals, functions and operators.

/// The static type of an expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// A string (or `null`, for `userId` of an anonymous connection).
    Str,
    /// A 64-bit integer.
    Int,
    /// true or false.
    Bool,
    /// The `null` literal.
    Null,
    /// A collection of strings (`groups`).
    Collection,
}

impl Ty {
    /// The type's name in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Ty::Str => "a string",
            Ty::Int => "a number",
            Ty::Bool => "a boolean",
            Ty::Null => "null",
            Ty::Collection => "a collection",
        }
    }
}

/// A field of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `userId` (null for connections without a user).
    UserId,
    /// `connectionId`
    ConnectionId,
    /// `groups`: the groups the connection is in.
    Groups,
}

impl Field {
    /// Parses a lowercase field name.
    pub fn parse(lower: &str) -> Option<Self> {
        match lower {
            "userid" => Some(Field::UserId),
            "connectionid" => Some(Field::ConnectionId),
            "groups" => Some(Field::Groups),
            _ => None,
        }
    }

    /// The field's type.
    pub fn ty(self) -> Ty {
        match self {
            Field::UserId | Field::ConnectionId => Ty::Str,
            Field::Groups => Ty::Collection,
        }
    }
}

/// A literal value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Literal {
    /// `'text'`
    Str(String),
    /// `42`
    Int(i64),
    /// `true` / `false`
    Bool(bool),
    /// `null`
    Null,
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `eq`
    Eq,
    /// `ne`
    Ne,
    /// `gt`
    Gt,
    /// `ge`
    Ge,
    /// `lt`
    Lt,
    /// `le`
    Le,
}

impl CmpOp {
    /// Parses an operator keyword (any case).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "eq" => CmpOp::Eq,
            "ne" => CmpOp::Ne,
            "gt" => CmpOp::Gt,
            "ge" => CmpOp::Ge,
            "lt" => CmpOp::Lt,
            "le" => CmpOp::Le,
            _ => return None,
        })
    }

    /// The keyword.
    pub fn name(self) -> &'static str {
        match self {
            CmpOp::Eq => "eq",
            CmpOp::Ne => "ne",
            CmpOp::Gt => "gt",
            CmpOp::Ge => "ge",
            CmpOp::Lt => "lt",
            CmpOp::Le => "le",
        }
    }

    /// Whether the operator orders its operands (gt, ge, lt, le).
    pub fn is_ordering(self) -> bool {
        !matches!(self, CmpOp::Eq | CmpOp::Ne)
    }
}

/// A built-in function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    /// `tolower(s)`
    ToLower,
    /// `toupper(s)`
    ToUpper,
    /// `trim(s)`
    Trim,
    /// `substring(s, start[, length])`
    Substring,
    /// `startswith(s, prefix)`
    StartsWith,
    /// `endswith(s, suffix)`
    EndsWith,
    /// `contains(s, part)`
    Contains,
    /// `indexof(s, part)`: character index or -1
    IndexOf,
    /// `concat(a, b)`
    Concat,
    /// `length(s)`: number of characters
    Length,
}

impl Func {
    /// Every function name, for error messages.
    pub const NAMES: [&'static str; 10] = [
        "tolower",
        "toupper",
        "trim",
        "substring",
        "startswith",
        "endswith",
        "contains",
        "indexof",
        "concat",
        "length",
    ];

    /// Parses a lowercase function name.
    pub fn parse(lower: &str) -> Option<Self> {
        Some(match lower {
            "tolower" => Func::ToLower,
            "toupper" => Func::ToUpper,
            "trim" => Func::Trim,
            "substring" => Func::Substring,
            "startswith" => Func::StartsWith,
            "endswith" => Func::EndsWith,
            "contains" => Func::Contains,
            "indexof" => Func::IndexOf,
            "concat" => Func::Concat,
            "length" => Func::Length,
            _ => return None,
        })
    }

    /// The function's name.
    pub fn name(self) -> &'static str {
        match self {
            Func::ToLower => "tolower",
            Func::ToUpper => "toupper",
            Func::Trim => "trim",
            Func::Substring => "substring",
            Func::StartsWith => "startswith",
            Func::EndsWith => "endswith",
            Func::Contains => "contains",
            Func::IndexOf => "indexof",
            Func::Concat => "concat",
            Func::Length => "length",
        }
    }

    /// Checks argument types; returns the result type or what is wrong.
    pub fn check(self, args: &[Ty]) -> Result<Ty, String> {
        let string = |t: &Ty| matches!(t, Ty::Str | Ty::Null);
        let (want, result): (&[&str], Ty) = match self {
            Func::ToLower | Func::ToUpper | Func::Trim => (&["string"], Ty::Str),
            Func::Length => (&["string"], Ty::Int),
            Func::StartsWith | Func::EndsWith | Func::Contains => (&["string", "string"], Ty::Bool),
            Func::IndexOf => (&["string", "string"], Ty::Int),
            Func::Concat => (&["string", "string"], Ty::Str),
            Func::Substring => {
                let ok = matches!(args.len(), 2 | 3)
                    && string(&args[0])
                    && args[1..].iter().all(|t| *t == Ty::Int);
                return if ok {
                    Ok(Ty::Str)
                } else {
                    Err("substring takes (string, number) or (string, number, number)".into())
                };
            }
        };
        if args.len() == want.len() && args.iter().all(string) {
            Ok(result)
        } else {
            Err(format!("{} takes ({})", self.name(), want.join(", ")))
        }
    }
}

/// A filter expression; [`super::parse`] only returns boolean ones that type-check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// A literal.
    Literal(Literal),
    /// A field of the connection.
    Field(Field),
    /// A function call.
    Call(Func, Vec<Expr>),
    /// `not x`
    Not(Box<Expr>),
    /// `a and b`
    And(Box<Expr>, Box<Expr>),
    /// `a or b`
    Or(Box<Expr>, Box<Expr>),
    /// `a op b`
    Compare(CmpOp, Box<Expr>, Box<Expr>),
    /// `x in (a, b, …)`
    InList(Box<Expr>, Vec<Expr>),
    /// `x in groups`
    InGroups(Box<Expr>),
}
