//! A field of a change (PATCH): left out, `null`, or a value.

use serde::{Deserialize, Deserializer};

/// One field of a change. A body reads "absent" as [`Patch::Keep`] (with
/// `#[serde(default)]`), `null` as [`Patch::Clear`] and a value as [`Patch::Set`]; the
/// OpenAPI document shows it as the value's type or `null`
/// (`#[schema(value_type = Option<T>)]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Patch<T> {
    /// Not sent: unchanged.
    #[default]
    Keep,
    /// Sent as `null`: back to the default (an override: the plan's value applies).
    Clear,
    Set(T),
}

/// What a change may not do to a field.
pub const NOT_NULL: &str = "must not be null";

impl<T> Patch<T> {
    /// Whether the field was sent at all (a value or `null`).
    pub fn is_sent(&self) -> bool {
        !matches!(self, Self::Keep)
    }

    pub fn is_set(&self) -> bool {
        matches!(self, Self::Set(_))
    }

    pub fn as_ref(&self) -> Patch<&T> {
        match self {
            Self::Keep => Patch::Keep,
            Self::Clear => Patch::Clear,
            Self::Set(v) => Patch::Set(v),
        }
    }

    /// The value, if one was sent (`null` and absent alike give `None`).
    pub fn set(self) -> Option<T> {
        match self {
            Self::Set(v) => Some(v),
            Self::Keep | Self::Clear => None,
        }
    }

    /// As storage writes a nullable column: `None` unchanged, `Some(None)` cleared.
    pub fn into_change(self) -> Option<Option<T>> {
        match self {
            Self::Keep => None,
            Self::Clear => Some(None),
            Self::Set(v) => Some(Some(v)),
        }
    }

    /// For a field that cannot be cleared: the value if one was sent, and
    /// [`NOT_NULL`] for `null`.
    pub fn not_null(self) -> Result<Option<T>, &'static str> {
        match self {
            Self::Keep => Ok(None),
            Self::Clear => Err(NOT_NULL),
            Self::Set(v) => Ok(Some(v)),
        }
    }

    /// Checks a sent value with `check`; absent and `null` stay as they are.
    pub fn and_then<U, E>(self, check: impl FnOnce(T) -> Result<U, E>) -> Result<Patch<U>, E> {
        Ok(match self {
            Self::Keep => Patch::Keep,
            Self::Clear => Patch::Clear,
            Self::Set(v) => Patch::Set(check(v)?),
        })
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    /// Called only for a field that is present: `null` clears, a value sets.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(d)? {
            None => Self::Clear,
            Some(v) => Self::Set(v),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Default)]
    #[serde(default)]
    struct Change {
        n: Patch<i64>,
    }

    fn read(json: &str) -> Patch<i64> {
        serde_json::from_str::<Change>(json).unwrap().n
    }

    #[test]
    fn absent_null_and_a_value_are_three_states() {
        assert_eq!(read("{}"), Patch::Keep);
        assert_eq!(read(r#"{"n": null}"#), Patch::Clear);
        assert_eq!(read(r#"{"n": 4}"#), Patch::Set(4));
        assert!(serde_json::from_str::<Change>(r#"{"n": "four"}"#).is_err());
    }

    #[test]
    fn a_field_that_cannot_be_cleared_refuses_null() {
        assert_eq!(Patch::<i64>::Keep.not_null(), Ok(None));
        assert_eq!(Patch::Set(3).not_null(), Ok(Some(3)));
        assert_eq!(Patch::<i64>::Clear.not_null(), Err(NOT_NULL));
        assert_eq!(Patch::<i64>::Clear.into_change(), Some(None));
        assert_eq!(Patch::Set(3).into_change(), Some(Some(3)));
        assert_eq!(Patch::<i64>::Keep.into_change(), None);
    }
}
