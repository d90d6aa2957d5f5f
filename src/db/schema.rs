// @generated automatically by Diesel CLI.

diesel::table! {
    audit_log (id) {
        id -> Int8,
        at -> Int8,
        actor -> Text,
        action -> Text,
        entity -> Text,
        entity_key -> Text,
        detail -> Text,
    }
}

diesel::table! {
    delivery_attempts (site_id, id) {
        id -> Int8,
        outbox_id -> Int8,
        attempted_at -> Int8,
        status_code -> Nullable<Int8>,
        duration_ms -> Int8,
        error -> Nullable<Text>,
        site_id -> Int8,
    }
}

diesel::table! {
    denials (site_id, id) {
        id -> Int8,
        site_id -> Int8,
        at -> Int8,
        outcome -> Text,
        event_id -> Nullable<Text>,
        session -> Nullable<Text>,
        user_ref -> Nullable<Text>,
        counted -> Nullable<Int8>,
        session_limit -> Nullable<Int8>,
        count_mode -> Nullable<Text>,
        counted_sessions -> Nullable<Text>,
    }
}

diesel::table! {
    idempotency_keys (scope, idem_key) {
        scope -> Text,
        idem_key -> Text,
        fingerprint -> Text,
        status_code -> Nullable<Int8>,
        content_type -> Nullable<Text>,
        body -> Nullable<Bytea>,
        created_at -> Int8,
    }
}

diesel::table! {
    outbox (site_id, id) {
        id -> Int8,
        webhook_id -> Text,
        site_id -> Int8,
        tenant_id -> Nullable<Int8>,
        target -> Text,
        kind -> Text,
        payload -> Text,
        status -> Text,
        attempts -> Int8,
        next_attempt_at -> Int8,
        locked_until -> Nullable<Int8>,
        created_at -> Int8,
        finished_at -> Nullable<Int8>,
    }
}

diesel::table! {
    people (id) {
        id -> Int8,
        issuer -> Text,
        subject -> Text,
        email -> Nullable<Text>,
        name -> Nullable<Text>,
        first_seen_at -> Int8,
        last_seen_at -> Int8,
    }
}

diesel::table! {
    plan_prices (id) {
        id -> Int8,
        plan_id -> Int8,
        monthly_price_cents -> Int8,
        overage_unit_price_cents -> Int8,
        currency -> Text,
        effective_from -> Int8,
    }
}

