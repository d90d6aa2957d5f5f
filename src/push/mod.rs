//! Pushes to sites and alert receivers: Standard Webhooks signing and the outbox
//! sender. Handlers never send; they record outbox rows in their transaction.

pub mod fanout;
pub mod resolver;
pub mod sender;
pub mod signing;
