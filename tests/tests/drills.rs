//! Failure drills for the destination service at scale, on the fake
//! Kubernetes API: an API outage under churn, a watch that gets 410 Gone
//! in the middle of churn, and a controller restart with 2,000 streams
//! reconnecting at once.
//!
//! Each stream's view is built from its updates alone, as a proxy builds
//! its endpoints, and after every drill each view must equal what the API
//! holds and what a fresh `Get` answers: nothing lost, nothing sent twice.

use linkerd_tests::{
    controller::{Backend, Controller},
    eventually,
    kubeapi::FakeApi,
    scale::{World, proc_stats},
};
use linkerd2_proxy_api::{
    destination::{GetDestination, destination_client::DestinationClient, update::Update as Kind},
    net::{TcpAddress, ip_address::Ip},
};
use std::{
    collections::BTreeSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Pod replacements a second, as the scale benchmark churns.
const RATE: u64 = 100;

/// What one stream has been told.
#[derive(Default)]
struct View {
    addrs: BTreeSet<SocketAddr>,
    updates: u64,
    /// Adds of an address already held and removes of one not held.
    duplicates: Vec<String>,
}

/// A `Get` stream per service, each folding its updates into a view.
struct Streams {
    views: Arc<Vec<Mutex<View>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn addr(a: &TcpAddress) -> SocketAddr {
    match a.ip.as_ref().and_then(|ip| ip.ip.as_ref()) {
        Some(Ip::Ipv4(v4)) => SocketAddr::from((std::net::Ipv4Addr::from(*v4), a.port as u16)),
        other => panic!("unexpected address {other:?}"),
    }
}

impl Streams {
    /// Opens one stream per service of `world`, a hundred to a connection
    /// (as many proxies would share none; the controller sees the same
    /// number of streams).
    async fn open(ctl: &Controller, world: &World) -> Self {
        let views: Arc<Vec<Mutex<View>>> =
            Arc::new(world.svcs.iter().map(|_| Mutex::default()).collect());
        let mut clients: Vec<DestinationClient<tonic::transport::Channel>> = Vec::new();
        for _ in 0..world.svcs.len().div_ceil(100) {
            clients.push(ctl.client().await);
        }
        let tasks = world
            .svcs
            .iter()
            .enumerate()
            .map(|(i, svc)| {
                let mut client = clients[i / 100].clone();
                let views = views.clone();
                let req = GetDestination {
                    scheme: "k8s".into(),
                    path: svc.authority(),
                    context_token: String::new(),
                };
                tokio::spawn(async move {
                    let Ok(rsp) = client.get(req).await else {
                        return;
                    };
                    let mut stream = rsp.into_inner();
                    while let Ok(Some(update)) = stream.message().await {
                        let mut view = views[i].lock().unwrap();
                        view.updates += 1;
                        match update.update {
                            Some(Kind::Add(set)) => {
                                for a in set.addrs.iter().filter_map(|a| a.addr.as_ref()) {
                                    if !view.addrs.insert(addr(a)) {
                                        view.duplicates.push(format!("add {}", addr(a)));
                                    }
                                }
                            }
                            Some(Kind::Remove(set)) => {
                                for a in &set.addrs {
                                    if !view.addrs.remove(&addr(a)) {
                                        view.duplicates.push(format!("remove {}", addr(a)));
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                })
            })
            .collect();
        Self { views, tasks }
    }

    fn updates(&self) -> u64 {
        self.views.iter().map(|v| v.lock().unwrap().updates).sum()
    }

    /// The services whose view differs from `expected`'s endpoints.
    fn differing(&self, expected: &[BTreeSet<SocketAddr>]) -> Vec<usize> {
        (0..self.views.len())
            .filter(|i| self.views[*i].lock().unwrap().addrs != expected[*i])
            .collect()
    }

    /// Waits (up to `limit`) for every view to equal what the API holds.
    async fn settle(&self, world: &World, limit: Duration) -> Duration {
        let started = Instant::now();
        let expected = endpoints(world);
        let settled = eventually(limit, || async {
            self.differing(&expected).is_empty().then_some(())
        })
        .await;
        let differing = self.differing(&expected);
        assert!(
            settled.is_some(),
            "{} of {} streams differ from the API after {limit:?}; the first: {} holds {:?}, the API {:?}",
            differing.len(),
            self.views.len(),
            world.svcs[differing[0]].authority(),
            self.views[differing[0]].lock().unwrap().addrs,
            expected[differing[0]],
        );
        started.elapsed()
    }

    fn duplicates(&self) -> Vec<String> {
        self.views
            .iter()
            .flat_map(|v| v.lock().unwrap().duplicates.clone())
            .collect()
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn endpoints(world: &World) -> Vec<BTreeSet<SocketAddr>> {
    world.svcs.iter().map(|s| s.endpoints()).collect()
}

/// Replaces pods at [`RATE`] a second for `secs`, each written to the API
/// as a rollout writes it; `midway` runs once, half-way through.
async fn churn(world: &mut World, api: &FakeApi, secs: u64, mut midway: impl FnMut()) {
    let total = RATE * secs;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / RATE as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let deadline = Instant::now() + Duration::from_secs(secs * 2);
    for n in 0..total {
        if Instant::now() > deadline {
            break;
        }
        if n == total / 2 {
            midway();
        }
        tick.tick().await;
        let change = world.replace_next();
        api.upsert(change.new_pod);
        api.upsert(change.slice);
        api.remove(&change.old_pod);
    }
}

/// Starts the destination service on the fake API holding `world`, with a
/// stream per service that has heard the whole world.
async fn start(world: &World) -> (Controller, FakeApi, Streams) {
    let ctl = Controller::destination_with(Backend::Kubernetes, &world.yaml()).await;
    let api = ctl.api().expect("the fake API").clone();
    let streams = Streams::open(&ctl, world).await;
    streams.settle(world, Duration::from_secs(60)).await;
    (ctl, api, streams)
}

/// After a drill: no view was told anything twice, and each equals what a
/// fresh `Get` answers now.
async fn consistent(ctl: &Controller, world: &World, streams: &Streams) {
    let duplicates = streams.duplicates();
    assert!(
        duplicates.is_empty(),
        "{} duplicate updates, the first: {:?}",
        duplicates.len(),
        &duplicates[..duplicates.len().min(5)]
    );
    let fresh = Streams::open(ctl, world).await;
    fresh.settle(world, Duration::from_secs(30)).await;
    let expected: Vec<BTreeSet<SocketAddr>> = fresh
        .views
        .iter()
        .map(|v| v.lock().unwrap().addrs.clone())
        .collect();
    assert!(streams.differing(&expected).is_empty());
}

/// The API server is unreachable for 30 s while pods keep changing: open
/// streams keep the endpoints they had (no update at all during the
/// outage), then catch up with everything that changed, once.
#[tokio::test]
async fn an_api_outage_under_churn_keeps_the_last_state_then_resyncs() {
    let mut world = World::new(10, 200, 3);
    let (ctl, api, streams) = start(&world).await;
    churn(&mut world, &api, 3, || ()).await;
    streams.settle(&world, Duration::from_secs(30)).await;

    let before_outage = endpoints(&world);
    let requests = api.requests().len();
    api.set_down(true);
    // Felt once the watches (Services, EndpointSlices, Pods) came back refused.
    let felt = eventually(Duration::from_secs(10), || async {
        (api.requests().len() >= requests + 3).then_some(())
    })
    .await;
    assert!(felt.is_some(), "the controller never asked the API again");
    let updates = streams.updates();
    churn(&mut world, &api, 30, || ()).await;
    assert_eq!(
        streams.updates(),
        updates,
        "streams were told something while the API was down"
    );
    assert!(streams.differing(&before_outage).is_empty());

    api.set_down(false);
    churn(&mut world, &api, 3, || ()).await;
    let resynced = streams.settle(&world, Duration::from_secs(90)).await;
    println!("every stream caught up {resynced:.1?} after the churn that followed the outage");
    consistent(&ctl, &world, &streams).await;
}

/// The API forgets its history in the middle of churn (as etcd compaction
/// makes it): the watches get 410 Gone, the controller relists, and every
/// stream ends where the API is, told each change once.
#[tokio::test]
async fn a_410_in_the_middle_of_churn_relists_without_losing_or_repeating() {
    let mut world = World::new(10, 200, 3);
    let (ctl, api, streams) = start(&world).await;
    let lists = || {
        api.requests()
            .iter()
            .filter(|r| !r.contains("watch=true"))
            .count()
    };
    let lists_before = lists();
    churn(&mut world, &api, 10, || api.expire_watches()).await;
    streams.settle(&world, Duration::from_secs(60)).await;
    assert!(lists() > lists_before, "the controller did not relist");
    consistent(&ctl, &world, &streams).await;
}

/// The controller is replaced (SIGTERM, then a new process) while pods
/// change, and 2,000 streams reconnect to the new one at once: each gets
/// the current endpoints, and the new controller's memory stays within
/// what the old one held with the same streams.
#[tokio::test]
async fn a_restart_with_2000_streams_reconnecting_keeps_memory_bounded() {
    let mut world = World::new(50, 2_000, 2);
    let (old, api, streams) = start(&world).await;
    let (_, old_rss, _) = proc_stats(old.pid());
    let pid = nix::unistd::Pid::from_raw(old.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let exited = tokio::time::timeout(Duration::from_secs(10), old.wait()).await;
    assert!(exited.as_ref().is_ok_and(|s| s.success()), "{exited:?}");
    drop(streams);

    // Pods change while no controller runs.
    churn(&mut world, &api, 2, || ()).await;
    let new = Controller::destination_on(api.clone()).await;
    let (_, idle_rss, _) = proc_stats(new.pid());
    let started = Instant::now();
    let streams = Streams::open(&new, &world).await;
    streams.settle(&world, Duration::from_secs(60)).await;
    let reconnected = started.elapsed();
    let (_, rss, peak) = proc_stats(new.pid());
    println!(
        "2,000 streams reconnected in {reconnected:.1?}; the new controller: RSS {} MiB idle, {} MiB with the streams, peak {} MiB (the old one held {} MiB)",
        idle_rss / 1024,
        rss / 1024,
        peak / 1024,
        old_rss / 1024
    );
    // The reconnection burst costs what serving the streams costs, not a
    // multiple of it: a quarter over the old controller's steady state.
    assert!(
        peak <= old_rss + old_rss / 4,
        "the reconnection peaked at {} MiB, the old controller held {} MiB with the same streams",
        peak / 1024,
        old_rss / 1024
    );

    churn(&mut world, &api, 2, || ()).await;
    streams.settle(&world, Duration::from_secs(30)).await;
    consistent(&new, &world, &streams).await;
}
