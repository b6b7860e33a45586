//! The plumbing every fake upstream shares: an actix server on an ephemeral port in its own
//! thread, with state the tests can read, stopped when dropped.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use actix_web::{web, App, HttpServer};
use std::sync::{mpsc, Arc};

/// Stops the server when dropped.
pub struct Running {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for Running {
    fn drop(&mut self) {
        let h = self.handle.clone();
        std::thread::spawn(move || {
            let _ = futures_util::FutureExt::now_or_never(h.stop(false));
        });
    }
}

/// Starts a one-worker server whose routes `routes` adds, sharing `shared` as app data.
pub fn spawn<S: Send + Sync + 'static>(
    shared: Arc<S>,
    routes: fn(&mut web::ServiceConfig),
) -> Running {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let data = web::Data::from(shared);
            let server =
                HttpServer::new(move || App::new().app_data(data.clone()).configure(routes))
                    .workers(1)
                    .disable_signals()
                    .bind("127.0.0.1:0")
                    .unwrap();
            let addr = server.addrs()[0];
            let server = server.run();
            tx.send((addr, server.handle())).unwrap();
            server.await.unwrap();
        });
    });
    let (addr, handle) = rx.recv().unwrap();
    Running {
        base: format!("http://{addr}"),
        handle,
    }
}
