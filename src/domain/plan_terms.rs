//! The terms a plan offers beside its limits: what it costs, how far past its limit
//! it may be used, and what a refused user reads.

/// A price in whole cents, 0 to 10^12.
pub fn parse_price_cents(n: i64) -> Result<i64, String> {
    if (0..=1_000_000_000_000).contains(&n) {
        Ok(n)
    } else {
        Err("must be a whole number of cents between 0 and 10^12".to_owned())
    }
}

/// `overage_percent`: how far past the limit admissions go, 0 to 1000 %.
pub fn parse_overage_percent(n: i64) -> Result<i64, String> {
    if (0..=1000).contains(&n) {
        Ok(n)
    } else {
        Err("must be between 0 and 1000".to_owned())
    }
}

/// `limit_message`: 1 to 1000 characters, counted as characters so that a message in
/// any script gets the same room.
pub fn parse_limit_message(s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().count() > 1000 {
        Err("must be 1 to 1000 characters".to_owned())
    } else {
        Ok(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_whole_cents_up_to_ten_to_the_twelfth() {
        assert_eq!(parse_price_cents(0), Ok(0));
        assert_eq!(parse_price_cents(1_000_000_000_000), Ok(1_000_000_000_000));
        assert!(parse_price_cents(-1).is_err());
        assert!(parse_price_cents(1_000_000_000_001).is_err());
    }

    #[test]
    fn overage_percent_runs_from_zero_to_a_thousand() {
        assert_eq!(parse_overage_percent(0), Ok(0));
        assert_eq!(parse_overage_percent(1000), Ok(1000));
        assert!(parse_overage_percent(-1).is_err());
        assert!(parse_overage_percent(1001).is_err());
    }

    #[test]
    fn a_limit_message_has_one_to_a_thousand_characters() {
        assert!(parse_limit_message("").is_err());
        assert_eq!(parse_limit_message("full"), Ok("full".to_owned()));
        assert!(parse_limit_message(&"ü".repeat(1000)).is_ok());
        assert!(parse_limit_message(&"a".repeat(1001)).is_err());
    }
}
