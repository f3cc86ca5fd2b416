//! A flow file's `verify:` (incoming) or `sign:` (outgoing webhooks) compiled: the scheme, with
//! its secrets named (never written in the file) and its options checked.

use super::{Algorithm, DEFAULT_TOLERANCE, Encoding, Generic, Scheme, Verifier, VerifySpec, preset_names};
use crate::compiler::Compiler;

/// A signature scheme with its secrets (incoming `verify`, outgoing `sign`).
pub fn compile(cx: &mut Compiler<'_>, at: &str, v: &VerifySpec) -> Option<Verifier> {
    if v.secret.is_some() {
        cx.problem(
            format!("{at}.secret"),
            "secrets never go in flow files: put the secret in an environment variable and name it with `secret_env`",
        );
    }
    let secret_env = v.secret_env.as_ref().map(|s| s.to_vec()).unwrap_or_default();
    let secret_file: Vec<std::path::PathBuf> = v
        .secret_file
        .as_ref()
        .map(|s| s.to_vec())
        .unwrap_or_default()
        .into_iter()
        .map(std::path::PathBuf::from)
        .collect();
    // A secret written into the file is told where it goes, above; not twice.
    if secret_env.is_empty() && secret_file.is_empty() && v.secret.is_none() {
        cx.problem(
            at,
            "`secret_env` names the environment variable(s) holding the secret (or `secret_file` the file)",
        );
    }
    for path in &secret_file {
        if !path.is_absolute() {
            cx.problem(
                format!("{at}.secret_file"),
                format!(
                    "`{}` is not an absolute path: give the file's whole path (a systemd credential is named with `secret_env`)",
                    path.display()
                ),
            );
        }
    }
    for name in &secret_env {
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            cx.problem(
                format!("{at}.secret_env"),
                format!("`{name}` is not an environment variable name (the secret itself never goes here)"),
            );
        }
    }
    let generic_keys = [
        v.header.is_some(),
        v.algorithm.is_some(),
        v.encoding.is_some(),
        v.prefix.is_some(),
        v.timestamp_header.is_some(),
        v.signed.is_some(),
    ];
    let scheme = if v.preset == "hmac" {
        let Some(header) = v.header.clone() else {
            cx.problem(format!("{at}.header"), "the hmac preset needs `header`");
            return None;
        };
        let signed = v.signed.clone().unwrap_or_else(|| "{body}".into());
        if !signed.contains("{body}") {
            cx.problem(format!("{at}.signed"), "the signed content must include `{body}`");
        }
        if signed.contains("{timestamp}") && v.timestamp_header.is_none() {
            cx.problem(format!("{at}.signed"), "`{timestamp}` needs `timestamp_header`");
        }
        Scheme::Hmac(Generic {
            header,
            algorithm: v.algorithm.unwrap_or(Algorithm::Sha256),
            encoding: v.encoding.unwrap_or(Encoding::Hex),
            prefix: v.prefix.clone().unwrap_or_default(),
            timestamp_header: v.timestamp_header.clone(),
            signed,
        })
    } else {
        match Scheme::preset(&v.preset) {
            Some(s) => {
                if generic_keys.iter().any(|k| *k) {
                    cx.problem(
                        at,
                        format!("`{}` fixes its header and encoding; header/algorithm/encoding/prefix/timestamp_header/signed are for `preset: hmac`", v.preset),
                    );
                }
                s
            }
            None => {
                let presets = preset_names();
                let near = crate::suggest::nearest(&v.preset, presets.iter().copied())
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                cx.problem(
                    format!("{at}.preset"),
                    format!("unknown preset `{}`{near}: {}", v.preset, presets.join(", ")),
                );
                return None;
            }
        }
    };
    Some(Verifier {
        scheme,
        secret_env,
        secret_file,
        tolerance: v.tolerance.unwrap_or(DEFAULT_TOLERANCE),
    })
}
