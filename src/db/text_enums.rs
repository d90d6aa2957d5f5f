//! The domain's closed sets of names (`domain::names!`: modes, rules, reasons, states,
//! outcomes) stored as their names in TEXT columns. Rows carry the enums themselves, so
//! a value that is not one of the names fails where it is read instead of turning into
//! a default. The domain declares the sets without storage derives: what makes them
//! bindable and readable (what diesel's `AsExpression` and `FromSqlRow` derives would
//! write) is here, beside how they are stored.

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, Queryable};
use diesel::expression::AsExpression;
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::{Nullable, SingleValue, Text};

use crate::domain::admission::Outcome;
use crate::domain::config::{CountMode, OverLimit, PerUserOverLimit};
use crate::domain::schedule::{BoostStatus, ChangeStatus};
use crate::domain::session::{EndReason, SessionState};

/// `ToSql` and `FromSql` over `Text` for every backend, through the enum's `as_str`
/// and `parse`; binding as `Text` or `Nullable<Text>` (by value and by reference), as
/// its name; and reading as a column of a row.
macro_rules! stored_as_text {
    ($($t:ty),+ $(,)?) => {$(
        impl AsExpression<Text> for $t {
            type Expression = <&'static str as AsExpression<Text>>::Expression;
            fn as_expression(self) -> Self::Expression {
                <&'static str as AsExpression<Text>>::as_expression(self.as_str())
            }
        }

        impl AsExpression<Nullable<Text>> for $t {
            type Expression = <&'static str as AsExpression<Nullable<Text>>>::Expression;
            fn as_expression(self) -> Self::Expression {
                <&'static str as AsExpression<Nullable<Text>>>::as_expression(self.as_str())
            }
        }

        impl AsExpression<Text> for &$t {
            type Expression = <&'static str as AsExpression<Text>>::Expression;
            fn as_expression(self) -> Self::Expression {
                <&'static str as AsExpression<Text>>::as_expression(self.as_str())
            }
        }

        impl AsExpression<Nullable<Text>> for &$t {
            type Expression = <&'static str as AsExpression<Nullable<Text>>>::Expression;
            fn as_expression(self) -> Self::Expression {
                <&'static str as AsExpression<Nullable<Text>>>::as_expression(self.as_str())
            }
        }

        impl<DB: Backend> ToSql<Nullable<Text>, DB> for $t
        where
            Self: ToSql<Text, DB>,
        {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
                <Self as ToSql<Text, DB>>::to_sql(self, out)
            }
        }

        impl<DB: Backend, ST: SingleValue> Queryable<ST, DB> for $t
        where
            Self: FromSql<ST, DB>,
        {
            type Row = Self;
            fn build(row: Self) -> deserialize::Result<Self> {
                Ok(row)
            }
        }

        impl<DB: Backend> ToSql<Text, DB> for $t
        where
            str: ToSql<Text, DB>,
        {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
                <str as ToSql<Text, DB>>::to_sql(self.as_str(), out)
            }
        }

        impl<DB: Backend> FromSql<Text, DB> for $t
        where
            String: FromSql<Text, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
                let name = <String as FromSql<Text, DB>>::from_sql(bytes)?;
                <$t>::parse(&name).map_err(|e| format!("stored {name:?}: {e}").into())
            }
        }
    )+};
}

stored_as_text!(
    CountMode,
    OverLimit,
    PerUserOverLimit,
    EndReason,
    SessionState,
    Outcome,
    ChangeStatus,
    BoostStatus
);