diesel::table! {
    plan_scheduled_changes (id) {
        id -> Int8,
        plan_id -> Int8,
        at -> Int8,
        body -> Text,
        status -> Text,
        actor -> Text,
        created_at -> Int8,
        finished_at -> Nullable<Int8>,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    plans (id) {
        id -> Int8,
        code -> Text,
        name -> Text,
        session_limit -> Int8,
        count_mode -> Text,
        over_limit -> Text,
        overage_percent -> Int8,
        idle_timeout_seconds -> Int8,
        session_ttl_seconds -> Int8,
        limit_message -> Text,
        monthly_price_cents -> Int8,
        overage_unit_price_cents -> Int8,
        currency -> Text,
        created_at -> Int8,
        updated_at -> Int8,
        reserved_slots -> Int8,
        reserved_roles -> Text,
        per_user_limit -> Nullable<Int8>,
        per_user_over_limit -> Text,
        exempt_roles -> Text,
    }
}

diesel::table! {
    revoked_tokens (jti) {
        jti -> Text,
        revoked_at -> Int8,
        expires_at -> Int8,
    }
}

diesel::table! {
    sampler_coverage (start_minute) {
        start_minute -> Int8,
        end_minute -> Int8,
    }
}

diesel::table! {
    sampler_passes (minute) {
        minute -> Int8,
        holder -> Text,
        claimed_at -> Int8,
        done -> Bool,
    }
}

diesel::table! {
    scheduled_changes (site_id, id) {
        id -> Int8,
        site_id -> Int8,
        at -> Int8,
        body -> Text,
        status -> Text,
        by_provider -> Bool,
        actor -> Text,
        created_at -> Int8,
        finished_at -> Nullable<Int8>,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    sessions (site_id, id) {
        id -> Int8,
        site_id -> Int8,
        session -> Text,
        user_ref -> Nullable<Text>,
        started_at -> Int8,
        last_activity_at -> Int8,
        expires_at -> Int8,
        ended_at -> Nullable<Int8>,
        end_reason -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        ip -> Nullable<Text>,
        overage -> Bool,
        exempt -> Bool,
    }
}

diesel::table! {
    settings (key) {
        key -> Text,
        value -> Text,
    }
}

diesel::table! {
    sign_in_attempts (state) {
        state -> Text,
        nonce -> Text,
        pkce_verifier -> Text,
        return_to -> Text,
        created_at -> Int8,
    }
}

diesel::table! {
    site_boosts (site_id, id) {
        id -> Int8,
        site_id -> Int8,
        session_limit -> Int8,
        starts_at -> Int8,
        ends_at -> Int8,
        note -> Nullable<Text>,
        status -> Text,
        actor -> Text,
        created_at -> Int8,
        cancelled_at -> Nullable<Int8>,
    }
}

diesel::table! {
    site_counts (site_id) {
        site_id -> Int8,
        as_of -> Int8,
        idle_ms -> Int8,
        active -> Int8,
        dangling -> Int8,
    }
}

diesel::table! {
    site_plan_history (site_id, id) {
        id -> Int8,
        site_id -> Int8,
        plan_id -> Int8,
        session_limit -> Int8,
        over_limit -> Text,
        effective_from -> Int8,
    }
}

diesel::table! {
    site_slugs (slug) {
        slug -> Text,
        site_id -> Int8,
    }
}

diesel::table! {
    sites (id) {
        id -> Int8,
        slug -> Text,
        tenant_id -> Int8,
        plan_id -> Int8,
        name -> Text,
        webhook_url -> Nullable<Text>,
        webhook_disabled_at -> Nullable<Int8>,
        webhook_secret -> Text,
        previous_webhook_secret -> Nullable<Text>,
        previous_secret_expires_at -> Nullable<Int8>,
        session_limit -> Nullable<Int8>,
        count_mode -> Nullable<Text>,
        over_limit -> Nullable<Text>,
        idle_timeout_seconds -> Nullable<Int8>,
        session_ttl_seconds -> Nullable<Int8>,
        limit_message -> Nullable<Text>,
        config_version -> Int8,
        utilization_alert_armed -> Bool,
        last_limit_alert_at -> Nullable<Int8>,
        created_at -> Int8,
        updated_at -> Int8,
        token_key -> Nullable<Text>,
        webhook_url_by_tenant -> Bool,
        reserved_slots -> Nullable<Int8>,
        reserved_roles -> Nullable<Text>,
        per_user_limit -> Nullable<Int8>,
        per_user_over_limit -> Nullable<Text>,
        provider_session_limit -> Nullable<Int8>,
        exempt_roles -> Nullable<Text>,
    }
}

diesel::table! {
    tenants (id) {
        id -> Int8,
        slug -> Text,
        name -> Text,
        billing_email -> Nullable<Text>,
        notify_url -> Nullable<Text>,
        notify_secret -> Text,
        created_at -> Int8,
        updated_at -> Int8,
        token_key -> Nullable<Text>,
        notify_url_by_tenant -> Bool,
        pooled_session_limit -> Nullable<Int8>,
    }
}

diesel::table! {
    usage_current (site_id) {
        site_id -> Int8,
        minute -> Int8,
        active -> Int8,
        live -> Int8,
        dangling -> Int8,
        session_limit -> Int8,
    }
}

diesel::table! {
    usage_rollups (site_id, bucket_ms, at) {
        site_id -> Int8,
        bucket_ms -> Int8,
        at -> Int8,
        max_active -> Int8,
        max_live -> Int8,
        max_dangling -> Int8,
        denied -> Int8,
        session_limit -> Int8,
    }
}

diesel::table! {
    usage_samples (site_id, minute) {
        site_id -> Int8,
        minute -> Int8,
        active -> Int8,
        live -> Int8,
        dangling -> Int8,
        denied -> Int8,
        session_limit -> Int8,
    }
}

diesel::table! {
    web_sessions (id_hash) {
        id_hash -> Text,
        person_id -> Int8,
        role -> Text,
        tenant -> Nullable<Text>,
        csrf_token -> Text,
        id_token -> Text,
        created_at -> Int8,
        last_seen_at -> Int8,
        expires_at -> Int8,
        ended_at -> Nullable<Int8>,
    }
}

diesel::joinable!(denials -> sites (site_id));
diesel::joinable!(outbox -> sites (site_id));
diesel::joinable!(outbox -> tenants (tenant_id));
diesel::joinable!(plan_prices -> plans (plan_id));
diesel::joinable!(plan_scheduled_changes -> plans (plan_id));
diesel::joinable!(scheduled_changes -> sites (site_id));
diesel::joinable!(sessions -> sites (site_id));
diesel::joinable!(site_boosts -> sites (site_id));
diesel::joinable!(site_counts -> sites (site_id));
diesel::joinable!(site_plan_history -> plans (plan_id));
diesel::joinable!(site_plan_history -> sites (site_id));
diesel::joinable!(sites -> plans (plan_id));
diesel::joinable!(sites -> tenants (tenant_id));
diesel::joinable!(usage_current -> sites (site_id));
diesel::joinable!(usage_rollups -> sites (site_id));
diesel::joinable!(usage_samples -> sites (site_id));
diesel::joinable!(web_sessions -> people (person_id));

diesel::allow_tables_to_appear_in_same_query!(
    audit_log,
    delivery_attempts,
    denials,
    idempotency_keys,
    outbox,
    people,
    plan_prices,
    plan_scheduled_changes,
    plans,
    revoked_tokens,
    sampler_coverage,
    sampler_passes,
    scheduled_changes,
    sessions,
    settings,
    sign_in_attempts,
    site_boosts,
    site_counts,
    site_plan_history,
    site_slugs,
    sites,
    tenants,
    usage_current,
    usage_rollups,
    usage_samples,
    web_sessions,
);
