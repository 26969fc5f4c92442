//! The way to DingTalk through an HTTP(S) proxy: `delivery.proxy` (and
//! `delivery.no_proxy`) from the config, else the environment's
//! `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (lower case too),
//! as curl reads them. reqwest reads the environment itself when the config
//! names no proxy; it applies `NO_PROXY` only: a loopback or private
//! address goes through the proxy unless `NO_PROXY` lists it.
//!
//! A proxy URL may carry credentials (`http://user:password@proxy:3128`):
//! it is shown and logged only as [`ProxyPlan::describe`] masks it.

use serde_json::{Value, json};

use crate::secret::Secret;

/// The environment variables a proxy is read from, as curl reads them: the
/// first set of each pair wins.
const ENV_PROXIES: [(&str, &str, Scheme); 3] = [
    ("HTTPS_PROXY", "https_proxy", Scheme::Https),
    ("HTTP_PROXY", "http_proxy", Scheme::Http),
    ("ALL_PROXY", "all_proxy", Scheme::All),
];

#[derive(Debug, Clone, Copy)]
enum Scheme {
    Http,
    Https,
    All,
}

/// How the robots' requests leave: what the config says of proxies.
#[derive(Debug, Clone, Default)]
pub struct ProxyPlan {
    /// `delivery.proxy`: every request goes through it (except `no_proxy`).
    pub proxy: Option<Secret>,
    /// `delivery.no_proxy`: hosts, domains and networks reached directly,
    /// comma-separated as in `NO_PROXY`; `NO_PROXY` itself when unset.
    pub no_proxy: Option<String>,
}

impl ProxyPlan {
    /// The problem with `delivery.proxy`, if any: a URL with a host, and a
    /// scheme this build speaks (http or https; not socks).
    pub fn problem(&self) -> Option<String> {
        let proxy = self.proxy.as_ref()?;
        match url::Url::parse(proxy.expose()) {
            Err(err) => Some(format!(
                "is not a valid URL ({err}); write http://[user:password@]host:port"
            )),
            Ok(url) if !matches!(url.scheme(), "http" | "https") => Some(format!(
                "has the scheme `{}:`; only http and https proxies are supported",
                url.scheme()
            )),
            Ok(url) if url.host_str().is_none_or(str::is_empty) => {
                Some("has no host; write http://[user:password@]host:port".to_owned())
            }
            Ok(_) => None,
        }
    }

    /// `builder` with these proxies.
    pub fn apply(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, reqwest::Error> {
        if let Some(proxy) = &self.proxy {
            let no_proxy = match &self.no_proxy {
                Some(list) => reqwest::NoProxy::from_string(list),
                None => reqwest::NoProxy::from_env(),
            };
            return Ok(builder.proxy(reqwest::Proxy::all(proxy.expose())?.no_proxy(no_proxy)));
        }
        let Some(list) = &self.no_proxy else {
            // reqwest reads HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY.
            return Ok(builder);
        };
        // The environment's proxies, with the config's exceptions.
        let mut builder = builder.no_proxy();
        for (name, scheme) in env_proxies() {
            let Some(value) = env(name) else { continue };
            let proxy = match scheme {
                Scheme::Http => reqwest::Proxy::http(value.as_str()),
                Scheme::Https => reqwest::Proxy::https(value.as_str()),
                Scheme::All => reqwest::Proxy::all(value.as_str()),
            }?;
            builder = builder.proxy(proxy.no_proxy(reqwest::NoProxy::from_string(list)));
        }
        Ok(builder)
    }

    /// The proxies in use, masked, for `/status` and the start-up log:
    /// `{"url": "http://***:***@proxy:3128", "from": "delivery.proxy",
    /// "no_proxy": "..."}` for each, or an empty list.
    pub fn describe(&self) -> Value {
        let no_proxy = self
            .no_proxy
            .clone()
            .or_else(|| env("NO_PROXY").or_else(|| env("no_proxy")));
        let proxies: Vec<Value> = match &self.proxy {
            Some(proxy) => vec![json!({
                "url": mask(proxy.expose()),
                "from": "delivery.proxy",
                "no_proxy": no_proxy,
            })],
            None => env_proxies()
                .filter_map(|(name, _)| {
                    env(name).map(
                        |value| json!({"url": mask(&value), "from": name, "no_proxy": no_proxy}),
                    )
                })
                .collect(),
        };
        Value::Array(proxies)
    }
}

/// The environment's proxy variables that are set: the upper-case name
/// wins over the lower-case one.
fn env_proxies() -> impl Iterator<Item = (&'static str, Scheme)> {
    ENV_PROXIES
        .into_iter()
        .filter_map(|(upper, lower, scheme)| {
            if env(upper).is_some() {
                Some((upper, scheme))
            } else if env(lower).is_some() {
                Some((lower, scheme))
            } else {
                None
            }
        })
}

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// A proxy URL with its user and password as `***`: safe to show.
pub fn mask(proxy: &str) -> String {
    match url::Url::parse(proxy) {
        Ok(mut url) if url.has_host() => {
            if !url.username().is_empty() {
                let _ = url.set_username("***");
            }
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        // Not a URL (`proxy:3128` is one to reqwest): whatever comes before
        // an `@` may be credentials.
        _ => match proxy.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => proxy.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked() {
        assert_eq!(
            mask("http://alice:s3cret@proxy.corp:3128"),
            "http://***:***@proxy.corp:3128/"
        );
        assert_eq!(mask("http://proxy.corp:3128"), "http://proxy.corp:3128/");
        assert_eq!(mask("alice:s3cret@proxy.corp:3128"), "***@proxy.corp:3128");
        let plan = ProxyPlan {
            proxy: Some(Secret::new("http://alice:s3cret@proxy.corp:3128")),
            no_proxy: Some("127.0.0.1".into()),
        };
        let shown = plan.describe().to_string();
        assert!(
            !shown.contains("s3cret") && !shown.contains("alice"),
            "{shown}"
        );
        assert!(shown.contains("proxy.corp:3128"), "{shown}");
    }

    #[test]
    fn a_proxy_that_cannot_work_is_a_problem() {
        let problem = |url: &str| {
            ProxyPlan {
                proxy: Some(Secret::new(url)),
                no_proxy: None,
            }
            .problem()
        };
        assert_eq!(problem("http://proxy:3128"), None);
        assert!(problem("socks5://proxy:1080").is_some_and(|p| p.contains("socks5")));
        assert!(problem("proxy 3128").is_some());
        assert!(problem("http://alice:s3cret@").is_none_or(|p| !p.contains("s3cret")));
    }
}
