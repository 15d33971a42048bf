//! `linkerd top`: a live table of a resource's busiest request paths, built
//! from the tap stream and redrawn a few times a second; `q` quits.

use crate::tap::Selection;
use clap::Args;
use linkerd_format::tap as tap_format;
use linkerd_proxy_api::tap::{
    TapEvent, eos,
    tap_event::{self, http::Event},
};
use ratatui::{
    Terminal,
    backend::CrosstermBackend,
    crossterm::{
        event::{self as term_event, KeyCode, KeyEvent, KeyModifiers},
        execute,
        terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
    },
    layout::Constraint,
    style::{Modifier, Style},
    widgets::{Block, Row as TableRow, Table as TableWidget},
};
use std::{
    collections::HashMap,
    io::IsTerminal,
    time::{Duration, Instant},
};

#[derive(Args, Debug)]
pub(crate) struct TopArgs {
    #[command(flatten)]
    selection: Selection,
}

const REDRAW: Duration = Duration::from_millis(250);

/// One row: requests from a source to a destination with a method and path.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    source: String,
    destination: String,
    method: String,
    path: String,
}

#[derive(Clone, Debug, Default)]
struct Stats {
    count: u64,
    best: Option<Duration>,
    worst: Option<Duration>,
    last: Option<Duration>,
    ended: u64,
    succeeded: u64,
}

/// A request between its request-init and response-end events.
struct InFlight {
    key: Key,
    status: Option<u32>,
}

/// The table `top` shows, fed with tap events.
#[derive(Default)]
pub(crate) struct Top {
    rows: HashMap<Key, Stats>,
    in_flight: HashMap<(u32, u64, String), InFlight>,
}

/// A pod name, else the address.
fn end_name(meta: Option<&tap_event::EndpointMeta>, addr: &str) -> String {
    let labels = tap_format::labels(meta);
    match labels.get("pod") {
        Some(pod) => pod.to_string(),
        None => addr.rsplit_once(':').map_or(addr, |(ip, _)| ip).to_string(),
    }
}

impl Top {
    pub(crate) fn event(&mut self, e: &TapEvent) {
        let Some(tap_event::Event::Http(h)) = &e.event else {
            return;
        };
        let Some(http) = &h.event else { return };
        // Ids are per proxy; the proxy's own end tells proxies apart.
        let inbound = e.proxy_direction == tap_event::ProxyDirection::Inbound as i32;
        let (src, dst) = (
            tap_format::addr(e.source.as_ref()),
            tap_format::addr(e.destination.as_ref()),
        );
        let proxy = if inbound { dst.clone() } else { src.clone() };
        match http {
            Event::RequestInit(r) => {
                let id = r.id.unwrap_or_default();
                let key = Key {
                    source: end_name(e.source_meta.as_ref(), &src),
                    destination: end_name(e.destination_meta.as_ref(), &dst),
                    method: tap_format::method_name(r),
                    path: r.path.clone(),
                };
                self.rows.entry(key.clone()).or_default().count += 1;
                self.in_flight
                    .insert((id.base, id.stream, proxy), InFlight { key, status: None });
            }
            Event::ResponseInit(r) => {
                let id = r.id.unwrap_or_default();
                if let Some(f) = self.in_flight.get_mut(&(id.base, id.stream, proxy)) {
                    f.status = Some(r.http_status);
                    let latency = Duration::from_micros(tap_format::micros(
                        r.since_request_init.as_ref(),
                    ) as u64);
                    let stats = self.rows.entry(f.key.clone()).or_default();
                    stats.best = Some(stats.best.map_or(latency, |b| b.min(latency)));
                    stats.worst = Some(stats.worst.map_or(latency, |w| w.max(latency)));
                    stats.last = Some(latency);
                }
            }
            Event::ResponseEnd(r) => {
                let id = r.id.unwrap_or_default();
                if let Some(f) = self.in_flight.remove(&(id.base, id.stream, proxy)) {
                    let ok = match r.eos.as_ref().and_then(|e| e.end) {
                        Some(eos::End::GrpcStatusCode(code)) => code == 0,
                        Some(eos::End::ResetErrorCode(_)) => false,
                        None => f.status.is_some_and(|s| s < 500),
                    };
                    let stats = self.rows.entry(f.key).or_default();
                    stats.ended += 1;
                    stats.succeeded += u64::from(ok);
                }
            }
        }
    }

    /// The rows as text cells, busiest first.
    pub(crate) fn table(&self) -> Vec<[String; 9]> {
        let mut rows: Vec<(&Key, &Stats)> = self.rows.iter().collect();
        rows.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(b.0)));
        rows.into_iter()
            .map(|(k, s)| {
                let rate = if s.ended == 0 {
                    "-".to_string()
                } else {
                    format!("{:.2}%", 100.0 * s.succeeded as f64 / s.ended as f64)
                };
                [
                    k.source.clone(),
                    k.destination.clone(),
                    k.method.clone(),
                    k.path.clone(),
                    s.count.to_string(),
                    latency(s.best),
                    latency(s.worst),
                    latency(s.last),
                    rate,
                ]
            })
            .collect()
    }
}

fn latency(d: Option<Duration>) -> String {
    match d {
        None => "-".into(),
        Some(d) if d >= Duration::from_millis(1) => format!("{}ms", d.as_millis()),
        Some(d) => format!("{}µs", d.as_micros()),
    }
}

pub(crate) const HEADER: [&str; 9] = [
    "Source",
    "Destination",
    "Method",
    "Path",
    "Count",
    "Best",
    "Worst",
    "Last",
    "Success Rate",
];

