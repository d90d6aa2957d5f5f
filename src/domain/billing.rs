//! Billing arithmetic (see issue on billing export).
