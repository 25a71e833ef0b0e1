//! Every bounded setting, fed the values an operator might mistype: the config either refuses
//! it in one line naming the variable and its range, or takes a value inside that range.

use super::tests::BASE;
use super::{Bounds, Config, ConfigError, Setting};

/// Every part of the service that reads settings turned on, so every setting is read.
pub(super) const EVERY_FEATURE: [(&str, &str); 8] = [
    ("WEBHOOK_SOURCES", "github:github"),
    ("WEBHOOK_SOURCE_GITHUB_SECRETS", "gh-secret"),
    ("WEBHOOK_SOURCE_GITHUB_REDELIVER_HOOK", "orgs/team/hooks/1"),
    ("WEBHOOK_SOURCE_GITHUB_REDELIVER_TOKEN", "ghp-token"),
    ("DEPLOY_REPOSITORY", "team/avatar-bot"),
    ("FAL_API_KEY", "fal-key"),
    ("TELEGRAM_TOKEN", "1:telegram"),
    ("ENVIRONMENT", "staging"),
];

fn read(extra: &[(&str, &str)]) -> (Result<Config, ConfigError>, Vec<Setting>) {
    let mut vars: Vec<(&str, &str)> = BASE.iter().chain(&EVERY_FEATURE).copied().collect();
    vars.extend_from_slice(extra);
    // The last value of a name wins, as a later line of an env file does.
    Config::with_settings(|name| {
        vars.iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    })
}

fn settings() -> Vec<Setting> {
    let (config, settings) = read(&[]);
    config.expect("every feature on, defaults otherwise");
    settings
}

/// The values tried on every number: the extremes and garbage, and each side of its range.
fn candidates(min: &str, max: &str) -> Vec<String> {
    let mut values: Vec<String> = [
        "0",
        "1",
        "-1",
        "18446744073709551615",
        "99999999999999999999999",
        "213503982334602",
        "garbage",
        "1.5",
        "NaN",
        "inf",
        " 7 ",
    ]
    .map(String::from)
    .to_vec();
    values.extend([min.to_string(), max.to_string()]);
    if let Ok(min) = min.parse::<u64>() {
        values.extend(min.checked_sub(1).map(|v| v.to_string()));
    }
    if let Ok(max) = max.parse::<u64>() {
        values.extend(max.checked_add(1).map(|v| v.to_string()));
    }
    values
}

#[test]
fn every_number_and_url_the_service_reads_is_bounded() {
    let names: Vec<&str> = settings().iter().map(|s| s.name).collect();
    // Every variable named in config/ that reads as a number or a URL goes through a bounded
    // reader: a new one read with a bare parse fails this test.
    let sources = [
        include_str!("mod.rs"),
        include_str!("console.rs"),
        include_str!("database.rs"),
        include_str!("deploy.rs"),
        include_str!("files.rs"),
        include_str!("followups.rs"),
        include_str!("github.rs"),
        include_str!("log.rs"),
        include_str!("redis.rs"),
        include_str!("reconcile.rs"),
        include_str!("retention.rs"),
        include_str!("spool.rs"),
    ];
    let numeric = [
        "_SECS",
        "_MS",
        "_DAYS",
        "_BYTES",
        "_SIZE",
        "_MAX",
        "_LOOPS",
        "_BATCH",
        "_WORKERS",
        "_ATTEMPTS",
        "_MAXLEN",
        "_PER_SEC",
        "_PER_SECOND",
        "_PER_RUN",
        "_FOUND",
        "_URL",
        "PORT",
    ];
    let mut missing = Vec::new();
    for source in sources {
        for quoted in source.split('"').skip(1).step_by(2) {
            let is_name = !quoted.is_empty()
                && quoted
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit());
            // DATABASE_URL and REDIS_URL are secrets with parsers of their own.
            let own_parser = matches!(quoted, "DATABASE_URL" | "REDIS_URL");
            if is_name
                && !own_parser
                && numeric.iter().any(|n| quoted.ends_with(n))
                && !names.contains(&quoted)
                && !missing.contains(&quoted)
            {
                missing.push(quoted);
            }
        }
    }
    assert!(missing.is_empty(), "read without bounds: {missing:?}");
    assert!(
        names.len() >= 60,
        "only {} settings read: {names:?}",
        names.len()
    );
}

