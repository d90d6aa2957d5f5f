//! `headcount site create`: the site, a token for its agent, and the agent's
//! settings block. The keys of the block are those the Django agent reads from
//! `settings.HEADCOUNT` (agents/django, `headcount_django.conf`).

use serde_json::{Value, json};

use super::args::{Remote, SiteCreate};
use super::client::Client;

/// Where the agent answers pushes when its URLs are included under `headcount/`.
pub const WEBHOOK_PATH: &str = "/headcount/webhook/";

pub fn create(client: &Client, remote: &Remote, flags: SiteCreate) -> Result<(), String> {
    let mut b = super::client::body(&flags)?;
    b["name"] = json!(flags.name.as_deref().unwrap_or(&flags.slug));
    let site = client.post(&["v1", "sites"], &b)?;
    let mut mint = json!({"role": "site", "site": flags.slug});
    if let Some(ttl) = flags.agent.token_ttl_seconds {
        mint["ttl_seconds"] = json!(ttl);
    }
    let secret = site["webhook_secret"].as_str().unwrap_or_default();
    // The site exists now and its secret is not shown again: if the token cannot be
    // had, the secret is still printed, with what to do next.
    let token = client.post(&["v1", "tokens"], &mint).map_err(|e| {
        println!(
            "# The site {} was created; its webhook secret: {secret}",
            flags.slug
        );
        format!(
            "{e}\nthe site was created but no token was minted for it: \
             `headcount token create --role site --site {}` mints one",
            flags.slug
        )
    })?;
    let agent_url = flags.agent.agent_url.as_deref().unwrap_or(&remote.url);
    let settings = json!({
        "URL": agent_url.trim_end_matches('/'),
        "SITE": flags.slug,
        "TOKEN": token["token"],
        "WEBHOOK_SECRET": site["webhook_secret"],
        "MODE": flags.agent.mode,
    });
    if remote.json {
        println!(
            "{}",
            json!({"site": site, "token": token, "settings": settings})
        );
    } else {
        print!("{}", settings_block(&site, &settings));
    }
    Ok(())
}

/// The block to paste into the site's settings.py, with what the site must serve as
/// Python comments, so that the whole of it may be pasted.
pub fn settings_block(site: &Value, settings: &Value) -> String {
    let slug = site["slug"].as_str().unwrap_or_default();
    let mut out = format!(
        "# Site {slug} created (tenant {}, plan {}, limit {}).\n\
         # Paste into the site's settings.py; the token and the webhook secret are shown only now.\n\
         HEADCOUNT = {{\n",
        site["tenant"].as_str().unwrap_or("?"),
        site["plan"].as_str().unwrap_or("?"),
        site["effective"]["session_limit"],
    );
    for key in ["URL", "SITE", "TOKEN", "WEBHOOK_SECRET", "MODE"] {
        // A JSON string is a Python string literal too.
        out.push_str(&format!("    {}: {},\n", json!(key), settings[key]));
    }
    out.push_str("}\n");
    let include =
        "#     urlpatterns += [path(\"headcount/\", include(\"headcount_django.urls\"))]\n";
    match site["webhook_url"].as_str() {
        Some(url) => {
            out.push_str(&format!(
                "# headcount pushes limit changes and kills to the site's webhook_url\n\
                 #     {url}\n\
                 # which the agent serves (at https://<the site>{WEBHOOK_PATH}) once the site's root URL conf has\n\
                 {include}"
            ));
            if !url.ends_with(WEBHOOK_PATH) {
                out.push_str(&format!(
                    "# Note: that URL does not end in {WEBHOOK_PATH}, where the agent answers.\n"
                ));
            }
        }
        None => out.push_str(&format!(
            "# No webhook_url yet, so headcount pushes nothing to the site. Once the site's root URL conf has\n\
             {include}\
             # set it: headcount site update {slug} --webhook-url https://<the site>{WEBHOOK_PATH}\n"
        )),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_holds_the_agents_keys_and_says_where_pushes_go() {
        let site = json!({"slug": "acme-erp", "tenant": "acme", "plan": "team",
                          "effective": {"session_limit": 25},
                          "webhook_url": "https://erp.acme.example/hook"});
        let settings = json!({"URL": "http://127.0.0.1:8080", "SITE": "acme-erp",
                              "TOKEN": "ey.x\"y", "WEBHOOK_SECRET": "whsec_abc", "MODE": "local"});
        let block = settings_block(&site, &settings);
        assert!(block.contains("HEADCOUNT = {\n    \"URL\": \"http://127.0.0.1:8080\",\n"));
        assert!(block.contains("    \"TOKEN\": \"ey.x\\\"y\",\n"), "{block}");
        assert!(block.contains("    \"MODE\": \"local\",\n}\n"));
        assert!(block.contains("#     https://erp.acme.example/hook\n"));
        assert!(block.contains("does not end in /headcount/webhook/"));
        let without = json!({"slug": "b", "effective": {"session_limit": 1}});
        let block = settings_block(&without, &settings);
        assert!(block.contains("--webhook-url https://<the site>/headcount/webhook/"));
        assert!(!block.contains("does not end"));
    }
}
