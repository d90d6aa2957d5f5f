// The tables of both backends. Written to match `diesel print-schema` on the
// PostgreSQL migrations; SQLite declares the same columns (its INTEGER keys read
// back as BigInt), so one schema serves the `MultiConnection`.

diesel::table! {
    settings (key) {
        key -> Text,
        value -> Text,
    }
}

diesel::table! {
    plans (id) {
        id -> BigInt,
        code -> Text,
        name -> Text,
        session_limit -> BigInt,
        count_mode -> Text,
        over_limit -> Text,
        overage_percent -> BigInt,
        idle_timeout_seconds -> BigInt,
        session_ttl_seconds -> BigInt,
        limit_message -> Text,
        monthly_price_cents -> BigInt,
        overage_unit_price_cents -> BigInt,
        currency -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        reserved_slots -> BigInt,
        reserved_roles -> Text,
        per_user_limit -> Nullable<BigInt>,
        per_user_over_limit -> Text,
    }
}

diesel::table! {
    plan_prices (id) {
        id -> BigInt,
        plan_id -> BigInt,
        monthly_price_cents -> BigInt,
        overage_unit_price_cents -> BigInt,
        currency -> Text,
        effective_from -> BigInt,
    }
}

diesel::table! {
    tenants (id) {
        id -> BigInt,
        slug -> Text,
        name -> Text,
        billing_email -> Nullable<Text>,
        notify_url -> Nullable<Text>,
        notify_secret -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        token_key -> Nullable<Text>,
        notify_url_by_tenant -> Bool,
        pooled_session_limit -> Nullable<BigInt>,
    }
}

diesel::table! {
    sites (id) {
        id -> BigInt,
        slug -> Text,
        tenant_id -> BigInt,
        plan_id -> BigInt,
        name -> Text,
        webhook_url -> Nullable<Text>,
        webhook_disabled_at -> Nullable<BigInt>,
        webhook_secret -> Text,
        previous_webhook_secret -> Nullable<Text>,
        previous_secret_expires_at -> Nullable<BigInt>,
        session_limit -> Nullable<BigInt>,
        count_mode -> Nullable<Text>,
        over_limit -> Nullable<Text>,
        idle_timeout_seconds -> Nullable<BigInt>,
        session_ttl_seconds -> Nullable<BigInt>,
        limit_message -> Nullable<Text>,
        config_version -> BigInt,
        utilization_alert_armed -> Bool,
        last_limit_alert_at -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
        token_key -> Nullable<Text>,
        webhook_url_by_tenant -> Bool,
        reserved_slots -> Nullable<BigInt>,
        reserved_roles -> Nullable<Text>,
        per_user_limit -> Nullable<BigInt>,
        per_user_over_limit -> Nullable<Text>,
    }
}

diesel::table! {
    site_plan_history (id) {
        id -> BigInt,
        site_id -> BigInt,
        plan_id -> BigInt,
        session_limit -> BigInt,
        over_limit -> Text,
        effective_from -> BigInt,
    }
}

diesel::table! {
    sessions (id) {
        id -> BigInt,
        site_id -> BigInt,
        session -> Text,
        user_ref -> Nullable<Text>,
        started_at -> BigInt,
        last_activity_at -> BigInt,
        expires_at -> BigInt,
        ended_at -> Nullable<BigInt>,
        end_reason -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        ip -> Nullable<Text>,
        overage -> Bool,
    }
}

diesel::table! {
    denials (id) {
        id -> BigInt,
        site_id -> BigInt,
        at -> BigInt,
        outcome -> Text,
        event_id -> Nullable<Text>,
        session -> Nullable<Text>,
        user_ref -> Nullable<Text>,
        counted -> Nullable<BigInt>,
        session_limit -> Nullable<BigInt>,
        count_mode -> Nullable<Text>,
        counted_sessions -> Nullable<Text>,
    }
}

diesel::table! {
    revoked_tokens (jti) {
        jti -> Text,
        revoked_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    outbox (id) {
        id -> BigInt,
        webhook_id -> Text,
        site_id -> Nullable<BigInt>,
        tenant_id -> Nullable<BigInt>,
        target -> Text,
        kind -> Text,
        payload -> Text,
        status -> Text,
        attempts -> BigInt,
        next_attempt_at -> BigInt,
        locked_until -> Nullable<BigInt>,
        created_at -> BigInt,
        finished_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    delivery_attempts (id) {
        id -> BigInt,
        outbox_id -> BigInt,
        attempted_at -> BigInt,
        status_code -> Nullable<BigInt>,
        duration_ms -> BigInt,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    usage_samples (site_id, minute) {
        site_id -> BigInt,
        minute -> BigInt,
        active -> BigInt,
        live -> BigInt,
        dangling -> BigInt,
        denied -> BigInt,
        session_limit -> BigInt,
    }
}

diesel::table! {
    usage_rollups (site_id, bucket_ms, at) {
        site_id -> BigInt,
        bucket_ms -> BigInt,
        at -> BigInt,
        max_active -> BigInt,
        max_live -> BigInt,
        max_dangling -> BigInt,
        denied -> BigInt,
        session_limit -> BigInt,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        at -> BigInt,
        actor -> Text,
        action -> Text,
        entity -> Text,
        entity_key -> Text,
        detail -> Text,
    }
}

diesel::table! {
    idempotency_keys (scope, idem_key) {
        scope -> Text,
        idem_key -> Text,
        fingerprint -> Text,
        status_code -> Nullable<BigInt>,
        content_type -> Nullable<Text>,
        body -> Nullable<Binary>,
        created_at -> BigInt,
    }
}

diesel::table! {
    site_counts (site_id) {
        site_id -> BigInt,
        as_of -> BigInt,
        idle_ms -> BigInt,
        active -> BigInt,
        dangling -> BigInt,
    }
}

diesel::joinable!(sites -> tenants (tenant_id));
diesel::joinable!(sites -> plans (plan_id));
diesel::joinable!(sessions -> sites (site_id));
diesel::joinable!(outbox -> sites (site_id));
diesel::joinable!(delivery_attempts -> outbox (outbox_id));

diesel::allow_tables_to_appear_in_same_query!(
    settings,
    plans,
    plan_prices,
    tenants,
    sites,
    site_plan_history,
    sessions,
    site_counts,
    denials,
    revoked_tokens,
    outbox,
    delivery_attempts,
    usage_samples,
    usage_rollups,
    audit_log,
);
