//! The destination service at cluster scale: the fake Kubernetes API holds
//! 10,000 pods in 2,000 services across 50 namespaces, 2,000 `Get` streams
//! are open (one per service), then pods are replaced at 100 a second for
//! a minute. Prints, and asserts nothing:
//!
//! - the time from the API's watch event (an EndpointSlice written) to the
//!   update on the affected stream, p50/p90/p99/max;
//! - updates sent to streams whose service did not change (target 0);
//! - the controller's resident memory and CPU seconds over the churn.
//!
//! Run with `tests/bench-discovery.sh` (it builds the release controller).
//! `BENCH_NAMESPACES`, `BENCH_SERVICES`, `BENCH_PODS` (per service),
//! `BENCH_RATE` (pod replacements a second), `BENCH_SECONDS` scale it.

use linkerd_tests::{
    controller::{Backend, Controller},
    scale::{World, pct, proc_stats, setting},
};
use linkerd2_proxy_api::destination::{
    GetDestination, destination_client::DestinationClient, update::Update as Kind,
};
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};
use tokio::sync::mpsc;
use tonic::transport::Channel;

/// What a stream received: its service, when, and how many addresses.
struct Received {
    svc: usize,
    at: Instant,
    addrs: usize,
}

fn main() {
    let namespaces = setting("BENCH_NAMESPACES", 50) as usize;
    let services = setting("BENCH_SERVICES", 2_000) as usize;
    let per_service = setting("BENCH_PODS", 5) as usize;
    let rate = setting("BENCH_RATE", 100);
    let seconds = setting("BENCH_SECONDS", 60);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(namespaces, services, per_service, rate, seconds));
}

async fn run(namespaces: usize, services: usize, per_service: usize, rate: u64, seconds: u64) {
    let mut world = World::new(namespaces, services, per_service);
    let yaml = world.yaml();

    let loading = Instant::now();
    let ctl = Controller::destination_with(Backend::Kubernetes, &yaml).await;
    let api = ctl.api().expect("the fake API").clone();
    println!(
        "{} pods in {services} services across {namespaces} namespaces; the controller started in {:.1?}",
        services * per_service,
        loading.elapsed()
    );

    // A stream per service, over a few connections (a connection carries
    // at most a few hundred streams).
    let (tx, mut rx) = mpsc::unbounded_channel::<Received>();
    let mut clients: Vec<DestinationClient<Channel>> = Vec::new();
    for _ in 0..services.div_ceil(100) {
        clients.push(ctl.client().await);
    }
    let opened = Instant::now();
    let mut tasks = Vec::new();
    for (i, s) in world.svcs.iter().enumerate() {
        let mut client = clients[i / 100].clone();
        let (tx, path) = (tx.clone(), s.authority());
        tasks.push(tokio::spawn(async move {
            let req = GetDestination {
                scheme: "k8s".into(),
                path,
                context_token: String::new(),
            };
            let Ok(rsp) = client.get(req).await else {
                return;
            };
            let mut stream = rsp.into_inner();
            while let Ok(Some(update)) = stream.message().await {
                let addrs = match update.update {
                    Some(Kind::Add(set)) => set.addrs.len(),
                    Some(Kind::Remove(set)) => set.addrs.len(),
                    _ => 0,
                };
                let _ = tx.send(Received {
                    svc: i,
                    at: Instant::now(),
                    addrs,
                });
            }
        }));
    }
    // Every stream's first answer.
    let mut first = vec![false; services];
    let mut answered = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while answered < services && Instant::now() < deadline {
        if let Ok(Some(r)) = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await
            && !std::mem::replace(&mut first[r.svc], true)
        {
            answered += 1;
        }
    }
    println!(
        "{answered} of {services} streams answered in {:.1?}",
        opened.elapsed()
    );
    // Quiet: whatever else the start sent is not the churn's.
    tokio::time::sleep(Duration::from_secs(2)).await;
    while rx.try_recv().is_ok() {}
    let (cpu0, rss0, _) = proc_stats(ctl.pid());

    // Churn: replace one pod of a service, as a rollout does: the new pod,
    // then the slice naming it instead of the old, then the old pod gone.
    let mut changes: Vec<(usize, Instant)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let churn_started = Instant::now();
    let mut received: Vec<Received> = Vec::new();
    while churn_started.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        let change = world.replace_next();
        api.upsert(change.new_pod);
        // Timed from before the write: the watch event leaves during it,
        // and this thread may be descheduled before it could read a clock
        // after it.
        let at = Instant::now();
        api.upsert(change.slice);
        changes.push((change.svc, at));
        api.remove(&change.old_pod);
        while let Ok(r) = rx.try_recv() {
            received.push(r);
        }
    }
    let churn = churn_started.elapsed();
    // Let the streams catch up (bounded).
    let drain_until = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout(Duration::from_secs(3), rx.recv()).await {
            Ok(Some(r)) => received.push(r),
            _ => break,
        }
        if Instant::now() > drain_until {
            break;
        }
    }
    let (cpu1, rss1, hwm) = proc_stats(ctl.pid());

    // Each change's latency: the affected stream's first update after it.
    let mut by_svc: BTreeMap<usize, Vec<Instant>> = BTreeMap::new();
    for r in &received {
        by_svc.entry(r.svc).or_default().push(r.at);
    }
    let mut latencies: Vec<Duration> = Vec::new();
    let mut missing = 0;
    for (svc, at) in &changes {
        match by_svc
            .get(svc)
            .and_then(|ts| ts.iter().find(|t| **t >= *at))
        {
            Some(t) => latencies.push(*t - *at),
            None => missing += 1,
        }
    }
    latencies.sort();
    // A change sends its stream at most a removal and an addition.
    let mut changed: BTreeMap<usize, usize> = BTreeMap::new();
    for (svc, _) in &changes {
        *changed.entry(*svc).or_default() += 1;
    }
    let unaffected: usize = by_svc
        .iter()
        .map(|(svc, ts)| {
            ts.len()
                .saturating_sub(2 * changed.get(svc).copied().unwrap_or(0))
        })
        .sum();
    let addrs: usize = received.iter().map(|r| r.addrs).sum();

    println!(
        "churn: {} pod replacements in {:.1?} ({:.0}/s), {} updates received ({addrs} addresses)",
        changes.len(),
        churn,
        changes.len() as f64 / churn.as_secs_f64(),
        received.len()
    );
    println!(
        "API event -> update on the affected stream: p50 {:.1?}  p90 {:.1?}  p99 {:.1?}  max {:.1?}  (no update: {missing})",
        pct(&latencies, 0.5),
        pct(&latencies, 0.9),
        pct(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    println!("updates to streams whose service did not change: {unaffected}");
    println!(
        "controller: CPU {:.1}s over the churn ({:.2} ms per change), RSS {} MiB before, {} MiB after, peak {} MiB",
        cpu1 - cpu0,
        (cpu1 - cpu0) * 1000.0 / changes.len().max(1) as f64,
        rss0 / 1024,
        rss1 / 1024,
        hwm / 1024
    );
    for t in tasks {
        t.abort();
    }
}
