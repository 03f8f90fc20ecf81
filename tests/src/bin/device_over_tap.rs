//! The device client on embassy-net over a TAP interface, against a routed pool served by real
//! dealer, P0 and P1 processes. Run it inside a private network namespace (`unshare -n`): it
//! refuses to run where any interface other than loopback exists, so no packet can leave.
//!
//! ```text
//! device_over_tap --securerouter BIN --pool-dir DIR [--cache DIR] [--queries N]
//! ```
//!
//! It opens `tap0` (192.168.69.1/24 on the kernel's side, where the services listen), serves
//! the pool, and for each of the first N held-out Rotten Tomatoes sentences runs
//! `securerouter_device::query` on an embassy-net stack at 192.168.69.2 (smoltcp, driven by the
//! embassy executor). The device embeds the sentence itself, as one holding the deployment's
//! int8 table in flash would: WordPiece ids through `TokenEmbedder` over the table that
//! `securerouter device-table` writes. It prints one JSON line per query: the device's label
//! and route next to the plaintext pool's on the same embedded rows (and on the host client's
//! f32 rows), and the bytes it uploaded.

use embassy_executor::{Executor, Spawner};
use embassy_net::tcp::TcpSocket;
use embassy_net::{Config, Ipv4Address, Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;
use securerouter_core::prg::{AesCtr, Domain};
use securerouter_core::ring::{BitWidth, FixedPoint};
use securerouter_device::session::{Circuit, RouteMode, ServerKeys};
use securerouter_device::{EmbeddingSource, EmbeddingTable, StaticKey, TokenEmbedder, query};
use securerouter_ml::assets;
use securerouter_ml::data;
use securerouter_ml::{ClientBundle, Matrix};
use securerouter_runtime::deployment::{CLIENT_BUNDLE, Role, random_seed};
use securerouter_runtime::local_cluster::{LocalCluster, ServerFlags};
use securerouter_runtime::served_pool::ServedPool;
use static_cell::StaticCell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

const TAP: &str = "tap0";
const HOST_IP: [u8; 4] = [192, 168, 69, 1];
const DEVICE_IP: [u8; 4] = [192, 168, 69, 2];
/// Widest row the device buffers, in words (hidden + 2 of a BERT-base-sized expert).
const ROW_WORDS: usize = 770;

/// One query for the device: the sentence's WordPiece ids and what the plaintext pool answers
/// on the rows the device embeds from them.
struct Query {
    text: String,
    ids: Vec<u32>,
    type_ids: Vec<u32>,
    plain_label: usize,
    /// The plaintext pool's label on the host client's f32 rows.
    host_rows_label: usize,
    plain_route: usize,
    /// How far the plaintext router's top score lies above the next: the secure router, in
    /// fixed point, may choose the other expert only when this is within its rounding.
    plain_route_margin: f64,
    plain_logits: Vec<f64>,
    /// Every expert's plaintext logits on the rows, to compare the secure logits of whichever
    /// expert the secure router chose.
    plain_logits_by_expert: Vec<Vec<f64>>,
}

/// What the device task needs, prepared before the executor starts.
struct Plan {
    queries: Vec<Query>,
    /// The device's flash table.
    table: Vec<u8>,
    seq_len: usize,
    me: StaticKey,
    keys: ServerKeys,
    p0: SocketAddr,
    p1: SocketAddr,
    cluster: LocalCluster,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("device_over_tap: {e:#}");
        std::process::exit(2);
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The network interfaces of this process's namespace (`/proc/self/net/dev`).
fn interfaces() -> anyhow::Result<Vec<String>> {
    let dev = std::fs::read_to_string("/proc/self/net/dev")?;
    Ok(dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .collect())
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let exe = PathBuf::from(arg(&args, "--securerouter").ok_or_else(|| {
        anyhow::anyhow!("--securerouter BIN is required (the securerouter binary)")
    })?);
    let pool_dir = PathBuf::from(
        arg(&args, "--pool-dir").ok_or_else(|| anyhow::anyhow!("--pool-dir DIR is required"))?,
    );
    let cache = assets::cache_dir(arg(&args, "--cache").as_deref().map(std::path::Path::new))?;
    let n: usize = arg(&args, "--queries").map_or(Ok(3), |s| s.parse())?;

    let before = interfaces()?;
    anyhow::ensure!(
        before == ["lo"],
        "refusing to run outside a private network namespace (interfaces: {before:?}); \
         run under `unshare -n`"
    );
    // Opening the TAP device creates it; it lives as long as this process.
    let device = TunTapDevice::new(TAP)?;
    let host_ip = std::net::Ipv4Addr::from(HOST_IP);
    ip(&["link", "set", "lo", "up"])?;
    ip(&["addr", "add", &format!("{host_ip}/24"), "dev", TAP])?;
    ip(&["link", "set", TAP, "up"])?;

    let pool = ServedPool::load(&pool_dir, &cache)?;
    let addrs = [7100, 7101, 7102].map(|port| SocketAddr::from((HOST_IP, port)));
    let dir = LocalCluster::fresh_dir("tap");
    let deployment = pool.deploy(&dir, addrs.map(Into::into))?;
    let bundle = ClientBundle::load(&dir.join(CLIENT_BUNDLE))?;
    let me = StaticKey::from_secret(*deployment.identity(Role::Client)?.secret());
    let keys = ServerKeys {
        p0: deployment.deployment.p0.key()?.0,
        p1: deployment.deployment.p1.key()?.0,
    };
    let cluster = LocalCluster::start_with(&exe, deployment, 120, ServerFlags::default())?;

    let (_, mut sentences) = data::split(data::rotten_tomatoes(&cache)?, 0.2, &data::SPLIT_SEED)?;
    sentences.truncate(n);
    let table = bundle.device_table()?;
    let parsed = EmbeddingTable::parse(&table)?;
    let fp = fixed_point().map_err(anyhow::Error::msg)?;
    let seq_len = pool.seq_len();
    let queries = sentences
        .iter()
        .map(|s| {
            let e = bundle.tokenizer.encode(&s.text, seq_len)?;
            let rows = device_rows(parsed, &e.ids, &e.type_ids, seq_len, fp)?;
            let plain = pool.answer_embedded(rows.clone())?;
            let plain_logits_by_expert = (0..pool.experts.len())
                .map(|k| Ok(pool.expert_logits_embedded(k, rows.clone())?))
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(Query {
                text: s.text.clone(),
                ids: e.ids,
                type_ids: e.type_ids,
                plain_label: securerouter_ml::head::argmax(&plain.logits),
                host_rows_label: securerouter_ml::head::argmax(&pool.answer(&s.text, None)?.logits),
                plain_route: plain.route,
                plain_route_margin: securerouter_ml::head::top_two_margin(&plain.scores),
                plain_logits: plain.logits,
                plain_logits_by_expert,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let plan = Plan {
        queries,
        table,
        seq_len,
        me,
        keys,
        p0: addrs[1],
        p1: addrs[2],
        cluster,
    };

    let config = Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(Ipv4Address::from(DEVICE_IP), 24),
        gateway: None,
        dns_servers: Default::default(),
    });
    static RESOURCES: StaticCell<StackResources<4>> = StaticCell::new();
    let seed = u64::from_le_bytes(random_seed().as_bytes()[..8].try_into()?);
    let (stack, runner) =
        embassy_net::new(device, config, RESOURCES.init(StackResources::new()), seed);
    static EXECUTOR: StaticCell<Executor> = StaticCell::new();
    EXECUTOR.init(Executor::new()).run(move |spawner: Spawner| {
        spawner.spawn(net_task(runner).expect("one net task"));
        spawner.spawn(device_task(stack, plan).expect("one device task"));
    })
}

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, TunTapDevice>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn device_task(stack: Stack<'static>, plan: Plan) {
    let code = match queries(stack, &plan).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("device_over_tap: {e}");
            1
        }
    };
    // The executor never returns: stop the services, then the process.
    drop(plan.cluster);
    std::process::exit(code);
}

/// The client's fixed-point format (the servers' input encoding).
fn fixed_point() -> Result<FixedPoint, String> {
    FixedPoint::new(12, BitWidth::FULL).map_err(|e| e.to_string())
}

/// The real tokens' rows the device computes from `table` (hidden size, client columns
/// dropped), decoded: the input the plaintext pool checks the device's answer on.
fn device_rows(
    table: EmbeddingTable<'_>,
    ids: &[u32],
    type_ids: &[u32],
    seq_len: usize,
    fp: FixedPoint,
) -> anyhow::Result<Matrix> {
    let mut rows = TokenEmbedder::new(table, ids, type_ids, seq_len, fp)?;
    let h = table.hidden();
    let mut row = vec![0u64; h + 2];
    let mut data = Vec::with_capacity(ids.len() * h);
    for t in 0..ids.len() {
        rows.read_row(t, &mut row)?;
        data.extend(row[..h].iter().map(|&v| fp.decode(v)));
    }
    Ok(Matrix::new(ids.len(), h, data))
}

async fn connect<'a>(
    stack: Stack<'a>,
    rx: &'a mut [u8],
    tx: &'a mut [u8],
    to: SocketAddr,
) -> Result<TcpSocket<'a>, String> {
    let mut socket = TcpSocket::new(stack, rx, tx);
    socket.set_timeout(Some(embassy_time::Duration::from_secs(120)));
    let SocketAddr::V4(v4) = to else {
        return Err(format!("{to} is not IPv4"));
    };
    socket
        .connect((Ipv4Address::from(v4.ip().octets()), v4.port()))
        .await
        .map_err(|e| format!("connecting to {to}: {e:?}"))?;
    Ok(socket)
}

