//! The benchmark baseline: a bare hyper 1.x hello-world, as small as hyper allows.
//!
//! `bench/serve.sh` runs it beside `statescope serve` and reports the ratio of their
//! requests per second. Usage: `cargo run --release --example hello [ADDR]` (default
//! 127.0.0.1:3000); prints `listening on ADDR` to standard error.

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio::net::TcpListener;

async fn hello(_: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"Hello, World!\n",
    ))))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        // Same socket option as `serve`, so the comparison is of the HTTP layers only.
        let _ = stream.set_nodelay(true);
        // hyper wants its own IO traits; TokioIo adapts a tokio stream to them.
        let io = TokioIo::new(stream);
        // One task per connection; each serves HTTP/1.1 with keep-alive until the client leaves.
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(io, service_fn(hello))
                .await;
        });
    }
}
