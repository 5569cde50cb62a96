//! A deployment drawn as a picture: the layout of its SVG, computed here as
//! plain numbers (rendered by the `picture.svg` template, which escapes
//! every name). Hosts are columns, VANs are bands across them: a VAN's
//! members on one host sit in one cell, and a VAN with cells on several
//! hosts has a VXLAN link drawn between them. Arrows go from a provider to
//! what requires it (the start order), and an interface exported with a
//! public address is drawn up to the public network at the top.

use std::collections::BTreeMap;

use super::view::{appliance_href, DeploymentView};

const BOX_W: i64 = 156;
const BOX_H: i64 = 46;
const GAP: i64 = 14;
/// Boxes side by side in one cell before the next row.
const PER_ROW: usize = 4;
const LEFT: i64 = 12;
const LANE_HEAD: i64 = 28;
const BAND_HEAD: i64 = 22;
const PUBLIC_H: i64 = 34;
/// Room below each row of boxes for the arcs between them.
const ARC: i64 = 30;

#[derive(Debug, Clone)]
pub struct Picture {
    pub width: i64,
    pub height: i64,
    /// The public network's bar, when something is exported.
    pub public: Option<Rect>,
    pub lanes: Vec<Lane>,
    pub bands: Vec<Band>,
    pub links: Vec<Link>,
    pub arrows: Vec<Arrow>,
    pub exports: Vec<Export>,
}

#[derive(Debug, Clone, Copy)]
pub struct Rect {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
}

/// A host's column.
#[derive(Debug, Clone)]
pub struct Lane {
    pub host: String,
    pub rect: Rect,
}

/// A VAN's band, with its cells (one per host it has members on).
#[derive(Debug, Clone)]
pub struct Band {
    pub van: String,
    pub label: String,
    pub rect: Rect,
    pub cells: Vec<Cell>,
}

#[derive(Debug, Clone)]
pub struct Cell {
    pub host: String,
    pub rect: Rect,
    pub boxes: Vec<ApplianceBox>,
}

#[derive(Debug, Clone)]
pub struct ApplianceBox {
    pub component: String,
    pub href: String,
    /// First line: the component and its appliance.
    pub title: String,
    /// Second line: version and state.
    pub detail: String,
    /// The state's CSS class.
    pub class: &'static str,
    pub rect: Rect,
}

/// A VXLAN link between a VAN's cells on two hosts.
#[derive(Debug, Clone)]
pub struct Link {
    pub x1: i64,
    pub x2: i64,
    pub y: i64,
    pub label: String,
}

/// A provider-to-requirer arrow: a quadratic curve from (x1, y1) to
/// (x2, y2) through the control point (cx, cy); between boxes of one row
/// it arcs below them rather than through the boxes between.
#[derive(Debug, Clone)]
pub struct Arrow {
    pub x1: i64,
    pub y1: i64,
    pub cx: i64,
    pub cy: i64,
    pub x2: i64,
    pub y2: i64,
    pub label: String,
}

impl Arrow {
    /// The curve's midpoint, where its label goes.
    pub fn label_x(&self) -> i64 {
        (self.x1 + 2 * self.cx + self.x2) / 4
    }
    pub fn label_y(&self) -> i64 {
        (self.y1 + 2 * self.cy + self.y2) / 4 - 3
    }
}

/// An interface exported with a public address.
#[derive(Debug, Clone)]
pub struct Export {
    pub x: i64,
    pub y1: i64,
    pub y2: i64,
    pub label: String,
}