async fn queries(stack: Stack<'static>, plan: &Plan) -> Result<(), String> {
    stack.wait_config_up().await;
    let fp = fixed_point()?;
    let table = EmbeddingTable::parse(&plan.table).map_err(|e| e.to_string())?;
    let mut rng = AesCtr::new(&random_seed(), Domain(0));
    for q in &plan.queries {
        let (mut rx0, mut tx0, mut rx1, mut tx1) =
            ([0u8; 4096], [0u8; 4096], [0u8; 4096], [0u8; 4096]);
        let started = Instant::now();
        let to_p0 = connect(stack, &mut rx0, &mut tx0, plan.p0).await?;
        let to_p1 = connect(stack, &mut rx1, &mut tx1, plan.p1).await?;
        let rows = TokenEmbedder::new(table, &q.ids, &q.type_ids, plan.seq_len, fp)
            .map_err(|e| e.to_string())?;
        let upload = rows.rows() * rows.width() * 8;
        let out = query::<_, _, _, _, ROW_WORDS>(
            to_p0,
            to_p1,
            &plan.me,
            &plan.keys,
            Circuit::Routed(RouteMode::Reveal),
            rows,
            &mut rng,
        )
        .await
        .map_err(|e| e.to_string())?;
        let logits: Vec<f64> = out.values[0].iter().map(|&v| fp.decode(v)).collect();
        let line = serde_json::json!({
            "text": q.text,
            "label": out.label().map_err(|e| e.to_string())?,
            "route": out.route().map_err(|e| e.to_string())?,
            "logits": logits,
            "plain_label": q.plain_label,
            "plain_route": q.plain_route,
            "plain_route_margin": q.plain_route_margin,
            "plain_logits": q.plain_logits,
            "plain_logits_by_expert": q.plain_logits_by_expert,
            "host_rows_label": q.host_rows_label,
            "upload_bytes_p1": upload,
            "wall_s": started.elapsed().as_secs_f64(),
        });
        println!("{line}");
    }
    Ok(())
}
