//! Mimir spells flags with one dash (`-target=all`, `-config.file x`);
//! clap wants two. Rewrites the one-dash long form before parsing.

/// `-name[=value]` → `--name[=value]` for every argument with a
/// multi-character name; short flags (`-h`) and values stay as they are.
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest_verbatim = false;
    for a in args {
        if rest_verbatim {
            out.push(a);
            continue;
        }
        if a == "--" {
            rest_verbatim = true;
            out.push(a);
            continue;
        }
        let is_single_dash_long = a.starts_with('-')
            && !a.starts_with("--")
            && a.len() > 2
            && a.as_bytes()[1].is_ascii_alphabetic()
            && (a.contains('=')
                || a.contains('.')
                || a[1..]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-'))
            && !a[1..].starts_with(|c: char| c.is_ascii_digit());
        if is_single_dash_long {
            out.push(format!("-{a}"));
        } else {
            out.push(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(args: &[&str]) -> Vec<String> {
        normalize_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn rewrites_single_dash_long_flags() {
        assert_eq!(
            n(&["tidemark", "-target=all"]),
            ["tidemark", "--target=all"]
        );
        assert_eq!(
            n(&["tidemark", "-config.file", "x.yaml"]),
            ["tidemark", "--config.file", "x.yaml"]
        );
        assert_eq!(
            n(&["tidemark", "--target", "all"]),
            ["tidemark", "--target", "all"]
        );
        assert_eq!(n(&["tidemark", "-h"]), ["tidemark", "-h"]);
        assert_eq!(
            n(&["tidemark", "-querier.lookback-delta", "-5m"]),
            ["tidemark", "--querier.lookback-delta", "-5m"]
        );
        assert_eq!(
            n(&["tidemark", "--", "-target"]),
            ["tidemark", "--", "-target"]
        );
    }
}
