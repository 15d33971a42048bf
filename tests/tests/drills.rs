//! Failure drills for the destination service at scale, on the fake
//! Kubernetes API: an API outage under churn, a watch that gets 410 Gone
//! in the middle of churn, and a controller restart with 2,000 streams
//! reconnecting at once.
//!
//! Each stream's view is built from its updates alone, as a proxy builds
//! its endpoints, and after every drill each view must equal what the API
//! holds and what a fresh `Get` answers: nothing lost, nothing sent twice.

use linkerd_tests::{
    controller::Controller,
    eventually,
    kubeapi::FakeApi,
    scale::{Replacement, World, proc_stats},
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

/// Pod replacements a second on the fake API, as the scale benchmark
/// churns; a real API server on this machine's two cores gets fewer.
const RATE: u64 = 100;
const REAL_RATE: u64 = 20;

/// Where a drill's churn is written.
enum Writer {
    Fake(FakeApi),
    /// A real API server, through its own client (not the relay the
    /// controller uses, so an outage is the controller's alone).
    Real(kube::Client),
}

impl Writer {
    fn rate(&self) -> u64 {
        match self {
            Self::Fake(_) => RATE,
            Self::Real(_) => REAL_RATE,
        }
    }

    /// Writes one replacement as a rollout does; on a real API only the
    /// EndpointSlice (its services have no selector, so the slices are the
    /// drill's to write, and no pods need a node).
    async fn replace(&self, change: Replacement) {
        match self {
            Self::Fake(api) => {
                api.upsert(change.new_pod);
                api.upsert(change.slice);
                api.remove(&change.old_pod);
            }
            Self::Real(client) => real::apply(client, real::slice(change.slice)).await,
        }
    }
}

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

/// Replaces pods at the writer's rate for `secs`; `midway` runs once,
/// half-way through.
async fn churn(world: &mut World, writer: &Writer, secs: u64, mut midway: impl FnMut()) {
    let rate = writer.rate();
    let total = rate * secs;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
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
        writer.replace(world.replace_next()).await;
    }
}

/// A world, the API holding it, and how to cut the controller off from it.
struct Drill {
    world: World,
    writer: Writer,
    /// The real API server's relay, which the controllers dial.
    relay: Option<real::Relay>,
}

impl Drill {
    /// The fake API, holding `world`.
    async fn fake(world: World) -> Self {
        let api = FakeApi::start().await;
        let yaml = world.yaml();
        api.set_topology(&serde_saphyr::from_str(&yaml).expect("the world parses"));
        api.set_resources(&yaml);
        Self {
            world,
            writer: Writer::Fake(api),
            relay: None,
        }
    }

    /// Starts a destination controller on this drill's API.
    async fn controller(&self) -> Controller {
        match (&self.writer, &self.relay) {
            (Writer::Fake(api), _) => Controller::destination_on(api.clone()).await,
            (Writer::Real(_), Some(relay)) => Controller::destination_at(&relay.kubeconfig).await,
            (Writer::Real(_), None) => unreachable!("a real drill has its relay"),
        }
    }

    /// A controller with a stream per service that has heard the whole world.
    async fn start(&self) -> (Controller, Streams) {
        let ctl = self.controller().await;
        let streams = Streams::open(&ctl, &self.world).await;
        streams.settle(&self.world, Duration::from_secs(60)).await;
        (ctl, streams)
    }

    async fn churn(&mut self, secs: u64) {
        churn(&mut self.world, &self.writer, secs, || ()).await;
    }

