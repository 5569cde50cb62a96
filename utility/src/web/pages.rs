//! The status page's HTML: each page's `<main>` fragment rendered from its
//! view by an askama template (which escapes everything that came from
//! CVL, a host or a guest), and the shell around it. The fragments are
//! what server-sent events carry when a page changes.

use askama::Template;
use percent_encoding::percent_decode_str;

use super::picture::{self, Picture};
use super::view::{self, ApplianceView, DeploymentView, HostsView, Overview, Snapshot};
use cvl_planner::model::HistoryEntry;

#[derive(Template)]
#[template(path = "page.html")]
struct Shell<'a> {
    title: &'a str,
    taken_at: &'a str,
    version: u64,
    main: &'a str,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage<'a> {
    o: &'a Overview,
}

#[derive(Template)]
#[template(path = "history.html")]
struct History<'a> {
    history: &'a [HistoryEntry],
}

#[derive(Template)]
#[template(path = "deployment.html")]
struct DeploymentPage<'a> {
    d: &'a DeploymentView,
    picture: &'a str,
    history: &'a str,
}

#[derive(Template)]
#[template(path = "picture.svg")]
struct PictureSvg<'a> {
    name: &'a str,
    p: &'a Picture,
}

#[derive(Template)]
#[template(path = "appliance.html")]
struct AppliancePage<'a> {
    a: &'a ApplianceView,
    deployment_href: &'a str,
    history: &'a str,
    console: &'a Result<String, String>,
}

#[derive(Template)]
#[template(path = "hosts.html")]
struct HostsPage<'a> {
    v: &'a HostsView,
}

/// Where a page is: what `/events?page=` names too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Overview {
        page: usize,
    },
    Deployment(String),
    Appliance {
        deployment: String,
        component: String,
    },
    Hosts,
}

impl Target {
    /// A page's path and query (`/deployments/AcmeSuite`, `/?page=2`);
    /// `None` for no page of ours.
    pub fn parse(path_and_query: &str) -> Option<Target> {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let decode = |s: &str| {
            percent_decode_str(s)
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        };
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            [""] => {
                let page = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("page="))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1);
                Some(Target::Overview { page })
            }
            ["hosts"] => Some(Target::Hosts),
            ["deployments", name] => Some(Target::Deployment(decode(name)?)),
            ["deployments", name, "appliances", component] => {
                let component = decode(component)?;
                Some(Target::Appliance {
                    deployment: decode(name)?,
                    component: if component == "~" {
                        String::new()
                    } else {
                        component
                    },
                })
            }
            _ => None,
        }
    }
}

/// A page's title and `<main>` fragment; `None` when what it names is
/// not in the snapshot. `console` reads an appliance's console tail.
pub fn fragment(
    s: &Snapshot,
    target: &Target,
    console: &dyn Fn(&str, &str, &str) -> Result<String, String>,
) -> Option<(String, String)> {
    let render = |t: &dyn DynTemplate| t.html();
    match target {
        Target::Overview { page } => {
            let o = view::overview(s, Some(*page));
            Some(("Overview".to_string(), render(&OverviewPage { o: &o })))
        }
        Target::Hosts => {
            let v = view::hosts(s);
            Some(("Hosts".to_string(), render(&HostsPage { v: &v })))
        }
        Target::Deployment(name) => {
            let d = view::deployment(s, name)?;
            let p = picture::layout(&d);
            let picture = render(&PictureSvg { name, p: &p });
            let history = render(&History {
                history: &d.history,
            });
            Some((
                name.clone(),
                render(&DeploymentPage {
                    d: &d,
                    picture: &picture,
                    history: &history,
                }),
            ))
        }
        Target::Appliance {
            deployment,
            component,
        } => {
            let a = view::appliance(s, deployment, component)?;
            let history = render(&History {
                history: &a.history,
            });
            let console = console(deployment, component, &a.row.host);
            Some((
                format!("{deployment}/{}", a.row.label()),
                render(&AppliancePage {
                    a: &a,
                    deployment_href: &view::deployment_href(deployment),
                    history: &history,
                    console: &console,
                }),
            ))
        }
    }
}

/// The whole page around a fragment.
pub fn page(title: &str, taken_at: &str, version: u64, main: &str) -> String {
    Shell {
        title,
        taken_at,
        version,
        main,
    }
    .html()
}

/// The page for what is not here.
pub fn not_found(taken_at: &str, version: u64) -> String {
    page(
        "Not found",
        taken_at,
        version,
        "<h1>Not found</h1><p>Nothing here: it may have been removed. <a href=\"/\">The overview</a> lists what is deployed.</p>",
    )
}

/// Rendering a template into a string: askama's only failure is a
/// formatting error, which writing into a `String` does not produce.
trait DynTemplate {
    fn html(&self) -> String;
}

impl<T: Template> DynTemplate for T {
    fn html(&self) -> String {
        self.render()
            .unwrap_or_else(|e| format!("<p>this page could not be drawn: {e}</p>"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_from_paths() {
        assert_eq!(Target::parse("/"), Some(Target::Overview { page: 1 }));
        assert_eq!(
            Target::parse("/?page=3"),
            Some(Target::Overview { page: 3 })
        );
        assert_eq!(Target::parse("/hosts"), Some(Target::Hosts));
        assert_eq!(
            Target::parse("/deployments/Acme%20Suite"),
            Some(Target::Deployment("Acme Suite".into()))
        );
        assert_eq!(
            Target::parse("/deployments/A/appliances/van.d"),
            Some(Target::Appliance {
                deployment: "A".into(),
                component: "van.d".into()
            })
        );
        assert_eq!(
            Target::parse("/deployments/A/appliances/~"),
            Some(Target::Appliance {
                deployment: "A".into(),
                component: String::new()
            })
        );
        assert_eq!(Target::parse("/nothing"), None);
        assert_eq!(Target::parse("/deployments/%FF"), None);
    }
}
