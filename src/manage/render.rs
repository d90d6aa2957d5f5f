//! What people read: one object as `key: value` lines, a list as a table. Both are
//! built from the API's JSON alone, so a field the API gains shows without a change
//! here (in `show`; the tables pick their columns).

use serde_json::Value;

/// One value in a cell or after `key: `: text as is, lists joined by commas,
/// nothing as `-`.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "[]".to_owned(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// `key: value` lines; nested objects as `outer.inner: value`. The keys in `first`
/// come first, in that order, then the others by name (the order JSON objects have
/// here).
pub fn lines(v: &Value, first: &[&str]) -> String {
    let mut out = String::new();
    let Value::Object(map) = v else {
        push_lines(&mut out, "", v);
        return out;
    };
    for k in first {
        if let Some(v) = map.get(*k) {
            push_lines(&mut out, k, v);
        }
    }
    for (k, v) in map.iter().filter(|(k, _)| !first.contains(&k.as_str())) {
        push_lines(&mut out, k, v);
    }
    out
}

fn push_lines(out: &mut String, prefix: &str, v: &Value) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                push_lines(out, &key, v);
            }
        }
        other => {
            out.push_str(prefix);
            out.push_str(": ");
            out.push_str(&cell(other));
            out.push('\n');
        }
    }
}

/// A table with a header row; each column is `(heading, path into the item)`, where
/// a path like `effective.session_limit` reaches into nested objects.
pub fn table(items: &[Value], columns: &[(&str, &str)]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|(_, path)| cell(at(item, path)))
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = columns.iter().map(|(h, _)| h.chars().count()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let heading: Vec<String> = columns.iter().map(|(h, _)| (*h).to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(&heading).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn at<'a>(item: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(item, |v, k| &v[k])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_object_reads_as_key_value_lines() {
        let v = json!({"code": "team", "session_limit": 25, "reserved_roles": ["admin", "staff"],
                       "per_user_limit": null, "effective": {"session_limit": 30}});
        assert_eq!(
            lines(&v, &["code", "session_limit"]),
            "code: team\nsession_limit: 25\neffective.session_limit: 30\n\
             per_user_limit: -\nreserved_roles: admin,staff\n"
        );
    }

    #[test]
    fn a_table_lines_up_its_columns() {
        let items = vec![
            json!({"slug": "acme-erp", "effective": {"session_limit": 25}}),
            json!({"slug": "b", "effective": {"session_limit": null}}),
        ];
        let t = table(
            &items,
            &[("SLUG", "slug"), ("LIMIT", "effective.session_limit")],
        );
        assert_eq!(t, "SLUG      LIMIT\nacme-erp  25\nb         -\n");
    }
}
