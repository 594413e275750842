//! Servers for the HTTP store's tests: nginx with WebDAV `PUT` (the Bazel docs' own
//! recipe for a cache server) on a free loopback port, and small fake servers (one that
//! accepts and never answers, one that answers 500 to everything). Used by
//! `cache_http.rs` and by the store's own tests in `src/cache/http.rs` (which include
//! this file by path), so it needs nothing but std, libc and tempfile.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An nginx of the test's own: its config, pid file, logs and temp paths in a
/// temporary folder (nothing under /etc or /var), its documents in `root()`. Stopped by
/// its pid when dropped.
pub struct Nginx {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// nginx's path: on PATH, else where Debian puts it (`/usr/sbin`, not on every PATH).
fn nginx_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file());
    let found = on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"));
    assert!(
        found.is_file(),
        "nginx is not installed: run scripts/test, which installs it (Debian's nginx-light)"
    );
    found
}

/// A loopback port nothing listens on (the listener that found it is closed).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nginx {
    /// nginx serving `GET`/`HEAD`/`PUT` under `/`; with `authorization`, only requests
    /// whose `Authorization` header is exactly that (401 otherwise).
    pub fn start(authorization: Option<&str>) -> Nginx {
        Nginx::start_with(authorization, false, true)
    }

    /// nginx serving HTTPS with a self-signed certificate for 127.0.0.1 (made with
    /// openssl), whose PEM file is `certificate()`.
    pub fn start_tls() -> Nginx {
        Nginx::start_with(None, true, true)
    }

    /// nginx that serves `GET`/`HEAD` and refuses `PUT` (405): a store read-only for
    /// this client.
    pub fn start_read_only() -> Nginx {
        Nginx::start_with(None, false, false)
    }

    pub fn certificate(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn start_with(authorization: Option<&str>, tls: bool, put: bool) -> Nginx {
        let binary = nginx_binary();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["root", "tmp", "logs"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let check = match authorization {
            Some(value) => format!(
                "if ($http_authorization != \"{}\") {{ return 401; }}",
                value.replace('"', "\\\"")
            ),
            None => String::new(),
        };
        let port = free_port();
        let p = d.display();
        let dav = if put { "dav_methods PUT;" } else { "" };
        let listen = if tls {
            let made = Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args([
                    "-subj",
                    "/CN=127.0.0.1",
                    "-addext",
                    "subjectAltName=IP:127.0.0.1",
                    // Its own trust anchor: webpki refuses a CA's certificate as a server's.
                    "-addext",
                    "basicConstraints=critical,CA:FALSE",
                ])
                .arg("-keyout")
                .arg(d.join("key.pem"))
                .arg("-out")
                .arg(d.join("cert.pem"))
                .output()
                .expect("openssl is not installed: run scripts/test, which installs it");
            assert!(
                made.status.success(),
                "{}",
                String::from_utf8_lossy(&made.stderr)
            );
            format!(
                "127.0.0.1:{port} ssl;\n        ssl_certificate {p}/cert.pem;\n        ssl_certificate_key {p}/key.pem;"
            )
        } else {
            format!("127.0.0.1:{port};")
        };
        // master_process off: one process, as the user that started it (as root, no
        // worker switches to `nobody`, who could not write the temporary folder).
        let conf = format!(
            r#"daemon off;
master_process off;
pid {p}/nginx.pid;
error_log {p}/logs/error.log;
events {{ worker_connections 64; }}
http {{
    log_format cache '$request_method $uri $status len=$http_content_length te=$http_transfer_encoding auth=$http_authorization conn=$connection';
    access_log {p}/logs/access.log cache;
    client_body_temp_path {p}/tmp/body;
    proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi;
    uwsgi_temp_path {p}/tmp/uwsgi;
    scgi_temp_path {p}/tmp/scgi;
    server {{
        listen {listen}
        root {p}/root;
        location / {{
            {check}
            {dav}
            create_full_put_path on;
            client_max_body_size 0;
        }}
    }}
}}
"#
        );
        std::fs::write(d.join("nginx.conf"), conf).unwrap();
        let child = Command::new(binary)
            .arg("-p")
            .arg(d)
            .arg("-e")
            .arg(d.join("logs/error.log"))
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut nginx = Nginx {
            port,
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = nginx.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("nginx exited ({status}): {}", nginx.error_log());
            }
            assert!(Instant::now() < deadline, "nginx listens within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    /// The store's URL: `http://127.0.0.1:PORT/` followed by `path` (`https://` for
    /// `start_tls`).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.certificate().exists() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}/{path}", self.port)
    }

    /// The folder nginx serves.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The access log's lines so far: `METHOD URI STATUS len=… te=… auth=… conn=…` (`conn`:
    /// nginx's serial number of the connection the request came on).
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("logs/access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The access log's lines once `done` holds for them, or as they are after 10 s:
    /// nginx writes a request's line after its answer is sent, so a client that got its
    /// answer can read the log before the line is there.
    pub fn requests_once(&self, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let requests = self.requests();
            if done(&requests) || Instant::now() > deadline {
                return requests;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: terminating the nginx this test started, by its pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }
}

/// Every regular file under `dir`, with its path relative to `dir`.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    found.sort();
    found
}

/// A server that accepts every connection and never answers (nor reads past what the
/// kernel buffers). Returns its port; its thread lives as long as the test process.
pub fn silent_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

/// A server that answers every request with `status` (e.g. "500 Internal Server
/// Error"), an empty body, and closes the connection. Returns its port.
pub fn answering_server(status: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                // Read the request's head, then answer (a body sent with it is left).
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            });
        }
    });
    port
}
