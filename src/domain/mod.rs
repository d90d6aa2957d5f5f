//! Pure rules: no I/O, no database, no HTTP. Everything here is tested on plain values.

/// A closed set of names (a mode, a rule, a reason, a state): the enum, its `as_str`
/// and its `parse` from one list, so that the JSON name, the stored name and the
/// parsed name are one string. `else |name| message` is what `parse` answers for any
/// other name. Storage keeps these by name in TEXT columns: the two diesel derives only
/// mark the enum as a TEXT value, the mapping itself is `db::text_enums`.
//
// The names are taken as `tt`, not `literal`: a `literal` fragment reaches the derive
// macros wrapped in an invisible group, and utoipa then ignores the serde rename.
macro_rules! names {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:tt, )+
        }
        else |$other:pat_param| $message:expr
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            pub const ALL: &'static [Self] = &[$( Self::$variant, )+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )+
                }
            }

            pub fn parse(s: &str) -> Result<Self, String> {
                match s {
                    $( $text => Ok(Self::$variant), )+
                    $other => Err(($message).into()),
                }
            }
        }
    };
}

pub mod admission;
pub mod advice;
pub mod billing;
pub mod chart;
pub mod config;
pub mod forecast;
pub mod history;
pub mod ids;
pub mod patch;
pub mod plan_terms;
pub mod schedule;
pub mod scope;
pub mod session;
pub mod sign_in;
pub mod targets;
pub mod usage_runs;

/// Reads a field that may be absent (`None`), `null` (`Some(None)`) or a value: how a
/// change tells "leave it" from "clear it". Used with `#[serde(default)]`.
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    use serde::Deserialize as _;
    Ok(Some(Option::deserialize(d)?))
}

/// Milliseconds since the Unix epoch, UTC: the unit of every stored instant.
pub type Millis = i64;

#[cfg(test)]
mod tests {
    use super::admission::Outcome;
    use super::config::{CountMode, OverLimit, PerUserOverLimit};
    use super::session::{EndReason, EventType, SessionState};

    /// Each name parses back to its value and is the value's JSON form, both ways.
    fn round_trips<T>(
        all: &[T], as_str: fn(&T) -> &'static str, parse: fn(&str) -> Result<T, String>,
    ) where
        T: PartialEq + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
    {
        for v in all {
            let name = as_str(v);
            assert_eq!(parse(name).as_ref(), Ok(v), "{name}");
            assert_eq!(serde_json::to_value(v).unwrap(), serde_json::json!(name));
            assert_eq!(
                &serde_json::from_value::<T>(serde_json::json!(name)).unwrap(),
                v
            );
        }
        assert!(parse("no such name").is_err());
    }

    #[test]
    fn every_name_is_one_string_in_json_storage_and_parse() {
        round_trips(CountMode::ALL, |v| v.as_str(), CountMode::parse);
        round_trips(OverLimit::ALL, |v| v.as_str(), OverLimit::parse);
        round_trips(
            PerUserOverLimit::ALL,
            |v| v.as_str(),
            PerUserOverLimit::parse,
        );
        round_trips(EndReason::ALL, |v| v.as_str(), EndReason::parse);
        round_trips(SessionState::ALL, |v| v.as_str(), SessionState::parse);
        round_trips(Outcome::ALL, |v| v.as_str(), Outcome::parse);
        round_trips(EventType::ALL, |v| v.as_str(), EventType::parse);
        assert_eq!(
            EventType::parse("session.paused").unwrap_err(),
            "unknown event type \"session.paused\" (use session.started, session.activity, \
             session.ended or session.refused)"
        );
    }
}
