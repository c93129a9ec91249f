//! Using the library against a running devnet:
//!
//!     swarmstore devnet --nodes 3                 # in one terminal; copy a node address
//!     cargo run --example client -- /ip4/127.0.0.1/tcp/PORT/p2p/PEER
//!
//! Puts a file, stats it, reads it back and checks the bytes.

use libp2p::identity::Keypair;
use swarmstore::Client;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("SWARMSTORE_NODE").ok())
        .ok_or_else(|| anyhow::anyhow!("usage: client <access node multiaddr>"))?
        .parse()?;
    let client = Client::connect(addr, Keypair::generate_ed25519()).await?;

    let name = format!("example-{}", std::process::id());
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let put = client.put_bytes(&name, &data).await?;
    println!(
        "put {} v{}: {} blocks, root {}",
        put.name, put.version, put.blocks, put.root
    );

    let info = client.stat(&name).await?;
    for (i, b) in info.blocks.iter().enumerate() {
        println!("  block {i}: {} on {} holders", b.id, b.holders.len());
    }

    let back = client.get_bytes(&name).await?;
    assert_eq!(back, data);
    println!("read back {} bytes, identical", back.len());
    Ok(())
}