/// Lays out a deployment's appliances.
pub fn layout(d: &DeploymentView) -> Picture {
    let mut hosts: Vec<&str> = d.appliances.iter().map(|a| a.host.as_str()).collect();
    hosts.sort();
    hosts.dedup();
    // Bands: each VAN in path order; members of no VAN (a deployment of one
    // VM) in a band of their own.
    let mut bands: Vec<(String, String)> = d
        .vans
        .iter()
        .map(|v| {
            let subnet = v
                .subnet
                .as_deref()
                .map(|s| format!(", {s}"))
                .unwrap_or_default();
            (
                v.path.clone(),
                format!("VAN {} (network {}{subnet})", v.label(), v.network),
            )
        })
        .collect();
    let van_of = |component: &str| -> Option<String> {
        d.vans
            .iter()
            .find(|v| v.members.iter().any(|m| m == component))
            .map(|v| v.path.clone())
    };
    let loose = d.appliances.iter().any(|a| van_of(&a.component).is_none());
    if loose {
        bands.push((String::from("\u{0}none"), "no VAN".to_string()));
    }
    // Which appliances sit in each (band, host) cell, in start order.
    let depth = depths(d);
    let mut cells: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    for (i, a) in d.appliances.iter().enumerate() {
        let band_key = van_of(&a.component).unwrap_or_else(|| String::from("\u{0}none"));
        let band = bands.iter().position(|(k, _)| *k == band_key).unwrap_or(0);
        let host = hosts.iter().position(|h| *h == a.host).unwrap_or(0);
        cells.entry((band, host)).or_default().push(i);
    }
    // Within a cell a row per start layer (providers above what requires
    // them), wrapped after PER_ROW: each box's (row, column).
    let mut place: BTreeMap<usize, (i64, i64)> = BTreeMap::new();
    let mut extent: BTreeMap<(usize, usize), (i64, i64)> = BTreeMap::new();
    for (key, members) in cells.iter_mut() {
        members.sort_by_key(|&i| (depth[i], i));
        let (mut row, mut col, mut layer) = (-1i64, 0i64, usize::MAX);
        let mut widest = 0;
        for &i in members.iter() {
            if depth[i] != layer || col as usize == PER_ROW {
                row += 1;
                col = 0;
                layer = depth[i];
            }
            place.insert(i, (row, col));
            col += 1;
            widest = widest.max(col);
        }
        extent.insert(*key, (widest, row + 1));
    }
    let col_w: Vec<i64> = (0..hosts.len())
        .map(|h| {
            let most = (0..bands.len())
                .map(|b| extent.get(&(b, h)).map_or(1, |e| e.0))
                .max()
                .unwrap_or(1);
            most.max(1) * (BOX_W + GAP) + GAP
        })
        .collect();
    let row_h: Vec<i64> = (0..bands.len())
        .map(|b| {
            let most = (0..hosts.len())
                .map(|h| extent.get(&(b, h)).map_or(1, |e| e.1))
                .max()
                .unwrap_or(1);
            BAND_HEAD + most.max(1) * (BOX_H + GAP + ARC) + GAP
        })
        .collect();
    let col_x: Vec<i64> = col_w
        .iter()
        .scan(LEFT, |x, w| {
            let here = *x;
            *x += w + GAP * 2;
            Some(here)
        })
        .collect();
    let width = col_x
        .last()
        .zip(col_w.last())
        .map_or(200, |(x, w)| x + w + LEFT);
    let public_y = 8;
    let top = if d.public.is_empty() {
        8
    } else {
        public_y + PUBLIC_H + 18
    } + LANE_HEAD;
    let row_y: Vec<i64> = row_h
        .iter()
        .scan(top, |y, h| {
            let here = *y;
            *y += h + GAP;
            Some(here)
        })
        .collect();
    let height = row_y
        .last()
        .zip(row_h.last())
        .map_or(top + 40, |(y, h)| y + h + 10);

    let lanes = hosts
        .iter()
        .enumerate()
        .map(|(h, host)| Lane {
            host: host.to_string(),
            rect: Rect {
                x: col_x[h] - GAP / 2,
                y: top - LANE_HEAD,
                w: col_w[h] + GAP,
                h: height - (top - LANE_HEAD) - 4,
            },
        })
        .collect();
    let mut centers: BTreeMap<&str, Rect> = BTreeMap::new();
    let mut out_bands = Vec::new();
    let mut links = Vec::new();
    for (b, (key, label)) in bands.iter().enumerate() {
        let mut out_cells = Vec::new();
        for (h, host) in hosts.iter().enumerate() {
            let Some(members) = cells.get(&(b, h)) else {
                continue;
            };
            let rect = Rect {
                x: col_x[h],
                y: row_y[b] + BAND_HEAD - 4,
                w: col_w[h],
                h: row_h[b] - BAND_HEAD,
            };
            let boxes = members
                .iter()
                .map(|&i| {
                    let a = &d.appliances[i];
                    let (row, col) = place[&i];
                    let r = Rect {
                        x: rect.x + GAP + col * (BOX_W + GAP),
                        y: rect.y + GAP / 2 + row * (BOX_H + GAP + ARC) + 4,
                        w: BOX_W,
                        h: BOX_H,
                    };
                    centers.insert(a.component.as_str(), r);
                    ApplianceBox {
                        component: a.component.clone(),
                        href: appliance_href(&d.name, &a.component),
                        title: clip(&format!("{} · {}", a.label(), a.appliance), 24),
                        detail: clip(
                            &format!(
                                "{} · {}",
                                a.version.map_or("-".to_string(), |v| format!("v{v}")),
                                a.state.as_str()
                            ),
                            26,
                        ),
                        class: a.state.class(),
                        rect: r,
                    }
                })
                .collect();
            out_cells.push(Cell {
                host: host.to_string(),
                rect,
                boxes,
            });
        }
        // A VAN on several hosts: its cells joined by the VXLAN link.
        if let Some(van) = d.vans.iter().find(|v| v.path == *key) {
            for pair in out_cells.windows(2) {
                links.push(Link {
                    x1: pair[0].rect.x + pair[0].rect.w,
                    x2: pair[1].rect.x,
                    y: pair[0].rect.y + pair[0].rect.h / 2,
                    label: format!("VXLAN {}", van.network),
                });
            }
        }
        out_bands.push(Band {
            van: if key.starts_with('\u{0}') {
                "-".to_string()
            } else {
                key.clone()
            },
            label: label.clone(),
            rect: Rect {
                x: 4,
                y: row_y[b],
                w: width - 8,
                h: row_h[b],
            },
            cells: out_cells,
        });
    }
    let arrows = d
        .edges
        .iter()
        .filter_map(|e| {
            let (from, to) = (centers.get(e.from.as_str())?, centers.get(e.to.as_str())?);
            let label = e.service.clone();
            if from.y == to.y {
                // One row: from bottom to bottom, arcing below.
                let (x1, x2) = (from.x + from.w / 2, to.x + to.w / 2);
                let bottom = from.y + from.h;
                return Some(Arrow {
                    x1,
                    y1: bottom,
                    cx: (x1 + x2) / 2,
                    // Deeper for farther boxes, so arcs nest.
                    cy: bottom + (12 + (x2 - x1).abs() / 6).min(ARC * 2 - 8),
                    x2,
                    y2: bottom,
                    label,
                });
            }
            let ((x1, y1), (x2, y2)) = clipped(*from, *to);
            Some(Arrow {
                x1,
                y1,
                cx: (x1 + x2) / 2,
                cy: (y1 + y2) / 2,
                x2,
                y2,
                label,
            })
        })
        .collect();
    let exports = d
        .public
        .iter()
        .filter_map(|p| {
            let r = centers.get(p.component.as_str())?;
            Some(Export {
                x: r.x + r.w / 2,
                y1: public_y + PUBLIC_H,
                y2: r.y,
                label: format!("{}.{} {}", p.component, p.interface, p.address),
            })
        })
        .collect();
    Picture {
        width,
        height,
        public: (!d.public.is_empty()).then_some(Rect {
            x: 4,
            y: public_y,
            w: width - 8,
            h: PUBLIC_H,
        }),
        lanes,
        bands: out_bands,
        links,
        arrows,
        exports,
    }
}