#[test]
fn a_number_outside_its_range_is_refused_in_one_line_naming_it() {
    for setting in settings() {
        let Bounds::Number { min, max } = &setting.bounds else {
            continue;
        };
        let name = setting.name;
        let (lo, hi): (f64, f64) = (min.parse().unwrap(), max.parse().unwrap());
        for value in candidates(min, max) {
            match read(&[(name, &value)]).0 {
                Ok(_) => {
                    let taken: f64 = value.trim().parse().unwrap_or(f64::NAN);
                    assert!(
                        (lo..=hi).contains(&taken),
                        "{name}={value:?} was taken, outside {min} to {max}"
                    );
                }
                Err(err) => {
                    let line = err.to_string();
                    assert_eq!(err.var, name, "{name}={value:?}: {line}");
                    assert!(!line.contains('\n'), "{name}={value:?}: {line}");
                    assert!(
                        line.contains(&format!("{min} to {max}")),
                        "{name}={value:?} does not name the range: {line}"
                    );
                }
            }
        }
        for bound in [min, max] {
            let taken = read(&[(name, bound)]).0;
            assert!(taken.is_ok(), "{name}={bound} refused: {:?}", taken.err());
        }
    }
}

#[test]
fn a_url_is_parsed_with_its_schemes() {
    for setting in settings() {
        let Bounds::Url { schemes } = setting.bounds else {
            continue;
        };
        let name = setting.name;
        for value in [
            "not a url",
            "ftp://example.com/",
            "https://",
            "http//x",
            "gopher://x",
        ] {
            let err = read(&[(name, value)]).0.expect_err(value);
            assert_eq!(err.var, name, "{name}={value:?}");
            assert!(!err.to_string().contains('\n'));
        }
        let good = format!("{}://127.0.0.1:9/", schemes[0]);
        assert!(read(&[(name, &good)]).0.is_ok(), "{name}={good}");
    }
}

#[test]
fn the_key_set_may_be_a_file_for_offline_runs() {
    let config = read(&[("FAL_JWKS_URL", "file:///etc/webhook/jwks.json")]).0;
    assert_eq!(
        config.unwrap().verify.fal_jwks_url,
        "file:///etc/webhook/jwks.json"
    );
}

/// The variable names a configuration source reads: every quoted upper-case name outside
/// its tests.
fn names_read(source: &str) -> Vec<&str> {
    let code = source.split("#[cfg(test)]").next().unwrap_or_default();
    code.split('"')
        .skip(1)
        .step_by(2)
        .filter(|quoted| {
            quoted.len() > 2
                && quoted.starts_with(|c: char| c.is_ascii_uppercase())
                && quoted
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
        })
        .collect()
}

/// The names `prod.env.example` sets or shows commented out, and those `configuration.md`'s
/// table rows name: whole names, so `HOST` is not found inside `HOSTNAME`.
fn documented(example: &str, page: &str) -> (Vec<String>, Vec<String>) {
    let in_example = example
        .lines()
        .map(|line| line.trim_start_matches('#').trim_start())
        .filter_map(|line| line.split_once('=').map(|(name, _)| name.to_string()))
        .collect();
    let in_page = page
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(name, _)| name.to_string()))
        .collect();
    (in_example, in_page)
}

fn undocumented(sources: &[String], example: &str, page: &str) -> Vec<String> {
    let (in_example, in_page) = documented(example, page);
    let mut missing: Vec<String> = Vec::new();
    for source in sources {
        for name in names_read(source) {
            let known = in_example.iter().any(|n| n == name) && in_page.iter().any(|n| n == name);
            if !known && !missing.iter().any(|m| m == name) {
                missing.push(name.to_string());
            }
        }
    }
    missing
}

/// Every file of `config/` (read from the tree, so a new one is never left out).
fn config_sources() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .filter(|path| !path.to_string_lossy().ends_with("_tests.rs"))
        .collect();
    paths.sort();
    assert!(paths.len() > 10, "{paths:?}");
    paths
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect()
}

#[test]
fn every_variable_named_in_config_is_documented_in_prod_env_example_and_docs() {
    let example = include_str!("../../../../prod.env.example");
    let page = include_str!("../../../../docs/configuration.md");
    let missing = undocumented(&config_sources(), example, page);
    assert!(
        missing.is_empty(),
        "read but not documented in prod.env.example and docs/configuration.md: {missing:?}"
    );
}

#[test]
fn the_documentation_check_finds_a_planted_variable_and_matches_whole_names() {
    let example = "# The host.\n#HOSTNAME=x\nPORT=8000\n";
    let page = "| `HOSTNAME` | x | y |\n| `PORT` | `8000` | |\n";
    let planted = r#"fn read() { env.parsed("HOST", 1); env.number("PORT", 8000); }"#.to_string();
    assert_eq!(undocumented(&[planted], example, page), vec!["HOST"]);
    let mut sources = config_sources();
    sources.push(r#"let x = env.number("WEBHOOK_PLANTED_UNDOCUMENTED", 1, 0..=2)?;"#.into());
    let missing = undocumented(
        &sources,
        include_str!("../../../../prod.env.example"),
        include_str!("../../../../docs/configuration.md"),
    );
    assert_eq!(missing, vec!["WEBHOOK_PLANTED_UNDOCUMENTED"]);
}