/// Restores the terminal however `top` ends.
struct Screen;

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = terminal::disable_raw_mode();
        let _ = execute!(std::io::stdout(), LeaveAlternateScreen);
    }
}

pub(crate) async fn run(args: TopArgs, api: &crate::api::Target) -> anyhow::Result<()> {
    if !std::io::stdout().is_terminal() {
        anyhow::bail!(
            "linkerd top draws a live table and needs a terminal; use `linkerd tap` to print events"
        );
    }
    let mut events = args.selection.open(api).await?;
    terminal::enable_raw_mode()?;
    let _screen = Screen;
    execute!(std::io::stdout(), EnterAlternateScreen)?;
    let mut term = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;

    // Keys are read on a thread of their own: crossterm's reads block.
    let (keys_tx, mut keys) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        loop {
            match term_event::poll(Duration::from_millis(100)) {
                Ok(true) => match term_event::read() {
                    Ok(term_event::Event::Key(k)) => {
                        if keys_tx.send(k).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                },
                Ok(false) => {
                    if keys_tx.is_closed() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });

    let mut top = Top::default();
    let mut redraw = tokio::time::interval(REDRAW);
    let mut ended: Option<String> = None;
    let started = Instant::now();
    loop {
        tokio::select! {
            e = events.next(), if ended.is_none() => match e {
                Ok(Some(e)) => top.event(&e),
                Ok(None) => ended = Some("the tap stream ended".into()),
                Err(e) => ended = Some(format!("tap ended: {e}")),
            },
            key = keys.recv() => match key {
                Some(KeyEvent { code: KeyCode::Char('q'), .. })
                | Some(KeyEvent { code: KeyCode::Esc, .. }) => return Ok(()),
                Some(KeyEvent { code: KeyCode::Char('c'), modifiers, .. })
                    if modifiers.contains(KeyModifiers::CONTROL) => return Ok(()),
                Some(_) => {}
                None => return Ok(()),
            },
            _ = redraw.tick() => {
                let rows = top.table();
                let title = match &ended {
                    Some(why) => format!(" linkerd top: {why} (q to quit) "),
                    None => format!(
                        " linkerd top: {} paths, {}s (q to quit) ",
                        rows.len(),
                        started.elapsed().as_secs()
                    ),
                };
                term.draw(|f| {
                    let widths = [
                        Constraint::Fill(3),
                        Constraint::Fill(3),
                        Constraint::Length(7),
                        Constraint::Fill(4),
                        Constraint::Length(7),
                        Constraint::Length(8),
                        Constraint::Length(8),
                        Constraint::Length(8),
                        Constraint::Length(12),
                    ];
                    let table = TableWidget::new(rows.into_iter().map(TableRow::new), widths)
                        .header(
                            TableRow::new(HEADER).style(Style::default().add_modifier(Modifier::BOLD)),
                        )
                        .block(Block::bordered().title(title));
                    f.render_widget(table, f.area());
                })?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linkerd_proxy_api::tap::{Eos, tap_event::http};

    fn event(stream: u64, pod: &str, e: Event) -> TapEvent {
        TapEvent {
            source: Some(
                "10.1.0.5:40000"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            ),
            source_meta: Some(tap_event::EndpointMeta {
                labels: [("pod".to_string(), "vote-bot-1".to_string())].into(),
            }),
            destination: Some(
                "10.1.0.7:8080"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            ),
            destination_meta: Some(tap_event::EndpointMeta {
                labels: [("pod".to_string(), pod.to_string())].into(),
            }),
            route_meta: None,
            proxy_direction: tap_event::ProxyDirection::Inbound as i32,
            event: Some(tap_event::Event::Http(tap_event::Http { event: Some(e) })),
        }
        .with_id(stream)
    }

    trait WithId {
        fn with_id(self, stream: u64) -> Self;
    }

    impl WithId for TapEvent {
        fn with_id(mut self, stream: u64) -> Self {
            let id = Some(http::StreamId { base: 0, stream });
            if let Some(tap_event::Event::Http(h)) = &mut self.event {
                match h.event.as_mut() {
                    Some(Event::RequestInit(r)) => r.id = id,
                    Some(Event::ResponseInit(r)) => r.id = id,
                    Some(Event::ResponseEnd(r)) => r.id = id,
                    None => {}
                }
            }
            self
        }
    }

    fn request(top: &mut Top, stream: u64, path: &str, status: u32, micros: i32) {
        top.event(&event(
            stream,
            "web-0",
            Event::RequestInit(http::RequestInit {
                path: path.into(),
                method: None,
                ..Default::default()
            }),
        ));
        top.event(&event(
            stream,
            "web-0",
            Event::ResponseInit(http::ResponseInit {
                http_status: status,
                since_request_init: Some(prost_types::Duration {
                    seconds: 0,
                    nanos: micros * 1000,
                }),
                ..Default::default()
            }),
        ));
        top.event(&event(
            stream,
            "web-0",
            Event::ResponseEnd(http::ResponseEnd {
                eos: None::<Eos>,
                ..Default::default()
            }),
        ));
    }

    #[test]
    fn rows_count_latency_and_success() {
        let mut top = Top::default();
        request(&mut top, 1, "/a", 200, 300);
        request(&mut top, 2, "/a", 500, 2500);
        request(&mut top, 3, "/a", 200, 900);
        request(&mut top, 4, "/b", 200, 100);
        let table = top.table();
        assert_eq!(
            table[0],
            [
                "vote-bot-1",
                "web-0",
                "?",
                "/a",
                "3",
                "300µs",
                "2ms",
                "900µs",
                "66.67%"
            ]
            .map(String::from)
        );
        assert_eq!(table[1][3], "/b");
        assert_eq!(table[1][8], "100.00%");
    }
}
