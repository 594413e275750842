//! A TCP proxy between a worker and Redis that loses one reply, the way a connection
//! that drops at the wrong moment does: Redis runs the command, and its answer never
//! reaches the client, whose connection is closed. Which reply is lost: the one to the
//! first request that holds a given text and runs (`Cut::AfterRequest`; a script not
//! loaded yet does not), or the first reply that holds it (`Cut::Reply`). Every other byte passes; the listener and its threads end
//! when the proxy is dropped.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy)]
pub enum Cut {
    /// The reply to the first request that holds the text.
    AfterRequest,
    /// The first reply that holds the text.
    Reply,
}

pub struct CutProxy {
    pub port: u16,
    cuts: Arc<AtomicUsize>,
    holding: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl CutProxy {
    pub fn start(upstream: u16, text: &str, cut: Cut) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let cuts = Arc::new(AtomicUsize::new(0));
        let holding = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, h, s) = (cuts.clone(), holding.clone(), stop.clone());
        let text = text.as_bytes().to_vec();
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) {
                            let counts = (c.clone(), h.clone());
                            pipe(client, server, text.clone(), cut, counts);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        CutProxy {
            port,
            cuts,
            holding,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// How many replies were lost so far (at most one).
    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }

    /// How many requests that hold the text were passed on after the reply was lost
    /// (`Cut::AfterRequest`): the command sent again.
    pub fn sent_again(&self) -> usize {
        self.holding.load(Ordering::SeqCst)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Whether `text` is in `tail` (the end of what came before) followed by `chunk`.
fn holds(tail: &mut Vec<u8>, chunk: &[u8], text: &[u8]) -> bool {
    tail.extend_from_slice(chunk);
    let found = tail.windows(text.len()).any(|w| w == text);
    let keep = tail.len().saturating_sub(text.len());
    tail.drain(..keep);
    found
}

type Counts = (Arc<AtomicUsize>, Arc<AtomicUsize>);

fn pipe(client: TcpStream, server: TcpStream, text: Vec<u8>, cut: Cut, (cuts, holding): Counts) {
    // Set by the client's side: the next reply is the one to lose.
    let lose_next = Arc::new(AtomicBool::new(false));
    let (mut from_client, mut to_server) =
        (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (lose, text_c, cuts_c) = (lose_next.clone(), text.clone(), cuts.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        let mut tail = Vec::new();
        loop {
            let n = match from_client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let held = matches!(cut, Cut::AfterRequest) && holds(&mut tail, &buf[..n], &text_c);
            if held && cuts_c.load(Ordering::SeqCst) == 0 {
                // Before it is passed on: its reply cannot come first.
                lose.store(true, Ordering::SeqCst);
            }
            if to_server.write_all(&buf[..n]).is_err() {
                break;
            }
            if held && cuts_c.load(Ordering::SeqCst) > 0 {
                holding.fetch_add(1, Ordering::SeqCst);
            }
        }
        let _ = to_server.shutdown(Shutdown::Write);
    });
    let (mut from_server, mut to_client) = (server, client);
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        let mut tail = Vec::new();
        loop {
            let n = match from_server.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let lost = match cut {
                // A script not loaded yet did not run: its reply passes, and the client
                // loads it and asks again, with the same text.
                Cut::AfterRequest if buf[..n].starts_with(b"-NOSCRIPT") => {
                    lose_next.store(false, Ordering::SeqCst);
                    false
                }
                Cut::AfterRequest => lose_next.load(Ordering::SeqCst),
                Cut::Reply => holds(&mut tail, &buf[..n], &text),
            };
            if lost
                && cuts
                    .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                let _ = to_client.shutdown(Shutdown::Both);
                let _ = from_server.shutdown(Shutdown::Both);
                return;
            }
            if to_client.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to_client.shutdown(Shutdown::Both);
    });
}
