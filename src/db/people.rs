//! People who sign in through the identity provider: sign-ins in progress, the people
//! themselves (from their first sign-in on) and their sessions.

use diesel::prelude::*;

use super::schema::{people::dsl as p, sign_in_attempts::dsl as a, web_sessions::dsl as w};
use super::{DbConn, Result, audit};
use crate::domain::Millis;
use crate::domain::sign_in::{ATTEMPT_MS, PersonRole};

/// A sign-in between its start and its callback.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = super::schema::sign_in_attempts)]
pub struct Attempt {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub return_to: String,
    pub created_at: Millis,
}

/// Keeps a new sign-in, and forgets those too old to finish.
pub fn start_attempt(conn: &mut DbConn, attempt: &Attempt) -> Result<()> {
    diesel::delete(a::sign_in_attempts.filter(a::created_at.lt(attempt.created_at - ATTEMPT_MS)))
        .execute(conn)?;
    diesel::insert_into(a::sign_in_attempts)
        .values(attempt)
        .execute(conn)?;
    Ok(())
}

/// The sign-in a callback's `state` names, taken so that it cannot finish twice;
/// `None` when there is none (never started, finished already, or too old at `now`).
pub fn take_attempt(conn: &mut DbConn, state: &str, now: Millis) -> Result<Option<Attempt>> {
    conn.transaction(|c| {
        let found: Option<Attempt> = a::sign_in_attempts
            .find(state)
            .select(Attempt::as_select())
            .first(c)
            .optional()?;
        // Only the request that deletes it may use it.
        let taken = diesel::delete(a::sign_in_attempts.find(state)).execute(c)? == 1;
        Ok(found.filter(|f| taken && now - f.created_at <= ATTEMPT_MS))
    })
}

/// A person as the identity provider names them.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = super::schema::people)]
pub struct Person {
    pub id: i64,
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub first_seen_at: Millis,
    pub last_seen_at: Millis,
}

impl Person {
    /// How the audit trail names what they do: their e-mail and subject.
    pub fn actor(&self, role: &PersonRole) -> String {
        let who = format!(
            "person:{}:{}",
            self.email.as_deref().unwrap_or("-"),
            self.subject
        );
        match role {
            PersonRole::Admin => format!("admin:{who}"),
            PersonRole::Tenant(t) => format!("tenant:{t}:{who}"),
        }
    }
}

/// What an ID token said of a person at sign-in.
#[derive(Debug, Clone)]
pub struct Seen<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub email: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// A new session of a person.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    pub id_hash: &'a str,
    pub role: &'a PersonRole,
    pub csrf_token: &'a str,
    pub id_token: &'a str,
    pub now: Millis,
    pub expires_at: Millis,
}

/// Signs a person in: the person as seen now (added on their first sign-in), their new
/// session, and an audit record, in one transaction.
pub fn sign_in(conn: &mut DbConn, seen: &Seen<'_>, session: &NewSession<'_>) -> Result<Person> {
    conn.transaction(|c| {
        let now = session.now;
        let updated = diesel::update(
            p::people
                .filter(p::issuer.eq(seen.issuer))
                .filter(p::subject.eq(seen.subject)),
        )
        .set((
            p::email.eq(seen.email),
            p::name.eq(seen.name),
            p::last_seen_at.eq(now),
        ))
        .execute(c)?;
        if updated == 0 {
            diesel::insert_into(p::people)
                .values((
                    p::issuer.eq(seen.issuer),
                    p::subject.eq(seen.subject),
                    p::email.eq(seen.email),
                    p::name.eq(seen.name),
                    p::first_seen_at.eq(now),
                    p::last_seen_at.eq(now),
                ))
                .execute(c)?;
        }
        let person: Person = p::people
            .filter(p::issuer.eq(seen.issuer))
            .filter(p::subject.eq(seen.subject))
            .select(Person::as_select())
            .first(c)?;
        diesel::insert_into(w::web_sessions)
            .values((
                w::id_hash.eq(session.id_hash),
                w::person_id.eq(person.id),
                w::role.eq(session.role.name()),
                w::tenant.eq(session.role.tenant()),
                w::csrf_token.eq(session.csrf_token),
                w::id_token.eq(session.id_token),
                w::created_at.eq(now),
                w::last_seen_at.eq(now),
                w::expires_at.eq(session.expires_at),
            ))
            .execute(c)?;
        let detail = serde_json::json!({
            "role": session.role.name(),
            "tenant": session.role.tenant(),
            "first_sign_in": updated == 0,
        });
        audit::record(
            c,
            now,
            &person.actor(session.role),
            "sign_in",
            "person",
            &person.subject,
            &detail,
        )?;
        Ok(person)
    })
}

/// A session as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = super::schema::web_sessions)]
pub struct WebSession {
    pub id_hash: String,
    pub person_id: i64,
    pub role: String,
    pub tenant: Option<String>,
    pub csrf_token: String,
    pub id_token: String,
    pub created_at: Millis,
    pub last_seen_at: Millis,
    pub expires_at: Millis,
    pub ended_at: Option<Millis>,
}

/// The session a cookie's hash names, with its person.
pub fn session(conn: &mut DbConn, id_hash: &str) -> Result<Option<(WebSession, Person)>> {
    Ok(w::web_sessions
        .inner_join(p::people)
        .filter(w::id_hash.eq(id_hash))
        .select((WebSession::as_select(), Person::as_select()))
        .first(conn)
        .optional()?)
}

/// Notes that the session was used at `now`.
pub fn touch(conn: &mut DbConn, id_hash: &str, now: Millis) -> Result<()> {
    diesel::update(w::web_sessions.find(id_hash))
        .set(w::last_seen_at.eq(now))
        .execute(conn)?;
    Ok(())
}

/// Ends the session (signing out): its cookie stops working everywhere at once.
pub fn end(conn: &mut DbConn, id_hash: &str, now: Millis, actor: &str) -> Result<()> {
    conn.transaction(|c| {
        let ended = diesel::update(w::web_sessions.find(id_hash).filter(w::ended_at.is_null()))
            .set(w::ended_at.eq(now))
            .execute(c)?;
        if ended == 1 {
            let detail = serde_json::json!({});
            audit::record(c, now, actor, "sign_out", "person", actor, &detail)?;
        }
        Ok(())
    })
}
