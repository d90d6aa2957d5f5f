//! The domain's closed sets of names (`domain::names!`: modes, rules, reasons, states,
//! outcomes) stored as their names in TEXT columns. Rows carry the enums themselves, so
//! a value that is not one of the names fails where it is read instead of turning into
//! a default.

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;

use crate::domain::admission::Outcome;
use crate::domain::config::{CountMode, OverLimit, PerUserOverLimit};
use crate::domain::schedule::{BoostStatus, ChangeStatus};
use crate::domain::session::{EndReason, SessionState};

/// `ToSql` and `FromSql` over `Text` for every backend, through the enum's `as_str`
/// and `parse`.
macro_rules! stored_as_text {
    ($($t:ty),+ $(,)?) => {$(
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
