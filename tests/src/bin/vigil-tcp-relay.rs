//! A do-nothing TCP relay (`vigil-tcp-relay LISTEN_ADDR UPSTREAM_ADDR`): each
//! accepted connection is copied both ways to the upstream, nothing parsed.
//! It measures what one extra hop costs on this machine, the physical limit
//! for any proxy (tests/bench/proxy-bench.sh).

use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: vigil-tcp-relay LISTEN_ADDR UPSTREAM_ADDR");
        std::process::exit(2);
    };
    let listener = TcpListener::bind(&listen).await?;
    println!("relaying {listen} -> {upstream}");
    loop {
        let (mut client, _) = listener.accept().await?;
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            if let Ok(mut server) = TcpStream::connect(&upstream).await {
                let _ = server.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
    }
}
