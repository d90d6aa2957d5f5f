//! Whose data a caller may see, as a plain value that storage takes as an argument.

use super::Millis;

/// Which tenants' data a query may see. Queries over tenant data take this as an
/// argument, so a handler cannot forget to scope them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Provider,
    Tenant(String),
}

impl Scope {
    /// Whether this scope sees what belongs to the tenant with this slug.
    pub fn sees(&self, tenant: &str) -> bool {
        match self {
            Self::Provider => true,
            Self::Tenant(own) => own == tenant,
        }
    }
}

/// What a tenant or site row says about the tokens that name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectKey {
    pub created_at: Millis,
    /// Random per row; `None` on rows from before keys were kept.
    pub token_key: Option<String>,
}