    /// Cuts the controllers off from the API (or lets them back), and
    /// returns once they have felt it.
    async fn set_down(&self, down: bool) {
        match (&self.writer, &self.relay) {
            (Writer::Fake(api), _) => {
                let requests = api.requests().len();
                api.set_down(down);
                if down {
                    // Felt once the watches (Services, EndpointSlices,
                    // Pods) came back refused.
                    let felt = eventually(Duration::from_secs(10), || async {
                        (api.requests().len() >= requests + 3).then_some(())
                    })
                    .await;
                    assert!(felt.is_some(), "the controller never asked the API again");
                }
            }
            (_, Some(relay)) => relay.set_down(down),
            (Writer::Real(_), None) => unreachable!("a real drill has its relay"),
        }
    }
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
async fn outage(mut drill: Drill) {
    let (ctl, streams) = drill.start().await;
    drill.churn(3).await;
    streams.settle(&drill.world, Duration::from_secs(30)).await;

    let before_outage = endpoints(&drill.world);
    drill.set_down(true).await;
    let updates = streams.updates();
    drill.churn(30).await;
    assert_eq!(
        streams.updates(),
        updates,
        "streams were told something while the API was down"
    );
    assert!(streams.differing(&before_outage).is_empty());

    drill.set_down(false).await;
    drill.churn(3).await;
    let resynced = streams.settle(&drill.world, Duration::from_secs(90)).await;
    println!("every stream caught up {resynced:.1?} after the churn that followed the outage");
    consistent(&ctl, &drill.world, &streams).await;
}

/// The controller is replaced (SIGTERM, then a new process) while pods
/// change, and every stream reconnects to the new one at once: each gets
/// the current endpoints, and the new controller's memory stays within a
/// quarter over what the old one held with the same streams.
async fn restart(mut drill: Drill) {
    let (old, streams) = drill.start().await;
    let (_, old_rss, _) = proc_stats(old.pid());
    let pid = nix::unistd::Pid::from_raw(old.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let exited = tokio::time::timeout(Duration::from_secs(10), old.wait()).await;
    assert!(exited.as_ref().is_ok_and(|s| s.success()), "{exited:?}");
    drop(streams);

    // Pods change while no controller runs.
    drill.churn(2).await;
    let new = drill.controller().await;
    let (_, idle_rss, _) = proc_stats(new.pid());
    let started = Instant::now();
    let streams = Streams::open(&new, &drill.world).await;
    streams.settle(&drill.world, Duration::from_secs(60)).await;
    let reconnected = started.elapsed();
    let (_, rss, peak) = proc_stats(new.pid());
    println!(
        "{} streams reconnected in {reconnected:.1?}; the new controller: RSS {} MiB idle, {} MiB with the streams, peak {} MiB (the old one held {} MiB)",
        drill.world.svcs.len(),
        idle_rss / 1024,
        rss / 1024,
        peak / 1024,
        old_rss / 1024
    );
    assert!(
        peak <= old_rss + old_rss / 4,
        "the reconnection peaked at {} MiB, the old controller held {} MiB with the same streams",
        peak / 1024,
        old_rss / 1024
    );

    drill.churn(2).await;
    streams.settle(&drill.world, Duration::from_secs(30)).await;
    consistent(&new, &drill.world, &streams).await;
}

#[tokio::test]
async fn an_api_outage_under_churn_keeps_the_last_state_then_resyncs() {
    outage(Drill::fake(World::new(10, 200, 3)).await).await;
}

/// The API forgets its history in the middle of churn (as etcd compaction
/// makes it): the watches get 410 Gone, the controller relists, and every
/// stream ends where the API is, told each change once. (A real API server
/// answers 410 only once its watch cache has moved past the controller's
/// resourceVersion, which a test cannot make it do on demand.)
#[tokio::test]
async fn a_410_in_the_middle_of_churn_relists_without_losing_or_repeating() {
    let mut drill = Drill::fake(World::new(10, 200, 3)).await;
    let (ctl, streams) = drill.start().await;
    let Writer::Fake(api) = &drill.writer else {
        unreachable!()
    };
    let lists = || {
        api.requests()
            .iter()
            .filter(|r| !r.contains("watch=true"))
            .count()
    };
    let lists_before = lists();
    churn(&mut drill.world, &drill.writer, 10, || api.expire_watches()).await;
    streams.settle(&drill.world, Duration::from_secs(60)).await;
    assert!(lists() > lists_before, "the controller did not relist");
    consistent(&ctl, &drill.world, &streams).await;
}

#[tokio::test]
async fn a_restart_with_2000_streams_reconnecting_keeps_memory_bounded() {
    restart(Drill::fake(World::new(50, 2_000, 2)).await).await;
}

/// The same drills against a real API server: `tests/e2e.sh` runs them
/// (`--ignored`) with the cluster's `KUBECONFIG`. The controller runs on
/// this host and reaches the API server through a relay the drill can
/// cut, as a network partition would; the churn goes straight to the API.
#[tokio::test]
#[ignore = "needs a real cluster in KUBECONFIG: tests/e2e.sh runs it"]
async fn on_a_real_api_an_outage_under_churn_keeps_the_last_state_then_resyncs() {
    outage(real::drill("l5d-drill-outage", 200).await).await;
}

#[tokio::test]
#[ignore = "needs a real cluster in KUBECONFIG: tests/e2e.sh runs it"]
async fn on_a_real_api_a_restart_with_streams_reconnecting_keeps_memory_bounded() {
    restart(real::drill("l5d-drill-restart", 2_000).await).await;
}

mod real {
    use super::{Drill, Writer};
    use k8s_openapi::api::{
        core::v1::{Namespace, Service},
        discovery::v1::EndpointSlice,
    };
    use kube::{
        Api, Client, Config,
        api::{Patch, PatchParams},
        config::{KubeConfigOptions, Kubeconfig},
    };
    use linkerd_tests::scale::World;
    use serde_json::{Value, json};
    use std::{net::SocketAddr, path::PathBuf};
    use tokio::{
        net::{TcpListener, TcpStream},
        sync::watch,
    };

    /// A TCP relay to the API server that can refuse and cut connections.
    pub(super) struct Relay {
        pub(super) kubeconfig: PathBuf,
        down: watch::Sender<bool>,
        _task: tokio::task::JoinHandle<()>,
    }

    impl Relay {
        pub(super) fn set_down(&self, down: bool) {
            self.down.send_replace(down);
        }
    }

    async fn relay(
        upstream: SocketAddr,
    ) -> (SocketAddr, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the relay");
        let addr = listener.local_addr().expect("the relay's address");
        let (down, watching) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if *watching.borrow() {
                    continue;
                }
                let mut cut = watching.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.wait_for(|down| *down) => {}
                    }
                });
            }
        });
        (addr, down, task)
    }

    /// Server-side applies `obj` as the drill's field manager.
    pub(super) async fn apply(client: &Client, obj: Value) {
        let name = obj["metadata"]["name"]
            .as_str()
            .expect("a name")
            .to_string();
        let namespace = obj["metadata"]["namespace"].as_str().map(str::to_string);
        let params = PatchParams::apply("drill.linkerd.io").force();
        let applied = match obj["kind"].as_str() {
            Some("Namespace") => Api::<Namespace>::all(client.clone())
                .patch(&name, &params, &Patch::Apply(&obj))
                .await
                .map(drop),
            Some("Service") => Api::<Service>::namespaced(client.clone(), &namespace.unwrap())
                .patch(&name, &params, &Patch::Apply(&obj))
                .await
                .map(drop),
            Some("EndpointSlice") => {
                Api::<EndpointSlice>::namespaced(client.clone(), &namespace.unwrap())
                    .patch(&name, &params, &Patch::Apply(&obj))
                    .await
                    .map(drop)
            }
            other => panic!("the drill writes no {other:?}"),
        };
        applied.unwrap_or_else(|e| panic!("apply {name}: {e}"));
    }

    /// A slice as the drill owns it: no pods behind its addresses (nothing
    /// schedules them) and a manager that is not the slice controller.
    pub(super) fn slice(mut slice: Value) -> Value {
        slice["apiVersion"] = json!("discovery.k8s.io/v1");
        slice["kind"] = json!("EndpointSlice");
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] =
            json!("drill.linkerd.io");
        if let Some(endpoints) = slice["endpoints"].as_array_mut() {
            for e in endpoints {
                if let Some(e) = e.as_object_mut() {
                    e.remove("targetRef");
                }
            }
        }
        slice
    }

    /// A service without a selector, so the slice controller leaves its
    /// slices to the drill, with a cluster IP of the API's choosing.
    fn service(mut svc: Value) -> Value {
        svc["apiVersion"] = json!("v1");
        svc["kind"] = json!("Service");
        if let Some(spec) = svc["spec"].as_object_mut() {
            for field in ["selector", "clusterIP", "clusterIPs"] {
                spec.remove(field);
            }
        }
        svc
    }

    /// `services` services of three endpoints each in a fresh `namespace`
    /// of the cluster in `KUBECONFIG`, and a relay to its API server.
    pub(super) async fn drill(namespace: &str, services: usize) -> Drill {
        let path = std::env::var("KUBECONFIG").expect("KUBECONFIG names the cluster");
        let kubeconfig = Kubeconfig::read_from(&path).expect("read KUBECONFIG");
        let config =
            Config::from_custom_kubeconfig(kubeconfig.clone(), &KubeConfigOptions::default())
                .await
                .expect("a usable KUBECONFIG");
        let client = Client::try_from(config.clone()).expect("a client");
        let mut world = World::new(1, services, 3);
        for s in &mut world.svcs {
            s.namespace = namespace.to_string();
        }
        // Whatever a previous run left, then the world.
        let namespaces: Api<Namespace> = Api::all(client.clone());
        if namespaces.get_opt(namespace).await.ok().flatten().is_some() {
            let _ = namespaces.delete(namespace, &Default::default()).await;
            let gone = linkerd_tests::eventually(std::time::Duration::from_secs(120), || async {
                namespaces
                    .get_opt(namespace)
                    .await
                    .ok()
                    .flatten()
                    .is_none()
                    .then_some(())
            })
            .await;
            assert!(
                gone.is_some(),
                "namespace {namespace} from a previous run never went"
            );
        }
        apply(
            &client,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        )
        .await;
        for s in &world.svcs {
            apply(&client, service(s.service())).await;
            apply(&client, slice(s.slice())).await;
        }

        // The controller dials the relay; the API server's certificate
        // names the address it listens on, which the relay shares.
        let authority = config
            .cluster_url
            .authority()
            .expect("the API server's address")
            .to_string();
        let upstream = tokio::net::lookup_host(authority.as_str())
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .unwrap_or_else(|| panic!("{authority} does not resolve"));
        let (addr, down, task) = relay(upstream).await;
        let mut doc: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap())
            .expect("KUBECONFIG is YAML");
        for cluster in doc["clusters"].as_array_mut().into_iter().flatten() {
            cluster["cluster"]["server"] = json!(format!("https://{addr}"));
            cluster["cluster"]["tls-server-name"] = json!(upstream.ip().to_string());
        }
        let relayed = std::env::temp_dir().join(format!(
            "l5d-drill-{}-{namespace}.kubeconfig",
            std::process::id()
        ));
        std::fs::write(&relayed, serde_json::to_string(&doc).unwrap()).unwrap();
        Drill {
            world,
            writer: Writer::Real(client),
            relay: Some(Relay {
                kubeconfig: relayed,
                down,
                _task: task,
            }),
        }
    }
}