/// Each appliance's start layer: 0 for one that requires nothing here,
/// else one more than its deepest provider. A cycle (two appliances that
/// each need the other) is cut where a depth-first walk from the
/// appliances in their order, provider to requirer, closes it: the first
/// of them stays on top.
fn depths(d: &DeploymentView) -> Vec<usize> {
    let n = d.appliances.len();
    let index: BTreeMap<&str, usize> = d
        .appliances
        .iter()
        .enumerate()
        .map(|(i, a)| (a.component.as_str(), i))
        .collect();
    let mut requirers: Vec<Vec<usize>> = vec![Vec::new(); n];
    for e in &d.edges {
        if let (Some(&from), Some(&to)) = (index.get(e.from.as_str()), index.get(e.to.as_str())) {
            if from != to && !requirers[from].contains(&to) {
                requirers[from].push(to);
            }
        }
    }
    // The walk: 0 unvisited, 1 on its stack, 2 done; an edge to a node on
    // the stack closes a cycle and is cut.
    let mut mark = vec![0u8; n];
    let mut cut = std::collections::BTreeSet::new();
    for root in 0..n {
        if mark[root] != 0 {
            continue;
        }
        mark[root] = 1;
        let mut stack = vec![(root, 0usize)];
        while let Some((node, next)) = stack.last_mut() {
            let node = *node;
            match requirers[node].get(*next).copied() {
                Some(r) => {
                    *next += 1;
                    match mark[r] {
                        0 => {
                            mark[r] = 1;
                            stack.push((r, 0));
                        }
                        1 => {
                            cut.insert((node, r));
                        }
                        _ => {}
                    }
                }
                None => {
                    mark[node] = 2;
                    stack.pop();
                }
            }
        }
    }
    // Longest paths over what is left, in topological order (Kahn).
    let mut waiting = vec![0usize; n];
    for (from, rs) in requirers.iter().enumerate() {
        for &r in rs {
            if !cut.contains(&(from, r)) {
                waiting[r] += 1;
            }
        }
    }
    let mut ready: Vec<usize> = (0..n).rev().filter(|&i| waiting[i] == 0).collect();
    let mut depth = vec![0usize; n];
    while let Some(node) = ready.pop() {
        for &r in &requirers[node] {
            if cut.contains(&(node, r)) {
                continue;
            }
            depth[r] = depth[r].max(depth[node] + 1);
            waiting[r] -= 1;
            if waiting[r] == 0 {
                ready.push(r);
            }
        }
    }
    depth
}

/// At most `n` characters, with an ellipsis when cut.
fn clip(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        return text.to_string();
    }
    let mut out: String = text.chars().take(n - 1).collect();
    out.push('…');
    out
}

/// The segment between two boxes' centres, cut at each box's edge.
fn clipped(a: Rect, b: Rect) -> ((i64, i64), (i64, i64)) {
    let centre = |r: Rect| ((r.x + r.w / 2) as f64, (r.y + r.h / 2) as f64);
    let (ax, ay) = centre(a);
    let (bx, by) = centre(b);
    let (dx, dy) = (bx - ax, by - ay);
    let edge = |r: Rect| -> f64 {
        let tx = if dx == 0.0 {
            f64::INFINITY
        } else {
            (r.w as f64 / 2.0) / dx.abs()
        };
        let ty = if dy == 0.0 {
            f64::INFINITY
        } else {
            (r.h as f64 / 2.0) / dy.abs()
        };
        tx.min(ty).min(0.5)
    };
    let (ta, tb) = (edge(a), 1.0 - edge(b));
    (
        ((ax + dx * ta) as i64, (ay + dy * ta) as i64),
        ((ax + dx * tb) as i64, (ay + dy * tb) as i64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::view::{ApplianceRow, Edge, PublicIf, Shown, VanView};

    fn row(component: &str, host: &str) -> ApplianceRow {
        ApplianceRow {
            deployment: "D".into(),
            component: component.into(),
            appliance: "A".into(),
            version: Some(1),
            host: host.into(),
            state: Shown::Running,
            note: String::new(),
        }
    }

    #[test]
    fn boxes_sit_in_their_van_and_host_and_a_van_on_two_hosts_has_a_link() {
        let d = DeploymentView {
            format_version: 1,
            taken_at: String::new(),
            name: "D".into(),
            source: None,
            policy: "automatic".into(),
            problem: None,
            held: None,
            appliances: vec![row("a", "h1"), row("b", "h2"), row("n.c", "h1")],
            vans: vec![
                VanView {
                    path: String::new(),
                    network: 1,
                    subnet: None,
                    members: vec!["a".into(), "b".into()],
                    hosts: vec!["h1".into(), "h2".into()],
                },
                VanView {
                    path: "n".into(),
                    network: 2,
                    subnet: None,
                    members: vec!["n.c".into()],
                    hosts: vec!["h1".into()],
                },
            ],
            edges: vec![Edge {
                from: "a".into(),
                to: "n.c".into(),
                service: "DNS".into(),
            }],
            public: vec![PublicIf {
                component: "a".into(),
                interface: "ethernet1".into(),
                address: "198.19.0.1".into(),
            }],
            history: vec![],
        };
        let p = layout(&d);
        assert_eq!(p.lanes.len(), 2);
        assert_eq!(p.bands.len(), 2);
        assert_eq!(p.bands[0].cells.len(), 2, "the root VAN is on both hosts");
        assert_eq!(p.bands[1].cells.len(), 1);
        assert_eq!(p.links.len(), 1);
        assert_eq!(p.links[0].label, "VXLAN 1");
        assert_eq!(p.arrows.len(), 1);
        assert_eq!(p.exports.len(), 1);
        // Every box inside its cell, its cell inside its band and lane.
        for band in &p.bands {
            for cell in &band.cells {
                let lane = p.lanes.iter().find(|l| l.host == cell.host).unwrap();
                assert!(
                    cell.rect.x >= lane.rect.x
                        && cell.rect.x + cell.rect.w <= lane.rect.x + lane.rect.w
                );
                assert!(
                    cell.rect.y >= band.rect.y
                        && cell.rect.y + cell.rect.h <= band.rect.y + band.rect.h
                );
                for b in &cell.boxes {
                    assert!(
                        b.rect.x >= cell.rect.x && b.rect.x + b.rect.w <= cell.rect.x + cell.rect.w
                    );
                    assert!(
                        b.rect.y >= cell.rect.y && b.rect.y + b.rect.h <= cell.rect.y + cell.rect.h
                    );
                }
            }
        }
        assert!(p.bands.iter().all(|b| b.rect.y + b.rect.h <= p.height));
    }

    #[test]
    fn providers_sit_above_what_requires_them() {
        let edge = |from: &str, to: &str| Edge {
            from: from.into(),
            to: to.into(),
            service: "S".into(),
        };
        let d = DeploymentView {
            format_version: 1,
            taken_at: String::new(),
            name: "D".into(),
            source: None,
            policy: "manual".into(),
            problem: None,
            held: None,
            appliances: vec![row("z", "h"), row("y", "h"), row("x", "h")],
            vans: vec![VanView {
                path: String::new(),
                network: 1,
                subnet: None,
                members: vec!["x".into(), "y".into(), "z".into()],
                hosts: vec!["h".into()],
            }],
            // x before y before z; and a cycle, which must not hang.
            edges: vec![edge("x", "y"), edge("y", "z"), edge("x", "z")],
            public: vec![],
            history: vec![],
        };
        let p = layout(&d);
        let y_of = |c: &str| {
            p.bands[0].cells[0]
                .boxes
                .iter()
                .find(|b| b.component == c)
                .unwrap()
                .rect
                .y
        };
        assert!(y_of("x") < y_of("y") && y_of("y") < y_of("z"));
        // The suite's DNS and DHCP need each other; LDAP needs both: the
        // cycle is cut at the first, the rest below the two.
        let mut cyclic = d.clone();
        cyclic.appliances = vec![row("d", "h"), row("h", "h"), row("l", "h")];
        cyclic.vans[0].members = vec!["d".into(), "h".into(), "l".into()];
        cyclic.edges = vec![
            edge("d", "h"),
            edge("h", "d"),
            edge("d", "l"),
            edge("h", "l"),
        ];
        assert_eq!(depths(&cyclic), vec![0, 1, 2]);
        cyclic.edges.push(edge("l", "d"));
        assert_eq!(layout(&cyclic).bands[0].cells[0].boxes.len(), 3);
    }
}
